a AND b AND c
