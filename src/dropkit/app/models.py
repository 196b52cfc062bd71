"""The reference networks of the experiments, built from :mod:`dropkit.nn`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dropkit.errors import UsageError
from dropkit.nn import Dropout

__all__ = ["MLPWithDropout", "ConvNetWithDropout", "RegressionMLP", "RowLSTM", "ResidualMLP",
           "MODELS", "build_model"]

#: The names of the experiments' models (the MLP, with DropConnect instead of dropout,
#: the CNN with spatial or element dropout, the CNN with dropout before BatchNorm, and an
#: LSTM reading images row by row with variational or naive recurrent dropout, and a
#: residual MLP whose blocks LayerDrop can skip).
MODELS = ("mlp", "cnn", "mlp-dropconnect", "cnn-element", "cnn-dropout-before-bn", "lstm",
          "lstm-naive", "resmlp")


class MLPWithDropout(nn.Module):
    """The classic dropout MLP (Srivastava et al. 2014's 784-1024-1024-10 by default): input
    dropout, then Linear-ReLU-Dropout per hidden layer, then a Linear.

    Srivastava et al. 2014 (section 6.1.1) drop inputs at 0.2 and hidden units at 0.5.

    Args:
        input_size: features per example. Default: 784 (a flattened 28x28 digit).
        hidden_size: units per hidden layer. Default: 1024.
        num_classes: outputs. Default: 10.
        dropout_rate: drop probability after each hidden layer. Default: 0.5.
        input_dropout: drop probability of the inputs. Default: 0.2.
        num_hidden: number of hidden layers. Default: 2.
        dropconnect: hidden layers drop weights (DropConnect, rate ``dropout_rate``)
            instead of units. Default: False.
        generator: keyword-only source of randomness for every dropout.
        backend: keyword-only backend of the elementwise dropouts ("torch" or "seeded";
            see :class:`dropkit.nn.Dropout`). Default: "torch".

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
        dropconnect: bool = False,
        generator: torch.Generator | None = None,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        from dropkit.nn import DropConnectLinear

        layers: list[nn.Module] = [Dropout(input_dropout, generator=generator, backend=backend)]
        width = input_size
        for _ in range(num_hidden):
            if dropconnect:  # Wan et al. 2013: drop the weights into each hidden layer instead
                layers += [DropConnectLinear(width, hidden_size, p=dropout_rate,
                                             generator=generator, backend=backend), nn.ReLU()]
            else:
                layers += [
                    nn.Linear(width, hidden_size),
                    nn.ReLU(),
                    Dropout(dropout_rate, generator=generator, backend=backend),  # after ReLU
                ]
            width = hidden_size
        layers.append(nn.Linear(width, num_classes))  # no dropout on the output
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class ConvNetWithDropout(nn.Module):
    """A small CNN with spatial dropout after its convolutions (Tompson et al. 2015).

    Two blocks of conv - BatchNorm - ReLU - max-pool, then spatial dropout (whole feature
    maps, Tompson et al. 2015) after the last BatchNorm, so BatchNorm never sees
    dropout's variance (Li et al. 2019), then a hidden layer with element dropout.

    Args:
        in_channels: input channels. Default: 1.
        num_classes: outputs. Default: 10.
        dropout_rate: drop probability of the hidden layer. Default: 0.5.
        spatial_dropout: drop probability of feature maps. Default: 0.1.
        width: channels of the first block (the second has twice as many). Default: 16.
        image_shape: ``(C, H, W)`` to reshape flat rows into images.
        spatial: drop whole feature maps (Dropout2d); False: single activations.
        dropout_before_bn: also drop after the first block, so that dropout feeds the
            second BatchNorm (the pitfall Li et al. 2019 measure). Default: False.
        generator: keyword-only source of randomness for every dropout.
        backend: keyword-only backend of the elementwise dropouts ("torch" or "seeded";
            see :class:`dropkit.nn.Dropout`). Default: "torch".

    Shape:
        ``(N, C, H, W)`` (or ``(N, C * H * W)`` with ``image_shape``) to ``(N, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        dropout_rate: float = 0.5,
        spatial_dropout: float = 0.1,
        width: int = 16,
        image_shape: tuple[int, ...] | None = None,
        *,
        spatial: bool = True,
        dropout_before_bn: bool = False,
        generator: torch.Generator | None = None,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        from dropkit.nn import Dropout2d

        self.image_shape = image_shape

        def feature_drop(p: float) -> nn.Module:  # whole maps, or single activations
            if spatial:
                return Dropout2d(p, generator=generator)
            return Dropout(p, generator=generator, backend=backend)

        first = [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                 nn.MaxPool2d(2)]
        if dropout_before_bn:  # the pitfall, for Li et al. 2019's comparison
            first.append(feature_drop(spatial_dropout))
        self.features = nn.Sequential(
            *first,
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveMaxPool2d(4),  # (N, 2w, 4, 4) whatever the image size
            feature_drop(spatial_dropout),  # after the last BatchNorm
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(),
            Dropout(dropout_rate, generator=generator, backend=backend),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2 and self.image_shape is not None:
            x = x.view(-1, *self.image_shape)  # (N, C, H, W) from flat rows
        return self.classifier(self.features(x))


class RegressionMLP(nn.Module):
    """One hidden layer with dropout on its input and output: the MC-dropout regression
    network of Gal & Ghahramani 2016 (UCI experiments: 50 hidden units)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 50,
        dropout_rate: float = 0.05,
        input_dropout: float = 0.0,
        *,
        generator: torch.Generator | None = None,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Dropout(input_dropout, generator=generator, backend=backend),
            nn.Linear(input_size, hidden_size), nn.ReLU(),
            Dropout(dropout_rate, generator=generator, backend=backend),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


class RowLSTM(nn.Module):
    """An LSTM that reads an image row by row (sequential MNIST: 28 steps of 28 pixels)
    and classifies from its last output, with the recurrent dropout of Gal & Ghahramani
    2016 (:class:`dropkit.nn.VariationalLSTM`).

    Args:
        image_shape: ``(1, rows, cols)`` or ``(rows, cols)``: each row is one time step.
        num_classes: outputs.
        hidden_size: LSTM units. Default: 128.
        recurrent_dropout: drop probability of the recurrent state.
        input_dropout: drop probability of the input rows' pixels.
        mask_per: ``"sequence"`` (variational: one mask per sequence over all steps) or
            ``"step"`` (naive: a fresh mask at every step). Default: ``"sequence"``.
        generator: keyword-only source of randomness.
    """

    def __init__(self, image_shape: tuple[int, ...], num_classes: int = 10,
                 hidden_size: int = 128, recurrent_dropout: float = 0.25,
                 input_dropout: float = 0.0, mask_per: str = "sequence", *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        from dropkit.nn import VariationalLSTM

        self.rows, self.cols = image_shape[-2], image_shape[-1]
        self.rnn = VariationalLSTM(self.cols, hidden_size, batch_first=True,
                                   dropout=input_dropout, recurrent_dropout=recurrent_dropout,
                                   mask_per=mask_per, generator=generator)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x.reshape(-1, self.rows, self.cols))
        return self.head(out[:, -1])


class ResidualBlock(nn.Module):
    """``x + dropout(relu(linear(x)))``: a block that keeps its input's shape."""

    def __init__(self, width: int, dropout: float, *, generator: torch.Generator | None = None,
                 backend: str = "torch") -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.drop = Dropout(dropout, generator=generator, backend=backend)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(torch.relu(self.fc(x)))


class ResidualMLP(nn.Module):
    """Input dropout, a Linear-ReLU stem, ``depth`` residual blocks inside a
    :class:`dropkit.nn.LayerDrop` (rate ``layerdrop``, the paper's constant rate), and
    a Linear head: the model LayerDrop's claim trains and prunes.

    Shape:
        ``(N, input_size)`` to ``(N, num_classes)``.
    """

    def __init__(self, input_size: int = 784, hidden_size: int = 256, num_classes: int = 10,
                 depth: int = 8, dropout_rate: float = 0.1, input_dropout: float = 0.0,
                 layerdrop: float = 0.0, *, generator: torch.Generator | None = None,
                 backend: str = "torch") -> None:
        super().__init__()
        from dropkit.nn import LayerDrop

        self.input_dropout = Dropout(input_dropout, generator=generator, backend=backend)
        self.stem = nn.Linear(input_size, hidden_size)
        self.blocks = LayerDrop([ResidualBlock(hidden_size, dropout_rate, generator=generator,
                                               backend=backend) for _ in range(depth)],
                                layerdrop, generator=generator)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.stem(self.input_dropout(x.flatten(1))))
        return self.head(self.blocks(h))


