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
from .chain import Blocks, Factor, Term, move_paths, stacked_name
from .exprs import CrossEntropy, Elementwise, Outer, Softmax, SoftmaxCrossEntropy
from .pipeline import Derivation
from .printing import BatchedPrinter, ColumnPrinter, text
from .unroll import Unrolled


@dataclass(frozen=True)
class Line:
    code: str
    comment: str = ""


@dataclass(frozen=True)
class Block:
    """Lines under one comment header."""

    header: str
    lines: tuple[Line, ...]


def _dim(shape_rows: sp.Expr) -> str:
    return "1" if shape_rows == 1 else str(shape_rows)


def _code_loss(derivation: Derivation, rhs: sp.Basic) -> sp.Basic:
    """The loss as code computes it: each cross_entropy(softmax(y)) from the logits, stably
    (in a weighted sum of losses too)."""
    cell = derivation.cell
    softmax_of = {naming.step_name(e.name, "t"): e.rhs for e in cell.equations if isinstance(e.rhs, Softmax)}
    fused = {}
    for ce in rhs.atoms(CrossEntropy) | ({rhs} if isinstance(rhs, CrossEntropy) else set()):
        if isinstance(ce.p, Softmax):  # cross_entropy(softmax(y), l)
            fused[ce] = SoftmaxCrossEntropy(ce.p.arg, ce.target)
        elif isinstance(ce.p, sp.MatrixSymbol) and ce.p.name in softmax_of:  # p = softmax(y) at step t
            fused[ce] = SoftmaxCrossEntropy(softmax_of[ce.p.name].arg, ce.target)
    return rhs.xreplace(fused)


def _summed(code: str, bias: bool) -> str:
    """A bias's gradient: the (B, n) rows summed over the batch."""
    if not bias:
        return code
    return f"{code}.sum(axis=0)" if code.isidentifier() else f"({code}).sum(axis=0)"


def _paren(code: str) -> str:
    return code if code.isidentifier() else f"({code})"


def truncated_backward(program: Program) -> tuple[tuple[Line, ...], tuple[Line, ...], list[dict[str, str]]]:
    """One step of a truncated run (for the loss J_s, s = loss_t): its deltas and accumulations,
    its state carries, and the zero arrays it reads.  The deltas of step t live in locals (dz).

    Below step s the run carries J_s alone: a delta or gradient that J_t reads directly
    keeps that share (``direct``) at t == loss_t only, and its ``through`` part elsewhere; the
    outputs (y, p: what only the loss reads) have no delta below step s at all."""
    cell = program.cell
    printer = BatchedPrinter({a.target.name: naming.code_local(naming.grad_name(a.node)) for a in program.assigns})
    lines, zeros = [], []
    for a in program.assigns:
        target = printer.doprint(a.target)
        full, comment = printer.doprint(a.expr), f"{text(a.target)} = {text(a.expr)}"
        through = None if isinstance(a.through, sp.ZeroMatrix) else printer.doprint(a.through)
        if a.carried is not None:
            full, comment = f"{full} + {carried_local(a.node)}", comment + f" + {text(program.carried_into(a.node))}"
            through = carried_local(a.node) if through is None else f"{through} + {carried_local(a.node)}"
        output = a.node in cell.outputs
        if a.direct is None and not output:
            lines.append(Line(f"{target} = {full}", comment))
            continue
        if through is None or output:  # nothing reaches this node below step s: a zero array
            through = f"{target}_zero"
            zeros.append({"name": target, "dim": cell.nodes[a.node].dim})
        line = f"{target} = {_paren(full)} if t == loss_t else {_paren(through)}"
        lines.append(Line(line, comment + " (J_s's own at t = s)"))
    for acc in program.accumulates:
        code = printer.doprint(acc.expr)
        comment = f"dJ/d{acc.wrt} += {text(acc.expr)}"
        psym = cell.param(acc.wrt).symbol
        bias = psym.shape[1] == 1
        users = {eq.name for eq in cell.equations if eq.rhs.has(psym)}
        output = users <= cell.outputs  # read by the outputs alone: W_y
        through = None if isinstance(acc.through, sp.ZeroMatrix) or output else printer.doprint(acc.through)

        if acc.direct is None and not output:
            lines.append(Line(f"{grad_local(acc.wrt)} += {_summed(code, bias)}", comment))
        else:
            other = "0" if through is None else _paren(_summed(through, bias))
            line = f"{grad_local(acc.wrt)} += {_paren(_summed(code, bias))} if t == loss_t else {other}"
            lines.append(Line(line, comment + " (J_s's own at t = s)"))
    carries = tuple(
        Line(f"{carried_local(c.state)} = {printer.doprint(c.expr)}", f"share of dJ/d{c.state}_{{t-1}}: {text(c.expr)}")
        for c in program.carries
    )
    return tuple(lines), carries, zeros


