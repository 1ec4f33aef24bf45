level:warning,err,crit
