"""Stage 1: the cell specification language, read by our own parser (never eval or sympify).

A ``.cell`` file reads like the list of equations on paper::

    # elman.cell
    cell elman "Elman RNN with biases"
    param W_xh[h, x], W_hh[h, h], W_hy[y, h], b_h[h], b_y[y]
    input x[x]; state h[h] = 0; target label: class(y)
    z = W_xh x + W_hh h[t-1] + b_h
    h = tanh(z)
    y = W_hy h + b_y
    J = cross_entropy(softmax(y), label)

Statements end at a newline or ``;``.  ``W x`` (juxtaposition) is a matrix-vector
product, ``a * b`` an elementwise product (or a scaling by a number), ``h[t-1]``
the previous step's state, ``h`` the value computed at this step; ``h[t-2]`` and
``x[t-1]`` read a state or an input further back (at most ``naming.MAX_LAG`` steps),
through hidden delay states (``Delay``) that start at zeros.  Dimensions
are names (``h``, ``x``) and every operation checks them.  ``loss: last step``
puts the loss at the last step only (many-to-one); the default is every step.

``parse(text, path)`` returns a ``Cell``; a bad spec raises ``SpecError``, whose
message is ``path:line:column: what was expected``.
"""

from __future__ import annotations

import re
from pathlib import Path

from derive.ir.cell import Cell, Delay, Target
from derive.spec.builder import Builder
from derive.spec.lexer import SpecError
from derive.spec.syntax import Decls, Parser


def parse(text: str, path: str = "<spec>", default_name: str = "cell") -> Cell:
    """Read a cell specification; raise ``SpecError`` with file:line:column on any problem."""
    # a byte-order mark is not part of the text; old Mac files end lines with CR alone
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    parser = Parser(text, path)
    try:
        d = parser.parse()
        builder = Builder(d, path)
        equations, loss = builder.build()
    except RecursionError:
        tok = parser.tok
        raise SpecError(path, tok.line, tok.col, "expression nested too deeply: name some of its parts") from None
    if not d.inputs:
        raise SpecError(path, 1, 1, "expected at least one input, declared as 'input x[x]'")
    if not d.states:
        raise SpecError(path, 1, 1, "expected at least one state, declared as 'state h[h] = 0'")
    name = d.name or default_name
    # dimensions in the order init_params takes them: inputs', states', targets', then the rest
    first = [v.dim for v, _ in d.inputs.values()] + [v.dim for v, _ in d.states.values()]
    first += [v.dim for v, _, _ in d.targets.values()]
    dims = tuple(dict.fromkeys(first + d.dims))
    return Cell(
        name=name,
        title=d.title or name,
        dims=dims,
        params=tuple(p for p, _ in d.params.values()),
        inputs=tuple(v for v, _ in d.inputs.values()),
        targets=tuple(Target(v.name, v.dim, kind) for v, kind, _ in d.targets.values()),
        states=tuple(v for v, _ in d.states.values()) + _delays(d, builder),
        equations=tuple(equations),
        loss=loss,
        loss_mode=d.loss_mode,
        path=path,
        constants=tuple(builder.constant_equations),
    )


def _delays(d: Decls, builder: Builder) -> tuple[Delay, ...]:
    """The delay lines' states after the declared ones: the states' lines, then the inputs', each in the
    order of declaration, nearest first (s_t = (h_t, h_{t-1}, h_{t-2}, x_t))."""
    order = [*d.states, *d.inputs]
    return tuple(sorted((delay for delay, _ in builder.delays.values()), key=lambda v: (order.index(v.source), v.lag)))


def read(path: str | Path) -> Cell:
    """Parse a spec file; a file that is not UTF-8 text is a ``SpecError`` too."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SpecError(str(path), 1, 1, f"cannot read the spec ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        raise SpecError(
            str(path), line, col, f"not UTF-8 text (byte 0x{data[e.start]:02x}): expected a .cell text file"
        ) from None
    stem = re.sub(r"\W", "_", p.stem) or "cell"
    if not stem.isidentifier():
        stem = f"cell_{stem}"
    return parse(text, str(path), default_name=stem)
