print("mcl-dist")
