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
the previous step's state, ``h`` the value computed at this step.  Dimensions
are names (``h``, ``x``) and every operation checks them.  ``loss: last step``
puts the loss at the last step only (many-to-one); the default is every step.

``parse(text, path)`` returns a ``Cell``; a bad spec raises ``SpecError``, whose
message is ``path:line:column: what was expected``.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import sympy as sp

from derive.ir import naming
from derive.ir.cell import Cell, Equation, Param, Target, Vector, dim_symbol
from derive.ir.exprs import LOSSES, CrossEntropy, Hadamard, Softmax, SquaredError, mul
from derive.ir.ops import ACTIVATIONS

KEYWORDS = ("cell", "param", "input", "state", "target", "loss")
LOSS = "<loss>"  # what _Builder.defined records for the loss node instead of a dimension
# names the generated module uses for itself: a spec name equal to one would shadow it
RESERVED = frozenset(keyword.kwlist) | frozenset(
    "np t T B sizes dtype loss grads params batched xs labels targets total args onehot lead name dJ_dsk loss_t "
    "seq loss_seq grads_seq".split()
)
MAX_NUMBER = 40  # characters in a numeric literal
# operations nested in one equation: SymPy compares, differentiates and prints an expression recursively, and
# somewhat deeper than this (about 150 elementwise products in a row) exhausts Python's recursion limit
MAX_DEPTH = 100
FUNCTIONS = tuple(ACTIVATIONS) + ("softmax",) + tuple(LOSSES)


class SpecError(Exception):
    """A bad specification; ``str(e)`` is the one line a user reads."""

    def __init__(self, path: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{col}: {message}")
        self.path, self.line, self.col, self.message = path, line, col, message


# ---- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # name, number, string, op, newline, eof
    text: str
    line: int
    col: int

    def show(self) -> str:
        return {"newline": "the end of the line", "eof": "the end of the file"}.get(self.kind, repr(self.text))


_TOKEN = re.compile(
    r"(?P<space>[ \t\r]+)|(?P<comment>#[^\n]*)|(?P<newline>\n)|(?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]{1,3})?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<string>\"[^\"\n]*\")|(?P<op>[\[\](),;:=+\-*])"
)


def tokenize(text: str, path: str) -> list[Token]:
    tokens: list[Token] = []
    line, start, pos, depth = 1, 0, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        col = pos - start + 1
        if m is None:
            char = text[pos]
            shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
            if char == '"':
                raise SpecError(path, line, col, 'unterminated string: a title ends with " on the same line')
            raise SpecError(path, line, col, f"unexpected character {shown}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "newline":
            if depth == 0:
                tokens.append(Token("newline", "\n", line, col))
            line, start = line + 1, m.end()
        elif kind == "op":
            depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(m.group(), 0)
            depth = max(depth, 0)
            tokens.append(Token(kind, m.group(), line, col))
        elif kind in ("name", "number", "string"):
            if kind == "number" and m.end() < len(text) and (text[m.end()].isalpha() or text[m.end()] == "_"):
                word = re.match(r"\w+", text[pos:])
                bad = word.group() if word else text[pos]
                raise SpecError(path, line, col, f"{bad!r} is not a name: a name starts with a letter or _")
            tokens.append(Token(kind, m.group(), line, col))
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - start + 1))
    return tokens


# ---- syntax tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    line: int
    col: int


@dataclass(frozen=True)
class Num(Node):
    value: sp.Number


@dataclass(frozen=True)
class Ref(Node):
    name: str
    lag: int  # 0: this step, 1: the previous step


@dataclass(frozen=True)
class Call(Node):
    fn: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # "+", "-", "*", "W v" (juxtaposition)
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg(Node):
    arg: Node


