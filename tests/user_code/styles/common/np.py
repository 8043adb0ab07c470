# coding: utf-8
"""The array module the other files import with ``from common.np import *``: CuPy when
common.config.GPU is set, NumPy otherwise."""
from common.config import GPU

if GPU:
    import cupy as np
    np.cuda.set_allocator(np.cuda.MemoryPool().malloc)
    np.add.at = np.scatter_add  # CuPy's name for the unbuffered add
    print('=' * 60)
    print('running on the GPU (cupy)'.center(60))
    print('=' * 60 + '\n')
else:
    import numpy as np
