"""Stage 6a, the analysis: the fast path's schedule, what runs before the loop over t, in it, after it.

The generated module's fast path runs each pass in three phases: ``pre`` (every step at once,
on (T * B, n) row views), ``loop`` (one step t of the recurrence) and ``post`` (every step at
once again).  As in JAX's partial evaluation of a scan (``_scan_partial_eval``), a value is
*unknown* before the loop when it reads what the recurrence carries (a state at t-1 forward, a
carried share backward, or an unknown value of the same step), and *known* otherwise.  Where a
statement goes follows from that and from what reads it (``_phase``): the loop reads it and it
is known, before the loop; the loop reads it and it is unknown, in the loop; the loop does not
read it, after the loop.  A sum that mixes both is split: its known terms before the loop, the
loop adds the rest.

Everything here is SymPy and names; ``fast`` prints a schedule into the module's lines.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, field, replace

import sympy as sp

from derive.derivation.adjoint import Accumulate, Assign, Program
from derive.derivation.pipeline import Derivation
from derive.emit.numpy.runs import Run, inner_deltas, reading_runs, with_factors
from derive.emit.printing import equation_text, text
from derive.ir import naming
from derive.ir.cell import Cell, Equation, dim_symbol
from derive.ir.exprs import (
    BinaryCrossEntropy,
    CrossEntropy,
    Diag,
    Elementwise,
    Hadamard,
    SigmoidBinaryCrossEntropy,
    Softmax,
    SoftmaxCrossEntropy,
    add,
    mul,
    neg,
    scaled,
)
from derive.ir.ops import Sigmoid

PRE, LOOP, POST = "pre", "loop", "post"


@dataclass(frozen=True)
class Statement:
    """``target op sum(terms)`` at step t: ``z@t = W_xh x@t`` or ``dh@t += dh_next``.

    A target without a step is a sum over every step (a gradient, ``dW_hh``) or a carried share
    (``dh_next``).  The terms are printed in their order, joined by ``+``."""

    phase: str  # PRE, LOOP or POST
    target: sp.MatrixSymbol
    terms: tuple[sp.Basic, ...]
    op: str = "="  # "=" or "+="
    comment: str = ""
    last_step: bool = False  # many-to-one: computed at step T alone, not for every step
    out: sp.MatrixSymbol | None = None  # a second array it writes: p of J = cross_entropy(softmax(y)), fused
    below: tuple[sp.Basic, ...] | None = None  # truncated BPTT: the terms below the loss's step, if other (): none
    direct: bool = False  # a gradient with the loss's own share (J_t reads the parameter): not through deltas alone

    @property
    def expr(self) -> sp.Basic:
        return add(*self.terms)

    @property
    def reads(self) -> frozenset[str]:
        """The names of the symbols it reads (``+=`` reads its target too)."""
        names = {s.name for term in (*self.terms, *(self.below or ())) for s in term.atoms(sp.MatrixSymbol)}
        return frozenset(names | ({self.target.name} if self.op == "+=" else set()))


@dataclass(frozen=True)
class Array:
    """A (T + 1, B, n) work array the fast path allocates: a delta, a local derivative, an inner delta."""

    name: str  # the module's name: dz, dh_dz, dh_pre
    dim: str
    zeros: bool = False  # zero-filled (a many-to-one output's delta, which step T alone writes)


@dataclass(frozen=True)
class Phases:
    """The statements of one pass in the order decided (the order the printer walks)."""

    statements: tuple[Statement, ...]

    def phase(self, name: str) -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if s.phase == name)

    @property
    def pre(self) -> tuple[Statement, ...]:
        return self.phase(PRE)

    @property
    def loop(self) -> tuple[Statement, ...]:
        return self.phase(LOOP)

    @property
    def post(self) -> tuple[Statement, ...]:
        return self.phase(POST)


@dataclass(frozen=True)
class Backward(Phases):
    carries: tuple[Statement, ...]  # the loop's last statements: each state's share carried to t-1
    deltas: tuple[Array, ...]
    locals: tuple[Array, ...]  # local derivatives (dh_dz), inner deltas (dh_pre) and slopes (dh_dpre)
    carried_views: frozenset[str]  # the states whose carried share is one step of an array


@dataclass(frozen=True)
class Schedule:
    forward: Phases
    backward: Backward


@dataclass(frozen=True)
class Truncated:
    """One step t of truncated BPTT's run for the loss J_s: the deltas and gradient shares (a
    statement with ``below`` keeps J_s's own share at t == s only), then the carries."""

    statements: tuple[Statement, ...]
    carries: tuple[Statement, ...]
    zeros: tuple[Array, ...]  # the deltas J_s does not reach below step s: zero arrays


