"""Shared, cached fixtures: derivations and generated modules per T (deriving is the slow part)."""

from __future__ import annotations

import functools
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from derive import cli
from derive.derivation.pipeline import Derivation, derive
from derive.emit import outputs
from derive.ir.cell import Cell, builtin_names, load_builtin, seed_rnn
from derive.spec.parser import read
from derive.verify.report import FD_EPS, load_module

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent  # the repository
CORPUS = TESTS / "cells"  # cells written the way researchers write them
assert len(list(CORPUS.glob("*.cell"))) >= 20, "the test corpus is missing: a parametrization over it would be empty"
USER_CODE = TESTS / "user_code"  # gradient code written in other people's styles, for bptt check
# every cell the suite runs over: the built-ins by name, the corpus as corpus/NAME
ALL_CELLS = [*builtin_names(), *sorted(f"corpus/{p.stem}" for p in CORPUS.glob("*.cell"))]


@functools.cache
def derivation(steps: int) -> Derivation:
    return derive(seed_rnn(), steps)


@functools.cache
def module_source(steps: int) -> str:
    return outputs.module_source(derivation(steps))


@functools.cache
def generated(steps: int):
    return load_module(module_source(steps), f"rnn_T{steps}")


@pytest.fixture
def seed():
    return seed_rnn()


def pdflatex(path: Path, tex: str) -> tuple[subprocess.CompletedProcess, str]:
    """Write ``tex`` to ``path`` and compile it in its folder: (the run, the log)."""
    path.write_text(tex, encoding="utf-8")
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        errors="replace",
    )
    return run, path.with_suffix(".log").read_text(errors="replace")


def fd_grad(f, arr, eps: float = FD_EPS):
    """Central finite-difference gradient of the scalar f() with respect to ``arr``, each entry
    perturbed in place and restored."""
    g = np.zeros_like(arr, dtype=np.float64)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        fp = f()
        arr[i] = old - eps
        fm = f()
        arr[i] = old
        g[i] = (fp - fm) / (2.0 * eps)
    return g


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height, from its IHDR chunk, the first after the signature."""
    assert data.startswith(PNG_SIGNATURE)
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@dataclass(frozen=True)
class Result:
    code: int | str | None
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    @property
    def wrote(self) -> set[str]:
        return {line for line in self.lines if line.startswith("wrote ")}


@pytest.fixture
def bptt(capsys):
    """``bptt(*argv)`` runs ``cli.main`` in-process and returns its exit code and captured output."""

    def invoke(*argv: object) -> Result:
        capsys.readouterr()  # drop anything printed before
        try:
            code: int | str | None = cli.main([str(a) for a in argv])
        except SystemExit as e:  # argparse exits on bad input and on --help
            code = e.code
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


def load_cell(cell: str) -> Cell:
    """A name of ALL_CELLS as its Cell."""
    return read(CORPUS / f"{cell.split('/')[1]}.cell") if cell.startswith("corpus/") else load_builtin(cell)
