workload:>=m
