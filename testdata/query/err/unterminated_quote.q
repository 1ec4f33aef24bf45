namespace:shop "connection refused
