conn*refused
