"""Stage 6a, the analysis: fused products in the loops.

Gates whose pre-activations read the same state through matrices of their own (the LSTM's
U_f h[t-1], U_i h[t-1], U_o h[t-1], U_g h[t-1]; the GRU's U_r and U_u) are one *stack*: their
arrays are slices of one array, side by side in the order the cell writes them, and the loop
adds to them one product per step, h[t-1] (U_f; U_i; U_o; U_g)^T, on the matrices stacked once
per call.  Backward, the same matrices send the gates' inner deltas back to h[t-1]; where a
carry sums all of those terms and each inner delta is an array of its own, those arrays are
slices of one array too, and the carry takes one product, [dpre_f, ..., dpre_g] (U_f; ...; U_g).

Everything here rewrites a schedule's statements into ones about the stacks (``stack1@t``,
``W_stack1``, ``dstack1@t``); the printer prints them like any other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import sympy as sp

from derive.emit.numpy.schedule import LOOP, Backward, Phases, Schedule, Statement
from derive.emit.printing import text
from derive.ir import naming
from derive.ir.cell import Cell
from derive.ir.exprs import Elementwise, add, mul


@dataclass(frozen=True)
class Stack:
    """Nodes whose arrays are slices of one, and the matrices that multiply one operand into them."""

    index: int
    members: tuple[str, ...]  # the nodes, in order (f, i, o, g)
    weights: tuple[str, ...]  # each one's matrix (U_f, U_i, U_o, U_g)
    dim: str  # the members' dimension
    operand: str  # the operand's dimension (the matrices' columns)
    deltas: tuple[str, ...] = ()  # the inner-delta arrays the carry stacks the same way; () if it does not
    runs: tuple[tuple[str, int, int], ...] = ()  # (name, first, count): members activated by one call

    def run_name(self, first: int, count: int) -> str:
        return f"{self.name}_{first}_{first + count}"

    @property
    def name(self) -> str:
        return f"stack{self.index}"

    @property
    def delta_name(self) -> str:
        return f"dstack{self.index}"

    @property
    def weights_name(self) -> str:
        return f"W_stack{self.index}"

    def symbol(self, name: str, step: str | None = None) -> sp.MatrixSymbol:
        rows = len(self.members) * sp.Symbol(f"n_{self.dim}", integer=True, positive=True)
        if step is None:  # the stacked matrices
            return sp.MatrixSymbol(name, rows, sp.Symbol(f"n_{self.operand}", integer=True, positive=True))
        return sp.MatrixSymbol(naming.step_name(name, step), rows, 1)


@dataclass(frozen=True)
class Fused:
    schedule: Schedule
    stacks: tuple[Stack, ...]


# fuse :: Schedule -> Cell -> Fused
def fuse(plan: Schedule, cell: Cell, backward: bool = True) -> Fused:
    """The schedule with each stack's products fused (``backward``: in the carries too), and the
    activations of neighbouring members that apply one function, one call."""
    stacks = stacks_of(plan.forward, cell)
    if backward:
        stacks = tuple(_with_deltas(stack, plan.backward) for stack in stacks)
    forward = _fused_forward(plan.forward, stacks)
    for i in range(len(stacks)):
        forward, stacks = _one_activation(forward, stacks[i], stacks, i)
    carries = tuple(_fused_carry(s, stacks) for s in plan.backward.carries)
    return Fused(Schedule(forward, replace(plan.backward, carries=carries)), stacks)


def product_into(s: Statement) -> tuple[str, sp.MatrixSymbol] | None:
    """(W, v) of ``node@t += W v``, W a parameter and v a vector; None for any other statement."""
    if s.phase != LOOP or s.op != "+=" or len(s.terms) != 1:
        return None
    term = s.terms[0]
    if not (isinstance(term, sp.MatMul) and len(term.args) == 2):
        return None
    matrix, vector = term.args
    if not is_matrix_parameter(matrix):
        return None
    return (matrix.name, vector) if isinstance(vector, sp.MatrixSymbol) else None


def is_matrix_parameter(expr: sp.Basic) -> bool:
    """A parameter matrix W itself: a symbol of no step with more than one column."""
    return isinstance(expr, sp.MatrixSymbol) and naming.split(expr.name)[1] is None and expr.shape[1] != 1


def stacks_of(forward: Phases, cell: Cell) -> tuple[Stack, ...]:
    """The groups of two or more nodes that add a product of their own matrix and one operand."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for s in forward.statements:
        if (found := product_into(s)) is not None:
            groups[found[1].name].append((naming.split(s.target.name)[0], found[0]))
    stacks: list[Stack] = []
    for group in groups.values():
        nodes, weights = [n for n, _ in group], [w for _, w in group]
        shapes = {cell.param(w).shape for w in weights}
        if len(group) < 2 or len(shapes) != 1 or len(set(nodes)) < len(nodes) or len(set(weights)) < len(weights):
            continue
        dim, operand = shapes.pop()
        if any(cell.nodes[n].dim != dim for n in nodes):
            continue
        stacks.append(Stack(len(stacks) + 1, tuple(nodes), tuple(weights), dim, operand))
    return tuple(stacks)


