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

import functools
import inspect
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sympy as sp

from . import naming
from .adjoint import Program
from .analytic import factor_matrix
from .cell import Cell
from .chain import Blocks, Factor, Term, move_paths, stacked_name
from .exprs import CrossEntropy, Diag, Elementwise, Hadamard, Outer, Softmax, SoftmaxCrossEntropy, add, mul, transpose
from .ops import HELPERS
from .pipeline import Derivation
from .printing import BatchedPrinter, ColumnPrinter, is_negative, negated, ordered_terms, text
from .spec import RESERVED
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


def _outputs_only(cell: Cell, wrt: str) -> bool:
    """Whether only the outputs (y, p: what only the loss reads) read the parameter: W_y."""
    psym = cell.param(wrt).symbol
    return {eq.name for eq in cell.equations if eq.rhs.has(psym)} <= cell.outputs


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
        output = _outputs_only(cell, acc.wrt)
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
    """Row-wise NumPy over every step at once: ``h@t`` is ``h_rows``, the (T * B, n) view of
    h[1:], and ``h@t-1`` is ``h_rows_prev``, the view of h[:-1].  The batched code is row by row
    (a product's reduction over rows sums the batch), so over T * B rows it sums the steps too.
    ``views`` records the views printed, in order, for the module to declare them."""

    def __init__(self) -> None:
        super().__init__()
        self.views: dict[str, tuple[str, int]] = {}  # view name: (array, lag)

    def _print_MatrixSymbol(self, expr: sp.MatrixSymbol) -> str:
        base, step = naming.split(expr.name)
        if step is None:
            return naming.code_base(base)
        lag = naming.offset(step)
        if lag not in (0, -1):
            raise ValueError(f"{expr.name}: only steps t and t-1 have row views")
        array = naming.code_base(base)
        view = rows_view(array, -lag)
        self.views.setdefault(view, (array, -lag))
        return view


def rows_view(array: str, lag: int = 0) -> str:
    """The name of an array's row view: ``h_rows`` (steps 1..T), ``h_rows_prev`` (steps 0..T-1)."""
    return f"{array}_rows{'_prev' if lag else ''}"


def local_name(user: str, node: str) -> str:
    """The array of the diagonal of d user_t / d node_t, a local derivative: ``dh_dz``."""
    return f"d{user}_d{node}"


class _Names:
    """Names for the arrays the fast path adds (dh_dz, dh_pre, dh_dpre), each different from every
    name the module uses already (the cell's names, their deltas and carries, the module's own)
    and from each other: a name already taken gets a number (dh_pre2)."""

    def __init__(self, cell: Cell) -> None:
        used = set(RESERVED)
        names = [*cell.param_names, *(e.name for e in cell.equations), *(s.name for s in cell.states)]
        names += [v.name for v in (*cell.inputs, *cell.targets)]
        for name in map(naming.code_base, names):
            used |= {name, f"d{name}", f"d{name}_next", f"{name}0", f"d{name}0_acc", f"d{name}_zero"}
        self.used = used

    def fresh(self, want: str) -> str:
        name, n = want, 1
        while name in self.used or rows_view(name) in self.used:
            n += 1
            name = f"{want}{n}"
        self.used.add(name)
        return name


def _elementwise_product(factors: list[sp.Basic]) -> sp.Basic:
    return functools.reduce(Hadamard, factors)


def recurrent_nodes(cell: Cell) -> set[str]:
    """The nodes whose value at step t depends on a state at t-1, through the step's own nodes."""
    previous = {naming.step_name(s.name, "t-1") for s in cell.states}
    recurrent: set[str] = set()
    for eq in cell.equations:
        reads = {s.name for s in eq.rhs.atoms(sp.MatrixSymbol)}
        if reads & previous or reads & {naming.step_name(n, "t") for n in recurrent}:
            recurrent.add(eq.name)
    return recurrent


