"""The bptt command's arguments: one function per subcommand adds its parser."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import NoReturn

from derive.derivation.pipeline import MAX_STEPS
from derive.emit.frameworks.codegen import TARGETS
from derive.tools.check.report import CHECK_STEPS
from derive.tools.flow.flow import DEFAULT_SCALES, FLOW_MIN_STEPS

DEFAULT_STEPS = 3


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
        ("emit", [], "write the gradient module (.py): NumPy, or with --target PyTorch or JAX"),
        ("verify", [], "check the generated gradients; exit 1 on a mismatch"),
    ):
        p = sub.add_parser(name, aliases=aliases, help=text, description=text)
        p.add_argument("spec", nargs="?", metavar="CELL", help="a built-in cell or a .cell file (default: rnn)")
        _common(p, out=name != "verify")
        if name in ("emit", "verify"):
            p.add_argument(
                "--target",
                choices=TARGETS,
                default="numpy",
                help="the module's framework (default: numpy); torch and jax need their extras: "
                "pip install 'bptt-derive[torch]' or '[jax]'",
            )
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
        description="load FILE.py's definitions (its training loop and I/O are not run), call your code on seeded "
        "random problems at several T with its arguments bound by name, find its conventions (layouts, weight "
        "orientation, gate order, initial state, mean or sum) by running it, compare its loss and gradients with "
        "the derived ones (float64) and diagnose a wrong gradient; exit 0 when all match, 1 when one does not, 2 "
        "for bad usage. A target is a loss function (FILE.py:lossFun, FILE.py:RNN.train) or a layer's forward and "
        "backward (FILE.py:rnn_forward,rnn_backward, FILE.py:TimeRNN.forward,TimeRNN.backward).",
    )
    checker.add_argument(
        "target", metavar="FILE.py:TARGET", help="FUNCTION, CLASS.METHOD or FORWARD,BACKWARD, e.g. my_rnn.py:lossFun"
    )
    checker.add_argument("spec", nargs="?", metavar="CELL", help="a built-in cell or a .cell file (default: --cell)")
    checker.add_argument(
        "--cell", default="elman", metavar="CELL", help="the cell the code implements (default: elman, min-char-rnn's)"
    )
    checker.add_argument(
        "--map",
        default="",
        metavar="NAME=PARAM,...",
        help="your names for the cell's parameters, where bptt check cannot tell (Wxh, Wx, Wax, Wf are found already)",
    )
    checker.add_argument(
        "--steps",
        default=",".join(map(str, CHECK_STEPS)),
        metavar="T,...",
        help=f"the sequence lengths to check at (default: {','.join(map(str, CHECK_STEPS))})",
    )
    checker.add_argument(
        "--truncate", type=_steps, default=None, metavar="K", help="check against BPTT truncated to K steps"
    )
    checker.add_argument(
        "--import",
        dest="run_file",
        action="store_true",
        help="import FILE.py whole, running its top-level code (under the time limit), instead of its definitions",
    )


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="time the generated gradients beside strong hand-written NumPy and installed peers",
        description="time a full loss-and-gradients call of the seed RNN, the LSTM and two GRUs: the generated "
        "fast path, its by-definition path, hand-written NumPy (the strongest we can write, and others), the "
        "reference loop, and PyTorch, JAX and autograd where installed (pip install -e '.[peers]'), each alone in "
        "a process of its own; medians of interleaved runs, page faults, peak memory, the BLAS kernel, the GEMM floor",
    )
    bench.add_argument(
        "--configs",
        default=None,
        metavar="NAMES",
        help="comma-separated, of S, K, M, L (seed RNN), LSTM-M, LSTM-L, GRU-M, GRU-L (the built-in gru, Cho's), "
        "TGRU-M, TGRU-L (torch.nn.GRU's formula) (default: all)",
    )
    bench.add_argument(
        "--models", default=None, metavar="NAMES", help="only the configurations of these: seed, lstm, gru, gru-torch"
    )
    bench.add_argument(
        "--dtype",
        choices=("float64", "float32", "both"),
        default=None,
        help="default: float64 for the seed RNN, both for the LSTM and the GRUs",
    )
    bench.add_argument(
        "--target",
        choices=("numpy", "torch", "jax"),
        default="numpy",
        help="numpy (default): the benchmark above; torch, jax: the emitted module of that framework beside "
        "torch.nn.LSTM/GRU and plain autograd (torch), or jit(grad) of the plain forward (jax), time and peak memory; "
        "--configs then names MODEL-SIZE, MODEL of lstm, gru-torch, indrnn, peephole-lstm, mgu and SIZE of S, M, L "
        "(default: every model at M for torch, at M and L for jax)",
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
