"""bptt bench --target torch|jax: the emitted framework module beside the framework's own ways.

For each configuration (a cell at (V, H, T, B)) and dtype, in one process: the NumPy module's
float64 answer for the problem's inputs (``run.answer``, the yardstick); every implementation's
warm-up call, checked against it (``AGREE_RTOL``); interleaved timing rounds (``time_rounds``);
then each implementation's peak memory; then (torch) its matrix products' floor (``floor``).

- torch: ``emitted`` (the module's ``loss_and_gradients``), ``emitted-Loss`` (``loss(...).backward()``
  through the ``Loss`` Function), ``autograd_loss`` (the module's hoisted forward under autograd);
  for lstm and gru-torch ``torch.nn.LSTM``/``GRU`` with a Linear and the summed cross-entropy
  (``peers``); for the custom cells a per-step loop under autograd (``plain``).
- jax: ``emitted`` (``jit(value_and_grad(loss))``, the custom_vjp) and ``autograd_loss``
  (``jit(value_and_grad(autograd_loss))``), each compiled at setup.

Memory: torch on the CPU allocates outside Python's view, so each implementation runs once more
in a fresh interpreter (``memory_main``): set up, its library's one-time setup done on a tiny
problem, then one call between a reset of the resident set's high-water mark and its reading.
glibc's mmap threshold is fixed there (its adaptive one would move big buffers into the heap after
the first is freed): every buffer of 64 KB or more is mapped when allocated and unmapped when
freed, and the smaller ones grow a heap that nothing earlier left free, so the rise is the call's
peak (plus the heap's slack).  The profiler's ``profile_memory=True`` would record each allocation too, but its peak has
to be rebuilt from events and it slows the call it watches; a fresh process keeps one call's peak
from being hidden by memory an earlier implementation left to the allocator.  jax: XLA's own
account of the compiled call (``memory_analysis()``: its temporaries and outputs).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source, target_source
from derive.ir.cell import Cell, load_builtin
from derive.spec.parser import read
from derive.tools.bench import floor, gru, peers, plain
from derive.tools.bench.measure import AGREE_RTOL, CpuWatch, rss_growth, rss_start, time_rounds
from derive.tools.bench.problem import Call, Maker, Problem, load, make_problem, save
from derive.tools.bench.run import answer, warm_and_check
from derive.verify.report import load_module

TARGETS = ("torch", "jax")
HERE = Path(__file__).parent
MMAP_THRESHOLD = 65536  # bytes: glibc maps every allocation this large on its own (see the docstring)
# one thread for torch and XLA: on the 2 shared cores this was written on, OpenMP's barriers spun under
# other processes' load and the same 2-thread call varied 100-fold; one thread is every implementation alike
THREADS = 1
TINY = (3, 2, 2, 1)  # (V, H, T, B) of the call that sets a library up before the one measured


@dataclass(frozen=True)
class TargetModel:
    name: str
    cell: Callable[[], Cell]
    torch_peers: dict[str, Maker]  # beside the emitted module's own implementations


MODELS: dict[str, TargetModel] = {
    m.name: m
    for m in (
        TargetModel("lstm", lambda: load_builtin("lstm"), {"torch.nn.LSTM": peers.TORCH_LSTM}),
        # the built-in gru is Cho et al.'s; torch.nn.GRU computes gru_torch.cell
        TargetModel("gru-torch", gru.torch_cell, {"torch.nn.GRU": peers.TORCH_GRU}),
        TargetModel("indrnn", lambda: read(HERE / "indrnn.cell"), {"plain-autograd": plain.plain_autograd("indrnn")}),
        TargetModel(
            "peephole-lstm",
            lambda: read(HERE / "peephole_lstm.cell"),
            {"plain-autograd": plain.plain_autograd("peephole-lstm")},
        ),
        TargetModel("mgu", lambda: read(HERE / "mgu.cell"), {"plain-autograd": plain.plain_autograd("mgu")}),
    )
}
CUSTOM = ("indrnn", "peephole-lstm", "mgu")  # no framework has a fused kernel for these
SIZES = {"S": (7, 5, 6, 3), "M": (65, 256, 50, 32), "L": (128, 512, 100, 64)}  # the benchmark's M and L: (V, H, T, B)


@dataclass(frozen=True)
class TargetConfig:
    name: str
    model: str
    shape: tuple[int, int, int, int]


CONFIGS: dict[str, TargetConfig] = {
    f"{m}-{s}": TargetConfig(f"{m}-{s}", m, shape) for m in MODELS for s, shape in SIZES.items()
}
DEFAULT = {"torch": [f"{m}-M" for m in MODELS], "jax": [f"{m}-{s}" for m in MODELS for s in ("M", "L")]}


@cache
def cell_for(model: str) -> Cell:
    return MODELS[model].cell()


@cache
def numpy_module(model: str) -> types.ModuleType:
    """The NumPy module: the float64 answer every implementation agrees with (its fast path takes any T)."""
    return load_module(module_source(derive(cell_for(model), 3)), f"{model}_numpy")


@cache
def framework_source(model: str, target: str) -> str:
    """The framework module of the model's cell, as ``bptt emit --target`` prints it."""
    return target_source(derive(cell_for(model), 3), target)


