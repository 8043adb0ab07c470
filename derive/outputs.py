"""The files a derivation becomes: the module and document sources, and the PDF.

Each source names, in its header, the command that regenerates it; the CLI
writes them and the golden-file tests compare against them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from . import naming
from .cell import Cell
from .codegen import module_context
from .document import document_context
from .pipeline import Derivation
from .render import render, write_atomic
from .verify import Report, load_module, verify


def module_source(derivation: Derivation, cell: Cell) -> str:
    command = f"bptt emit --cell {cell.name} --steps {derivation.steps} --out generated"
    return render("module.py.j2", module_context(derivation, command))


def tex_source(derivation: Derivation, report: Report, cell: Cell) -> str:
    command = f"bptt derive --cell {cell.name} --steps {derivation.steps} --out generated"
    return render("derivation.tex.j2", document_context(derivation, report, command))


def verified(derivation: Derivation, source: str) -> Report:
    module = load_module(source, naming.module_filename(derivation.cell.name, derivation.steps)[:-3])
    return verify(derivation.cell, module, derivation.steps)


def compile_pdf(tex_path: Path, tex: str) -> tuple[Path | None, str]:
    """Compile with pdflatex in a scratch folder; (pdf path or None, what happened)."""
    exe = shutil.which("pdflatex")
    if exe is None:
        return None, "pdflatex not found, so no PDF (Debian: apt-get install texlive-latex-recommended)"
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
                err = next((line for line in run.stdout.splitlines() if line.startswith("!")), "see the .log")
                return None, f"pdflatex failed on {tex_path}: {err}"
        pdf = tex_path.with_suffix(".pdf")
        write_atomic(pdf, (Path(tmp) / src.with_suffix(".pdf").name).read_bytes())
    return pdf, "compiled with pdflatex"
