"""A vanilla RNN as a class with its configuration as a dataclass, and a trained model unpickled
at the top level.  Written for bptt check's loader tests (which names are there, which not)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np


@dataclass
class Config:
    vocab_size: int = 4
    hidden_size: int = 8


def lossFun(model: RNN, inputs: list[int], targets: list[int]) -> float:
    return model.train(inputs, targets)


def sample(model: RNN, seed_ix: int, n: int) -> list[int]:
    return model.sample(seed_ix, n)


class RNN:
    def __init__(self, config: Config):
        rng = np.random.default_rng(0)
        self.config = config
        self.Wxh = rng.standard_normal((config.hidden_size, config.vocab_size)) * 0.01
        self.Whh = rng.standard_normal((config.hidden_size, config.hidden_size)) * 0.01
        self.Why = rng.standard_normal((config.vocab_size, config.hidden_size)) * 0.01

    def train(self, inputs: list[int], targets: list[int]) -> float:
        h, loss = np.zeros(self.config.hidden_size), 0.0
        for i, j in zip(inputs, targets):
            h = np.tanh(self.Wxh[:, i] + self.Whh @ h)
            y = self.Why @ h
            loss -= y[j] - np.log(np.exp(y).sum())
        return loss

    def sample(self, seed_ix: int, n: int) -> list[int]:
        return [seed_ix] * n


trained = pickle.load(open("rnn.pkl", "rb"))

if __name__ == "__main__":

    def main() -> None:
        print(sample(trained, 0, 100))

    main()