# --- torch -------------------------------------------------------------------------------------


def _torch_arguments(p: Problem, grad: bool) -> tuple[dict, dict, object, object]:
    import torch

    P = {k: torch.tensor(v, requires_grad=grad) for k, v in p.params.items()}
    init = {k: torch.tensor(v, requires_grad=grad) for k, v in p.initial.items()}
    return P, init, torch.from_numpy(p.xs), torch.from_numpy(p.labels)


def torch_derived(module: types.ModuleType) -> Maker:
    """The emitted ``loss_and_gradients``: the derived backward with no autograd."""

    def make(p: Problem) -> Call:
        P, init, xs, labels = _torch_arguments(p, grad=False)

        def call():
            value, grads = module.loss_and_gradients(P, xs, labels, **init)
            return float(value), {k: g.numpy() for k, g in grads.items()}

        return call

    return make


def torch_backward(module: types.ModuleType, function: str) -> Maker:
    """``module.<function>(...).backward()`` into the leaves' ``.grad``: ``loss`` runs the Loss Function
    (the derived backward), ``autograd_loss`` the hoisted forward under autograd."""

    def make(p: Problem) -> Call:
        P, init, xs, labels = _torch_arguments(p, grad=True)
        leaves = P | init
        fn = getattr(module, function)

        def call():
            for leaf in leaves.values():
                leaf.grad = None
            value = fn(P, xs, labels, **init)
            value.backward()
            return float(value.detach()), {k: v.grad.numpy() for k, v in leaves.items()}

        return call

    return make


# --- jax ---------------------------------------------------------------------------------------


def jax_grad(module: types.ModuleType, function: str) -> Maker:
    """``jit(value_and_grad(module.<function>))`` over the parameters and initial states, compiled at
    setup; the call carries XLA's account of its memory as ``call.memory_bytes`` (None where the
    backend gives none).  value_and_grad, not grad: the loss is checked too, on both sides alike."""

    def make(p: Problem) -> Call:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)  # float64 problems stay float64; float32 ones stay float32
        fn = getattr(module, function)
        P = {k: jnp.asarray(v) for k, v in p.params.items()}
        init = {k: jnp.asarray(v) for k, v in p.initial.items()}
        xs, labels = jnp.asarray(p.xs), jnp.asarray(p.labels)

        def J(P, init, xs, labels):
            return fn(P, xs, labels, **init)

        compiled = jax.jit(jax.value_and_grad(J, argnums=(0, 1))).lower(P, init, xs, labels).compile()

        def call():
            value, (gP, gI) = compiled(P, init, xs, labels)
            return float(value), {k: np.asarray(v) for k, v in (gP | gI).items()}

        call.memory_bytes = xla_bytes(compiled)  # type: ignore[attr-defined]
        return call

    return make


def xla_bytes(compiled) -> int | None:
    """What one call of the compiled function allocates, by XLA's account: its temporaries and outputs."""
    try:
        stats = compiled.memory_analysis()
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    if stats is None:
        return None
    return int(stats.temp_size_in_bytes + stats.output_size_in_bytes)