# schedule :: Derivation -> Schedule
def schedule(derivation: Derivation) -> Schedule:
    plan = Schedule(forward(derivation), backward(derivation))
    return plan if derivation.truncate else one_softmax(plan, derivation.cell.loss)


def one_softmax(plan: Schedule, loss: str) -> Schedule:
    """Where J = cross_entropy(softmax(y), l) and a delta is softmax(y) - l (times a number), one pass:
    the loss writes softmax(y) into the delta's array, and the delta takes l from it in place."""
    forward, backward = plan.forward.statements, plan.backward.statements
    j = next((i for i, s in enumerate(forward) if naming.split(s.target.name)[0] == loss), None)
    if j is None or forward[j].out is not None or not isinstance(forward[j].terms[0], SoftmaxCrossEntropy):
        return plan
    ce = forward[j].terms[0]
    for i, s in enumerate(backward):
        if s.phase != PRE or s.op != "=" or s.last_step != forward[j].last_step or len(s.terms) != 1:
            continue
        in_place = _softmax_taken(s.terms[0], ce, s.target)
        if in_place is not None:
            comment = f"{forward[j].comment}, and softmax into {text(s.target)}"
            fused = replace(forward[j], out=s.target, comment=comment)
            delta = replace(s, terms=(in_place,), comment=f"{s.comment} (softmax written by the loss)")
            return Schedule(
                Phases((*forward[:j], fused, *forward[j + 1 :])),
                replace(plan.backward, statements=(*backward[:i], delta, *backward[i + 1 :])),
            )
    return plan


def _softmax_taken(term: sp.Basic, ce: SoftmaxCrossEntropy, delta: sp.MatrixSymbol) -> sp.Basic | None:
    """c (softmax(y) - l) with ``delta`` in softmax(y)'s place; None for any other term."""
    coeff, inner = scaled(term)
    want = {Softmax(ce.logits), neg(ce.target)}
    if not isinstance(inner, sp.MatAdd) or set(inner.args) != want:
        return None
    difference = add(delta, neg(ce.target))
    return difference if coeff == 1 else mul(coeff, difference)


def _phase(unknown: bool, read_by_loop: bool) -> str:
    """Where a value goes: where the loop reads it, before the loop if it can be, else in it."""
    if not read_by_loop:
        return POST
    return LOOP if unknown else PRE


# ---- names ------------------------------------------------------------------------


def carry_symbol(state: str, shape: tuple[sp.Expr, ...]) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(naming.carried_local(state), *shape)


class _Names:
    """Names for the arrays the fast path adds (dh_dz, dh_pre, dh_dpre), each different from every
    name the module uses already (the cell's names, their deltas and carries, the module's own)
    and from each other: a name already taken gets a number (dh_pre2)."""

    def __init__(self, cell: Cell) -> None:
        used = set(naming.RESERVED)
        names = [*cell.param_names, *(e.name for e in cell.equations), *(s.name for s in cell.states)]
        names += [v.name for v in (*cell.inputs, *cell.targets)]
        for name in map(naming.code_base, names):
            used |= {
                name,
                f"d{name}",
                f"d{name}_next",
                naming.initial_arg(name),
                f"d{naming.initial_arg(name)}_acc",
                f"d{name}_zero",
            }
        self.used = used

    def fresh(self, want: str) -> str:
        name, n = want, 1
        while name in self.used or naming.rows_view(name) in self.used:
            n += 1
            name = f"{want}{n}"
        self.used.add(name)
        return name


def _outputs_only(cell: Cell, wrt: str) -> bool:
    """Whether only the outputs (y, p: what only the loss reads) read the parameter: W_y."""
    psym = cell.param(wrt).symbol
    return {eq.name for eq in cell.equations if eq.rhs.has(psym)} <= cell.outputs


def _reads(expr: sp.Basic, names: Collection[str]) -> bool:
    return any(s.name in names for s in expr.atoms(sp.MatrixSymbol))


def _terms(expr: sp.Basic) -> list[sp.Basic]:
    return list(expr.args) if isinstance(expr, sp.MatAdd) else [expr]


