pod:*..*
