"""The command line: ``bptt`` (the default job), ``bptt derive``, ``bptt emit``, ``bptt verify``,
``bptt check`` (a user's own gradient code), ``bptt cells`` and ``bptt bench``.

Bad input is answered with one line on stderr and exit status 2, and nothing is
written; a failed verification, or a check that finds a wrong gradient, exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from derive.cli.commands import UsageError, list_cells, run_bench, run_check, run_flow
from derive.cli.job import run_job
from derive.cli.parser import parser
from derive.emit.render import OutputError
from derive.spec.lexer import SpecError
from derive.tools.check.load import CheckError
from derive.verify.frameworks import TargetError, TargetUnavailable
from derive.verify.selfcheck import CellNotFinite, SelfCheckError

SELF_CHECK_FAILED = "the generated module failed its self-check, so nothing was written"
REPORT_IT = "This is a bug in bptt-derive: please report it, with your .cell file"


# one handler per command; the rest (no command, derive, latex, emit, verify) is the job
HANDLERS = {"cells": list_cells, "bench": run_bench, "check": run_check, "flow": run_flow}


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the parsed command; its exit status."""
    return HANDLERS.get(args.command, run_job)(args, out or sys.stdout)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (OutputError, SpecError, CheckError, UsageError, TargetUnavailable) as e:
        print(f"bptt: error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:  # a cell the tool cannot derive yet: say so, in one line, where
        where = getattr(e, "where", None)
        print(f"bptt: error: {where + ': ' if where else ''}not supported yet: {e}", file=sys.stderr)
        return 2
    except CellNotFinite as e:  # the cell's doing: nothing to check it on
        print(f"bptt: error: {SELF_CHECK_FAILED}: {e}", file=sys.stderr)
        return 2
    except SelfCheckError as e:  # our bug, not the user's: exit 1, as a failed verification
        print(f"bptt: error: {SELF_CHECK_FAILED}: {e}. {REPORT_IT}", file=sys.stderr)
        return 1
    except TargetError as e:  # our bug, as a failed self-check
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
