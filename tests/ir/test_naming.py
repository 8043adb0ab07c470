import pytest

from derive.ir import naming


@pytest.mark.parametrize(
    "name, latex",
    [
        ("h@t-1", "h_{t-1}"),
        ("h@3", "h_{3}"),
        ("W_hh", "W_{hh}"),
        ("dz@t", r"\delta^{z}_{t}"),
        ("dW_hh", r"\frac{\partial J}{\partial W_{hh}}"),
    ],
)
def test_latex_name(name, latex):
    assert naming.latex_name(name) == latex


@pytest.mark.parametrize(
    "name, code",
    [("h@3", "h_3"), ("dz@3", "dz_3"), ("W_hh", "W_hh"), ("l@2", "onehot_2")],
)
def test_code_local(name, code):
    assert naming.code_local(name) == code


@pytest.mark.parametrize("name, code", [("h@t-1", "h[t - 1]"), ("x@t", "x[t]"), ("l@t", "onehot[t]")])
def test_code_indexed(name, code):
    assert naming.code_indexed(name) == code


def test_text_name():
    assert naming.text_name("h@t-1") == "h_{t-1}"
    assert naming.text_name("dz@t") == "dJ/dz_t"


def test_shift_and_offset():
    assert naming.shift("t", -1) == "t-1"
    assert naming.shift("t-1", 1) == "t"
    assert naming.shift("t", 1) == "t+1"
    assert naming.offset("t-1") == -1
    assert naming.offset("t") == 0


def test_step_of_rejects_symbolic_steps():
    assert naming.step_of("h@12") == 12
    with pytest.raises(ValueError, match="no concrete step"):
        naming.step_of("h@t")


def test_jacobian_local():
    assert naming.jacobian_local("z@3", "h@2") == "dz_3__dh_2"
