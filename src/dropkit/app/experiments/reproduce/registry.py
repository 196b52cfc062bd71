"""The registry of claims: each claim module registers its function with :func:`claim`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = ["Verdict", "ClaimResult", "Claim", "claim", "CLAIMS", "CLAIMS_BY_NAME"]


class Verdict(str, Enum):
    """How a measured number stands to the published one (rules on docs/REPRODUCTIONS.md)."""

    REPRODUCED = "reproduced"
    DIRECTION = "direction reproduced"
    INCONCLUSIVE = "inconclusive"  # the interval covers both no effect and the published one
    CONTRADICTED = "contradicted"  # the interval excludes the published direction

    def __str__(self) -> str:
        return self.value


@dataclass
class ClaimResult:
    """What a claim measured. The claim builds it with keywords; the runner fills in
    ``claim``, ``description`` and ``mode``."""

    setting: str
    dropkit: str  # our number(s), with spread
    published: str  # the published number(s), with the source
    verdict: Verdict
    why: str  # one sentence
    power: str = ""  # what the run can resolve (stats.power), beside the verdict
    numbers: dict[str, Any] = field(default_factory=dict)
    figure: str | None = None
    paired: str = ""  # the same difference, paired over the test examples (reported only)
    table: str = ""  # a Markdown table of the claim's rows, when it has several
    claim: str = ""
    description: str = ""
    mode: str = ""


ClaimFn = Callable[[bool, Path], ClaimResult]


@dataclass(frozen=True)
class Claim:
    name: str
    description: str
    run: ClaimFn
    fast: bool  # its quick run takes seconds: CI runs it
    # why it cannot run on this machine (data the user fetches is missing), or None
    needs: Callable[[], str | None] = lambda: None


CLAIMS: list[Claim] = []  # in registration order: the order of --list and of the page
CLAIMS_BY_NAME: dict[str, Claim] = {}


def claim(name: str, description: str, *, fast: bool = False,
          needs: Callable[[], str | None] | None = None) -> Callable[[ClaimFn], ClaimFn]:
    """Register ``fn(quick, out) -> ClaimResult`` as the claim ``name``; ``needs()`` says
    why it cannot run here (None when it can)."""

    def register(fn: ClaimFn) -> ClaimFn:
        if name in CLAIMS_BY_NAME:
            raise ValueError(f"claim: {name!r} is registered twice")
        CLAIMS.append(Claim(name, description, fn, fast, needs or (lambda: None)))
        CLAIMS_BY_NAME[name] = CLAIMS[-1]
        return fn

    return register
