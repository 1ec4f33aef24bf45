label.app:checkout label.tier:web
