Namespace:shop LEVEL:error