RESIDUAL_DEPTH = 8


def build_model(
    name: str,
    *,
    n_features: int,
    n_outputs: int,
    image_shape: tuple[int, ...] | None = None,
    regression: bool = False,
    hidden: int = 1024,
    dropout: float = 0.5,
    input_dropout: float = 0.2,
    generator: torch.Generator | None = None,
    backend: str = "torch",
    layerdrop: float = 0.0,
) -> nn.Module:
    """The model called ``name`` (one of :data:`MODELS`) for data of that shape.

    A regression task trains ``"mlp"`` as :class:`RegressionMLP` (at most 50 hidden units,
    as in Gal & Ghahramani 2016's UCI protocol; every other name is refused there). Every
    dropout draws from ``generator``, and the elementwise ones (dropout, DropConnect) run
    on ``backend`` ("torch" or "seeded", see :class:`dropkit.nn.Dropout`). The LSTMs
    (:class:`RowLSTM`, at most 128 units) read ``dropout`` as the recurrent state's rate
    and ``input_dropout`` as the input pixels'. ``resmlp`` (:class:`ResidualMLP`,
    ``RESIDUAL_DEPTH`` blocks) is the one model ``layerdrop`` applies to. Each name is one
    entry of a table of builders, with what it needs (images) or offers (a regression
    form).
    """
    if name not in MODELS:
        raise UsageError(f"build_model: expected `model` to be one of {', '.join(MODELS)}, "
                         f"got {name!r}", "model")
    spec = _SPECS[name]
    if layerdrop and name != "resmlp":
        raise UsageError(f"build_model: `layerdrop` skips residual blocks, which only model "
                         f"'resmlp' has, got model={name!r}", "layerdrop")
    if regression and not spec.regression:
        raise UsageError(f"build_model: `model` {name!r} has no regression form; a regression "
                         "task trains 'mlp' (RegressionMLP)", "model")
    if spec.images and image_shape is None:
        raise UsageError(f"build_model: `model` {name!r} needs images, and this data set "
                         "has none", "model")
    return spec.build(_Args(n_features, n_outputs, image_shape, regression, hidden, dropout,
                            input_dropout, generator, backend, layerdrop))


