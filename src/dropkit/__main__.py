"""``python -m dropkit``: the same as the ``dropkit`` command."""

import sys

from dropkit.cli import main

sys.exit(main())
