"""Stage 6a: print a derivation into the strings the NumPy module template lays out.

Two implementations come out of one derivation:

- the fast path: the cell's equations in a loop over t on (B, n) row-vector
  batches, then the program of ``adjoint`` in a loop from T down to 1;
- the by-definition path: the unrolled equations for the derived T on (n, 1)
  column vectors, every local Jacobian as an explicit matrix, and every
  chain-rule term of ``chain`` as a literal product, one block per (w, J_t).

Everything here is printing; the template only places the strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sympy as sp

from . import naming
from .adjoint import Program
from .analytic import factor_matrix
from .cell import Cell
from .chain import Term
from .exprs import CrossEntropy, Outer, Softmax, SoftmaxCrossEntropy
from .pipeline import Derivation
from .printing import BatchedPrinter, ColumnPrinter, text
from .unroll import Unrolled


@dataclass(frozen=True)
class Line:
    code: str
    comment: str = ""
    last_only: bool = False  # many-to-one: runs at the last step only


def runs(lines: tuple[Line, ...]) -> tuple[tuple[bool, tuple[Line, ...]], ...]:
    """Consecutive lines grouped by ``last_only``, for the template's ``if t == T:`` blocks."""
    out: list[tuple[bool, list[Line]]] = []
    for line in lines:
        if out and out[-1][0] == line.last_only:
            out[-1][1].append(line)
        else:
            out.append((line.last_only, [line]))
    return tuple((flag, tuple(group)) for flag, group in out)


def _last_only(cell: Cell, names: set[str]) -> bool:
    """True for a many-to-one cell when everything in ``names`` is an output (computed at T only)."""
    return cell.loss_mode == "last" and bool(names) and names <= cell.outputs


@dataclass(frozen=True)
class Block:
    """Lines under one comment header."""

    header: str
    lines: tuple[Line, ...]


def _dim(shape_rows: sp.Expr) -> str:
    return "1" if shape_rows == 1 else str(shape_rows)


def _code_loss(derivation: Derivation, rhs: sp.Basic) -> sp.Basic:
    """The loss as code computes it: cross_entropy(softmax(y)) from the logits, stably."""
    cell = derivation.cell
    if isinstance(rhs, CrossEntropy) and isinstance(rhs.p, Softmax):  # cross_entropy(softmax(y), l)
        return SoftmaxCrossEntropy(rhs.p.arg, rhs.target)
    if isinstance(rhs, CrossEntropy) and isinstance(rhs.p, sp.MatrixSymbol):
        base = naming.split(rhs.p.name)[0]
        producer = next((e for e in cell.equations if e.name == base), None)
        if producer is not None and isinstance(producer.rhs, Softmax):
            return SoftmaxCrossEntropy(producer.rhs.arg, rhs.target)  # the loss and p are both at step t
    return rhs


def fast_forward(derivation: Derivation) -> tuple[Line, ...]:
    """The loop body of the forward pass, the line adding J_t to the loss included."""
    cell = derivation.cell
    printer = BatchedPrinter()
    lines = []
    for eq in cell.equations:
        lhs = sp.MatrixSymbol(naming.step_name(eq.name, "t"), *eq.shape)
        comment = f"{text(lhs)} = {text(eq.rhs)}"
        last = _last_only(cell, {eq.name})
        if eq.name == cell.loss:
            lines.append(Line(f"loss += {printer.doprint(_code_loss(derivation, eq.rhs))}", comment, last))
        else:
            code = f"{printer.doprint(lhs)} = {printer.doprint(eq.rhs)}"
            lines.append(Line(code, f"{comment}  (B, {_dim(eq.shape[0])})", last))
    return tuple(lines)


