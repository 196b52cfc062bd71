"""Dropout-rate schedules, at their public path.

``import dropkit.schedules`` gives the module ``dropkit.tools.schedules`` itself, where they
live in the package's layers (the same object: patching one patches both).
"""

import sys

from dropkit.tools.schedules import *  # noqa: F403 - the public names, for type checkers
from dropkit.tools.schedules import __all__  # noqa: F401

sys.modules[__name__] = sys.modules["dropkit.tools.schedules"]
