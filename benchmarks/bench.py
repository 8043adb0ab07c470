"""Run the benchmark from a clone: ``python benchmarks/bench.py [--configs S,K] [--json results.json]``.

The same as ``bptt bench`` (see derive/tools/bench/ for what it times and how).
"""

import sys

from derive.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
