"""``bptt check``: the user's weights as arrays made of the cell's parameters.

Hand-written code names and packs its weights its own way: ``Wxh`` is W_xh; cs231n's ``Wx``
stacks the input matrices of all four LSTM gates (W_i, W_f, W_o, W_g in some order) as (D, 4H);
the deeplearning.ai course's ``Wf`` acts on the concatenation [a_prev; x_t], so it is [U_f W_f].
A ``Block`` says which parameters one user array is made of: a grid of them, gates stacked along
the output axis, sources (what they multiply) side by side along the input axis.  How the grid is
laid out (gate order, source order, (out, in) or (in, out), biases as columns) is a ``Layout``,
settled by running the code (``conventions``); here are the blocks, named.

A user name is matched to a block by ``--map`` first, then by its letters (``Wxh`` is W_xh), then
by what its letters say: W + the vector it multiplies (``Wx``, ``Wh``), W + the node it makes and
the vector (``Wax``, ``Waa``: a is h, as the course writes it), W + a gate (``Wf``), b + a node or
gate (``ba``, ``bf``), b alone (the one bias of the recurrent part).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import sympy as sp

from derive.ir import naming
from derive.ir.cell import Cell
from derive.tools.check.load import CheckError

# the letters hand-written code uses for a cell's names, besides the names themselves
ALIASES = {
    "x": ("in", "inp", "input"),
    "h": ("a", "s", "rec", "hid", "hidden"),  # a in the deeplearning.ai course, s in the WildML tutorial
    "g": ("c", "cc", "ct", "cbar", "ctilde", "chat", "cand"),  # the LSTM candidate, often c-tilde
    "u": ("z",),  # the GRU update gate, z in Cho et al. and PyTorch
    "n": ("htilde", "hh", "hc"),
}
GRADIENT_PREFIX = re.compile(r"^(dL_?d|grad_?|d_?)(?=[A-Za-z])")
GRADIENT_SUFFIX = re.compile(r"_?(grad|gradient|diff)$")


@dataclass(frozen=True)
class Block:
    """A user array made of cell parameters: ``grid[g][s]`` is the parameter of gate g acting on
    source s (one source, no name, for a bias)."""

    grid: tuple[tuple[str, ...], ...]

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(p for row in self.grid for p in row)


@dataclass(frozen=True)
class Role:
    """What a cell parameter does: the node it makes, what it multiplies (None for a bias)."""

    param: str
    node: str
    operand: str | None
    output: bool


def _operands(cell: Cell) -> dict[str, str | None]:
    """Each parameter's operand: the vector it multiplies (x, h for h[t-1], ...), None if added."""
    found: dict[str, str | None] = {}
    for eq in cell.equations:
        for node in sp.preorder_traversal(eq.rhs):
            if isinstance(node, sp.MatMul):
                args = node.args
                for i, arg in enumerate(args):
                    arg = arg.arg if isinstance(arg, sp.Transpose) else arg  # a tied weight E^T acts on its operand too
                    if isinstance(arg, sp.MatrixSymbol) and arg.name in cell.param_names and i + 1 < len(args):
                        found.setdefault(arg.name, _operand(cell, args[i + 1]))
    return found


def _operand(cell: Cell, expr: sp.Basic) -> str | None:
    """What a matrix multiplies: a previous state if the expression reads one (U_n (r * h[t-1]) acts on
    h), else the input, else the first node it reads, by name."""
    names = sorted({naming.split(s.name) for s in expr.atoms(sp.MatrixSymbol) if s.name not in cell.param_names})
    states = {s.name for s in cell.states}
    for wanted in (lambda b, t: b in states and t == "t-1", lambda b, t: b == cell.inputs[0].name, lambda b, t: True):
        found = next((b for b, t in names if wanted(b, t)), None)
        if found is not None:
            return found
    return None


def roles(cell: Cell) -> dict[str, Role]:
    """Each parameter's role, in the cell's order of parameters (the first equation that reads it)."""
    operands = _operands(cell)
    out = {}
    for p in cell.param_names:
        eq = next((e for e in cell.equations if p in {s.name for s in e.rhs.atoms(sp.MatrixSymbol)}), None)
        if eq is not None:
            out[p] = Role(p, eq.name, operands.get(p), eq.name in cell.outputs)
    return out


def _aliases(name: str) -> tuple[str, ...]:
    own = letters(name)
    return (own, *ALIASES.get(own, ()))


def _made(cell: Cell, node: str) -> str:
    """The state a node feeds (z feeds h in h = tanh(z)); the node itself if it is a state or an
    output (y, not the loss it feeds), or if it feeds none or several."""
    if node in {s.name for s in cell.states} or node in cell.outputs:
        return node
    readers = [
        eq.name
        for eq in cell.equations
        if any(naming.split(s.name) == (node, "t") for s in eq.rhs.atoms(sp.MatrixSymbol))
    ]
    return _made(cell, readers[0]) if len(readers) == 1 else node