def recurrent_deltas(program: Program) -> set[str]:
    """The nodes whose delta at step t depends on what is carried back from step t + 1: the
    states, and every node one of these reads (through its users' deltas at step t)."""
    recurrent: set[str] = set()
    for a in program.assigns:  # users first: the reverse of the cell's order
        reads = {naming.split(s.name)[0] for s in a.expr.atoms(sp.MatrixSymbol)}
        if a.carried is not None or any(naming.grad_name(n) in reads for n in recurrent):
            recurrent.add(a.node)
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
    locals: tuple[dict[str, str], ...]  # the local-derivative arrays: name, dim
    forward_views: tuple[Line, ...]  # the row views the forward pass reads, declared with its arrays
    backward_views: tuple[Line, ...]  # those the backward pass reads besides
    carried_views: frozenset[str]  # the states whose carried share is one step of an array


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
    return _summed_terms(outside), _summed_terms(inside)


def _summed_terms(terms: list[sp.Basic]) -> sp.Basic:
    return terms[0] if len(terms) == 1 else sp.MatAdd(*terms)


def _terms(expr: sp.Basic) -> list[sp.Basic]:
    return list(expr.args) if isinstance(expr, sp.MatAdd) else [expr]


def _view_lines(views: dict[str, tuple[str, int]], skip: Collection[str] = ()) -> tuple[Line, ...]:
    return tuple(
        Line(f"{view} = {array}[{':-1' if lag else '1:'}].reshape(T * B, -1)")
        for view, (array, lag) in views.items()
        if view not in skip
    )


Run = tuple[tuple[Diag, ...], sp.MatrixSymbol]  # diag(a) diag(b) ... delta^u_t


def _runs(expr: sp.Basic, deltas: Collection[str] | Collection[Run]) -> list[Run]:
    """The runs diag(a) ... diag(b) delta^u_t inside the products of ``expr``, some a more than a name,
    for the delta symbols named in ``deltas`` (or the runs listed there)."""
    found: list[Run] = []
    for mm in [expr] if isinstance(expr, sp.MatMul) else [a for a in _terms(expr) if isinstance(a, sp.MatMul)]:
        args = mm.args
        for j, delta in enumerate(args):
            if not isinstance(delta, sp.MatrixSymbol):
                continue
            i = j
            while i > 0 and isinstance(args[i - 1], Diag):
                i -= 1
            run = (tuple(args[i:j]), delta)
            if i < j and not all(isinstance(d.arg, sp.MatrixSymbol) for d in run[0]):
                if delta.name in deltas or run in deltas:
                    found.append(run)
    return found


def _distributed(expr: sp.Basic) -> sp.Basic:
    """Products over sums multiplied out, one level: (I + U^T diag(a)) delta -> delta + U^T diag(a) delta."""
    if isinstance(expr, sp.MatAdd):
        return add(*(_distributed(term) for term in expr.args))
    if isinstance(expr, sp.MatMul):
        for i, factor in enumerate(expr.args):
            if isinstance(factor, sp.MatAdd):
                before, after = expr.args[:i], expr.args[i + 1 :]
                return add(*(_distributed(mul(*before, term, *after)) for term in factor.args))
    return expr


def _inner_deltas(program: Program, deltas: set[str]) -> list[Run]:
    """The runs that two or more of the carries and gradients read, in the order first read."""
    counts: dict[Run, int] = {}
    for expr in [c.expr for c in program.carries] + [a.expr for a in program.accumulates]:
        for run in _runs(_distributed(expr), deltas):
            counts[run] = counts.get(run, 0) + 1
    return [run for run, n in counts.items() if n >= 2]


def _with_runs(expr: sp.Basic, symbols: dict[Run, sp.MatrixSymbol]) -> sp.Basic:
    """``expr`` with each run in ``symbols`` replaced by its array's symbol."""
    if isinstance(expr, sp.MatAdd):
        return add(*(_with_runs(term, symbols) for term in expr.args))
    if not isinstance(expr, sp.MatMul):
        return expr
    args = list(expr.args)
    for (diags, delta), symbol in symbols.items():
        for j in range(len(diags), len(args)):
            if args[j] == delta and tuple(args[j - len(diags) : j]) == diags:
                args[j - len(diags) : j + 1] = [symbol]
                break
    return mul(*args)


