"""The command line: ``bptt`` (the default job), ``bptt derive``, ``bptt emit``, ``bptt verify``,
``bptt check`` (a user's own gradient code), ``bptt cells`` and ``bptt bench``.

Bad input is answered with one line on stderr and exit status 2, and nothing is
written; a failed verification, or a check that finds a wrong gradient, exits 1.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

import numpy as np

from derive.cli.progress import Progress
from derive.derivation.pipeline import MAX_STEPS, Derivation, derive
from derive.emit.outputs import Figure, compile_pdf, documents, flow_figure, module_source, verified
from derive.emit.render import OutputError, check_writable, write_all
from derive.ir import naming
from derive.ir.cell import Cell, builtin_names, builtin_path, load_builtin
from derive.ir.naming import FIGURES
from derive.spec.lexer import SpecError
from derive.spec.parser import read
from derive.tools.check.load import CheckError
from derive.tools.check.report import CHECK_MAX_STEPS, CHECK_STEPS, check, format_report
from derive.tools.flow.flow import DEFAULT_SCALES, FLOW_MIN_STEPS, flow_curves, trend
from derive.tools.flow.plot import render_png
from derive.verify.report import Report, format_table, load_module
from derive.verify.selfcheck import SelfCheckError, self_check

DEFAULT_STEPS = 3
SELF_CHECK_FAILED = "the generated module failed its self-check, so nothing was written"
REPORT_IT = "This is a bug in bptt-derive: please report it, with your .cell file"
DEFAULT_OUT = "out"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _steps(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= MAX_STEPS:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {MAX_STEPS}, got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _common(p: argparse.ArgumentParser, out: bool = True, top: bool = False) -> None:
    """The options every command takes; a subcommand's defaults leave the top level's values alone."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    p.add_argument(
        "--cell", default=default("rnn"), metavar="CELL", help="a built-in cell (see bptt cells) or a .cell file"
    )
    p.add_argument(
        "--steps", "-T", type=_steps, default=default(DEFAULT_STEPS), metavar="T", help="T >= 1 (default: 3)"
    )
    p.add_argument(
        "--truncate",
        "-K",
        type=_steps,
        default=default(None),
        metavar="K",
        help="truncated BPTT: each J_t's gradient flows back K steps only (the terms with k > t - K)",
    )
    if out:
        p.add_argument(
            "--out", "-o", type=Path, default=default(Path(DEFAULT_OUT)), metavar="DIR", help="default: ./out"
        )
        p.add_argument("--force", action="store_true", default=default(False), help="overwrite files not made by bptt")


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="bptt",
        description="Derive BPTT gradients symbolically: a LaTeX derivation, a NumPy gradient module, and a "
        "verification of both. With no subcommand: all three for the seed RNN at T = 3.",
    )
    _common(top, top=True)
    top.add_argument("--no-pdf", action="store_true", help="do not compile the .tex with pdflatex")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_jobs(sub)
    _add_flow(sub)
    _add_cells(sub)
    _add_check(sub)
    _add_bench(sub)
    return top


def _add_jobs(sub: argparse._SubParsersAction) -> None:
    """derive (latex), emit, verify: the default job's parts."""
    for name, aliases, text in (
        ("derive", ["latex"], "write the LaTeX derivation (.tex, and .pdf with --pdf)"),
        ("emit", [], "write the NumPy gradient module (.py)"),
        ("verify", [], "check the generated gradients; exit 1 on a mismatch"),
    ):
        p = sub.add_parser(name, aliases=aliases, help=text, description=text)
        p.add_argument("spec", nargs="?", metavar="CELL", help="a built-in cell or a .cell file (default: rnn)")
        _common(p, out=name != "verify")
        if name == "derive":
            p.add_argument("--pdf", action="store_true", help="also compile the .tex with pdflatex")
            p.add_argument("--no-pdf", action="store_true", default=argparse.SUPPRESS, help="no PDF (the default)")


