"""Why the backward loops multiply by a parameter in Fortran order: ``rows @ W`` timed with W in
C order (a BLAS "NN" product) and in Fortran order (W's transpose in C order: "NT"), at the
recurrent products' shapes (B, H) x (H, H), float64 and float32, one thread and the default.

    python benchmarks/gemm_layouts.py

A benchmark to rerun, not a test; on these machines (OpenBLAS, OPENBLAS_CORETYPE=Haswell) the
double products run 17-28% faster in Fortran order from B = 32 on, and a little slower at B = 1.
"""

import timeit

import numpy as np

SHAPES = ((1, 100), (32, 128), (32, 256), (64, 256), (64, 512))


def best_us(fn, number: int = 300) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    print(f"{'B':>3} {'H':>4} {'dtype':>8} {'C order':>10} {'Fortran':>10} {'ratio':>6}")
    for B, H in SHAPES:
        for dtype in (np.float64, np.float32):
            rng = np.random.default_rng(0)
            rows, w = rng.standard_normal((B, H)).astype(dtype), rng.standard_normal((H, H)).astype(dtype)
            w_fortran, out = np.asfortranarray(w), np.empty((B, H), dtype)
            c = best_us(lambda rows=rows, w=w, out=out: np.matmul(rows, w, out=out))
            f = best_us(lambda rows=rows, w=w_fortran, out=out: np.matmul(rows, w, out=out))
            print(f"{B:>3} {H:>4} {np.dtype(dtype).name:>8} {c:>8.1f}us {f:>8.1f}us {f / c:>6.2f}")


if __name__ == "__main__":
    main()
