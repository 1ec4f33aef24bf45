pod:/api-[a-z0-9]{5}/