def _add_flow(sub: argparse._SubParsersAction) -> None:
    flow = sub.add_parser(
        "flow",
        help="plot how the gradient flows back in time (vanishing or exploding) for a cell",
        description="the norm of dJ_T/ds_k against k, and the spectral norm of the product of one-step Jacobians "
        "ds_T/ds_k against T - k, on one seeded random sequence, for random parameters with the recurrent weights "
        "scaled, or for your own (--params); writes CELL_TT_gradient_flow.png",
    )
    flow.add_argument("spec", nargs="?", metavar="CELL", help="a built-in cell or a .cell file (default: --cell)")
    flow.add_argument("--cell", default="rnn", metavar="CELL", help="a built-in cell or a .cell file (default: rnn)")
    flow.add_argument(
        "--steps",
        "-T",
        type=_steps,
        default=FLOW_MIN_STEPS,
        metavar="T",
        help=f"1 <= T <= {MAX_STEPS} (default: {FLOW_MIN_STEPS})",
    )
    flow.add_argument(
        "--scales",
        default=None,
        metavar="S,...",
        help="factors for the recurrent weights, one curve each (default: "
        + ",".join(f"{s:g}" for s in DEFAULT_SCALES)
        + ")",
    )
    flow.add_argument(
        "--params",
        type=Path,
        default=None,
        metavar="FILE.npz",
        help="your parameters, one array per name (numpy.savez); one curve, instead of --scales",
    )
    flow.add_argument("--seed", type=_seed, default=0, metavar="N", help="the random sequence (and parameters)")
    flow.add_argument("--out", "-o", type=Path, default=Path(DEFAULT_OUT), metavar="DIR", help="default: ./out")
    flow.add_argument("--force", action="store_true", help="overwrite a file not made by bptt")


def _add_cells(sub: argparse._SubParsersAction) -> None:
    cells = sub.add_parser(
        "cells",
        help="list the built-in cells, or print one's spec",
        description="list the built-in cells, or print the spec of one (copy it to start your own)",
    )
    cells.add_argument("spec", nargs="?", metavar="CELL", help="print this built-in cell's spec file")


def _add_check(sub: argparse._SubParsersAction) -> None:
    checker = sub.add_parser(
        "check",
        help="check your own gradient code against the derivation, and say what is wrong with it",
        description="import FILE.py, call FUNCTION on seeded random problems at several T, compare its loss and "
        "gradients with the derived ones (float64), and diagnose a wrong gradient; exit 0 when all match, 1 when "
        "one does not, 2 for bad usage. The file is imported, so its top-level code runs: keep a training loop "
        "under if __name__ == '__main__'.",
    )
    checker.add_argument("target", metavar="FILE.py:FUNCTION", help="e.g. my_rnn.py:lossFun")
    checker.add_argument("spec", nargs="?", metavar="CELL", help="a built-in cell or a .cell file (default: --cell)")
    checker.add_argument(
        "--cell", default="elman", metavar="CELL", help="the cell the code implements (default: elman, min-char-rnn's)"
    )
    checker.add_argument(
        "--adapter",
        choices=("auto", "minchar", "generic"),
        default="auto",
        help="minchar: lossFun(inputs, targets, hprev), weights Wxh, Whh, Why, bh, by as globals or arguments; "
        "generic: fn(params, xs, labels, h0) -> (loss, grads); auto: by the signature",
    )
    checker.add_argument(
        "--map",
        default="",
        metavar="NAME=PARAM,...",
        help="your names for the cell's parameters, where their letters differ (Wxh is W_xh already)",
    )
    checker.add_argument(
        "--steps",
        default=",".join(map(str, CHECK_STEPS)),
        metavar="T,...",
        help=f"the sequence lengths to check at (default: {','.join(map(str, CHECK_STEPS))})",
    )


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="time the generated gradients beside the reference loop, expert NumPy and installed peers",
        description="time a full loss-and-gradients call of the seed model: the generated fast path, its "
        "by-definition path, the reference loop, an expert hoisted NumPy version, and PyTorch, JAX and "
        "autograd where installed (pip install -e '.[peers]'); medians of interleaved runs",
    )
    bench.add_argument(
        "--configs", default="S,K,M,L", metavar="NAMES", help="comma-separated, of S, K, M, L (default: all)"
    )
    bench.add_argument("--repeats", type=_steps, default=15, metavar="N", help="timed runs per implementation")
    bench.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--no-reference", action="store_true", help="skip the (slow) reference loop")
    bench.add_argument("--no-peers", action="store_true", help="skip PyTorch, JAX and autograd even where installed")
    bench.add_argument(
        "--scale",
        action="store_true",
        help="instead: derive and emit time and peak memory against T for every built-in cell, "
        "and the fast path's memory against T and B",
    )


