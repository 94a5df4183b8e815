"""``python -m voxwire`` is the ``voxwire`` command."""

import sys

from voxwire.cli import main

sys.exit(main())
