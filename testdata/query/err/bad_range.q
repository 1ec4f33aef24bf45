pod:..b
