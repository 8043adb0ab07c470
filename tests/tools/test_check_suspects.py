"""bptt check's sharper suspects: one state's carry, one activation's derivative, a constant factor
besides another mistake, and the first step (h[-1] read at t = 1).

tests/user_code/diagnose/ holds hand-written BPTT with one (or two) of these mistakes each; every one
must be diagnosed as itself, in so many words, and the right code accepted.  The suspects' own
pieces (the derivation's hooks, the replayed program) are checked against the derivation here too."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from conftest import USER_CODE
from derive.derivation.adjoint import without_carry
from derive.derivation.pipeline import derive
from derive.derivation.rules import RULES
from derive.ir.cell import load_builtin
from derive.ir.exprs import Diag, Hadamard
from derive.ir.ops import Sigmoid, Tanh
from derive.tools.check.problem import problems
from derive.tools.check.report import CHECK_RTOL, check, diagnose
from derive.tools.check.suspects import Suspect, derived_grads, derived_module, replay, suspects
from derive.verify.evaluator import Evaluator
from derive.verify.report import max_rel_error

ELMAN = USER_CODE / "diagnose" / "elman.py"
LSTM = USER_CODE / "diagnose" / "lstm.py"
ELMAN_PARAMS = ("W_xh", "W_hh", "W_hy", "b_h", "b_y")
RECURRENT = ("W_xh", "W_hh", "b_h")  # the Elman parameters whose gradient flows back through the state
GATES = tuple(f"{m}_{q}" for q in "fiog" for m in ("W", "U", "b"))  # every LSTM parameter but W_y, b_y

NO_RECURRENCE = (
    "keeps only the k = t terms: the gradient does not flow back through the state. Missing: the terms with "
    'k < t of each sum over k in "The chain-rule expansions" of elman_T9.tex, and the carried share in '
    '"The efficient recurrence"'
)
FIRST_STEP = (
    "is wrong only at the first step: the outer product at t = 1 uses h_T, the last state, where h_0 belongs (an "
    "array indexed h[t-1] reads h[-1] at t = 1). Missing: the last factor of the k = 1 terms, (.) h_0^T, in "
    '"The gradients" of elman_T9.tex'
)
NO_DC_CARRY = (
    "does not carry the gradient back through c (the carried dc_next is missing). Missing: the carried share of "
    'dJ/dc_t, f_{t+1} ⊙ dJ/dc_{t+1}, in "The efficient recurrence" of lstm_T9.tex'
)
NO_TANH_C = (
    "leaves tanh'(c_t) out of h = o_t ⊙ tanh(c_t) (the factor 1 - tanh(c_t)^2); keeps the other activations' "
    'derivatives. Missing: the factor diag(1 - tanh(c_t)^2) in "The local derivatives" of lstm_T9.tex'
)
NO_TANH_G = (
    "leaves tanh' out of g = tanh(W_g x_t + U_g h_{t-1} + b_g) (the factor 1 - g_t^2); keeps the other "
    'activations\' derivatives. Missing: the factor diag(1 - g_t^2) in "The local derivatives" of lstm_T9.tex'
)


def diagnoses(report) -> dict[str, str]:
    """{parameter or "loss": its diagnosis}, for the rows that are wrong."""
    return {r.name: r.diagnosis for r in report.rows if not r.ok}


def wrong(path, function: str, cell: str, says: dict[str, tuple[str, ...]], slow: bool = False):
    """One fixture: {diagnosis: the rows that must say it}; no other row may be wrong."""
    return pytest.param(path, function, cell, says, id=function, marks=pytest.mark.slow if slow else ())


WRONG = [
    # a loss averaged over the steps is a convention, found from the loss and divided out of the gradients
    # before the suspects are matched; code that ignores h0 is checked from h0 = 0 (and says so)
    wrong(ELMAN, "elman_mean_no_recurrence", "elman", {NO_RECURRENCE: RECURRENT}),
    wrong(ELMAN, "elman_class", "elman", {FIRST_STEP: ("W_hh",)}),
    wrong(ELMAN, "elman_class_with_h0", "elman", {FIRST_STEP: ("W_hh",)}),
    wrong(LSTM, "lstm_no_dc_carry", "lstm", {NO_DC_CARRY: GATES}, slow=True),
    wrong(LSTM, "lstm_no_tanh_c_slope", "lstm", {NO_TANH_C: GATES}, slow=True),
    wrong(LSTM, "lstm_no_tanh_g_slope", "lstm", {NO_TANH_G: GATES}, slow=True),
]


@pytest.mark.parametrize("path, function, cell, says", WRONG)
def test_each_mistake_is_diagnosed_as_itself(path, function, cell, says):
    report = check(f"{path}:{function}", load_builtin(cell))
    want = {name: diagnosis for diagnosis, names in says.items() for name in names}
    assert diagnoses(report) == want
    assert all(r.error > 100 * CHECK_RTOL for r in report.rows if not r.ok)


CONVENTIONS = {  # what the check says it found, for the fixtures whose conventions are not the defaults
    "elman_mean_no_recurrence": "loss averaged over the T steps (its gradients compared times that)",
    "elman_class": "starts from h0 = 0 (it ignores the initial state it is given)",
    "elman_ignores_h0": "starts from h0 = 0 (it ignores the initial state it is given)",
}


@pytest.mark.parametrize("function", CONVENTIONS)
def test_a_mean_or_an_ignored_initial_state_is_a_convention_said_in_the_report(function):
    report = check(f"{ELMAN}:{function}", load_builtin("elman"))
    assert CONVENTIONS[function] in "; ".join(report.found)
    assert report.passed == (function == "elman_ignores_h0")


@pytest.mark.parametrize(
    "target, cell",
    [(f"{ELMAN}:elman", "elman"), pytest.param(f"{LSTM}:lstm", "lstm", marks=pytest.mark.slow)],
    ids=["elman", "lstm"],
)
def test_the_right_code_is_accepted(target, cell):
    report = check(target, load_builtin(cell))
    assert report.passed and all(r.error <= 1e-12 for r in report.rows)


# ---- the pieces: the derivation's hooks, the replayed program, the factor -----------------------


def test_one_application_s_slope_is_left_out_and_the_others_kept():
    a, c, o = (sp.MatrixSymbol(n, 3, 1) for n in ("a", "c", "o"))
    tanh_c = Tanh(c)
    rules = RULES.without_slopes(tanh_c)
    assert rules.jacobian(Hadamard(o, tanh_c), c) == Diag(o)  # tanh'(c) gone
    assert rules.jacobian(Tanh(a), a) == RULES.jacobian(Tanh(a), a)  # tanh' of another argument kept
    assert rules.jacobian(Sigmoid(c), c) == RULES.jacobian(Sigmoid(c), c)


def test_without_carry_drops_one_state_s_carried_share_only():
    program = derive(load_builtin("elman"), 2).program
    dropped = without_carry(program, "h")
    assert [a.carried for a in dropped.assigns if a.node == "h"] == [None]
    assert dropped.carries == program.carries and program.assigns != dropped.assigns
    with pytest.raises(ValueError, match="z is not a state of elman"):
        without_carry(program, "z")


@pytest.fixture(scope="module")
def elman_case():
    cell = load_builtin("elman")
    derivation = derive(cell, 5)
    problem = problems(cell, (5,))[0]
    return cell, derivation, problem, derived_grads(derived_module(derivation, "test_right"), problem, cell)[1]


def test_the_replayed_program_gives_the_generated_module_s_gradients(elman_case):
    """replay (the evaluator on the program's statements) adds up to what the generated module returns."""
    cell, derivation, problem, right = elman_case
    envs = replay(cell, derivation.program, problem)
    evaluate = Evaluator(cell.sizes(problem.params))
    for acc in derivation.program.accumulates:
        total = sum(evaluate(acc.expr, env) for env in envs)
        assert max_rel_error(total.reshape(right[acc.wrt].shape), right[acc.wrt]) <= 1e-13, acc.wrt


def test_a_cell_with_one_state_and_one_activation_keeps_the_all_at_once_suspects(elman_case):
    keys = [s.key for s in suspects(*elman_case[1:3], 5, elman_case[3])]
    assert keys == [
        "recurrence",
        "truncate2",
        "truncate3",
        "truncate4",
        "activation",
        "step",
        "transposed",
        "sign",
        "mean",
        "first_step",
    ]


@pytest.mark.slow  # the LSTM's derivation, 3 s
def test_a_cell_with_two_states_has_a_suspect_per_state_and_per_activation():
    cell = load_builtin("lstm")
    derivation = derive(cell, 3)
    problem = problems(cell, (3,))[0]
    right = derived_grads(derived_module(derivation, "test_lstm"), problem, cell)[1]
    keys = [s.key for s in suspects(derivation, problem, 3, right)]
    assert keys[:3] == ["carry:h", "carry:c", "recurrence"]
    slopes = ["slope:f:sigmoid'", "slope:i:sigmoid'", "slope:o:sigmoid'", "slope:g:tanh'", "slope:h:tanh'(c_t)"]
    assert keys[keys.index("truncate2") + 1 : keys.index("activation")] == slopes
    assert keys[-2:] == ["mean", "first_step"]


RIGHT = np.array([[0.3, -1.2, 0.5], [2.0, 0.1, -0.7]])
WITHOUT_RECURRENCE = np.array([[0.2, -0.4, 0.9], [1.1, 0.3, -0.2]])
FOUND = [Suspect("recurrence", "keeps only the k = t terms", "the terms with k < t", {"W": WITHOUT_RECURRENCE})]


@pytest.mark.parametrize(
    "factor, ratio, says",
    [
        (1 / 5, 1 / 5, "is 1/5 of the gradient (a mean over the 5 steps)"),
        (1 / 20, None, "is 1/20 of the gradient (a mean over N·T = 4·5)"),  # found by least squares
        (1 / 2, 1.0, "is 1/2 of the gradient (a 1/2 in the loss)"),  # the loss itself is right
        (1 / 7, None, "is 1/7 of the gradient (a factor in the loss)"),
        (0.37, None, "is 0.37 times the gradient (a factor in the loss)"),
    ],
    ids=["mean-over-T", "mean-over-NT", "one-half", "one-seventh", "not-a-fraction"],
)
def test_a_constant_factor_is_divided_out_before_the_suspects_are_matched(factor, ratio, says):
    user = factor * WITHOUT_RECURRENCE
    got = diagnose("W", user, RIGHT, FOUND, 1, (1, 2, 3, 5), ratio)
    assert got == f"{says}; besides that, it keeps only the k = t terms. Missing: the terms with k < t"


def test_a_scaled_right_gradient_is_said_as_a_fraction():
    assert diagnose("W", RIGHT / 2, RIGHT, FOUND, 1, (1, 2, 3, 5)) == "is 1/2 of the right gradient (a 1/2 in the loss)"
    assert diagnose("W", 0.37 * RIGHT, RIGHT, FOUND, 1, (1, 5)) == (
        "is 0.37 times the right gradient (a factor in the loss)"
    )
