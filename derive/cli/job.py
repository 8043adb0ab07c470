"""The default job and its parts, derive, emit and verify: what to write (a Plan, known before deriving),
then derive, print, check, verify, write and report."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from derive.cli.commands import load_cell
from derive.cli.progress import Progress
from derive.derivation.pipeline import Derivation, derive
from derive.emit.outputs import Figure, compile_pdf, documents, flow_figure, module_source, target_source, verified
from derive.emit.render import check_writable, write_all
from derive.ir import naming
from derive.ir.cell import Cell
from derive.ir.naming import FIGURES
from derive.verify.frameworks import CHECKER, PACKAGE, TargetError, check_target, failed, format_checks, framework
from derive.verify.report import Report, format_table, load_module
from derive.verify.selfcheck import self_check


def _summary(derivation: Derivation) -> str:
    names = [naming.text_name(w) for w in derivation.factorized]
    counts = ", ".join(f"{derivation.term_count(w)} for {n}" for w, n in zip(derivation.factorized, names))
    eq = derivation.equivalence
    lines = []
    if derivation.blocks:  # one term per k through the stacked state; each stands for many paths
        stacked = ", ".join(naming.text_name(naming.step_name(s.name, "t")) for s in derivation.cell.states)
        lines.append(f"chain-rule terms (block products through s_t = ({stacked})): {counts}")
        paths = ", ".join(f"{derivation.path_count(w)} for {n}" for w, n in zip(derivation.factorized, names))
        lines.append(f"paths of the unrolled graph they stand for: {paths}")
    else:
        lines.append(f"chain-rule terms: {counts}")
    if eq.truncate is None:
        lines.append(
            f"recurrence = expanded sums at T = {eq.steps}: {eq.delta_identities} delta and "
            f"{eq.gradient_identities} gradient identities hold (SymPy)"
        )
    else:
        lines.append(
            f"recurrence = expanded sums at T = {eq.steps}: {eq.delta_identities} delta identities; truncated runs "
            f"(K = {eq.truncate}) = kept terms: {eq.gradient_identities} gradient identities; all hold (SymPy)"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Plan:
    """What a derive, emit or verify job (or the default, all three) writes, known before it derives."""

    job: str  # "all", "derive", "emit" or "verify"
    stem: str  # the files' name without suffix: rnn_T3
    paths: dict[str, Path]  # by suffix, for the jobs that write: ".tex", ".md", ..., ".py", ".pdf"
    documents: bool  # the .tex, .md, .html and their two figures, which come together
    module: bool
    pdf: bool
    target: str = "numpy"  # the module's framework: numpy, torch or jax

    @property
    def destinations(self) -> list[Path]:
        wanted = [*(DOCUMENTS if self.documents else ()), *((self.module_suffix,) if self.module else ())]
        wanted += [".pdf"] if self.pdf else []
        return [self.paths[suffix] for suffix in wanted]

    @property
    def module_suffix(self) -> str:
        """``.py`` for the NumPy module, ``_torch.py`` and ``_jax.py`` for the others: side by side."""
        return ".py" if self.target == "numpy" else f"_{self.target}.py"


DOCUMENTS = (".tex", ".md", ".html", FIGURES["flow"], FIGURES["graph"])


def plan(args: argparse.Namespace, cell: Cell) -> Plan:
    job = {"latex": "derive", None: "all"}.get(args.command, args.command)
    stem = naming.file_stem(cell.name, args.steps, args.truncate)
    target = getattr(args, "target", "numpy")
    suffixes = (*DOCUMENTS, ".py", f"_{target}.py", ".pdf")
    paths = {} if job == "verify" else {s: args.out / f"{stem}{s}" for s in suffixes}
    documents = job in ("all", "derive")
    pdf = documents and not args.no_pdf and (args.pdf if job == "derive" else True)
    if target != "numpy":
        framework(target)  # installed, or one line saying how (before deriving)
    return Plan(job, stem, paths, documents, job in ("all", "emit"), pdf, target)


def run_job(args: argparse.Namespace, out: TextIO) -> int:
    """The default job, derive, emit or verify: derive, print, check, verify, write, report."""
    cell = load_cell(getattr(args, "spec", None) or args.cell)
    job = plan(args, cell)
    check_writable(job.destinations, args.force)  # before the (slower) derivation: fail fast, write nothing
    truncated = "" if args.truncate is None else f", truncated to K = {args.truncate} steps"
    print(f"bptt-derive: {cell.title}, T = {args.steps}{truncated}", file=out)
    progress = Progress()
    with progress.stage(f"deriving T = {args.steps} (counts, recurrence, proof)"):
        derivation = derive(cell, args.steps, args.truncate)
    print(_summary(derivation), file=out)
    with progress.stage("printing the NumPy module"):
        source = module_source(derivation)
    if job.module or job.target != "numpy":  # nothing is written that was not run
        with progress.stage("checking the module (poisoned arrays, finite differences)"):
            self_check(source, derivation.cell, job.stem)
    if job.target != "numpy":
        return _target_job(job, derivation, source, args.force, progress, out)
    report = None
    if job.job != "emit":
        with progress.stage("verifying (reference loop, finite differences, SymPy)"):
            report = verified(derivation, source)
        if not report.passed:  # a disagreement is our bug: say where, and write nothing
            return _verification(report, out)
    targets: dict[Path, str | bytes] = {}
    figure = None
    if job.documents:
        assert report is not None
        with progress.stage("plotting the gradient flow"):
            figure = flow_figure(derivation)
        with progress.stage("printing the LaTeX, Markdown and HTML"):
            docs = documents(derivation, report, figure)
        texts: tuple[str | bytes, ...] = (docs.tex, docs.md, docs.html, figure.png, docs.graph)
        targets |= {job.paths[suffix]: text for suffix, text in zip(DOCUMENTS, texts)}
    if job.module:
        targets[job.paths[job.module_suffix]] = source
    write_all(targets, args.force)
    for path in targets:
        print(f"wrote {path}", file=out)
    status = 0
    if job.pdf:
        assert figure is not None
        status = _pdf(job.paths[".tex"], str(targets[job.paths[".tex"]]), figure, progress, out)
    verdict = _verification(report, out) if report is not None else 0
    return verdict or status


def _target_job(
    job: Plan, derivation: Derivation, numpy_source: str, force: bool, progress: Progress, out: TextIO
) -> int:
    """emit or verify --target torch|jax: the framework's module, checked against the NumPy module (which
    has passed its own check), its framework's gradient checker and its autograd; written by emit."""
    with progress.stage(f"printing the {PACKAGE[job.target]} module"):
        source = target_source(derivation, job.target)
    with progress.stage(f"checking it (against the NumPy module, {CHECKER[job.target]}, autograd)"):
        checks = check_target(job.target, source, load_module(numpy_source, job.stem), job.stem)
    wrong = failed(checks)
    if job.job == "verify" or wrong is not None:
        print(f"\nverification of the {PACKAGE[job.target]} module: max relative error, float64", file=out)
        print(format_checks(checks), file=out)
    if wrong is not None and job.job == "verify":  # as a failed NumPy verification: the rows, then the first miss
        print(f"MISMATCH {wrong}", file=out)
        return 1
    if wrong is not None:  # our bug: say where, write nothing
        raise TargetError(wrong)
    if job.module:
        path = job.paths[job.module_suffix]
        write_all({path: source}, force)
        worst = max(c.error for c in checks if c.name == "equal to the NumPy module")
        names = f"bptt verify --target {job.target} shows each"
        against = f"max relative error against the NumPy module {worst:.1e}"
        print(f"checked ({names}): all {len(checks)} pass; {against}", file=out)
        print(f"wrote {path}", file=out)
    else:
        print("all checks pass", file=out)
    return 0


def _pdf(tex: Path, text: str, figure: Figure, progress: Progress, out: TextIO) -> int:
    """Compile the .tex; 1 where pdflatex ran and failed, 0 otherwise (a missing pdflatex is said, not an error)."""
    with progress.stage("compiling the PDF (pdflatex, twice)"):
        built = compile_pdf(tex, text, {figure.name: figure.png})
    if built.path is not None:
        print(f"wrote {built.path} ({built.message})", file=out)
    elif built.failed:
        print(f"bptt: error: {built.message}", file=sys.stderr)
        return 1
    else:
        print(built.message, file=out)
    return 0


def _verification(report: Report, out: TextIO) -> int:
    print("\nverification: max relative error, float64", file=out)
    print(format_table(report), file=out)
    if not report.passed:
        for failure in report.failures():
            print(f"MISMATCH {failure}", file=out)
        return 1
    print("all checks pass", file=out)
    return 0
