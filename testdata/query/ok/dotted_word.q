a.b-c
