"""The table of local derivatives as the document writes it: one row per edge of one step of the
cell, d node/d argument with its shape; a weight's row is the map g^T -> dJ/dw that its places'
``Outer`` maps make (g v^T, (g^T L)^T v^T, v g^T for a transposed weight), summed over the places."""

from __future__ import annotations

import sympy as sp

from derive.derivation.chain import Factor
from derive.derivation.pipeline import Derivation
from derive.derivation.rules import jacobian
from derive.emit.document.layout import CONTINUE, LINE_WIDTH, OUTER_NOTE, display, fill, shape_latex, step_symbol
from derive.emit.printing import LatexPrinter, latex, latex_width
from derive.ir import naming
from derive.ir.exprs import Outer, outer_terms


def _place_latex(place: Outer, width: int | None = None) -> tuple[str, list[str]]:
    """(its number, its factors) of one place's share of the map g^T -> dJ/dw: g v^T, (g^T L)^T v^T;
    for w^T v, v g^T and v g^T L.  A number in L goes in front (inside, "g^T - 2 L" would read as a
    difference).  With ``width``, L's factors come as pieces a layout may break between (\\Bigl( and
    \\Bigr), unlike \\left( and \\right), may sit on two lines)."""
    printer = LatexPrinter()
    if isinstance(place.left, sp.Identity):
        return "", [
            rf"{printer.factor(place.right)}\, g^{{T}}"
            if place.transposed
            else rf"g\, {latex(sp.Transpose(place.right))}"
        ]
    sign, factors = printer.factors(place.left, width)
    if width is None:
        factors = [" ".join(factors)]
    if place.transposed:
        return sign, [rf"{printer.factor(place.right)}\, g^{{T}} {factors[0]}", *factors[1:]]
    opening, closing = (r"\left(", r"\right)") if width is None else (r"\Bigl(", r"\Bigr)")
    pieces = [rf"{opening}g^{{T}} {factors[0]}", *factors[1:]]
    pieces[-1] += rf"{closing}^{{T}} {latex(sp.Transpose(place.right))}"
    return sign, pieces


def _signed(i: int, sign: str, piece: str) -> str:
    """A place's first piece with its number, and for all but the first place, + or -."""
    if sign.startswith("-"):
        return f"{sign}{piece}" if i == 0 else f"- {sign[1:].lstrip()}{piece}"
    return f"{sign}{piece}" if i == 0 else f"+ {sign}{piece}"


def _outer_map(factor: str, places: tuple[Outer, ...], shape: str) -> str:
    """d node/dw as the map g^T -> dJ/dw, a sum over the places where w enters the node; broken
    between factors and places where one line would be too wide."""
    terms = []
    for i, place in enumerate(places):
        sign, pieces = _place_latex(place)
        terms.append(_signed(i, sign, pieces[0]))
    one_line = r"g^{T} \mapsto " + " ".join(terms)
    if latex_width(f"{factor} {one_line} {shape}") <= LINE_WIDTH:
        return one_line
    items = []
    for i, place in enumerate(places):
        sign, (first, *rest) = _place_latex(place, LINE_WIDTH // 2)
        items += [_signed(i, sign, first), *rest]
    return CONTINUE.join(fill([rf"g^{{T}} \mapsto {items[0]}", *items[1:]], LINE_WIDTH // 2))


def weight_places(derivation: Derivation) -> dict[str, bool]:
    """Whether a weight of the cell enters transposed (E^T v), and whether one enters a node in
    several places (W x + W a): each needs its own sentence under the table of local derivatives."""
    cell = derivation.cell
    maps = []  # each weight's Jacobian in each node it enters, as its places' Outer maps
    for eq in cell.equations:
        out = step_symbol(eq.name, "t", eq.shape)
        maps += [outer_terms(jacobian(eq.rhs, p.symbol, out)) for p in cell.params if eq.rhs.has(p.symbol)]
    return {"transposed": any(o.transposed for m in maps for o in m), "several": any(len(m) > 1 for m in maps)}


def local_derivatives(derivation: Derivation) -> tuple[tuple[str, str, str], ...]:
    """(factor, value, shape) for every edge of one step of the cell."""
    cell = derivation.cell
    printer = LatexPrinter()
    rows = []
    differentiable = set(cell.param_names) | set(cell.nodes) | {s.name for s in cell.states}
    for eq in cell.equations:
        out = step_symbol(eq.name, "t", eq.shape)
        for sym in dict.fromkeys(s for s in sp.preorder_traversal(eq.rhs) if isinstance(s, sp.MatrixSymbol)):
            if naming.split(sym.name)[0] not in differentiable:
                continue
            value = jacobian(eq.rhs, sym, out)
            factor = printer.partial(Factor(out.name, sym.name))
            places = outer_terms(value)
            if places:
                shape = shape_latex(places[0].param) + OUTER_NOTE
                rows.append((factor, _outer_map(factor, places, shape), shape))
            else:
                rows.append((factor, display(value), shape_latex(value)))
    # align* sets each column as wide as its widest entry: the widest value beside the widest shape
    widest = max((latex_width(f"{f} {v}") for f, v, _ in rows), default=0)
    if widest + max((latex_width(shape) for _, _, shape in rows), default=0) > LINE_WIDTH:
        rows = [(f, v, shape.replace(OUTER_NOTE, r" \text{ (outer)}")) for f, v, shape in rows]
    return tuple(rows)
