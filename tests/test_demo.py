import math

import pytest

from dropkit.app.demo import EXAMPLE_ACTIVATIONS, run_demo


def _run(seed: int = 0):
    lines: list[str] = []
    return run_demo(seed, out=lines.append), "\n".join(lines)


class TestDemo:
    def test_four_neuron_example_is_mask_times_two(self) -> None:
        results, text = _run()
        for mask, values in results["iterations"]:
            expected = [2 * a * m for a, m in zip(EXAMPLE_ACTIVATIONS, mask, strict=True)]
            assert values == pytest.approx(expected, rel=1e-6)  # float32 of 1.2 is not 1.2
        assert "test (eval)        no mask       ->  [2.0, 3.5, 1.2, 4.1]" in text

    def test_fractions_lie_in_their_printed_bands(self) -> None:
        results, _ = _run()
        for row in results["fractions"]:
            assert abs(row["zeros"] - row["p"]) <= row["half_band"]
            # y = x m / keep, x ~ U(0.5, 1.5): E[y] = 1, Var[y] = E[x^2] / keep - 1
            std = math.sqrt((1 + 1 / 12) / (1 - row["p"]) - 1)
            assert abs(row["out_mean"] - 1.0) <= 5 * std / 1000  # sqrt(10^6) = 1000

    def test_train_varies_eval_identical(self) -> None:
        results, _ = _run()
        assert results["train_std"] > 0
        assert results["eval_std"] == 0

    def test_spatial_dropout_drops_whole_channels_only(self) -> None:
        results, _ = _run()
        assert results["channels_partial"] == 0
        # Binomial(128, 0.3): mean 38.4, std 5.18
        assert abs(results["channels_dropped"] - 38.4) <= 5 * 5.18

    def test_seed_makes_it_reproducible(self) -> None:
        assert _run(3)[1] == _run(3)[1]
        assert _run(3)[1] != _run(4)[1]
