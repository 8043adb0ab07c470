"""Stage 6b: print a derivation into what a framework module's template lays out.

The passes come from ``scan``; the rest (names, shapes, arguments) is the NumPy module's, so
that the three targets share one contract: ``PARAMS``, ``SHAPES``, ``init_params``, ``loss``,
``loss_and_gradients``.
"""

from __future__ import annotations

import re
from typing import Any

from derive.derivation.pipeline import Derivation
from derive.emit.frameworks.scan import Framework, Scans, rows_name, scans
from derive.emit.numpy.codegen import contract
from derive.ir import naming
from derive.ir.cell import Cell

TORCH = Framework("torch", lengths=True, into=True)
JAX = Framework("jax")
FRAMEWORKS = {f.name: f for f in (TORCH, JAX)}
TARGETS = ("numpy", *FRAMEWORKS)  # bptt emit --target
TEMPLATES = {"torch": "torch_module.py.j2", "jax": "jax_module.py.j2"}

# the helpers a framework module defines only where its code calls them
OPTIONAL_HELPERS = (
    "_squared_error",
    "_binary_cross_entropy",
    "_sigmoid_binary_cross_entropy",
    "_softmax_cross_entropy_at",
    "_softmax_cross_entropy",
    "_cross_entropy_at",
    "_cross_entropy",
    "_log_softmax",
    "_softmax",
    "_onehot",
    "_total",
    "_at_last",
    "_step",
)


def tuple_code(names: list[str] | tuple[str, ...]) -> str:
    """A tuple display: ``(a,)``, ``(a, b)``."""
    return f"({names[0]},)" if len(names) == 1 else f"({', '.join(names)})"


def _io_rows(cell: Cell) -> list[str]:
    """The forward pass's input and target arguments: rows (T * B, n), a many-to-one target (B, n)."""
    last = cell.loss_mode == "last"
    return [rows_name(v.name) for v in cell.inputs] + [
        naming.code_base(v.name) if last else rows_name(v.name) for v in cell.targets
    ]


def _passes(derivation: Derivation, plan: Scans) -> dict[str, Any]:
    cell = derivation.cell
    io = _io_rows(cell)
    initial = [naming.initial_arg(s.name) for s in cell.declared_states]
    # the backward pass finds B in the first initial state and T in the first input's rows
    saved = list(dict.fromkeys([*initial, io[0], *plan.saved]))
    return {
        "forward": plan.forward,
        "backward": plan.backward,
        "io_rows": io,
        "saved": saved,
        "previous": plan.previous,
        "initial_grads": plan.initial_grads,
        "run": plan.run,
        "grads": [naming.grad_local(p) for p in cell.param_names] + [carry for _, carry in plan.initial_grads],
    }


def _uses(plan: Scans) -> list[str]:
    lines = [*plan.forward.pre, *plan.forward.loop.body, *plan.forward.post]
    lines += [*plan.backward.pre, *plan.backward.loop.body, *plan.backward.post]
    if plan.run is not None:
        lines += [*plan.run.body]
    code = "\n".join(line.code for line in lines) + "\n".join(c.initial for c in plan.backward.loop.carries)
    return [h for h in OPTIONAL_HELPERS if re.search(rf"(?<![\w.]){h}\(", code)]  # _softmax( is not _log_softmax(


def module_context(derivation: Derivation, framework: Framework, command: str) -> dict[str, Any]:
    """Everything a framework module's template places, already printed."""
    cell = derivation.cell
    plan = scans(derivation, framework)
    return {
        **contract(derivation, command),
        "framework": framework.name,
        "truncate": derivation.truncate,
        "param_names_list": list(cell.param_names),
        **_passes(derivation, plan),
        "uses": _uses(plan),
    }
