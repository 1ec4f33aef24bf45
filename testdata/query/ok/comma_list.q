namespace:prod,staging
