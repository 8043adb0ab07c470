"""The Markdown and the HTML page, opened as a reader would: GitHub's maths parses, the page is
well-formed HTML that loads everything it shows from itself, and a browser renders every formula
with no network and no MathJax error."""

import base64
import html
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

from derive.derivation.pipeline import derive
from derive.emit.document import page
from derive.emit.document.layout import md_text
from derive.emit.outputs import compile_pdf, documents, html_source, module_source, pdf_missing, verified
from derive.ir.cell import load_builtin

CELLS = ("rnn", "lstm")
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
BROWSER_BUDGET_MS = 30_000  # virtual time for MathJax to typeset the page


def _documents(cell: str, steps: int = 3, truncate: int | None = None):
    d = derive(load_builtin(cell), steps, truncate)
    docs = documents(d, verified(d, module_source(d)))
    return d, docs, docs.md, docs.html


@pytest.fixture(scope="module", params=["rnn", pytest.param("lstm", marks=pytest.mark.slow)])  # CELLS, the LSTM slow
def written(request):
    return _documents(request.param)


def _displays(markdown: str) -> int:
    """The $$ blocks of the Markdown: an opening $$ line, TeX lines, a closing $$ line."""
    return sum(1 for line in markdown.splitlines() if line == "$$") // 2


# ---- the Markdown -------------------------------------------------------------------------


def test_markdown_title_escapes_what_would_start_markup():
    assert md_text("LSTM_2 (a*b) [x] <y> $z | #1") == r"LSTM\_2 (a\*b) \[x\] \<y\> \$z \| \#1"


def test_markdown_displays_stand_apart_and_close(written):
    _, _, markdown, _ = written
    lines = markdown.splitlines()
    opened = False
    for i, line in enumerate(lines):
        if line != "$$":
            assert not (opened and line == ""), f"line {i + 1}: a blank line inside $$ ends the display on GitHub"
            continue
        if not opened:  # a display starts a block of its own
            assert lines[i - 1] == "", f"line {i + 1}: $$ right after text"
        else:
            assert lines[i + 1] == "", f"line {i + 1}: text right after $$"
        opened = not opened
    assert not opened
    assert "\n\n\n" not in markdown


def test_every_formula_of_the_markdown_parses_as_maths(written):
    """markdown-it with the dollar-maths plugin (GitHub's rules: $...$ and $$ blocks) finds every
    display as a math block, and no $ is left in the text outside the maths."""
    _, _, markdown, _ = written
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    dollarmath_plugin(md, allow_labels=False, allow_space=False, allow_blank_lines=False)
    tokens = md.parse(markdown)
    blocks = [t for t in tokens if t.type == "math_block"]
    assert len(blocks) == _displays(markdown) > 10
    texts = [c.content for t in tokens if t.children for c in t.children if c.type == "text"]
    assert not [t for t in texts if "$" in t]
    inline = [c for t in tokens if t.children for c in t.children if c.type == "math_inline"]
    assert len(inline) > 50


def test_markdown_has_no_latex_only_markup(written):
    _, docs, markdown, _ = written
    for latex_only in (r"\section", r"\texttt", r"\begin{align*}", r"\begin{tikzpicture}", r"\measured", "``"):
        assert latex_only not in markdown
    assert markdown.count(f"]({docs.flow.name})") == markdown.count(f"]({docs.graph_name})") == 1
    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# Backpropagation through time for the ")
    assert "## How the gradient flows back in time" in headings
    assert headings[-1] == "## Appendix: Verification"


# ---- the page -----------------------------------------------------------------------------


