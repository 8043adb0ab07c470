"""Golden files: generated/ is what the generator writes today, byte for byte.

The documents carry the errors measured when they were made; those vary with the machine's
floating point, so each is masked before diffing (``\\measured{...}`` in the .tex, the table
cells in the .md and the .html).  The gradient-flow PNG is drawn by whichever matplotlib is
installed, so its pixels are not diffed (the values it plots are tested in test_flow.py); the
page inlines it, and MathJax, whose identity the page tests check instead.
"""

import difflib
import functools
import re

import matplotlib
import pytest

from conftest import ROOT, png_size
from derive.derivation.pipeline import derive
from derive.emit.frameworks.codegen import FRAMEWORKS
from derive.emit.outputs import documents, module_source, target_source, verified
from derive.emit.render import is_generated
from derive.ir.cell import builtin_names, load_builtin, seed_rnn
from derive.tools.flow.plot import DPI, FIGSIZE_INCHES

GENERATED = ROOT / "generated"
MEASURED = re.compile(r"\\measured\{[^}]*\}")
GOLDEN_STEPS = 3


def _diff(expected: str, got: str, name: str, cell: str) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(keepends=True), got.splitlines(keepends=True), f"generated/{name}", "regenerated"
    )
    return "".join(lines) + f"\nrefresh with: bptt --cell {cell} --out generated --no-pdf"


MEASURED_CELL = re.compile(r"(?<=[ >])\d\.\de[-+]\d\d(?= \||</td>)")  # a table cell of the .md or the .html
DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
GOLDEN_MATPLOTLIB = "3.11.2"  # drew generated/*_flow.png; another version may draw other pixels
HTML_GOLDEN = "rnn"  # the page inlines MathJax (2.3 MB): one golden page, the seed's
# each cell's goldens take seconds to derive and verify: the seed's are the fast tier's, the others slow
CELLS = [c if c == "rnn" else pytest.param(c, marks=pytest.mark.slow) for c in builtin_names()]


@functools.cache
def _golden(cell: str):
    d = derive(load_builtin(cell), GOLDEN_STEPS)
    return d, module_source(d)


@functools.cache
def _documents(cell: str):
    d, source = _golden(cell)
    report = verified(d, source)
    return report, documents(d, report)


def test_every_builtin_has_golden_files():
    suffixes = (".py", ".tex", ".md", "_flow.png", "_graph.svg", *(f"_{t}.py" for t in FRAMEWORKS))
    expected = {f"{c}_T{GOLDEN_STEPS}{ext}" for c in builtin_names() for ext in suffixes}
    expected.add(f"{HTML_GOLDEN}_T{GOLDEN_STEPS}.html")
    got = {p.name for p in GENERATED.iterdir()}
    assert got == expected, (
        f"bptt --out generated writes every cell's page; keep {HTML_GOLDEN}'s only: {got ^ expected}"
    )


@pytest.mark.parametrize("cell", CELLS)
def test_module_golden(cell):
    got = _golden(cell)[1]
    name = f"{cell}_T{GOLDEN_STEPS}.py"
    expected = (GENERATED / name).read_text(encoding="utf-8")
    assert got == expected, _diff(expected, got, name, cell)


@pytest.mark.parametrize("target", FRAMEWORKS)
@pytest.mark.parametrize("cell", CELLS)
def test_target_module_golden(cell, target):
    """The PyTorch and JAX modules (printed without their frameworks: the text needs neither)."""
    got = target_source(_golden(cell)[0], target)
    name = f"{cell}_T{GOLDEN_STEPS}_{target}.py"
    expected = (GENERATED / name).read_text(encoding="utf-8")
    assert got == expected, _diff(expected, got, name, cell) + f" (bptt emit --target {target})"


@pytest.mark.parametrize("cell", CELLS)
def test_tex_golden(cell):
    report, docs = _documents(cell)
    got = docs.tex
    name = f"{cell}_T{GOLDEN_STEPS}.tex"
    expected = (GENERATED / name).read_text(encoding="utf-8")
    masked_got, masked_expected = MEASURED.sub(r"\\measured{*}", got), MEASURED.sub(r"\\measured{*}", expected)
    assert masked_got == masked_expected, _diff(masked_expected, masked_got, name, cell)
    # rows x (2 implementations x 3 checks), less the loss row of finite differences (they measure gradients)
    assert len(MEASURED.findall(expected)) == len(report.rows) * 6 - 2


