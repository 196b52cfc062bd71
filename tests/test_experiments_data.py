import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dropkit.app.experiments import data as D
from dropkit.errors import UsageError

pytestmark = pytest.mark.slow  # trains models or runs subprocesses: make test runs it


def _write_idx(path: Path, array: np.ndarray) -> str:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)
    path.write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


@pytest.fixture
def idx_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A tiny MNIST-shaped IDX set: 12 train and 5 test images, written by the test."""
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 12),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 5),
    }
    hashes = {name: _write_idx(tmp_path / name, arr) for name, arr in files.items()}
    return tmp_path, hashes


class TestShippedData:
    def test_mnist5k_split_is_fixed(self) -> None:
        a, b = D.load_dataset("mnist5k"), D.load_dataset("mnist5k")
        assert a.x_train.shape == (4000, 784) and a.x_test.shape == (1000, 784)
        assert torch.equal(a.y_test, b.y_test)
        assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
        assert set(a.y_train.unique().tolist()) == set(range(10))  # shuffled, not sorted

    def test_digits_and_boston(self) -> None:
        digits = D.load_dataset("digits")
        assert digits.x_train.shape[1] == 8 * 8  # the data, not the declared image shape
        assert set(digits.y_train.unique().tolist()) == set(range(digits.n_classes))
        boston = D.load_dataset("boston")
        assert boston.task == "regression" and boston.x_train.shape[1] == 13
        assert abs(boston.y_train.mean().item()) < 1e-5  # standardized on train
        assert boston.target_std > 1

    def test_unknown_dataset(self) -> None:
        with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
            D.load_dataset("cifar")


class TestIdx:
    def test_reads_the_fixture(self, idx_folder) -> None:
        root, hashes = idx_folder
        ds = D._idx_dataset("mnist", str(root), False, files=hashes)
        assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)

    def test_missing_file_says_what_to_do(self, tmp_path) -> None:
        expected = r"train-images-idx3-ubyte.gz is missing; .*set `download`"
        with pytest.raises(UsageError, match=expected):
            D.load_dataset("mnist", root=str(tmp_path))

    def test_corrupt_file_is_named(self, idx_folder) -> None:
        root, hashes = idx_folder
        target = root / "t10k-labels-idx1-ubyte.gz"
        target.write_bytes(target.read_bytes()[:-3])
        with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz has SHA-256 .* corrupt"):
            D.fetch_idx("mnist", root, files=hashes)

    def test_truncated_payload(self, tmp_path) -> None:
        path = tmp_path / "x.idx"
        path.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(4))
        with pytest.raises(ValueError, match=r"header says \(10,\) .* holds 4"):
            D.read_idx(path)

    @pytest.mark.parametrize("content", [b"", b"\x00\x00", bytes([0, 0, 8, 3, 0, 0]),
                                         bytes([1, 2, 3, 4, 5]), b"\x1f\x8b garbled gzip"])
    def test_a_corrupt_file_is_a_usage_error_naming_it(self, tmp_path, content) -> None:
        path = tmp_path / ("x.gz" if content.startswith(b"\x1f\x8b") else "x.idx")
        path.write_bytes(content)
        with pytest.raises(UsageError, match=rf"^{path}: ") as caught:
            D.read_idx(path)
        assert caught.value.argument == "data_root"

    def test_download_checks_sha256(self, idx_folder, tmp_path) -> None:
        source, hashes = idx_folder
        dest = tmp_path / "fetched"
        paths = D.fetch_idx("mnist", dest, download=True, files=hashes,
                            base_url=source.as_uri() + "/")
        assert all(p.exists() for p in paths.values())
        bad = dict(hashes, **{"train-labels-idx1-ubyte.gz": "0" * 64})
        with pytest.raises(ValueError, match="wrong SHA-256; not kept"):
            D.fetch_idx("mnist", tmp_path / "other", download=True, files=bad,
                        base_url=source.as_uri() + "/")
        assert not (tmp_path / "other" / "train-labels-idx1-ubyte.gz").exists()

    def test_official_digests_are_pinned(self) -> None:
        for files in D.IDX_FILES.values():
            assert len(files) == 4 and all(len(h) == 64 for h in files.values())