def carried_local(state: str) -> str:
    return f"d{state}_next"


def initial_arg(state: str) -> str:
    """The argument and gradient key of an initial state: ``h0`` for the state h."""
    return f"{state}0"


def grad_local(wrt: str) -> str:
    return naming.code_local(naming.grad_name(wrt))


# ---- the fast path, hoisted: only the recurrence loops over t --------------------------


class AllStepsPrinter(BatchedPrinter):
    """Row-wise NumPy over every step at once: ``h@t`` is ``_rows(h)``, the (T * B, n) view of
    h[1:], and ``h@t-1`` is ``_rows(h, 1)``, the view of h[:-1].  The batched code is row by row
    (a product's reduction over rows sums the batch), so over T * B rows it sums the steps too."""

    def _print_MatrixSymbol(self, expr: sp.MatrixSymbol) -> str:
        base, step = naming.split(expr.name)
        if step is None:
            return naming.code_base(base)
        lag = naming.offset(step)
        if lag not in (0, -1):
            raise ValueError(f"{expr.name}: only steps t and t-1 have row views")
        return f"_rows({naming.code_base(base)}{', 1' if lag == -1 else ''})"


def recurrent_nodes(cell: Cell) -> set[str]:
    """The nodes whose value at step t depends on a state at t-1, through the step's own nodes."""
    previous = {naming.step_name(s.name, "t-1") for s in cell.states}
    recurrent: set[str] = set()
    for eq in cell.equations:
        reads = {s.name for s in eq.rhs.atoms(sp.MatrixSymbol)}
        if reads & previous or reads & {naming.step_name(n, "t") for n in recurrent}:
            recurrent.add(eq.name)
    return recurrent


@dataclass(frozen=True)
class Hoisted:
    """The fast path in three parts each way: before the loop (all steps at once), the loop over t
    (the recurrence alone), after it (all steps at once)."""

    forward_pre: tuple[Line, ...]
    forward_loop: tuple[Line, ...]
    forward_post: tuple[Line, ...]
    backward_pre: tuple[Line, ...]
    backward_loop: tuple[Line, ...]
    backward_post: tuple[Line, ...]
    deltas: tuple[dict[str, str], ...]  # the delta arrays: name, dim, and "zeros" or "empty"
    carry: tuple[Line, ...]


def _split_sum(rhs: sp.Basic, is_recurrent: Any) -> tuple[sp.Basic, sp.Basic] | None:
    """(the terms without the state, those with it) of a sum, or of the sum inside an elementwise
    activation: tanh(W x + U h[t-1] + b) -> (W x + b, U h[t-1]); None where nothing splits off."""
    total = rhs.arg if isinstance(rhs, Elementwise) else rhs
    if not isinstance(total, sp.MatAdd):
        return None
    outside = [term for term in total.args if not is_recurrent(term)]
    inside = [term for term in total.args if is_recurrent(term)]
    if not outside or not inside:
        return None

    def summed(terms: list[sp.Basic]) -> sp.Basic:
        return terms[0] if len(terms) == 1 else sp.MatAdd(*terms)

    return summed(outside), summed(inside)


