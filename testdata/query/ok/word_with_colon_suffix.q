error: failed