@pytest.mark.parametrize("cell", CELLS)
def test_md_golden(cell):
    report, docs = _documents(cell)
    got = docs.md
    name = f"{cell}_T{GOLDEN_STEPS}.md"
    expected = (GENERATED / name).read_text(encoding="utf-8")
    masked_got, masked_expected = MEASURED_CELL.sub("*", got), MEASURED_CELL.sub("*", expected)
    assert masked_got == masked_expected, _diff(masked_expected, masked_got, name, cell)
    assert len(MEASURED_CELL.findall(expected)) == len(report.rows) * 6 - 2


@pytest.mark.parametrize("cell", CELLS)
def test_svg_golden(cell):
    """The unrolled graph for the Markdown and the page: no number in it varies, so byte for byte."""
    _, docs = _documents(cell)
    name = f"{cell}_T{GOLDEN_STEPS}_graph.svg"
    assert docs.graph_name == name
    expected = (GENERATED / name).read_text(encoding="utf-8")
    assert docs.graph == expected, _diff(expected, docs.graph, name, cell)
    assert f"]({name})" in docs.md


def test_html_golden():
    _, docs = _documents(HTML_GOLDEN)
    got = docs.html
    name = f"{HTML_GOLDEN}_T{GOLDEN_STEPS}.html"
    expected = (GENERATED / name).read_text(encoding="utf-8")

    def masked(text: str) -> str:
        return MEASURED_CELL.sub("*", DATA_URI.sub("data:image/png;base64,*", text))

    assert masked(got) == masked(expected), _diff(masked(expected), masked(got), name, HTML_GOLDEN)


@pytest.mark.parametrize("cell", CELLS)
def test_flow_png_golden_is_the_figure_the_documents_link(cell):
    """generated/*_flow.png is the plot the .md links to: a PNG of the figure's size, marked as ours."""
    _, docs = _documents(cell)
    figure, markdown = docs.flow, docs.md
    path = GENERATED / figure.name
    data = path.read_bytes()
    assert png_size(data) == (round(FIGSIZE_INCHES[0] * DPI), round(FIGSIZE_INCHES[1] * DPI)) == (1200, 450)
    assert is_generated(path)
    assert f"]({figure.name})" in markdown
    if matplotlib.__version__ == GOLDEN_MATPLOTLIB:  # the same drawing code: the same bytes
        assert data == figure.png, f"refresh with: bptt --cell {cell} --out generated --no-pdf --force"


@pytest.mark.parametrize(
    "name", [f"rnn_T3{end}" for end in (".py", "_torch.py", "_jax.py", ".tex", ".md", ".html", "_graph.svg")]
)
def test_generated_files_carry_the_header(name):
    first = (GENERATED / name).read_text(encoding="utf-8").splitlines()[0]
    assert "DO NOT EDIT: generated by bptt-derive" in first


def test_output_is_deterministic():
    from derive.derivation.pipeline import derive
    from derive.emit.numpy.codegen import module_context
    from derive.emit.render import render

    a = render("module.py.j2", module_context(derive(seed_rnn(), 4), "x"))
    b = render("module.py.j2", module_context(derive(seed_rnn(), 4), "x"))
    assert a == b


def test_generated_module_has_no_timestamp_and_imports_only_numpy():
    source = (GENERATED / "rnn_T3.py").read_text(encoding="utf-8")
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    # numpy, and the standard library's lock and LRU for the work arrays kept between calls
    assert imports == ["import threading", "from collections import OrderedDict", "import numpy as np"]
    assert not re.search(r"20\d\d-\d\d-\d\d", source)


@pytest.mark.slow  # two processes
def test_output_is_deterministic_across_processes(tmp_path):
    """Two processes with different hash seeds write the same bytes (set and dict order cannot leak)."""
    import os
    import subprocess
    import sys

    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run(
            [sys.executable, "-m", "derive", "emit", "--steps", "2", "--out", str(out)],
            env=env,
            check=True,
            capture_output=True,
        )
        outputs.append((out / "rnn_T2.py").read_bytes())
    assert outputs[0] == outputs[1]
