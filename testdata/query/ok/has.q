has:label.app
