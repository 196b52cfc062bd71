"""Sphinx configuration: the API reference from the docstrings, the guides from the README.

Built strictly and offline by ``make docs`` (``-W -n``: a warning or a broken
cross-reference fails the build) and by ``tests/test_docs.py``.
"""

from __future__ import annotations

import dropkit

project = "dropkit"
author = "the dropkit developers"
release = version = dropkit.__version__
copyright = "2026, the dropkit developers"  # noqa: A001 - Sphinx's name

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "REPRODUCTIONS.md"]  # included by guides/reproductions.md
html_theme = "furo"
html_title = f"dropkit {release}"

# Docstrings are Google style with reST roles (:func:, :class:) that Sphinx resolves.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # not torch's "Define the computation performed at every call"
myst_heading_anchors = 3

# Strict: every reference must resolve, except names of other projects (offline, no
# intersphinx inventories to resolve them against).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|numpy|np|lightning|pl|transformers|collections|typing|types|"
               r"pathlib|os)\b.*"),
    (r"py:.*", r"(Tensor|Module|Generator|Callable|Sequence|Mapping|Iterable|Iterator|Any)"),
    (r"py:.*", r"(TrainingArguments|TrainerState|TrainerControl|Output|ScheduleArg|Run)"),
]
