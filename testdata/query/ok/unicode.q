namespace:café "Grüße aus München" 東京
