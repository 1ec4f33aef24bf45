/\bfoo\b/
