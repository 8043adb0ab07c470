"""The fast path's schedule (derive/emit/numpy/schedule.py) as structure, before any printing: which phase
each statement is in, what it writes and reads, the arrays it adds; and, for every cell, that the
loop reads nothing before it is written (the invariant the fast path's wrong gradients broke)."""

from __future__ import annotations

import functools

import pytest
import sympy as sp

from conftest import ALL_CELLS, derivation, load_cell
from derive.derivation.pipeline import Derivation, derive
from derive.emit.numpy.schedule import LOOP, POST, PRE, Phases, Statement, recurrent_nodes, schedule, truncated
from derive.emit.printing import text
from derive.ir import naming
from derive.ir.cell import Cell, load_builtin
from derive.ir.exprs import mul
from derive.spec.parser import parse

CELLS = ALL_CELLS


@functools.cache
def derived(cell: str, steps: int = 2, truncate: int | None = None) -> Derivation:
    return derive(load_cell(cell), steps, truncate)


def by_target(statements: tuple[Statement, ...]) -> dict[str, list[Statement]]:
    out: dict[str, list[Statement]] = {}
    for s in statements:
        out.setdefault(s.target.name, []).append(s)
    return out


def phases_of(phases: Phases, target: str) -> list[str]:
    return [s.phase for s in phases.statements if s.target.name == target]


def rhs(s: Statement) -> str:
    return " + ".join(text(term) for term in s.terms)


# ---- the seed model ---------------------------------------------------------------------


def test_seed_forward_splits_the_input_projection_from_the_recurrence():
    forward = schedule(derivation(3)).forward
    z = by_target(forward.statements)["z@t"]
    assert [(s.phase, s.op, rhs(s)) for s in z] == [(PRE, "=", "W_xh x_t"), (LOOP, "+=", "W_hh h_{t-1}")]
    assert phases_of(forward, "h@t") == [LOOP]
    assert phases_of(forward, "y@t") == [POST]
    # p = softmax(y) and the loss are one statement after the loop, writing p as well
    (loss,) = by_target(forward.statements)["J@t"]
    assert loss.phase == POST and loss.out is not None and loss.out.name == "p@t"
    assert "p@t" not in by_target(forward.statements)


def test_seed_backward_is_known_before_the_loop_and_gradients_after():
    backward = schedule(derivation(3)).backward
    assert phases_of(backward, "dy@t") == [PRE]
    assert phases_of(backward, "dz@t") == [LOOP]
    # dh: W_hy^T dy for every step before the loop, the carried share added in it
    dh = by_target(backward.statements)["dh@t"]
    assert [(s.phase, s.op, rhs(s)) for s in dh] == [(PRE, "=", "W_hy^T dJ/dy_t"), (LOOP, "+=", "dJ/dh_next")]
    assert dh[1].terms[0].name == "dh_next"  # the carried share, a local of the loop
    assert {s.target.name for s in backward.post} == {"dW_xh", "dW_hh", "dW_hy"}
    # the local derivative 1 - h^2 is an array of its own, before the loop; dz reads it
    assert [(s.target.name, rhs(s)) for s in backward.pre if s.target.name.startswith("dh_dz")] == [
        ("dh_dz@t", "1 - h_t^2")
    ]
    assert "dh_dz@t" in by_target(backward.statements)["dz@t"][0].reads
    assert [(c.target.name, rhs(c)) for c in backward.carries] == [("dh_next", "W_hh^T dJ/dz_t")]
    assert [a.name for a in backward.deltas] == ["dy", "dh", "dz"]
    assert [a.name for a in backward.locals] == ["dh_dz"]
    assert backward.carried_views == frozenset()


def test_recurrent_nodes_are_what_reads_a_state():
    seed = derivation(3).cell
    assert recurrent_nodes(seed) == {"z", "h", "y", "p", "J"}
    assert recurrent_nodes(seed) - seed.outputs == {"z", "h"}  # what the loop computes
    assert recurrent_nodes(load_builtin("lstm")) - {"y", "J"} == {"f", "i", "o", "g", "c", "h"}


# ---- inner deltas, states, many-to-one, truncation ------------------------------------


def test_indrnn_computes_the_inner_delta_its_carry_reads_in_the_loop():
    """diag(u) diag(1 - h^2) dh: the carry reads the inner delta dh_pre, so the loop computes it
    (it was once computed after the loop that read it)."""
    backward = schedule(derived("corpus/indrnn")).backward
    assert phases_of(backward, "dh_pre@t") == [LOOP]
    assert phases_of(backward, "dh_dpre@t") == [PRE]  # the activation's slope reads no delta
    (carry,) = backward.carries
    assert "dh_pre@t" in carry.reads
    loop = [s.target.name for s in backward.loop]
    assert loop.index("dh@t") < loop.index("dh_pre@t")
    # the gradients of the parameters inside the activation read it too, after the loop
    assert all("dh_pre@t" in s.reads for s in backward.post if s.target.name in ("dW", "du", "db"))


