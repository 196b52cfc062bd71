"""Pure dropout functions: ``y = f(x, p, training, *, generator)``.

Every function validates its arguments, returns its input unchanged when
``training=False`` or ``p == 0``, and draws its noise through :mod:`dropkit.mask`.
"""

from dropkit.functional.alpha_dropout import alpha_dropout, feature_alpha_dropout
from dropkit.functional.concrete_dropout import concrete_dropout
from dropkit.functional.drop_block import drop_block2d, drop_block3d
from dropkit.functional.drop_connect import drop_connect
from dropkit.functional.drop_path import drop_path
from dropkit.functional.dropout import dropout, dropout1d, dropout2d, dropout3d
from dropkit.functional.embedding_dropout import embedding_dropout
from dropkit.functional.gaussian import gaussian_dropout, gaussian_noise
from dropkit.functional.locked_dropout import locked_dropout

__all__ = [
    "alpha_dropout",
    "concrete_dropout",
    "drop_block2d",
    "drop_block3d",
    "drop_connect",
    "drop_path",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "embedding_dropout",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "gaussian_noise",
    "locked_dropout",
]
