"""dropkit: dropout regularization for PyTorch.

The whole dropout family behind one mask primitive (:mod:`dropkit.mask`): pure
functions in :mod:`dropkit.functional`, modules in :mod:`dropkit.nn`, a NumPy
reference with forward and backward in :mod:`dropkit.reference`, one registry of dropout sites
(:func:`dropout_sites`: modules, functional and attention dropout, foreign models), rate
control (:func:`find_dropout`, :func:`set_rate`, :mod:`dropkit.schedules`,
:class:`DropoutScheduler`), diagnostics of the classic pitfalls (:func:`diagnose`,
:func:`variance_shift`, :func:`inference_guard`), and Monte Carlo dropout
(:func:`mc_mode`, :func:`mc_predict`, :func:`patch`, :mod:`dropkit.uncertainty`,
:mod:`dropkit.acquisition` for active learning).
Masks survive recomputation: ``torch.utils.checkpoint`` replays the forward's masks, and
:class:`SeedPlan` makes every step's masks a function of (seed, step) alone.
"""

from dropkit import acquisition, functional, mask, nn, schedules, uncertainty
from dropkit.diagnostics import Finding, diagnose, inference_guard, variance_shift
from dropkit.mc import mc_mode, mc_predict
from dropkit.nn.concrete_dropout import concrete_regularization
from dropkit.patch import patch, unpatch
from dropkit.rates import find_dropout, set_rate
from dropkit.rdrop import rdrop_forward, rdrop_loss
from dropkit.scheduler import DropoutScheduler
from dropkit.seed_plan import SeedPlan
from dropkit.sites import Site, dropout_sites

__version__ = "0.1.0"

__all__ = [
    "DropoutScheduler",
    "Finding",
    "SeedPlan",
    "Site",
    "__version__",
    "acquisition",
    "concrete_regularization",
    "diagnose",
    "dropout_sites",
    "find_dropout",
    "functional",
    "inference_guard",
    "mask",
    "mc_mode",
    "mc_predict",
    "nn",
    "patch",
    "rdrop_forward",
    "rdrop_loss",
    "schedules",
    "set_rate",
    "uncertainty",
    "unpatch",
    "variance_shift",
]
