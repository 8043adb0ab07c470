import pytest

from derive.derivation.unroll import unroll
from derive.emit.printing import latex


def test_unrolled_equations_at_T2(seed):
    u = unroll(seed, 2)
    got = [f"{latex(lhs)} = {latex(rhs)}" for lhs, rhs in u.equations]
    assert got == [
        "z_{1} = W_{xh} x_{1} + W_{hh} h_{0}",
        r"h_{1} = \tanh\left(z_{1}\right)",
        "y_{1} = W_{hy} h_{1}",
        r"p_{1} = \operatorname{softmax}\left(y_{1}\right)",
        r"J_{1} = -l_{1}^{T} \log p_{1}",
        "z_{2} = W_{xh} x_{2} + W_{hh} h_{1}",
        r"h_{2} = \tanh\left(z_{2}\right)",
        "y_{2} = W_{hy} h_{2}",
        r"p_{2} = \operatorname{softmax}\left(y_{2}\right)",
        r"J_{2} = -l_{2}^{T} \log p_{2}",
    ]


def test_dependencies_and_leaves(seed):
    u = unroll(seed, 2)
    assert u.deps["z@2"] == ("W_xh", "x@2", "W_hh", "h@1")
    assert [s.name for s in u.losses] == ["J@1", "J@2"]
    assert [s.name for s in u.initial_states] == ["h@0"]
    assert "h@0" not in u.deps  # an input of the graph, not computed


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_rejects_bad_steps(seed, bad):
    with pytest.raises(ValueError, match="integer >= 1"):
        unroll(seed, bad)
