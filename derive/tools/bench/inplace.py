"""What the strong hand-written NumPy implementations share: work arrays kept between calls, and
the in-place softmax cross-entropy and sigmoid.

The rules the strong versions keep (the generated module is held against them, so nothing is left
on the table): every work array is allocated once per shape and dtype and kept (``Kept``); every
product and elementwise operation writes into one with ``out=`` (products with np.dot, whose
dispatch costs 0.4 us less than np.matmul's: it counts at S and K, where a call is ~100 of them);
the per-step views are bound once; class labels are flat indices into the logits (no one-hot);
one softmax serves the loss and the output delta.  The gradients they return are fresh arrays,
never views of what they keep.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

S = TypeVar("S")


class Kept(Generic[S]):
    """One set of work arrays per key (shapes and dtype), made on first use and kept."""

    def __init__(self, build: Callable[..., S]) -> None:
        self._build = build
        self._spaces: dict[Hashable, S] = {}

    def get(self, *key: Hashable) -> S:
        space = self._spaces.get(key)
        if space is None:
            space = self._spaces[key] = self._build(*key)
        return space


class SoftmaxLoss:
    """Softmax cross-entropy over rows of logits, summed, in place: the logits become the delta
    softmax(y) - onehot(label)."""

    def __init__(self, rows: int, classes: int, dtype: np.dtype) -> None:
        self.y = np.empty((rows, classes), dtype)  # the logits; then the delta
        self.y_flat = self.y.reshape(-1)
        self.top = np.empty(rows, dtype)  # the row maxima; then log(sum(exp))
        self.top_col = self.top[:, None]
        self.total = np.empty(rows, dtype)
        self.total_col = self.total[:, None]
        self.picked = np.empty(rows, dtype)  # each row's target entry
        self.row_start = np.arange(rows, dtype=np.intp) * classes
        self.index = np.empty(rows, np.intp)  # the flat index of each row's target

    def __call__(self, labels: np.ndarray) -> float:
        """J = sum over rows of log(sum(exp(s))) - s[label], with s = y - max(y) so nothing overflows."""
        y, top, total, picked = self.y, self.top, self.total, self.picked
        np.add(self.row_start, labels, out=self.index)
        np.max(y, axis=1, out=top)
        np.subtract(y, self.top_col, out=y)
        np.take(self.y_flat, self.index, out=picked)
        np.exp(y, out=y)
        np.sum(y, axis=1, out=total)
        np.log(total, out=top)
        loss = float(top.sum()) - float(picked.sum())
        np.reciprocal(total, out=total)
        np.multiply(y, self.total_col, out=y)  # softmax(y)
        np.take(self.y_flat, self.index, out=picked)
        np.subtract(picked, 1, out=picked)
        np.put(self.y_flat, self.index, picked)  # minus the one-hot label
        return loss


def sigmoid_(a: np.ndarray) -> None:
    """a <- 1 / (1 + exp(-a)) in place, as 0.5 tanh(a / 2) + 0.5: no overflow, no temporary."""
    np.multiply(a, 0.5, out=a)
    np.tanh(a, out=a)
    np.multiply(a, 0.5, out=a)
    np.add(a, 0.5, out=a)


def slope_(out: np.ndarray, s: np.ndarray) -> None:
    """out <- s (1 - s): the sigmoid's slope from its value."""
    np.subtract(1, s, out=out)
    np.multiply(out, s, out=out)
