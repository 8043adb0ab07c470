"""``bptt check``, step one: the user's function, found in ``FILE.py:FUNCTION``.

A script that holds a hand-written lossFun usually does its work at the top level too: it reads
its data file, its command line, and trains in a ``while True:`` loop.  So by default the file is
not imported but its definitions are taken out of it: its top-level statements are run one at a
time into a module of its own, and only those that define things are run (imports, ``def``,
``class``, ``try``/``if`` blocks of those, and assignments that do no I/O; see ``NOT_AT_LOAD``).
Each skipped statement, and each one that raised (``vocab_size = len(chars)`` once ``chars`` was
skipped), is recorded in one line.  With ``run=True`` (``bptt check --import``) the file is
imported whole, as before.

The user's code runs as ``run.user_code`` runs it (quiet, its own ``sys.argv``, a time limit);
whatever goes wrong on the user's side (no such file, a syntax error, a name not there) becomes a
``CheckError``: one line naming the file and, where there is one, the line.
"""

from __future__ import annotations
import __future__

import ast
import hashlib
import importlib.util
import inspect
import keyword
import re
import sys
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from derive.tools.check.run import USER_TIME_LIMIT, CheckError, innermost, said, user_code
from derive.tools.check.run import call_user as call_user  # the rest of the check imports these from here
from derive.tools.check.run import quiet as quiet
from derive.tools.check.run import user_frame as user_frame

TARGET_FORMS = "FILE.py:FUNCTION, FILE.py:CLASS.METHOD or FILE.py:FORWARD,BACKWARD"

# What a top-level assignment must not mention to be run while the file loads, by what running it
# would do (the words the skip list gives).  A mention is a name anywhere ("open"), a dotted name
# ("sys.argv"), a call of a method of that name on anything (".read()"; ".load()" is pickle.load,
# np.load, json.load, whatever numpy is imported as), or a call of anything in a module ("os.*()").
# The mentions of a reason are separated by spaces; a statement that makes several is given the
# first of their reasons.
NOT_AT_LOAD = {
    "reads a file": "open .open() .read() .readlines() .load() .loadtxt() .genfromtxt() read_csv .read_csv()",
    "writes a file": ".write()",
    "reads the keyboard": "input sys.stdin",
    "reads the command line": "sys.argv argparse",
    "prints": "print",
    "exits": "exit quit sys.exit",
    "calls the operating system": "os.*()",
    "runs a program": "subprocess",
    "downloads": "urllib urlopen requests",
}
# why the other kinds of top-level statement are not run: they do the script's work, not define it
NOT_RUN = {
    "For": "a loop",
    "AsyncFor": "a loop",
    "While": "a loop",
    "Call": "a call",
    "Expr": "an expression",
    "With": "a with block",
    "AsyncWith": "a with block",
    "__main__": "the __main__ block",
    "If": "an if",
    "Try": "a try block",
}
NOT_A_DEFINITION = "not a definition"  # assert, del, global, raise, match, ...
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass)
ASSIGNMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign)
TRIES = (ast.Try, getattr(ast, "TryStar", ast.Try))  # try/except* from Python 3.11
SHOWN = 60  # characters of a skipped statement's first line that its record shows


@dataclass(frozen=True)
class Target:
    """What ``bptt check`` checks: a file, and in it one function or a forward and a backward.

    Each name is split on "." (``("lossFun",)``, ``("RNN", "train")``)."""

    path: Path
    names: tuple[tuple[str, ...], ...]

    @property
    def text(self) -> str:
        return f"{self.path}:{self.after_colon}"

    @property
    def after_colon(self) -> str:
        return ",".join(".".join(n) for n in self.names)


@dataclass(frozen=True)
class Skip:
    """A top-level statement the loader did not run (or that raised), and the names it would bind."""

    line: int
    text: str  # its first line, shortened
    why: str
    names: frozenset[str]

    def __str__(self) -> str:
        return f"line {self.line}: {self.text} ({self.why})"


@dataclass(frozen=True)
class Loaded:
    """The user's file as a module, and what of it did not run."""

    module: types.ModuleType
    path: Path
    skips: tuple[Skip, ...] = ()

    @property
    def skipped(self) -> list[str]:
        return [str(s) for s in self.skips]

    @property
    def ran_everything(self) -> bool:
        return not self.skips


@dataclass(frozen=True)
class Found:
    """What a target's name is in the file: the object, and the class when it is a method."""

    owner: type | None
    obj: Any
    name: str  # as the target spells it: lossFun, RNN.train


def parse_target(text: str) -> Target:
    path, sep, spec = text.rpartition(":")
    names = tuple(tuple(part.strip() for part in name.split(".")) for name in spec.split(","))
    if not sep or not path or len(names) > 2 or not all(_is_name(n) for n in names):
        raise CheckError(f"{text}: expected {TARGET_FORMS}, e.g. min_char_rnn.py:lossFun")
    return Target(Path(path), names)