def _matmul_operands(expr: sp.Basic, printer: BatchedPrinter) -> tuple[str, str, str] | None:
    """(function, left, right) of a product that NumPy can write into an array of its own: a
    parameter matrix times a vector (``v @ W.T``), or a diagonal times a vector (``a * v``)."""
    if not isinstance(expr, sp.MatMul) or len(expr.args) != 2:
        return None
    m, v = expr.args
    if not (isinstance(v, sp.MatrixSymbol) and naming.split(v.name)[1] is not None):
        return None
    if isinstance(m, Diag):
        return "np.multiply", printer.doprint(m.arg), printer.doprint(v)
    matrix = m.arg if isinstance(m, sp.Transpose) else m
    if isinstance(matrix, sp.MatrixSymbol) and naming.split(matrix.name)[1] is None:
        return "np.matmul", printer.doprint(v), printer.doprint(transpose(m))
    return None


def _is_leaf(expr: sp.Basic) -> bool:
    """What prints as a name or a number: an operand that needs no array of its own."""
    if isinstance(expr, sp.Transpose):
        expr = expr.arg
    return isinstance(expr, (sp.MatrixSymbol, sp.OneMatrix)) or expr.is_Number


def _written_into(dst: str, expr: sp.Basic, printer: BatchedPrinter) -> list[str] | None:
    """expr as NumPy calls that each write into dst, innermost first (1 - h^2: square h into dst,
    then subtract dst from 1 into dst); None where that needs a second array (two operands that
    are not names)."""
    p = printer.doprint

    def onto(inner: sp.Basic, step: str) -> list[str] | None:
        """``step`` (a call reading ``{}`` as its operand) after ``inner`` is written into dst."""
        if _is_leaf(inner):
            return [step.format(p(inner))]
        lines = _written_into(dst, inner, printer)
        return None if lines is None else [*lines, step.format(dst)]

    if (product := _matmul_operands(expr, printer)) is not None:
        fn, left, right = product
        return [f"{fn}({left}, {right}, out={dst})"]
    if isinstance(expr, sp.HadamardPower) and expr.exp == 2:
        return onto(expr.base, f"np.square({{}}, out={dst})")
    if isinstance(expr, Elementwise) and expr.op.ufunc is not None:
        return onto(expr.arg, f"{expr.op.ufunc}({{}}, out={dst})")
    if isinstance(expr, Softmax) and _is_leaf(expr.arg):
        return [f"_softmax({p(expr.arg)}, out={dst})"]
    if isinstance(expr, sp.MatMul) and expr.args[0].is_Number and len(expr.args) == 2:
        return onto(expr.args[1], f"np.multiply({{}}, {p(expr.args[0])}, out={dst})")
    factors = None
    if isinstance(expr, Hadamard):
        factors = list(expr.args)
    elif isinstance(expr, sp.MatMul) and len(expr.args) == 2 and isinstance(expr.args[0], Diag):
        factors = [expr.args[0].arg, expr.args[1]]
    if factors is not None:
        inner = [f for f in factors if not _is_leaf(f)]
        leaves = [f for f in factors if _is_leaf(f)]
        if len(inner) > 1:
            return None
        if inner:
            lines = _written_into(dst, inner[0], printer)
            if lines is None:
                return None
        else:
            lines, leaves = [f"np.multiply({p(leaves[0])}, {p(leaves[1])}, out={dst})"], leaves[2:]
        return lines + [f"np.multiply({dst}, {p(f)}, out={dst})" for f in leaves]
    if isinstance(expr, sp.MatAdd):
        terms = ordered_terms(expr)
        # the base: a term written into dst (a product, or the one term that is not a name)
        bases = [t for t in terms if not _is_leaf(negated(t) if is_negative(t) else t)]
        products = [t for t in bases if _matmul_operands(t, printer) is not None]
        base = products[0] if products else (bases[0] if len(bases) == 1 else None)
        if base is None:
            if len(terms) != 2 or is_negative(terms[0]):
                return None
            a, b = terms
            fn = "np.subtract" if is_negative(b) else "np.add"
            return [f"{fn}({p(a)}, {p(negated(b) if is_negative(b) else b)}, out={dst})"]
        if is_negative(base):
            lines = _written_into(dst, negated(base), printer)
            if lines is None:
                return None
            rest = [t for t in terms if t is not base]
            if len(rest) == 1 and not is_negative(rest[0]) and _is_leaf(rest[0]):  # 1 - h^2
                return [*lines, f"np.subtract({p(rest[0])}, {dst}, out={dst})"]
            lines.append(f"np.negative({dst}, out={dst})")
        else:
            lines = _written_into(dst, base, printer)
            if lines is None:
                return None
        for term in terms:  # the rest: names, or products (each one array, added into dst)
            if term is base:
                continue
            other = negated(term) if is_negative(term) else term
            if not _is_leaf(other) and _matmul_operands(other, printer) is None:
                return None
            lines.append(f"{dst} {'-=' if is_negative(term) else '+='} {p(other)}")
        return lines
    return None


