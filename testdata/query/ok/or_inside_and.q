namespace:shop (timeout OR refused)