def _summed_terms(terms: list[sp.Basic]) -> sp.Basic:
    return terms[0] if len(terms) == 1 else sp.MatAdd(*terms)


# ---- forward ----------------------------------------------------------------------


def recurrent_nodes(cell: Cell) -> set[str]:
    """The nodes whose value at step t depends on a state at t-1, through the step's own nodes."""
    previous = {naming.step_name(s.name, "t-1") for s in cell.states}
    recurrent: set[str] = set()
    for eq in cell.equations:
        reads = {s.name for s in eq.rhs.atoms(sp.MatrixSymbol)}
        if reads & previous or reads & {naming.step_name(n, "t") for n in recurrent}:
            recurrent.add(eq.name)
    return recurrent


# (a loss, the function of the logits its probabilities are, the loss as code computes it from the logits)
FROM_LOGITS = (
    (CrossEntropy, Softmax, SoftmaxCrossEntropy),
    (BinaryCrossEntropy, Sigmoid, SigmoidBinaryCrossEntropy),
)


def code_loss(cell: Cell, rhs: sp.Basic) -> sp.Basic:
    """The loss as code computes it: each cross_entropy(softmax(y)) and binary_cross_entropy(sigmoid(y))
    from the logits, stably (in a weighted sum of losses too)."""
    fused = {}
    for kind, of, code in (
        (CrossEntropy, Softmax, SoftmaxCrossEntropy),
        (BinaryCrossEntropy, Sigmoid, SigmoidBinaryCrossEntropy),
    ):
        named = {naming.step_name(e.name, "t"): e.rhs for e in cell.equations if isinstance(e.rhs, of)}
        for loss in rhs.atoms(kind) | ({rhs} if isinstance(rhs, kind) else set()):
            if isinstance(loss.p, of):  # cross_entropy(softmax(y), l)
                fused[loss] = code(loss.p.arg, loss.target)
            elif isinstance(loss.p, sp.MatrixSymbol) and loss.p.name in named:  # p = softmax(y) at step t
                fused[loss] = code(named[loss.p.name].arg, loss.target)
    return rhs.xreplace(fused)


def split_sum(rhs: sp.Basic, unknown: Collection[str]) -> tuple[sp.Basic, sp.Basic] | None:
    """(the known terms, the unknown ones) of a sum, or of the sum inside an elementwise
    activation: tanh(W x + U h[t-1] + b) -> (W x + b, U h[t-1]); None where nothing splits off."""
    total = rhs.arg if isinstance(rhs, Elementwise) else rhs
    if not isinstance(total, sp.MatAdd):
        return None
    known = [term for term in total.args if not _reads(term, unknown)]
    inside = [term for term in total.args if _reads(term, unknown)]
    if not known or not inside:
        return None
    return _summed_terms(known), _summed_terms(inside)


# forward :: Derivation -> Phases
#   one statement per equation z_t = f(...), two for a sum that is partly known (W x + b before the
#   loop, U h[t-1] in it); the loss fused with p = softmax(y) where it reads p
def forward(derivation: Derivation) -> Phases:
    cell = derivation.cell
    recurrent = recurrent_nodes(cell)
    unknown = {naming.step_name(s.name, "t-1") for s in cell.states} | {naming.step_name(n, "t") for n in recurrent}
    statements: list[Statement] = []
    for eq in cell.equations:
        if eq.name == cell.loss:
            statements = _with_loss(statements, _forward_statements(cell, eq, recurrent, unknown)[0])
        else:
            statements += _forward_statements(cell, eq, recurrent, unknown)
    return Phases(tuple(statements))


def _forward_statements(cell: Cell, eq: Equation, recurrent: set[str], unknown: set[str]) -> list[Statement]:
    lhs = sp.MatrixSymbol(naming.step_name(eq.name, "t"), *eq.shape)
    comment = equation_text(lhs, eq.rhs)
    rhs = code_loss(cell, eq.rhs) if eq.name == cell.loss else eq.rhs
    # no state reads an output (y, p, J): the loop does not
    phase = _phase(eq.name in recurrent, eq.name not in cell.outputs)
    if phase == POST:
        return [Statement(POST, lhs, (rhs,), comment=comment, last_step=cell.loss_mode == "last")]
    if phase == PRE:
        return [Statement(PRE, lhs, (rhs,), comment=comment + "  (every step)")]
    split = split_sum(rhs, unknown)
    if split is None:
        return [Statement(LOOP, lhs, (rhs,), comment=comment)]
    # the known terms (W x + b) for every step at once, into the node's own rows; the loop adds the
    # state's terms (U h[t-1]) and applies the activation, if any
    known, inside = split
    before = Statement(PRE, lhs, (known,), comment=f"{comment}: the terms without the state")
    add_state = Statement(LOOP, lhs, (inside,), "+=", f"{comment}: with the state's terms")
    if isinstance(rhs, Elementwise):  # then the activation, in place
        return [before, add_state, Statement(LOOP, lhs, (type(rhs)(lhs),), comment=f"{comment}: the activation")]
    return [before, add_state]


