level:debug..warn
