foo => bar
