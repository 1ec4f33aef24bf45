a () b
