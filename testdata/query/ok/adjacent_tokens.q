msg="connection refused"
