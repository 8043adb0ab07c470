"""Stage 1c: the syntax tree's meaning: names, dimensions and shapes checked, SymPy expressions built."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from derive.ir import naming
from derive.ir.cell import Delay, Equation, dim_symbol
from derive.ir.exprs import LOSSES, Constant, Hadamard, LogSoftmax, Softmax, Sum, is_scalar, mul, scaled, valued
from derive.ir.ops import ACTIVATIONS, LogSigmoid, Reciprocal, Sigmoid
from derive.spec.lexer import SpecError, Token
from derive.spec.syntax import FUNCTIONS, BinOp, Call, Decls, Neg, Node, Num, Ref, Transposed, reserved

# what the document writes alone, with no step: a constant of one of these names would read as it
DOCUMENT_SYMBOLS = {
    "t": "a step",
    "j": "a step",
    "k": "a step",
    "T": "the number of steps",
    "g": "the row vector a weight's map takes",
    "J": "the total loss",
    "I": "the identity matrix",
    "delta": "a delta",
}
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
        self.constants: dict[str, Constant] = {}  # alpha = 0.3: by name, in order
        self.constant_equations: list[Equation] = []
        self.used: set[str] = set()
        self.earlier_read: set[str] = set()  # the states read at an earlier step: h[t-1], h[t-2]
        self.targets_as_vectors = False  # inside sum(...), where a target is a vector like any other
        # the delay lines that reading further back adds (h[t-2], x[t-1]), by name, with their updates
        self.delays: dict[str, tuple[Delay, Equation]] = {}

    def error(self, node: Node | Token, message: str) -> SpecError:
        return SpecError(self.path, node.line, node.col, message)

    def build(self) -> tuple[list[Equation], str]:
        """The cell's equations (the delays' updates last) and the loss's name; ``self.delays`` holds the delays."""
        equations: list[Equation] = []
        loss_name = None
        for (tok, tree), start in zip(self.d.equations, self.d.starts):
            if tok.text in self.defined or tok.text in self.constants:
                raise self.error(tok, f"{tok.text!r} is defined twice")
            depth = _depth(tree)
            if depth > MAX_DEPTH:
                raise self.error(
                    start,
                    f"expression nested too deeply ({depth} operations inside one another, at most {MAX_DEPTH}): "
                    "name some of its parts",
                )
            value = self.value(tree, top=True)
            declared = _declared_as(self.d, tok.text)
            if declared:
                why = "a constant needs a name of its own" if value.kind == "number" else "it cannot be computed"
                raise self.error(tok, f"{tok.text!r} is declared as {declared}: {why}")
            if value.kind == "number" and tok.text not in self.d.states:
                self.constant(tok, value.expr, start)
                continue
            if naming.is_reserved(tok.text):
                raise self.error(tok, reserved(tok.text))
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
            if name not in self.earlier_read:
                raise self.error(
                    tok,
                    f"state {name!r} is never read at an earlier step ({name}[t-1]): it is a node; declare it no state",
                )
        declared = {**self.d.params, **self.d.inputs, **self.d.states}
        names = set(declared) | set(self.d.targets) | set(self.defined) | set(self.delays)
        nodes = [tok for tok, _ in self.d.equations if tok.text not in self.constants]  # the code holds no constant
        for tok in nodes:
            if tok.text.startswith("d") and tok.text[1:] in names:
                raise self.error(
                    tok, f"{tok.text!r} would share a name with the gradient of {self._named(tok.text[1:])}; rename it"
                )
        for name, (_, tok) in declared.items():
            if name.startswith("d") and name[1:] in names:
                raise self.error(
                    tok, f"{name!r} would share a name with the gradient of {self._named(name[1:])}; rename it"
                )
        named = [*((tok, tok.text) for tok in nodes), *((tok, n) for n, (_, tok) in declared.items())]
        named += [(entry[-1], n) for n, entry in self.d.targets.items()]
        indexed = set(self.d.inputs) | set(self.d.states) | set(self.d.targets) | set(self.defined)
        constants = [(tok, tok.text) for tok, _ in self.d.equations if tok.text in self.constants]
        for tok, name in named + constants:  # a constant h_1 would print as h at step 1 in the document
            owner = naming.step_local_of(name, indexed)
            if owner is not None:
                base, step = owner
                what = (
                    f"the gradient of {base} at step {step}" if name != f"{base}_{step}" else f"{base} at step {step}"
                )
                where = "the document" if name in self.constants else "the generated code"
                raise self.error(tok, f"{name!r} would share a name with {what} in {where}; rename it")
        initial = {naming.initial_arg(state): state for state in self.d.states}  # the module's initial-state arguments
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
        for eq in self.constant_equations:
            if eq.name not in self.used:
                raise SpecError(self.path, eq.line, eq.col, f"constant {eq.name!r} is never used")
        return equations + [eq for _, eq in self.delays.values()], loss_name

    def constant(self, tok: Token, value: sp.Expr, start: Token) -> None:
        """``alpha = 0.3``, or ``c = dt / tau``: a named number, kept by name for the document (so not one
        of the document's own symbols); the code holds its value, so any name the code uses is free."""
        if tok.text in DOCUMENT_SYMBOLS or tok.text.startswith("n_"):
            what = DOCUMENT_SYMBOLS.get(tok.text, "a dimension's size, as n_h")
            raise self.error(tok, f"{tok.text!r} is a symbol of the derivation ({what}): name the constant otherwise")
        self.constants[tok.text] = Constant(tok.text, valued(value))
        self.constant_equations.append(Equation(tok.text, value, start.line, start.col))

    def value(self, node: Node, top: bool = False) -> _Value:
        if isinstance(node, Num):
            return _Value(node.value, "number")
        if isinstance(node, Ref):
            return self.ref(node)
        if isinstance(node, Neg):
            arg = self.value(node.arg, top)
            if arg.kind == "number":
                return _Value(-arg.expr, "number")
            if arg.kind == "loss":
                return self.weighted(node, _Value(sp.S.NegativeOne, "number"), arg, True)
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
        if name in self.constants and not node.lag:
            self.used.add(name)
            return _Value(self.constants[name], "number")
        if node.lag:
            return self.earlier(node)
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
            return _Value(v.at("t"), "vector" if self.targets_as_vectors else "target", v.dim, kind)
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
        later = next((tok for tok, _ in self.d.equations if tok.text == name), None)
        if later is not None:
            raise self.error(node, f"{name} is used before it is defined (line {later.line}): define it first")
        raise self.error(node, f"undefined name {name!r}")

    def earlier(self, node: Ref) -> _Value:
        """``v[t-k]``: a state's or an input's value k >= 1 steps back.  A state's previous value is
        ``v@t-1`` itself; anything further back is read from a delay line, hidden states that each
        hold the one before at the previous step: ``h[t-2]`` is h'_{t-1} with h'_t = h_{t-1}, and
        ``x[t-1]`` is x'_{t-1} with x'_t = x_t (an input's line starts at this step's value)."""
        d, name, lag = self.d, node.name, node.lag
        if name in d.states:
            vector, first = d.states[name][0], 1
            self.earlier_read.add(name)
        elif name in d.inputs:
            vector, first = d.inputs[name][0], 0
        else:
            raise self.error(
                node, f"{name}[t-{lag}]: only a state or an input has earlier steps, and {self._kind(name)}"
            )
        self.used.add(name)
        if lag == first:  # a state's previous step
            return _Value(vector.at("t-1"), "vector", vector.dim)
        for k in range(first, lag):  # the line's stages, each holding v_{t-k}
            stage = Delay(naming.delay_name(name, k), vector.dim, source=name, lag=k)
            if stage.name not in self.delays:
                reads = (
                    vector.at(naming.shift("t", -k))
                    if k == first
                    else self.delays[naming.delay_name(name, k - 1)][0].at("t-1")
                )
                self.delays[stage.name] = (stage, Equation(stage.name, reads, node.line, node.col))
        return _Value(self.delays[naming.delay_name(name, lag - 1)][0].at("t-1"), "vector", vector.dim)

    def _named(self, name: str) -> str:
        """A name as a refusal says it: ``'z'``; a delay as what reads it (its name is the generator's)."""
        if name in self.delays:
            return f"the delay line that {self.delays[name][0].read_as} reads"
        return repr(name)

    def _kind(self, name: str) -> str:
        """What a name that has no earlier steps is, as a refusal says it."""
        if name in self.d.params:
            return f"{name!r} is a parameter"
        if name in self.d.targets:
            return f"{name!r} is a target"
        if self.defined.get(name) == LOSS:
            return f"{name!r} is the loss"
        if name in self.constants:
            return f"{name!r} is a constant, the same at every step: write {name}"
        if name in self.defined or any(tok.text == name for tok, _ in self.d.equations):
            return f"{name!r} is computed anew at each step: declare it a state to read its earlier values"
        return f"{name!r} is not defined"

    def binop(self, node: BinOp, top: bool = False) -> _Value:
        # a loss equation may add losses and scale them by numbers: J = ce(...) + 0.5 * squared_error(...)
        inner = top and node.op in ("+", "-", "*", "/", "W v")
        a, b = self.value(node.left, inner), self.value(node.right, inner)
        if "loss" in (a.kind, b.kind):
            return self.losses(node, a, b)
        for side in (a, b):
            if side.kind in ("loss", "target"):
                raise self.error(node, f"{side.describe()} cannot be combined with {node.op!r}")
        if node.op == "/":
            return self.quotient(node, a, b)
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

    def losses(self, node: BinOp, a: _Value, b: _Value) -> _Value:
        """Losses added or subtracted, each weighted by a number: J = ce(...) + 0.5 * squared_error(...)."""
        if node.op in ("+", "-") and a.kind == b.kind == "loss":
            right = b if node.op == "+" else self.weighted(node, _Value(sp.S.NegativeOne, "number"), b, True)
            return _Value(_loss_sum([*_terms(a.expr), *_terms(right.expr)]), "loss")
        if node.op == "/" and b.kind == "loss":
            raise self.error(node, "cannot divide by a loss: a loss is weighted by a number (J / 2, 0.5 * J)")
        if node.op == "/" and (a.kind, b.kind) == ("loss", "number"):
            a, b = self.reciprocal(node, b), a  # J / 2 is 1/2 J
        if node.op in ("*", "W v", "/") and {a.kind, b.kind} == {"loss", "number"}:
            return self.weighted(node, *((a, b) if a.kind == "number" else (b, a)))
        raise self.error(
            node,
            f"{a.describe()} {'next to' if node.op == 'W v' else node.op} {b.describe()}: losses are only added, "
            "each weighted by a number "
            "(J = cross_entropy(softmax(y), label) + 0.5 * squared_error(q, r))",
        )

    def weighted(self, node: Node, num: _Value, loss: _Value, subtracted: bool = False) -> _Value:
        """c J1 + c J2 for c (J1 + J2).  A named loss (cross_entropy, ...) keeps a positive weight: a
        negative one would maximise it; sum(...) is any scalar expression, and takes any weight but 0."""
        out = []
        for term in _terms(loss.expr):
            weighted = _weighted(num.expr, term)
            coeff, inner = scaled(weighted)
            if valued(coeff) == 0 or (not isinstance(inner, Sum) and not valued(coeff) > 0):
                if subtracted:
                    raise self.error(
                        node,
                        f"{inner.spec_name} is subtracted: a named loss is only added (sum(...) may be subtracted)",
                    )
                what = "a number other than 0" if isinstance(inner, Sum) else "a positive number"
                raise self.error(node, f"a loss is weighted by {what}, got {valued(num.expr)}")
            out.append(weighted)
        return _Value(_loss_sum(out), "loss")

    def quotient(self, node: BinOp, a: _Value, b: _Value) -> _Value:
        """a / b: by a number (or constant) a scaling; by a vector elementwise, a ∘ b^{∘-1}."""
        if b.kind == "matrix":
            raise self.error(node, f"cannot divide by {b.describe()}: only by a number or elementwise by a vector")
        if b.kind == "number":
            return self.binop_values(node, self.reciprocal(node, b), a)
        if a.kind == "matrix":
            raise self.error(node, f"cannot divide {a.describe()} by {b.describe()}")
        inverse = Reciprocal(b.expr)
        if a.kind == "number":
            return _Value(mul(a.expr, inverse), "vector", b.dim)
        if a.dim != b.dim:
            raise self.error(node, f"shape mismatch: {a.describe()} / {b.describe()}")
        return _Value(Hadamard(a.expr, inverse), "vector", a.dim)

    def reciprocal(self, node: BinOp, b: _Value) -> _Value:
        """1 / b for a number b; division by zero refused."""
        if valued(b.expr) == 0:
            divisor = b.expr.name if isinstance(b.expr, Constant) else "the divisor"
            raise self.error(node, f"division by zero: {divisor} is 0")
        return _Value(1 / b.expr, "number")

    def binop_values(self, node: BinOp, num: _Value, other: _Value) -> _Value:
        """num * other for a number num: a number, a scaled vector or a scaled matrix."""
        if other.kind == "number":
            return _Value(num.expr * other.expr, "number")
        return _Value(mul(num.expr, other.expr), other.kind, other.dim)

    def _as_vector(self, v: _Value, dim: str) -> sp.Basic:
        if v.kind == "vector":
            return v.expr
        ones = sp.OneMatrix(dim_symbol(dim), 1)
        return ones if v.expr == 1 else sp.MatMul(v.expr, ones)

    def call(self, node: Call, top: bool) -> _Value:
        fn = node.fn
        if fn in LOSSES or fn == "sum":
            if not top:
                raise self.error(node, f"{fn}(...) is a loss: it must be a whole equation, as in J = {fn}(...)")
            return self.sum(node) if fn == "sum" else self.named_loss(node)
        if len(node.args) != 1:
            raise self.error(node, f"{fn} takes one argument, got {len(node.args)}")
        arg = self.value(node.args[0])
        if arg.kind != "vector":
            raise self.error(node.args[0], f"{fn}: expected a vector, got {arg.describe()}")
        if fn == "softmax":
            return _Value(Softmax(arg.expr), "vector", arg.dim)
        if fn == "log" and isinstance(arg.expr, Softmax):  # computed and differentiated as one operation
            return _Value(LogSoftmax(arg.expr.arg), "vector", arg.dim)
        if fn == "log" and isinstance(arg.expr, Sigmoid):  # -softplus(-a): no log of an underflowed 0
            return _Value(LogSigmoid(arg.expr.arg), "vector", arg.dim)
        return _Value(ACTIVATIONS[fn](arg.expr), "vector", arg.dim)

    def named_loss(self, node: Call) -> _Value:
        """cross_entropy(p, l), squared_error(y, r), binary_cross_entropy(p, r): a prediction and a target."""
        fn = node.fn
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
        return _Value(LOSSES[fn](pred.expr, target.expr), "loss")

    def sum(self, node: Call) -> _Value:
        """sum(v): a loss of any vector expression, which may read the targets as vectors
        (a class target as its one-hot vector)."""
        if len(node.args) != 1:
            raise self.error(node, f"sum takes one argument, got {len(node.args)}")
        self.targets_as_vectors = True
        try:
            arg = self.value(node.args[0])
        finally:
            self.targets_as_vectors = False
        if arg.kind != "vector":
            raise self.error(node.args[0], f"sum: expected a vector, got {arg.describe()}")
        if not any(naming.split(s.name)[1] for s in arg.expr.atoms(sp.MatrixSymbol)):
            raise self.error(
                node, "sum(...) reads no value of a step: J_t would add it at every step; a loss reads the step"
            )
        if _summed_directly(arg.expr):
            raise self.error(
                node, "sum(...) of a matrix product or a softmax as it stands: name it first (a = V h; J = sum(a))"
            )
        return _Value(Sum(arg.expr), "loss")


