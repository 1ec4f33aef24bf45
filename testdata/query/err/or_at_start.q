OR foo
