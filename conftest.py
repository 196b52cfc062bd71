"""Repository-wide pytest set-up: the docstring examples in src/ run as doctests with
``torch`` and ``dropkit`` in their namespace, as their prose assumes."""

import os

# Triton's kernels run in its interpreter on a CPU-only machine; the flag must be set
# before Triton is first imported, which collecting src/dropkit/seeded may do.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import dropkit  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace.update(torch=torch, dropkit=dropkit)
