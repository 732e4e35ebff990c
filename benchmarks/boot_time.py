"""The boot benchmark's former name, kept so that older instructions still work: it runs
``benchmarks/bench.py`` with the same options (see docs/benchmarks.md).

    scripts/run python benchmarks/boot_time.py --sizes 1 3 5 9 --runs 5
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import main  # found through the line above

if __name__ == "__main__":
    sys.exit(main())
