"""``python -m camloc``: the command-line interface (see :func:`camloc.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
