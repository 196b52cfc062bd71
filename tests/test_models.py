import pytest
import torch

import dropkit.nn as dn
from dropkit.app.models import MODELS, MLPWithDropout, build_model
from dropkit.errors import UsageError


class TestMLPWithDropout:
    def test_layout_of_the_lesson(self) -> None:
        m = MLPWithDropout()
        drops = [mod for mod in m.modules() if isinstance(mod, dn.Dropout)]
        assert [d.p for d in drops] == [0.2, 0.5, 0.5]
        assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
        assert isinstance(m.net[-1], torch.nn.Linear)  # no dropout after the output

    def test_train_varies_eval_is_deterministic(self) -> None:
        m = MLPWithDropout(hidden_size=32)
        x = torch.randn(2, 784)
        assert not torch.equal(m(x), m(x))
        m.eval()
        assert torch.equal(m(x), m(x))


class TestBuildModel:
    def test_by_name(self) -> None:

        for name in ("mlp", "mlp-dropconnect"):
            m = build_model(name, n_features=12, n_outputs=3, hidden=8)
            assert m(torch.randn(2, 12)).shape == (2, 3)
        cnn = build_model("cnn", n_features=64, n_outputs=10, image_shape=(1, 8, 8), hidden=8)
        assert cnn(torch.randn(2, 64)).shape == (2, 10)
        reg = build_model("mlp", n_features=5, n_outputs=0, regression=True)
        assert reg(torch.randn(2, 5)).shape[0] == 2
        assert set(MODELS) >= {"mlp", "cnn", "cnn-element"}
        with pytest.raises(UsageError, match=r"^build_model: expected `model` to be one of"):
            build_model("rnn", n_features=3, n_outputs=2)
        with pytest.raises(UsageError, match=r"`model` 'cnn' needs images"):
            build_model("cnn", n_features=3, n_outputs=2)
        # a regression task trains the MLP alone: any other name was built as it silently
        for name in set(MODELS) - {"mlp"}:
            with pytest.raises(UsageError, match=rf"`model` '{name}' has no regression form"):
                build_model(name, n_features=3, n_outputs=0, regression=True,
                            image_shape=(1, 1, 3))
