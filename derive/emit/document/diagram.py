"""The unrolled network as a TikZ picture (and an SVG), with the chain-rule path of one term drawn in red.

A column per step (the initial state at step 0), a row per node of the cell in the cell's order
(the inputs below, the loss on top), an arrow from each argument to the node that reads it.  The
highlighted term is the longest path from the last loss J_T to a recurrent weight (one that
multiplies the previous state), the term the origin post's reader finds hardest to write: it
crosses every step.  Drawn for at most DIAGRAM_MAX_STEPS steps, so that it stays legible.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import sympy as sp

from derive.derivation.chain import Factor, paths
from derive.derivation.unroll import Unrolled, unroll
from derive.emit.printing import latex
from derive.emit.render import MARK
from derive.ir import naming
from derive.ir.cell import Cell, recurrent_params

DIAGRAM_MAX_STEPS = 4
X_CM = 2.4  # between steps
Y_CM = 1.15  # between rows


@dataclass(frozen=True)
class Node:
    name: str  # the graph's name: h[2]
    key: str  # the picture's name for it: n0, n1, ...
    x: float  # cm, step by step to the right
    y: float  # cm, upwards


@dataclass(frozen=True)
class Edge:
    start: str  # node keys
    end: str
    bend: bool  # the same step, over a row: drawn as an arc
    on_path: bool  # an edge of the highlighted term


@dataclass(frozen=True)
class Diagram:
    steps: int  # the steps drawn
    wrt: str  # the weight the highlighted term differentiates
    path: tuple[Factor, ...]  # the highlighted term, J_T first
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    entry: str | None  # the key of the node where the weight enters the highlighted term

    @property
    def tikz(self) -> tuple[str, ...]:
        """The lines inside the tikzpicture."""
        lines = [rf"\node[var] ({n.key}) at ({n.x:.2f}, {n.y:.2f}) {{${_label(n.name)}$}};" for n in self.nodes]
        for e in self.edges:
            style = "edge, path" if e.on_path else "edge"
            lines.append(rf"\draw[{style}] ({e.start}){' to[bend left=25]' if e.bend else ' --'} ({e.end});")
        if self.entry is not None:  # where the weight enters: a label beside the last node of the path
            lines.append(rf"\node[enters] at ({self.entry}.east) {{$\leftarrow {naming.latex_name(self.wrt)}$}};")
        return tuple(lines)


def _label(name: str) -> str:
    return latex(sp.MatrixSymbol(name, 1, 1))


def _highlighted(unrolled: Unrolled, cell: Cell) -> tuple[str, tuple[Factor, ...]]:
    top = naming.step_name(cell.loss, unrolled.steps)
    weights = list(recurrent_params(cell)[:1]) or list(cell.param_names)  # the first weight on a previous state
    best: tuple[str, tuple[Factor, ...]] = (weights[0], ())
    for w in weights:
        found = paths(unrolled, top, w)
        if found and len(found[-1]) > len(best[1]):
            best = (w, found[-1])  # shortest first: the last is a longest
    return best


def _held(name: str) -> str:
    """The node a name is drawn as: a delay (h[t-2]'s ``_h_lag1@2``) as the value it holds, h_1."""
    return naming.held(name) or name


def _without_delays(path: tuple[Factor, ...]) -> tuple[Factor, ...]:
    """A path with each delay drawn as the value it holds: h_3 -> h'_2 -> h_1 is the edge h_3 -> h_1."""
    names = [_held(n) for n in [path[0].num, *(f.den for f in path)]] if path else []
    kept = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]  # a copy's edge: h'_2 = h_1
    return tuple(Factor(a, b) for a, b in zip(kept, kept[1:]))


def diagram(cell: Cell, steps: int) -> Diagram:
    shown = min(steps, DIAGRAM_MAX_STEPS)
    unrolled = unroll(cell, shown)
    wrt, path = _highlighted(unrolled, cell)
    path = _without_delays(path)
    delays = {d.name for d in cell.delays}  # not drawn: an edge goes from the value a delay holds
    inputs = {v.name for v in cell.inputs}
    rows = {v.name: -i for i, v in enumerate(cell.inputs)}  # one row each, below the cell's nodes
    rows.update({eq.name: i + 1 for i, eq in enumerate(cell.equations) if eq.name not in delays})
    drawn: dict[str, Node] = {}  # by the graph's name

    def node(name: str) -> Node | None:
        base, step = naming.split(name)
        if step is None or base not in rows:  # a parameter, or a target: not drawn
            return None
        if int(step) < (1 if base in inputs else 0):  # h_{-1}, x_0: the zeros a delay starts from
            return None
        if name not in drawn:
            drawn[name] = Node(name, f"n{len(drawn)}", int(step) * X_CM, rows[base] * Y_CM)
        return drawn[name]

    computed = [lhs.name for lhs, _ in unrolled.equations if naming.split(lhs.name)[0] not in delays]
    for name in computed:
        node(name)
    on_path = {(f.den, f.num) for f in path}
    edges = []
    for name in computed:
        for arg in map(_held, unrolled.deps[name]):
            a, b = node(arg), node(name)
            if a is None or b is None:
                continue
            (base, step), (to, at) = naming.split(arg), naming.split(name)
            over_a_row = step == at and abs(rows[base] - rows[to]) > 1
            over_a_step = rows[base] == rows[to] and abs(int(step or 0) - int(at or 0)) > 1  # h_1 -> h_3
            edges.append(Edge(a.key, b.key, over_a_row or over_a_step, (arg, name) in on_path))
    entry = drawn[path[-1].num].key if path and path[-1].num in drawn else None
    return Diagram(shown, wrt, path, tuple(drawn.values()), tuple(edges), entry)


