"""bptt bench --target torch: the matrix-product floor under each table, measured.

- ``profiled``: one call under torch.profiler (``with_flops=True``), the FLOPs of every op it ran.  In
  torch 2.13 the FLOPs of a matrix product sit on aten::mm / addmm / bmm / baddbmm (``PRODUCTS``:
  2 m k n each); aten::matmul and aten::linear, which call them, carry none, so nothing counts twice.
- ``product_flops``: their sum, or None where the call ran an op that multiplies matrices without
  reporting FLOPs (``OPAQUE``: oneDNN's RNN layer, which torch.nn.LSTM runs in float32), rather
  than a partial sum.
- ``mm_gflops``: torch.mm's throughput on the recurrence's product, (B, H) x (H, H), in the dtype,
  on the threads the bench set; ``onednn_gflops`` the same product through oneDNN
  (``torch.ops.mkldnn._linear_pointwise``), the library torch.nn.LSTM's float32 kernel uses.

The floor of an implementation is its products' FLOPs at torch.mm's throughput: the time its matrix
products alone would take, run as torch.mm runs them here.  The profiled call is not a timed one.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from functools import cache

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
OPAQUE = ("aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward")  # oneDNN: products, no FLOPs reported
ROUNDS = 7  # the throughput is the median of this many rounds
ROUND_S = 0.02  # seconds of calls in a round


def profiled(call: Callable[[], object]) -> Counter[str]:
    """Each op's FLOPs over one call, by torch.profiler (0 for an op that reports none)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        call()
    ops: Counter[str] = Counter()
    for event in prof.events():
        ops[event.name] += event.flops or 0
    return ops


def product_flops(ops: Counter[str]) -> tuple[int | None, str]:
    """The matrix products' FLOPs of a profiled call; None and why where the profiler cannot see them."""
    hidden = [name for name in OPAQUE if name in ops]
    if hidden:
        return None, f"not counted: oneDNN's {', '.join(hidden)} report{'s' if len(hidden) == 1 else ''} no FLOPs"
    return sum(ops[name] for name in PRODUCTS), ""


def seconds_per_call(f: Callable[[], object]) -> float:
    """The median over ``ROUNDS`` rounds of about ``ROUND_S`` each, after a warm call."""
    f()
    start = time.perf_counter()
    f()
    n = max(1, int(ROUND_S / max(time.perf_counter() - start, 1e-7)))
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(n):
            f()
        rounds.append((time.perf_counter() - start) / n)
    return statistics.median(rounds)


def _operands(B: int, H: int, dtype: str):
    import torch

    g = torch.Generator().manual_seed(0)
    kind = getattr(torch, dtype)
    return torch.randn(B, H, generator=g, dtype=kind), torch.randn(H, H, generator=g, dtype=kind)


@cache
def mm_gflops(B: int, H: int, dtype: str) -> float:
    """torch.mm's GFLOP/s on (B, H) x (H, H) here."""
    import torch

    h, U = _operands(B, H, dtype)
    out = torch.empty(B, H, dtype=h.dtype)
    return 2 * B * H * H / seconds_per_call(lambda: torch.mm(h, U, out=out)) / 1e9


@cache
def onednn_gflops(B: int, H: int, dtype: str) -> tuple[float | None, str]:
    """oneDNN's GFLOP/s on the same product (h U^T, as a Linear computes it); None and why where it cannot."""
    import torch

    h, U = _operands(B, H, dtype)
    try:
        linear = torch.ops.mkldnn._linear_pointwise
        linear(h, U, None, "none", [], "")
    except (AttributeError, RuntimeError) as e:
        return None, f"torch.ops.mkldnn._linear_pointwise unavailable in {dtype}: {str(e).splitlines()[0]}"
    return 2 * B * H * H / seconds_per_call(lambda: linear(h, U, None, "none", [], "")) / 1e9, ""