def load_cell(arg: str) -> Cell:
    """A built-in cell by name, or a spec file by path; bad input is a ``SpecError``."""
    if arg in builtin_names():
        return load_builtin(arg)
    path = Path(arg)
    if path.suffix != ".cell" and not path.exists():
        raise SpecError(arg, 1, 1, f"no built-in cell {arg!r} ({', '.join(builtin_names())}) and no such .cell file")
    return read(path)


def list_cells(args: argparse.Namespace, out: TextIO) -> int:
    if args.spec:
        if args.spec not in builtin_names():
            raise SpecError(
                args.spec, 1, 1, f"no built-in cell {args.spec!r}; the built-ins: {', '.join(builtin_names())}"
            )
        out.write(builtin_path(args.spec).read_text(encoding="utf-8"))
        return 0
    for name in builtin_names():
        cell = load_builtin(name)
        print(f"{name:8} {cell.title}  ({builtin_path(name)})", file=out)
    return 0


# ---- the jobs ----------------------------------------------------------------------------


def _summary(derivation: Derivation) -> str:
    names = [naming.text_name(w) for w in derivation.factorized]
    counts = ", ".join(f"{derivation.term_count(w)} for {n}" for w, n in zip(derivation.factorized, names))
    eq = derivation.equivalence
    lines = []
    if derivation.blocks:  # one term per k through the stacked state; each stands for many paths
        stacked = ", ".join(f"{s.name}_t" for s in derivation.cell.states)
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


