"""``bptt check``: what the user's code returned (or left on its object), read in the cell's terms.

Gradients are matched to the code's weight blocks by name first (a dict's keys, or the names in
the function's ``return`` statement: ``return loss, dWxh, dWhh``), then by shape, in order.  A
named value that is not a gradient (``hs[-1]`` returned as ``h``) is never taken for one by its
shape.  Where two blocks have the same shape and only the order tells them apart, the report says
so.  A gradient whose shape is not its block's is kept, for the diagnosis to name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from derive.ir import naming
from derive.ir.cell import Cell
from derive.tools.check import bind, weights
from derive.tools.check.code import Code, Form
from derive.tools.check.load import CheckError
from derive.tools.check.problem import Grads, Problem


def is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def flatten(value: Any, names: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """The values a call returned, one level into tuples, lists and dicts: (key or name or "", value);
    ``names`` the names the ``return`` statement gives a tuple's elements ("" where it gives none)."""
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if not isinstance(value, (tuple, list)):
        return [(names[0] if len(names) == 1 else "", value)]
    names = names if len(names) == len(value) else ("",) * len(value)
    out: list[tuple[str, Any]] = []
    for name, v in zip(names, value):
        if isinstance(v, dict):
            out += [(str(k), x) for k, x in v.items()]
        elif isinstance(v, (tuple, list)) and v and all(is_array(x) for x in v):
            out += [("", x) for x in v]
        else:
            out.append((name, v))
    return out


def loss_of(returned: list[tuple[str, Any]]) -> float | None:
    """The first real scalar returned: the loss."""
    for _, v in returned:
        if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            return float(v)
        if is_array(v) and v.size == 1:
            return float(v.reshape(()))
    return None


def gradients(
    code: Code, returned: list[tuple[str, Any]], problem: Problem, form: Form, others: dict[str, tuple[int, ...]]
) -> tuple[Grads, Grads, Grads]:
    """(the parameters' gradients found by name, those found by shape, the ``others``' (the inputs
    x, initial states h0, ..., by the shapes given) found by name or shape)."""
    named: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    unnamed: list[np.ndarray] = []
    for key, v in returned:
        name = weights.plain_name(key) if key else ""
        if name in code.blocks and not is_array(v):
            raise CheckError(f"{code.label}: its gradient {key} is not an array of real numbers (a {type(v).__name__})")
        if not is_array(v):
            continue
        g = np.asarray(v, dtype=float)
        if name in code.blocks:
            named.setdefault(name, g)
        elif key and (other := _other_by_name(name, others, code.cell)) is not None:
            extra.setdefault(other, g)
        elif not key:
            unnamed.append(g)
    by_shape = _by_shape(code, unnamed, problem, form, set(named), others, extra)
    return cut(code, named, problem, form), cut(code, by_shape, problem, form), extra


def _by_shape(
    code: Code,
    arrays: list[np.ndarray],
    problem: Problem,
    form: Form,
    found: set[str],
    others: dict[str, tuple[int, ...]],
    extra: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Unnamed arrays matched to the blocks not found by name, by shape, in order; then to ``others``."""
    shapes = {u: code.weight(u, problem, form).shape for u in code.blocks if u not in found}
    out: dict[str, np.ndarray] = {}
    left: list[np.ndarray] = []
    for g in arrays:
        fits = [u for u in shapes if u not in out and _fits(g, shapes[u])]
        if fits:
            out[fits[0]] = g
            same = [u for u in shapes if shapes[u] == shapes[fits[0]]]
            if len(same) > 1:
                code.note(f"{', '.join(same)}: their gradients read by their order (their shapes are equal)")
            continue
        o = next((o for o in others if o not in extra and g.shape == others[o]), None)
        if o is not None:
            extra[o] = g
        else:
            left.append(g)
    unclaimed = [u for u in shapes if u not in out]
    if left and len(left) == len(unclaimed) and all(a.ndim <= 2 for a in left):  # shapes not the blocks': WRONG, named
        out.update(zip(unclaimed, left))
    return out


def _other_by_name(name: str, others: dict[str, tuple[int, ...]], cell: Cell) -> str | None:
    if "x" in others and bind.role_of(name, cell, set()) == bind.Arg(name, "inputs"):
        return "x"
    index = bind.state_index(name, cell)
    if index is not None and naming.initial_arg(cell.states[index].name) in others:
        return naming.initial_arg(cell.states[index].name)
    return None


def _fits(g: np.ndarray, shape: tuple[int, ...]) -> bool:
    return g.shape == shape or (
        len(shape) <= 2 and 1 in shape + g.shape and g.size == int(np.prod(shape)) and g.ndim <= 2
    )


def cut(code: Code, found: dict[str, np.ndarray], problem: Problem, form: Form) -> Grads:
    """The user's gradients of its arrays, cut into the cell's parameters; an array whose shape is
    not its block's is kept whole for each parameter of the block (the diagnosis names the shapes)."""
    out: dict[str, np.ndarray] = {}
    for u, g in found.items():
        block = code.blocks[u]
        parts = weights.split(code.cell, block, form.blocks, g, problem.params)
        out.update(parts if parts else {p: g for p in block.params})
    return out


def left_on(obj: Any, code: Code, problem: Problem, form: Form) -> Grads:
    """Gradients the code left on its object: a ``grads`` list beside ``params``, the gradients handed
    to its optimizers, or attributes named for the weights (dWx, Wx_grad, grad_Wx, Wx_diff)."""
    found: dict[str, np.ndarray] = {}
    params, grads = getattr(obj, "params", None), getattr(obj, "grads", None)
    if isinstance(params, (list, tuple)) and isinstance(grads, (list, tuple)) and len(params) == len(grads):
        for p, g in zip(params, grads):
            if id(p) in code.given and is_array(g):
                found[code.given[id(p)]] = np.asarray(g, dtype=float).copy()
    for name, recorder in code.recorders.items():
        if recorder.grad is not None and name not in found:
            found[name] = recorder.grad
    for attr, value in vars(obj).items() if hasattr(obj, "__dict__") else ():
        name = weights.plain_name(attr)
        if name != attr and name in code.blocks and name not in found and is_array(value):
            found[name] = np.asarray(value, dtype=float).copy()
    return cut(code, found, problem, form)
