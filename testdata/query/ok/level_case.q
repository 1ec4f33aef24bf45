level:>=WARN
