level:<info
