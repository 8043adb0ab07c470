"""The benchmark's table and JSON: a header (the machine, its BLAS kernel, its GEMM rates), then
for each configuration and dtype one row per implementation, its GEMM floor, the generated
module's memory at T and 2T, and the per-call cost of the Python that drives NumPy."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict

import numpy as np

from derive.tools.bench.measure import AGREE_RTOL, describe_kernel
from derive.tools.bench.run import Result, Row

MEASURES = {"tracemalloc": "t", "rss": "r"}
DISTURBED = 0.05  # other processes' share of the CPUs above which a configuration's timings are not to be trusted
FOOTNOTES = (
    "* a peer, timed alone in a process of its own (beside OpenBLAS in one process, thread pools contend)",
    "vs floor: the median over the GEMM floor, the time of the call's matrix products alone, each shape timed "
    "here with out= (the products listed from the model's maths, gates stacked)",
    "faults/call: minor page faults (getrusage ru_minflt) per timed call, in the process that ran it",
    "peak: t = tracemalloc peak of one call of a fresh instance (what it keeps between calls counts); "
    "r = rise of the process's resident-set high-water mark over its calls "
    "(torch's and XLA's allocators are not Python's)",
)


def header(kernel: dict, rates: dict[str, float]) -> list[str]:
    gemm = ", ".join(f"{dt} {rate:.0f} GFLOP/s" for dt, rate in rates.items())
    tolerance = ", ".join(f"{dt} {tol:g}" for dt, tol in AGREE_RTOL.items())
    return [
        f"BLAS (NumPy): {describe_kernel(kernel)}",
        f"GEMM throughput (1024^3 product): {gemm}",
        f"every implementation agrees with the generated module's float64 answer before it is timed "
        f"(max|a - b| / max|b|: {tolerance})",
    ]


def _row_line(row: Row) -> str:
    impl = row.impl + (" *" if row.own_process else "")
    peak = "-" if row.peak_mb is None else f"{row.peak_mb:.1f} MB {MEASURES[row.memory]}"
    return (
        f"  {impl:<17} {row.median_ms:>9.3f} ms {row.runs:>4} {row.ratio:>11.2f}x {row.floor_ratio:>8.2f}x "
        f"{row.gflops:>7.2f} {row.faults_per_call:>11.0f} {peak:>12}"
    )


def format_result(res: Result) -> list[str]:
    s = res.shape
    lines = [
        f"\n{res.config}: {res.model} (V={s['V']}, H={s['H']}, T={s['T']}, B={s['B']}), {res.dtype}: "
        f"{res.flop / 1e9:.3g} GFLOP, GEMM floor {res.floor_ms:.3f} ms",
        "  {:<17} {:>12} {:>4} {:>12} {:>9} {:>7} {:>11} {:>12}".format(
            "implementation", "median", "runs", "vs generated", "vs floor", "GFLOP/s", "faults/call", "peak"
        ),
    ]
    if res.others_cpu is not None and res.others_cpu > DISTURBED:
        lines.insert(1, f"  DISTURBED: other processes used {100 * res.others_cpu:.0f}% of the CPUs meanwhile")
    lines += [_row_line(row) for row in sorted(res.rows, key=lambda r: r.median_ms)]
    lines += [f"  {impl:<17} not run: {why}" for impl, why in res.skipped.items()]
    mem = res.memory_by_steps
    lines.append(
        "  generated, tracemalloc peak: "
        + ", ".join(f"{m['peak_mb']:.2f} MB at T = {m['T']}" for m in mem)
        + " ("
        + " and ".join(f"{m['kb_per_row']:.2f}" for m in mem)
        + " KB per step and sequence: linear in T B)"
    )
    lines.append(
        "  Python per call (the same calls at V = H = B = 1): "
        + ", ".join(f"{impl} {ms:.3f} ms" for impl, ms in res.overhead_ms.items())
    )
    return lines


def format_results(results: list[Result], kernel: dict, rates: dict[str, float]) -> str:
    lines = header(kernel, rates)
    for res in results:
        lines += format_result(res)
    libraries = {lib for res in results for lib in res.libraries.values()}
    lines += [""] + [f"peer: {lib}" for lib in sorted(libraries)] + list(FOOTNOTES)
    shares = [r.others_cpu for r in results if r.others_cpu is not None]
    if shares:
        lines.append(f"other processes used at most {100 * max(shares):.1f}% of the CPUs during any configuration")
    return "\n".join(lines)


def write_json(path: str, results: list[Result], kernel: dict, rates: dict[str, float]) -> None:
    payload = {
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "processor": platform.machine()},
        "kernel": kernel,
        "gemm_gflops": rates,
        "agree_rtol": AGREE_RTOL,
        "results": [asdict(r) for r in results],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