def _with_loss(statements: list[Statement], loss: Statement) -> list[Statement]:
    """The loss after the statements; where it is cross_entropy(softmax(y)) and p = softmax(y) is
    one of them, in p's place: one pass writes p and returns J."""
    ce = loss.terms[0]
    if isinstance(ce, SoftmaxCrossEntropy):
        for i in reversed(range(len(statements))):
            s = statements[i]
            if s.phase == POST and isinstance(s.terms[0], Softmax) and s.terms[0].arg == ce.logits:
                fused = replace(loss, out=s.target, comment=f"{s.comment}, and {loss.comment}")
                return [*statements[:i], fused, *statements[i + 1 :]]
    return [*statements, loss]


# ---- backward ---------------------------------------------------------------------


def recurrent_deltas(program: Program) -> set[str]:
    """The nodes whose delta at step t depends on what is carried back from step t + 1: the
    states, and every node one of these reads (through its users' deltas at step t)."""
    recurrent: set[str] = set()
    for a in program.assigns:  # users first: the reverse of the cell's order
        reads = {naming.split(s.name)[0] for s in a.expr.atoms(sp.MatrixSymbol)}
        if a.carried is not None or any(naming.grad_name(n) in reads for n in recurrent):
            recurrent.add(a.node)
    return recurrent


@dataclass
class _Draft:
    """The backward schedule while it is decided: statements in order, and the arrays added."""

    program: Program
    names: _Names
    delta_node: dict[str, str]  # dz@t: z
    statements: list[Statement] = field(default_factory=list)
    locals: list[Array] = field(default_factory=list)
    local_of: dict[tuple[str, str], sp.MatrixSymbol] = field(default_factory=dict)  # (user, node): d user/d node

    def array(self, want: str, node: str, shape: tuple[sp.Expr, ...]) -> sp.MatrixSymbol:
        """A fresh array of node's dimension, by step: ``dh_dz@t``."""
        name = self.names.fresh(want)
        self.locals.append(Array(name, self.program.cell.nodes[node].dim))
        return sp.MatrixSymbol(naming.step_name(name, "t"), *shape)


# backward :: Derivation -> Backward
#   the program's assigns (deltas), known ones before the loop and unknown ones in it; the inner
#   deltas (diag(f'(a_t)) delta^u_t) where what reads them needs them; the accumulates (gradients)
#   after it; the carries (s_{t-1}'s share) last in the loop
def backward(derivation: Derivation) -> Backward:
    program = derivation.program
    delta_node = {naming.grad_name(naming.step_name(a.node, "t")): a.node for a in program.assigns}
    draft = _Draft(program, _Names(program.cell), delta_node)
    unknown = recurrent_deltas(program)
    for a in program.assigns:
        _delta(draft, a, unknown)
    symbols = _inner_delta_symbols(draft)
    draft.statements = [_reading_runs(s, symbols) for s in draft.statements]
    carries = _carries(program, symbols)
    loop_reads = {name for s in (*draft.statements, *carries) if s.phase == LOOP for name in s.reads}
    for run, symbol in symbols.items():
        _inner_delta(draft, run, symbol, unknown, loop_reads)
    meaning = {symbol.name: mul(*diags, delta) for (diags, delta), symbol in symbols.items()}
    statements, carries = _shared_products(draft, _after_their_deltas(draft.statements, symbols), carries, meaning)
    statements += [_gradient(program.cell, acc, symbols) for acc in program.accumulates]
    return Backward(
        tuple(statements),
        carries,
        tuple(_delta_array(program.cell, a) for a in program.assigns),
        tuple(draft.locals),
        # a carried share that is one step of an array (c = c[t-1] + ...: dc_t itself)
        frozenset(c.state for c, s in zip(program.carries, carries) if isinstance(s.terms[0], sp.MatrixSymbol)),
    )


