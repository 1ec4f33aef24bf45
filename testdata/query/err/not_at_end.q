foo NOT
