has:unknown
