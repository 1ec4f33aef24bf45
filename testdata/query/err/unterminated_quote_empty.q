foo "
