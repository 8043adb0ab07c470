import numpy as np
from static import Elman

Wxh = np.random.randn(5, 4) * 0.1; Whh = np.random.randn(5, 5) * 0.1; Why = np.random.randn(4, 5) * 0.1
bh = np.zeros((5, 1)); by = np.zeros((4, 1))

def lossFun(inputs, targets, hprev):
    return Elman.lossFun(inputs, targets, hprev, Wxh, Whh, Why, bh, by)

def train(n):
    losses = []
    while len(losses) < n:
        losses.append(lossFun([0, 1, 2], [1, 2, 3], np.zeros((5, 1)))[0])
    return losses

history = train(10**9)
