level:>=loud foo
