"""Where the seed model's time goes at one configuration: each matrix product of a full
loss-and-gradients call, timed alone at its own shape, and what they add up to.

    python benchmarks/gemm_shapes.py [S|K|M|L]     (default L)

A call of any implementation makes these products (the recurrences one step at a time, all
else over every step at once); their sum at the rates this machine reaches for those shapes
is a floor for the call that is closer than FLOP / large-GEMM rate.
"""

import sys
import timeit

import numpy as np

from derive.tools.bench import CONFIGS, flops, gemm_gflops


def timed(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def main(config: str) -> None:
    V, H, T, B = CONFIGS[config]
    rng = np.random.default_rng(0)
    h, W = rng.standard_normal((B, H)), rng.standard_normal((H, H))
    rows_h, rows_h2 = rng.standard_normal((2, T * B, H))
    rows_v, W_v = rng.standard_normal((T * B, V)), rng.standard_normal((H, V))
    peak = gemm_gflops()
    print(f"config {config} (V={V}, H={H}, T={T}, B={B}); large-GEMM rate {peak:.0f} GFLOP/s")
    products = [
        ("recurrence h @ W.T (B x H)(H x H)", lambda: h @ W.T, 2 * B * H * H, T),
        ("recurrence d @ W (B x H)(H x H)", lambda: h @ W, 2 * B * H * H, T),
        ("dW_hh (H x TB)(TB x H)", lambda: rows_h.T @ rows_h2, 2 * T * B * H * H, 1),
        ("V-sized (TB x V)(V x H), x5", lambda: rows_v @ W_v.T, 2 * T * B * H * V, 5),
    ]
    total = 0.0
    for label, fn, flop, count in products:
        seconds = timed(fn, max(1, int(0.05 / max(timed(fn, 1), 1e-9))))
        total += seconds * count
        print(f"  {label:<36} {seconds * 1e3:8.3f} ms  {flop / seconds / 1e9:6.1f} GFLOP/s  x{count}")
    floor = flops(V, H, T, B) / peak / 1e9
    print(f"the products of one call: {total * 1e3:.1f} ms (FLOP / large-GEMM rate: {floor * 1e3:.1f} ms)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "L")
