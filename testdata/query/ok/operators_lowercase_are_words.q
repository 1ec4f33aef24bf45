and or not
