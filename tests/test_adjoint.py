"""Stage 5: the efficient recurrence, and the SymPy proof that it equals the expanded sums."""

import dataclasses

import pytest
import sympy as sp
from sympy import MatrixSymbol

from derive.adjoint import build_program, check_equivalence, with_carry
from derive.chain import expand_all
from derive.exprs import mul, transpose
from derive.printing import latex
from derive.unroll import unroll


def test_program_is_the_designs_delta_recurrence(seed):
    program = build_program(seed)
    lines = [f"{latex(a.target)} = {latex(with_carry(program, a), hadamard=True)}" for a in program.assigns]
    assert lines == [
        r"\delta^{y}_{t} = p_{t} - l_{t}",
        r"\delta^{h}_{t} = W_{hy}^{T} \delta^{y}_{t} + W_{hh}^{T} \delta^{z}_{t+1}",
        r"\delta^{z}_{t} = \left(\mathbf{1} - h_{t}^{\circ 2}\right) \odot \delta^{h}_{t}",
    ]
    grads = {acc.wrt: latex(acc.expr) for acc in program.accumulates}
    assert grads == {
        "W_xh": r"\delta^{z}_{t} x_{t}^{T}",
        "W_hh": r"\delta^{z}_{t} h_{t-1}^{T}",
        "W_hy": r"\delta^{y}_{t} h_{t}^{T}",
    }
    assert [latex(c.expr) for c in program.carries] == [r"W_{hh}^{T} \delta^{z}_{t}"]


@pytest.mark.parametrize("T", range(1, 7), ids=lambda T: f"T{T}")
def test_recurrence_equals_expansion(seed, T):
    unrolled = unroll(seed, T)
    result = check_equivalence(build_program(seed), unrolled, expand_all(unrolled))
    assert result.holds, result.failures
    assert result.delta_identities == 3 * T  # delta^y, delta^h, delta^z at every step
    assert result.gradient_identities == 4  # W_xh, W_hh, W_hy, h_0


def _off_by_one(program):
    """dW_hh accumulated with h_t instead of h_{t-1}: a classic slip."""
    accs = []
    for acc in program.accumulates:
        if acc.wrt == "W_hh":
            dz = MatrixSymbol("dz@t", *acc.expr.args[0].shape)
            h = MatrixSymbol("h@t", dz.shape[0], 1)
            acc = dataclasses.replace(acc, expr=mul(dz, transpose(h)))
        accs.append(acc)
    return dataclasses.replace(program, accumulates=tuple(accs))


def _no_carry(program):
    """Truncated to one step: the state's gradient is not carried back."""
    carries = tuple(dataclasses.replace(c, expr=sp.ZeroMatrix(*c.expr.shape)) for c in program.carries)
    return dataclasses.replace(program, carries=carries)


@pytest.mark.parametrize(
    "broken, failing",
    [(_off_by_one, {"gradient of W_hh"}), (_no_carry, {"gradient of W_hh", "gradient of W_xh", "gradient of h@0"})],
    ids=["off-by-one", "no-carry"],
)
def test_the_proof_catches_a_wrong_recurrence(seed, broken, failing):
    unrolled = unroll(seed, 3)
    result = check_equivalence(broken(build_program(seed)), unrolled, expand_all(unrolled))
    assert not result.holds
    assert failing <= set(result.failures)


def test_softmax_collapse_is_proved_without_the_rule_table(seed):
    from derive.adjoint import prove_softmax_collapse

    assert prove_softmax_collapse(3)
    unrolled = unroll(seed, 3)
    result = check_equivalence(build_program(seed), unrolled, expand_all(unrolled))
    assert result.lemmas == ("softmax_collapse",)
    # delta^y_k is the collapse itself, and delta^h_T, delta^z_T have one term: 4 identities are sums
    assert result.nontrivial == 4
