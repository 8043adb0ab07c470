"""What a long run is doing, on the terminal: a line per stage as it starts, and its time when it
ends.  Only where stderr is a terminal (a log, a pipe or a test sees nothing), unless
``BPTT_PROGRESS`` is set to 1 (or to 0, to silence a terminal)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        forced = os.environ.get("BPTT_PROGRESS", "")
        self.enabled = forced == "1" if forced in ("0", "1") else self.stream.isatty()

    @contextmanager
    def stage(self, what: str) -> Iterator[None]:
        """``what`` while it runs (``bptt: verifying ...``), then ``bptt: verifying (2.1 s)``."""
        if not self.enabled:
            yield
            return
        self.stream.write(f"bptt: {what} ...")
        self.stream.flush()
        start = time.perf_counter()
        ended = "stopped"
        try:
            yield
            ended = f"{time.perf_counter() - start:.1f} s"
        finally:
            self.stream.write(f"\rbptt: {what} ({ended})\n")
            self.stream.flush()
