a b OR c d
