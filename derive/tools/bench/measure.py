"""How the benchmark measures: timing rounds, page faults, memory, the BLAS kernel, the GEMM floor.

- ``time_rounds``: every implementation once per round, interleaved, after the warm-up call that
  checked it; a slow one gets fewer runs (``BUDGET_S`` each, at least ``MIN_REPEATS``).  The
  minor page faults of the timed calls (``getrusage``'s ``ru_minflt``) are counted around each
  call, so a call that maps fresh memory for its arrays shows it.
- Memory, two measures, named in the output: ``tracemalloc`` (NumPy reports its buffers to it) is
  the peak one call allocates, on a fresh instance, so what an implementation keeps between calls
  counts; ``rss`` (for a peer in its own process, whose library allocates outside Python's view) is
  the high-water mark of the resident set over its calls above the resident set before them.
- The GEMM floor: the matrix products one call makes (each model lists them from its maths, as
  ``Product``), each shape timed alone here with preallocated ``out=``; the sum is a floor for the call.
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from derive.tools.bench.problem import Call, Grads

BUDGET_S = 3.0  # per implementation and configuration: fewer repeats for a slow one (at least MIN_REPEATS)
MIN_REPEATS = 3
# every implementation's loss and gradients against the generated module's in float64 (max|a - b| / max|b|)
AGREE_RTOL = {
    "float64": 1e-8,
    # float32 results against the float64 answer for the same (rounded) inputs: a bias gradient sums
    # T B = 6400 rows and each step's rounding (eps32 = 6e-8) reaches the loss through T steps; the worst
    # error measured over every configuration and implementation is 5e-6 (GRU-L, b_u).  1e-4 leaves a
    # factor 20 of room; a wrong gradient (an error of order 1) is still far off.
    "float32": 1e-4,
}


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@dataclass
class Timing:
    times: list[float] = field(default_factory=list)  # seconds per timed call
    faults: int = 0  # minor page faults over the timed calls

    @property
    def faults_per_call(self) -> float:
        return self.faults / max(len(self.times), 1)


def timed_call(call: Call, timing: Timing) -> None:
    faults = minor_faults()
    start = time.perf_counter()
    out = call()
    timing.times.append(time.perf_counter() - start)
    timing.faults += minor_faults() - faults
    del out  # freeing the results is the caller's, after the clock stops


def time_rounds(calls: Mapping[str, Call], first: Mapping[str, float], repeats: int) -> dict[str, Timing]:
    """Interleaved rounds: every implementation once per round, until each has its budget of runs."""
    budget = {name: max(MIN_REPEATS, min(repeats, int(BUDGET_S / max(first[name], 1e-9)))) for name in calls}
    timings = {name: Timing() for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            if len(timings[name].times) < budget[name]:
                timed_call(call, timings[name])
    return timings


def rel_error(got: np.ndarray | float, want: np.ndarray | float) -> float:
    """max|a - b| / max|b|: the project's measure (1e-300 keeps an all-zero gradient finite)."""
    want = np.asarray(want, np.float64)
    got = np.reshape(np.asarray(got, np.float64), want.shape)
    return float(np.max(np.abs(got - want), initial=0.0) / max(float(np.max(np.abs(want), initial=0.0)), 1e-300))


def agreement(result: tuple[float, Grads], want: tuple[float, Grads]) -> tuple[float, str]:
    """The worst error over the loss and every gradient, and its name."""
    errors = {"the loss": rel_error(result[0], want[0])}
    errors |= {k: rel_error(result[1][k], g) if k in result[1] else float("inf") for k, g in want[1].items()}
    worst = max(errors, key=errors.__getitem__)
    return errors[worst], worst


def tracemalloc_peak(make: Callable[[], Call]) -> int:
    """Bytes at the peak of one call of a fresh instance (its kept work arrays included)."""
    call = make()
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_start() -> int:
    """The resident set now (KB), with the high-water mark reset to it where Linux allows."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass
    return _status_kb("VmRSS") or 0


def rss_growth(start_kb: int) -> int:
    """Bytes the resident set's high-water mark rose above ``start_kb``."""
    hwm = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(0, hwm - start_kb) * 1024


class CpuWatch:
    """How much of the CPUs other processes used while we measured: a benchmark on a shared machine
    says when it was disturbed.  /proc/stat's busy time of all CPUs, less this process's and its
    finished children's (os.times), over the wall time of all CPUs; None where /proc/stat is missing."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system

    def others_share(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall, busy, ours = (b - a for a, b in zip(self.start, end))
        return max(0.0, busy - ours) / (wall * (os.cpu_count() or 1))


def blas_kernel() -> dict:
    """NumPy's BLAS as threadpoolctl reports it (library, kernel, threads), and OPENBLAS_CORETYPE."""
    info: dict = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "cpu": cpu_vector_units()}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["blas"] = None
        return info
    keys = ("internal_api", "version", "architecture", "num_threads")
    info["blas"] = [{k: lib.get(k) for k in keys} for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return info


def describe_kernel(info: dict) -> str:
    blas = info.get("blas")
    if blas is None:
        text = "unknown (install threadpoolctl)"
    else:
        text = "; ".join(
            f"{b['internal_api']} {b['version']}, {b['architecture']} kernel, {b['num_threads']} threads" for b in blas
        )
    if info.get("OPENBLAS_CORETYPE"):
        text += f" (OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']})"
    return text + f"; CPU: {info['cpu']}"


def cpu_vector_units() -> str:
    """The widest vector extension /proc/cpuinfo lists: what a kernel could use."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    return next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), "no AVX2")


@dataclass(frozen=True)
class Product:
    """Count x op(A) (m, k) @ op(B) (k, n); layout says which operand is a transposed view
    (NT: x @ W.T, NN: d @ W, TN: d.T @ x), as the implementations call it."""

    label: str
    m: int
    k: int
    n: int
    count: int
    layout: str

    @property
    def flop(self) -> float:
        return 2.0 * self.m * self.k * self.n * self.count


def _operands(p: Product, dtype: str, rng: np.random.Generator):
    a = rng.standard_normal((p.k, p.m) if p.layout[0] == "T" else (p.m, p.k)).astype(dtype)
    b = rng.standard_normal((p.n, p.k) if p.layout[1] == "T" else (p.k, p.n)).astype(dtype)
    return (a.T if p.layout[0] == "T" else a), (b.T if p.layout[1] == "T" else b), np.empty((p.m, p.n), dtype)


def product_seconds(p: Product, dtype: str, rounds: int = 5, round_s: float = 0.02) -> float:
    """The best over rounds of one product's time, alone, with preallocated ``out=``: a floor, so the least."""
    a, b, out = _operands(p, dtype, np.random.default_rng(0))
    np.matmul(a, b, out=out)
    start = time.perf_counter()
    np.matmul(a, b, out=out)
    number = max(1, int(round_s / max(time.perf_counter() - start, 1e-9)))
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            np.matmul(a, b, out=out)
        samples.append((time.perf_counter() - start) / number)
    return min(samples)


def gemm_floor(products: list[Product], dtype: str) -> list[tuple[Product, float]]:
    """Each product with its time per call (seconds, one of ``count``)."""
    return [(p, product_seconds(p, dtype)) for p in products]


def gemm_gflops(dtype: str, n: int = 1024) -> float:
    """This machine's matrix-product throughput in ``dtype``, from an n x n product."""
    return 2.0 * n**3 / product_seconds(Product("large", n, n, n, 1, "NN"), dtype, rounds=3, round_s=0.1) / 1e9
