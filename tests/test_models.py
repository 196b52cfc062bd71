import torch

import dropkit.nn as dn
from dropkit.models import MLPWithDropout


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
