stream:stderr cluster:prod-eu workload:checkout
