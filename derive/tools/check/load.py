"""``bptt check``, step one: the user's function, found and imported from ``FILE.py:FUNCTION``.

The user's file is run as Python imports a script's module, with its prints and warnings kept
off the report.  Whatever goes wrong on the user's side (no such file, a syntax error, an
exception at import or in the call) becomes a ``CheckError``: one line naming the file and, where
there is one, the line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import re
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# the ``derive`` package's folder: frames from files under it are ours, not the user's
PACKAGE_FOLDER = Path(__file__).resolve().parents[2]  # derive/tools/check/load.py -> derive/


class CheckError(Exception):
    """Bad usage: the one line a user reads (exit status 2)."""


def parse_target(text: str) -> tuple[Path, str]:
    path, sep, name = text.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise CheckError(f"{text}: expected FILE.py:FUNCTION, e.g. my_rnn.py:lossFun")
    return Path(path), name


def load_function(path: Path, name: str) -> tuple[types.ModuleType, Callable[..., Any]]:
    """Import the user's file (running it, as Python does) and return (module, function)."""
    if not path.is_file():
        raise CheckError(f"{path}: no such file")
    module_name = f"bptt_check_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CheckError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # as Python imports a script's module: registered by name (dataclasses and pickle look it up
    # there), its folder first on the path (for the modules beside it)
    sys.modules[module_name] = module
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        with quiet():
            spec.loader.exec_module(module)
    except SyntaxError as e:
        raise CheckError(f"{path}:{e.lineno}:{e.offset}: {python2(e) or e.msg}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the user's module-level code: anything may happen, SystemExit too
        raise CheckError(f"{path}: importing it raised {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if fn is None:
        found = sorted(
            n
            for n, v in vars(module).items()
            if inspect.isfunction(v) and v.__module__ == module_name and not n.startswith("_")
        )
        raise CheckError(f"{path}: no function {name!r}" + (f" (found: {', '.join(found)})" if found else ""))
    if not callable(fn):
        raise CheckError(f"{path}: {name!r} is not a function")
    return module, fn


# what Python 3 says of a line that only Python 2 reads, and the words we say instead
PYTHON2_SIGNS = (
    (re.compile(r"Missing parentheses in call to 'print'"), "a print statement"),
    (re.compile(r"Missing parentheses in call to 'exec'"), "an exec statement"),
    (re.compile(r"multiple exception types must be parenthesized"), "except E, e:"),
    (re.compile(r"leading zeros in decimal integer literals"), "an octal literal such as 0777"),
)
PYTHON2_LINES = (  # lines Python 3 calls only "invalid syntax"
    (re.compile(r"^\s*raise\s+\w[\w.]*\s*,"), "raise E, message"),
    (re.compile(r"^\s*print\s*>>"), "print >> file"),
    (re.compile(r"<>"), "the <> operator"),
    (re.compile(r"`[^`]+`"), "backquotes for repr"),
)


def python2(e: SyntaxError) -> str | None:
    """What the error says when the file is Python 2: that, what gave it away, and what to do."""
    line = e.text or ""
    found = next((what for sign, what in PYTHON2_SIGNS if sign.search(e.msg)), None)
    found = found or next((what for sign, what in PYTHON2_LINES if sign.search(line)), None)
    if found is None:
        return None
    advice = "check a copy converted to it (2to3 does that, up to Python 3.12)"
    return f"this file is Python 2 ({found}); bptt check reads Python 3: {advice}"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The user's prints (a training loop's progress, say) kept off our report."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield


def user_frame(e: BaseException) -> str:
    """`` (file:line)`` of the innermost frame of the exception that is not ours."""
    tb, found = e.__traceback__, ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(str(PACKAGE_FOLDER)):
            found = f" ({filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return found
