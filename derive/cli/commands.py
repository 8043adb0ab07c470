"""The handlers of bptt cells, check, flow and bench, and how a cell is named on the command line."""

from __future__ import annotations

import argparse
import math
import re
import zipfile
from pathlib import Path
from typing import TextIO

import numpy as np

from derive.emit.render import check_writable, write_all
from derive.ir import naming
from derive.ir.cell import Cell, builtin_names, builtin_path, load_builtin
from derive.spec.lexer import SpecError
from derive.spec.parser import read
from derive.tools.check.load import CheckError
from derive.tools.check.report import CHECK_MAX_STEPS, check, format_report
from derive.tools.flow.flow import DEFAULT_SCALES, flow_curves, trend
from derive.tools.flow.plot import render_png


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
    report = check(args.target, cell, _pairs(args.map), _step_list(args.steps), args.truncate, args.run_file)
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


def _pick(text: str, known, option: str) -> list[str]:
    """The comma-separated names of ``text``, each one of ``known``; a ``UsageError`` otherwise."""
    items = [n.strip() for n in text.split(",") if n.strip()]
    if not items or any(n not in known for n in items):
        raise UsageError(f"{option}: expected some of {', '.join(known)}, got {text!r}")
    return items


def _bench_configs(configs: str | None, models: str | None, table=None, model_names=None, default=None) -> list[str]:
    """The configurations ``--configs`` and ``--models`` select, in the benchmark's order: of the NumPy
    benchmark's, or of ``table`` (each with a ``.model`` of ``model_names``; ``default`` without --configs)."""
    from derive.tools.bench import CONFIGS, MODELS

    table, model_names = (CONFIGS, MODELS) if table is None else (table, model_names)
    chosen = _pick(configs, table, "--configs") if configs is not None else list(default or table)
    kept = _pick(models, model_names, "--models") if models is not None else list(model_names)
    selected = [n for n in chosen if table[n].model in kept]
    if not selected:
        raise UsageError(f"--configs {configs} and --models {models} select no configuration")
    return selected


def run_bench(args: argparse.Namespace, out: TextIO) -> int:
    from derive.tools import bench, scale  # only the benchmark needs them

    if args.target != "numpy":
        return _bench_target(args, out)
    if args.scale:
        print(scale.main(str(args.json) if args.json else None), file=out)
        if args.json:
            print(f"wrote {args.json}", file=out)
        return 0
    names = _bench_configs(args.configs, args.models)
    dtypes = None if args.dtype is None else ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    options = bench.Options(args.repeats, not args.no_reference, not args.no_peers)
    print(bench.main(names, dtypes, options, str(args.json) if args.json else None), file=out)
    if args.json:
        print(f"wrote {args.json}", file=out)
    return 0


def _bench_target(args: argparse.Namespace, out: TextIO) -> int:
    """bptt bench --target torch|jax: the emitted framework module beside the framework's own ways."""
    import importlib.util

    if args.scale:
        raise UsageError("--scale measures the derivation itself: it takes no --target")
    if importlib.util.find_spec(args.target) is None:
        raise UsageError(f"--target {args.target}: {args.target} is not installed (pip install -e '.[peers]')")
    from derive.tools.bench import targets

    names = _bench_configs(args.configs, args.models, targets.CONFIGS, targets.MODELS, targets.DEFAULT[args.target])
    dtypes = None if args.dtype in (None, "both") else [args.dtype]
    json_path = str(args.json) if args.json else None
    print(targets.main(args.target, names, dtypes, args.repeats, json_path), file=out)
    if args.json:
        print(f"wrote {args.json}", file=out)
    return 0
