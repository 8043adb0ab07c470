"""The command line: ``bptt`` (the default job), ``bptt derive``, ``bptt emit``, ``bptt verify``.

Bad input is answered with one line on stderr and exit status 2, and nothing is
written; a failed verification exits 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import NoReturn, TextIO

from . import naming
from .cell import BUILTIN
from .outputs import compile_pdf, module_source, tex_source, verified
from .pipeline import Derivation, derive
from .render import OutputError, check_writable, write_all
from .verify import format_table

DEFAULT_STEPS = 3
DEFAULT_OUT = "out"


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _steps(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _common(p: argparse.ArgumentParser, out: bool = True, top: bool = False) -> None:
    """The options every command takes; a subcommand's defaults leave the top level's values alone."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    cells = sorted(BUILTIN)
    p.add_argument("--cell", default=default("rnn"), choices=cells, help="the built-in cell (default: rnn)")
    p.add_argument(
        "--steps", "-T", type=_steps, default=default(DEFAULT_STEPS), metavar="T", help="T >= 1 (default: 3)"
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
    for name, aliases, text in (
        ("derive", ["latex"], "write the LaTeX derivation (.tex, and .pdf with --pdf)"),
        ("emit", [], "write the NumPy gradient module (.py)"),
        ("verify", [], "check the generated gradients; exit 1 on a mismatch"),
    ):
        p = sub.add_parser(name, aliases=aliases, help=text, description=text)
        _common(p, out=name != "verify")
        if name == "derive":
            p.add_argument("--pdf", action="store_true", help="also compile the .tex with pdflatex")
    return top


# ---- the jobs ----------------------------------------------------------------------------


def _summary(derivation: Derivation) -> str:
    counts = ", ".join(f"{e.count()} for {naming.text_name(w)}" for w, e in derivation.expansions.items())
    eq = derivation.equivalence
    return (
        f"chain-rule terms: {counts}\n"
        f"recurrence = expanded sums: {eq.delta_identities} delta and {eq.gradient_identities} gradient identities "
        f"hold (SymPy)"
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    cell = BUILTIN[args.cell]()
    steps = args.steps
    command = args.command or "all"
    stem = naming.module_filename(cell.name, steps)[:-3]
    targets: dict[Path, str] = {}
    if command in ("all", "derive", "latex", "emit"):
        # check the destinations before the (slower) derivation: fail fast, write nothing
        planned = {}
        if command != "emit":
            planned[args.out / f"{stem}.tex"] = ""
            if command == "all" and not args.no_pdf or getattr(args, "pdf", False):
                planned[args.out / f"{stem}.pdf"] = ""
        if command in ("all", "emit"):
            planned[args.out / f"{stem}.py"] = ""
        check_writable(planned, args.force)

    print(f"bptt-derive: {cell.title}, T = {steps}", file=out)
    derivation = derive(cell, steps)
    print(_summary(derivation), file=out)
    source = module_source(derivation, cell)
    report = None
    if command in ("all", "derive", "latex", "verify"):
        report = verified(derivation, source)
    if command in ("all", "derive", "latex"):
        assert report is not None
        targets[args.out / f"{stem}.tex"] = tex_source(derivation, report, cell)
    if command in ("all", "emit"):
        targets[args.out / f"{stem}.py"] = source
    if targets:
        write_all(targets, args.force)
        for path in targets:
            print(f"wrote {path}", file=out)
    tex_path = args.out / f"{stem}.tex"
    if tex_path in targets and (command == "all" and not args.no_pdf or getattr(args, "pdf", False)):
        pdf, what = compile_pdf(tex_path, targets[tex_path])
        print(f"wrote {pdf} ({what})" if pdf else what, file=out)
    if report is not None:
        print("\nverification: max relative error, float64", file=out)
        print(format_table(report), file=out)
        if not report.passed:
            for failure in report.failures():
                print(f"MISMATCH {failure}", file=out)
            return 1
        print("all checks pass", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (UsageError, OutputError) as e:
        print(f"bptt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bptt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
