"""Stage 6a, the printing: the fast path's schedule (``schedule``) as the lines the module
template lays out.

Statements before and after the loop run for every step at once on (T * B, n) row views
(``AllStepsPrinter``), each written into its array's own rows where NumPy can (``into``); the
loop's statements are one step t of (B, n) rows (``BatchedPrinter``).  Nothing here decides
where a statement goes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from derive.derivation.adjoint import Program
from derive.derivation.pipeline import Derivation
from derive.emit.numpy.fusion import Stack, fuse, in_place, is_matrix_parameter
from derive.emit.numpy.schedule import LOOP, POST, PRE, Array, Phases, Statement, schedule, truncated
from derive.emit.printing import NO_IO, BatchedPrinter, Io, is_negative, negated, ordered_terms
from derive.ir import naming
from derive.ir.cell import Cell
from derive.ir.exprs import Diag, Elementwise, Hadamard, Softmax, add, is_scalar, mul, transpose


@dataclass(frozen=True)
class Line:
    code: str
    comment: str = ""


def dim_code(shape_rows: sp.Expr) -> str:
    return "1" if shape_rows == 1 else str(shape_rows)


def summed(code: str, bias: bool) -> str:
    """A bias's gradient: the (B, n) rows summed over the batch."""
    if not bias:
        return code
    return f"{code}.sum(axis=0)" if code.isidentifier() else f"({code}).sum(axis=0)"


def paren(code: str) -> str:
    return code if code.isidentifier() else f"({code})"


@dataclass(frozen=True)
class View:
    """``h_rows = h[1:].reshape(T * B, -1)``: the steps 1..T of a work array (``h_rows_prev``: 0..T-1)
    as rows; of an input or target, the caller's array itself (``x_rows = x.reshape(T * B, -1)``;
    a class target's labels, ``label_rows = label.reshape(T * B)``)."""

    name: str
    array: str
    lag: int = 0  # 0 or 1
    kind: str = "work"  # "work", "io" or "labels"
    within: tuple[str, str] | None = None  # a stack's member: (the stack, the member's columns)

    @property
    def code(self) -> str:
        if self.kind == "labels":
            return f"{self.name} = {self.array}.reshape(T * B)"
        steps = "" if self.kind == "io" else f"[{':-1' if self.lag else '1:'}]"
        if self.within is not None:  # the member's columns of the stack's rows: a view, not a copy
            stack, columns = self.within
            return f"{self.name} = {stack}{steps}.reshape(T * B, -1)[:, {columns}]"
        return f"{self.name} = {self.array}{steps}.reshape(T * B, -1)"


class AllStepsPrinter(BatchedPrinter):
    """Row-wise NumPy over every step at once: ``h@t`` is ``h_rows``, the (T * B, n) view of
    h[1:], and ``h@t-1`` is ``h_rows_prev``, the view of h[:-1].  The batched code is row by row
    (a product's reduction over rows sums the batch), so over T * B rows it sums the steps too;
    a loss sums the rows ``_live`` only (None: all; with lengths, the steps of a sequence).
    ``views`` records the views printed, in order, for the module to declare them."""

    ROWS = "_rows"  # np.arange(T * B)
    LIVE = "_live"

    def __init__(self, io: Io = NO_IO) -> None:
        super().__init__(io=io)
        self.views: dict[str, View] = {}

    def _view(self, expr: sp.MatrixSymbol) -> str:
        base, step = naming.split(expr.name)
        assert step is not None
        lag = naming.offset(step)
        if lag not in (0, -1) or (lag and base in self.io.arrays):
            raise ValueError(f"{expr.name}: only steps t and t-1 of a node, and step t of an input, have row views")
        array = naming.code_base(base)
        kind = "work" if base not in self.io.arrays else ("labels" if base in self.io.classes else "io")
        view = View(naming.rows_view(array, -lag), array, -lag, kind)
        return self.views.setdefault(view.name, view).name

    def _print_MatrixSymbol(self, expr: sp.MatrixSymbol) -> str:
        base, step = naming.split(expr.name)
        if step is None:
            return naming.code_base(base)
        if base in self.io.classes:
            return f"_onehot({self._view(expr)}, {self.io.classes[base]}, dtype)"
        return self._view(expr)

    def class_index(self, expr: sp.Basic) -> tuple[str, str] | None:
        if not isinstance(expr, sp.MatrixSymbol) or naming.split(expr.name)[0] not in self.io.classes:
            return None
        return self._view(expr), self.ROWS


