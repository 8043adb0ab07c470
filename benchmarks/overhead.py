"""What one call of a generated module costs where the arrays are tiny: Python and NumPy's per-call
dispatch, not arithmetic.  For a built-in cell at (V, H, T, B), it prints the median time of a
warm ``loss_and_gradients`` call, how many lines of the module's code it runs and how many NumPy
calls those make (a function, a method or one of the module's helpers, counted by the source of
each line run), and the floor those calls set at the cheapest NumPy call measured here (an
``np.add`` into ``out`` on 3 numbers).

    python benchmarks/overhead.py [--cell rnn] [--shape 3,3,3,1]

For the seed (rnn) it also times the benchmark's strong NumPy beside it, best of 7 x 2000 calls
each, and what the call would take without its argument checks.

A benchmark to rerun, not a test.
"""

import argparse
import re
import statistics
import sys
import timeit

import numpy as np

from derive import load_builtin
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.verify.report import load_module

NUMPY_CALL = re.compile(r"\bnp\.\w+\(|\.(sum|max|min|fill|reshape|astype|view|copy)\(|\b_\w+\(")


def numpy_calls(fn, source: str, filename: str) -> tuple[int, int]:
    """(lines of the module run, those that call NumPy or one of the module's helpers) in one call
    of ``fn``: ``sys.settrace``'s line events in the module's code."""
    text = source.splitlines()
    lines = calls = 0

    def trace(frame, event, arg):
        nonlocal lines, calls
        if frame.f_code.co_filename != filename:
            return None
        if event == "line":
            lines += 1
            calls += len(NUMPY_CALL.findall(text[frame.f_lineno - 1]))
        return trace

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return lines, calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cell", default="rnn")
    parser.add_argument("--shape", default="3,3,3,1", help="V,H,T,B")
    args = parser.parse_args()
    V, H, T, B = map(int, args.shape.split(","))
    source = module_source(derive(load_builtin(args.cell), 3))
    module = load_module(source, args.cell)
    rng = np.random.default_rng(0)
    params = module.init_params(*(H if d == "n_h" else V for d in module.DIMS))
    xs, labels = np.eye(V)[rng.integers(0, V, (T, B))], rng.integers(0, V, (T, B))
    call = lambda: module.loss_and_gradients(params, xs, labels)  # noqa: E731
    call()
    per_call = statistics.median(timeit.repeat(call, number=2000, repeat=7)) / 2000 * 1e6
    a, out = np.ones(3), np.empty(3)
    cheapest = min(timeit.repeat(lambda: np.add(a, a, out=out), number=100000, repeat=7)) / 100000 * 1e6
    lines, n = numpy_calls(call, source, module.__file__)
    print(f"{args.cell} at V={V}, H={H}, T={T}, B={B}: {per_call:.1f} us a call, {lines} lines run, {n} NumPy calls")
    print(f"  the cheapest NumPy call (np.add into out, 3 numbers): {cheapest:.2f} us")
    floor = n * cheapest
    print(f"  floor from dispatch alone: {n} x {cheapest:.2f} = {floor:.1f} us ({floor / per_call:.0%} of the call)")
    left, right, into = np.ones((3, 3)), np.ones((3, 3)), np.empty((3, 3))
    matmul = best_us(lambda: np.matmul(left, right, out=into))
    dot = best_us(lambda: np.dot(left, right, out=into))
    print(f"  a (3, 3) product into out: np.matmul {matmul:.2f} us, np.dot {dot:.2f} us")
    checks = best_us(lambda: module._prepare(params, xs, labels, *(None for _ in module.INITIAL)))
    print(f"  the argument checks (_prepare): {checks:.1f} us")
    if args.cell == "rnn":  # beside the benchmark's strong NumPy, which checks nothing
        from derive.tools.bench.problem import make_problem
        from derive.tools.bench.seed import strong_numpy

        problem = make_problem(load_builtin("rnn"), V, H, T, B, np.float64)
        strong, ours = (
            strong_numpy(problem),
            lambda: module.loss_and_gradients(problem.params, problem.xs, problem.labels),
        )
        strong(), ours()
        a, b = best_us(ours), best_us(strong)
        print(f"  beside strong-numpy (best of 7 x 2000 calls each): {a:.1f} us against {b:.1f} us, {a / b:.2f}x;")
        print(f"  without the checks {(a - checks) / b:.2f}x")


def best_us(fn) -> float:
    return min(timeit.repeat(fn, number=2000, repeat=7)) / 2000 * 1e6


if __name__ == "__main__":
    main()