def makers_for(target: str, model: str, module: types.ModuleType) -> dict[str, Maker]:
    """Every implementation of ``model`` for ``target``, the emitted module's first."""
    if target == "jax":
        return {"emitted": jax_grad(module, "loss"), "autograd_loss": jax_grad(module, "autograd_loss")}
    return {
        "emitted": torch_derived(module),
        "emitted-Loss": torch_backward(module, "loss"),
        "autograd_loss": torch_backward(module, "autograd_loss"),
    } | MODELS[model].torch_peers


# --- memory in a process of its own -----------------------------------------------------------


def memory_main(target: str, model: str, impl: str, folder: str) -> None:
    """In a fresh interpreter: set up one implementation and call it once between a reset of the resident
    set's high-water mark and its reading; one line of JSON (the rise, bytes)."""
    one_thread(target)
    problem, _ = load(os.path.join(folder, "problem.npz"))
    module = load_module(Path(folder, "module.py").read_text(encoding="utf-8"), f"{model}_{target}")
    make = makers_for(target, model, module)[impl]
    # the library's one-time setup (kernels, thread pools) on a tiny problem: not the call's own.  Not a
    # warm-up at full size: the small blocks it freed (autograd's nodes, tensors under the mmap
    # threshold) would stay in the heap, resident, and hide the same blocks of the measured call.
    make(make_problem(cell_for(model), *TINY, problem.xs.dtype.name))()
    call = make(problem)
    start = rss_start()
    result = call()
    peak = rss_growth(start)
    del result
    print(json.dumps({"peak_bytes": peak}))


def torch_peak(model: str, impl: str, folder: str) -> int | None:
    """``memory_main`` in a fresh interpreter that imports this same copy of derive; None if it failed."""
    code = f"from derive.tools.bench.targets import memory_main; memory_main('torch', {model!r}, {impl!r}, {folder!r})"
    root = str(Path(__file__).resolve().parents[3])
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),  # fixed: glibc's adaptive threshold would keep freed buffers
    }
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])["peak_bytes"]


# --- one configuration ---------------------------------------------------------------------------


@dataclass
class TargetRow:
    impl: str
    median_ms: float
    runs: int
    ratio: float  # median / the emitted module's
    peak_mb: float | None  # None where not measured
    error: float  # max relative error against the NumPy module's float64 answer
    gflop: float | None = None  # its matrix products in one call (torch.profiler); None: not counted, or jax
    floor_ms: float | None = None  # gflop at torch.mm's throughput here (TargetResult.mm_gflops)


@dataclass
class TargetResult:
    target: str
    config: str
    model: str
    dtype: str
    shape: dict[str, int]
    command: str  # the command that reproduces this table alone
    memory: str  # how peak_mb was measured
    rows: list[TargetRow] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    others_cpu: float | None = None
    mm_gflops: float | None = None  # torch.mm's GFLOP/s on (B, H) x (H, H) in the dtype, here (torch)
    uncounted: dict[str, str] = field(default_factory=dict)  # implementations whose products the profiler misses
    onednn_gflops: float | None = None  # oneDNN's on the same product, where an implementation ran oneDNN
    onednn_missing: str = ""  # why oneDNN's was not measured, where it was asked for


def command(target: str, config: str, dtype: str, repeats: int) -> str:
    return f"bptt bench --target {target} --configs {config} --dtype {dtype} --repeats {repeats}"


def peaks(target: str, config: TargetConfig, problem: Problem, calls: dict[str, Call], memory: bool) -> dict:
    """Each implementation's peak bytes (None where not measured)."""
    if not memory:
        return dict.fromkeys(calls)
    if target == "jax":
        return {name: getattr(call, "memory_bytes", None) for name, call in calls.items()}
    with tempfile.TemporaryDirectory() as folder:
        save(os.path.join(folder, "problem.npz"), problem, (0.0, {}))
        Path(folder, "module.py").write_text(framework_source(config.model, "torch"), encoding="utf-8")
        return {name: torch_peak(config.model, name, folder) for name in calls}