def test_gru_computes_the_product_its_reset_delta_and_carry_share_once():
    """dJ/dr_t = diag(h_{t-1}) U_n^T dn_pre_t and the carry's diag(r_t) U_n^T dn_pre_t: one product per
    step, into an array both read (each computed U_n^T dn_pre_t itself: a matrix product twice)."""
    backward = schedule(derived("gru")).backward
    loop = [s.target.name for s in backward.loop]
    (product,) = [s for s in backward.loop if s.target.name == "dn_pre_U_n@t"]
    assert rhs(product) == "U_n^T dJ/dn_pre_t"
    assert loop.index("dn_pre@t") < loop.index("dn_pre_U_n@t") < loop.index("dr@t")
    (dr,) = by_target(backward.statements)["dr@t"]
    assert rhs(dr) == "h_{t-1} ⊙ dJ/dn_pre_U_n_t"
    (carry,) = backward.carries
    assert "dn_pre_U_n@t" in carry.reads and "U_n" not in {a.name for a in carry.expr.atoms(sp.MatrixSymbol)}


def _is_weight(a: sp.Basic) -> bool:
    a = a.arg if isinstance(a, sp.Transpose) else a
    return isinstance(a, sp.MatrixSymbol) and naming.split(a.name)[1] is None


def _step_products(expr: sp.Basic, meaning: dict[sp.Basic, sp.Basic]) -> list[tuple[sp.Basic, sp.Basic]]:
    """The products W (operand) a statement's terms compute, each operand with the slopes and inner
    deltas it reads written out (dn_pre_t: diag(1 - n_t^2) dn_t), so that one product spelt two ways is one."""
    found = []
    for term in expr.args if isinstance(expr, sp.MatAdd) else [expr]:
        args = term.args if isinstance(term, sp.MatMul) else ()
        found += [(a, _written_out(mul(*args[i + 1 :]), meaning)) for i, a in enumerate(args[:-1]) if _is_weight(a)]
    return found


def _written_out(expr: sp.Basic, meaning: dict[sp.Basic, sp.Basic]) -> sp.Basic:
    while (new := expr.xreplace(meaning)) != expr:
        expr = new
    return expr.doit()


@pytest.mark.parametrize("cell", CELLS)
def test_no_product_is_computed_twice_in_a_step(cell):
    """Every product of a weight the backward step computes is computed once: where two statements
    need it, they read one array (the GRU's and the MGU's U_n^T dn_pre_t were computed twice)."""
    backward = schedule(derived(cell)).backward
    step = (*backward.pre, *backward.loop, *backward.carries)
    meaning = {s.target: s.expr for s in step if s.op == "=" and s.target.name in _locals(backward)}
    meaning = {k: v for k, v in meaning.items() if not _step_products(v, {})}  # not a product array itself
    seen: dict[tuple[sp.Basic, sp.Basic], str] = {}
    twice = []
    for s in (*backward.loop, *backward.carries):
        for product in set(_step_products(s.expr, meaning)):
            if product in seen:
                twice.append(f"{text(product[0])} ({text(product[1])}) in {seen[product]} and {s.target.name}")
            seen.setdefault(product, s.target.name)
    assert twice == []


def _locals(backward) -> set[str]:
    return {naming.step_name(a.name, "t") for a in backward.locals}


def test_deep_output_hidden_layer_delta_is_known():
    backward = schedule(derived("corpus/deep_output")).backward
    assert phases_of(backward, "da@t") == [PRE]
    assert phases_of(backward, "dh@t") == [PRE, LOOP]


def test_lstm_carries_both_states_through_the_gate_deltas():
    backward = schedule(derived("lstm")).backward
    carries = {c.target.name: c for c in backward.carries}
    assert set(carries) == {"dh_next", "dc_next"}
    assert rhs(carries["dc_next"]) == "f_t ⊙ dJ/dc_t"
    assert carries["dh_next"].reads >= {"df_pre@t", "di_pre@t", "do_pre@t", "dg_pre@t"}
    # dc adds its carried share to the share through h, in the loop
    (dc,) = by_target(backward.statements)["dc@t"]
    assert dc.phase == LOOP and dc.terms[-1].name == "dc_next"
    assert {"dg_pre@t", "dg_dpre@t"} <= {naming.step_name(a.name, "t") for a in backward.locals}
    assert backward.carried_views == frozenset()  # dc_next = f ⊙ dc: an array of its own


def test_a_state_that_adds_to_itself_carries_a_view():
    from test_fastpath import ACCUMULATOR

    backward = schedule(derive(parse(ACCUMULATOR), 2)).backward
    assert backward.carried_views == frozenset({"c"})


def test_many_to_one_outputs_run_at_the_last_step_alone():
    plan = schedule(derived("corpus/m2o_classify"))
    post = by_target(plan.forward.post)
    assert post["y@t"][0].last_step and post["J@t"][0].last_step
    assert phases_of(plan.forward, "h@t") == [PRE, LOOP, LOOP]  # W x + b; += U h[t-1]; the activation
    (dy,) = by_target(plan.backward.statements)["dy@t"]
    assert dy.phase == PRE and dy.last_step
    assert {a.name: a.zeros for a in plan.backward.deltas} == {"dy": True, "dh": False}
    gradients = {s.target.name: s.last_step for s in plan.backward.post}
    assert gradients == {"dW": False, "dU": False, "db": False, "dV": True}