def _array_of(code: str) -> str:
    """The array a loop's operand reads: ``h_steps[t - 1]`` reads h; a name (scratch, carry) itself."""
    return code.split("_steps[")[0]


SCRATCH_LEVELS = 2  # scratch arrays per size: an operand's operand may need one too


class LoopPrinter(BatchedPrinter):
    """One step t of a loop over the steps.  Step t of a work array is ``h_steps[t]``, an element of the
    tuple of its steps' views, made once with the array (not a view made at every use); a parameter's
    transpose is ``_W_T``, made once per call.  ``steps``, ``transposes`` and ``scratch`` record what
    the printed lines need: the tuples, the transposes, the (B, n) arrays for a second operand."""

    def __init__(self, io: Io = NO_IO, strided: frozenset[str] = frozenset()) -> None:
        super().__init__(io=io)
        self.strided = strided  # the arrays that are slices of a stack
        self.steps: dict[str, None] = {}
        self.transposes: dict[str, None] = {}
        self.scratch: dict[str, str] = {}  # name: its dimension's size, in code
        self.fortran: dict[str, None] = {}  # the parameters a product reads in Fortran order

    def _print_MatrixSymbol(self, expr: sp.MatrixSymbol) -> str:
        base, step = naming.split(expr.name)
        if step is None or base in self.io.arrays:
            return super()._print_MatrixSymbol(expr)
        self.steps.setdefault(naming.code_base(base))
        return naming.code_indexed(naming.step_name(naming.steps_name(naming.code_base(base)), step))

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        if is_matrix_parameter(expr.arg):
            name = naming.code_base(expr.arg.name)
            self.transposes.setdefault(name)
            return f"_{name}_T"
        return super()._print_Transpose(expr)

    def product(self, left: str, right: str, out: str) -> str:
        """``left @ right`` into ``out``: ``np.dot``, whose call costs less than ``np.matmul``'s
        (``python benchmarks/overhead.py`` times both), where ``out`` and ``left`` are C-contiguous
        (np.dot demands that of ``out`` and copies a ``left`` that is not); a slice of a stack is not."""
        strided = any(_array_of(code) in self.strided for code in (left, out))
        return f"np.{'matmul' if strided else 'dot'}({left}, {right}, out={out})"

    def right_operand(self, expr: sp.Basic) -> str:
        """W in rows @ W, a parameter: ``_W_F``, its copy in Fortran order where B > 1 (OpenBLAS's
        double kernels run rows @ W 20-30% faster so, the transpose's own layout, at (32, 256) x
        (256, 256) and (64, 512) x (512, 512): python benchmarks/gemm_layouts.py)."""
        if is_matrix_parameter(expr):
            name = naming.code_base(expr.name)
            self.fortran.setdefault(name)
            return f"_{name}_F"
        return self.doprint(expr)

    def scratch_for(self, rows: sp.Expr, level: int) -> str | None:
        """A (B, n) scratch array of n = ``rows`` (n_h, or 4 n_h for a stack of four), the first of its
        size or (level 1) the second."""
        if level >= SCRATCH_LEVELS:
            return None
        coeff, size = rows.as_coeff_Mul()
        name = f"_scratch_{'' if coeff == 1 else f'{coeff}_'}{size}" + (f"_{level}" if level else "")
        self.scratch[name] = f'{"" if coeff == 1 else f"{coeff} * "}sizes["{size}"]'
        return name


def _views(views: dict[str, View], keep: Callable[[View], bool]) -> tuple[View, ...]:
    """The row views ``keep`` accepts, in the order first printed."""
    return tuple(view for view in views.values() if keep(view))


