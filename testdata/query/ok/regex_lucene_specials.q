/user@example\.com <[^>]+>/
