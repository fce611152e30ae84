"""``python -m bench.leaderboard DIR ...`` (the ``bench-leaderboard`` command)."""

import sys

from bench.leaderboard.cli import main

sys.exit(main())