def _matmul_operands(expr: sp.Basic, printer: BatchedPrinter) -> tuple[str, str, str] | None:
    """(function, left, right) of a product that NumPy can write into an array of its own: a
    parameter matrix times a vector (``v @ W.T``), or a diagonal times a vector (``a * v``)."""
    if not isinstance(expr, sp.MatMul) or len(expr.args) != 2:
        return None
    m, v = expr.args
    if not (isinstance(v, sp.MatrixSymbol) and naming.split(v.name)[1] is not None):
        return None
    if isinstance(m, Diag):
        return ("np.multiply", printer.doprint(m.arg), printer.doprint(v)) if _is_leaf(m.arg) else None
    if _is_parameter(m):
        return "np.matmul", printer.doprint(v), printer.right_operand(transpose(m))
    return None


def _is_leaf(expr: sp.Basic) -> bool:
    """What prints as a name or a number: an operand that needs no array of its own."""
    if isinstance(expr, sp.Transpose):
        expr = expr.arg
    return isinstance(expr, (sp.MatrixSymbol, sp.OneMatrix)) or is_scalar(expr)


def _positive(term: sp.Basic) -> sp.Basic:
    return negated(term) if is_negative(term) else term


class _Into:
    """An expression as NumPy calls that each write into ``dst``, innermost first (1 - h^2: square h
    into dst, then subtract dst from 1 into dst).  An operand that is not a name (a second product of
    a sum, a second factor, the vector a matrix multiplies) goes into a scratch array of its own size
    first, where the printer has one at this ``level`` (the loops' printer: two deep); ``lines`` is
    None where there is no such form."""

    def __init__(self, dst: str, printer: BatchedPrinter, level: int = 0) -> None:
        self.dst, self.printer, self.level = dst, printer, level

    def _scratch(self, expr: sp.Basic) -> str | None:
        return self.printer.scratch_for(expr.shape[0], self.level)

    def lines(self, expr: sp.Basic) -> list[str] | None:
        p, dst = self.printer.doprint, self.dst
        if isinstance(expr, sp.MatrixSymbol):
            return [] if p(expr) == dst else [f"np.copyto({dst}, {p(expr)})"]
        if (product := _matmul_operands(expr, self.printer)) is not None:
            fn, left, right = product
            if fn == "np.matmul":
                return [self.printer.product(left, right, dst)]
            return [f"{fn}({left}, {right}, out={dst})"]
        if isinstance(expr, sp.HadamardPower) and expr.exp == 2:
            return self._onto(expr.base, f"np.square({{}}, out={dst})")
        if isinstance(expr, Elementwise) and expr.op.code is not None:
            return self._onto(expr.arg, f"{expr.op.code}({{}}, out={dst})")
        if isinstance(expr, Softmax) and _is_leaf(expr.arg):
            return [f"_softmax({p(expr.arg)}, out={dst})"]
        if isinstance(expr, sp.MatMul) and is_scalar(expr.args[0]) and len(expr.args) == 2:
            return self._onto(expr.args[1], f"np.multiply({{}}, {p(expr.args[0])}, out={dst})")
        if isinstance(expr, Hadamard):
            return self._product(list(expr.args))
        if isinstance(expr, sp.MatMul) and isinstance(expr.args[0], Diag):  # diag(a) M v = a * (M v)
            return self._product([expr.args[0].arg, mul(*expr.args[1:])])
        if isinstance(expr, sp.MatMul) and len(expr.args) == 2 and (a := _diagonal_sum(expr.args[0])) is not None:
            return self._product([a, expr.args[1]])  # (diag(a) - diag(b)) v = (a - b) * v
        if isinstance(expr, sp.MatMul) and len(expr.args) >= 2 and _is_parameter(expr.args[0]):
            return self._matrix_times(expr.args[0], mul(*expr.args[1:]))  # W (...) v
        if isinstance(expr, sp.MatAdd) and (labels := _class_terms(expr, self.printer)):
            return _with_labels(self, expr, labels)
        if isinstance(expr, sp.MatAdd):
            return self._sum(ordered_terms(expr))
        return None

    def _onto(self, inner: sp.Basic, step: str) -> list[str] | None:
        """``step`` (a call reading ``{}`` as its operand) after ``inner`` is written into dst."""
        if _is_leaf(inner):
            return [step.format(self.printer.doprint(inner))]
        lines = self.lines(inner)
        return None if lines is None else [*lines, step.format(self.dst)]

    def _in_scratch(self, expr: sp.Basic) -> tuple[str, list[str]] | None:
        """(a scratch array, the lines that write expr into it)."""
        scratch = self._scratch(expr)
        lines = None if scratch is None else _Into(scratch, self.printer, self.level + 1).lines(expr)
        return None if lines is None or scratch is None else (scratch, lines)

    def _matrix_times(self, matrix: sp.Basic, vector: sp.Basic) -> list[str] | None:
        """W v, v not a name: v into scratch, then the product into dst."""
        computed = self._in_scratch(vector)
        if computed is None:
            return None
        scratch, lines = computed
        return [*lines, self.printer.product(scratch, self.printer.right_operand(transpose(matrix)), self.dst)]

    def _product(self, factors: list[sp.Basic]) -> list[str] | None:
        """An elementwise product: a factor that is not a name into dst (a second one into scratch),
        then dst multiplied by the rest."""
        p, dst = self.printer.doprint, self.dst
        inner = [f for f in factors if not _is_leaf(f)]
        names = [p(f) for f in factors if _is_leaf(f)]
        if len(inner) > 2:
            return None
        if not inner:
            return [f"np.multiply({names[0]}, {names[1]}, out={dst})"] + [
                f"np.multiply({dst}, {name}, out={dst})" for name in names[2:]
            ]
        first = self.lines(inner[0])
        second = self._in_scratch(inner[1]) if len(inner) == 2 else ("", [])
        if first is None or second is None:
            return None
        names += [second[0]] if len(inner) == 2 else []
        return first + second[1] + [f"np.multiply({dst}, {name}, out={dst})" for name in names]

    def _sum(self, terms: list[sp.Basic]) -> list[str] | None:
        """A sum: one term written into dst (a product, or the one term that is not a name: the
        base), the others added to it, each a name, a product, or with scratch anything."""
        p = self.printer.doprint
        bases = [t for t in terms if not _is_leaf(_positive(t))]
        products = [t for t in bases if _matmul_operands(_positive(t), self.printer) is not None]
        scratch = bool(bases) and self._scratch(bases[0]) is not None
        base = products[0] if products else (bases[0] if len(bases) == 1 or scratch else None)
        if base is None:
            if len(terms) != 2 or is_negative(terms[0]):
                return None
            a, b = terms
            return [f"np.{'subtract' if is_negative(b) else 'add'}({p(a)}, {p(_positive(b))}, out={self.dst})"]
        rest = [t for t in terms if t is not base]
        lines = self.lines(_positive(base))
        if lines is None:
            return None
        if is_negative(base):
            if len(rest) == 1 and not is_negative(rest[0]) and _is_leaf(rest[0]):  # 1 - h^2
                return [*lines, f"np.subtract({p(rest[0])}, {self.dst}, out={self.dst})"]
            lines.append(f"np.negative({self.dst}, out={self.dst})")
        added = self.added(rest)
        return None if added is None else lines + added

    def added(self, terms: list[sp.Basic]) -> list[str] | None:
        """The lines that add each of ``terms`` to dst."""
        lines = []
        for term in terms:
            computed = self._term(_positive(term))
            if computed is None:
                return None
            *before, operand = computed
            lines += [*before, self.increment(operand, is_negative(term))]
        return lines

    def _term(self, term: sp.Basic) -> list[str] | None:
        """What adds a term to dst: the lines that compute it, then its operand (a name or a product)."""
        if _is_leaf(term) or (self._scratch(term) is None and _matmul_operands(term, self.printer) is not None):
            return [self.printer.doprint(term)]
        computed = self._in_scratch(term)
        return None if computed is None else [*computed[1], computed[0]]

    def increment(self, operand: str, negative: bool = False) -> str:
        """dst += operand (-=): in place, and through ``np.add`` where dst is an element (``h_steps[t]``)."""
        if self.dst.isidentifier():
            return f"{self.dst} {'-=' if negative else '+='} {operand}"
        return f"np.{'subtract' if negative else 'add'}({self.dst}, {operand}, out={self.dst})"


