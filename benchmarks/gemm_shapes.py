"""Where a configuration's GEMM floor comes from: each matrix product of one loss-and-gradients
call (listed from the model's maths, in derive/tools/bench), timed alone at its own shape with
preallocated out=, and what they add up to.

    python benchmarks/gemm_shapes.py [CONFIG] [float64|float32]     (default L float64)
"""

import sys

from derive.tools.bench.flops import flops
from derive.tools.bench.measure import gemm_floor, gemm_gflops
from derive.tools.bench.models import CONFIGS, MODELS


def main(name: str, dtype: str) -> None:
    config, model = CONFIGS[name], MODELS[CONFIGS[name].model]
    rate = gemm_gflops(dtype)
    print(f"{name}: {config.model} (V, H, T, B) = {config.shape}, {dtype}; large-GEMM rate {rate:.0f} GFLOP/s")
    total = 0.0
    for p, seconds in gemm_floor(model.products(*config.shape), dtype):
        total += seconds * p.count
        shape = f"({p.m} x {p.k})({p.k} x {p.n}) {p.layout}"
        rate_here = p.flop / p.count / seconds / 1e9
        print(f"  {p.label:<42} {shape:<26} x{p.count:<4} {seconds * 1e3:8.3f} ms {rate_here:6.1f} GFLOP/s")
    floor = flops(*config.shape, model.gates) / rate / 1e9
    print(f"the products of one call: {total * 1e3:.2f} ms (FLOP / large-GEMM rate: {floor * 1e3:.2f} ms)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "L", sys.argv[2] if len(sys.argv) > 2 else "float64")
