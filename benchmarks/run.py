"""Run pmkit's benchmarks: ``python benchmarks/run.py [NAME ...] [--quick] [--json FILE]``.

``make bench`` runs every group. Groups live in ``benchmarks/bench_*.py``;
the harness (timing: median of at least 5 runs after a warm-up; table; JSON)
is ``benchmarks/harness.py``. ``--list`` lists the groups.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import main

if __name__ == "__main__":
    sys.exit(main())
