"""``python -m tasks``: the operator's command line (tasks/ops/cli.py)."""

import sys

from tasks.ops.cli import main

sys.exit(main())
