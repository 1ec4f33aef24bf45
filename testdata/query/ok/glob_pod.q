pod:canary-*