class _Checker(HTMLParser):
    """Every element closed, in order; the sources and links it names; the scripts' text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self.math = 0
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]
        self.math += "math" in (a.get("class") or "").split()
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> at line {self.getpos()[0]}, open: {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts.append(data)


def _checked(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


def test_page_is_well_formed(written):
    _, _, _, text = written
    checker = _checked(text)
    assert checker.doctype
    assert checker.errors == []
    assert checker.stack == []
    assert text.splitlines()[0].startswith("<!-- DO NOT EDIT: generated by bptt-derive from templates/")


def test_page_loads_everything_from_itself(written):
    """No URL at all but the inlined pictures: MathJax is in the page, not fetched."""
    _, docs, _, text = written
    checker = _checked(text)
    assert [url.split(",")[0] for url in checker.urls] == ["data:image/svg+xml;base64", "data:image/png;base64"]
    assert not re.search(r"<script[^>]*\bsrc=", text)
    version, source = page.mathjax()
    assert version.startswith("3.")
    assert any(script.strip() == source.strip() for script in checker.scripts)
    assert "tex-svg-full" in page.MATHJAX_COMPONENT  # every TeX extension built in: none is loaded later
    assert docs.flow.name not in text and docs.graph_name not in text  # inlined, not linked
    assert base64.b64encode(docs.graph.encode("utf-8")).decode("ascii") in text


def test_page_maths_is_the_markdowns(written):
    """Each formula of the Markdown reaches the page as TeX for MathJax, HTML-escaped."""
    _, _, markdown, text = written
    checker = _checked(text)
    displays = re.findall(r"\$\$\n(.*?)\n\$\$", markdown, flags=re.S)
    for tex in displays:
        assert f"\\[{html.escape(tex, quote=False)}\\]" in text
    assert checker.math >= len(displays)
    assert text.count("\\(") >= markdown.count("$") // 2 - 2 * len(displays)


def test_mathjax_source_is_the_installed_distribution():
    version, source = page.mathjax()
    assert "</script" not in source.lower()
    assert len(source) > 1_000_000  # the whole component, not a loader stub
    assert page.plain_title(r"Backpropagation for the LSTM\_2, $T = 3$") == "Backpropagation for the LSTM_2, T = 3"


def _typeset(text: str, tmp_path) -> str:
    """The page's DOM after headless Chromium ran MathJax on it, with every host unresolvable and
    a dead proxy (nothing can come from a network); scripts and style sheets left out."""
    path = tmp_path / "page.html"
    path.write_text(text, encoding="utf-8")
    run = subprocess.run(
        [
            str(BROWSER),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            f"--virtual-time-budget={BROWSER_BUDGET_MS}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    # MathJax's source and its style sheet name merror too: only the elements count
    return re.sub(r"<(script|style)\b.*?</\1>", "", run.stdout, flags=re.S)


def _errors(dom: str) -> list[str]:
    """MathJax's marks of a formula it could not typeset (an undefined macro is one: noundefined is off)."""
    marks = (r"<[^>]*data-mml-node=\"merror\"", r"data-mjx-error", r"mathcolor=\"red\"")
    return [mark for mark in marks if re.search(mark, dom)]


needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no headless Chromium (Debian: apt-get install chromium-headless-shell)"
)


@pytest.mark.browser
@pytest.mark.slow  # headless Chromium typesets whole documents
@needs_browser
@pytest.mark.parametrize("cell", CELLS)
def test_a_browser_renders_every_formula_offline(cell, tmp_path):
    """One MathJax container per formula of the page, and none of them an error."""
    _, _, _, text = _documents(cell)
    dom = _typeset(text, tmp_path)
    assert dom.count("<mjx-container") == _checked(text).math > 10
    assert _errors(dom) == []


@pytest.mark.browser
@needs_browser
def test_the_browser_check_sees_a_formula_mathjax_cannot_typeset(tmp_path):
    d, _, _, _ = _documents("rnn", steps=1)
    text = html_source(d, "# Broken\n\nfine $x_t$ and\n\n$$\n\\undefinedmacro{y} + \\frac{1}\n$$\n")
    dom = _typeset(text, tmp_path)
    assert dom.count("<mjx-container") == 2
    assert _errors(dom) == [r"<[^>]*data-mml-node=\"merror\"", "data-mjx-error"]


@pytest.mark.slow
def test_html_of_a_truncated_derivation_renders_its_extra_sections():
    d, _, markdown, text = _documents("rnn", steps=4, truncate=2)
    assert "**Truncated to $K = 2$.**" in markdown
    assert "the terms with $T - k \\ge 2$ are those dropped" in markdown
    assert _checked(text).errors == []


