"""Whether Triton is installed, found without importing it (importing it is slow, and
``import dropkit`` stays light): the seeded backend's kernels need it."""

import importlib.util

HAS_TRITON = importlib.util.find_spec("triton") is not None
