"""Stage 6b: the fast path's schedule as a framework's scan, for the PyTorch and JAX targets.

The NumPy module writes every value into arrays it keeps; a framework's module is written as
functions of values, as ``jax.lax.scan`` wants it.  The schedule (``schedule``) is the same:
what reads no carried value runs for every step at once on (T * B, n) rows (``z_rows``), before
the loop or after it; the loop is one step, ``body(carry, sequences) -> (carry, outputs)``:

- forward, the carry is each state at t - 1 (``h_prev``, from the initial state); the sequences
  are what the step reads that was computed for every step at once (``x``, the known part of a
  pre-activation), one (B, n) slice of a (T, B, n) array per step; the outputs, stacked into
  rows after the loop, are the step's values that something after it reads;
- backward, the same in reverse: the carry is each state's share of dJ/ds_{t-1}
  (``dh_next``, from zeros), what it reaches at t = 0 is the initial state's gradient.

In a step, a node's value at step t is its bare name (``z``), a state's at t - 1 is ``z_prev``.

Truncated BPTT (``Run``) replaces the backward pass with the NumPy schedule's run for J_s
(``truncated``: t = s, ..., max(1, s - K + 1)), here for every s at once: step k of the runs is at
t = s - k on the rows of every J_s, K steps of T B rows in place of T K steps of B rows.
Nothing here is one framework's: the printer spells the few calls that differ from a
``Framework`` record, and each target's template lays the lines out.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace

import sympy as sp

from derive.derivation.pipeline import Derivation
from derive.emit.frameworks.stacks import Stacked, carry_code, member_lines
from derive.emit.numpy.fast import Line, paren, summed
from derive.emit.numpy.fast import io as io_of  # the inputs and targets as both fast paths read them
from derive.emit.numpy.fusion import stacks_of
from derive.emit.numpy.schedule import LOOP, POST, PRE, Schedule, Statement, Truncated, backward, forward, truncated
from derive.emit.printing import BatchedPrinter, Io
from derive.ir import naming
from derive.ir.cell import Cell
from derive.ir.exprs import (
    CrossEntropy,
    Elementwise,
    Softmax,
    SoftmaxCrossEntropy,
)
from derive.ir.ops import RECORDS

ROWS, STEP, LAST = "rows", "step", "last"  # every step at once, one step in the loop, step T alone
LIVE = "_live"  # lengths: the (T * B,) rows where J_t is a loss, or None
KEEP = "_keep"  # lengths: the rows a gradient's direct share sums (those where J_t is a loss), or all


@dataclass(frozen=True)
class Framework:
    """What a target spells its own way: its name (the key of each op record's spelling)."""

    name: str  # "torch" or "jax"
    lengths: bool = False  # whether its module takes lengths= (variable-length batches): the PyTorch one
    into: bool = False  # whether its _scan writes its outputs into given tensors (``into=``): the PyTorch one


def rows_name(base: str, lag: int = 0) -> str:
    return naming.rows_view(naming.code_base(base), lag)


def prev_name(base: str) -> str:
    """A state at t - 1 inside a step: ``h_prev``."""
    return f"{naming.code_base(base)}_prev"


class ScanPrinter(BatchedPrinter):
    """The batched printer in one of three contexts: ``rows`` (``h@t`` is ``h_rows``, ``h@t-1``
    ``h_rows_prev``), ``step`` (``h``, ``h_prev``) and ``last`` (step T alone: ``h_rows[-B:]``);
    the elementwise functions as the framework spells them."""

    ROWS = ""

    def __init__(self, framework: Framework, io: Io, context: str) -> None:
        super().__init__(io=io)
        self.framework, self.context = framework, context
        if framework.lengths and context == ROWS:  # with lengths, a loss sums the rows _live (None: all)
            self.LIVE = LIVE

    def _name(self, base: str, lag: int) -> str:
        if self.context == STEP:
            return prev_name(base) if lag else naming.code_base(base)
        rows = rows_name(base, lag)
        return f"{rows}[-B:]" if self.context == LAST else rows

    def _print_MatrixSymbol(self, expr: sp.MatrixSymbol) -> str:
        base, step = naming.split(expr.name)
        if step is None:
            return naming.code_base(base)
        lag = -(naming.offset(step) or 0)
        if base in self.io.last:  # a many-to-one target: (B, n), no step axis
            code = naming.code_base(base)
        else:
            code = self._name(base, lag)
        if base in self.io.classes:
            return f"_onehot({code}, {self.io.classes[base]}, dtype)"
        return code

    def _labels(self, expr: sp.Basic) -> str | None:
        """The integer labels of a class target, where ``expr`` is one."""
        if not isinstance(expr, sp.MatrixSymbol):
            return None
        base, step = naming.split(expr.name)
        if base not in self.io.classes or step is None:
            return None
        return naming.code_base(base) if base in self.io.last else self._name(base, 0)

    def _print_Elementwise(self, expr: Elementwise) -> str:
        call = expr.op.calls.get(self.framework.name) if expr.op.code is not None else None
        if expr.op.code is None:  # the identity
            return self._print(expr.arg)
        if call is None:
            raise NotImplementedError(f"{expr.op.name} has no {self.framework.name} spelling")
        return f"{call}({self._print(expr.arg)})"

    def cross_entropy(self, expr: CrossEntropy | SoftmaxCrossEntropy, out: str | None = None) -> str:
        labels = self._labels(expr.target)
        target = labels if labels is not None else self._print(expr.target)
        if isinstance(expr, SoftmaxCrossEntropy):
            name = "_softmax_cross_entropy_at" if labels is not None else "_softmax_cross_entropy"
            return f"{name}({self._print(expr.logits)}, {target}{self._live()})"
        name = "_cross_entropy_at" if labels is not None else "_cross_entropy"
        return f"{name}({self._print(expr.p)}, {target}{self._live()})"


# ---- the loop -----------------------------------------------------------------------


@dataclass(frozen=True)
class Carry:
    inside: str  # what the step reads: h_prev, dh_next
    after: str  # what it leaves for the next step: h, dh_next
    initial: str  # code: h0, or zeros
    source: str | None = None  # forward: the state at step t (h@t), a sequence where the step does not compute it


@dataclass(frozen=True)
class Loop:
    """One pass's loop: ``carry, outputs = scan(step, carry, sequences)``."""

    reverse: bool
    carries: tuple[Carry, ...]
    sequences: tuple[tuple[str, str], ...]  # (the step's name, the (T, B, n) array it is a step of)
    body: tuple[Line, ...]
    outputs: tuple[tuple[str, str], ...]  # (the step's name, the rows it is stacked into after the loop)
    masked: Masked | None = None  # lengths: what the step does with them (None: the target takes none)
    into: tuple[str | None, ...] = ()  # for each output, the (T, B, n) tensor it is written into (None: a new one)
    buffers: tuple[Line, ...] = ()  # the tensors made before the loop for it to write into


@dataclass(frozen=True)
class Masked:
    """What a loop's step does with lengths: the (T, B, 1) mask it reads by step (None without lengths),
    and the lines it runs at the end of the step where there is one."""

    mask: str  # the step's name: _live_t (forward), _first_t (backward)
    steps: str  # the mask by step: lengths.live, lengths.first
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Pass:
    pre: tuple[Line, ...]
    loop: Loop
    post: tuple[Line, ...]
    masked: tuple[Line, ...] = ()  # lengths: what runs after ``pre`` where they are given
    stacked: tuple[Line, ...] = ()  # the stacked matrices the loop's fused products read, made before it


def _symbol_names(expr: sp.Basic) -> set[str]:
    return {s.name for s in expr.atoms(sp.MatrixSymbol)}


def _reads(s: Statement) -> set[str]:
    return set(s.reads)


def _step_parts(name: str) -> tuple[str, int] | None:
    """(base, lag) of a stepped symbol name (``h@t-1`` -> (h, 1)); None for one of no step."""
    base, step = naming.split(name)
    if step is None:
        return None
    return base, -(naming.offset(step) or 0)


def _assigned(s: Statement, target: str, code: str) -> Line:
    """``target = code``, or for ``+=`` ``target = target + code``: no value is changed in place."""
    return Line(f"{target} = {code}" if s.op == "=" else f"{target} = {target} + {code}", s.comment)


def _assign_lines(s: Statement, printer: ScanPrinter, target: str) -> list[Line]:
    return [_assigned(s, target, " + ".join(printer.doprint(term) for term in s.terms))]


def _is_total(s: Statement) -> bool:
    return naming.split(s.target.name)[1] is None


def _all_steps_lines(s: Statement, framework: Framework, io: Io, loss: str, is_delta: bool) -> list[Line]:
    """A statement before or after the loop: every step at once on rows, or step T alone.  The loss
    that the NumPy schedule fused with p = softmax(y) (``out``) computes p first."""
    if s.out is not None:
        ce = s.terms[0]
        assert isinstance(ce, SoftmaxCrossEntropy)
        p = Statement(s.phase, s.out, (Softmax(ce.logits),), last_step=s.last_step)
        loss_only = replace(s, out=None)
        return [_all_steps_line(p, framework, io, loss, False), _all_steps_line(loss_only, framework, io, loss, False)]
    return [_all_steps_line(s, framework, io, loss, is_delta)]


def _all_steps_line(s: Statement, framework: Framework, io: Io, loss: str, is_delta: bool) -> Line:
    printer = ScanPrinter(framework, io, LAST if s.last_step else ROWS)
    code = " + ".join(printer.doprint(term) for term in s.terms)
    if naming.split(s.target.name)[0] == loss:
        return Line(f"loss = {code}", s.comment)
    if _is_total(s):
        if s.direct and not s.last_step and framework.lengths:  # J_t's own share: the rows where J_t is a loss
            code = " + ".join(printer.kept(KEEP).doprint(term) for term in s.terms)
        bias = s.target.shape[1] == 1
        if bias:
            code = f"{code if code.isidentifier() else f'({code})'}.sum(axis=0)"
        target = naming.code_base(s.target.name)
        return _assigned(s, target, code)
    base = naming.split(s.target.name)[0]
    target = rows_name(base)
    if not any(naming.split(n)[1] is not None for t in s.terms for n in _symbol_names(t)):
        # a part that reads no step (a bias, a number): one row, made every step's
        code = f'{code} + _zeros(({"B" if s.last_step else "T * B"}, sizes["{s.target.shape[0]}"]), dtype, device)'
    if s.last_step and is_delta:  # a many-to-one output's delta: zeros but at step T
        return Line(f"{target} = _at_last({code}, T)", s.comment)
    return _assigned(s, target, code)


def _loop(
    statements: tuple[Statement, ...],
    framework: Framework,
    io: Io,
    carries: tuple[Carry, ...],
    read_after: set[str],
    reverse: bool,
    stacks: tuple[Stacked, ...] = (),
) -> tuple[Loop, tuple[Line, ...]]:
    """The loop of one pass from its statements in order: what the step reads that it did not
    write (nor is carried) is a sequence; what it writes and is read after the loop, an output.
    With it, the stacked matrices its fused products read (``stacks``)."""
    printer = ScanPrinter(framework, io, STEP)
    fused: set[str] = set()
    written: list[str] = []
    sequences: dict[str, str] = {}
    body: list[Line] = []
    carried = {c.inside for c in carries}

    def need(name: str) -> None:
        parts = _step_parts(name)
        if parts is None or name in written:
            return
        base, lag = parts
        local = printer.doprint(sp.MatrixSymbol(name, 1, 1)) if base not in io.classes else naming.code_base(base)
        if local in carried or local in sequences:
            return
        if base in io.classes:
            sequences[local] = f"{rows_name(base)}.reshape(T, B)"
        else:
            sequences[local] = f"{rows_name(base, lag)}.reshape(T, B, -1)"

    for s in statements:
        for name in sorted(_reads(s) | ({s.target.name} if s.op == "+=" else set())):
            need(name)
        body += _step_lines(s, printer, stacks, fused)
        if _step_parts(s.target.name) is not None:
            written.append(s.target.name)
    for c in carries:
        if c.source is not None:
            need(c.source)
    outputs = []
    for name in dict.fromkeys(written):
        base, _ = _step_parts(name)  # type: ignore[misc]
        if base in read_after:
            outputs.append((naming.code_base(base), rows_name(base)))
    made = tuple(k.made for k in stacks if k.product in fused)
    return Loop(reverse, carries, tuple(sequences.items()), tuple(body), tuple(outputs)), made


def _step_lines(s: Statement, printer: ScanPrinter, stacks: tuple[Stacked, ...], fused: set[str]) -> list[Line]:
    """A statement in the loop: a stack's member through the stack's one product, a carry that sums a
    stack's products as one product, anything else as it is."""
    target = printer.doprint(s.target)
    member = member_lines(s, stacks, printer, fused)
    if member is not None:
        return member
    carry, used = carry_code(s.expr, stacks, printer) if _is_total(s) and s.op == "=" else ("", [])
    if carry:
        fused.update(k.product for k in used)
        return [Line(f"{target} = {carry}", s.comment)]
    return _assign_lines(s, printer, target)


# ---- the passes ---------------------------------------------------------------------


def _bases_read(statements: tuple[Statement, ...], lag: int | None = None) -> set[str]:
    out = set()
    for s in statements:
        for name in s.reads:
            parts = _step_parts(name)
            if parts is not None and (lag is None or parts[1] == lag):
                out.add(parts[0])
    return out


@dataclass(frozen=True)
class Scans:
    """Both passes, and what joins them: the rows the backward pass reads of the forward's."""

    forward: Pass
    backward: Pass
    saved: tuple[str, ...]  # the rows the forward pass leaves for the backward: h_rows, h_rows_prev, x_rows
    previous: tuple[Line, ...]  # h_rows_prev = ...: each state read at t - 1 after its loop, by steps 0..T-1
    initial_grads: tuple[tuple[str, str], ...]  # (h0's gradient name in the grads, the carry that holds it)
    run: Run | None = None  # truncated BPTT's backward, in the backward pass's place


def plan(derivation: Derivation) -> Schedule:
    """The schedule the frameworks run: the NumPy one without its in-place rewrites."""
    return Schedule(forward(derivation), backward(derivation))


def _zeros(dim: str) -> str:
    return f'_zeros((B, sizes["n_{dim}"]), dtype, device)'


def scans(derivation: Derivation, framework: Framework) -> Scans:
    cell = derivation.cell
    io = io_of(cell)
    schedule = plan(derivation)
    fw, bw = schedule.forward, schedule.backward
    run = truncated(derivation.program) if derivation.truncate else None
    # what the backward reads of the forward: the hoisted passes', or the truncated run's
    bw_all = (*run.statements, *run.carries) if run is not None else (*bw.statements, *bw.carries)
    states = {s.name: s for s in cell.states}
    initial = {s.name: naming.initial_arg(s.name) for s in cell.declared_states}  # delays start at zeros
    forward_carries = tuple(
        Carry(prev_name(name), naming.code_base(name), initial.get(name, _zeros(s.dim)), naming.step_name(name, "t"))
        for name, s in states.items()
    )
    stacks = tuple(Stacked(k) for k in stacks_of(fw, cell))  # one product per step for the gates
    read_after = _bases_read((*fw.post, *bw_all))
    forward_pass = _pass(fw.statements, (), framework, io, cell.loss, forward_carries, read_after, stacks=stacks)
    backward_carries = tuple(
        Carry(naming.carried_local(name), naming.carried_local(name), _zeros(s.dim)) for name, s in states.items()
    )
    deltas = {naming.code_base(naming.grad_name(a.node)) for a in derivation.program.assigns}
    read_after_backward = _bases_read(bw.post)
    stepped, carried = in_the_step(bw.statements, bw.carries, {a.name for a in bw.locals})
    bw = replace(bw, statements=stepped, carries=carried)
    backward_pass = _pass(
        bw.statements, bw.carries, framework, io, cell.loss, backward_carries, read_after_backward, deltas, True, stacks
    )
    previous = tuple(
        (rows_name(b, 1), rows_name(b), initial.get(b, _zeros(states[b].dim)))
        for b in states
        if b in _bases_read((*fw.post, *bw_all), lag=1)
    )
    if framework.lengths:
        seeded = (
            rows_name(naming.split(s.target.name)[0]) for s in bw.statements if s.phase == PRE and not _unstepped(s)
        )
        forward_pass, backward_pass = _held(forward_pass), _cut(backward_pass, initial, tuple(dict.fromkeys(seeded)))
    forward_pass, previous_lines = _previous_lines(forward_pass, previous, framework)
    if framework.into:
        forward_pass = _hosted_forward(forward_pass)
    if framework.into and run is None:
        dims = {rows_name(naming.split(s.target.name)[0]): str(s.target.shape[0]) for s in bw.statements}
        backward_pass = _hosted(backward_pass, dims)
    return Scans(
        forward_pass,
        backward_pass,
        _saved(cell, io, bw_all),
        previous_lines,
        tuple((initial[s.name], naming.carried_local(s.name)) for s in cell.declared_states),
        None if run is None else _run(derivation, framework, io, run),
    )


def _forward_reads(cell: Cell, statements: tuple[Statement, ...]) -> list[tuple[str, int]]:
    """(base, lag) of each forward value (a node, an input, a target) the statements read, in order."""
    forward_names = {*cell.nodes, *(v.name for v in (*cell.inputs, *cell.targets))}
    reads = [_step_parts(name) for s in statements for name in sorted(s.reads)]
    return list(dict.fromkeys(p for p in reads if p is not None and p[0] in forward_names))


def _saved(cell: Cell, io: Io, statements: tuple[Statement, ...]) -> tuple[str, ...]:
    """The rows of the forward pass's values (and of the inputs and targets) the backward pass reads."""
    saved = [
        naming.code_base(base) if base in io.last else rows_name(base, lag)
        for base, lag in _forward_reads(cell, statements)
    ]
    return tuple(dict.fromkeys(saved))


def _pass(
    statements: tuple[Statement, ...],
    carry_statements: tuple[Statement, ...],
    framework: Framework,
    io: Io,
    loss: str,
    carries: tuple[Carry, ...],
    read_after: set[str],
    deltas: frozenset[str] | set[str] = frozenset(),
    reverse: bool = False,
    stacks: tuple[Stacked, ...] = (),
) -> Pass:
    def lines(phase: str) -> tuple[Line, ...]:
        return tuple(
            line
            for s in statements
            if s.phase == phase
            for line in _all_steps_lines(s, framework, io, loss, _is_delta(s, deltas))
        )

    loop_statements = (*(s for s in statements if s.phase == LOOP), *carry_statements)
    loop, made = _loop(loop_statements, framework, io, carries, read_after, reverse, stacks)
    return Pass(lines(PRE), loop, lines(POST), stacked=made)


def in_the_step(statements: tuple[Statement, ...], carries: tuple[Statement, ...], locals_: set[str]):
    """The local derivatives and slopes (``dh_dpre = 1 - h^2``) that only the loop reads, computed in the
    loop's step rather than for every step before it: no (T B, n) array for each."""
    out = []
    inline: dict[sp.Basic, sp.Basic] = {}
    for s in statements:
        base = naming.split(s.target.name)[0]
        others = [o for o in statements if o is not s and o.phase != LOOP]
        if s.phase == PRE and s.op == "=" and base in locals_ and not any(s.target.name in o.reads for o in others):
            inline[s.target] = s.expr
            continue
        out.append(s)
    return tuple(
        replace(s, terms=tuple(t.xreplace(inline) for t in s.terms)) if s.phase == LOOP else s for s in out
    ), tuple(replace(c, terms=tuple(t.xreplace(inline) for t in c.terms)) for c in carries)


def _is_delta(s: Statement, deltas: frozenset[str] | set[str]) -> bool:
    return naming.code_base(naming.split(s.target.name)[0]) in deltas


# ---- truncated BPTT ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Truncated BPTT's backward: the NumPy schedule's run for one loss J_s (``truncated``), t = s, ...,
    max(1, s - K + 1), here for every s at once, one step back at a time: step k of the runs is at
    t = s - k on the rows of every J_s (those of steps 1..T, or of step T alone for a many-to-one loss).
    ``_own`` is whether k = 0, where J_s adds its own share; the module's driver masks the rows of
    the runs that are past step 1 and collects what reaches step 0."""

    values: tuple[tuple[str, str], ...]  # (the step's name, the forward rows it is at t = s - k of)
    shares: tuple[Carry, ...]  # each state's share of dJ_s/ds_{t-1}, carried from t to t - 1, from zeros
    grads: tuple[Carry, ...]  # each parameter's gradient, summed over every run and step, from zeros
    deltas: tuple[Line, ...]  # first the deltas at t
    delta_names: tuple[str, ...]
    rest: tuple[Line, ...]  # then the gradient shares and the states' shares
    lengths: bool = False  # whether J_s's own deltas are zeroed where J_s is no loss (``_alive``)

    @property
    def body(self) -> tuple[Line, ...]:
        return (*self.deltas, *self.rest)

    @property
    def keeps(self) -> bool:
        """Whether a direct share sums the rows ``_keep``."""
        return any(f"[{KEEP}]" in line.code for line in self.rest)


def _run_line(s: Statement, printer: ScanPrinter, rows: str, keep: bool) -> Line:
    """One statement of the runs' step (``_truncated_line`` of the NumPy module, with ``_own`` for
    ``t == loss_t``): J_s's own share at k = 0 only, and below it ``below``, zeros where that is ();
    with ``keep``, a direct share sums the rows ``_keep`` (with lengths, where J_s is a loss)."""
    target = printer.doprint(s.target)
    bias = _is_total(s) and s.target.shape[1] == 1
    own = printer.kept(KEEP) if s.direct and keep else printer
    code = summed(" + ".join(own.doprint(term) for term in s.terms), bias)
    if s.below is not None:
        if s.below:
            other = paren(summed(" + ".join(printer.doprint(term) for term in s.below), bias))
        else:  # J_s reaches no such delta (zeros) or gradient below step s
            other = "0" if _is_total(s) else f'_zeros(({rows}, sizes["{s.target.shape[0]}"]), dtype, device)'
        code = f"{paren(code)} if _own else {other}"
    return _assigned(s, target, paren(code) if s.op == "+=" else code)  # code may be "a if _own else b"


def _run(derivation: Derivation, framework: Framework, io: Io, run: Truncated) -> Run:
    """The runs' step from the schedule's ``truncated`` records: what it reads of the forward pass, its
    carries, and its lines (the deltas and gradient shares, then the states' shares)."""
    cell = derivation.cell
    statements = (*run.statements, *run.carries)
    printer = ScanPrinter(framework, io, STEP)
    rows = "B" if cell.loss_mode == "last" else "T * B"
    values = tuple(
        (printer._name(base, lag), rows_name(base, lag))
        for base, lag in _forward_reads(cell, statements)
        if base not in io.last  # a many-to-one target: (B, n), read as it is
    )
    shares = tuple(
        Carry(share, share, f'_zeros(({rows}, sizes["n_{s.dim}"]), dtype, device)')
        for s in cell.states
        for share in [naming.carried_local(s.name)]
    )
    grads = tuple(
        Carry(grad, grad, f"_zeros({naming.code_base(p.name)}.shape, dtype, device)")
        for p in cell.params
        for grad in [naming.grad_local(p.name)]
    )
    body = tuple(_run_line(s, printer, rows, framework.lengths) for s in run.statements)
    body += tuple(line for s in run.carries for line in _assign_lines(s, printer, printer.doprint(s.target)))
    count = len(derivation.program.assigns)  # ``truncated`` puts the deltas first
    names = tuple(dict.fromkeys(printer.doprint(s.target) for s in run.statements[:count]))
    return Run(values, shares, grads, body[:count], names, body[count:], framework.lengths)


# ---- lengths (the PyTorch target) -------------------------------------------------------


def _unstepped(s: Statement) -> bool:
    """A total (a gradient) or a value at step T alone: no rows by step."""
    return s.last_step or _is_total(s)


def _held(p: Pass) -> Pass:
    """The forward pass with lengths: before its first step, a sequence holds its states (the initial
    ones: the steps before a sequence's first are its first ones); its losses sum the rows ``_live``."""
    hold = tuple(
        Line(f"{c.after} = _where(_live_t, {c.after}, {c.inside})", "lengths: held before the sequence's first step")
        for c in p.loop.carries
    )
    live = Line(f"{LIVE} = None if lengths is None else lengths.rows", "lengths: the rows where J_t is a loss")
    return replace(p, loop=replace(p.loop, masked=Masked("_live_t", "lengths.live", hold)), post=(live, *p.post))


def _cut(p: Pass, initial: dict[str, str], seeded: tuple[str, ...]) -> Pass:
    """The backward pass with lengths: the steps before a sequence's first are no loss and send nothing
    back (their rows of what runs before the loop, zeros); at its first step, what its states' shares
    carry to the step before is its initial states' gradient (``dh0_acc``), and nothing goes further."""
    zero = tuple(
        Line(f"{r} = _where(lengths.rows[:, None], {r}, 0)", "lengths: no loss before a sequence's first step")
        for r in seeded
    )
    accs = tuple(
        Carry(f"d{arg}_acc", f"d{arg}_acc", _zeros_of(naming.carried_local(state), p.loop.carries))
        for state, arg in initial.items()
    )
    got = tuple(
        Line(f"d{arg}_acc = d{arg}_acc + _where(_first_t, {naming.carried_local(state)}, 0)", f"their dJ/d{arg}")
        for state, arg in initial.items()
    )
    stop = tuple(Line(f"{c.inside} = _where(_first_t, 0, {c.inside})", "nothing further down") for c in p.loop.carries)
    masked = Masked("_first_t", "lengths.first", got + stop)
    total = tuple(
        Line(f"{naming.carried_local(state)} = {naming.carried_local(state)} + d{arg}_acc", f"lengths: dJ/d{arg}")
        for state, arg in initial.items()
    )
    keep = (
        Line(f"{KEEP} = slice(None) if lengths is None else lengths.rows", "lengths: the rows where J_t is a loss"),
    )
    post = (*total, *(keep if any(f"[{KEEP}]" in line.code for line in p.post) else ()), *p.post)
    loop = replace(p.loop, carries=(*p.loop.carries, *accs), masked=masked)
    return replace(p, loop=loop, post=post, masked=zero)


def _zeros_of(share: str, carries: tuple[Carry, ...]) -> str:
    return next(c.initial for c in carries if c.inside == share)


# ---- written into given tensors (the PyTorch target) ----------------------------------------


def _previous_lines(p: Pass, previous: tuple[tuple[str, str, str], ...], framework: Framework):
    """Each state's rows at t - 1 (``h_rows_prev``, steps 0..T-1).  Where the framework's scan writes into
    given tensors and the loop writes the state, the loop writes it into a (T + 1, B, n) buffer whose row 0
    is its initial value: ``h_rows`` (steps 1..T) and ``h_rows_prev`` are two views of it, no copy.  (With
    lengths, the forward holds a state at its initial value before a sequence's first step, so those rows
    of the buffer are the initial ones already.)  Otherwise ``_previous``, a new tensor: a state the loop
    does not write (its rows computed before the loop, not held) has its rows before a sequence's first
    step replaced by the initial ones there."""
    outputs = {rows: k for k, (_, rows) in enumerate(p.loop.outputs)}
    into: list[str | None] = [None] * len(p.loop.outputs)
    buffers, lines = [], []
    for prev, rows, initial in previous:
        if framework.into and rows in outputs:
            buffer = f"{rows}_all"
            buffers.append(Line(f"{buffer} = _from({initial}, T)", f"steps 0..T: {rows} and {prev} are views of it"))
            into[outputs[rows]] = f"{buffer}[1:]"
            lines.append(Line(f"{prev} = {buffer}[:T].reshape(T * B, -1)", "steps 0..T-1: a view, no copy"))
        else:
            lines.append(Line(f"{prev} = _previous({rows}, {initial}{', lengths' if framework.lengths else ''})"))
    if not buffers:
        return p, tuple(lines)
    return replace(p, loop=replace(p.loop, into=tuple(into), buffers=tuple(buffers))), tuple(lines)


# the calls of a torch module's lines that return a new tensor, never a view of what they read: the torch
# module's helpers that compute one (torch_module.py.j2), and each op record's torch spelling (torch.tanh);
# named one by one, so that a call added later (torch.reshape, a view) is not taken for one
_FRESH_HELPERS = ("_where", "_concat", "_step", "_softmax", "_log_softmax", "_onehot", "_at_last")
FRESH_CALLS = frozenset(_FRESH_HELPERS) | {r.calls["torch"] for r in RECORDS if "torch" in r.calls}


def _fresh(code: str) -> bool:
    """Whether an expression's value is a new tensor (an arithmetic result, a call that makes one), not a
    view of or the same tensor as a name it reads."""
    value = ast.parse(code, mode="eval").body
    if isinstance(value, (ast.BinOp, ast.UnaryOp)):
        return True
    return isinstance(value, ast.Call) and ast.unparse(value.func) in FRESH_CALLS


def _assignment(line: Line) -> tuple[str, str] | None:
    """(target, code) of a line ``name = code``; None for any other."""
    node = ast.parse(line.code).body[0]
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, ast.unparse(node.value)
    return None


def _aliases(loop: Loop) -> set[str]:
    """The sequences (by the step's name) that a step's output or carry may be a view of at its end."""
    of: dict[str, set[str]] = {name: {name} for name, _ in loop.sequences}
    for line in (*loop.body, *(loop.masked.lines if loop.masked else ())):
        assigned = _assignment(line)
        if assigned is None:
            continue
        target, code = assigned
        names = {n.id for n in ast.walk(ast.parse(code, mode="eval")) if isinstance(n, ast.Name)}
        of[target] = set() if _fresh(code) else set().union(*(of.get(n, set()) for n in names))
    ends = (*(name for name, _ in loop.outputs), *(c.after for c in loop.carries))
    return set().union(*(of.get(name, set()) for name in ends))


def _free(p: Pass, read_after: str) -> list[tuple[str, str]]:
    """(rows, source) of each sequence of the loop whose storage it may write its outputs into: one the pass
    made itself before the loop (a new tensor: no saved one of the forward's, which a second backward reads
    again, no caller's), given to the loop once, read by nothing else (no line before the loop keeps a view
    of it, ``read_after``, the code after the loop, does not name it) and that no output or carry of the step
    is a view of at its end.  Step t reads s[t] before its outputs are written into s[t]."""
    made: dict[str, bool] = {}  # whether a name holds a new tensor: its last line before the loop makes one,
    for line in p.pre:  # and, with lengths, so does each of the masked lines (which may not run)
        assigned = _assignment(line)
        if assigned is not None:
            made[assigned[0]] = _fresh(assigned[1])
    for line in p.masked:
        assigned = _assignment(line)
        if assigned is not None:
            made[assigned[0]] = made.get(assigned[0], False) and _fresh(assigned[1])
    views = [a[1] for a in map(_assignment, (*p.pre, *p.masked)) if a is not None and not _fresh(a[1])]
    sources = [source for _, source in p.loop.sequences]
    aliased = _aliases(p.loop)

    def named(rows: str, codes: list[str]) -> bool:
        return any(re.search(rf"\b{re.escape(rows)}\b", code) for code in codes)

    return [
        (rows, source)
        for name, source in p.loop.sequences
        for rows in [source.removesuffix(".reshape(T, B, -1)")]
        if rows != source
        and made.get(rows)
        and name not in aliased
        and sources.count(source) == 1
        and not named(rows, [*views, read_after, *(other for other in sources if other != source)])
    ]


def _hosted(p: Pass, dims: dict[str, str]) -> Pass:
    """The backward loop's outputs written into the storage of sequences that are dead after it (``_free``:
    no post line reads them), rather than into new tensors, each into one of its size."""
    free = _free(p, " ".join(line.code for line in p.post))
    into = list(p.loop.into or (None,) * len(p.loop.outputs))
    for k, (_, rows) in enumerate(p.loop.outputs):
        host = next((h for h in free if dims.get(h[0]) is not None and dims.get(h[0]) == dims.get(rows)), None)
        if into[k] is None and host is not None:
            into[k] = host[1]
            free.remove(host)
    if not any(into):
        return p
    return replace(p, loop=replace(p.loop, into=tuple(into)))


def _hosted_forward(p: Pass) -> Pass:
    """The forward loop's outputs written into the known parts they are computed from (``_free``), where
    autograd records nothing (``_spare``): the loop reads ``r_rows[t]`` (W_r x_t + b_r) and writes r_t, the
    gate, into the same rows, which the scan's result then names ``r_rows`` (so what the lines after the
    loop read by that name is the output, not the known part)."""
    outputs = {rows: k for k, (_, rows) in enumerate(p.loop.outputs)}
    into = list(p.loop.into or (None,) * len(p.loop.outputs))
    for rows, source in _free(p, ""):
        k = outputs.get(rows)
        if k is not None and into[k] is None:
            into[k] = f"_spare({source})"
    if not any(into):
        return p
    return replace(p, loop=replace(p.loop, into=tuple(into)))
