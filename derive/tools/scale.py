"""How the tool scales: derive and emit time and peak memory against T, and the fast path's memory
against T and B.  Part of the benchmark (``bptt bench --scale``), not of the test suite.

- ``derive_row`` runs one (cell, T) in a fresh interpreter, so that each row's peak memory is its
  own (the peak resident set of that process, interpreter and imports included) and no cache of
  an earlier row helps it.  It times each stage of ``bptt derive`` (the symbolic derivation and
  its proof, the module source, its verification, the LaTeX source) and counts what is written.
- ``fast_path_memory`` measures, with ``tracemalloc`` (NumPy reports its buffers to it), the peak
  of what one ``loss_and_gradients`` call allocates, for the seed model at several T and B: it
  grows as T * B (the per-step arrays), with no T x T structure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
import types
from dataclasses import dataclass

SCALE_CELLS = ("rnn", "elman", "gru", "lstm")
SCALE_STEPS = (3, 10, 30, 100)
MEMORY_SHAPE = (65, 100)  # (V, H) of the seed model for the memory rows: configuration K's
MEMORY_TB = ((25, 1), (100, 1), (400, 1), (100, 8), (100, 32))


@dataclass
class DeriveRow:
    cell: str
    steps: int
    derive_s: float  # the expansions, the adjoint program and the proof of their equivalence
    module_s: float  # printing the NumPy module
    verify_s: float  # the module against the reference loop, finite differences, SymPy
    latex_s: float  # printing the LaTeX document
    written_kb: float  # the .py and the .tex
    terms: int  # chain-rule terms in the expansion (written one by one only up to a threshold)
    by_definition: bool  # whether the term-by-term NumPy path was generated
    peak_mb: float  # the process's peak resident set


def _derive_one(cell_name: str, steps: int) -> DeriveRow:
    """One row, in this process: run it through ``derive_row`` for a process of its own."""
    import resource

    from derive.derivation.pipeline import derive
    from derive.emit.outputs import module_source, tex_source, verified
    from derive.ir.cell import load_builtin

    cell = load_builtin(cell_name)
    start = time.perf_counter()
    derivation = derive(cell, steps)
    derived = time.perf_counter()
    source = module_source(derivation)
    printed = time.perf_counter()
    report = verified(derivation, source)
    checked = time.perf_counter()
    tex = tex_source(derivation, report)
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    return DeriveRow(
        cell_name,
        steps,
        derived - start,
        printed - derived,
        checked - printed,
        done - checked,
        (len(source.encode()) + len(tex.encode())) / 1024,
        sum(derivation.term_count(w) for w in derivation.factorized),
        derivation.expanded,
        peak,
    )


def derive_row(cell_name: str, steps: int) -> DeriveRow:
    """``_derive_one`` in a fresh interpreter."""
    code = (
        "import dataclasses, json, sys; from derive.tools.scale import _derive_one; "
        f"json.dump(dataclasses.asdict(_derive_one({cell_name!r}, {steps})), sys.stdout)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return DeriveRow(**json.loads(run.stdout))


@dataclass
class MemoryRow:
    steps: int
    batch: int
    peak_mb: float  # what one loss_and_gradients call allocates at its peak
    per_step_row_kb: float  # peak / (T * B): constant when memory is linear in T * B


def fast_path_memory(shapes: tuple[tuple[int, int], ...] = MEMORY_TB) -> list[MemoryRow]:
    from derive.tools.bench.models import cell_for, module_for
    from derive.tools.bench.problem import make_problem

    V, H = MEMORY_SHAPE
    rows = []
    modules: dict[int, types.ModuleType] = {}
    for steps, batch in shapes:
        module = modules.setdefault(steps, module_for("seed", min(steps, 3)))  # the fast path takes any T
        p = make_problem(cell_for("seed"), V, H, steps, batch)
        args = (p.params, p.xs, p.labels, p.initial["h0"])
        module.loss_and_gradients(*args)  # warm: NumPy's first-call allocations are not the call's
        module.release_workspaces()  # a call's work arrays, kept between calls, count: it allocates them again
        tracemalloc.start()
        module.loss_and_gradients(*args)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append(MemoryRow(steps, batch, peak / 2**20, peak / 1024 / (steps * batch)))
    return rows


def _count(n: int) -> str:
    """An exact count, or its order of magnitude where it is too long to read (a GRU's 4^T)."""
    return str(n) if n < 10**7 else f"{n:.1e}".replace("e+", "e")


def format_scale(derive_rows: list[DeriveRow], memory_rows: list[MemoryRow]) -> str:
    lines = ["derive and emit against T (each row in a fresh process; bptt derive's stages, no PDF)"]
    head = ("cell", "T", "derive", "module", "verify", "latex", "total", "written", "terms", "peak")
    lines.append("  {:<6} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8}".format(*head))
    for r in derive_rows:
        total = r.derive_s + r.module_s + r.verify_s + r.latex_s
        lines.append(
            f"  {r.cell:<6} {r.steps:>4} {r.derive_s:>7.2f}s {r.module_s:>7.2f}s {r.verify_s:>7.2f}s "
            f"{r.latex_s:>7.2f}s {total:>7.2f}s {r.written_kb:>7.0f}KB {_count(r.terms):>7} {r.peak_mb:>6.0f}MB"
        )
    V, H = MEMORY_SHAPE
    lines.append(f"\nfast path memory: the peak one loss_and_gradients call allocates (tracemalloc), V={V}, H={H}")
    lines.append("  {:>5} {:>4} {:>10} {:>16}".format("T", "B", "peak", "peak per T*B"))
    for m in memory_rows:
        lines.append(f"  {m.steps:>5} {m.batch:>4} {m.peak_mb:>8.2f}MB {m.per_step_row_kb:>13.1f} KB")
    return "\n".join(lines)


def main(json_path: str | None, cells: tuple[str, ...] = SCALE_CELLS, steps: tuple[int, ...] = SCALE_STEPS) -> str:
    derive_rows = [derive_row(c, t) for c in cells for t in steps]
    memory_rows = fast_path_memory()
    if json_path:
        from dataclasses import asdict

        payload = {"derive": [asdict(r) for r in derive_rows], "memory": [asdict(r) for r in memory_rows]}
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
    return format_scale(derive_rows, memory_rows)