@dataclass(frozen=True)
class Candidate:
    block: Block
    words: frozenset[str]  # the letters after W (or b) that name it
    bias: bool


def candidates(cell: Cell) -> list[Candidate]:
    """Every block a user array could be, with the words that name it."""
    found: list[Candidate] = []
    by_role = roles(cell)
    for output in (False, True):
        mine = [r for r in by_role.values() if r.output == output]
        found += _families(cell, mine, output)
        found += _gates(cell, mine)
        found += _singles(cell, mine)
    return found


def _families(cell: Cell, mine: list[Role], output: bool) -> list[Candidate]:
    """Every weight multiplying one vector, gates stacked (cs231n's Wx, Wh); every bias (b)."""
    out = []
    for operand in dict.fromkeys(r.operand for r in mine):
        members = [r for r in mine if r.operand == operand]
        made = {_made(cell, r.node) for r in members}
        block = Block(tuple((r.param,) for r in members))
        if operand is None:
            words = {m for d in made for m in _aliases(d)} if len(made) == 1 else set()
            words |= {"y", "o", "out"} if output else {"", "ias"}
            out.append(Candidate(block, frozenset(words), True))
            continue
        words = set(_aliases(operand))
        for d in made if len(made) == 1 else ():
            pairs = [(o, m) for o in _aliases(operand) for m in _aliases(d)]
            words |= {o + m for o, m in pairs} | {m + o for o, m in pairs}
            words |= set(_aliases(d)) if output else set()  # Wy: the output layer's, named for what it makes
        out.append(Candidate(block, frozenset(words), False))
    return out


def _gates(cell: Cell, mine: list[Role]) -> list[Candidate]:
    """A gate's weights side by side, acting on a concatenation ([h; x]: the course's Wf)."""
    out = []
    for node in dict.fromkeys(r.node for r in mine):
        weights = tuple(r.param for r in mine if r.node == node and r.operand is not None)
        if len(weights) > 1:
            out.append(Candidate(Block((weights,)), frozenset(_aliases(node)), False))
    return out


def _singles(cell: Cell, mine: list[Role]) -> list[Candidate]:
    """One parameter, named by its node and operand (Wxf, Whf) or its node (bf)."""
    out = []
    for r in mine:
        nodes = _aliases(r.node)
        if r.operand is None:
            out.append(Candidate(Block(((r.param,),)), frozenset(nodes), True))
        else:
            ops = _aliases(r.operand)
            words = {o + n for o in ops for n in nodes} | {n + o for o in ops for n in nodes}
            out.append(Candidate(Block(((r.param,),)), frozenset(words), False))
    return out


def plain_name(name: str) -> str:
    """A gradient's name without its d/grad marks: dWxh -> Wxh, W_grad -> W."""
    return GRADIENT_SUFFIX.sub("", GRADIENT_PREFIX.sub("", name))


def _words(name: str) -> tuple[bool, str] | None:
    """(is a bias, the letters after W/U/V or b) of a user's weight name, or None if not one."""
    letters = re.sub(r"[^a-z]", "", name.lower())
    if not letters:
        return None
    if letters.startswith("bias"):
        return True, letters[4:]
    if letters[0] == "b":
        return True, letters[1:]
    if letters[0] in "wuv":
        return False, letters[1:]
    return None


def letters(name: str) -> str:
    """A name as its letters are compared: W_xh, Wxh and wxh alike."""
    return name.replace("_", "").lower()


def match(
    user: list[str], cell: Cell, explicit: dict[str, str], taken: frozenset[str] = frozenset()
) -> dict[str, Block]:
    """{user name: block} for the user's names that are the cell's weights: --map, then letters,
    then words; a name that fits several blocks is left out (--map settles it).  Parameters in
    ``taken`` are held already."""
    params = list(cell.param_names)
    for u, c in explicit.items():
        if c not in params:
            raise CheckError(f"--map {u}={c}: the cell has no parameter {c!r} (it has {', '.join(params)})")
    out = {u: Block(((c,),)) for u, c in explicit.items() if u in user}
    by_letters = {letters(p): p for p in params}
    used = set(taken) | {p for b in out.values() for p in b.params}
    for u in user:
        if u not in out and by_letters.get(letters(u), None) not in used | {None}:
            out[u] = Block(((by_letters[letters(u)],),))
            used.add(by_letters[letters(u)])
    pool = candidates(cell)
    for u in user:
        words = _words(u)
        if u in out or words is None:
            continue
        fits = list(
            dict.fromkeys(
                c.block for c in pool if c.bias == words[0] and words[1] in c.words and not used & set(c.block.params)
            )
        )
        inner = [b for b in fits if not _is_output(cell, b)]
        if len(fits) > 1 and inner:  # Wh: the recurrent matrix rather than the output layer's, which also reads h
            fits = inner
        if len(fits) == 1:
            out[u] = fits[0]
            used |= set(fits[0].params)
    return _widened(cell, out)


