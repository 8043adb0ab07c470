"""Stage 1c: the syntax tree's meaning: names, dimensions and shapes checked, SymPy expressions built."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from derive.ir import naming
from derive.ir.cell import Equation, dim_symbol
from derive.ir.exprs import LOSSES, CrossEntropy, Hadamard, Softmax, SquaredError, mul
from derive.ir.ops import ACTIVATIONS
from derive.spec.lexer import SpecError, Token
from derive.spec.syntax import FUNCTIONS, BinOp, Call, Decls, Neg, Node, Num, Ref, Transposed

LOSS = "<loss>"  # what Builder.defined records for the loss node instead of a dimension
# operations nested in one equation: SymPy compares, differentiates and prints an expression recursively, and
# somewhat deeper than this (about 150 elementwise products in a row) exhausts Python's recursion limit
MAX_DEPTH = 100


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


class Builder:
    def __init__(self, d: Decls, path: str) -> None:
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
        if isinstance(node, Transposed):
            return self.transposed(node)
        raise AssertionError(node)

    def transposed(self, node: Transposed) -> _Value:
        """E^T for a matrix parameter E[rows, cols]: a matrix (cols, rows).  Anything else is refused by
        name: the chain rule transposes a parameter's contribution (d(E^T v)/dE = v g^T), nothing else."""
        value = self.value(node.arg)
        arg = node.arg
        if value.kind == "matrix" and isinstance(arg, Ref) and arg.name in self.d.params:
            rows, cols = value.dim.split(",")
            return _Value(sp.Transpose(value.expr), "matrix", f"{cols},{rows}")
        rule = "only a matrix parameter can be transposed (as in E^T)"
        if not isinstance(arg, Ref):
            raise self.error(node, f"^T: {rule}, not {value.describe()}")
        shown = f"{arg.name}[t-1]" if arg.lag else arg.name
        d = self.d
        kind = (
            "a vector parameter"
            if arg.name in d.params
            else "an input"
            if arg.name in d.inputs
            else "a state"
            if arg.name in d.states
            else "a target"
            if arg.name in d.targets
            else "a node (computed by an equation)"
        )
        raise self.error(node, f"{shown}^T: {rule}, and {arg.name} is {kind}")

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
        elif isinstance(node, (Neg, Transposed)):
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