def one_thread(target: str) -> None:
    """``THREADS`` for the library of ``target`` (XLA's flag only takes before jax is first imported)."""
    if target == "torch":
        import torch

        torch.set_num_threads(THREADS)
    elif "jax" not in sys.modules:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if THREADS == 1 else ""
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def count_products(result: TargetResult, calls: dict[str, Call]) -> dict[str, float]:
    """torch: each implementation's matrix products in one call (GFLOP), profiled once after the timed
    rounds; into ``result``, the ones the profiler cannot count and torch.mm's throughput (and oneDNN's,
    where an implementation ran oneDNN's kernel)."""
    if result.target != "torch":
        return {}
    gflop = {}
    for name, call in calls.items():
        flops, why = floor.product_flops(floor.profiled(call))
        if flops is None:
            result.uncounted[name] = why
        else:
            gflop[name] = flops / 1e9
    B, H = result.shape["B"], result.shape["H"]
    result.mm_gflops = floor.mm_gflops(B, H, result.dtype)
    if result.uncounted:
        result.onednn_gflops, result.onednn_missing = floor.onednn_gflops(B, H, result.dtype)
    return gflop


def at_mm(result: TargetResult, gflop: float | None) -> float | None:
    """Milliseconds that ``gflop`` of matrix products take at torch.mm's throughput here (None: not counted)."""
    return None if gflop is None or result.mm_gflops is None else gflop / result.mm_gflops * 1e3


def run_config(target: str, config: TargetConfig, dtype: str, repeats: int, memory: bool = True) -> TargetResult:
    """Check, time (interleaved rounds in this process), and measure the peak of each implementation; then
    (torch) profile each once for its matrix products' FLOPs and their floor (``count_products``)."""
    one_thread(target)
    watch = CpuWatch()
    module = load_module(framework_source(config.model, target), f"{config.model}_{target}")
    problem = make_problem(cell_for(config.model), *config.shape, dtype)
    want = answer(numpy_module(config.model), problem)
    how = "XLA memory_analysis: temporaries + outputs" if target == "jax" else "rise of the resident set over one call"
    result = TargetResult(
        target,
        config.name,
        config.model,
        dtype,
        dict(zip("VHTB", config.shape)),
        command(target, config.name, dtype, repeats),
        how,
    )
    calls, first, errors = warm_and_check(makers_for(target, config.model, module), problem, want, result.skipped)
    timings = time_rounds(calls, first, repeats)
    peak = peaks(target, config, problem, calls, memory)
    gflop = count_products(result, calls)
    base = statistics.median(timings["emitted"].times) if "emitted" in timings else float("nan")
    for name, timing in timings.items():
        med = statistics.median(timing.times)
        mb = None if peak[name] is None else peak[name] / 2**20
        g = gflop.get(name)
        result.rows.append(
            TargetRow(name, med * 1e3, len(timing.times), med / base, mb, errors[name], g, at_mm(result, g))
        )
    result.others_cpu = watch.others_share()
    return result


# --- the targets of issue 16, and the tables ---------------------------------------------------

FASTER = 1.5  # custom cells: the emitted module at least this much faster than plain autograd
LSTM_SLOWER = 1.2  # lstm, float32: the emitted module at most this much slower than torch.nn.LSTM


def _row(result: TargetResult, impl: str) -> TargetRow | None:
    return next((r for r in result.rows if r.impl == impl), None)


def verdicts(result: TargetResult) -> list[str]:
    """Each target of issue 16 this table speaks to: met or missed, with its figures."""
    emitted = _row(result, "emitted")
    if emitted is None:
        return []
    lines = []
    if result.target == "jax":
        other = _row(result, "autograd_loss")
        if other is not None:
            met = emitted.median_ms <= other.median_ms
            lines.append(
                f"target (no slower than jit(grad) of the plain forward): {'met' if met else 'MISSED'}, "
                f"{other.median_ms / emitted.median_ms:.2f}x"
            )
    elif result.model in CUSTOM:
        for impl in ("plain-autograd", "autograd_loss"):
            other = _row(result, impl)
            if other is None:
                continue
            speed = other.median_ms / emitted.median_ms
            lower = None if emitted.peak_mb is None or other.peak_mb is None else emitted.peak_mb < other.peak_mb
            met = speed >= FASTER and lower is not False
            memory = "" if lower is None else f", peak {emitted.peak_mb:.1f} vs {other.peak_mb:.1f} MB"
            lines.append(
                f"target (>= {FASTER}x faster than {impl}, lower peak): {'met' if met else 'MISSED'}, "
                f"{speed:.2f}x{memory}"
            )
    elif result.model == "lstm" and result.dtype == "float32":
        other = _row(result, "torch.nn.LSTM")
        if other is not None:
            slower = emitted.median_ms / other.median_ms
            lines.append(
                f"target (<= {LSTM_SLOWER}x torch.nn.LSTM's time): {'met' if slower <= LSTM_SLOWER else 'MISSED'}, "
                f"{slower:.2f}x"
            )
    return lines


