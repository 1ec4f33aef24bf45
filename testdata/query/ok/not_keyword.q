NOT namespace:kube-system