def hoisted(derivation: Derivation) -> Hoisted:
    cell = derivation.cell
    last = cell.loss_mode == "last"
    rows, step = AllStepsPrinter(), BatchedPrinter()
    recurrent = recurrent_nodes(cell)
    previous = {naming.step_name(s.name, "t-1") for s in cell.states}
    recurrent_symbols = previous | {naming.step_name(n, "t") for n in recurrent}

    def is_recurrent(expr: sp.Basic) -> bool:
        return any(s.name in recurrent_symbols for s in expr.atoms(sp.MatrixSymbol))

    pre, loop, post = [], [], []
    for eq in cell.equations:
        lhs = sp.MatrixSymbol(naming.step_name(eq.name, "t"), *eq.shape)
        comment = f"{text(lhs)} = {text(eq.rhs)}"
        shape = f"  (B, {_dim(eq.shape[0])})"
        if eq.name == cell.loss:
            loss = _code_loss(derivation, eq.rhs)
            post.append(Line(f"loss = {(step if last else rows).doprint(loss)}", comment))
        elif eq.name in cell.outputs:
            printer = step if last else rows
            post.append(Line(f"{printer.doprint(lhs)}{'' if last else '[:]'} = {printer.doprint(eq.rhs)}", comment))
        elif eq.name not in recurrent:
            pre.append(Line(f"{rows.doprint(lhs)}[:] = {rows.doprint(eq.rhs)}", comment + "  (every step)"))
        elif (split := _split_sum(eq.rhs, is_recurrent)) is not None:
            # the terms without the state (W x + b) for every step at once, into the node's own rows;
            # the loop adds the state's terms (U h[t-1]) and applies the activation, if any
            outside, inside = split
            pre.append(
                Line(f"{rows.doprint(lhs)}[:] = {rows.doprint(outside)}", f"{comment}: the terms without the state")
            )
            total = sp.MatAdd(lhs, inside)
            rhs = type(eq.rhs)(total) if isinstance(eq.rhs, Elementwise) else total
            loop.append(
                Line(f"{step.doprint(lhs)} = {step.doprint(rhs)}", f"{comment}: with the state's terms" + shape)
            )
        else:
            loop.append(Line(f"{step.doprint(lhs)} = {step.doprint(eq.rhs)}", comment + shape))

    program = derivation.program
    b_pre, b_loop, b_post, deltas = [], [], [], []
    for a in program.assigns:
        output = a.node in cell.outputs
        comment = f"{text(a.target)} = {text(a.expr)}"
        deltas.append(
            {
                "name": naming.code_base(naming.grad_name(a.node)),
                "dim": cell.nodes[a.node].dim,
                "init": "zeros" if output and last else "empty",
            }
        )
        if output:
            printer = step if last else rows
            b_pre.append(
                Line(f"{printer.doprint(a.target)}{'' if last else '[:]'} = {printer.doprint(a.expr)}", comment)
            )
            continue
        code = step.doprint(a.expr)
        if a.carried is not None:
            code = f"{code} + {carried_local(a.node)}"
            comment += f" + {text(program.carried_into(a.node))}"
        b_loop.append(Line(f"{step.doprint(a.target)} = {code}", comment))
    for acc in program.accumulates:
        psym = cell.param(acc.wrt).symbol
        users = {eq.name for eq in cell.equations if eq.rhs.has(psym)}
        printer = step if last and users <= cell.outputs else rows  # many-to-one: the outputs' at step T alone
        code = _summed(printer.doprint(acc.expr), psym.shape[1] == 1)
        b_post.append(Line(f"{grad_local(acc.wrt)} = {code}", f"dJ/d{acc.wrt} = sum over t of {text(acc.expr)}"))
    carry = tuple(
        Line(f"{carried_local(c.state)} = {step.doprint(c.expr)}", f"share of dJ/d{c.state}_{{t-1}}: {text(c.expr)}")
        for c in program.carries
    )
    return Hoisted(
        tuple(pre), tuple(loop), tuple(post), tuple(b_pre), tuple(b_loop), tuple(b_post), tuple(deltas), carry
    )


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


