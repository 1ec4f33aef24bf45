pod:/[z-a]/ level:error
