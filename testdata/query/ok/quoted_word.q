"canary-*" "namespace:x" "-5"
