level:>=warn
