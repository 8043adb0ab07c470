"""The models and configurations the benchmark runs, and the generated module of each.

A model is a cell (the generated module comes from it), the list of its matrix products (from
its maths, for the GEMM floor), and the hand-written NumPy implementations timed beside the
generated one in this process.  Its peers (other libraries, each in a process of its own) are
in ``peers.PEERS``.  A configuration is a model at (V, H, T, B): n_x = n_y = V.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.ir.cell import Cell, load_builtin, seed_rnn
from derive.tools.bench import gru, lstm, seed
from derive.tools.bench.measure import Product
from derive.tools.bench.problem import Maker, function_maker
from derive.verify.oracles.rnn import reference_loss_and_gradients
from derive.verify.report import load_module

REFERENCE_MAX = 50 * 50 * 32  # T^2 B: the reference loop takes ~5 s at M and minutes at L


@dataclass(frozen=True)
class Model:
    name: str
    cell: Callable[[], Cell]
    products: Callable[[int, int, int, int], list[Product]]  # (V, H, T, B) -> the products of one call
    experts: dict[str, Maker]  # hand-written NumPy, timed in this process
    dtypes: tuple[str, ...]  # the default run's
    gates: int = 1  # G of flops.flops
    reference: Maker | None = field(default=None)  # the project's reference loop, O(T^2) per sequence


MODELS: dict[str, Model] = {
    "seed": Model(
        "seed",
        seed_rnn,
        seed.products,
        {
            "min-char-rnn": function_maker(seed.min_char_rnn),
            "allocating-numpy": function_maker(seed.allocating_numpy),
            "strong-numpy": seed.strong_numpy,
        },
        ("float64",),
        reference=function_maker(reference_loss_and_gradients),
    ),
    "lstm": Model(
        "lstm",
        lambda: load_builtin("lstm"),
        lstm.products,
        {"strong-numpy": lstm.strong_numpy},
        ("float64", "float32"),
        lstm.GATES,
    ),
    "gru": Model(
        "gru",
        lambda: load_builtin("gru"),
        gru.cho_products,
        {"strong-numpy": gru.strong_cho},
        ("float64", "float32"),
        gru.GATES,
    ),
    "gru-torch": Model(
        "gru-torch",
        gru.torch_cell,
        gru.torch_products,
        {"strong-numpy": gru.strong_torch_gru},
        ("float64", "float32"),
        gru.GATES,
    ),
}


@dataclass(frozen=True)
class Config:
    name: str
    model: str
    V: int
    H: int
    T: int
    B: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.V, self.H, self.T, self.B


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        Config("S", "seed", 3, 3, 3, 1),
        Config("K", "seed", 65, 100, 25, 1),
        Config("M", "seed", 65, 256, 50, 32),
        Config("L", "seed", 128, 512, 100, 64),
        Config("LSTM-M", "lstm", 65, 128, 50, 32),
        Config("LSTM-L", "lstm", 65, 256, 100, 64),
        Config("GRU-M", "gru", 65, 128, 50, 32),  # the built-in gru: Cho et al.'s
        Config("GRU-L", "gru", 65, 256, 100, 64),
        Config("TGRU-M", "gru-torch", 65, 128, 50, 32),  # torch.nn.GRU's formula (gru_torch.cell)
        Config("TGRU-L", "gru-torch", 65, 256, 100, 64),
    )
}


@cache
def cell_for(model: str) -> Cell:
    return MODELS[model].cell()


@cache
def module_for(model: str, steps: int) -> types.ModuleType:
    """The generated module of a model's cell, derived for ``steps`` (its fast path takes any T)."""
    return load_module(module_source(derive(cell_for(model), steps)), f"{model}_T{steps}")
