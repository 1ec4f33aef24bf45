pod:"a b" container:"x,y"