@pytest.mark.slow  # bptt derive elman
def test_markdown_is_written_where_the_tex_is(tmp_path):
    from derive.cli import main

    assert main(["derive", "elman", "--steps", "2", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["elman_T2.html", "elman_T2.md", "elman_T2.tex", "elman_T2_flow.png", "elman_T2_graph.svg"]
    assert (tmp_path / "elman_T2.md").read_text(encoding="utf-8").count("](elman_T2_flow.png)") == 1


@pytest.mark.slow
def test_page_has_a_title_and_viewport():
    _, _, _, text = _documents("rnn", steps=1)
    assert "<title>Backpropagation through time for the Vanilla RNN (the seed model), T = 1</title>" in text
    assert '<meta name="viewport"' in text


# ---- the PDF, with the figure -----------------------------------------------------------


@pytest.mark.pdf
@pytest.mark.slow  # pdflatex, pdfimages, pdftotext and pdftoppm
@pytest.mark.skipif(pdf_missing() is not None, reason="pdflatex or TikZ is not installed")
@pytest.mark.skipif(shutil.which("pdfimages") is None, reason="poppler-utils is not installed")
def test_pdf_carries_the_flow_figure_in_its_section(tmp_path):
    _, docs, _, _ = _documents("gru", steps=2)
    built = compile_pdf(tmp_path / "gru_T2.tex", docs.tex, {docs.flow.name: docs.flow.png})
    assert built.path == tmp_path / "gru_T2.pdf", built.message
    images = subprocess.run(["pdfimages", "-list", str(built.path)], capture_output=True, text=True, check=True)
    rows = [r for r in (line.split() for line in images.stdout.splitlines()[2:]) if r[2] == "image"]  # not smask
    assert [(int(r[3]), int(r[4])) for r in rows] == [(1200, 450)]  # the plot, at its own pixels
    page = int(rows[0][0])
    text = subprocess.run(  # the section starts on the figure's page or the one before
        ["pdftotext", "-f", str(max(1, page - 1)), "-l", str(page), str(built.path), "-"],
        capture_output=True,
        text=True,
    ).stdout
    assert "How the gradient flows back in time" in text.split("Verification")[0]
    subprocess.run(
        ["pdftoppm", "-f", str(page), "-l", str(page), "-r", "30", "-png", str(built.path), "p"],
        cwd=tmp_path,
        check=True,
    )
    assert len(list(tmp_path.glob("p-*.png"))) == 1


@pytest.mark.browser
@needs_browser
@pytest.mark.parametrize(
    ("cell", "steps", "truncate"),
    [
        ("rnn", 3, None),
        pytest.param("lstm", 2, None, marks=pytest.mark.slow),
        pytest.param("gru", 4, 2, marks=pytest.mark.slow),
    ],
)
def test_the_notebook_display_renders_in_a_browser(cell, steps, truncate, tmp_path):
    """What a notebook shows for a derivation (its _repr_markdown_), typeset by MathJax as a
    notebook front end would: every formula, no error."""
    d = derive(load_builtin(cell), steps, truncate)
    markdown = d._repr_markdown_()
    text = html_source(d, markdown)
    dom = _typeset(text, tmp_path)
    displays = _displays(markdown)
    assert displays >= 4
    assert dom.count("<mjx-container") == _checked(text).math >= displays
    assert _errors(dom) == []


TITLE = "a_b *c* $5 <script>document.title='PWNED'</script> --> & ~~x~~ | #1"


def _titled_documents():
    from derive.spec.parser import parse

    text = (
        f'cell odd "{TITLE}"\nparam W[h, x], U[h, h], V[y, h]\ninput x[x]; state h[h] = 0; target label: class(y)\n'
        "h = tanh(W x + U h[t-1])\ny = V h\nJ = cross_entropy(softmax(y), label)\n"
    )
    d = derive(parse(text), 1)
    return documents(d, verified(d, module_source(d)))


def test_a_cell_title_is_text_in_every_format():
    """A title is the user's text: it never closes a comment, starts markup or runs as script."""
    docs = _titled_documents()
    head = docs.md.splitlines()[:3]
    assert all(line.startswith("<!--") and line.endswith("-->") and line.count("-->") == 1 for line in head)
    heading = next(line for line in docs.md.splitlines() if line.startswith("# "))
    assert heading == (
        r"# Backpropagation through time for the a\_b \*c\* \$5 \<script\>document.title='PWNED'\</script\> --\> "
        r"\& \~\~x\~\~ \| \#1, $T = 1$"
    )
    assert "<script>document" not in docs.html
    assert "<title>Backpropagation through time for the a_b *c* $5 &lt;script&gt;" in docs.html
    assert TITLE.replace("$", r"\$").replace("_", r"\_") not in docs.tex  # the .tex escapes it too
    assert _checked(docs.html).errors == []


@pytest.mark.browser
@needs_browser
def test_a_cell_title_runs_no_script_in_a_browser(tmp_path):
    dom = _typeset(_titled_documents().html, tmp_path)
    title = re.findall(r"<title>(.*?)</title>", dom, flags=re.S)[0]
    assert title.startswith("Backpropagation through time for the a_b *c* $5 &lt;script&gt;")  # not PWNED
    assert _errors(dom) == []
