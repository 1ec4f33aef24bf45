pod:api-*,/web-[0-9]+/,"worker"
