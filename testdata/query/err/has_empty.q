has: foo
