"""The files a derivation becomes: the module and document sources, and the PDF.

Each source names, in its header, the command that regenerates it; the CLI
writes them and the golden-file tests compare against them.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from derive.derivation.pipeline import Derivation
from derive.emit.document import page
from derive.emit.document.context import document_context, flow_context
from derive.emit.document.diagram import diagram, svg
from derive.emit.frameworks.codegen import FRAMEWORKS, TEMPLATES
from derive.emit.frameworks.codegen import module_context as framework_context
from derive.emit.numpy.codegen import module_context
from derive.emit.render import is_generated, render, write_atomic
from derive.ir import naming
from derive.tools.flow.flow import flow_curves, flow_steps
from derive.tools.flow.plot import render_png
from derive.verify.report import Report, load_module, verify


def command(job: str, derivation: Derivation, target: str = "numpy") -> str:
    """The command that writes the file again; the folder is left out, so that the file does not
    depend on where it was written."""
    truncate = "" if derivation.truncate is None else f" --truncate {derivation.truncate}"
    framework = "" if target == "numpy" else f" --target {target}"
    cell = derivation.cell.argument
    return f"bptt {job} --cell {cell} --steps {derivation.steps}{truncate}{framework} --out <this folder>"


def figure_name(kind: str, derivation: Derivation) -> str:
    """A figure's file name ("flow", "graph"), beside the documents that show it."""
    return naming.figure_filename(kind, derivation.cell.name, derivation.steps, derivation.truncate)


@dataclass(frozen=True)
class Figure:
    name: str  # the file name the documents link to
    png: bytes
    context: dict[str, object]  # what the documents say about it


def flow_figure(derivation: Derivation) -> Figure:
    """The gradient-flow plot of the documents: the default scales, over at least FLOW_MIN_STEPS steps."""
    flows = flow_curves(derivation.cell, flow_steps(derivation.steps))
    name = figure_name("flow", derivation)
    return Figure(name, render_png(flows), flow_context(flows, name))


def graph_source(derivation: Derivation) -> str:
    """The unrolled graph as SVG, the TikZ picture's twin, for the Markdown and the page."""
    d = diagram(derivation.cell, derivation.steps)
    title = f"The unrolled graph of {derivation.cell.title}, T = {d.steps}, and one chain-rule term of dJ/d{d.wrt}"
    return svg(d, title)


def module_source(derivation: Derivation) -> str:
    return render("module.py.j2", module_context(derivation, command("emit", derivation)))


def target_source(derivation: Derivation, target: str) -> str:
    """The PyTorch or JAX module (``target``), from the same schedule as the NumPy one."""
    context = framework_context(derivation, FRAMEWORKS[target], command("emit", derivation, target))
    return render(TEMPLATES[target], context)


def _context(derivation: Derivation, report: Report, figure: Figure | None) -> dict[str, object]:
    flow = figure.context if figure is not None else None
    return document_context(derivation, report, command("derive", derivation), flow)


def tex_source(derivation: Derivation, report: Report, figure: Figure | None = None) -> str:
    return render("derivation.tex.j2", _context(derivation, report, figure))


def _markdown(context: dict[str, object]) -> str:
    text = render("derivation.md.j2", context)
    return re.sub(r"\n{3,}", "\n\n", text)  # the format's blank lines around displays and headings, once


def html_source(derivation: Derivation, markdown: str, images: dict[str, bytes] | None = None) -> str:
    """The Markdown document as a page: markdown-it's HTML, MathJax inlined, the ``images`` (by the
    names the Markdown links) as data URIs."""
    version, source = page.mathjax()
    heading = next((line[2:] for line in markdown.splitlines() if line.startswith("# ")), derivation.cell.title)
    context: dict[str, object] = {
        "command": command("derive", derivation),
        "title": page.plain_title(heading),
        "mathjax_version": version,
        "mathjax_component": page.MATHJAX_COMPONENT,
        "mathjax_source": source,
        "body": page.markdown_html(markdown, images),
    }
    return render("derivation.html.j2", context)


@dataclass(frozen=True)
class Documents:
    """The derivation as the reader gets it: the .tex, the .md and the page, and their pictures."""

    tex: str
    md: str
    html: str
    flow: Figure  # the gradient-flow plot (PNG)
    graph: str  # the unrolled graph (SVG); the .tex draws it in TikZ
    graph_name: str


def documents(derivation: Derivation, report: Report, figure: Figure | None = None) -> Documents:
    """Every document of the derivation; ``figure``, the flow plot, when it was drawn already."""
    figure = figure or flow_figure(derivation)
    context = _context(derivation, report, figure)  # printed once, for both templates
    graph = graph_source(derivation)
    markdown = _markdown(context)
    graph_name = figure_name("graph", derivation)
    html = html_source(derivation, markdown, {figure.name: figure.png, graph_name: graph.encode("utf-8")})
    return Documents(render("derivation.tex.j2", context), markdown, html, figure, graph, graph_name)


def verified(derivation: Derivation, source: str) -> Report:
    module = load_module(source, naming.file_stem(derivation.cell.name, derivation.steps, derivation.truncate))
    return verify(derivation.cell, module, derivation.steps)


@dataclass(frozen=True)
class Pdf:
    path: Path | None  # the PDF written, or None
    message: str
    failed: bool = False  # pdflatex ran and failed (not: pdflatex is not installed)


@functools.cache
def pdf_missing() -> str | None:
    """Why this machine cannot build the PDF (pdflatex, or TikZ for the unrolled graph, not
    installed), or None."""
    if shutil.which("pdflatex") is None:
        return "pdflatex not found, so no PDF (Debian: apt-get install texlive-latex-recommended texlive-pictures)"
    kpsewhich = shutil.which("kpsewhich")
    if kpsewhich is not None:
        found = subprocess.run([kpsewhich, "tikz.sty"], capture_output=True, text=True).stdout.strip()
        if not found:
            return "TikZ (tikz.sty) not found, so no PDF (Debian: apt-get install texlive-pictures)"
    return None


def compile_pdf(tex_path: Path, tex: str, images: dict[str, bytes] | None = None) -> Pdf:
    """Compile with pdflatex in a scratch folder, with the ``images`` the .tex includes, and write
    the PDF beside the .tex.

    On a failure a PDF that an earlier run generated there is removed, so that a
    stale PDF never sits beside a newer .tex.
    """
    missing = pdf_missing()
    exe = shutil.which("pdflatex")
    if missing is not None or exe is None:
        return Pdf(None, missing or "pdflatex not found")
    pdf = tex_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="bptt-") as tmp:
        src = Path(tmp) / tex_path.name
        src.write_text(tex, encoding="utf-8")
        for name, data in (images or {}).items():
            (Path(tmp) / name).write_bytes(data)
        for _ in range(2):  # twice, for the page layout to settle
            run = subprocess.run(
                [exe, "-interaction=nonstopmode", "-halt-on-error", src.name],
                cwd=tmp,
                capture_output=True,
                text=True,
                errors="replace",
            )
            if run.returncode != 0:
                if is_generated(pdf):
                    pdf.unlink()
                err = next((line for line in run.stdout.splitlines() if line.startswith("!")), "no message")
                return Pdf(None, f"pdflatex failed on {tex_path}: {err}", failed=True)
        write_atomic(pdf, (Path(tmp) / src.with_suffix(".pdf").name).read_bytes())
    return Pdf(pdf, "compiled with pdflatex")
