"""Stage 5: the efficient recurrence, and the SymPy proof that it equals the expanded sums."""

import dataclasses

import pytest
import sympy as sp
from sympy import MatrixSymbol

from conftest import CORPUS
from derive.derivation.adjoint import build_program, check_equivalence, noncommutative, with_carry
from derive.derivation.analytic import factor_matrix
from derive.derivation.chain import as_blocks, differentiable_names, expand_all, factorize
from derive.derivation.pipeline import PROOF_MAX_MONOMIAL_STEPS, derive, monomial_weight
from derive.derivation.unroll import unroll
from derive.emit.printing import latex
from derive.ir.exprs import Outer, mul, transpose
from derive.spec.parser import read


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


@pytest.mark.parametrize(
    "T", [*range(1, 5), *(pytest.param(T, marks=pytest.mark.slow) for T in (5, 6))], ids=lambda T: f"T{T}"
)
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
    from derive.derivation.adjoint import prove_softmax_collapse

    assert prove_softmax_collapse(3)
    unrolled = unroll(seed, 3)
    result = check_equivalence(build_program(seed), unrolled, expand_all(unrolled))
    assert result.lemmas == ("softmax_collapse",)
    # delta^y_k is the collapse itself, and delta^h_T, delta^z_T have one term: 4 identities are sums
    assert result.nontrivial == 4


def test_proof_is_bounded_by_monomials_not_paths():
    """A residual cell's one-step Jacobian I + diag(1 - h^2) U is one edge with two monomials: its
    path count stays T(T+1)/2 while the expanded products double at every step."""
    cell = read(CORPUS / "residual.cell")
    weighted = {
        w: dataclasses.replace(as_blocks(factorize(cell, w)), weight=monomial_weight(cell))
        for w in differentiable_names(cell)
    }
    unrolled = unroll(cell, 4)
    for wrt, expansion in expand_all(unrolled).items():
        monomials = 0
        for term in expansion.terms:
            n = 1
            for f in term.factors:
                m = factor_matrix(unrolled, f)
                if isinstance(m, Outer):  # g^T -> (g^T L)^T v^T: the monomials of L
                    m = m.left if m.left is not None else sp.Identity(1)
                n *= len(sp.Add.make_args(sp.expand(noncommutative(m))))
            monomials += n
        assert weighted[wrt].total(4) == monomials, wrt
    assert factorize(cell, "U").total(4) == 10  # paths: 1 + 2 + 3 + 4
    # monomials: J_t's k-th term has 2^(t-k) of them, times 2 for dJ_t/dy_t = (p_t - l_t)^T
    assert weighted["U"].total(4) == 2 * (1 + 3 + 7 + 15)
    d = derive(cell, 20)
    cost = [t * sum(f.total(t) for f in weighted.values()) for t in (d.equivalence.steps, d.equivalence.steps + 1)]
    assert d.equivalence.holds and cost[0] <= PROOF_MAX_MONOMIAL_STEPS < cost[1]
