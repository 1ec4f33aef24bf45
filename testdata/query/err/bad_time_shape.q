time:>yesterday
