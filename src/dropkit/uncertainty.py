"""Uncertainty and calibration measures, at their public path.

``import dropkit.uncertainty`` gives the module ``dropkit.inference.uncertainty`` itself, where they
live in the package's layers (the same object: patching one patches both).
"""

import sys

from dropkit.inference.uncertainty import *  # noqa: F403 - the public names, for type checkers
from dropkit.inference.uncertainty import __all__  # noqa: F401

sys.modules[__name__] = sys.modules["dropkit.inference.uncertainty"]
