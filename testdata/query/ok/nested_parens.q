(namespace:a (pod:b OR (container:c level:error)))