def _pairs(text: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, param = item.partition("=")
        if not sep or not name.strip().isidentifier() or not param.strip().isidentifier():
            raise CheckError(f"--map: expected NAME=PARAM pairs separated by commas, got {item!r}")
        pairs[name.strip()] = param.strip()
    return pairs


def _step_list(text: str) -> tuple[int, ...]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items or not all(re.fullmatch(r"[0-9]+", i) and 1 <= int(i) <= CHECK_MAX_STEPS for i in items):
        raise CheckError(f"--steps: expected integers from 1 to {CHECK_MAX_STEPS} separated by commas, got {text!r}")
    return tuple(sorted({int(i) for i in items}))


def run_check(args: argparse.Namespace, out: TextIO) -> int:
    cell = load_cell(args.spec or args.cell)
    report = check(args.target, cell, args.adapter, _pairs(args.map), _step_list(args.steps))
    print(format_report(report), file=out)
    return 0 if report.passed else 1


class UsageError(Exception):
    """Bad input to a command that is not a spec, a check or a destination; the message is for the user."""


def _scales(text: str) -> tuple[float, ...]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    try:
        scales = tuple(float(i) for i in items)
    except ValueError:
        scales = ()
    if not scales or not all(math.isfinite(x) and x > 0 for x in scales):
        raise UsageError(f"--scales: expected positive numbers separated by commas, got {text!r}")
    return scales


def _load_params(path: Path) -> dict[str, np.ndarray]:
    """Arrays by name from a .npz file; pickled objects are refused (nothing in the file is run)."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise UsageError(f"{path}: expected a .npz file of named arrays (numpy.savez), got one array")
        with data:
            return {name: data[name] for name in data.files}
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"{path}: not a .npz file of numeric arrays ({e or 'empty'})") from None
    except MemoryError:
        raise UsageError(f"{path}: an array in it is too large to load") from None


def run_flow(args: argparse.Namespace, out: TextIO) -> int:
    cell = load_cell(args.spec or args.cell)
    if args.params is not None and args.scales is not None:
        raise UsageError("--scales scales random parameters; with --params there is one curve, of yours")
    params = _load_params(args.params) if args.params is not None else None
    scales = _scales(args.scales) if args.scales is not None else DEFAULT_SCALES
    path = args.out / f"{naming.file_stem(cell.name, args.steps)}_gradient_flow.png"  # not the documents' figure
    check_writable([path], args.force)
    try:
        flows = flow_curves(cell, args.steps, scales, seed=args.seed, params=params)
    except ValueError as e:  # the parameters do not fit the cell
        raise UsageError(f"{args.params}: {e}") from None
    write_all({path: render_png(flows)}, args.force)
    print(f"bptt-derive: gradient flow of {cell.title}, T = {args.steps}, J_T back to every s_k", file=out)
    width = max(len(f.label) for f in flows)
    for f in flows:
        print(
            f"{f.label:{width}}  |dJ_T/ds_T| {f.grad_norm[-1]:.2e}  |dJ_T/ds_0| {f.grad_norm[0]:.2e}  "
            f"|ds_T/ds_0| {f.jacobian_norm[0]:.2e}  {trend(f)}",
            file=out,
        )
    print(f"wrote {path}", file=out)
    return 0


def run_bench(args: argparse.Namespace, out: TextIO) -> int:
    from derive.tools import (
        bench,
        scale,  # only the benchmark needs them
    )

    if args.scale:
        print(scale.main(str(args.json) if args.json else None), file=out)
        if args.json:
            print(f"wrote {args.json}", file=out)
        return 0
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in bench.CONFIGS]
    if unknown or not names:
        wanted = ", ".join(bench.CONFIGS)
        print(f"bptt: error: --configs: expected some of {wanted}, got {args.configs!r}", file=sys.stderr)
        return 2
    json_path = str(args.json) if args.json else None
    print(bench.main(names, args.repeats, json_path, not args.no_reference, not args.no_peers), file=out)
    if args.json:
        print(f"wrote {args.json}", file=out)
    return 0


@dataclass(frozen=True)
class Plan:
    """What a derive, emit or verify job (or the default, all three) writes, known before it derives."""

    job: str  # "all", "derive", "emit" or "verify"
    stem: str  # the files' name without suffix: rnn_T3
    paths: dict[str, Path]  # by suffix, for the jobs that write: ".tex", ".md", ..., ".py", ".pdf"
    documents: bool  # the .tex, .md, .html and their two figures, which come together
    module: bool
    pdf: bool

    @property
    def destinations(self) -> list[Path]:
        wanted = [*(DOCUMENTS if self.documents else ()), *((".py",) if self.module else ())]
        wanted += [".pdf"] if self.pdf else []
        return [self.paths[suffix] for suffix in wanted]


DOCUMENTS = (".tex", ".md", ".html", FIGURES["flow"], FIGURES["graph"])


def plan(args: argparse.Namespace, cell: Cell) -> Plan:
    job = {"latex": "derive", None: "all"}.get(args.command, args.command)
    stem = naming.file_stem(cell.name, args.steps, args.truncate)
    paths = {} if job == "verify" else {s: args.out / f"{stem}{s}" for s in (*DOCUMENTS, ".py", ".pdf")}
    documents = job in ("all", "derive")
    pdf = documents and not args.no_pdf and (args.pdf if job == "derive" else True)
    return Plan(job, stem, paths, documents, job in ("all", "emit"), pdf)


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
    if job.module:  # nothing is written that was not run: poisoned arrays, finite differences, by definition
        with progress.stage("checking the module (poisoned arrays, finite differences)"):
            self_check(load_module(source, job.stem))
    report = None
    if job.job != "emit":
        with progress.stage("verifying (reference loop, finite differences, SymPy)"):
            report = verified(derivation, source)
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
        targets[job.paths[".py"]] = source
    write_all(targets, args.force)
    for path in targets:
        print(f"wrote {path}", file=out)
    status = 0
    if job.pdf:
        assert figure is not None
        status = _pdf(job.paths[".tex"], str(targets[job.paths[".tex"]]), figure, progress, out)
    verdict = _verification(report, out) if report is not None else 0
    return verdict or status


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


HANDLERS = {"cells": list_cells, "bench": run_bench, "check": run_check, "flow": run_flow}


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return HANDLERS.get(args.command, run_job)(args, out or sys.stdout)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (OutputError, SpecError, CheckError, UsageError) as e:
        print(f"bptt: error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:  # a cell the tool cannot derive yet: say so, in one line, where
        where = getattr(e, "where", None)
        print(f"bptt: error: {where + ': ' if where else ''}not supported yet: {e}", file=sys.stderr)
        return 2
    except SelfCheckError as e:  # our bug, not the user's: exit 1, as a failed verification
        print(f"bptt: error: {SELF_CHECK_FAILED}: {e}. {REPORT_IT}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bptt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (bptt ... | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