def _is_parameter(expr: sp.Basic) -> bool:
    """A parameter matrix W, or its transpose."""
    return is_matrix_parameter(expr.arg if isinstance(expr, sp.Transpose) else expr)


def _diagonal_sum(expr: sp.Basic) -> sp.Basic | None:
    """a - b for diag(a) - diag(b) (a sum of diagonals, each times a number); None for anything else."""
    if not isinstance(expr, sp.MatAdd):
        return None
    vectors = []
    for term in expr.args:
        coeff, diag = term.args if isinstance(term, sp.MatMul) and len(term.args) == 2 else (sp.S.One, term)
        if not (isinstance(diag, Diag) and is_scalar(coeff)):
            return None
        vectors.append(mul(coeff, diag.arg))
    return add(*vectors)


def _written_into(dst: str, expr: sp.Basic, printer: BatchedPrinter) -> list[str] | None:
    return _Into(dst, printer).lines(expr)


def _class_terms(expr: sp.MatAdd, printer: BatchedPrinter) -> list[sp.Basic]:
    """The terms of a sum that are a class target, +-l (its one-hot vector)."""
    return [t for t in expr.args if printer.class_index(_positive(t)) is not None]


def _with_labels(into: _Into, expr: sp.MatAdd, labels: list[sp.Basic]) -> list[str] | None:
    """``p - l``, l a class target: the rest of the sum written into dst, then 1 taken from each row's
    entry at its class (``dst[rows, label] -= 1``), with no one-hot array."""
    rest = [t for t in expr.args if t not in labels]
    if not rest:
        return None
    lines = into.lines(rest[0] if len(rest) == 1 else sp.MatAdd(*rest))
    if lines is None:
        return None
    for term in labels:
        index = into.printer.class_index(_positive(term))
        assert index is not None
        labels_code, rows = index
        lines.append(f"{into.dst}[{rows}, {labels_code}] {'-=' if is_negative(term) else '+='} 1")
    return lines


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
    forward_views: tuple[View, ...]  # the row views of the forward pass's work arrays, made (and kept) with them
    backward_views: tuple[View, ...]  # those of the backward pass's besides
    io_views: tuple[View, ...]  # those of the inputs and targets, made by every call
    forward_needs: Needs  # what the forward loop reads besides the arrays
    backward_needs: Needs  # and the backward loop
    stacks: tuple[Stack, ...]  # the arrays that are slices of one, for one product per step
    aliases: tuple[tuple[str, str], ...]  # (a node, the node whose array it is written into)
    # the row views the backward pass fills for every step before its loop: J_t's own share at step t
    # and what reads only that, and the local derivatives; with lengths, zero where J_t is no loss
    seeded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Needs:
    """What a loop's lines read besides the work arrays: the tuples of the arrays' step views, the
    parameters' transposes, and the (B, n) scratch arrays (name: size)."""

    steps: tuple[str, ...]
    transposes: tuple[str, ...]
    scratch: tuple[tuple[str, str], ...]
    fortran: tuple[str, ...] = ()

    @staticmethod
    def of(printer: LoopPrinter, lines: list[Line]) -> Needs:
        """What ``lines`` (printed by ``printer``) read; a scratch array asked for but not used is left out."""
        code = "\n".join(line.code for line in lines)
        scratch = tuple((name, size) for name, size in printer.scratch.items() if re.search(rf"\b{name}\b", code))
        return Needs(tuple(printer.steps), tuple(printer.transposes), scratch, tuple(printer.fortran))


