"""What the memory can hold, asked before a command starts its work.

A network too wide for the machine (``--hidden 100000000``) or more Monte Carlo samples
than their probabilities can fit in (``--samples 1000000000``) is refused in one line
naming the flag, where it would otherwise fail deep inside an allocation, or swap until
killed.
"""

from __future__ import annotations

import os

import torch

from dropkit.errors import UsageError

__all__ = ["available_bytes", "check_fits_memory", "FLOAT_BYTES"]

FLOAT_BYTES = 4  # float32, the experiments' dtype


def available_bytes() -> int | None:
    """Bytes the experiments' device can still allocate: the GPU's free memory where the
    experiments run on one, else the kernel's ``MemAvailable`` (None where unknown)."""
    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_fits_memory(command: str, need: int, what: str, argument: str) -> None:
    """Raise a :class:`~dropkit.errors.UsageError` naming ``argument`` when ``need`` bytes
    exceed what is available; ``what`` says what needs them."""
    free = available_bytes()
    if free is not None and need > free:
        raise UsageError(f"{command}: {what} needs about {_gib(need)} of memory and "
                         f"{_gib(free)} is available; expected a smaller `{argument}`", argument)
