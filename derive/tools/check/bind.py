"""``bptt check``: what each argument of the user's function is, and where its weights live.

Arguments are bound by name, in any position: the inputs (``inputs``, ``x``, ``xs``), the
targets (``targets``, ``y``, ``labels``), an initial state (``hprev``, ``h0``, ``a0``,
``prev_c``), an upstream gradient (``dh``, ``dout``, ``da``), a cache from the forward
(``cache``, ``caches``), a dict of weights (``params``, ``parameters``), a size
(``vocab_size``, ``hidden_dim``, ``seq_length``) or a weight (``Wxh``, ``Wx``; see ``weights``).
A required argument that is none of these is bad usage, named.  Weights the function does not
take as arguments are found where the code reads them: the module's globals, ``self``'s
attributes, or the string keys it reads from a dict.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import textwrap
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from derive.ir.cell import Cell
from derive.tools.check.load import CheckError

# (role, the names hand-written code gives it); a state's names are made from its letters below
ROLES = (
    ("inputs", r"inputs?|xs?|x_?(seq|batch|train|in|data)|seq(uence)?s?|data|word_?idx|words|sentences?|tokens?"),
    ("targets", r"targets?|ys?|y_?(true|seq|batch|train)|labels?|truth|t|counts?"),
    (
        "upstream",
        r"d(h|hs|a|out|outputs?|y|h_?all|a_?all|hidden)|dnext_?h|dh_?next|grads?_?(out|output|h)?|accum_grad"
        r"|upstream|delta|dl_?dh|dout",
    ),
    ("cache", r"caches?|ctx|cache_?list|saved"),
    ("params", r"params|parameters|weights|theta|model_?params"),
)
SIZES = (  # (dimension of the cell, the names of its size); T is the sequence length
    ("x", r"vocab(_size)?|input_?(size|dim)|in_?(size|dim)|word_?dim|n_?x|num_inputs|n_in|d_?in|data_dim"),
    (
        "h",
        r"hidden(_?(size|dim|units))?|n_?[ha]|num_hidden|state_?(size|dim)|hid_?(size|dim)|n_hidden|(n_|num_)?units"
        r"|h_?dim",
    ),
    ("y", r"output_?(size|dim)|n_?y|out_?(size|dim)|num_(outputs|classes)|n_(out|classes)|class(es)?"),
    ("T", r"seq_?(length|len)|t_?x|timesteps|time_?steps|num_steps|n_steps|steps|sequence_length|bptt_len"),
)
BUILTINS = frozenset(dir(builtins))
STATE_WORDS = {"h": ("h", "a", "s", "hidden", "state"), "c": ("c", "cell", "mem", "memory")}
STATE_FORMS = "{s}|{s}_?prev|prev_?{s}|{s}_?0|{s}_?init|init_?{s}|initial_?{s}|{s}_?start|{s}_?t0|{s}_?last|last_?{s}"


@dataclass(frozen=True)
class Arg:
    """One argument: its name and what it is: ``role`` one of inputs, targets, upstream, cache,
    params, state (``index`` the cell's state), size (``dim``), weight (``name`` the user's)."""

    name: str
    role: str
    index: int = 0
    dim: str = ""


def _full(pattern: str, name: str) -> bool:
    return re.fullmatch(pattern, name, flags=re.IGNORECASE) is not None


def state_index(name: str, cell: Cell) -> int | None:
    """Which of the cell's states an initial-state argument (hprev, a0, c_prev) is."""
    for i, state in enumerate(cell.states):
        words = STATE_WORDS.get(state.name, (state.name,)) if i < 2 else (state.name,)
        if any(_full(STATE_FORMS.format(s=w), name) for w in words):
            return i
    return None


def size_dim(name: str) -> str | None:
    return next((dim for dim, pattern in SIZES if _full(pattern, name)), None)


OPTIMIZER = re.compile(r"(?P<w>\w+?)_?(optimizer|optim|opt)|(optimizer|optim|opt)_?(?P<v>\w+)")


def optimizer_of(attribute: str) -> str | None:
    """The weight an optimizer attribute serves (``U_opt``, ``optimizer_W``), or None."""
    m = OPTIMIZER.fullmatch(attribute)
    return None if m is None else m.group("w") or m.group("v")


