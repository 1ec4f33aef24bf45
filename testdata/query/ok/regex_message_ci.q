/timeout after [0-9]+ms/i