def _delta_array(cell: Cell, a: Assign) -> Array:
    zeros = a.node in cell.outputs and cell.loss_mode == "last"
    return Array(naming.code_base(naming.grad_name(a.node)), cell.nodes[a.node].dim, zeros)


def _delta(draft: _Draft, a: Assign, unknown: set[str]) -> None:
    """delta^n_t.  Known (no carried share reaches it through its users' deltas): before the loop,
    where the known terms of the other deltas read it.  Unknown: in the loop, its known terms
    split off before it, and each local derivative it multiplies by an array before it."""
    cell = draft.program.cell
    comment = f"{text(a.target)} = {text(a.expr)}"
    if a.node not in unknown:
        output = a.node in cell.outputs
        last = output and cell.loss_mode == "last"
        draft.statements.append(
            Statement(PRE, a.target, (a.expr,), comment=comment + ("" if output else "  (every step)"), last_step=last)
        )
        return
    loop_symbols = {naming.grad_name(naming.step_name(n, "t")) for n in unknown}
    terms = _terms(a.expr) if not isinstance(a.expr, sp.ZeroMatrix) else []
    known = [term for term in terms if not _reads(term, loop_symbols)]
    inside = [_local_derivative(draft, term, a.node) for term in terms if _reads(term, loop_symbols)]
    if a.carried is not None:
        comment += f" + {text(draft.program.carried_into(a.node))}"
        inside.append(carry_symbol(a.node, a.target.shape))
    if not known:
        draft.statements.append(Statement(LOOP, a.target, tuple(inside), comment=comment))
        return
    # the terms that read no carried share, for every step at once; the loop adds the rest
    draft.statements += [
        Statement(PRE, a.target, (_summed_terms(known),), comment=f"{comment}: the terms without the carried share"),
        Statement(LOOP, a.target, tuple(inside), "+=", f"{comment}: the carried share"),
    ]


def _elementwise_product(factors: list[sp.Basic]) -> sp.Basic:
    return functools.reduce(Hadamard, factors)


def _local_derivative(draft: _Draft, part: sp.Basic, node: str) -> sp.Basic:
    """diag(a) diag(b) delta^u_t, a or b more than a name: the diagonal of du_t/dnode_t as an
    array of its own, computed for every step before the loop (it reads no delta)."""
    if not isinstance(part, sp.MatMul) or not isinstance(part.args[-1], sp.MatrixSymbol):
        return part
    *diags, delta = part.args
    user = draft.delta_node.get(delta.name)
    if user is None or not diags or not all(isinstance(d, Diag) for d in diags):
        return part
    if all(isinstance(d.arg, sp.MatrixSymbol) for d in diags):
        return part
    if (user, node) not in draft.local_of:
        symbol = draft.local_of[user, node] = draft.array(naming.local_name(user, node), node, delta.shape)
        value = _elementwise_product([d.arg for d in diags])
        draft.statements.append(
            Statement(PRE, symbol, (value,), comment=f"diag of d{user}_t/d{node}_t = {text(value)}")
        )
    return mul(Diag(draft.local_of[user, node]), delta)


def _inner_delta_symbols(draft: _Draft) -> dict[Run, sp.MatrixSymbol]:
    """diag(f'(a_t)) delta^u_t, the delta at the argument a of u's activation, read by the carries
    and by the gradients of every parameter inside a: one array each, computed once."""
    cell = draft.program.cell
    deltas = {d for d, n in draft.delta_node.items() if n not in cell.outputs}
    symbols = {}
    for diags, delta in inner_deltas(draft.program, deltas):
        name = draft.names.fresh(f"d{naming.code_base(draft.delta_node[delta.name])}_pre")
        symbols[diags, delta] = sp.MatrixSymbol(naming.step_name(name, "t"), *delta.shape)
    return symbols


