"""Running one configuration in one dtype: check, time, measure; and the whole benchmark.

In order: the generated module's answer in float64 for the problem's (rounded) inputs; every
in-process implementation's warm-up call, checked against it (``AGREE_RTOL`` for the dtype);
interleaved timing rounds; each peer in a process of its own; the GEMM floor; memory (one call
of a fresh instance under tracemalloc; the generated module at T and 2T); and the per-call cost
of the Python that drives NumPy (the same calls at V = H = B = 1).
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time
import types
from dataclasses import asdict, dataclass, field
from functools import partial

from derive.tools.bench.flops import flops
from derive.tools.bench.measure import (
    AGREE_RTOL,
    CpuWatch,
    Timing,
    agreement,
    gemm_floor,
    time_rounds,
    tracemalloc_peak,
)
from derive.tools.bench.models import CONFIGS, MODELS, REFERENCE_MAX, Config, cell_for, module_for
from derive.tools.bench.peers import PEERS, run_peer
from derive.tools.bench.problem import Call, Grads, Maker, Problem, generated_maker, make_problem, save

MEMORY_MAX_S = 2.0  # tracemalloc only where a call takes less (min-char-rnn and the reference loop at M, L do not)
OVERHEAD = ("generated", "strong-numpy")  # the implementations whose Python cost per call is measured


@dataclass
class Options:
    repeats: int = 15
    with_reference: bool = True
    with_peers: bool = True


@dataclass
class Row:
    impl: str
    median_ms: float
    runs: int
    ratio: float  # median / the generated fast path's
    floor_ratio: float  # median / the GEMM floor
    gflops: float
    faults_per_call: float  # minor page faults per timed call
    peak_mb: float | None  # see ``memory``; None where not measured
    memory: str  # "tracemalloc" or "rss" (measure.py)
    error: float  # max relative error against the generated module's float64 answer
    own_process: bool = False  # a peer, timed in a process of its own


@dataclass
class Result:
    config: str
    model: str
    dtype: str
    shape: dict[str, int]
    flop: float
    floor_ms: float = 0.0
    products: list[dict] = field(default_factory=list)  # each with its time per call, ms
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # impl: why it did not run
    memory_by_steps: list[dict] = field(default_factory=list)  # the generated module at T and 2T
    overhead_ms: dict[str, float] = field(default_factory=dict)  # the same call at V = H = B = 1
    libraries: dict[str, str] = field(default_factory=dict)  # peer: what runs its arithmetic
    others_cpu: float | None = None  # the share of the CPUs other processes used meanwhile (measure.CpuWatch)


def answer(module: types.ModuleType, problem: Problem) -> tuple[float, Grads]:
    """The generated module's loss and gradients in float64 for the problem's inputs: the yardstick."""
    p = problem.astype("float64")
    return module.loss_and_gradients(p.params, p.xs, p.labels, **p.initial)


def in_process(config: Config, module: types.ModuleType, options: Options, skipped: dict) -> dict[str, Maker]:
    model = MODELS[config.model]
    makers = {"generated": generated_maker(module)}
    if module.BY_DEFINITION:
        makers["by-definition"] = generated_maker(module, by_definition=True)
    elif model.name == "seed":
        skipped["by-definition"] = f"not generated for T = {config.T}"
    makers |= model.experts
    if model.reference and options.with_reference:
        if config.T**2 * config.B <= REFERENCE_MAX:
            makers["reference"] = model.reference
        else:
            skipped["reference"] = (
                f"T^2 B = {config.T**2 * config.B} > {REFERENCE_MAX}: it sums each J_t back through time"
            )
    return makers


def warm_and_check(makers: dict[str, Maker], problem: Problem, want, skipped: dict) -> tuple[dict, dict, dict]:
    """Set each up and call it once, checked against ``want``: (calls, first-call seconds, errors)."""
    rtol = AGREE_RTOL[str(problem.dtype)]
    calls: dict[str, Call] = {}
    first, errors = {}, {}
    for name, make in makers.items():
        call = make(problem)
        start = time.perf_counter()
        result = call()
        first[name] = time.perf_counter() - start
        errors[name], worst = agreement(result, want)
        if errors[name] <= rtol:
            calls[name] = call
        else:
            skipped[name] = f"disagrees with generated on {worst} (error {errors[name]:.1e} > {rtol:g})"
    return calls, first, errors


def _row(name: str, timing: Timing, result: Result, base: float, peak: float | None, error: float, own: bool) -> Row:
    med = statistics.median(timing.times)
    return Row(
        impl=name,
        median_ms=med * 1e3,
        runs=len(timing.times),
        ratio=med / base,
        floor_ratio=med * 1e3 / result.floor_ms,
        gflops=result.flop / med / 1e9,
        faults_per_call=timing.faults_per_call,
        peak_mb=None if peak is None else peak / 2**20,
        memory="rss" if own else "tracemalloc",
        error=error,
        own_process=own,
    )


def time_peers(
    config: Config, problem: Problem, want, options: Options, result: Result
) -> dict[str, tuple[Timing, dict]]:
    """Each installed peer of the model, alone in a process of its own."""
    peers = {k: v for k, v in PEERS[config.model].items() if importlib.util.find_spec(v[0]) is not None}
    out: dict[str, tuple[Timing, dict]] = {}
    if not (options.with_peers and peers):
        return out
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "problem.npz")
        save(path, problem, want)
        for peer in peers:
            report = run_peer(config.model, peer, path, options.repeats, AGREE_RTOL[str(problem.dtype)])
            if "library" in report:
                result.libraries[peer] = report["library"]
            if "dropped" in report:
                result.skipped[peer] = report["dropped"]
            else:
                out[peer] = (Timing(report["times"], report["faults"]), report)
    return out


def memory_by_steps(config: Config, module: types.ModuleType, dtype: str) -> list[dict]:
    """The generated module's tracemalloc peak at T and 2T: linear in T B if the peak per row stays."""
    V, H, T, B = config.shape
    rows = []
    for steps in (T, 2 * T):
        problem = make_problem(cell_for(config.model), V, H, steps, B, dtype)
        peak = tracemalloc_peak(partial(generated_maker(module), problem))
        rows.append({"T": steps, "B": B, "peak_mb": peak / 2**20, "kb_per_row": peak / 1024 / (steps * B)})
    return rows


