"""Whether batching the products over all steps pays in PyTorch on this machine: torch.mm's throughput
on the products a per-step loop under autograd makes and on those the derived backward makes instead,
at the M configuration of ``bptt bench --target torch`` (H = 256, T = 50, B = 32), one thread, in
interleaved rounds (the machine's drift falls on every shape alike):

- ``step``: h_{t-1} U^T, (B, H) x (H, H): the recurrence, per step, in both;
- ``step dU``: dA_t^T h_{t-1}, (H, B) x (B, H): a weight's gradient, per step, as autograd makes it;
- ``hoisted dU``: dA^T h, (H, T B) x (T B, H): the same gradient over every step at once, as the
  derived backward makes it.

    python benchmarks/torch_product_shapes.py [--rounds 7] [--seconds 0.05]

Equal rates mean the derived backward gains nothing from batching its weight gradients here; its
gain over the loop is then in the work around the products.  A benchmark to rerun, not a test.
"""

import argparse
import statistics
import time

import torch

H, T, B = 256, 50, 32
SHAPES = {"step": (B, H, H), "step dU": (H, B, H), "hoisted dU": (H, T * B, H)}  # (m, k, n)


def operands(m: int, k: int, n: int, dtype: torch.dtype):
    a = torch.randn(k, m, dtype=dtype).T if m == H and k != H else torch.randn(m, k, dtype=dtype)
    return a, torch.randn(k, n, dtype=dtype), torch.empty(m, n, dtype=dtype)


def rate(a, b, out, seconds: float) -> float:
    """GFLOP/s of ``torch.mm(a, b, out=out)`` over about ``seconds`` of calls."""
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b, out=out)
        calls += 1
    m, k = a.shape
    return 2 * m * k * b.shape[1] * calls / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for dtype in (torch.float32, torch.float64):
        cases = {name: operands(*shape, dtype) for name, shape in SHAPES.items()}
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (a, b, out) in cases.items():
                rates[name].append(rate(a, b, out, args.seconds))
        for name, (m, k, n) in SHAPES.items():
            print(f"{str(dtype):<14} {name:<11} ({m}, {k}) x ({k}, {n}): {statistics.median(rates[name]):6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
