"""The fast path's shape: what runs for every step at once, what stays in the loops, what it
returns, and its memory against T and B."""

from __future__ import annotations

import pytest

from conftest import CORPUS, derivation, generated
from derive.derivation.pipeline import derive
from derive.emit.numpy.fast import hoisted
from derive.emit.numpy.schedule import recurrent_deltas
from derive.emit.outputs import module_source
from derive.spec.parser import parse, read
from derive.tools.scale import fast_path_memory
from derive.verify.report import load_module, random_problem

# a state that carries its own delta back unchanged (c = c[t-1] + ...): the share carried into
# c_{t-1} is dc_t itself, a view into an array the module keeps between calls
ACCUMULATOR = """\
cell accumulator "a state that adds to itself"
param W[h, x], U[h, h], V[y, h]
input x[x]; state c[h] = 0; state h[h] = 0; target l: class(y)
c = c[t-1] + sigmoid(W x + U h[t-1])
h = tanh(c)
y = V h
J = cross_entropy(softmax(y), l)
"""


def codes(lines) -> list[str]:
    return [line.code for line in lines]


def test_the_seed_loops_keep_only_the_recurrences():
    fast = hoisted(derivation(3))
    # every operation into an array the module keeps (no temporaries), steps and transposes made once
    assert codes(fast.forward_loop) == [
        "np.dot(h_steps[t - 1], _W_hh_T, out=_scratch_n_h)",  # np.dot: less to dispatch than np.matmul
        "np.add(z_steps[t], _scratch_n_h, out=z_steps[t])",
        "np.tanh(z_steps[t], out=h_steps[t])",
    ]
    assert codes(fast.backward_loop) == [
        "np.add(dh_steps[t], dh_next, out=dh_steps[t])",
        "np.multiply(dh_dz_steps[t], dh_steps[t], out=dz_steps[t])",
    ]
    assert codes(fast.carry) == ["np.dot(dz_steps[t], _W_hh_F, out=dh_next)"]  # W_hh in Fortran order
    assert fast.backward_needs.fortran == ("W_hh",)
    assert fast.forward_needs.transposes == ("W_hh",) and fast.backward_needs.transposes == ()
    assert fast.forward_needs.steps == ("z", "h") and fast.backward_needs.steps == ("dh", "dz", "dh_dz")
    # everything else, for every step at once, written into the arrays' own rows
    assert codes(fast.forward_pre) == ["np.matmul(x_rows, W_xh.T, out=z_rows)"]
    assert codes(fast.backward_pre) == [
        "np.copyto(dy_rows, p_rows)",
        "dy_rows[_rows, onehot_rows] -= 1",  # the labels as indices: no one-hot array
        "np.matmul(dy_rows, W_hy, out=dh_rows)",
        "np.square(h_rows, out=dh_dz_rows)",
        "np.subtract(1, dh_dz_rows, out=dh_dz_rows)",
    ]
    assert codes(fast.backward_post) == [
        "dW_xh = dz_rows.T @ x_rows",
        "dW_hh = dz_rows.T @ h_rows_prev",
        "dW_hy = dy_rows.T @ h_rows",
    ]


def test_what_the_backward_pass_fills_before_its_loop_is_what_lengths_zeroes():
    """With lengths, the rows of the steps before a sequence's first are zeroed in these arrays: J_t's
    own share at step t and what reads only that, and the local derivatives; the loss sums ``_live``."""
    fast = hoisted(derivation(3))
    assert fast.seeded == ("dy_rows", "dh_rows", "dh_dz_rows")
    assert (
        codes(fast.forward_post)[-1]
        == "loss = _softmax_cross_entropy_at(y_rows, onehot_rows, _rows, out=p_rows, live=_live)"
    )


def test_a_gradient_the_loss_reads_itself_sums_the_rows_kept():
    fast = hoisted(derive(read(CORPUS / "loss_param.cell"), 3))
    assert codes(fast.backward_post)[-1] == (
        "dV = (h_rows[_keep] @ V.T).T @ h_rows[_keep] - r_rows[_keep].T @ h_rows[_keep]"
    )
    assert codes(fast.forward_post) == ["loss = _squared_error(h_rows @ V.T, r_rows, live=_live)"]


def test_recurrent_deltas_are_those_a_carried_share_reaches():
    from derive.ir.cell import load_builtin

    assert recurrent_deltas(derivation(3).program) == {"h", "z"}
    assert recurrent_deltas(derive(load_builtin("lstm"), 2).program) == {"h", "c", "f", "i", "o", "g"}
    # a hidden layer after the state reads only the output's delta: computed before the loop
    deep = read(CORPUS / "deep_output.cell")
    d = derive(deep, 2)
    assert recurrent_deltas(d.program) == {"h"}
    assert "np.matmul(dy_rows, V, out=da_rows)" in codes(hoisted(d).backward_pre)


