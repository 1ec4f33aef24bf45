level:bogus (a OR ) "x
