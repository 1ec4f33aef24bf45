container:*..sidecar
