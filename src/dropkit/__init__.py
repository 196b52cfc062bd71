"""dropkit: dropout regularization for PyTorch.

The whole dropout family behind one mask primitive (:mod:`dropkit.mask`): pure
functions in :mod:`dropkit.functional`, modules in :mod:`dropkit.nn`, and a NumPy
reference with forward and backward in :mod:`dropkit.reference`.
"""

from dropkit import functional, mask, nn

__version__ = "0.1.0"

__all__ = ["functional", "mask", "nn", "__version__"]