def _carried_terms(carry: Statement) -> list[sp.Basic]:
    (expr,) = carry.terms
    return list(expr.args) if isinstance(expr, sp.MatAdd) else [expr]


def _transposed_product(term: sp.Basic) -> tuple[str, sp.MatrixSymbol] | None:
    """(W, v) of a term W^T v."""
    if isinstance(term, sp.MatMul) and len(term.args) == 2 and isinstance(term.args[0], sp.Transpose):
        matrix, vector = term.args[0].arg, term.args[1]
        if isinstance(matrix, sp.MatrixSymbol) and isinstance(vector, sp.MatrixSymbol):
            return matrix.name, vector
    return None


def _with_deltas(stack: Stack, backward: Backward) -> Stack:
    """The stack with its inner-delta arrays, where one carry reads every member's as W_k^T dpre_k@t,
    each an array of its own (a local of the backward pass, not read at another step)."""
    arrays = {a.name for a in backward.locals}
    for carry in backward.carries:
        found = dict(filter(None, map(_transposed_product, _carried_terms(carry))))
        vectors = [found.get(w) for w in stack.weights]
        if any(v is None for v in vectors):
            continue
        names = [naming.split(v.name) for v in vectors if v is not None]
        if all(step == "t" and base in arrays for base, step in names) and len({b for b, _ in names}) == len(names):
            return replace(stack, deltas=tuple(base for base, _ in names))
    return stack


def _fused_forward(forward: Phases, stacks: tuple[Stack, ...]) -> Phases:
    """Each stack's products as one statement, in its first member's place."""
    statements: list[Statement] = []
    for s in forward.statements:
        stack = next((k for k in stacks if naming.split(s.target.name)[0] in k.members and product_into(s)), None)
        if stack is None:
            statements.append(s)
        elif naming.split(s.target.name)[0] == stack.members[0]:
            statements.append(_stack_statement(stack, s))
    return Phases(tuple(statements))


def _activation_of(s: Statement, stack: Stack) -> tuple[int, type] | None:
    """(the member's position, its function) of ``m@t = f(m@t)``, m a member of the stack."""
    base = naming.split(s.target.name)[0]
    if base not in stack.members or s.op != "=" or len(s.terms) != 1:
        return None
    term = s.terms[0]
    if isinstance(term, Elementwise) and term.op.code is not None and term.arg == s.target:
        return stack.members.index(base), type(term)
    return None


