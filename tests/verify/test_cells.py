"""Every built-in cell and a corpus of test specs (tests/cells: each activation, each loss,
many-to-one), at T = 1..5: both generated implementations against every yardstick.

One ``verify`` report per (cell, T), cached; each test reads one parameter's row, so a
failure names the cell, the step count and the parameter (``gru-T4-U_n``).
"""

import functools
import re

import pytest

from conftest import ALL_CELLS, load_cell, pdflatex
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source, pdf_missing, verified
from derive.ir.cell import builtin_names
from derive.verify.report import CHECKS, IMPLEMENTATIONS, TOLERANCE, load_module

CELLS = [c for c in ALL_CELLS if c != "rnn"]  # rnn has its own, finer tests (test_gradients.py)
STEPS = range(1, 6)
# the fast tier (pytest -m "not slow") checks T = 1 of every cell and T = 2 of the built-in ones;
# the terms, and so the time, grow with T: the rest is the slow tier
FAST_STEPS = {cell: 2 if cell in builtin_names() else 1 for cell in CELLS}


@functools.cache
def derivation(cell: str, steps: int):
    return derive(load_cell(cell), steps)


@functools.cache
def report(cell: str, steps: int):
    d = derivation(cell, steps)
    return verified(d, module_source(d))


def _cases():
    for cell in CELLS:
        module = load_module(module_source(derivation(cell, 1)), cell.replace("/", "_"))
        for steps in STEPS:
            for row in ("loss", *module.PARAMS, *module.INITIAL):
                marks = pytest.mark.slow if steps > FAST_STEPS[cell] else ()
                yield pytest.param(cell, steps, row, id=f"{cell.split('/')[-1]}-T{steps}-{row}", marks=marks)


@pytest.mark.parametrize("cell, steps, row", list(_cases()))
def test_every_check_of_every_parameter(cell, steps, row):
    r = report(cell, steps)
    # the by-definition code exists where the expansion is written out (a GRU's terms grow as 4^T)
    implementations = IMPLEMENTATIONS if derivation(cell, steps).expanded else IMPLEMENTATIONS[:1]
    # the corpus has no hand-written loops: finite differences and SymPy only
    checks = [c for c in CHECKS if c != "reference"] if cell.startswith("corpus/") else CHECKS
    for impl in implementations:
        for check in checks:
            err = r.error(impl, check, row)
            if row == "loss" and check == "finite differences":
                assert err is None  # finite differences measure gradients only
                continue
            assert err is not None, f"{impl} vs {check} did not run"
            assert err <= TOLERANCE[check], f"{impl} vs {check}: {err:.1e}"


@pytest.mark.parametrize("cell", [c for c in CELLS if not c.startswith("corpus/")])
def test_cells_have_their_own_reference_loop(cell):
    assert all(r is not None for r in report(cell, 2).errors[("loss_and_gradients", "reference")].values())


UNSUPPORTED = {
    "loss-reads-previous-state": (
        "param W[h, x], U[h, h], V[y, h]\ninput x[x]; state h[h]; target l: class(y)\n"
        "h = tanh(W x + U h[t-1])\ny = V h[t-1]\nJ = cross_entropy(softmax(y), l)\n",
        "the loss reads h[t-1]",
    ),
    "loss-reads-state-two-back": (
        "param W[h, x], U[h, h], V[y, h]\ninput x[x]; state h[h]; target l: class(y)\n"
        "h = tanh(W x + U h[t-1])\ny = V h[t-2]\nJ = cross_entropy(softmax(y), l)\n",
        "the loss reads h[t-2] other than through a state of step t; an output that reads an earlier step "
        "is not supported yet",
    ),
    "loss-reads-previous-input": (
        "param W[h, x], U[h, h], V[y, h], Q[y, x]\ninput x[x]; state h[h]; target l: class(y)\n"
        "h = tanh(W x + U h[t-1])\ny = V h + Q x[t-1]\nJ = cross_entropy(softmax(y), l)\n",
        "the loss reads x[t-1] other than through a state of step t",
    ),
}


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_features_are_named_not_derived_wrongly(name, tmp_path, capsys):
    from derive import cli
    from derive.spec.parser import parse

    text, feature = UNSUPPORTED[name]
    with pytest.raises(NotImplementedError, match=re.escape(feature)):
        derive(parse(text), 2)
    spec = tmp_path / f"{name}.cell"
    spec.write_text(text)
    assert cli.main(["emit", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not supported yet" in err[0] and feature in err[0]
    assert not (tmp_path / "out").exists()


def _verified_at(text: str, steps: int):
    from derive.spec.parser import parse

    d = derive(parse(text, "cell.cell"), steps)
    r = verified(d, module_source(d))
    for impl in IMPLEMENTATIONS:
        for check in ("finite differences", "sympy"):
            for row, err in r.errors[(impl, check)].items():
                if row != "loss" or check != "finite differences":
                    assert err is not None and err <= TOLERANCE[check], f"{impl} vs {check}, {row}: {err}"


@pytest.mark.slow
def test_logits_read_by_the_softmax_and_another_node():
    # dJ/dy is p - l plus what comes back through c (the collapse used to drop the second share: the proof
    # failed); two coupled states swell SymPy's whole unrolled loss, so T = 2 here, not in the corpus
    _verified_at(
        "param W[h, x], U[h, y], V[y, h], A[h, h]\ninput x[x]; state h[h] = 0, c[y] = 0; target l: class(y)\n"
        "h = tanh(W x + U c[t-1] + A h[t-1])\ny = V h\np = softmax(y)\nc = tanh(y)\nJ = cross_entropy(p, l)\n",
        2,
    )


@pytest.mark.slow  # SymPy on 100 nested operations
def test_the_deepest_expression_the_spec_allows_derives_and_verifies():
    from derive.spec.builder import MAX_DEPTH

    products = " * ".join(["h[t-1]"] * (MAX_DEPTH - 3))  # tanh, +, MAX_DEPTH - 3 products, a leaf: MAX_DEPTH deep
    _verified_at(
        "param W[h, x], U[h, h], V[y, h]\ninput x[x]; state h[h] = 0; target l: class(y)\n"
        f"h = tanh(W x + {products} * U h[t-1])\ny = V h\nJ = cross_entropy(softmax(y), l)\n",
        1,
    )


@pytest.mark.pdf
@pytest.mark.slow  # pdflatex on every cell's T = 3 document
@pytest.mark.skipif(pdf_missing() is not None, reason=str(pdf_missing()))
@pytest.mark.parametrize("cell", CELLS)
def test_document_compiles_with_nothing_off_the_page(cell, tmp_path):
    from derive.emit.outputs import tex_source

    run, log = pdflatex(tmp_path / "doc.tex", tex_source(derivation(cell, 3), report(cell, 3)))
    assert run.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log