def fast_backward(program: Program) -> tuple[tuple[Line, ...], tuple[Line, ...], tuple[Line, ...]]:
    """(delta assignments, gradient accumulations, state carries) of one backward step."""
    # the deltas of step t live in locals (dz), everything else in arrays indexed by step (h[t])
    printer = BatchedPrinter({a.target.name: naming.code_local(naming.grad_name(a.node)) for a in program.assigns})
    assigns = []
    for a in program.assigns:
        code = printer.doprint(a.expr)
        comment = f"{text(a.target)} = {text(a.expr)}"
        if a.carried is not None:
            carried = program.carried_into(a.node)
            code = f"{code} + {carried_local(a.node)}"
            comment += f" + {text(carried)}"
        assigns.append(Line(f"{printer.doprint(a.target)} = {code}", comment, _last_only(program.cell, {a.node})))
    accs = []
    for acc in program.accumulates:
        code = printer.doprint(acc.expr)
        if program.cell.param(acc.wrt).symbol.shape[1] == 1:  # a bias: its (B, n) rows summed over the batch
            code = f"{code}.sum(axis=0)" if code.isidentifier() else f"({code}).sum(axis=0)"
        users = {eq.name for eq in program.cell.equations if eq.rhs.has(program.cell.param(acc.wrt).symbol)}
        last = _last_only(program.cell, users)
        accs.append(Line(f"{grad_local(acc.wrt)} += {code}", f"dJ/d{acc.wrt} += {text(acc.expr)}", last))
    carries = tuple(
        Line(f"{carried_local(c.state)} = {printer.doprint(c.expr)}", f"share of dJ/d{c.state}_{{t-1}}: {text(c.expr)}")
        for c in program.carries
    )
    return tuple(assigns), tuple(accs), carries


def carried_local(state: str) -> str:
    return f"d{state}_next"


def grad_local(wrt: str) -> str:
    return naming.code_local(naming.grad_name(wrt))


# ---- by definition ---------------------------------------------------------------


def _unrolled(derivation: Derivation) -> Unrolled:
    if derivation.unrolled is None:
        raise ValueError(
            f"the by-definition code is written for T <= {derivation.expandable}, not T = {derivation.steps}"
        )
    return derivation.unrolled


def definition_forward(derivation: Derivation) -> tuple[Line, ...]:
    printer = ColumnPrinter()
    out = []
    for lhs, rhs in _unrolled(derivation).equations:
        shape = "scalar" if lhs.shape == (1, 1) else f"({_dim(lhs.shape[0])}, 1)"
        out.append(Line(f"{printer.doprint(lhs)} = {printer.doprint(rhs)}", shape))
    return tuple(out)


def definition_jacobians(derivation: Derivation) -> tuple[Line, ...]:
    """Every local Jacobian any term uses, once, in the order first used."""
    printer = ColumnPrinter()
    seen: dict[tuple[str, str], Line] = {}
    for expansion in derivation.expansions.values():
        for term in expansion.terms:
            for f in term.factors:
                key = (f.num, f.den)
                if key in seen:
                    continue
                matrix = factor_matrix(_unrolled(derivation), f)
                if isinstance(matrix, Outer):
                    continue
                shape = f"({_dim(matrix.shape[0])}, {_dim(matrix.shape[1])})"
                seen[key] = Line(f"{naming.jacobian_local(f.num, f.den)} = {printer.doprint(matrix)}", shape)
    return tuple(seen.values())


def _term_code(derivation: Derivation, term: Term) -> str:
    """The term as a product of the Jacobian locals, made the shape of what it differentiates."""
    factors = term.factors
    last = factor_matrix(_unrolled(derivation), factors[-1])
    chain = factors[:-1] if isinstance(last, Outer) else factors
    parts = [naming.jacobian_local(f.num, f.den) for f in chain]
    if isinstance(last, Outer) and not isinstance(last.left, sp.Identity):
        parts.append(ColumnPrinter().operand(last.left))
    row = " @ ".join(parts) or "np.ones((1, 1))"  # J_t = w v itself: dJ_t/dJ_t = 1
    if isinstance(last, Outer):
        return f"({row}).T @ {ColumnPrinter().doprint(sp.Transpose(last.right))}"
    return f"({row}).T"


def definition_terms(derivation: Derivation) -> tuple[Block, ...]:
    blocks = []
    for wrt, expansion in derivation.expansions.items():
        for terms in expansion.per_loss:
            if not terms:
                continue
            t = terms[0].loss_step
            lines = []
            initial = wrt not in derivation.cell.param_names
            for term in terms:
                path = " ".join(f"d{naming.text_name(f.num)}/d{naming.text_name(f.den)}" for f in term.factors)
                label = path if initial else f"k = {term.entry_step}: {path}"
                lines.append(Line(f"{grad_local(wrt)} += {_term_code(derivation, term)}", label))
            header = f"dJ_{t}/d{naming.text_name(wrt)}: {len(terms)} term{'s' if len(terms) > 1 else ''}"
            blocks.append(Block(header, tuple(lines)))
    return tuple(blocks)