def _one_activation(forward: Phases, stack: Stack, stacks: tuple[Stack, ...], i: int) -> tuple[Phases, tuple]:
    """Statements of the loop, one after the other there, that apply one function to neighbouring
    members (sigmoid to f, i, o) as one statement on those members' columns of the stack
    (``stack1_0_3``), in the first one's place."""
    loop = [j for j, s in enumerate(forward.statements) if s.phase == LOOP]
    merged: dict[int, Statement] = {}  # the index of a run's first statement: the run's statement
    dropped: set[int] = set()
    runs = []
    n = 0
    while n < len(loop):
        found = _activation_of(forward.statements[loop[n]], stack)
        m = n + 1
        while (
            found
            and m < len(loop)
            and _activation_of(forward.statements[loop[m]], stack) == (found[0] + m - n, found[1])
        ):
            m += 1
        if found is not None and m - n >= 2:
            runs.append((stack.run_name(found[0], m - n), found[0], m - n))
            merged[loop[n]] = _run_statement(stack, runs[-1], found[1], [forward.statements[j] for j in loop[n:m]])
            dropped |= set(loop[n + 1 : m])
        n = m
    out = [merged.get(j, s) for j, s in enumerate(forward.statements) if j not in dropped]
    return Phases(tuple(out)), (*stacks[:i], replace(stack, runs=tuple(runs)), *stacks[i + 1 :])


def _run_statement(stack: Stack, run: tuple[str, int, int], function: type, statements: list[Statement]) -> Statement:
    name, _, count = run
    rows = count * sp.Symbol(f"n_{stack.dim}", integer=True, positive=True)
    symbol = sp.MatrixSymbol(naming.step_name(name, "t"), rows, 1)
    return Statement(LOOP, symbol, (function(symbol),), comment="; ".join(s.comment for s in statements))


def _stack_statement(stack: Stack, first: Statement) -> Statement:
    found = product_into(first)
    assert found is not None
    operand = found[1]
    stacked = "; ".join(stack.weights)
    comment = f"{', '.join(stack.members)}: with the state's terms, one product ({stacked}) {text(operand)}"
    product = mul(stack.symbol(stack.weights_name), operand)
    return Statement(LOOP, stack.symbol(stack.name, "t"), (product,), "+=", comment)


def _fused_carry(carry: Statement, stacks: tuple[Stack, ...]) -> Statement:
    """The carry with each stack's terms W_k^T dpre_k@t as one, W_stack^T dstack@t."""
    terms = _carried_terms(carry)
    for stack in (k for k in stacks if k.deltas):
        fused = {w: d for w, d in zip(stack.weights, stack.deltas)}
        kept = [
            t for t in terms if (p := _transposed_product(t)) is None or fused.get(p[0]) != naming.split(p[1].name)[0]
        ]
        if len(kept) == len(terms) - len(fused):
            product = mul(sp.Transpose(stack.symbol(stack.weights_name)), stack.symbol(stack.delta_name, "t"))
            terms = [product, *kept]
    return replace(carry, terms=(add(*terms),)) if terms != _carried_terms(carry) else carry


# in_place :: Schedule -> Cell -> {node: the node whose array it lives in}
def in_place(plan: Schedule, cell: Cell, stacks: tuple[Stack, ...]) -> dict[str, str]:
    """The pre-activations written into their activation's own array and activated there: z of
    h = f(z) (f elementwise), where nothing but that statement reads z at any step, z is no state
    or output, and neither is a stack's slice.  One (T + 1, B, n) array fewer, and one pass less."""
    statements = [*plan.forward.statements, *plan.backward.statements, *plan.backward.carries]
    stacked = {m for k in stacks for m in k.members}
    keep = cell.outputs | {s.name for s in cell.states} | stacked
    aliases: dict[str, str] = {}
    for s in plan.forward.statements:
        (term,) = s.terms if len(s.terms) == 1 else (None,)
        if s.op != "=" or not isinstance(term, Elementwise) or term.op.code is None:
            continue
        if not isinstance(term.arg, sp.MatrixSymbol) or naming.split(term.arg.name)[1] != "t":
            continue
        a, b = naming.split(term.arg.name)[0], naming.split(s.target.name)[0]
        if a in keep or b in stacked or a == b or cell.nodes[a].dim != cell.nodes[b].dim:
            continue
        readers = [
            r
            for r in statements
            if naming.split(r.target.name)[0] != a and any(naming.split(n)[0] == a for n in r.reads)
        ]
        if readers == [s] and b not in aliases.values() and a not in aliases.values():
            aliases[a] = b
    return aliases
