"""Dropout modules: each stores its arguments and forwards to :mod:`dropkit.functional`."""

from dropkit.nn.alpha_dropout import AlphaDropout, FeatureAlphaDropout
from dropkit.nn.concrete_dropout import ConcreteDropout, concrete_regularization
from dropkit.nn.drop_block import DropBlock2d, DropBlock3d
from dropkit.nn.drop_connect import DropConnect, DropConnectLinear
from dropkit.nn.drop_path import DropPath
from dropkit.nn.dropout import Dropout, Dropout1d, Dropout2d, Dropout3d
from dropkit.nn.embedding_dropout import EmbeddingDropout
from dropkit.nn.gaussian import GaussianDropout, GaussianNoise
from dropkit.nn.layer_drop import LayerDrop
from dropkit.nn.locked_dropout import LockedDropout
from dropkit.nn.variational_rnn import VariationalGRU, VariationalLSTM

__all__ = [
    "AlphaDropout",
    "ConcreteDropout",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnect",
    "DropConnectLinear",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "LayerDrop",
    "LockedDropout",
    "VariationalGRU",
    "VariationalLSTM",
    "concrete_regularization",
]
