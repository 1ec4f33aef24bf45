namespace:shop -pod:canary-* level:>=warn "connection refused"
