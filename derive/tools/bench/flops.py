"""The matrix products one loss-and-gradients call makes, from the maths, and their FLOP count.

A cell with G gates stacked (1 for the seed RNN, 3 for a GRU, 4 for an LSTM), n_x = n_y = V,
hidden size H, T steps, batch B: its weights are W (G H, V), U (G H, H) and the output layer
W_y (V, H).  Only the recurrences run step by step; every other product covers all T B rows.
A product's FLOP are 2 m k n; the delta of the inputs x (W^T dA) is not computed: nothing needs it.
"""

from __future__ import annotations

from derive.tools.bench.measure import Product


def flops(V: int, H: int, T: int, B: int, gates: int = 1) -> float:
    """2 T B ((2G + 3) H V + 3 G H^2): per row, the input projection and dW (G H V each); the output
    layer, its delta and dW_y (H V each); the recurrence forward, backward and dU (G H^2 each)."""
    return 2.0 * T * B * ((2 * gates + 3) * H * V + 3 * gates * H * H)


def stacked_products(V: int, H: int, T: int, B: int, gates: int = 1) -> list[Product]:
    """The products of a cell whose G gates all read h[t-1] through one stacked U (seed RNN, LSTM,
    torch's GRU): one (B, H) x (H, G H) product per step forward and one (B, G H) x (G H, H) back."""
    N, G = T * B, gates * H
    return [
        Product("x W^T: the input projection, every step", N, V, G, 1, "NT"),
        Product("h[t-1] U^T: the recurrence, per step", B, H, G, T, "NT"),
        Product("h W_y^T: the outputs, every step", N, H, V, 1, "NT"),
        Product("dy W_y: dJ/dh from the outputs", N, V, H, 1, "NN"),
        Product("dA U: dJ/dh[t-1], per step", B, G, H, T, "NN"),
        Product("dy^T h: dW_y", V, N, H, 1, "TN"),
        Product("dA^T x: dW", G, N, V, 1, "TN"),
        Product("dA^T h[t-1]: dU", G, N, H, 1, "TN"),
    ]
