"""``python -m derive``: the ``bptt`` command."""

import sys

from derive.cli import main

sys.exit(main())
