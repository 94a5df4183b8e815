"""Print the resampling side-by-side tables (the same code as ``voxwire bench --only resample``).

python bench/resample_table.py [--quick]
"""

from __future__ import annotations

import sys

from voxwire.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "resample", *sys.argv[1:]]))
