pod:>"a b"