def io(cell: Cell) -> Io:
    """The cell's inputs and targets as the fast path reads them."""
    targets = {v.name: v for v in cell.targets}
    return Io(
        frozenset(v.name for v in (*cell.inputs, *cell.targets)),
        {name: f'sizes["n_{v.dim}"]' for name, v in targets.items() if v.kind == "class"},
        frozenset(targets) if cell.loss_mode == "last" else frozenset(),
    )


# ---- statements as lines ------------------------------------------------------------------


KEEP = "_keep"  # the rows a gradient's direct share sums: slice(None), or with lengths those where J_t is a loss


def _sum_code(terms: tuple[sp.Basic, ...], printer: BatchedPrinter) -> str:
    return " + ".join(printer.doprint(term) for term in terms)


def _is_total(s: Statement) -> bool:
    """A sum over every step: a gradient (``dW_hh``), its target indexed by no step."""
    return naming.split(s.target.name)[1] is None


def _all_steps_lines(s: Statement, rows: AllStepsPrinter, step: BatchedPrinter, loss: str) -> list[Line]:
    """A statement before or after the loop: for every step at once on the row views, or at step T
    alone (many-to-one)."""
    printer = step if s.last_step else rows
    if s.out is not None:  # p = softmax(y) and J = cross_entropy(p, l): one pass writes p and returns J
        return [Line(f"loss = {printer.cross_entropy(s.terms[0], printer.doprint(s.out))}", s.comment)]
    if naming.split(s.target.name)[0] == loss:
        return [Line(f"loss = {printer.doprint(s.expr)}", s.comment)]
    if _is_total(s):
        # the loss's own share reads the steps themselves, not deltas that are zero where J_t is no loss
        reads = printer.kept(KEEP) if s.direct and not s.last_step else printer
        code = summed(reads.doprint(s.expr), s.target.shape[1] == 1)
        return [Line(f"{naming.code_base(s.target.name)} = {code}", s.comment)]
    if s.last_step:
        return _into_lines(step.doprint(s.target), s.expr, step, s.comment)
    return _into_lines(rows.doprint(s.target), s.expr, rows, s.comment)