def path_text(d: Diagram) -> str:
    """The highlighted term in the document's notation: J_4 -> p_4 -> ... -> z_1."""
    names = [d.path[0].num] + [f.den for f in d.path]
    return r" \to ".join(_label(n) if naming.split(n)[1] is not None else naming.latex_name(n) for n in names)


# ---- the same picture as SVG, for the Markdown and the page -----------------------------

SVG_PX_PER_CM = 48
SVG_MARGIN_PX = 28
SVG_NODE_RADIUS_PX = 13  # where an arrow stops short of a node's centre
SVG_BEND = 0.23  # an arc's control point off the chord, as a fraction of its length (TikZ's bend left=25)
SVG_GRAY, SVG_RED = "#9a9a9a", "#b00000"
SVG_LETTERS = {name: letter for name, (_, letter) in naming.LETTERS.items()}  # as naming.latex_base spells them


def _unicode_base(base: str) -> tuple[str, str, bool]:
    """A node's base name as (head, subscript, italic): "alpha" -> α, "W_hh" -> W with hh below,
    a word upright as in the LaTeX."""
    head, _, sub = base.partition("_")
    if head in SVG_LETTERS:
        return SVG_LETTERS[head], sub, True
    return head, sub, len(head) == 1


def _svg_label(name: str) -> str:
    """<tspan>s for h_1, W_hh, x_2: the head in italic where the LaTeX has it, then the subscript."""
    base, step = naming.split(name)
    head, sub, italic = _unicode_base(base)
    subscript = ",".join(part for part in (sub, step) if part)
    style = ' font-style="italic"' if italic else ""
    text = f"<tspan{style}>{html.escape(head)}</tspan>"
    if subscript:
        text += f'<tspan baseline-shift="sub" font-size="70%">{html.escape(subscript)}</tspan>'
    return text


def svg(d: Diagram, title: str) -> str:
    """The diagram as a standalone SVG document: the TikZ picture's layout, arrows, and red path."""
    xs, ys = [n.x for n in d.nodes], [n.y for n in d.nodes]
    left, top = min(xs), max(ys)
    width = round((max(xs) - left) * SVG_PX_PER_CM + 2 * SVG_MARGIN_PX + 60)  # room for the weight's label
    height = round((top - min(ys)) * SVG_PX_PER_CM + 2 * SVG_MARGIN_PX)

    def at(n: Node) -> tuple[float, float]:
        return (n.x - left) * SVG_PX_PER_CM + SVG_MARGIN_PX, (top - n.y) * SVG_PX_PER_CM + SVG_MARGIN_PX

    keyed = {n.key: n for n in d.nodes}
    lines = [
        f"<!-- {MARK} (derive/emit/document/diagram.py) -->",
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="serif" font-size="16">',
        f"<title>{html.escape(title)}</title>",
        "<defs>",
    ]
    for marker, color in (("arrow", SVG_GRAY), ("arrow-path", SVG_RED)):
        lines.append(
            f'<marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" '
            f'markerWidth="9" markerHeight="9" '
            f'orient="auto-start-reverse"><path d="M 0 1 L 10 5 L 0 9 z" fill="{color}"/></marker>'
        )
    lines.append("</defs>")
    for e in sorted(d.edges, key=lambda e: e.on_path):  # the path's edges over the others
        (x0, y0), (x1, y1) = at(keyed[e.start]), at(keyed[e.end])
        length = math.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        color, marker, stroke = (SVG_RED, "arrow-path", 2.2) if e.on_path else (SVG_GRAY, "arrow", 1.2)
        style = f'fill="none" stroke="{color}" stroke-width="{stroke}" marker-end="url(#{marker})"'
        if e.bend:  # an arc to the left of the chord, as TikZ bends left
            cx, cy = (x0 + x1) / 2 + uy * SVG_BEND * length, (y0 + y1) / 2 - ux * SVG_BEND * length
            sx, sy = _toward(x0, y0, cx, cy, SVG_NODE_RADIUS_PX)
            ex, ey = _toward(x1, y1, cx, cy, SVG_NODE_RADIUS_PX)
            lines.append(f'<path d="M {sx:.1f} {sy:.1f} Q {cx:.1f} {cy:.1f} {ex:.1f} {ey:.1f}" {style}/>')
        else:
            r = SVG_NODE_RADIUS_PX
            lines.append(
                f'<line x1="{x0 + ux * r:.1f}" y1="{y0 + uy * r:.1f}" x2="{x1 - ux * r:.1f}" y2="{y1 - uy * r:.1f}" '
                f"{style}/>"
            )
    for n in d.nodes:
        x, y = at(n)
        lines.append(f'<text x="{x:.1f}" y="{y + 5:.1f}" text-anchor="middle">{_svg_label(n.name)}</text>')
    if d.entry is not None:
        x, y = at(keyed[d.entry])
        label = f"← {_svg_label(d.wrt)}"
        lines.append(f'<text x="{x + 16:.1f}" y="{y + 5:.1f}" fill="{SVG_RED}" font-size="13">{label}</text>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def _toward(x: float, y: float, cx: float, cy: float, distance: float) -> tuple[float, float]:
    """The point ``distance`` from (x, y) toward (cx, cy)."""
    length = math.hypot(cx - x, cy - y)
    return x + (cx - x) / length * distance, y + (cy - y) / length * distance