def test_gated_cells_compute_each_activation_delta_once():
    from derive.ir.cell import load_builtin

    fast = hoisted(derive(load_builtin("lstm"), 2))
    # the four gates' shares of dh_{t-1}, from their inner deltas side by side: one product
    assert codes(fast.carry)[0] == "np.dot(dstack1_steps[t], _W_stack1_F, out=dh_next)"
    (stack,) = fast.stacks
    assert stack.members == ("f", "i", "o", "g") and stack.weights == ("U_f", "U_i", "U_o", "U_g")
    assert stack.deltas == ("df_pre", "di_pre", "do_pre", "dg_pre")
    post = codes(fast.backward_post)
    assert "dW_f = df_pre_rows.T @ x_rows" in post and "db_f = df_pre_rows.sum(axis=0)" in post


@pytest.fixture(scope="module")
def accumulator():
    return load_module(module_source(derive(parse(ACCUMULATOR), 2)), "accumulator_T2")


@pytest.mark.parametrize("which", ["seed", "accumulator"])
def test_returned_gradients_own_their_memory(which, accumulator):
    """No gradient is a view of one step of a (T + 1, B, n) array, which would keep the whole array
    alive: the accumulator's carried share into c_{t-1} is dc_t itself, and is copied."""
    m = accumulator if which == "accumulator" else generated(3)
    _, grads = m.loss_and_gradients(*random_problem(m, 4, (3, 4, 5), seed=1, batch=3))
    assert all(g.base is None or g.base.shape == g.shape for g in grads.values())
    assert "dh_next.copy()" in module_source(derive(parse(ACCUMULATOR), 2))  # a carried share is kept: copied


@pytest.mark.slow  # runs the seed up to T = 200
def test_fast_path_memory_is_linear_in_steps_and_batch():
    rows = {(r.steps, r.batch): r for r in fast_path_memory(((50, 1), (100, 1), (200, 1), (100, 2), (100, 4)))}
    per_step = (rows[200, 1].peak_mb - rows[100, 1].peak_mb) / 100  # what one more step (B = 1) costs
    per_row = (rows[100, 4].peak_mb - rows[100, 2].peak_mb) / 200  # what one more sequence step costs
    # one more step costs one more row of every array, and the loops' view of that step of each (a
    # NumPy view object, about 0.1 kB: under 1 kB for the seed's arrays)
    assert per_row <= per_step < per_row + 1 / 1024
    # T * B rows of the seed's arrays (x, z, h, y, p, onehot and their deltas, V = 65, H = 100): a
    # few kilobytes, no T x T structure
    assert 4 < per_step * 1024 < 16
    assert rows[100, 1].peak_mb - rows[50, 1].peak_mb == pytest.approx(50 * per_step, rel=0.1)


# cells whose names meet the names the fast path adds (found in review): each must still verify
NAME_MEETINGS = {
    # a node h_pre: its delta dh_pre is not the array of h's activation delta (that is dh_pre2)
    "node-h_pre": ("h = tanh(W x + U h[t-1])\nh_pre = A h\ny = V h_pre", "A[h, h]", "dh_pre2"),
    # a node h_dz: its delta dh_dz is not the local derivative dh/dz (that is dh_dz2)
    "node-h_dz": ("z = W x + U h[t-1]\nh = tanh(z)\nh_dz = A h\ny = V h_dz", "A[h, h]", "dh_dz2"),
    # a node pre: the local dh/dpre and the slope of h's activation are two arrays
    "node-pre": ("pre = sigmoid(A x)\nh = tanh(W x + U h[t-1]) * tanh(pre)\ny = V h", "A[h, x]", "dh_dpre2"),
    # the pairs (a, b_dc) and (a_db, c) both spell da_db_dc: two arrays
    "two-pairs-one-name": (
        "c = A x\nb_dc = K x\na_db = tanh(c)\na = tanh(b_dc)\nh = tanh(W x + U h[t-1] + a + a_db)\ny = V h",
        "A[h, x], K[h, x]",
        "da_db_dc2",
    ),
    # three elementwise factors in one local derivative
    "three-factors": ("h = tanh(W x + U h[t-1]) * sigmoid(A x) * sigmoid(K x)\ny = V h", "A[h, x], K[h, x]", None),
    # the carried share is the activation delta itself: returned as a copy
    "carry-is-a-run": ("h = tanh(h[t-1] + W x)\ny = V h", None, "dh_next.copy()"),
}


FAST_MEETINGS = {"carry-is-a-run"}  # each takes a second or more to verify: the others are slow


@pytest.mark.parametrize(
    "case", [c if c in FAST_MEETINGS else pytest.param(c, marks=pytest.mark.slow) for c in NAME_MEETINGS]
)
def test_added_names_never_meet_the_cells_own(case):
    from derive.emit.outputs import verified

    equations, extra, expect = NAME_MEETINGS[case]
    params = "W[h, x], V[y, h]" + ("" if case == "carry-is-a-run" else ", U[h, h]") + (f", {extra}" if extra else "")
    text = (
        f'cell probe "{case}"\nparam {params}\ninput x[x]; state h[h] = 0; target label: class(y)\n'
        f"{equations}\nJ = cross_entropy(softmax(y), label)\n"
    )
    d = derive(parse(text), 3)
    source = module_source(d)
    if expect:
        assert expect in source
    report = verified(d, source)
    assert report.passed, report.failures()