def _widened(cell: Cell, found: dict[str, Block]) -> dict[str, Block]:
    """A name matched to one weight of a gate whose other weights no name took is the gate's
    weights side by side: the course's Wf is [U_f W_f], acting on [a_prev; x_t]."""
    by_role = roles(cell)
    used = {p for b in found.values() for p in b.params}
    out = dict(found)
    for u, block in found.items():
        if len(block.params) != 1 or by_role.get(block.params[0], None) is None:
            continue
        role = by_role[block.params[0]]
        siblings = tuple(r.param for r in by_role.values() if r.node == role.node and r.operand is not None)
        if role.operand is not None and len(siblings) > 1 and not used & (set(siblings) - {role.param}):
            out[u] = Block((siblings,))
    return out


def absent_biases(user: list[str], cell: Cell, matched: dict[str, Block]) -> dict[str, str]:
    """{user name: dimension} for the biases the code reads that the cell does not have (min-char-rnn's
    bh and by, read by code checked against the seed RNN, which has none): given as zeros, unchecked."""
    vectors = {v.name: v.dim for v in (*cell.inputs, *cell.states)} | {n: v.dim for n, v in cell.nodes.items()}
    out = {}
    for u in user:
        words = _words(u)
        if u in matched or words is None or not words[0]:
            continue
        dims = {dim for name, dim in vectors.items() if words[1] in _aliases(name)}
        if len(dims) == 1:
            out[u] = dims.pop()
    return out


def _is_output(cell: Cell, block: Block) -> bool:
    by_role = roles(cell)
    return any(by_role[p].output for p in block.params if p in by_role)


@dataclass(frozen=True)
class Layout:
    """How blocks are laid out: ``order`` the gates' order (a permutation of the cell's gate
    nodes), ``sources_reversed`` ([x, h] for [h, x]), ``transposed`` weights stored (in, out),
    ``columns`` biases (and vectors) stored as columns (n, 1)."""

    order: tuple[str, ...] = ()
    sources_reversed: bool = False
    transposed: bool = False
    columns: bool = False


def gate_orders(cell: Cell, blocks: list[Block]) -> list[tuple[str, ...]]:
    """The permutations of the nodes that a stacked block holds, the cell's own order first."""
    roles_of = roles(cell)
    stacked = [b for b in blocks if len(b.grid) > 1]
    if not stacked:
        return [()]
    nodes = tuple(dict.fromkeys(roles_of[row[0]].node for row in stacked[0].grid))
    return list(itertools.permutations(nodes))


def _rows(cell: Cell, block: Block, layout: Layout) -> list[tuple[str, ...]]:
    if len(block.grid) == 1 or not layout.order:
        rows = list(block.grid)
    else:
        node_of = {row: roles(cell)[row[0]].node for row in block.grid}
        rows = sorted(block.grid, key=lambda row: layout.order.index(node_of[row]))
    return [tuple(reversed(r)) if layout.sources_reversed else r for r in rows]


def compose(cell: Cell, block: Block, layout: Layout, params: dict[str, np.ndarray]) -> np.ndarray:
    """The user's array of ``block`` from the cell's parameters."""
    rows = _rows(cell, block, layout)
    if params[rows[0][0]].ndim == 1:
        vector = np.concatenate([params[r[0]] for r in rows])
        return vector.reshape(-1, 1) if layout.columns else vector
    matrix = np.block([[params[p] for p in r] for r in rows])
    return np.ascontiguousarray(matrix.T) if layout.transposed else matrix


def split(
    cell: Cell, block: Block, layout: Layout, grad: np.ndarray, params: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The user's gradient of ``block`` cut into the cell's parameters (None where its shape is not the
    block's)."""
    rows = _rows(cell, block, layout)
    single = len(block.params) == 1  # a shape that is not the block's is kept, for the diagnosis to name
    if params[rows[0][0]].ndim == 1:
        sizes = [params[r[0]].shape[0] for r in rows]
        if grad.size != sum(sizes):
            return {rows[0][0]: grad} if single else {}
        return dict(zip((r[0] for r in rows), np.split(grad.reshape(-1), np.cumsum(sizes)[:-1])))
    matrix = grad.T if layout.transposed else grad
    heights = [params[r[0]].shape[0] for r in rows]
    widths = [params[p].shape[1] for p in rows[0]]
    if matrix.shape != (sum(heights), sum(widths)):
        return {rows[0][0]: matrix} if single else {}
    out: dict[str, np.ndarray] = {}
    for r, band in zip(rows, np.split(matrix, np.cumsum(heights)[:-1], axis=0)):
        out.update(zip(r, np.split(band, np.cumsum(widths)[:-1], axis=1)))
    return out
