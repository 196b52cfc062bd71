"""dropkit: dropout regularization for PyTorch.

The whole dropout family behind one mask primitive (:mod:`dropkit.mask`): pure
functions in :mod:`dropkit.functional`, modules in :mod:`dropkit.nn`, a NumPy
reference with forward and backward in :mod:`dropkit.reference`, one registry of dropout sites
(:func:`dropout_sites`: modules, functional and attention dropout, foreign models), rate
control (:func:`find_dropout`, :func:`set_rate`, :mod:`dropkit.schedules`,
:class:`DropoutScheduler`), diagnostics of the classic pitfalls (:func:`diagnose`,
:func:`variance_shift`, :func:`inference_guard`), and Monte Carlo dropout
(:func:`mc_mode`, :func:`mc_predict`, :func:`mc_graph` on a GPU, :func:`patch`,
:mod:`dropkit.uncertainty`, :mod:`dropkit.acquisition` for active learning;
:func:`export_mc` and :func:`export_onnx` to serve it as one program, sampling kept on).
Masks survive recomputation: ``torch.utils.checkpoint`` replays the forward's masks, and
:class:`SeedPlan` makes every step's masks a function of (seed, step) alone.

The top level holds what acts on a whole model (:func:`concrete_regularization` sums the
regularizers of a model's :class:`~dropkit.nn.ConcreteDropout` layers); the variants
themselves live in :mod:`dropkit.functional` and :mod:`dropkit.nn`, each in one place.
Bad input anywhere raises :class:`UsageError` (a ``ValueError``) or
:class:`UsageTypeError` (also a ``TypeError``).
"""

from types import ModuleType

from dropkit import _moved, acquisition, functional, mask, nn, schedules, seeded, uncertainty
from dropkit.errors import UsageError, UsageTypeError
from dropkit.inference.export import export_mc
from dropkit.inference.graphed import MCGraph, mc_graph
from dropkit.inference.mc import mc_mode, mc_predict
from dropkit.inference.rdrop import rdrop_forward, rdrop_loss
from dropkit.inference.to_onnx import export_onnx
from dropkit.nn.concrete_dropout import concrete_regularization
from dropkit.tools.diagnostics import Finding, diagnose, inference_guard, variance_shift
from dropkit.tools.patch import is_patched, patch, unpatch
from dropkit.tools.rates import find_dropout, set_rate
from dropkit.tools.scheduler import DropoutScheduler
from dropkit.tools.seed_plan import SeedPlan
from dropkit.tools.sites import Site, dropout_sites

__version__ = "0.1.0"

_moved.install()  # the import paths of 0.1 (dropkit.mc, dropkit.experiments, ...) still work


def __getattr__(name: str) -> ModuleType:
    return _moved.attribute(name)  # dropkit.mc and the other old paths, with a warning

__all__ = [
    "DropoutScheduler",
    "Finding",
    "MCGraph",
    "SeedPlan",
    "Site",
    "UsageError",
    "UsageTypeError",
    "__version__",
    "acquisition",
    "concrete_regularization",
    "diagnose",
    "dropout_sites",
    "export_mc",
    "export_onnx",
    "find_dropout",
    "functional",
    "inference_guard",
    "is_patched",
    "mask",
    "mc_graph",
    "mc_mode",
    "mc_predict",
    "nn",
    "patch",
    "rdrop_forward",
    "rdrop_loss",
    "schedules",
    "seeded",
    "set_rate",
    "uncertainty",
    "unpatch",
    "variance_shift",
]
