"""``python -m dropkit``: the same as the ``dropkit`` command."""

import sys

from dropkit.app.cli import main

sys.exit(main())
