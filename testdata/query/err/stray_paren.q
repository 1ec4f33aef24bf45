a ) b
