"""EarlyStopping: stops at the right epoch on scripted losses, resumes from its state."""

from __future__ import annotations

import math

import pytest

from dropkit.app.experiments.early_stopping import EarlyStopping


@pytest.mark.parametrize(("losses", "patience", "min_delta", "stop", "best"), [
    ([5, 4, 3, 2, 1], 2, 0.0, None, 5),  # always improving: never stops
    ([5, 4, 4, 4, 1], 2, 0.0, 4, 2),  # equal is no improvement
    ([5, 4, 3.95, 3.9, 3.0], 2, 0.1, 4, 2),  # gains below min_delta do not count
    ([5, math.nan, math.nan], 2, 0.0, 3, 1),  # NaN never improves
    ([3, 4, 2, 5, 6, 7], 3, 0.0, 6, 3),  # an improvement resets the count
])
def test_stops_where_the_rule_says(losses, patience, min_delta, stop, best) -> None:
    es = EarlyStopping(patience, min_delta)
    flags = [es.update(epoch, loss) for epoch, loss in enumerate(losses, 1)]
    assert es.stopped_epoch == stop and es.best_epoch == best
    first = flags.index(True) + 1 if True in flags else None
    assert first == stop


def test_a_state_round_trip_resumes_the_count_exactly() -> None:
    losses = [5, 4, 4.5, 4.2, 4.1, 3.0, 3.5, 3.6]
    straight = EarlyStopping(3)
    flags = [straight.update(e, v) for e, v in enumerate(losses, 1)]
    split = EarlyStopping(3)
    for e, v in enumerate(losses[:4], 1):
        split.update(e, v)
    resumed = EarlyStopping.from_state(split.state_dict())
    assert flags[4:] == [resumed.update(e, v) for e, v in enumerate(losses[4:], 5)]
    assert resumed.state_dict() == straight.state_dict()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"patience": 0}, ValueError, "expected `patience` to be an int >= 1"),
    ({"patience": 2.5}, TypeError, "expected `patience` to be an int"),
    ({"patience": 2, "min_delta": -1}, ValueError, "expected `min_delta` to be a number >= 0"),
])
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)
