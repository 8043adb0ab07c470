"""Stage 1b: the tokens as a syntax tree (declarations and equations), by recursive descent."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp

from derive.ir import naming
from derive.ir.cell import Param, Vector
from derive.ir.exprs import LOSSES
from derive.ir.ops import ACTIVATIONS
from derive.spec.lexer import SpecError, Token, tokenize

KEYWORDS = ("cell", "param", "input", "state", "target", "loss")
MAX_NUMBER = 40  # characters in a numeric literal
FUNCTIONS = tuple(ACTIVATIONS) + ("softmax",) + tuple(LOSSES) + ("sum",)


def reserved(name: str) -> str:
    """The refusal of a name the generated code uses for itself."""
    return f"{name!r} is reserved for the generated code (as are {naming.reserved_shapes()}); rename it"


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
    lag: int  # 0: this step, k: k steps back (t-k)


@dataclass(frozen=True)
class Call(Node):
    fn: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # "+", "-", "*", "/", "W v" (juxtaposition)
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg(Node):
    arg: Node


@dataclass(frozen=True)
class Transposed(Node):
    """``E^T``, at the '^'; the builder checks that E is a matrix parameter."""

    arg: Node


@dataclass
class Decls:
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


class Parser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.tokens = tokenize(text, path)
        self.i = 0
        self.d = Decls()

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

    def name(self, what: str, defined: bool = False) -> Token:
        """A name; one the generated code reserves is refused here, or, for the name an equation
        ``defined`` (a node, or a constant, which the code holds by its value), by the builder."""
        tok = self.tok
        if tok.kind != "name":
            raise self.error(tok, f"expected {what} (a name such as W_xh), got {tok.show()}")
        if tok.text in KEYWORDS:
            raise self.error(tok, f"{tok.text!r} is a keyword, not a name")
        if naming.is_reserved(tok.text) and not defined:
            raise self.error(tok, reserved(tok.text))
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
    def parse(self) -> Decls:
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
        tok = self.name("the name of the node an equation defines", defined=True)
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
        """Elementwise products and quotients, from the left: ``u * U h[t-1]`` is u * (U h[t-1]),
        ``dt / tau * v`` is (dt / tau) * v."""
        left = self.signed()
        while self.at("*") or self.at("/"):
            op = self.tok
            self.i += 1
            left = BinOp(op.line, op.col, op.text, left, self.signed())
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
        left = self.postfix()
        if self._starts_operand():
            op = self.tok
            return BinOp(op.line, op.col, "W v", left, self.juxtaposed())
        return left

    def postfix(self) -> Node:
        """An operand, transposed if ``^T`` follows it: ``E^T h`` is (E^T) h."""
        first = self.tok
        operand = self.primary()
        if not self.at("^"):
            return operand
        caret = self.take("op", "^")
        letter = self.tok
        if letter.kind != "name" or letter.text != "T":
            raise self.error(letter, f"expected T after '^' (E^T is the transpose of E), got {letter.show()}")
        self.i += 1
        if first.kind == "op" and first.text == "(":
            raise self.error(
                caret, "(...)^T: only a matrix parameter can be transposed (as in E^T), not a parenthesised expression"
            )
        if self.at("^"):
            raise self.error(self.tok, "a matrix is transposed once: write E or E^T")
        return Transposed(caret.line, caret.col, operand)

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
        """``[t]``, ``[t-k]``: how many steps back (0 for this step), at most ``naming.MAX_LAG``."""
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
                    f"{name.text}[t+{num.text}] refers to the future: a cell may read {name.text}[t-1] or {name.text}",
                )
            if offset == 0:
                raise self.error(
                    num,
                    f"{name.text}[t{sign.text}{num.text}] is step t itself: write {name.text} for this step's value "
                    f"or {name.text}[t-1] for the previous step's",
                )
        if not self.at("]"):  # reported where the '[' opened: what follows may be on the next line
            raise self.error(opening, f"{name.text}[ is never closed: expected ']' before {self.tok.show()}")
        self.i += 1
        if -offset > naming.MAX_LAG:
            raise self.error(
                t,
                f"{name.text}[t{offset}]: a cell may read at most {naming.MAX_LAG} steps back, "
                f"{name.text}[t-{naming.MAX_LAG}]",
            )
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
