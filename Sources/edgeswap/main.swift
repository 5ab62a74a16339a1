print("edgeswap")
