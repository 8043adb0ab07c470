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


# ---- delays: a hidden state that holds an earlier value prints as that value ---------------


@pytest.mark.parametrize(
    "name, latex, text",
    [
        ("_h_lag1@t", "h_{t-1}", "h_{t-1}"),  # h'_t = h_{t-1}
        ("_h_lag1@t-1", "h_{t-2}", "h_{t-2}"),  # what h[t-2] reads
        ("_h_lag2@3", "h_{1}", "h_1"),
        ("_h_lag1@0", "h_{-1}", "h_{-1}"),  # the zero start
        ("_x_lag0@t", "x_{t}", "x_t"),  # x'_t = x_t
        ("_x_lag0@0", "x_{0}", "x_0"),
        ("d_h_lag1@t", r"\delta^{(h,1)}_{t}", "dJ/d(h,1)_t"),  # the kept copy's gradient, not dJ/dh_{t-1}
        ("d_x_lag0@t+1", r"\delta^{(x,0)}_{t+1}", "dJ/d(x,0)_{t+1}"),
        ("d_h_lag1@t-1", r"\delta^{(h,1)}_{t-1}", "dJ/d(h,1)_{t-1}"),
    ],
)
def test_a_delay_prints_as_the_value_it_holds(name, latex, text):
    assert naming.latex_name(name) == latex
    assert naming.text_name(name) == text


def test_delay_names_round_trip_and_cannot_be_written_in_a_spec():
    assert naming.delay_name("h", 1) == "_h_lag1"
    assert naming.delay_of("_h_lag1") == ("h", 1)
    assert naming.delay_of("_h_lag1_lag2") == ("h_lag1", 2)  # a source named h_lag1
    assert naming.delay_of("h_lag1") is None and naming.delay_of("_rows") is None
    assert naming.is_reserved(naming.delay_name("h", 1))  # a spec name cannot start with _
    assert naming.code_local("_h_lag1@3") == "_h_lag1_3" and naming.code_indexed("_h_lag1@t-1") == "_h_lag1[t - 1]"