def _py_tuple(names: tuple[str, ...]) -> str:
    """A tuple literal of strings in double quotes: ``("W_xh", "W_hh")``."""
    inner = ", ".join(f'"{n}"' for n in names)
    return f"({inner},)" if len(names) == 1 else f"({inner})"


def module_context(derivation: Derivation, command: str) -> dict[str, Any]:
    """Everything ``templates/module.py.j2`` places, already printed."""
    cell = derivation.cell
    forward = fast_forward(derivation)
    backward, accumulate, carry = fast_backward(derivation.program)
    state = cell.states[0]
    printer = ColumnPrinter()
    step_inputs, losses = [], ""
    if derivation.expanded:
        for t in range(1, derivation.steps + 1):
            for v in cell.inputs:
                step_inputs.append(f"{printer.doprint(v.at(t))} = {naming.code_base(v.name)}[{t}]")
            if t in cell.loss_steps(derivation.steps):
                for v in cell.targets:
                    step_inputs.append(f"{printer.doprint(v.at(t))} = {naming.code_base(v.name)}[{t}]")
        losses = " + ".join(printer.doprint(j) for j in _unrolled(derivation).losses)
    expanded = derivation.expanded
    target = cell.targets[0]
    sizes: dict[str, str] = {}
    for p in cell.params:
        for i, d in enumerate(p.shape):
            sizes.setdefault(d, f"n_{d} = {p.name}.shape[{i}]")
    zero_deltas = [  # many-to-one: the outputs' deltas, zero before step T
        {"name": line.code.split(" = ")[0], "dim": cell.nodes[a.node].dim}
        for a, line in zip(derivation.program.assigns, backward)
        if line.last_only
    ]
    context: dict[str, Any] = {
        "input_code": naming.code_base(cell.inputs[0].name),
        "target_code": naming.code_base(target.name),
        "target_kind": target.kind,
        "target_arg": "labels" if target.kind == "class" else "targets",
        "dim_names": _py_tuple(tuple(f"n_{d}" for d in cell.dims)),
        "size_lines": [sizes[d] for d in cell.dims if d in sizes],
        "by_definition": expanded,
        "expanded_max": derivation.expandable,
        "cell": cell,
        "steps": derivation.steps,
        "command": command,
        "equations": [
            f"{text(sp.MatrixSymbol(naming.step_name(e.name, 't'), *e.shape))} = {text(e.rhs)}" for e in cell.equations
        ],
        "param_names": _py_tuple(cell.param_names),
        "params": [
            {"name": p.name, "shape": _py_tuple(tuple(f"n_{d}" for d in p.shape)), "grad": grad_local(p.name)}
            for p in cell.params
        ],
        "input": cell.inputs[0],
        "target": cell.targets[0],
        "state": state,
        "nodes": [cell.nodes[e.name] for e in cell.equations if e.name != cell.loss],
        "forward": forward,
        "backward": backward,
        "accumulate": accumulate,
        "forward_runs": runs(forward),
        "backward_runs": [
            (last, lines, [z for z in zero_deltas if any(line.code.startswith(z["name"] + " = ") for line in lines)])
            for last, lines in runs(backward + accumulate)
        ],
        "loss_last": cell.loss_mode == "last",
        "zero_deltas": zero_deltas,
        "carry": carry,
        "carries": [{"name": carried_local(s.name), "dim": s.dim} for s in cell.states],
        "step_inputs": step_inputs,
        "def_forward": definition_forward(derivation) if expanded else (),
        "def_loss": losses,
        "def_jacobians": definition_jacobians(derivation) if expanded else (),
        "def_terms": definition_terms(derivation) if expanded else (),
    }
    code = "\n".join(
        line.code
        for group in ("forward", "backward", "accumulate", "carry", "def_forward", "def_jacobians")
        for line in context[group]
    )
    context["uses"] = sorted(h for h in ("_sigmoid", "_relu", "_step", "_squared_error") if h + "(" in code)
    by_definition = "\n".join(line.code for group in ("def_forward", "def_jacobians") for line in context[group])
    by_definition += "\n".join(line.code for block in context["def_terms"] for line in block.lines)
    context["size_lines"] = [
        line for line in context["size_lines"] if re.search(rf"\b{line.split()[0]}\b", by_definition)
    ]
    return context
