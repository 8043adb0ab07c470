"""One product per step for the gates of a framework's loop, as the NumPy path's ``fusion`` does.

Gates that add their own matrix times one operand (the LSTM's U_f h_{t-1}, ..., U_g h_{t-1}) take
one product with the matrices stacked, ``_stack1 = h_prev @ W_stack1.T``, and each adds its
columns; backward, a carry that sums U_f^T dpre_f + ... + U_g^T dpre_g takes one product of the
inner deltas side by side, ``_concat((df_pre, ..., dg_pre), -1) @ W_stack1``.  The stacks are
``fusion``'s (which gates, which matrices, in which order); here they are printed as lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from derive.emit.numpy.fast import Line
from derive.emit.numpy.fusion import Stack, product_into
from derive.emit.numpy.schedule import Statement
from derive.emit.printing import BatchedPrinter
from derive.ir import naming


@dataclass(frozen=True)
class Stacked:
    """A stack as the framework loops print it."""

    stack: Stack

    @property
    def weights(self) -> str:
        """The stacked matrices, made once per pass: ``W_stack1``."""
        return self.stack.weights_name

    @property
    def product(self) -> str:
        """The step's one product: ``_stack1``."""
        return f"_{self.stack.name}"

    def columns(self, member: str) -> str:
        """A member's columns of the product: ``:sizes["n_h"]``, ``sizes["n_h"]:2 * sizes["n_h"]``."""
        i, size = self.stack.members.index(member), f'sizes["n_{self.stack.dim}"]'
        lo = "" if i == 0 else (size if i == 1 else f"{i} * {size}")
        return f"{lo}:{size if i == 0 else f'{i + 1} * {size}'}"

    @property
    def made(self) -> Line:
        return Line(f"{self.weights} = _concat(({', '.join(self.stack.weights)}))", "the gates' matrices, stacked")


def member_lines(
    s: Statement, stacks: tuple[Stacked, ...], printer: BatchedPrinter, done: set[str]
) -> list[Line] | None:
    """The lines of ``node@t += W v`` where the node is a stack's member: the stack's product first (at its
    first member), then the member's columns added; None for any other statement."""
    found = product_into(s)
    node = naming.split(s.target.name)[0]
    stacked = next((k for k in stacks if node in k.stack.members), None)
    if found is None or stacked is None or found[0] != stacked.stack.weights[stacked.stack.members.index(node)]:
        return None
    target, lines = printer.doprint(s.target), []
    if stacked.product not in done:
        done.add(stacked.product)
        operand = printer.doprint(found[1])
        gates = ", ".join(stacked.stack.members)
        comment = f"{gates}: one product with {operand}"
        lines.append(Line(f"{stacked.product} = {operand} @ {stacked.weights}.T", comment))
    lines.append(Line(f"{target} = {target} + {stacked.product}[:, {stacked.columns(node)}]", s.comment))
    return lines


def carry_code(expr: sp.Basic, stacks: tuple[Stacked, ...], printer: BatchedPrinter) -> tuple[str, list[Stacked]]:
    """A carry U_f^T a + ... + U_g^T d + rest as ``_concat((a, ..., d), -1) @ W_stack1 + rest``, where every
    matrix of a stack multiplies a vector of its own, each term taken by one stack at most (two stacks of
    the same matrices on different operands both appear in the carry, each once); and the stacks used.
    ("", []) where no stack's terms are all there."""
    terms = list(expr.args) if isinstance(expr, sp.MatAdd) else [expr]
    parts, used, taken = [], [], set()
    for k in stacks:
        mine = {}
        for term in terms:
            weight = _transposed_weight(term)
            if weight in k.stack.weights and weight not in mine and term not in taken:
                mine[weight] = term
        if len(mine) == len(k.stack.weights):
            vectors = ", ".join(printer.doprint(mine[w].args[1]) for w in k.stack.weights)
            parts.append(f"_concat(({vectors}), -1) @ {k.weights}")
            taken |= set(mine.values())
            used.append(k)
    if not parts:
        return "", []
    rest = [t for t in terms if t not in taken]
    if rest:
        parts.append(printer.doprint(sp.MatAdd(*rest) if len(rest) > 1 else rest[0]))
    return " + ".join(parts), used


def _transposed_weight(term: sp.Basic) -> str | None:
    """W of a term W^T v (W a matrix, v a vector symbol); None for any other term."""
    if isinstance(term, sp.MatMul) and len(term.args) == 2 and isinstance(term.args[0], sp.Transpose):
        matrix, vector = term.args[0].arg, term.args[1]
        if isinstance(matrix, sp.MatrixSymbol) and isinstance(vector, sp.MatrixSymbol):
            return matrix.name
    return None
