# coding: utf-8
# Set GPU = True to run on the GPU with CuPy (pip install cupy); everything else reads this flag.
GPU = False
