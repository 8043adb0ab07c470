"""The files a derivation becomes: the module and document sources, and the PDF.

Each source names, in its header, the command that regenerates it; the CLI
writes them and the golden-file tests compare against them.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import naming
from .codegen import module_context
from .document import document_context
from .pipeline import Derivation
from .render import is_generated, render, write_atomic
from .verify import Report, load_module, verify


def command(job: str, derivation: Derivation) -> str:
    """The command that writes the file again; the folder is left out, so that the file does not
    depend on where it was written."""
    truncate = "" if derivation.truncate is None else f" --truncate {derivation.truncate}"
    return f"bptt {job} --cell {derivation.cell.name} --steps {derivation.steps}{truncate} --out <this folder>"


def module_source(derivation: Derivation) -> str:
    return render("module.py.j2", module_context(derivation, command("emit", derivation)))


def tex_source(derivation: Derivation, report: Report) -> str:
    return render("derivation.tex.j2", document_context(derivation, report, command("derive", derivation)))


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


def compile_pdf(tex_path: Path, tex: str) -> Pdf:
    """Compile with pdflatex in a scratch folder and write the PDF beside the .tex.

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