def _summed_directly(expr: sp.Basic) -> bool:
    """Whether sum(expr) would take a matrix product or a softmax's derivative against the vector of
    ones itself (W^T 1, 1^T 1), which the generated code has no array for: through sums and scalings
    down to a product or a softmax; an elementwise factor or function takes the ones' place."""
    if isinstance(expr, sp.MatAdd):
        return any(_summed_directly(a) for a in expr.args)
    if isinstance(expr, sp.MatMul):
        mats = [a for a in expr.args if not is_scalar(a)]
        return len(mats) > 1 or any(_summed_directly(a) for a in mats)
    if isinstance(expr, ACTIVATIONS["identity"]):
        return _summed_directly(expr.arg)
    return isinstance(expr, (Softmax, LogSoftmax))


def _declared_as(d: Decls, name: str) -> str:
    """What a declaration makes ``name`` (``"a parameter"``), or "" where nothing declares it."""
    for kind, names in (("a parameter", d.params), ("an input", d.inputs), ("a target", d.targets)):
        if name in names:
            return kind
    return ""


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


def _terms(loss: sp.Basic) -> tuple[sp.Basic, ...]:
    """The weighted losses a loss adds up."""
    return loss.args if isinstance(loss, sp.MatAdd) else (loss,)


def _loss_sum(terms: list[sp.Basic]) -> sp.Basic:
    """The losses added: one flat sum (a single loss stays itself)."""
    flat = [t for term in terms for t in (term.args if isinstance(term, sp.MatAdd) else (term,))]
    return flat[0] if len(flat) == 1 else sp.MatAdd(*flat)


def _weighted(c: sp.Expr, loss: sp.Basic) -> sp.Basic:
    """c times a (weighted) loss, one number in front: 0.5 (2 J) is 1 J."""
    coeff, inner = scaled(loss)
    return mul(c * coeff, inner)
