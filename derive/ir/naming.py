"""How code, LaTeX and file names spell a symbol: the one place that owns naming.

Every vector in the unrolled graph is a SymPy ``MatrixSymbol`` whose name joins
a base and a step with ``@``: ``"h@3"`` is h_3, ``"h@t-1"`` is h_{t-1}, and a
name with no ``@`` (``"W_hh"``) is not indexed by time.  Adjoints (gradients of
the total loss J) take a ``d`` prefix: ``"dz@t"`` is dJ/dz_t, ``"dW_hh"`` is dJ/dW_hh.
Printers call the functions here; nothing else formats a symbol's name.
"""

from __future__ import annotations

import keyword
import re
import unicodedata

SEP = "@"
GRAD = "d"


def step_name(base: str, step: int | str) -> str:
    """``step_name("h", 3) == "h@3"``; ``step_name("h", "t-1") == "h@t-1"``."""
    return f"{base}{SEP}{step}"


def split(name: str) -> tuple[str, str | None]:
    """``"h@t-1" -> ("h", "t-1")``; ``"W_hh" -> ("W_hh", None)``."""
    base, sep, step = name.partition(SEP)
    return base, (step if sep else None)


def step_of(name: str) -> int:
    """The integer step of a concrete name: ``step_of("h@3") == 3``."""
    step = split(name)[1]
    if step is None or not step.isdigit():
        raise ValueError(f"{name!r} has no concrete step")
    return int(step)


def initial_arg(state: str) -> str:
    """The argument and gradient key of an initial state: ``h0`` for the state h, ``h_1_0`` for h_1
    (``h_10`` would read as h sub 10)."""
    return f"{state}_0" if state[-1].isdigit() else f"{state}0"


# ---- delays: the hidden states that hold earlier values (h[t-2], x[t-1]) ----------------

MAX_LAG = 64  # the furthest back a cell may read: v[t-64]
_DELAY = re.compile(r"_(.+)_lag([0-9]+)")


def delay_name(source: str, lag: int) -> str:
    """The hidden state whose value at step t is ``source`` at step t - ``lag``: ``"_h_lag1"``.

    Reading h[t-2] adds the state h'_t = h_{t-1} (lag 1); reading x[t-1] adds x'_t = x_t (lag 0).
    A spec name cannot start with ``_``, so no user name meets one."""
    return f"_{source}_lag{lag}"


def delay_of(base: str) -> tuple[str, int] | None:
    """``"_h_lag1" -> ("h", 1)``; None for a name that is not a delay."""
    m = _DELAY.fullmatch(base)
    return None if m is None else (m.group(1), int(m.group(2)))


def held(name: str) -> str | None:
    """A delay at a step as the source at the step it holds: ``"_h_lag1@t" -> "h@t-1"``, ``"_x_lag0@3" -> "x@3"``;
    None for any other name."""
    base, step = split(name)
    delay = delay_of(base)
    if delay is None or step is None:
        return None
    return step_name(delay[0], shift(step, -delay[1]))


def delay_label(base: str) -> str | None:
    """A delay's own label, for its gradient: ``"_h_lag1" -> "h,1"`` (h held one step); None for other names.
    Its value prints as the source at the step it holds (h_{t-1}); its gradient needs a name of its own."""
    delay = delay_of(base)
    return None if delay is None else f"{delay[0]},{delay[1]}"


def grad_name(name: str) -> str:
    """The adjoint of a symbol: ``"dz@t"`` for ``"z@t"``, ``"dW_hh"`` for ``"W_hh"``."""
    return GRAD + name


def shift(step: str, offset: int) -> str:
    """Move a symbolic step: ``shift("t", -1) == "t-1"``, ``shift("t-1", 1) == "t"``."""
    m = re.fullmatch(r"([A-Za-z])([+-]\d+)?", step)
    if m is None:
        return str(int(step) + offset)
    total = int(m.group(2) or 0) + offset
    return m.group(1) + (f"{total:+d}" if total else "")


def offset(step: str, var: str = "t") -> int | None:
    """The offset of a step relative to ``var``: ``offset("t-1") == -1``; None if not relative to it."""
    m = re.fullmatch(rf"{var}([+-]\d+)?", step)
    return None if m is None else int(m.group(1) or 0)


def move(name: str, step: int | str, var: str = "t") -> str:
    """Put a name relative to ``var`` at another step: ``move("h@t-1", 3) == "h@2"``,
    ``move("h@t-1", "j") == "h@j-1"``, ``move("dz@t", "t+1") == "dz@t+1"``; other names are kept."""
    base, rel = split(name)
    off = None if rel is None else offset(rel, var)
    if off is None:
        return name
    return step_name(base, step + off if isinstance(step, int) else shift(step, off))


