/a(b/
