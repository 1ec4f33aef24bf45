namespace: shop
