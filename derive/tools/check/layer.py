"""``bptt check`` of a layer: the cell without its output layer, under a readout loss.

A layer-style pair (``rnn_forward``/``rnn_backward``, ``TimeLSTM.forward``/``.backward``) computes
the states of every step and, given dJ/dh_t for every t, the gradients of the weights that make
the states.  It is checked as the cell whose output layer is replaced by
J_t = (1/2) |h_t - r_t|^2 for the state h that the output layer reads and a random real r_t: a
linear readout of every h_t, whose upstream gradient h_t - r_t the backward is given.  That cell
is derived and self-checked like any other, so the yardstick is the derivation's.
"""

from __future__ import annotations

import dataclasses

import sympy as sp

from derive.ir import naming
from derive.ir.cell import Cell, Equation, Target
from derive.ir.exprs import SquaredError
from derive.tools.check.load import CheckError


def readout_state(cell: Cell) -> str:
    """The state the output layer reads (h for the LSTM, not c); the first state if none is read."""
    states = [s.name for s in cell.states]
    for eq in cell.equations:
        if eq.name in cell.outputs:
            for symbol in eq.rhs.atoms(sp.MatrixSymbol):
                base, step = naming.split(symbol.name)
                if step == "t" and base in states:
                    return base
    return states[0]


def _free_name(cell: Cell, wanted: str) -> str:
    taken = set(cell.nodes) | set(cell.param_names) | {v.name for v in (*cell.inputs, *cell.targets)}
    return next(f"{wanted}{suffix}" for suffix in ("", "_up", "_readout") if f"{wanted}{suffix}" not in taken)


def layer_cell(cell: Cell) -> Cell:
    """``cell`` without its output layer, with J = squared_error(h, r) on its readout state h."""
    if len(cell.inputs) != 1:
        raise CheckError(f"{cell.name}: a layer is checked on a cell with one input (it has {len(cell.inputs)})")
    kept = tuple(eq for eq in cell.equations if eq.name not in cell.outputs)
    state = next(s for s in cell.states if s.name == readout_state(cell))
    target = Target(_free_name(cell, "r"), state.dim, "real")
    loss = Equation(_free_name(cell, "J"), SquaredError(state.at("t"), target.at("t")))
    used = {s.name for eq in kept for s in eq.rhs.atoms(sp.MatrixSymbol)}
    params = tuple(p for p in cell.params if p.name in used)
    return dataclasses.replace(
        cell,
        name=cell.name,  # its document's sections are the cell's (the suspects point there)
        title=f"{cell.title}, without its output layer",
        params=params,
        targets=(target,),
        equations=(*kept, loss),
        loss=loss.name,
        loss_mode="every",
        path="",
    )