def overhead(
    config: Config, module: types.ModuleType, makers: dict[str, Maker], dtype: str, repeats: int
) -> dict[str, float]:
    """Median ms of the same calls at V = H = B = 1 and the same T: what is left is the Python."""
    tiny = make_problem(cell_for(config.model), 1, 1, config.T, 1, dtype)
    calls = {name: makers[name](tiny) for name in OVERHEAD if name in makers}
    for call in calls.values():
        call()
    timings = time_rounds(calls, dict.fromkeys(calls, 0.0), repeats)
    return {name: statistics.median(t.times) * 1e3 for name, t in timings.items()}


def run_config(config: Config, dtype: str, options: Options) -> Result:
    module = module_for(config.model, config.T)
    watch = CpuWatch()
    problem = make_problem(cell_for(config.model), *config.shape, dtype)
    want = answer(module, problem)
    shape = dict(zip("VHTB", config.shape))
    result = Result(config.name, config.model, dtype, shape, flops(*config.shape, MODELS[config.model].gates))
    makers = in_process(config, module, options, result.skipped)
    calls, first, errors = warm_and_check(makers, problem, want, result.skipped)
    timings = time_rounds(calls, first, options.repeats)
    peers = time_peers(config, problem, want, options, result)
    floor = gemm_floor(MODELS[config.model].products(*config.shape), dtype)
    result.floor_ms = sum(p.count * s for p, s in floor) * 1e3
    result.products = [asdict(p) | {"ms": s * 1e3} for p, s in floor]
    base = statistics.median(timings["generated"].times)
    for name, timing in timings.items():
        slow = statistics.median(timing.times) > MEMORY_MAX_S
        peak = None if slow else tracemalloc_peak(partial(makers[name], problem))
        result.rows.append(_row(name, timing, result, base, peak, errors[name], own=False))
    for name, (timing, report) in peers.items():
        result.rows.append(_row(name, timing, result, base, report["peak_bytes"], report["error"], own=True))
    result.memory_by_steps = memory_by_steps(config, module, dtype)
    result.overhead_ms = overhead(config, module, {k: makers[k] for k in calls}, dtype, options.repeats)
    result.others_cpu = watch.others_share()
    return result


def run(names: list[str], dtypes: list[str] | None, options: Options) -> list[Result]:
    """Every configuration, in each of ``dtypes`` (or its model's default dtypes)."""
    return [run_config(CONFIGS[n], dt, options) for n in names for dt in (dtypes or MODELS[CONFIGS[n].model].dtypes)]


def main(names: list[str], dtypes: list[str] | None, options: Options, json_path: str | None = None) -> str:
    """Run the configurations ``names``; the table (and the JSON at ``json_path``)."""
    from derive.tools.bench import report  # report reads Result and Row from here
    from derive.tools.bench.measure import blas_kernel, gemm_gflops

    kernel = blas_kernel()
    wanted = dtypes or sorted({dt for n in names for dt in MODELS[CONFIGS[n].model].dtypes}, reverse=True)
    rates = {dt: gemm_gflops(dt) for dt in wanted}
    results = run(names, dtypes, options)
    if json_path:
        report.write_json(json_path, results, kernel, rates)
    return report.format_results(results, kernel, rates)
