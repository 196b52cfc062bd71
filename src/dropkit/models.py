"""Reference networks of the lesson, built from :mod:`dropkit.nn`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dropkit.nn import Dropout

__all__ = ["MLPWithDropout"]


class MLPWithDropout(nn.Module):
    """The lesson's MLP: input dropout, then Linear-ReLU-Dropout per hidden layer, then a Linear.

    Srivastava et al. 2014 (section 6.1.1) drop inputs at 0.2 and hidden units at 0.5.

    Args:
        input_size: features per example. Default: 784 (a flattened 28x28 digit).
        hidden_size: units per hidden layer. Default: 1024.
        num_classes: outputs. Default: 10.
        dropout_rate: drop probability after each hidden layer. Default: 0.5.
        input_dropout: drop probability of the inputs. Default: 0.2.
        num_hidden: number of hidden layers. Default: 2.
        generator: keyword-only source of randomness for every dropout.

    Shape:
        ``(N, input_size)`` to ``(N, num_classes)``.
    """

    def __init__(
        self,
        input_size: int = 784,
        hidden_size: int = 1024,
        num_classes: int = 10,
        dropout_rate: float = 0.5,
        input_dropout: float = 0.2,
        num_hidden: int = 2,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [Dropout(input_dropout, generator=generator)]
        width = input_size
        for _ in range(num_hidden):
            layers += [
                nn.Linear(width, hidden_size),
                nn.ReLU(),
                Dropout(dropout_rate, generator=generator),  # after the activation
            ]
            width = hidden_size
        layers.append(nn.Linear(width, num_classes))  # no dropout on the output
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))
