label.app.kubernetes.io/name:api