# ---- LaTeX -------------------------------------------------------------------

_GREEK_LETTERS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi chi "
    "psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega"
)


def _unicode_letter(name: str) -> str:
    case = "CAPITAL" if name[0].isupper() else "SMALL"
    return unicodedata.lookup(f"GREEK {case} LETTER {name.upper().replace('LAMBDA', 'LAMDA')}")


# the names written as letters: alpha is \alpha in the LaTeX, α in the unrolled graph's SVG
LETTERS = {"ell": (r"\ell", "\u2113"), **{g: ("\\" + g, _unicode_letter(g)) for g in _GREEK_LETTERS.split()}}
_GREEK = {name: tex for name, (tex, _) in LETTERS.items()}


def latex_base(base: str) -> str:
    """``"W_hh" -> "W_{hh}"``, ``"b_h" -> "b_{h}"``, ``"h" -> "h"``."""
    head, _, sub = base.partition("_")
    if head in _GREEK:
        head = _GREEK[head]
    elif len(head) > 1:  # a word (label, gate): upright, not a product of italic letters
        head = rf"\mathrm{{{head}}}"
    return f"{head}_{{{sub}}}" if sub else head


def latex_name(name: str) -> str:
    """``"h@t-1" -> "h_{t-1}"``, ``"W_hh" -> "W_{hh}"``, ``"dz@3" -> "\\delta^{z}_{3}"``."""
    base, step = split(name)
    if base.startswith(GRAD) and len(base) > 1:
        inner = base[len(GRAD) :]
        if step is None:
            return rf"\frac{{\partial J}}{{\partial {latex_base(inner)}}}"
        label = delay_label(inner)
        if label is not None:  # (h,1): the gradient of the copy of h_{t-1} that s_t holds
            source, lag = label.split(",")
            return rf"\delta^{{({latex_base(source)},{lag})}}_{{{step}}}"
        return rf"\delta^{{{latex_base(inner)}}}_{{{step}}}"
    value = held(name)
    if value is not None:  # the delay of h at step t holds h_{t-1}: printed as such
        return latex_name(value)
    if step is None:
        return latex_base(base)
    if "_" in base:  # a subscripted base keeps its subscript and takes the step as a superscript
        return rf"{latex_base(base)}^{{({step})}}"
    return rf"{latex_base(base)}_{{{step}}}"


# ---- plain text (comments in generated code) ------------------------------------


def text_name(name: str) -> str:
    """``"h@t-1" -> "h_{t-1}"``, ``"h@3" -> "h_3"``, ``"dz@t" -> "dJ/dz_t"``, ``"dW_hh" -> "dJ/dW_hh"``."""
    base, step = split(name)
    if base.startswith(GRAD) and len(base) > 1:
        label = delay_label(base[len(GRAD) :])
        if label is not None and step is not None:
            return f"dJ/d({label})_{step}" if len(step) == 1 else f"dJ/d({label})_{{{step}}}"
        return "dJ/d" + text_name(name[len(GRAD) :])
    value = held(name)
    if value is not None:
        return text_name(value)
    if step is None:
        return base
    return f"{base}_{step}" if len(step) == 1 else f"{base}_{{{step}}}"


# ---- code --------------------------------------------------------------------

# maths names that would be poor Python names ("l" reads as "1": ruff's E741)
_CODE_BASE = {"l": "onehot"}


def code_base(base: str) -> str:
    return _CODE_BASE.get(base, base)


def code_local(name: str) -> str:
    """A concrete-step name as a Python local: ``"h@3" -> "h_3"``, ``"dz@3" -> "dz_3"``."""
    base, step = split(name)
    base = code_base(base)
    if step is None:
        return base
    if not step.isdigit():
        raise ValueError(f"{name!r} has a symbolic step; use code_indexed")
    return f"{base}_{step}"


def code_indexed(name: str) -> str:
    """A symbolic-step name as an array element: ``"h@t-1" -> "h[t - 1]"``."""
    base, step = split(name)
    base = code_base(base)
    if step is None:
        return base
    m = re.fullmatch(r"([a-z])([+-])?(\d+)?", step)
    if m is None:
        return f"{base}[{step}]"
    var, sign, num = m.groups()
    return f"{base}[{var} {sign} {num}]" if sign else f"{base}[{var}]"