def _inner_delta(draft: _Draft, run: Run, symbol: sp.MatrixSymbol, unknown: set[str], loop_reads: set[str]) -> None:
    """An inner delta's statement, where what reads it needs it: in the loop where the loop reads
    it (a carry: diag(u) diag(1 - h^2) dh reads the run's array too) and its delta is unknown, with
    the activation's slope an array before the loop; else before the loop or after it."""
    diags, delta = run
    u = draft.delta_node[delta.name]
    name = naming.split(symbol.name)[0]
    draft.locals.append(Array(name, draft.program.cell.nodes[u].dim))
    comment = f"the delta at the argument of {u}'s activation: {text(mul(*diags, delta))}"
    phase = _phase(u in unknown, symbol.name in loop_reads)
    if phase != LOOP:
        draft.statements.append(Statement(phase, symbol, (mul(*diags, delta),), comment=comment))
        return
    local = draft.array(f"d{naming.code_base(u)}_dpre", u, delta.shape)  # the derivative of u's activation
    value = _elementwise_product([d.arg for d in diags])
    draft.statements += [
        Statement(PRE, local, (value,), comment=f"the slope of {u}'s activation: {text(value)}"),
        Statement(LOOP, symbol, (mul(Diag(local), delta),), comment=comment),
    ]


def _reading_runs(s: Statement, symbols: dict[Run, sp.MatrixSymbol]) -> Statement:
    """A delta the loop computes, reading the inner deltas' arrays where its terms hold their runs:
    dJ/df_t = diag(h_{t-1}) U^T dn_pre_t, not diag(h_{t-1}) U^T diag(1 - n_t^2) dn_t again."""
    if s.phase != LOOP or not symbols:
        return s
    return replace(s, terms=tuple(reading_runs(term, symbols) for term in s.terms))


def _after_their_deltas(statements: list[Statement], symbols: dict[Run, sp.MatrixSymbol]) -> list[Statement]:
    """Each inner delta the loop computes right after its delta's last statement in the loop, so that
    the deltas after it (which read it) find it computed."""
    delta_of = {symbol.name: delta.name for (_, delta), symbol in symbols.items()}
    moved = [s for s in statements if s.phase == LOOP and s.target.name in delta_of]
    ordered = [s for s in statements if s not in moved]
    for s in moved:
        last = max(
            i for i, other in enumerate(ordered) if other.phase == LOOP and other.target.name == delta_of[s.target.name]
        )
        ordered.insert(last + 1, s)
    return ordered


# ---- products the loop reads twice --------------------------------------------------

Product = tuple[sp.Basic, sp.MatrixSymbol]  # (A, X_t): A X_t, A a matrix (U^T), X_t an array of the loop


def _products(expr: sp.Basic, loop_arrays: Collection[str]) -> list[Product]:
    """The products A X_t inside ``expr``'s terms, A a weight (or its transpose), X_t computed in the loop."""
    found = []
    for term in _terms(expr):
        args = term.args if isinstance(term, sp.MatMul) else ()
        for a, x in zip(args, args[1:]):
            if isinstance(x, sp.MatrixSymbol) and x.name in loop_arrays and _is_weight(a):
                found.append((a, x))
    return found


def _is_weight(a: sp.Basic) -> bool:
    return isinstance(a, sp.MatrixSymbol) or (isinstance(a, sp.Transpose) and isinstance(a.arg, sp.MatrixSymbol))


def _replaced(s: Statement, product: Product, symbol: sp.MatrixSymbol) -> Statement:
    return replace(s, terms=tuple(with_factors(term, product, symbol) for term in s.terms))


def _shared_products(
    draft: _Draft, statements: list[Statement], carries: tuple[Statement, ...], meaning: dict[str, sp.Basic]
) -> tuple[list[Statement], tuple[Statement, ...]]:
    """A product A X_t that two of the loop's statements read (a delta and a carry: the MGU's and the
    GRU's U^T dn_pre_t) computed once per step, into an array of its own, right after X_t."""
    loop_arrays = {s.target.name for s in statements if s.phase == LOOP}
    counts: dict[Product, int] = {}
    for s in (*statements, *carries):
        if s.phase == LOOP:
            for product in dict.fromkeys(_products(s.expr, loop_arrays)):
                counts[product] = counts.get(product, 0) + 1
    for (a, x), n in counts.items():
        if n < 2:
            continue
        name = draft.names.fresh(f"{naming.split(x.name)[0]}_{naming.code_base(_weight_name(a))}")
        symbol = sp.MatrixSymbol(naming.step_name(name, "t"), a.shape[0], x.shape[1])
        draft.locals.append(Array(name, _dim_of(draft, a.shape[0])))
        statements = [_replaced(s, (a, x), symbol) if s.phase == LOOP else s for s in statements]
        carries = tuple(_replaced(c, (a, x), symbol) for c in carries)
        at = max(i for i, s in enumerate(statements) if s.phase == LOOP and s.target == x)
        comment = f"{text(mul(a, meaning.get(x.name, x)))}: read by {n} statements of the step, computed once"
        statements.insert(at + 1, Statement(LOOP, symbol, (mul(a, x),), comment=comment))
    return statements, carries