def _raw_paths(derivation: Derivation) -> list[tuple[Factor, ...]]:
    """The paths whose edges the by-definition code multiplies: the terms themselves for one state;
    for several states the paths inside the blocks and tails of every block term."""
    if not derivation.blocks:
        return [term.factors for expansion in derivation.expansions.values() for term in expansion.terms]
    out: list[tuple[Factor, ...]] = []
    for wrt, expansion in derivation.expansions.items():
        f = derivation.factorized[wrt]
        assert isinstance(f, Blocks)
        for term in expansion.terms:
            if not _is_block(derivation, term):
                out.append(term.factors)
                continue
            out += [p for paths in f.head for p in move_paths(paths, term.loss_step)]
            for factor in term.factors[1:-1]:
                j = naming.step_of(factor.num)
                out += [p for row in f.step for paths in row for p in move_paths(paths, j, "j")]
            if not f.initial:
                out += [p for paths in f.tail for p in move_paths(paths, term.entry_step, "k")]
    return out


def _is_block(derivation: Derivation, term: Term) -> bool:
    return derivation.blocks and naming.split(term.factors[0].den)[0] == stacked_name(derivation.cell)


def definition_jacobians(derivation: Derivation) -> tuple[Line, ...]:
    """Every local Jacobian any term uses, once, in the order first used; then, for a cell with
    several states, the blocks dJ_t/ds_t and ds_j/ds_{j-1} built from them."""
    printer = ColumnPrinter()
    lines = []
    edges = dict.fromkeys(f for path in _raw_paths(derivation) for f in path)
    for f in edges:
        matrix = factor_matrix(_unrolled(derivation), f)
        if isinstance(matrix, Outer):
            continue
        shape = f"({_dim(matrix.shape[0])}, {_dim(matrix.shape[1])})"
        lines.append(Line(f"{naming.jacobian_local(f.num, f.den)} = {printer.doprint(matrix)}", shape))
    if derivation.blocks:
        lines += _block_lines(derivation)
    return tuple(lines)


def _path_sum(paths: list[tuple[Factor, ...]], rows: str, cols: str) -> str:
    """The sum over paths of the products of their edge locals; zeros of (rows, cols) for no path."""
    if not paths:
        return f"np.zeros(({rows}, {cols}))"
    return " + ".join(" @ ".join(naming.jacobian_local(f.num, f.den) for f in path) for path in paths)


def _state_dims(derivation: Derivation) -> list[str]:
    return [f"n_{s.dim}" for s in derivation.cell.states]


def _block_lines(derivation: Derivation) -> list[Line]:
    """dJ_t/ds_t (a row of blocks) and ds_j/ds_{j-1} (a matrix of blocks), from the paths inside a step."""
    cell = derivation.cell
    f = next(iter(derivation.factorized.values()))
    assert isinstance(f, Blocks)
    s = stacked_name(cell)
    dims = _state_dims(derivation)
    width = " + ".join(dims)
    used = {x for expansion in derivation.expansions.values() for term in expansion.terms for x in term.factors}
    lines = []
    for t in cell.loss_steps(derivation.steps):
        head = Factor(naming.step_name(cell.loss, t), naming.step_name(s, t))
        if head in used:
            blocks = ", ".join(_path_sum(move_paths(f.head[a], t), "1", dims[a]) for a in range(len(dims)))
            lines.append(Line(f"{naming.jacobian_local(head.num, head.den)} = np.hstack([{blocks}])", f"(1, {width})"))
    for j in range(derivation.steps, 0, -1):
        factor = Factor(naming.step_name(s, j), naming.step_name(s, j - 1))
        if factor not in used:
            continue
        rows = []
        for a in range(len(dims)):
            row = [_path_sum(move_paths(f.step[a][b], j, "j"), dims[a], dims[b]) for b in range(len(dims))]
            rows.append(f"[{', '.join(row)}]")
        code = f"{naming.jacobian_local(factor.num, factor.den)} = np.block([{', '.join(rows)}])"
        lines.append(Line(code, f"({width}, {width})"))
    return lines