def jacobian_local(num: str, den: str) -> str:
    """The Python local holding d num / d den: ``("z@3", "h@2") -> "dz_3__dh_2"``."""
    return f"d{code_local(num)}__d{code_local(den)}"


def file_stem(cell: str, steps: int, truncate: int | None = None) -> str:
    """``rnn_T3``; ``rnn_T3_K2`` for truncated BPTT to 2 steps."""
    return f"{cell}_T{steps}" + ("" if truncate is None else f"_K{truncate}")


FIGURES = {"flow": "_flow.png", "graph": "_graph.svg"}  # the documents' pictures, beside them


def figure_filename(kind: str, cell: str, steps: int, truncate: int | None = None) -> str:
    """``rnn_T3_flow.png`` (the gradient-flow plot), ``rnn_T3_graph.svg`` (the unrolled graph)."""
    return file_stem(cell, steps, truncate) + FIGURES[kind]


# ---- the generated module's own arrays --------------------------------------------


def carried_local(state: str) -> str:
    """The share of dJ/ds_{t-1} the loop carries: ``dh_next``."""
    return f"d{state}_next"


def grad_local(wrt: str) -> str:
    return code_local(grad_name(wrt))


def rows_view(array: str, lag: int = 0) -> str:
    """The name of an array's row view: ``h_rows`` (steps 1..T), ``h_rows_prev`` (steps 0..T-1)."""
    return f"{array}_rows{'_prev' if lag else ''}"


def steps_name(array: str) -> str:
    """The tuple of an array's step views the loops read: ``h_steps[t - 1]`` is ``h[t - 1]``."""
    return f"{array}_steps"


def local_name(user: str, node: str) -> str:
    """The array of the diagonal of d user_t / d node_t, a local derivative: ``dh_dz``."""
    return f"d{user}_d{node}"


# names the generated module uses for itself: a spec name equal to one would shadow it
RESERVED = frozenset(keyword.kwlist) | frozenset(
    "np t T B sizes dtype loss grads params batched xs labels targets total args onehot lead name dJ_dsk loss_t "
    "seq loss_seq grads_seq key work weights lengths saved device torch jax jnp".split()
)
# and the shapes of the names it makes: carries, accumulators, zero arrays, row views, the loops'
# step tuples, sizes, its helpers (_softmax, _empty), the stacked gates and matrices, and the
# by-definition code's Jacobians (dz_3__dh_2).  A step's local (h_3) is kept apart from the spec's
# names by ``step_local_of``, not by a shape: papers write W_1 and U_2.
# (_prev: a state at t - 1 in a framework module's step)
RESERVED_ENDINGS = ("_next", "_prev", "_acc", "_zero", "_rows", "_steps")
RESERVED_STARTS = ("n_", "_")
RESERVED_INSIDE = ("__",)
RESERVED_NAMES = ("stack<k>", "dstack<k>", "W_stack<k>")
RESERVED_SHAPES = re.compile(
    "|".join(
        [*(e + "$" for e in RESERVED_ENDINGS), *(f"^{s}" for s in RESERVED_STARTS), *RESERVED_INSIDE]
        + [f"^{n.replace('<k>', '[0-9]+')}$" for n in RESERVED_NAMES]
    )
)
_STEP_LOCAL = re.compile(r"(.+)_([0-9]+)")


def reserved_shapes() -> str:
    """The reserved shapes, as a refusal says them."""
    endings = ", ".join(RESERVED_ENDINGS[:-1]) + f" or {RESERVED_ENDINGS[-1]}"
    return (
        f"names ending in {endings}, starting with {' or '.join(RESERVED_STARTS)}, containing "
        f"{' or '.join(RESERVED_INSIDE)}, or {', '.join(RESERVED_NAMES)}"
    )


def is_reserved(name: str) -> bool:
    """Whether a spec name would meet a name of the generated module's own."""
    return name in RESERVED or RESERVED_SHAPES.search(name) is not None


def step_local_of(name: str, indexed: set[str] | frozenset[str]) -> tuple[str, int] | None:
    """The (base, step) whose code local ``name`` would be, for the time-indexed names ``indexed``:
    ``step_local_of("h_3", {"h"}) == ("h", 3)``, and ``dh_3`` (dJ/dh_3) too; None where it is no one's."""
    for candidate in (name, name[len(GRAD) :] if name.startswith(GRAD) else None):
        m = _STEP_LOCAL.fullmatch(candidate or "")
        if m and code_base(m.group(1)) in {code_base(n) for n in indexed}:
            return m.group(1), int(m.group(2))
    return None
