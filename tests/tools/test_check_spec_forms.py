"""bptt check against cells written with the spec's later forms: a sum() loss with a named constant
(tests/cells/poisson.cell), and a hand-written count model right and wrong."""

from conftest import CORPUS, USER_CODE
from derive import cli

POISSON = USER_CODE / "poisson.py"
CELL = str(CORPUS / "poisson.cell")


def test_a_poisson_count_model_is_checked_against_its_sum_loss(capsys):
    code = cli.main(["check", f"{POISSON}:loss_fun", "--cell", CELL])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "names: Wxh = W, Whh = U, Why = V" in out
    assert out.strip().endswith("all gradients match")


def test_a_penalty_left_out_of_the_gradient_is_wrong(capsys):
    code = cli.main(["check", f"{POISSON}:loss_fun_no_penalty_gradient", "--cell", CELL])
    out, _ = capsys.readouterr()
    assert code == 1
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.startswith("  ") and "e-" in line}
    assert rows["loss"] == "ok" and rows["V"] == "WRONG" and rows["b_y"] == "WRONG"