@dataclass
class _Decls:
    name: str | None = None
    title: str | None = None
    dims: list[str] = field(default_factory=list)
    params: dict[str, tuple[Param, Token]] = field(default_factory=dict)
    inputs: dict[str, tuple[Vector, Token]] = field(default_factory=dict)
    states: dict[str, tuple[Vector, Token]] = field(default_factory=dict)
    targets: dict[str, tuple[Vector, str, Token]] = field(default_factory=dict)  # kind: class or real
    loss_mode: str = "every"
    equations: list[tuple[Token, Node]] = field(default_factory=list)
    starts: list[Token] = field(default_factory=list)  # the first token of each equation's right-hand side


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.tokens = tokenize(text, path)
        self.i = 0
        self.d = _Decls()

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, tok: Token, message: str) -> SpecError:
        return SpecError(self.path, tok.line, tok.col, message)

    def take(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            expected = what or (repr(text) if text else f"a {kind}")
            raise self.error(tok, f"expected {expected}, got {tok.show()}")
        self.i += 1
        return tok

    def at(self, text: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == text

    def name(self, what: str) -> Token:
        tok = self.tok
        if tok.kind != "name":
            raise self.error(tok, f"expected {what} (a name such as W_xh), got {tok.show()}")
        if tok.text in KEYWORDS:
            raise self.error(tok, f"{tok.text!r} is a keyword, not a name")
        if tok.text in RESERVED or re.search(r"_[0-9]+$|_next$|_acc$|_zero$|_rows$|_rows_prev$|^n_|^_", tok.text):
            raise self.error(
                tok,
                f"{tok.text!r} is reserved for the generated code (as are names ending in _<digits>, _next, "
                "_acc, _zero, _rows or _rows_prev, or starting with n_ or _, the module's helpers); rename it",
            )
        self.i += 1
        return tok

    def end_statement(self) -> None:
        if self.tok.kind == "newline" or self.at(";"):
            self.i += 1
        elif self.tok.kind != "eof":
            raise self.error(self.tok, f"expected the end of the statement, got {self.tok.show()}")

    def dim(self) -> str:
        tok = self.name("a dimension")
        if tok.text not in self.d.dims:
            self.d.dims.append(tok.text)
        return tok.text

    def declare(self, tok: Token) -> None:
        taken = {**self.d.params, **self.d.inputs, **self.d.states, **self.d.targets}
        if tok.text in taken:
            raise self.error(tok, f"{tok.text!r} is declared twice")

    # -- statements
    def parse(self) -> _Decls:
        while self.tok.kind == "newline" or self.at(";"):
            self.i += 1
        if self.tok.kind == "eof":
            raise self.error(
                self.tok, "expected a cell specification (param, input, state, target, equations), got an empty file"
            )
        while self.tok.kind != "eof":
            if self.tok.kind == "newline" or self.at(";"):
                self.i += 1
                continue
            self.statement()
        return self.d

    def statement(self) -> None:
        tok = self.tok
        if tok.kind != "name":
            raise self.error(tok, f"expected a declaration or an equation 'name = ...', got {tok.show()}")
        handler = {
            "cell": self.cell_,
            "param": self.param_,
            "input": self.input_,
            "state": self.state_,
            "target": self.target_,
            "loss": self.loss_,
        }.get(tok.text)
        if handler is not None:
            self.i += 1
            handler()
        else:
            self.equation()
        self.end_statement()

    def cell_(self) -> None:
        self.d.name = self.name("the cell's name").text
        if self.tok.kind == "string":
            self.d.title = self.take("string").text[1:-1].strip() or None

    def param_(self) -> None:
        while True:
            tok = self.name("a parameter name")
            self.declare(tok)
            self.take("op", "[", "'[' and the parameter's dimensions, as in W[h, x] or b[h]")
            dims = [self.dim()]
            if self.at(","):
                self.i += 1
                dims.append(self.dim())
            self.take("op", "]", "']' after at most two dimensions")
            self.d.params[tok.text] = (Param(tok.text, tuple(dims)), tok)
            if not self.at(","):
                return
            self.i += 1

    def _vector(self, what: str) -> tuple[Token, Vector]:
        tok = self.name(what)
        self.declare(tok)
        self.take("op", "[", "'[' and the vector's dimension, as in x[x]")
        dim = self.dim()
        self.take("op", "]", "']'")
        return tok, Vector(tok.text, dim)

    def input_(self) -> None:
        while True:
            tok, v = self._vector("an input name")
            self.d.inputs[tok.text] = (v, tok)
            if not self.at(","):
                return
            self.i += 1

    def state_(self) -> None:
        while True:
            tok, v = self._vector("a state name")
            if self.at("="):
                self.i += 1
                zero = self.tok
                if zero.kind != "number" or float(zero.text) != 0:
                    raise self.error(zero, f"expected 0 (a state starts at zeros unless given), got {zero.show()}")
                self.i += 1
            self.d.states[tok.text] = (v, tok)
            if not self.at(","):
                return
            self.i += 1

    def target_(self) -> None:
        tok = self.name("a target name")
        self.declare(tok)
        if self.at(":"):
            self.i += 1
            kind = self.tok
            if kind.kind != "name" or kind.text != "class":
                raise self.error(kind, f"expected class(dim), got {kind.show()}")
            self.i += 1
            self.take("op", "(")
            dim = self.dim()
            self.take("op", ")")
            self.d.targets[tok.text] = (Vector(tok.text, dim), "class", tok)
        elif self.at("["):
            self.i += 1
            dim = self.dim()
            self.take("op", "]")
            self.d.targets[tok.text] = (Vector(tok.text, dim), "real", tok)
        else:
            raise self.error(self.tok, f"expected ': class(dim)' or '[dim]' after the target, got {self.tok.show()}")

    def loss_(self) -> None:
        self.take("op", ":", "':' as in 'loss: every step'")
        word = self.tok
        if word.kind != "name" or word.text not in ("every", "last"):
            raise self.error(word, f"expected 'every step' or 'last step', got {word.show()}")
        self.i += 1
        step = self.tok
        if step.kind != "name" or step.text != "step":
            raise self.error(step, f"expected 'step', got {step.show()}")
        self.i += 1
        self.d.loss_mode = word.text

    def equation(self) -> None:
        tok = self.name("the name of the node an equation defines")
        if self.at("["):
            raise self.error(self.tok, f"an equation defines {tok.text} at step t: write '{tok.text} = ...'")
        self.take("op", "=", f"'=' after {tok.text!r} (or a declaration: {', '.join(KEYWORDS)})")
        start = self.tok
        self.d.equations.append((tok, self.expr()))
        self.d.starts.append(start)

    # -- expressions
    def expr(self) -> Node:
        left = self.term()
        while self.at("+") or self.at("-"):
            op = self.tok
            self.i += 1
            left = BinOp(op.line, op.col, op.text, left, self.term())
        return left

    def _starts_operand(self) -> bool:
        return self.tok.kind in ("name", "number") or self.at("(")

    def term(self) -> Node:
        """Elementwise products: ``u * U h[t-1]`` is u * (U h[t-1])."""
        left = self.signed()
        while self.at("*"):
            op = self.tok
            self.i += 1
            left = BinOp(op.line, op.col, "*", left, self.signed())
        return left

    def signed(self) -> Node:
        """A minus sign applies to the whole product after it: ``-W x`` is -(W x)."""
        if self.at("-"):
            op = self.tok
            self.i += 1
            return Neg(op.line, op.col, self.signed())
        return self.juxtaposed()

    def juxtaposed(self) -> Node:
        """Matrix products, written side by side and read from the right: ``V U h`` is V (U h)."""
        left = self.primary()
        if self._starts_operand():
            op = self.tok
            return BinOp(op.line, op.col, "W v", left, self.juxtaposed())
        return left

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "number":
            self.i += 1
            if len(tok.text) > MAX_NUMBER:
                raise self.error(tok, f"a number of at most {MAX_NUMBER} characters, got {len(tok.text)}")
            exact = Fraction(tok.text)  # the standard library's exact decimal reading; no SymPy parsing
            if exact and not Fraction(1, 10**12) <= abs(exact) <= 10**12:
                raise self.error(tok, f"a number between 1e-12 and 1e12 in size (or 0), got {tok.text}")
            return Num(tok.line, tok.col, sp.Rational(exact.numerator, exact.denominator))
        if self.at("("):
            self.i += 1
            inner = self.expr()
            self.close(tok, "(")
            return inner
        if tok.kind != "name":
            raise self.error(tok, f"expected a name, a number or '(', got {tok.show()}")
        if tok.text in KEYWORDS:
            raise self.error(tok, f"{tok.text!r} is a keyword, not a name")
        self.i += 1
        if self.at("(") and (tok.text in FUNCTIONS or not self.known(tok.text)):
            return self.call(tok)  # a declared name before '(' is a product instead: U (r * h[t-1])
        if self.at("["):
            return Ref(tok.line, tok.col, tok.text, self.lag(tok))
        return Ref(tok.line, tok.col, tok.text, 0)

    def close(self, opening: Token, what: str) -> None:
        """Expect ')': a missing one is reported where the '(' opened, since newlines inside are joined."""
        if not self.at(")"):
            raise self.error(opening, f"{what} is never closed: expected ')' before {self.tok.show()}")
        self.i += 1

    def known(self, name: str) -> bool:
        d = self.d
        return (
            name in d.params
            or name in d.inputs
            or name in d.states
            or name in d.targets
            or any(tok.text == name for tok, _ in d.equations)
        )

    def lag(self, name: Token) -> int:
        opening = self.take("op", "[")
        t = self.tok
        if t.kind != "name" or t.text != "t":
            raise self.error(t, f"expected a step such as t-1, got {t.show()}")
        self.i += 1
        offset = 0
        if self.at("+") or self.at("-"):
            sign = self.tok
            self.i += 1
            num = self.take("number", what="a whole number of steps")
            if not num.text.isdigit():
                raise self.error(num, f"expected a whole number of steps, got {num.show()}")
            offset = int(num.text) * (1 if sign.text == "+" else -1)
            if offset > 0:
                raise self.error(
                    sign,
                    f"{name.text}[t+{offset}] refers to the future: a cell may read {name.text}[t-1] or {name.text}",
                )
        if not self.at("]"):  # reported where the '[' opened: what follows may be on the next line
            raise self.error(opening, f"{name.text}[ is never closed: expected ']' before {self.tok.show()}")
        self.i += 1
        if offset < -1:
            raise self.error(t, f"{name.text}[t{offset}]: a cell may read only the previous step, {name.text}[t-1]")
        return -offset

    def call(self, fn: Token) -> Node:
        if fn.text not in FUNCTIONS:
            raise self.error(fn, f"unknown function {fn.text!r}; expected one of {', '.join(FUNCTIONS)}")
        opening = self.take("op", "(")
        args = [self.expr()]
        while self.at(","):
            self.i += 1
            args.append(self.expr())
        self.close(opening, f"{fn.text}(")
        return Call(fn.line, fn.col, fn.text, tuple(args))


# ---- meaning: names, shapes, SymPy expressions ------------------------------------------------


@dataclass(frozen=True)
class _Value:
    expr: sp.Basic
    kind: str  # "number", "vector", "matrix", "loss", "target"
    dim: str = ""  # vectors and targets: their dimension; matrices: "rows,cols"
    target_kind: str = ""

    def describe(self) -> str:
        if self.kind == "vector":
            return f"a vector of size {self.dim}"
        if self.kind == "matrix":
            rows, cols = self.dim.split(",")
            return f"a matrix ({rows}, {cols})"
        if self.kind == "target":
            return f"the target {self.expr}"
        return f"a {self.kind}"


class _Builder:
    def __init__(self, d: _Decls, path: str) -> None:
        self.d, self.path = d, path
        self.defined: dict[str, str] = {}  # node name -> dim, in order
        self.used: set[str] = set()

    def error(self, node: Node | Token, message: str) -> SpecError:
        return SpecError(self.path, node.line, node.col, message)

    def build(self) -> tuple[list[Equation], str]:
        equations: list[Equation] = []
        loss_name = None
        for (tok, tree), start in zip(self.d.equations, self.d.starts):
            if tok.text in self.d.params or tok.text in self.d.inputs or tok.text in self.d.targets:
                raise self.error(
                    tok, f"{tok.text!r} is declared as an input, target or parameter: it cannot be computed"
                )
            if tok.text in self.defined:
                raise self.error(tok, f"{tok.text!r} is defined twice")
            depth = _depth(tree)
            if depth > MAX_DEPTH:
                raise self.error(
                    start,
                    f"expression nested too deeply ({depth} operations inside one another, at most {MAX_DEPTH}): "
                    "name some of its parts",
                )
            value = self.value(tree, top=True)
            if value.kind == "loss" and tok.text in self.d.states:
                raise self.error(tree, f"state {tok.text} is updated by a loss: a state's update must be a vector")
            if value.kind == "loss":
                if loss_name is not None:
                    raise self.error(
                        tok, f"a second loss {tok.text!r}: a cell has one loss (the first is {loss_name!r})"
                    )
                loss_name = tok.text
            elif value.kind != "vector":
                raise self.error(tree, f"{tok.text} = ... must be a vector, got {value.describe()}")
            elif tok.text in self.d.states and self.d.states[tok.text][0].dim != value.dim:
                state = self.d.states[tok.text][0]
                raise self.error(tree, f"state {tok.text} has size {state.dim} but its update is {value.describe()}")
            self.defined[tok.text] = LOSS if value.kind == "loss" else value.dim
            equations.append(Equation(tok.text, value.expr, start.line, start.col))
        last = self.d.equations[-1][0] if self.d.equations else Token("eof", "", 1, 1)
        if loss_name is None:
            raise self.error(last, "expected a loss: an equation such as J = cross_entropy(softmax(y), label)")
        for name, (_, tok) in self.d.states.items():
            if name not in self.defined:
                raise self.error(tok, f"state {name!r} has no update: add an equation '{name} = ...'")
        declared = {**self.d.params, **self.d.inputs, **self.d.states}
        names = set(declared) | set(self.d.targets) | set(self.defined)
        for tok, _ in self.d.equations:
            if tok.text.startswith("d") and tok.text[1:] in names:
                raise self.error(
                    tok, f"{tok.text!r} would share a name with the gradient of {tok.text[1:]!r}; rename it"
                )
        for name, (_, tok) in declared.items():
            if name.startswith("d") and name[1:] in names:
                raise self.error(tok, f"{name!r} would share a name with the gradient of {name[1:]!r}; rename it")
        named = [*((tok, tok.text) for tok, _ in self.d.equations), *((tok, n) for n, (_, tok) in declared.items())]
        named += [(entry[-1], n) for n, entry in self.d.targets.items()]
        initial = {f"{state}0": state for state in self.d.states}  # the module's initial-state arguments
        for tok, name in named:
            if name in initial:
                raise self.error(
                    tok, f"{name!r} would share a name with the initial value of state {initial[name]!r}; rename it"
                )
        for name, (_, tok) in self.d.params.items():
            if name not in self.used:
                raise self.error(tok, f"parameter {name!r} is never used")
        for name, (_, tok) in self.d.inputs.items():
            if name not in self.used:
                raise self.error(tok, f"input {name!r} is never used")
        return equations, loss_name

    def value(self, node: Node, top: bool = False) -> _Value:
        if isinstance(node, Num):
            return _Value(node.value, "number")
        if isinstance(node, Ref):
            return self.ref(node)
        if isinstance(node, Neg):
            arg = self.value(node.arg)
            if arg.kind == "number":
                return _Value(-arg.expr, "number")
            if arg.kind != "vector":
                raise self.error(node, f"cannot negate {arg.describe()}")
            return _Value(mul(sp.S.NegativeOne, arg.expr), "vector", arg.dim)
        if isinstance(node, BinOp):
            return self.binop(node, top)
        if isinstance(node, Call):
            return self.call(node, top)
        raise AssertionError(node)

    def ref(self, node: Ref) -> _Value:
        d, name = self.d, node.name
        if node.lag:
            if name not in d.states:
                raise self.error(node, f"{name}[t-1]: only a state has a previous step, and {name!r} is not a state")
            self.used.add(name)
            return _Value(d.states[name][0].at("t-1"), "vector", d.states[name][0].dim)
        if name in d.params:
            self.used.add(name)
            p = d.params[name][0]
            if len(p.shape) == 2:
                return _Value(p.symbol, "matrix", ",".join(p.shape))
            return _Value(p.symbol, "vector", p.shape[0])
        if name in d.inputs:
            self.used.add(name)
            v = d.inputs[name][0]
            return _Value(v.at("t"), "vector", v.dim)
        if name in d.targets:
            v, kind, _ = d.targets[name]
            return _Value(v.at("t"), "target", v.dim, kind)
        if name in self.defined and self.defined[name] == LOSS:
            raise self.error(node, f"{name} is the loss: it cannot be used in an expression")
        if name in self.defined:
            return _Value(
                sp.MatrixSymbol(naming.step_name(name, "t"), dim_symbol(self.defined[name]), 1),
                "vector",
                self.defined[name],
            )
        if name in d.states:
            raise self.error(
                node, f"{name} is used before it is computed at this step; write {name}[t-1] for the previous step"
            )
        if name in FUNCTIONS:
            raise self.error(node, f"{name} is a function: write {name}(...)")
        raise self.error(node, f"undefined name {name!r}")

    def binop(self, node: BinOp, top: bool = False) -> _Value:
        # a loss equation may add losses and scale them by numbers: J = ce(...) + 0.5 * squared_error(...)
        inner = top and node.op in ("+", "-", "*", "W v")
        a, b = self.value(node.left, inner), self.value(node.right, inner)
        if "loss" in (a.kind, b.kind):
            if node.op == "+" and a.kind == b.kind == "loss":
                return _Value(_loss_sum([*sp.Add.make_args(a.expr), *sp.Add.make_args(b.expr)]), "loss")
            if node.op in ("*", "W v") and {a.kind, b.kind} == {"loss", "number"}:
                num, loss = (a, b) if a.kind == "number" else (b, a)
                if not num.expr > 0:
                    raise self.error(node, f"a loss is weighted by a positive number, got {num.expr}")
                terms = loss.expr.args if isinstance(loss.expr, sp.MatAdd) else (loss.expr,)  # c (J1 + J2)
                return _Value(_loss_sum([_weighted(num.expr, term) for term in terms]), "loss")
            raise self.error(
                node,
                f"{a.describe()} {'next to' if node.op == 'W v' else node.op} {b.describe()}: losses are only added, "
                "each weighted by a positive number "
                "(J = cross_entropy(softmax(y), label) + 0.5 * squared_error(q, r))",
            )
        for side in (a, b):
            if side.kind in ("loss", "target"):
                raise self.error(node, f"{side.describe()} cannot be combined with {node.op!r}")
        if a.kind == "number" and b.kind == "number":
            value = {"+": a.expr + b.expr, "-": a.expr - b.expr}.get(node.op, a.expr * b.expr)
            return _Value(value, "number")
        if node.op in ("+", "-"):
            if "matrix" in (a.kind, b.kind):
                raise self.error(node, f"cannot add or subtract a matrix ({a.describe()} {node.op} {b.describe()})")
            dim = a.dim if a.kind == "vector" else b.dim
            if a.kind == b.kind == "vector" and a.dim != b.dim:
                raise self.error(node, f"shape mismatch: {a.describe()} {node.op} {b.describe()}")
            left, right = self._as_vector(a, dim), self._as_vector(b, dim)
            if node.op == "-":
                right = sp.MatMul(sp.S.NegativeOne, right)
            terms = [*(left.args if isinstance(left, sp.MatAdd) else (left,)), right]
            return _Value(sp.MatAdd(*terms), "vector", dim)
        if a.kind == "number" and b.kind == "matrix":  # 2 W_xh x reads (2 W_xh) x
            return _Value(mul(a.expr, b.expr), "matrix", b.dim)
        if node.op == "W v":
            if a.kind == "number" and b.kind == "vector":
                return _Value(mul(a.expr, b.expr), "vector", b.dim)
            if a.kind != "matrix":
                raise self.error(
                    node,
                    f"{a.describe()} next to {b.describe()}: only a weight matrix multiplies a vector (W x); "
                    "for an elementwise product write a * b",
                )
            rows, cols = a.dim.split(",")
            if b.kind != "vector" or b.dim != cols:
                raise self.error(
                    node, f"shape mismatch: {a.describe()} times {b.describe()}; it needs a vector of size {cols}"
                )
            return _Value(mul(a.expr, b.expr), "vector", rows)
        # "*": elementwise, or a scaling by a number
        if "matrix" in (a.kind, b.kind):
            raise self.error(node, "a matrix times a vector is written W x, without '*'")
        if a.kind == "number" or b.kind == "number":
            num, vec = (a, b) if a.kind == "number" else (b, a)
            return _Value(mul(num.expr, vec.expr), "vector", vec.dim)
        if a.dim != b.dim:
            raise self.error(node, f"shape mismatch: {a.describe()} * {b.describe()}")
        return _Value(Hadamard(a.expr, b.expr), "vector", a.dim)

    def _as_vector(self, v: _Value, dim: str) -> sp.Basic:
        if v.kind == "vector":
            return v.expr
        ones = sp.OneMatrix(dim_symbol(dim), 1)
        return ones if v.expr == 1 else sp.MatMul(v.expr, ones)

    def call(self, node: Call, top: bool) -> _Value:
        fn = node.fn
        if fn in LOSSES:
            if not top:
                raise self.error(node, f"{fn}(...) is a loss: it must be a whole equation, as in J = {fn}(...)")
            if len(node.args) != 2:
                raise self.error(node, f"{fn} takes two arguments (a prediction and a target), got {len(node.args)}")
            pred, target = self.value(node.args[0]), self.value(node.args[1])
            if pred.kind != "vector":
                raise self.error(node.args[0], f"{fn}: expected a vector prediction, got {pred.describe()}")
            if target.kind != "target":
                raise self.error(node.args[1], f"{fn}: expected a declared target, got {target.describe()}")
            wanted = "class" if fn == "cross_entropy" else "real"
            if target.target_kind != wanted:
                hint = "target label: class(y)" if wanted == "class" else "target r[y]"
                raise self.error(node.args[1], f"{fn} needs a {wanted} target, declared as '{hint}'")
            if pred.dim != target.dim:
                raise self.error(node, f"shape mismatch: {fn} of {pred.describe()} and a target over {target.dim}")
            loss = (
                CrossEntropy(pred.expr, target.expr) if fn == "cross_entropy" else SquaredError(pred.expr, target.expr)
            )
            return _Value(loss, "loss")
        if len(node.args) != 1:
            raise self.error(node, f"{fn} takes one argument, got {len(node.args)}")
        arg = self.value(node.args[0])
        if arg.kind != "vector":
            raise self.error(node.args[0], f"{fn}: expected a vector, got {arg.describe()}")
        if fn == "softmax":
            return _Value(Softmax(arg.expr), "vector", arg.dim)
        return _Value(ACTIVATIONS[fn](arg.expr), "vector", arg.dim)


def _depth(tree: Node) -> int:
    """The nesting depth of a syntax tree (a name or a number is 1), without recursion."""
    deepest, todo = 0, [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        if isinstance(node, BinOp):
            todo += [(node.left, depth + 1), (node.right, depth + 1)]
        elif isinstance(node, Neg):
            todo.append((node.arg, depth + 1))
        elif isinstance(node, Call):
            todo += [(arg, depth + 1) for arg in node.args]
    return deepest


def _loss_sum(terms: list[sp.Basic]) -> sp.Basic:
    """The losses added: one flat sum (a single loss stays itself)."""
    flat = [t for term in terms for t in (term.args if isinstance(term, sp.MatAdd) else (term,))]
    return flat[0] if len(flat) == 1 else sp.MatAdd(*flat)


def _weighted(c: sp.Expr, loss: sp.Basic) -> sp.Basic:
    """c times a (weighted) loss, one number in front: 0.5 (2 J) is 1 J."""
    if isinstance(loss, sp.MatMul) and loss.args[0].is_Number:
        return mul(c * loss.args[0], *loss.args[1:])
    return mul(c, loss)


def parse(text: str, path: str = "<spec>", default_name: str = "cell") -> Cell:
    """Read a cell specification; raise ``SpecError`` with file:line:column on any problem."""
    # a byte-order mark is not part of the text; old Mac files end lines with CR alone
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    parser = _Parser(text, path)
    try:
        d = parser.parse()
        equations, loss = _Builder(d, path).build()
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
        states=tuple(v for v, _ in d.states.values()),
        equations=tuple(equations),
        loss=loss,
        loss_mode=d.loss_mode,
        path=path,
    )


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
