"""The array library of the layers: numpy, or cupy when config.GPU is set; ``from common.np
import *`` gives it as ``np`` either way."""

from common.config import GPU

if GPU:
    import cupy as np
else:
    import numpy as np

__all__ = ["np"]
