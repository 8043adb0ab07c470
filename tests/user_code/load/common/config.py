"""Settings the layers share."""

GPU = False  # True: the layers compute on cupy, on the GPU
