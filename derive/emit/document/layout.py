"""How the documents' maths is laid out on the page: lines broken by estimated width, displays, escaping."""

from __future__ import annotations

import sympy as sp

from derive.emit.printing import LatexPrinter, is_negative, latex, latex_width, negated, ordered_terms
from derive.ir import naming

LINE_WIDTH = 60  # latex_width of one display line on the page (A4, 2 cm margins, 10 pt)


def fill(items: list[str], width: int = LINE_WIDTH) -> tuple[str, ...]:
    """Items packed greedily into lines no wider than ``width`` (an item wider than that alone)."""
    lines: list[list[str]] = []
    for item in items:
        if lines and latex_width(" ".join(lines[-1] + [item])) <= width:
            lines[-1].append(item)
        else:
            lines.append([item])
    return tuple(" ".join(line) for line in lines)


def chunks(items: list[str], size: int) -> tuple[str, ...]:
    return tuple(" ".join(items[i : i + size]) for i in range(0, len(items), size))


def dim_latex(size: sp.Expr) -> str:
    return latex(size) if size != 1 else "1"


def shape_latex(expr: sp.Basic) -> str:
    rows, cols = expr.shape
    return f"{dim_latex(rows)} \\times {dim_latex(cols)}"


def step_symbol(name: str, step: int | str, shape: tuple[sp.Expr, sp.Expr]) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(naming.step_name(name, step), *shape)


OUTER_NOTE = r" \text{ (an outer product)}"


CONTINUE = " \\\\\n&\\qquad "  # a display line broken inside align*: the rest indented under the '='


def display(expr: sp.Basic, hadamard: bool = False, width: int = LINE_WIDTH) -> str:
    """expr for an align* right-hand side, broken into lines at sums and products where it is too wide."""
    printer = LatexPrinter(hadamard=hadamard)
    text = printer.doprint(expr)
    if latex_width(text) <= width:
        return text
    if isinstance(expr, sp.MatAdd):
        items = []
        for i, term in enumerate(signed_terms(expr)):
            piece = display(term[1], hadamard, width)
            items.append(piece if i == 0 and term[0] == "+" else f"{term[0]} {piece}")
        return CONTINUE.join(fill(items, width))
    sign, parts = printer.factors(expr, width)
    return sign + CONTINUE.join(fill(parts, width))


def flat_sum(expr: sp.Basic) -> sp.Basic:
    """A sum of sums as one sum, so that its lines break at every term."""
    if not isinstance(expr, sp.MatAdd):
        return expr
    terms = [t for a in expr.args for t in (flat_sum(a).args if isinstance(flat_sum(a), sp.MatAdd) else (a,))]
    return sp.MatAdd(*terms)


def signed_terms(expr: sp.MatAdd) -> list[tuple[str, sp.Basic]]:
    """The terms of a sum as (sign, term), in the order the printers write them."""
    return [("-", negated(t)) if is_negative(t) else ("+", t) for t in ordered_terms(expr)]


_TEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def tex_text(text: str) -> str:
    """Plain text (a cell's title) safe inside LaTeX: the special characters escaped."""
    return "".join(_TEX_SPECIAL.get(c, c) for c in text)


def md_text(text: str) -> str:
    """Plain text (a cell's title) safe in Markdown: the characters that would start markup escaped."""
    return "".join("\\" + c if c in "\\`*_[]<>$|#&~" else c for c in text)
