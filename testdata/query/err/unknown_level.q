level:verbose