@dataclass(frozen=True)
class _Args:
    """What :func:`build_model` was given, for the builder of one model."""

    n_features: int
    n_outputs: int
    image_shape: tuple[int, ...] | None
    regression: bool
    hidden: int
    dropout: float
    input_dropout: float
    generator: torch.Generator | None
    backend: str
    layerdrop: float


@dataclass(frozen=True)
class _Spec:
    """How a model is built, and what it needs: images, or a regression form."""

    build: Callable[[_Args], nn.Module]
    images: bool = False
    regression: bool = False


def _mlp(a: _Args, dropconnect: bool = False) -> nn.Module:
    if a.regression:  # at most 50 hidden units, as in Gal & Ghahramani 2016's UCI protocol
        return RegressionMLP(a.n_features, min(a.hidden, 50), a.dropout, a.input_dropout,
                             generator=a.generator, backend=a.backend)
    return MLPWithDropout(a.n_features, a.hidden, a.n_outputs, a.dropout, a.input_dropout,
                          dropconnect=dropconnect, generator=a.generator, backend=a.backend)


def _cnn(a: _Args, spatial: bool = True, before_bn: bool = False) -> nn.Module:
    assert a.image_shape is not None  # checked by build_model
    return ConvNetWithDropout(a.image_shape[0], a.n_outputs, a.dropout, a.input_dropout,
                              image_shape=a.image_shape, spatial=spatial,
                              dropout_before_bn=before_bn, generator=a.generator,
                              backend=a.backend)


def _lstm(a: _Args, mask_per: str) -> nn.Module:
    assert a.image_shape is not None  # checked by build_model
    return RowLSTM(a.image_shape, a.n_outputs, min(a.hidden, 128), a.dropout, a.input_dropout,
                   mask_per, generator=a.generator)


def _resmlp(a: _Args) -> nn.Module:
    return ResidualMLP(a.n_features, a.hidden, a.n_outputs, RESIDUAL_DEPTH, a.dropout,
                       a.input_dropout, a.layerdrop, generator=a.generator, backend=a.backend)


_SPECS: dict[str, _Spec] = {
    "mlp": _Spec(_mlp, regression=True),
    "mlp-dropconnect": _Spec(lambda a: _mlp(a, dropconnect=True)),
    "cnn": _Spec(_cnn, images=True),
    "cnn-element": _Spec(lambda a: _cnn(a, spatial=False), images=True),
    "cnn-dropout-before-bn": _Spec(lambda a: _cnn(a, before_bn=True), images=True),
    "lstm": _Spec(lambda a: _lstm(a, "sequence"), images=True),
    "lstm-naive": _Spec(lambda a: _lstm(a, "step"), images=True),
    "resmlp": _Spec(_resmlp),
}
