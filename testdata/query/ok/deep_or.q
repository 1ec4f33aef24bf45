a OR b OR (c OR d) OR namespace:x,y