def into(dst: str, expr: sp.Basic, printer: BatchedPrinter) -> list[str]:
    """``dst[:] = expr`` as NumPy calls that write into dst: over every step the arrays are
    (T * B, n), and a temporary that size, allocated and copied, costs more than the arithmetic
    (on these machines each fresh page of one is a fault).  Where the expression needs a second
    array, the plain assignment."""
    lines = _written_into(dst, expr, printer)
    return lines if lines is not None else [f"{dst}[:] = {printer.doprint(expr)}"]


def _into_lines(dst: str, expr: sp.Basic, printer: BatchedPrinter, comment: str) -> list[Line]:
    """``into`` as lines, the comment on the first."""
    return [Line(code, comment if i == 0 else "") for i, code in enumerate(into(dst, expr, printer))]


def hoisted(derivation: Derivation) -> Hoisted:
    cell = derivation.cell
    last = cell.loss_mode == "last"
    rows, step = AllStepsPrinter(), BatchedPrinter()
    recurrent = recurrent_nodes(cell)
    previous = {naming.step_name(s.name, "t-1") for s in cell.states}
    recurrent_symbols = previous | {naming.step_name(n, "t") for n in recurrent}

    def is_recurrent(expr: sp.Basic) -> bool:
        return any(s.name in recurrent_symbols for s in expr.atoms(sp.MatrixSymbol))

    pre: list[Line] = []
    loop: list[Line] = []
    post: list[Line] = []
    softmax_lines: dict[sp.Basic, tuple[int, str, str]] = {}  # y: (line, p, comment) of p = softmax(y)
    for eq in cell.equations:
        lhs = sp.MatrixSymbol(naming.step_name(eq.name, "t"), *eq.shape)
        comment = f"{text(lhs)} = {text(eq.rhs)}"
        shape = f"  (B, {_dim(eq.shape[0])})"
        if eq.name == cell.loss:
            loss = _code_loss(derivation, eq.rhs)
            if isinstance(loss, SoftmaxCrossEntropy) and loss.logits in softmax_lines:
                # p = softmax(y) and J = cross_entropy(p, l): one pass writes p and returns J
                i, p_code, p_comment = softmax_lines[loss.logits]
                printer = step if last else rows
                logits, target = printer.doprint(loss.logits), printer.doprint(loss.target)
                code = f"loss = _softmax_cross_entropy({logits}, {target}, out={p_code})"
                post[i] = Line(code, f"{p_comment}, and {comment}")
                continue
            post.append(Line(f"loss = {(step if last else rows).doprint(loss)}", comment))
        elif eq.name in cell.outputs:
            if isinstance(eq.rhs, Softmax):
                softmax_lines[eq.rhs.arg] = (len(post), (step if last else rows).doprint(lhs), comment)
            if last:
                post.append(Line(f"{step.doprint(lhs)} = {step.doprint(eq.rhs)}", comment))
            else:
                post += _into_lines(rows.doprint(lhs), eq.rhs, rows, comment)
        elif eq.name not in recurrent:
            pre += _into_lines(rows.doprint(lhs), eq.rhs, rows, comment + "  (every step)")
        elif (split := _split_sum(eq.rhs, is_recurrent)) is not None:
            # the terms without the state (W x + b) for every step at once, into the node's own rows;
            # the loop adds the state's terms (U h[t-1]) and applies the activation, if any
            outside, inside = split
            pre += _into_lines(rows.doprint(lhs), outside, rows, f"{comment}: the terms without the state")
            if isinstance(eq.rhs, Elementwise):
                code = f"{step.doprint(lhs)} = {step.doprint(type(eq.rhs)(sp.MatAdd(lhs, inside)))}"
            else:
                code = f"{step.doprint(lhs)} += {step.doprint(inside)}"
            loop.append(Line(code, f"{comment}: with the state's terms" + shape))
        else:
            loop.append(Line(f"{step.doprint(lhs)} = {step.doprint(eq.rhs)}", comment + shape))
    forward_views = dict(rows.views)

    program = derivation.program
    in_loop = recurrent_deltas(program)
    loop_symbols = {naming.grad_name(naming.step_name(n, "t")) for n in in_loop}

    def reads_loop(expr: sp.Basic) -> bool:
        return any(s.name in loop_symbols for s in expr.atoms(sp.MatrixSymbol))

    delta_node = {naming.grad_name(naming.step_name(a.node, "t")): a.node for a in program.assigns}
    names = _Names(cell)
    locals_: dict[str, dict[str, str]] = {}  # the arrays added, by name: name, dim
    local_of: dict[tuple[str, str], sp.MatrixSymbol] = {}  # (user, node): the array of d user / d node

    def with_locals(part: sp.Basic, node: str) -> sp.Basic:
        """diag(a) diag(b) delta^u_t, a or b more than a name: the diagonal of du_t/dnode_t as an
        array of its own, computed for every step before the loop (it reads no delta)."""
        if not isinstance(part, sp.MatMul) or not isinstance(part.args[-1], sp.MatrixSymbol):
            return part
        *diags, delta = part.args
        user = delta_node.get(delta.name)
        if user is None or not diags or not all(isinstance(d, Diag) for d in diags):
            return part
        if all(isinstance(d.arg, sp.MatrixSymbol) for d in diags):
            return part
        if (user, node) not in local_of:
            name = names.fresh(local_name(user, node))
            symbol = local_of[user, node] = sp.MatrixSymbol(naming.step_name(name, "t"), *delta.shape)
            value = _elementwise_product([d.arg for d in diags])
            locals_[name] = {"name": name, "dim": cell.nodes[node].dim}
            b_pre.extend(_into_lines(rows.doprint(symbol), value, rows, f"diag of d{user}_t/d{node}_t = {text(value)}"))
        return mul(Diag(local_of[user, node]), delta)

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
            if last:
                b_pre.append(Line(f"{step.doprint(a.target)} = {step.doprint(a.expr)}", comment))
            else:
                b_pre += _into_lines(rows.doprint(a.target), a.expr, rows, comment)
            continue
        if a.node not in in_loop:  # what no carried share reaches: every step at once
            b_pre += _into_lines(rows.doprint(a.target), a.expr, rows, comment + "  (every step)")
            continue
        terms = _terms(a.expr) if not isinstance(a.expr, sp.ZeroMatrix) else []
        before = [term for term in terms if not reads_loop(term)]
        inside = [with_locals(term, a.node) for term in terms if reads_loop(term)]
        if a.carried is not None:
            comment += f" + {text(program.carried_into(a.node))}"
        parts = [step.doprint(term) for term in inside]
        if a.carried is not None:
            parts.append(carried_local(a.node))
        if before:
            # the terms that read no carried share, for every step at once; the loop adds the rest
            b_pre += _into_lines(
                rows.doprint(a.target), _summed_terms(before), rows, f"{comment}: the terms without the carried share"
            )
            b_loop.append(Line(f"{step.doprint(a.target)} += {' + '.join(parts)}", f"{comment}: the carried share"))
        else:
            b_loop.append(Line(f"{step.doprint(a.target)} = {' + '.join(parts)}", comment))
    # diag(f'(a_t)) delta^u_t, the delta at the argument a of u's activation, read by the carries
    # and by the gradients of every parameter inside a: one array each, computed once
    inner = _inner_deltas(program, {d for d, n in delta_node.items() if n not in cell.outputs})
    symbols: dict[Run, sp.MatrixSymbol] = {}
    for diags, delta in inner:
        name = names.fresh(f"d{naming.code_base(delta_node[delta.name])}_pre")
        symbols[diags, delta] = sp.MatrixSymbol(naming.step_name(name, "t"), *delta.shape)
    # the carries as the loop prints them: a run inside a longer one (diag(u) diag(1 - h^2) dh) reads
    # the run's array too, so where each array is computed follows from what the carries read
    carry_exprs = [_with_runs(_distributed(c.expr), symbols) if symbols else c.expr for c in program.carries]
    carried = {s.name for expr in carry_exprs for s in expr.atoms(sp.MatrixSymbol)}
    for (diags, delta), symbol in symbols.items():
        u = delta_node[delta.name]
        name = naming.split(symbol.name)[0]
        locals_[name] = {"name": name, "dim": cell.nodes[u].dim}
        comment = f"the delta at the argument of {u}'s activation: {text(mul(*diags, delta))}"
        if symbol.name not in carried:  # no carry reads it: every step at once, after the loop
            b_post += _into_lines(rows.doprint(symbol), mul(*diags, delta), rows, comment)
        elif u not in in_loop:  # read by a carry, from a delta known before the loop: before it
            b_pre += _into_lines(rows.doprint(symbol), mul(*diags, delta), rows, comment)
        else:  # in the loop, which carries it back
            slope = names.fresh(f"d{naming.code_base(u)}_dpre")  # the derivative of u's activation
            local = sp.MatrixSymbol(naming.step_name(slope, "t"), *delta.shape)
            locals_[slope] = {"name": slope, "dim": cell.nodes[u].dim}
            value = _elementwise_product([d.arg for d in diags])
            b_pre += _into_lines(rows.doprint(local), value, rows, f"the slope of {u}'s activation: {text(value)}")
            b_loop.append(Line(f"{step.doprint(symbol)} = {step.doprint(mul(Diag(local), delta))}", comment))
    for acc in program.accumulates:
        psym = cell.param(acc.wrt).symbol
        printer = step if last and _outputs_only(cell, acc.wrt) else rows  # many-to-one: the outputs' at step T alone
        expr = _with_runs(_distributed(acc.expr), symbols) if symbols else acc.expr
        code = _summed(printer.doprint(expr), psym.shape[1] == 1)
        b_post.append(Line(f"{grad_local(acc.wrt)} = {code}", f"dJ/d{acc.wrt} = sum over t of {text(acc.expr)}"))
    carry, views = [], set()
    for c, expr in zip(program.carries, carry_exprs):
        if isinstance(expr, sp.MatrixSymbol):  # one step of an array: returned as a copy
            views.add(c.state)
        carry.append(
            Line(f"{carried_local(c.state)} = {step.doprint(expr)}", f"share of dJ/d{c.state}_{{t-1}}: {text(c.expr)}")
        )
    return Hoisted(
        tuple(pre),
        tuple(loop),
        tuple(post),
        tuple(b_pre),
        tuple(b_loop),
        tuple(b_post),
        tuple(deltas),
        tuple(carry),
        tuple(locals_.values()),
        _view_lines(forward_views),
        _view_lines(rows.views, set(forward_views)),
        frozenset(views),
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
    fast = hoisted(derivation)
    initial: list[dict[str, Any]] = [
        {
            "name": s.name,
            "arg": initial_arg(s.name),
            "dim": s.dim,
            "carried": carried_local(s.name),
            # the carried share is a delta itself (c = c[t-1] + ...): copied, so as not to keep the
            # whole (T + 1, B, n) array alive through a view of one step
            "view": s.name in fast.carried_views,
            "local": naming.code_local(naming.step_name(s.name, 0)),
        }
        for s in cell.states
    ]
    sizes: dict[str, str] = {}
    for p in cell.params:
        for i, d in enumerate(p.shape):
            sizes.setdefault(d, f"n_{d} = {p.name}.shape[{i}]")
    truncated_lines, truncated_carry, truncated_zeros = truncated_backward(derivation.program)
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
    context["helpers"] = [inspect.getsource(op.helper) for op in HELPERS if f"{op.code}(" in code]
    context["uses"] = [h for h in ("_squared_error",) if h + "(" in code]
    by_definition = "\n".join(line.code for group in ("def_forward", "def_jacobians") for line in context[group])
    by_definition += "\n".join(line.code for block in context["def_terms"] for line in block.lines)
    context["size_lines"] = [
        line for line in context["size_lines"] if re.search(rf"\b{line.split()[0]}\b", by_definition)
    ]
    return context