def _state_slices(derivation: Derivation) -> list[str]:
    """``[:, lo:hi]`` of each state's block in a row over the stacked state."""
    dims = _state_dims(derivation)
    out = []
    for a in range(len(dims)):
        lo = " + ".join(dims[:a])
        hi = " + ".join(dims[: a + 1]) if a < len(dims) - 1 else ""
        out.append(f"[:, {lo}:{hi}]")
    return out


def _path_code(derivation: Derivation, row: list[str], path: tuple[Factor, ...]) -> str:
    """``row`` (1 x n, or nothing) times the path's Jacobians, made the shape of what the path ends at."""
    last = factor_matrix(_unrolled(derivation), path[-1])
    chain = path[:-1] if isinstance(last, Outer) else path
    parts = row + [naming.jacobian_local(f.num, f.den) for f in chain]
    if isinstance(last, Outer) and not isinstance(last.left, sp.Identity):
        parts.append(ColumnPrinter().operand(last.left))
    product = " @ ".join(parts) or "np.ones((1, 1))"  # J_t = w v itself: dJ_t/dJ_t = 1
    if isinstance(last, Outer):
        return f"({product}).T @ {ColumnPrinter().doprint(sp.Transpose(last.right))}"
    return f"({product}).T"


def _term_code(derivation: Derivation, term: Term) -> list[str]:
    """The term as code, the last line its value: the product of its Jacobian locals, made the
    shape of what it differentiates.  A block term (dJ_t/ds_t)(ds_t/ds_{t-1}) ... (ds_k/dw)
    first computes the row dJ_dsk = dJ_t/ds_k, then sends each state's slice of it down that
    state's paths to w inside step k."""
    if not _is_block(derivation, term):
        return [_path_code(derivation, [], term.factors)]
    row = " @ ".join(naming.jacobian_local(f.num, f.den) for f in term.factors[:-1])
    f = derivation.factorized[term.factors[-1].den]
    assert isinstance(f, Blocks)
    slices = _state_slices(derivation)
    if f.initial:
        return [f"({row}){slices[f.initial_index]}.T"]
    parts = [
        _path_code(derivation, [f"dJ_dsk{slices[a]}"], path)
        for a in range(len(f.states))
        for path in move_paths(f.tail[a], term.entry_step, "k")
    ]
    return [f"dJ_dsk = {row}", " + ".join(parts)]


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
                *before, last = _term_code(derivation, term)
                lines += [Line(code, label if i == 0 else "") for i, code in enumerate(before)]
                lines.append(Line(f"{grad_local(wrt)} += {last}", "" if before else label))
            header = f"dJ_{t}/d{naming.text_name(wrt)}: {len(terms)} term{'s' if len(terms) > 1 else ''}"
            blocks.append(Block(header, tuple(lines)))
    return tuple(blocks)


def _shapes_doc(cell: Cell, inputs: list[dict[str, str]], targets: list[dict[str, str]], target_arg: str) -> str:
    """The docstring's line on argument shapes."""
    last = cell.loss_mode == "last"

    def target_shape(v: dict[str, str]) -> str:
        n = f"n_{v['dim']}"
        if v["kind"] == "class":
            return ("() or (B,)" if last else "(T,) or (T, B)") + f" of ints in [0, {n})"
        return f"({n},) or (B, {n})" if last else f"(T, {n}) or (T, B, {n})"

    parts = []
    xs = [f"(T, n_{v['dim']}) or (T, B, n_{v['dim']})" for v in inputs]
    if len(inputs) == 1:
        parts.append(f"``xs`` {xs[0]}")
    else:
        parts.append("``xs`` a dict: " + ", ".join(f"``{v['name']!r}`` {x}" for v, x in zip(inputs, xs)))
    if len(targets) == 1:
        parts.append(f"``{target_arg}`` {target_shape(targets[0])}")
    else:
        parts.append(f"``{target_arg}`` a dict: " + ", ".join(f"``{v['name']!r}`` {target_shape(v)}" for v in targets))
    return ";\n".join(parts)


def _py_tuple(names: tuple[str, ...]) -> str:
    """A tuple literal of strings in double quotes: ``("W_xh", "W_hh")``."""
    inner = ", ".join(f'"{n}"' for n in names)
    return f"({inner},)" if len(names) == 1 else f"({inner})"


