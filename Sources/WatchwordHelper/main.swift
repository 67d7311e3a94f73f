print("watchword-helper")