def _loop_lines(s: Statement, printer: LoopPrinter, shape: bool = False) -> list[Line]:
    """A statement in a loop, one step t, every operation written into an array (the target, or the
    scratch array of its size for a second operand); ``shape`` notes its rows' shape."""
    comment = s.comment + (f"  (B, {dim_code(s.target.shape[0])})" if shape else "")
    target = printer.doprint(s.target)
    into = _Into(target, printer)
    lines = into.lines(s.expr) if s.op == "=" else into.added(list(s.terms))
    if lines is None:  # no such form: NumPy's own temporaries
        lines = [f"{target}[...] {s.op} {_sum_code(s.terms, printer)}"]
    return [Line(code, comment if i == 0 else "") for i, code in enumerate(lines)]


def _step_line(s: Statement, step: BatchedPrinter, shape: bool = False) -> Line:
    """A statement in the loop, one step t; ``shape`` notes its rows' shape."""
    comment = s.comment + (f"  (B, {dim_code(s.target.shape[0])})" if shape else "")
    return Line(f"{step.doprint(s.target)} {s.op} {_sum_code(s.terms, step)}", comment)


def _phase_lines(
    phases: Phases, rows: AllStepsPrinter, step: BatchedPrinter, loop: LoopPrinter, loss: str, shape: bool = False
) -> dict[str, list[Line]]:
    """Each phase's lines, the statements printed in the schedule's order (which is the order the
    row views are first met, and declared)."""
    lines: dict[str, list[Line]] = {PRE: [], LOOP: [], POST: []}
    for s in phases.statements:
        if s.phase == LOOP:
            lines[LOOP] += _loop_lines(s, loop, shape)
        else:
            lines[s.phase] += _all_steps_lines(s, rows, step, loss)
    return lines


def _arrays(arrays: tuple[Array, ...], init: bool = False) -> tuple[dict[str, str], ...]:
    return tuple(
        {"name": a.name, "dim": a.dim, **({"init": "zeros" if a.zeros else "empty"} if init else {})} for a in arrays
    )


