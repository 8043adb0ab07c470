"""What ``lengths=`` costs: a generated module's ``loss_and_gradients`` at (V, H, T, B), timed in
interleaved rounds in one process (so that the machine's drift falls on every variant alike):

- ``before``: a module made before ``lengths`` existed (``--before``, e.g. ``git show
  <commit>:generated/lstm_T3.py > /tmp/before.py``), where one is given;
- ``None``: this generator's module, ``lengths=None`` (the default);
- ``all T``: ``lengths`` given, every sequence T steps long;
- ``mixed``: ``lengths`` drawn from 1..T (seeded), NaN past each.

    python benchmarks/lengths.py [--cell lstm] [--shape 65,128,50,32] [--rounds 15] [--before PATH]

Each round times ``--calls`` warm calls of each variant, in turn; the median per call over the rounds
is printed, and each variant's ratio to ``None``.  A benchmark to rerun, not a test.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from derive import load_builtin
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.verify.report import load_module


def per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--shape", default="65,128,50,32", help="V,H,T,B")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--before", type=Path, help="a module generated before lengths=, to time beside")
    args = parser.parse_args()
    V, H, T, B = (int(n) for n in args.shape.split(","))
    module = load_module(module_source(derive(load_builtin(args.cell), 3)), args.cell)
    rng = np.random.default_rng(0)
    params = module.init_params(V, H, V)
    xs = rng.standard_normal((T, B, V))
    labels = rng.integers(0, V, (T, B))
    lengths = rng.integers(1, T + 1, B)
    lengths[:2] = (T, 1)[:B]  # the longest and the shortest
    ragged = xs.copy()
    for b, n in enumerate(lengths):
        ragged[n:, b] = np.nan
    variants = {
        "None": lambda: module.loss_and_gradients(params, xs, labels),
        "all T": lambda: module.loss_and_gradients(params, xs, labels, lengths=np.full(B, T)),
        "mixed": lambda: module.loss_and_gradients(params, ragged, labels, lengths=lengths),
    }
    if args.before is not None:
        before = load_module(args.before.read_text(), "before")
        variants = {"before": lambda: before.loss_and_gradients(params, xs, labels), **variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm: the work arrays are allocated and kept
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(per_call(fn, args.calls))
    base = statistics.median(times["None"])
    print(f"{args.cell} (V, H, T, B) = ({V}, {H}, {T}, {B}), {args.rounds} rounds x {args.calls} calls, median")
    print(f"mixed lengths: {sorted(lengths.tolist())}")
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"  {name:8s} {median * 1e3:8.2f} ms  x{median / base:.3f}  (min {min(ts) * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