def module_context(derivation: Derivation, command: str) -> dict[str, Any]:
    """Everything ``templates/module.py.j2`` places, already printed."""
    cell = derivation.cell
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
    single_class = len(cell.targets) == 1 and cell.targets[0].kind == "class"
    target_arg = "labels" if single_class else "targets"

    def per_step(v: Any, arg: str, several: bool, i: int) -> dict[str, str]:
        return {
            "name": v.name,
            "dim": v.dim,
            "kind": getattr(v, "kind", ""),
            "code": naming.code_base(v.name),
            "var": f"{arg}_{i}" if several else arg,  # the argument's array inside _prepare
            "fetch": f"{arg}[{v.name!r}]" if several else arg,
            "label": f"{arg}[{v.name!r}]" if several else arg,
        }

    inputs = [per_step(v, "xs", len(cell.inputs) > 1, i) for i, v in enumerate(cell.inputs)]
    targets = [per_step(v, target_arg, len(cell.targets) > 1, i) for i, v in enumerate(cell.targets)]
    initial = [
        {
            "name": s.name,
            "arg": initial_arg(s.name),
            "dim": s.dim,
            "carried": carried_local(s.name),
            "local": naming.code_local(naming.step_name(s.name, 0)),
        }
        for s in cell.states
    ]
    sizes: dict[str, str] = {}
    for p in cell.params:
        for i, d in enumerate(p.shape):
            sizes.setdefault(d, f"n_{d} = {p.name}.shape[{i}]")
    truncated_lines, truncated_carry, truncated_zeros = truncated_backward(derivation.program)
    fast = hoisted(derivation)
    context: dict[str, Any] = {
        "inputs": inputs,
        "targets": targets,
        "target_arg": target_arg,
        "prepared": ", ".join([v["code"] for v in inputs + targets] + [s["arg"] for s in initial] + ["batched"])
        + ", sizes, dtype",
        "prepared_doc": ", ".join(v["code"] for v in inputs + targets),
        "shapes_doc": _shapes_doc(cell, inputs, targets, target_arg),
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
        "initial": initial,
        "initial_args": ", ".join(s["arg"] for s in initial),
        "initial_defaults": ", ".join(f"{s['arg']}=None" for s in initial),
        "initial_names": ", ".join(f'``"{s["arg"]}"``' for s in initial),
        "initial_doc": "; ".join(f"``{s['arg']}`` (n_{s['dim']},) or (B, n_{s['dim']})" for s in initial),
        "nodes": [cell.nodes[e.name] for e in cell.equations if e.name != cell.loss],
        "loss_last": cell.loss_mode == "last",
        "truncate": derivation.truncate,
        "hoisted": fast,
        "outputs": cell.outputs,
        "truncated_zeros": truncated_zeros,
        "truncated_backward": truncated_lines,
        "truncated_carry": truncated_carry,
        "carries": [{"name": carried_local(s.name), "dim": s.dim} for s in cell.states],
        "step_inputs": step_inputs,
        "def_forward": definition_forward(derivation) if expanded else (),
        "def_loss": losses,
        "def_jacobians": definition_jacobians(derivation) if expanded else (),
        "def_terms": definition_terms(derivation) if expanded else (),
    }
    emitted = [*fast.forward_pre, *fast.forward_loop, *fast.forward_post, *fast.backward_pre]
    emitted += [*fast.backward_loop, *fast.carry, *fast.backward_post, *truncated_lines, *truncated_carry]
    emitted += [*context["def_forward"], *context["def_jacobians"]]
    code = "\n".join(line.code for line in emitted)
    context["uses"] = sorted(h for h in ("_sigmoid", "_relu", "_step", "_squared_error") if h + "(" in code)
    by_definition = "\n".join(line.code for group in ("def_forward", "def_jacobians") for line in context[group])
    by_definition += "\n".join(line.code for block in context["def_terms"] for line in block.lines)
    context["size_lines"] = [
        line for line in context["size_lines"] if re.search(rf"\b{line.split()[0]}\b", by_definition)
    ]
    return context
