"""What the self-check before writing a module costs, for every built-in cell.

    python benchmarks/selfcheck.py [--steps T] [--truncate K] [--repeats N]

Each cell is derived and printed once; then ``self_check`` (what ``bptt emit`` adds before it
writes: loading the module, the poisoned runs, the comparisons) is timed, N times, and the
median and the best are printed.  The budget is SELF_CHECK_BUDGET seconds per built-in cell at T = 3.
"""

import argparse
import statistics
import time

from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.ir.cell import Cell, builtin_names, load_builtin
from derive.verify.report import load_module
from derive.verify.selfcheck import check_steps, self_check

SELF_CHECK_BUDGET = 0.5  # seconds, the bound


def timed(source: str, cell: Cell) -> float:
    start = time.perf_counter()
    self_check(source, cell)
    return time.perf_counter() - start


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--steps", type=int, default=3)
    args.add_argument("--truncate", type=int, default=None)
    args.add_argument("--repeats", type=int, default=7)
    opts = args.parse_args()
    print(f"self-check before writing, T = {opts.steps}, truncate = {opts.truncate}, {opts.repeats} runs each")
    print(f"  {'cell':8} {'steps checked':14} {'median':>9} {'best':>9}  budget {SELF_CHECK_BUDGET} s")
    for name in builtin_names():
        cell = load_builtin(name)
        source = module_source(derive(cell, opts.steps, opts.truncate))
        steps = ",".join(map(str, check_steps(load_module(source, "steps"))))
        runs = [timed(source, cell) for _ in range(opts.repeats)]
        verdict = "ok" if statistics.median(runs) < SELF_CHECK_BUDGET else "OVER"
        print(f"  {name:8} {steps:14} {statistics.median(runs):8.3f}s {min(runs):8.3f}s  {verdict}")


if __name__ == "__main__":
    main()
