namespace:a,,b
