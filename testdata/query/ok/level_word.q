level:error