def hoisted(derivation: Derivation) -> Hoisted:
    """The fast path's lines: its schedule printed."""
    fused = fuse(schedule(derivation), derivation.cell, backward=not derivation.truncate)
    plan, loss = fused.schedule, derivation.cell.loss
    rows, step = AllStepsPrinter(io(derivation.cell)), BatchedPrinter(io=io(derivation.cell))
    members = frozenset(m for k in fused.stacks for m in (*k.members, *k.deltas))
    forward_loop, backward_loop = (LoopPrinter(io(derivation.cell), members) for _ in range(2))
    forward = _phase_lines(plan.forward, rows, step, forward_loop, loss, shape=True)
    forward_views = dict(rows.views)
    backward = _phase_lines(plan.backward, rows, step, backward_loop, loss)
    seeded = [rows.doprint(s.target) for s in plan.backward.pre if not (s.last_step or _is_total(s))]
    carries = [line for s in plan.backward.carries for line in _loop_lines(s, backward_loop)]
    return Hoisted(
        tuple(forward[PRE]),
        tuple(forward[LOOP]),
        tuple(forward[POST]),
        tuple(backward[PRE]),
        tuple(backward[LOOP]),
        tuple(backward[POST]),
        _arrays(plan.backward.deltas, init=True),
        tuple(carries),
        _arrays(plan.backward.locals),
        _views(forward_views, lambda view: view.kind == "work"),
        _views(rows.views, lambda view: view.kind == "work" and view.name not in forward_views),
        _views(rows.views, lambda view: view.kind != "work"),
        Needs.of(forward_loop, forward[LOOP]),
        Needs.of(backward_loop, [*backward[LOOP], *carries]),
        fused.stacks,
        () if derivation.truncate else tuple(in_place(plan, derivation.cell, fused.stacks).items()),
        tuple(dict.fromkeys(seeded)),
    )


# ---- truncated BPTT ---------------------------------------------------------------------


def _truncated_line(s: Statement, printer: BatchedPrinter) -> Line:
    """One statement of a truncated run's step, keeping J_s's own share at t == s only (and, of a
    gradient's direct share, the rows ``_keep``: with lengths, those where J_s is a loss)."""
    target, code = printer.doprint(s.target), _sum_code(s.terms, printer.kept(KEEP) if s.direct else printer)
    total = _is_total(s)
    bias = total and s.target.shape[1] == 1
    if s.below is None:
        return Line(f"{target} {s.op} {summed(code, bias)}", s.comment)
    if s.below:
        other = paren(summed(_sum_code(s.below, printer), bias))
    else:  # J_s reaches no such delta (a zero array) or gradient below step s
        other = "0" if total else f"{target}_zero"
    return Line(f"{target} {s.op} {paren(summed(code, bias))} if t == loss_t else {other}", s.comment)


@dataclass(frozen=True)
class TruncatedLines:
    """One step of a truncated run (for the loss J_s, s = loss_t): its deltas (in locals: dz), its
    gradient accumulations, its state carries, and the zero arrays it reads."""

    deltas: tuple[Line, ...]
    delta_names: tuple[str, ...]  # the locals the deltas are written into
    gradients: tuple[Line, ...]
    carries: tuple[Line, ...]
    zeros: list[dict[str, str]]


def truncated_backward(program: Program) -> TruncatedLines:
    """A truncated run's step, printed; its deltas come first (``truncated`` orders them so)."""
    run = truncated(program)
    locals = {a.target.name: naming.code_local(naming.grad_name(a.node)) for a in program.assigns}
    printer = BatchedPrinter(locals, io(program.cell))
    lines = tuple(_truncated_line(s, printer) for s in run.statements)
    count = len(program.assigns)
    return TruncatedLines(
        lines[:count],
        tuple(dict.fromkeys(printer.doprint(s.target) for s in run.statements[:count])),
        lines[count:],
        tuple(_step_line(s, printer) for s in run.carries),
        list(_arrays(run.zeros)),
    )