def format_result(res: TargetResult) -> list[str]:
    s = res.shape
    lines = [
        f"\n{res.target}, {res.config}: {res.model} (V={s['V']}, H={s['H']}, T={s['T']}, B={s['B']}), {res.dtype}",
        f"  command: {res.command}",
        "  {:<16} {:>12} {:>4} {:>11} {:>11} {:>9}".format(
            "implementation", "median", "runs", "vs emitted", "peak", "error"
        ),
    ]
    if res.others_cpu is not None and res.others_cpu > 0.05:
        lines.insert(2, f"  DISTURBED: other processes used {100 * res.others_cpu:.0f}% of the CPUs meanwhile")
    for row in sorted(res.rows, key=lambda r: r.median_ms):
        peak = "-" if row.peak_mb is None else f"{row.peak_mb:.1f} MB"
        lines.append(
            f"  {row.impl:<16} {row.median_ms:>9.2f} ms {row.runs:>4} {row.ratio:>10.2f}x {peak:>11} {row.error:>9.1e}"
        )
    lines += [f"  {impl:<16} not run: {why}" for impl, why in res.skipped.items()]
    lines.append(f"  peak: {res.memory}")
    return lines + [f"  {line}" for line in verdicts(res) + floor_lines(res)]


def floor_lines(res: TargetResult) -> list[str]:
    """Each implementation's matrix products and the time they take at torch.mm's throughput here."""
    if res.mm_gflops is None:
        return []
    B, H = res.shape["B"], res.shape["H"]
    lines = [
        f"matrix products of one call (torch.profiler), at torch.mm's {res.mm_gflops:.1f} GFLOP/s "
        f"on ({B},{H})x({H},{H}) {res.dtype} here:"
    ]
    for row in sorted(res.rows, key=lambda r: r.median_ms):
        if row.gflop is None or row.floor_ms is None:
            lines.append(f"  {row.impl:<16} {res.uncounted.get(row.impl, 'not counted')}")
        else:
            lines.append(
                f"  {row.impl:<16} {row.gflop:.4g} GFLOP: {row.floor_ms:.1f} ms of its {row.median_ms:.1f} ms "
                f"({row.floor_ms / row.median_ms:.0%})"
            )
    if res.onednn_gflops is not None:
        lines.append(
            f"oneDNN (torch.ops.mkldnn._linear_pointwise) on the same product: {res.onednn_gflops:.1f} GFLOP/s, "
            f"{res.onednn_gflops / res.mm_gflops:.2f}x torch.mm's"
        )
    elif res.onednn_missing:
        lines.append(f"oneDNN: {res.onednn_missing}")
    return lines


def describe(target: str) -> str:
    """The library, as it reports itself (threads as this bench sets them)."""
    one_thread(target)
    return peers.describe_library(target) + ("" if target == "torch" else f", {THREADS} thread")


def main(
    target: str,
    names: list[str],
    dtypes: list[str] | None,
    repeats: int,
    json_path: str | None = None,
    memory: bool = True,
) -> str:
    """Run the configurations ``names`` for ``target`` in each dtype; the tables (and the JSON)."""
    results = [
        run_config(target, CONFIGS[n], dt, repeats, memory) for n in names for dt in (dtypes or ["float32", "float64"])
    ]
    lines = [
        describe(target),
        f"every implementation agrees with the NumPy module's float64 answer before it is timed "
        f"(max|a - b| / max|b|: {', '.join(f'{dt} {tol:g}' for dt, tol in AGREE_RTOL.items())})",
    ]
    for res in results:
        lines += format_result(res)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(
                {"target": target, "library": describe(target), "results": [asdict(r) for r in results]}, f, indent=2
            )
            f.write("\n")
    return "\n".join(lines)
