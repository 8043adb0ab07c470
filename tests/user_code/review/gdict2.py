import numpy as np
from static import Elman
data = "abcd"
vocab_size = len(set(data))
hidden_size = 100
params = {"Wxh": np.random.randn(hidden_size, vocab_size) * 0.01, "Whh": np.random.randn(hidden_size, hidden_size) * 0.01,
          "Why": np.random.randn(vocab_size, hidden_size) * 0.01, "bh": np.zeros((hidden_size, 1)), "by": np.zeros((vocab_size, 1))}

def lossFun(inputs, targets, hprev):
    p = params
    return Elman.lossFun(inputs, targets, hprev, p["Wxh"], p["Whh"], p["Why"], p["bh"], p["by"])
