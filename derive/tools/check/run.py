"""``bptt check``, under every step: running the user's code as a guest.

Whatever of the user's runs, a top-level statement while the file loads or a call the check makes,
runs inside ``user_code``: its prints and warnings kept off the report, ``sys.argv`` what
``python FILE.py`` would give it (and ours again afterwards), and a time limit, so that a training
loop that never ends stops with a line saying where it was.  What goes wrong there becomes a
``CheckError``: one line that names the user's file and line, never numpy's or ours.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
import sysconfig
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# seconds any one piece of the user's code may take: a top-level statement, or one call
USER_TIME_LIMIT = 20.0

# the ``derive`` package's folder: frames from files under it are ours, not the user's
PACKAGE_FOLDER = Path(__file__).resolve().parents[2]  # derive/tools/check/run.py -> derive/
# where code lives that is nobody's own script: ours, Python's standard library, installed packages
NOT_THE_USERS = (
    PACKAGE_FOLDER,
    *sorted({Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}),
)
INSTALLED = {"site-packages", "dist-packages"}  # a folder by these names holds installed packages anywhere


class CheckError(Exception):
    """Bad usage: the one line a user reads (exit status 2)."""


class _TimeUp(BaseException):
    """The alarm, raised in the user's code: a BaseException, so that ``except Exception`` there lets it by."""


@dataclass(frozen=True)
class Frame:
    """A place in the user's code: file (as the code names it), line and function."""

    file: str
    line: int
    function: str


def call_user(
    fn: Callable[..., Any], *args: Any, label: str = "", timeout: float = USER_TIME_LIMIT, **kwargs: Any
) -> Any:
    """``fn(*args, **kwargs)`` for a function of the user's, each call the check makes.

    Any exception but KeyboardInterrupt (SystemExit too) becomes ``label (FILE:LINE) raised Type:
    message``, its ``__cause__`` the exception itself (an adapter may explain a KeyError, say)."""
    label = label or getattr(fn, "__name__", "the function")
    file = _file_of(fn)
    try:
        with user_code(file or Path(label), timeout):  # sys.argv[0]: the file, or for want of one the label
            return fn(*args, **kwargs)
    except (CheckError, KeyboardInterrupt):
        raise
    except BaseException as e:
        raise CheckError(f"{label}{user_frame(e, file.parent if file else None)} raised {said(e)}") from e


@contextlib.contextmanager
def user_code(path: Path, timeout: float = USER_TIME_LIMIT) -> Iterator[None]:
    """Run the body as the user's code from the file ``path``: quiet, its own sys.argv, timed."""
    try:
        with quiet(), script_argv(path), time_limit(timeout):
            yield
    except _TimeUp as e:
        raise CheckError(stopped(e, timeout, path)) from None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The user's prints (a training loop's progress, say) kept off our report."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield


@contextlib.contextmanager
def script_argv(path: Path) -> Iterator[None]:
    """``sys.argv`` as ``python FILE.py`` sets it, so that a script's ``sys.argv[1]`` sees no options of ours."""
    ours, sys.argv = sys.argv, [str(path)]
    try:
        yield
    finally:
        sys.argv = ours


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``_TimeUp`` in the body after ``seconds`` (0: never): an alarm, so only in the main thread.

    Off it (or where there is no SIGALRM) the body runs without a limit.  A timer already running
    (pytest-timeout's, say) is put back afterwards, less the time the body took."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: types.FrameType | None) -> None:
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, alarm)
    started = time.monotonic()
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3), interval)


def stopped(e: BaseException, seconds: float, path: Path) -> str:
    """``FILE:LINE: stopped after N s in FUNCTION (...)``: where the alarm found the user's code."""
    frame = innermost(e, path.parent)
    where = f"{frame.file}:{frame.line}" if frame else str(path)
    inside = "at the top level" if frame is None or frame.function == "<module>" else f"in {frame.function}"
    return f"{where}: stopped after {seconds:g} s {inside} (a loop that does not end?)"


def user_frame(e: BaseException, folder: Path | None = None) -> str:
    """`` (file:line)`` of the innermost frame of the user's in the exception, or "" if none is."""
    frame = innermost(e, folder)
    return f" ({frame.file}:{frame.line})" if frame else ""


def innermost(e: BaseException, folder: Path | None = None) -> Frame | None:
    """The innermost frame of ``e`` in the user's code: preferably under ``folder`` or the cwd."""
    frames = [Frame(f.f_code.co_filename, line, f.f_code.co_name) for f, line in traceback.walk_tb(e.__traceback__)]
    users = [f for f in frames if _is_users(Path(f.file).resolve())]
    roots = [Path.cwd().resolve(), *([folder.resolve()] if folder else [])]
    near = [f for f in users if _is_under(Path(f.file).resolve(), roots)]
    found = near or users
    return found[-1] if found else None


def said(e: BaseException) -> str:
    """``Type: message``, the message's first line only."""
    message = str(e).strip().splitlines()
    return f"{type(e).__name__}: {message[0]}" if message else type(e).__name__


def _is_users(path: Path) -> bool:
    if path.name.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    return not INSTALLED & set(path.parts) and not _is_under(path, NOT_THE_USERS)


def _is_under(path: Path, folders: Iterable[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def _file_of(fn: Callable[..., Any]) -> Path | None:
    """The file ``fn`` was defined in (a function, method or class), through its module."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    return Path(file) if file else None