def _weight_name(a: sp.Basic) -> str:
    return a.arg.name if isinstance(a, sp.Transpose) else a.name


def _dim_of(draft: _Draft, size: sp.Expr) -> str:
    """The dimension whose size is ``size`` (n_h: "h")."""
    return next(d for d in draft.program.cell.dims if dim_symbol(d) == size)


def _gradient(cell: Cell, acc: Accumulate, symbols: dict[Run, sp.MatrixSymbol]) -> Statement:
    """dJ/dw, one product over every step after the loop (nothing in the loop reads a gradient)."""
    target = sp.MatrixSymbol(naming.grad_name(acc.wrt), *cell.param(acc.wrt).symbol.shape)
    last = cell.loss_mode == "last" and _outputs_only(cell, acc.wrt)  # many-to-one: the outputs' at step T alone
    comment = f"dJ/d{acc.wrt} = sum over t of {text(acc.expr)}"
    return Statement(
        POST, target, (reading_runs(acc.expr, symbols),), comment=comment, last_step=last, direct=acc.direct is not None
    )


def _carries(program: Program, symbols: dict[Run, sp.MatrixSymbol]) -> tuple[Statement, ...]:
    """The share of dJ/ds_{t-1} of each state, as the loop computes it (reading the inner deltas)."""
    return tuple(
        Statement(
            LOOP,
            carry_symbol(c.state, c.expr.shape),
            (reading_runs(c.expr, symbols),),
            comment=f"share of {naming.text_name(naming.grad_name(naming.step_name(c.state, 't-1')))}: {text(c.expr)}",
        )
        for c in program.carries
    )


# ---- truncated BPTT ------------------------------------------------------------------


# truncated :: Program -> Truncated
#   one step t of the run for J_s, every statement in the loop over t = s, ..., s - K + 1: below step
#   s the run carries J_s alone, so a delta or gradient that J_t reads directly keeps that share
#   (``direct``) at t == s only and its ``through`` part below it; the outputs (y, p: what only the
#   loss reads) have no delta below step s at all
def truncated(program: Program) -> Truncated:
    cell = program.cell
    statements = [_truncated_delta(program, a) for a in program.assigns]
    statements += [_truncated_gradient(cell, acc) for acc in program.accumulates]
    zeros = tuple(
        _delta_array(cell, a) for a, s in zip(program.assigns, statements) if s.below is not None and not s.below
    )
    return Truncated(tuple(statements), _carries(program, {}), tuple(replace(z, zeros=True) for z in zeros))


def _truncated_delta(program: Program, a: Assign) -> Statement:
    comment = f"{text(a.target)} = {text(a.expr)}"
    terms: tuple[sp.Basic, ...] = (a.expr,)
    through: tuple[sp.Basic, ...] = () if isinstance(a.through, sp.ZeroMatrix) else (a.through,)
    if a.carried is not None:
        carry = carry_symbol(a.node, a.target.shape)
        terms, through = (*terms, carry), (*through, carry)
        comment += f" + {text(program.carried_into(a.node))}"
    output = a.node in program.cell.outputs
    if a.direct is None and not output:
        return Statement(LOOP, a.target, terms, comment=comment)
    below = () if output else through  # (): nothing reaches this node below step s
    return Statement(LOOP, a.target, terms, comment=comment + " (J_s's own at t = s)", below=below)


def _truncated_gradient(cell: Cell, acc: Accumulate) -> Statement:
    target = sp.MatrixSymbol(naming.grad_name(acc.wrt), *cell.param(acc.wrt).symbol.shape)
    comment = f"dJ/d{acc.wrt} += {text(acc.expr)}"
    output = _outputs_only(cell, acc.wrt)
    if acc.direct is None and not output:
        return Statement(LOOP, target, (acc.expr,), "+=", comment)
    below = () if isinstance(acc.through, sp.ZeroMatrix) or output else (acc.through,)
    comment += " (J_s's own at t = s)"
    return Statement(LOOP, target, (acc.expr,), "+=", comment, below=below, direct=acc.direct is not None)
