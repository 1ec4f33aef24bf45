pod:a..m