def role_of(name: str, cell: Cell, weights: set[str]) -> Arg | None:
    if name in weights:
        return Arg(name, "weight")
    own = {v.name: "inputs" for v in cell.inputs} | {v.name: "targets" for v in cell.targets}
    if name in own:  # the cell's own words: r for its target r, counts for a target counts
        return Arg(name, own[name])
    for role, pattern in ROLES:
        if _full(pattern, name):
            return Arg(name, role)
    if (i := state_index(name, cell)) is not None:
        return Arg(name, "state", index=i)
    if (dim := size_dim(name)) is not None:
        return Arg(name, "size", dim=dim)
    return None


def arguments(fn: Callable[..., Any], label: str) -> list[inspect.Parameter]:
    """The parameters the caller passes (not self)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise CheckError(f"{label}: its signature cannot be read") from None
    return [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def bind(fn: Callable[..., Any], label: str, cell: Cell, weights: set[str], method: bool = False) -> list[Arg]:
    """Each argument's role (after self, for a ``method``); a required argument of no role is bad usage."""
    out = []
    for p in arguments(fn, label)[1 if method else 0 :]:
        arg = role_of(p.name, cell, weights)
        if arg is not None:
            out.append(arg)
        elif p.default is inspect.Parameter.empty:
            raise CheckError(
                f"{label}: cannot tell what its argument {p.name!r} is; bptt check passes inputs, targets, "
                "initial states (hprev, h0), upstream gradients (dh), caches, params dicts, sizes (vocab_size) "
                "and weights by name (give a weight's name with --map NAME=PARAM)"
            )
    return out


# where the code reads names: globals, self's attributes, a dict's string keys


def _tree(obj: Any) -> ast.AST | None:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):
        return None


def global_reads(fn: Callable[..., Any], module: types.ModuleType) -> list[str]:
    """The global names a function reads, and those of the module's functions it calls, in the
    order the code first reads them."""
    seen: set[int] = set()
    todo: list[Any] = [fn]
    found: dict[str, None] = {}
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        tree = _tree(f)
        if tree is None:
            continue
        local = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        local |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in _all_args(n)}
        loads = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        reads = [n.id for n in sorted(loads, key=lambda n: (n.lineno, n.col_offset))]
        for name in dict.fromkeys(reads):
            if name in local or name in BUILTINS:
                continue
            found.setdefault(name)
            value = vars(module).get(name)
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                todo.append(value)
    return list(found)


def _all_args(a: ast.arguments) -> Iterator[ast.arg]:
    yield from (*a.posonlyargs, *a.args, *a.kwonlyargs)
    if a.vararg:
        yield a.vararg
    if a.kwarg:
        yield a.kwarg


def attributes(cls: type) -> list[str]:
    """The ``self.NAME`` attributes the class (and its bases) reads or sets, in order of appearance."""
    out: dict[str, None] = {}
    for klass in reversed(cls.__mro__[:-1]):
        tree = _tree(klass)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                out.setdefault(node.attr)
    return list(out)


def string_keys(fn: Callable[..., Any], module: types.ModuleType, reads: list[str], owner: type | None) -> list[str]:
    """The string keys the code reads from or writes into dicts (parameters["Wf"]): in the function,
    the module's functions it calls (among ``reads``, its ``global_reads``), and its class's methods."""
    called = [f for f in (vars(module).get(n) for n in reads) if inspect.isfunction(f)]
    out: dict[str, None] = {}
    for f in [fn, *called, *(vars(owner).values() if owner is not None else ())]:
        tree = _tree(f) if inspect.isfunction(f) else None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                if isinstance(node.slice.value, str):
                    out.setdefault(node.slice.value)
    return list(out)


def returned_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The names the function's last ``return`` of a tuple gives its elements (``return loss, dWxh,
    hs[T - 1]`` gives loss, dWxh, hs), "" for an element that is not a name; () if it returns none."""
    tree = _tree(fn)
    body = tree.body[0] if isinstance(tree, ast.Module) and tree.body else None
    if not isinstance(body, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return ()
    returns = [n for n in _own_nodes(body) if isinstance(n, ast.Return) and isinstance(n.value, (ast.Tuple, ast.List))]
    if not returns:
        return ()
    return tuple(_name_of(e) for e in returns[-1].value.elts)  # type: ignore[union-attr]


def _own_nodes(fn: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's body, not of the functions and classes defined in it."""
    for child in ast.iter_child_nodes(fn):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            yield child
            yield from _own_nodes(child)


def _name_of(node: ast.expr) -> str:
    """The name an element of a return is known by: ``dW``, ``self.dW``, ``hs[-1]``, ``dW.T``."""
    while isinstance(node, ast.Subscript) or (isinstance(node, ast.Attribute) and node.attr == "T"):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return ""