def _is_name(dotted: tuple[str, ...]) -> bool:
    return len(dotted) <= 2 and all(p.isidentifier() and not keyword.iskeyword(p) for p in dotted)


def load_file(path: Path, run: bool = False, timeout: float = USER_TIME_LIMIT) -> Loaded:
    """The user's file as a module: its definitions only, or with ``run`` all of it, imported."""
    tree, source = _parse(path)
    module = _new_module(path)
    if run:
        _import(module, path, tree, timeout)
        return Loaded(module, path)
    flags = _future_flags(tree)
    own = {s.name for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    skips = []
    for stmt in tree.body:
        why = _why_not_run(stmt) or _calls_own(stmt, own) or _run(stmt, module, path, flags, timeout)
        if why:
            skips.append(Skip(stmt.lineno, _first_line(source, stmt), why, frozenset(_names_bound(stmt))))
    module.__doc__ = ast.get_docstring(tree)
    return Loaded(module, path, tuple(skips))


def _parse(path: Path) -> tuple[ast.Module, str]:
    if not path.is_file():
        raise CheckError(f"{path}: no such file")
    try:
        source = importlib.util.decode_source(path.read_bytes())
        with warnings.catch_warnings():  # an invalid escape sequence is the user's business
            warnings.simplefilter("ignore")
            return ast.parse(source, str(path)), source
    except SyntaxError as e:
        where = f"{path}:{e.lineno}:{e.offset}" if e.lineno else str(path)
        raise CheckError(f"{where}: {python2(e) or e.msg}") from None
    except (UnicodeDecodeError, ValueError) as e:  # ValueError: a null byte, before Python 3.12
        raise CheckError(f"{path}: not Python source ({said(e)})") from None


def _new_module(path: Path) -> types.ModuleType:
    """An empty module for the file, set up as Python runs a script from the cwd.

    Registered by a private name (dataclasses and pickle look a class's module up there); the
    file's folder and the cwd first on the path, so that ``from common.np import *`` finds
    ``common/`` beside the script or where the user runs it from."""
    name = f"bptt_check_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"  # the same every run
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CheckError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    for folder in (str(Path.cwd()), str(path.resolve().parent)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    return module


def _import(module: types.ModuleType, path: Path, tree: ast.Module, timeout: float) -> None:
    """Run the whole file in the module, as importing it would (compiled here, to name it as typed)."""
    try:
        code = compile(tree, str(path), "exec", dont_inherit=True)
        with user_code(path, timeout):
            exec(code, module.__dict__)
    except (CheckError, KeyboardInterrupt):
        raise
    except BaseException as e:  # the user's module-level code: anything may happen, SystemExit too
        frame = innermost(e, path.parent)
        where = f"{frame.file}:{frame.line}" if frame else str(path)
        raise CheckError(f"{where}: importing it raised {said(e)}") from e


def _why_not_run(stmt: ast.stmt) -> str | None:
    """Why the loader does not run a top-level statement; None when it does."""
    if _defines_only(stmt):
        return None
    if isinstance(stmt, ASSIGNMENTS):
        mentions = _mentions(stmt)
        return next((why for why, these in NOT_AT_LOAD.items() if mentions.intersection(these.split())), None)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return None  # a docstring, or a string as a comment
    if isinstance(stmt, ast.If) and _is_main_test(stmt.test):
        return NOT_RUN["__main__"]
    call = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
    return NOT_RUN.get("Call" if call else type(stmt).__name__, NOT_A_DEFINITION)


def _calls_own(stmt: ast.stmt, own: set[str]) -> str | None:
    """Why an assignment that calls a function or class of the file (``history = train(10**9)``,
    ``model = RNN(...)``) is not run: it does the script's work, training perhaps."""
    if not isinstance(stmt, ASSIGNMENTS):
        return None
    called = [n.func.id for n in ast.walk(stmt) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    name = next((c for c in called if c in own), None)
    return None if name is None else f"calls {name}, defined in the file: run with --import"


def _defines_only(stmt: ast.stmt) -> bool:
    """Imports, defs, classes, and try or if blocks of nothing else (``try: import cPickle ...``)."""
    if isinstance(stmt, DEFINITIONS):
        return True
    if isinstance(stmt, ast.If) and not _is_main_test(stmt.test) and not _io_in(stmt.test):
        return all(map(_defines_only, stmt.body + stmt.orelse))
    if isinstance(stmt, TRIES):
        handled = [s for h in stmt.handlers for s in h.body]
        return all(map(_defines_only, stmt.body + handled + stmt.orelse + stmt.finalbody))
    return False


def _io_in(node: ast.AST) -> bool:
    return any(_mentions(node).intersection(these.split()) for these in NOT_AT_LOAD.values())


def _is_main_test(test: ast.expr) -> bool:
    names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    strings = {n.value for n in ast.walk(test) if isinstance(n, ast.Constant)}
    return "__name__" in names and "__main__" in strings


def _mentions(node: ast.AST) -> set[str]:
    """What ``node`` mentions, spelled as NOT_AT_LOAD spells them."""
    found = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            found.add(n.id)
        elif isinstance(n, ast.Attribute) and (dotted := _dotted(n)):
            found.add(dotted)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            found.add(f".{n.func.attr}()")
            if dotted := _dotted(n.func):
                found.add(f"{dotted.split('.')[0]}.*()")
    return found


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for an attribute of attributes of a name; None when it starts elsewhere (a call)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)):
        return f"{base}.{node.attr}"
    return None


def _run(stmt: ast.stmt, module: types.ModuleType, path: Path, flags: int, timeout: float) -> str | None:
    """Run one statement in the module; what it raised, if it did (a time-out is a CheckError)."""
    try:
        code = compile(ast.Module(body=[stmt], type_ignores=[]), str(path), "exec", flags=flags, dont_inherit=True)
        with user_code(path, timeout):
            exec(code, module.__dict__)
    except CheckError as e:  # the time limit: the statement is skipped, and said so
        return str(e).split(": ", 1)[-1]
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit too: parser.parse_args() on a command line it does not like
        return f"raised {said(e)}"
    return None


def _future_flags(tree: ast.Module) -> int:
    """The ``from __future__`` features of the file, for each statement compiled alone."""
    futures = [s for s in tree.body if isinstance(s, ast.ImportFrom) and s.module == "__future__"]
    features = {a.name for s in futures for a in s.names}
    return sum(getattr(getattr(__future__, f, None), "compiler_flag", 0) for f in features)


def _names_bound(node: ast.AST) -> Iterator[str]:
    """The global names a statement binds (not those inside the functions it defines)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name
        return
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        yield node.id
    elif isinstance(node, ast.alias):
        yield (node.asname or node.name).split(".")[0]
    for child in ast.iter_child_nodes(node):
        yield from _names_bound(child)


def _first_line(source: str, stmt: ast.stmt) -> str:
    first, *more = (ast.get_source_segment(source, stmt) or "").splitlines() or [""]
    if len(first) > SHOWN:
        return first[: SHOWN - 3] + "..."
    return first + " ..." if more else first


def resolve(loaded: Loaded, dotted: tuple[str, ...]) -> Found:
    """What ``dotted`` names in the file: a function (or class), or with CLASS.METHOD a method of a class."""
    first, *rest = dotted
    kind = "class" if rest else "function"
    if first not in vars(loaded.module):
        raise CheckError(_missing(loaded, kind, first))
    obj = vars(loaded.module)[first]
    if rest and not isinstance(obj, type):
        raise CheckError(f"{loaded.path}: {first!r} is not a class (it is {_a(obj)})")
    if not rest:
        if isinstance(obj, type):
            methods = ", ".join(f"{first}.{m}" for m in _methods(obj) if not m.startswith("_"))
            raise CheckError(f"{loaded.path}: {first!r} is a class: name one of its methods ({methods})")
        if not callable(obj):
            raise CheckError(f"{loaded.path}: {first!r} is not a function (it is {_a(obj)})")
        return Found(None, obj, first)
    fn = getattr(obj, rest[0], None)
    if not callable(fn):
        raise CheckError(f"{loaded.path}: class {first} has no method {rest[0]!r} (it has: {', '.join(_methods(obj))})")
    return Found(obj, fn, ".".join(dotted))


def _missing(loaded: Loaded, kind: str, name: str) -> str:
    skip = next((s for s in loaded.skips if name in s.names), None)
    if skip is not None:
        return (
            f"{loaded.path}:{skip.line}: no {kind} {name!r}: the statement here that defines it was not run "
            f"({skip.why}); --import runs the whole file"
        )
    defined = _defined(loaded.module)
    return f"{loaded.path}: no {kind} {name!r} " + (
        f"(it defines: {', '.join(defined)})" if defined else "(it defines no functions or classes)"
    )


def _defined(module: types.ModuleType) -> list[str]:
    """The public functions and classes defined in the module's file, with the classes' methods, in order."""
    names = []
    for name, value in vars(module).items():
        own = inspect.isfunction(value) or isinstance(value, type)
        if own and value.__module__ == module.__name__ and not name.startswith("_"):
            names.append(name)
            if isinstance(value, type):
                names += [f"{name}.{m}" for m in _methods(value) if not m.startswith("_")]
    return names


def _methods(cls: type) -> list[str]:
    return [n for n, v in vars(cls).items() if inspect.isfunction(v) or isinstance(v, (staticmethod, classmethod))]


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


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
