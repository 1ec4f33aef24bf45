level:>fatal
