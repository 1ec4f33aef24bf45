/(?i)foo/
