"""Acquisition functions for active learning, at their public path.

``import dropkit.acquisition`` gives the module ``dropkit.inference.acquisition`` itself, where they
live in the package's layers (the same object: patching one patches both).
"""

import sys

from dropkit.inference.acquisition import *  # noqa: F403 - the public names, for type checkers
from dropkit.inference.acquisition import __all__  # noqa: F401

sys.modules[__name__] = sys.modules["dropkit.inference.acquisition"]
