/^GET /
