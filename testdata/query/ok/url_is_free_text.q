http://svc:8080
