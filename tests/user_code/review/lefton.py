import numpy as np
from static import Elman

class Net:
    def __init__(self, Wxh, Whh, Why, bh, by):
        self.Wxh, self.Whh, self.Why, self.bh, self.by = Wxh, Whh, Why, bh, by

    def step(self, inputs, targets, hprev):
        loss, self.dWxh, self.dWhh, self.dWhy, self.dbh, self.dby = Elman.lossFun(
            inputs, targets, hprev, self.Wxh, self.Whh, self.Why, self.bh, self.by)
        h = hprev
        for i in inputs:
            x = np.zeros((self.Wxh.shape[1], 1)); x[i] = 1
            h = np.tanh(self.Wxh @ x + self.Whh @ h + self.bh)
        return loss, h
