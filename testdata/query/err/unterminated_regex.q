pod:/canary.*
