"""``dropkit reproduce``: classic claims about dropout, measured and set beside the
published number.

Run::

    dropkit reproduce --list
    dropkit reproduce --quick                      # every claim, small settings (< 5 min)
    dropkit reproduce mnist5k-gap uci-boston       # chosen claims, full settings
    dropkit reproduce --out runs/reproduce --docs docs/REPRODUCTIONS.md

Each claim writes ``OUT/<claim>/result.json`` and a PNG; ``--docs`` is regenerated from
every result in OUT. A claim that does not reproduce is reported as such, with the
reason: nothing is tuned until it passes.

The package: :mod:`.registry` (claims register with ``@claim``), :mod:`.stats` (the
verdicts' statistics), :mod:`.runs` (trained runs the claims share), :mod:`.docs` (the
page), one module per claim, and the runner here.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from dropkit.app.experiments.io import atomic_write_json, check_writable_dir
from dropkit.errors import UsageError

# The claims register in this order: the order of --list and of the page.
# isort: off
from dropkit.app.experiments.reproduce import mask_statistics  # noqa: F401 - registers
from dropkit.app.experiments.reproduce import mnist5k_gap  # noqa: F401
from dropkit.app.experiments.reproduce import rate_sweep  # noqa: F401
from dropkit.app.experiments.reproduce import data_size  # noqa: F401
from dropkit.app.experiments.reproduce import mc_vs_weight_scaling  # noqa: F401
from dropkit.app.experiments.reproduce import uci_boston  # noqa: F401
from dropkit.app.experiments.reproduce import variance_shift  # noqa: F401
from dropkit.app.experiments.reproduce import dropconnect  # noqa: F401
from dropkit.app.experiments.reproduce import spatial  # noqa: F401
from dropkit.app.experiments.reproduce import early_dropout  # noqa: F401
from dropkit.app.experiments.reproduce import variational_rnn  # noqa: F401
from dropkit.app.experiments.reproduce import early_stopping  # noqa: F401
from dropkit.app.experiments.reproduce import augmentation  # noqa: F401
from dropkit.app.experiments.reproduce import ensemble_vs_dropout  # noqa: F401
from dropkit.app.experiments.reproduce import active_learning  # noqa: F401 - two claims
from dropkit.app.experiments.reproduce import rdrop  # noqa: F401
from dropkit.app.experiments.reproduce import layerdrop  # noqa: F401
from dropkit.app.experiments.reproduce import uci_regression  # noqa: F401
from dropkit.app.experiments.reproduce import trust  # noqa: F401 - four claims
# isort: on
from dropkit.app.experiments.reproduce.docs import write_docs
from dropkit.app.experiments.reproduce.registry import (
    CLAIMS,
    CLAIMS_BY_NAME,
    Claim,
    ClaimResult,
    Verdict,
)

__all__ = ["CLAIMS", "CLAIMS_BY_NAME", "Claim", "ClaimResult", "Verdict", "run_reproduce",
           "write_docs"]


def run_reproduce(
    claims: Sequence[str] = (),
    *,
    quick: bool = False,
    out: str | Path = "runs/reproduce",
    docs: str | Path | None = "docs/REPRODUCTIONS.md",
    log: Callable[[str], None] = print,
) -> list[ClaimResult]:
    """Run the named claims (all when none are named) and write their results."""
    unknown = [c for c in claims if c not in CLAIMS_BY_NAME]
    if unknown:
        raise UsageError(f"reproduce: unknown claim(s) {unknown}; `dropkit reproduce --list` "
                         "lists them", "claims")
    out = check_writable_dir(out)
    if docs is not None:  # the page is written after every claim ran: prove it can be
        if Path(docs).is_dir():
            raise UsageError(f"reproduce: expected `docs` to name a file, got the folder "
                             f"{str(docs)!r}", "docs")
        check_writable_dir(Path(docs).parent, "docs")
    chosen = [CLAIMS_BY_NAME[c] for c in claims] if claims else CLAIMS
    unable = {c.name: why for c in chosen if (why := c.needs()) is not None}
    if claims and unable:  # asked for by name: refused before any claim runs
        name, why = next(iter(unable.items()))
        raise UsageError(f"reproduce: claim {name!r} cannot run here: {why}", "claims")
    results = []
    for claim in chosen:
        if claim.name in unable:  # every claim: the others run, this one says why not
            log(f"[{claim.name}] skipped: {unable[claim.name]}")
            continue
        folder = check_writable_dir(out / claim.name / ("quick" if quick else "full"))
        log(f"[{claim.name}] {claim.description} ...")
        start = time.perf_counter()
        result = replace(claim.run(quick, folder), claim=claim.name,
                         description=claim.description, mode="quick" if quick else "full")
        payload = {**asdict(result), "verdict": result.verdict.value,
                   "seconds": time.perf_counter() - start,
                   "date": datetime.date.today().isoformat()}
        atomic_write_json(out / claim.name / "result.json", payload)
        log(f"  dropkit:   {result.dropkit}")
        log(f"  published: {result.published}")
        log(f"  verdict:   {result.verdict}: {result.why} ({payload['seconds']:.0f} s)")
        results.append(result)
    if docs is not None:
        log(f"wrote {write_docs(out, Path(docs))}")
    return results