def test_truncated_run_keeps_the_losss_own_share_at_its_step():
    run = truncated(derivation(3).program)
    statements = by_target(run.statements)
    assert statements["dy@t"][0].below == ()  # an output: no delta below step s
    assert statements["dh@t"][0].below is None  # J_t does not read h: the same at every step
    assert [str(t) for t in statements["dh@t"][0].terms] == ["W_hy.T*dy@t", "dh_next"]
    assert statements["dW_hy"][0].below == () and statements["dW_hh"][0].below is None
    assert [z.name for z in run.zeros] == ["dy"]
    assert [c.target.name for c in run.carries] == ["dh_next"]
    assert {s.phase for s in run.statements + run.carries} == {LOOP}


def test_a_gradient_that_the_loss_reads_itself_is_direct():
    """J = squared_error(V h, r): dJ/dV has the loss's own share, not through deltas alone (with lengths,
    it sums the rows where J_t is a loss); W and U only through deltas."""
    for statements in (schedule(derived("corpus/loss_param")).backward.statements, truncated_of("corpus/loss_param")):
        direct = {s.target.name: s.direct for s in statements if naming.split(s.target.name)[1] is None}
        assert direct == {"dW": False, "dU": False, "dV": True}
    assert not any(s.direct for s in schedule(derivation(3)).backward.statements)


def truncated_of(cell: str) -> tuple[Statement, ...]:
    return truncated(derived(cell).program).statements


def test_a_truncated_derivation_schedules_as_the_full_one():
    full, cut = schedule(derivation(3)), schedule(derive(derivation(3).cell, 3, 2))
    assert cut == full


# ---- the invariant, for every cell ------------------------------------------------------


def _given(cell: Cell, forward: Phases | None = None) -> set[str]:
    """What exists before a pass: parameters, inputs and targets, and (backward) every forward value."""
    given = {p.name for p in cell.params}
    given |= {naming.step_name(v.name, "t") for v in (*cell.inputs, *cell.targets)}
    if forward is not None:
        given |= {s.target.name for s in forward.statements} | {s.out.name for s in forward.statements if s.out}
        given |= {naming.step_name(s.name, "t-1") for s in cell.states}
    return given


def unwritten_reads(
    phases: Phases, given: set[str], carries: tuple[Statement, ...] = (), forward: bool = False
) -> list[str]:
    """Each read that nothing wrote before it: before the loop only what is given or written before
    (and nothing the loop goes on to write); in the loop, that or what this step wrote earlier (a
    state at t-1, forward: what the loop writes at t, or its initial value; a carried share: the last
    step's, or zero); after the loop, all of that."""
    problems = []
    loop_targets = {s.target.name for s in (*phases.loop, *carries)}
    written = set(given) | {c.target.name for c in carries}
    for s in phases.pre:
        problems += [f"pre {s.target.name} reads {r}" for r in sorted(s.reads - written)]
        problems += [f"pre {s.target.name} reads {r}, which the loop writes" for r in sorted(s.reads & loop_targets)]
        written.add(s.target.name)
    stepped = {name for name in written | loop_targets if naming.split(name)[1] == "t"}
    lagged = {naming.move(name, "t-1") for name in stepped} if forward else set()
    for s in (*phases.loop, *carries):
        problems += [f"loop {s.target.name} reads {r}" for r in sorted(s.reads - written - lagged)]
        written.add(s.target.name)
    for s in phases.post:
        problems += [f"post {s.target.name} reads {r}" for r in sorted(s.reads - written)]
        written |= {s.target.name} | ({s.out.name} if s.out else set())
    return problems


@pytest.mark.parametrize("cell", CELLS)
def test_the_loop_reads_nothing_before_it_is_written(cell):
    d = derived(cell)
    plan = schedule(d)
    assert unwritten_reads(plan.forward, _given(d.cell), forward=True) == []
    assert unwritten_reads(plan.backward, _given(d.cell, plan.forward), plan.backward.carries) == []
    run = truncated(d.program)
    gradients = {naming.grad_name(p.name) for p in d.cell.params}  # zeros before the runs, added to
    assert unwritten_reads(Phases(run.statements), _given(d.cell, plan.forward) | gradients, run.carries) == []


def test_the_invariant_catches_a_delta_read_before_it_is_computed():
    """The IndRNN bug, re-made: the inner delta the carry reads, moved after the loop."""
    backward = schedule(derived("corpus/indrnn")).backward
    moved = tuple(
        Statement(POST, s.target, s.terms, s.op) if s.target.name == "dh_pre@t" else s for s in backward.statements
    )
    d = derived("corpus/indrnn")
    given = _given(d.cell, schedule(d).forward)
    assert unwritten_reads(Phases(moved), given, backward.carries) == ["loop dh_next reads dh_pre@t"]
