"""The unrolled network as a TikZ picture, with the chain-rule path of one term drawn in red.

A column per step (the initial state at step 0), a row per node of the cell in the cell's order
(the inputs below, the loss on top), an arrow from each argument to the node that reads it.  The
highlighted term is the longest path from the last loss J_T to a recurrent weight (one that
multiplies the previous state), the term the origin post's reader finds hardest to write: it
crosses every step.  Drawn for at most DIAGRAM_MAX_STEPS steps, so that it stays legible.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from . import naming
from .cell import Cell
from .chain import Factor, paths
from .printing import latex
from .unroll import Unrolled, unroll

DIAGRAM_MAX_STEPS = 4
X_CM = 2.4  # between steps
Y_CM = 1.15  # between rows


@dataclass(frozen=True)
class Diagram:
    steps: int  # the steps drawn
    wrt: str  # the weight the highlighted term differentiates
    path: tuple[Factor, ...]  # the highlighted term, J_T first
    tikz: tuple[str, ...]  # the lines inside the tikzpicture


def _label(name: str) -> str:
    return latex(sp.MatrixSymbol(name, 1, 1))


def _recurrent_weight(cell: Cell) -> str | None:
    """The first parameter that multiplies a previous state: W_hh in W_hh h[t-1]."""
    previous = {naming.step_name(s.name, "t-1") for s in cell.states}
    for eq in cell.equations:
        for mm in eq.rhs.atoms(sp.MatMul):
            names = [a.name for a in mm.args if isinstance(a, sp.MatrixSymbol)]
            if any(n in previous for n in names):
                for n in names:
                    if n in cell.param_names:
                        return n
    return None


def _highlighted(unrolled: Unrolled, cell: Cell) -> tuple[str, tuple[Factor, ...]]:
    top = naming.step_name(cell.loss, unrolled.steps)
    weights = [w for w in [_recurrent_weight(cell)] if w] or list(cell.param_names)
    best: tuple[str, tuple[Factor, ...]] = (weights[0], ())
    for w in weights:
        found = paths(unrolled, top, w)
        if found and len(found[-1]) > len(best[1]):
            best = (w, found[-1])  # shortest first: the last is a longest
    return best


def diagram(cell: Cell, steps: int) -> Diagram:
    shown = min(steps, DIAGRAM_MAX_STEPS)
    unrolled = unroll(cell, shown)
    wrt, path = _highlighted(unrolled, cell)
    rows = {v.name: -i for i, v in enumerate(cell.inputs)}  # one row each, below the cell's nodes
    rows.update({eq.name: i + 1 for i, eq in enumerate(cell.equations)})
    drawn: dict[str, str] = {}  # graph name: TikZ node name
    lines = []

    def node(name: str) -> str | None:
        base, step = naming.split(name)
        if step is None or base not in rows:  # a parameter, or a target: not drawn
            return None
        if name not in drawn:
            drawn[name] = f"n{len(drawn)}"
            x, y = int(step) * X_CM, rows[base] * Y_CM
            lines.append(rf"\node[var] ({drawn[name]}) at ({x:.2f}, {y:.2f}) {{${_label(name)}$}};")
        return drawn[name]

    for lhs, _ in unrolled.equations:
        node(lhs.name)
    on_path = {(f.den, f.num) for f in path}
    for lhs, _ in unrolled.equations:
        for arg in unrolled.deps[lhs.name]:
            a, b = node(arg), node(lhs.name)
            if a is None or b is None:
                continue
            same_column = naming.split(arg)[1] == naming.split(lhs.name)[1]
            skip = abs(rows[naming.split(arg)[0]] - rows[naming.split(lhs.name)[0]]) > 1
            bend = " to[bend left=25]" if same_column and skip else " --"
            style = "edge, path" if (arg, lhs.name) in on_path else "edge"
            lines.append(rf"\draw[{style}] ({a}){bend} ({b});")
    if path:  # where the weight enters: a label under the last node of the path
        entry = drawn.get(path[-1].num)
        if entry is not None:
            lines.append(rf"\node[enters] at ({entry}.east) {{$\leftarrow {naming.latex_name(wrt)}$}};")
    return Diagram(shown, wrt, path, tuple(lines))


def path_text(d: Diagram) -> str:
    """The highlighted term in the document's notation: J_4 -> p_4 -> ... -> z_1."""
    names = [d.path[0].num] + [f.den for f in d.path]
    return r" \to ".join(_label(n) if naming.split(n)[1] is not None else naming.latex_name(n) for n in names)
