"""UCI regression sets: read from a folder, checked, fetched (dropkit.app.experiments.data)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from dropkit.app.experiments import data as D
from dropkit.errors import UsageError

REAL = D.missing_uci()


def _fake_set(tmp_path, monkeypatch, rows: int = 12):
    """A yacht look-alike of ``rows`` rows in tmp_path/uci/yacht, registered with its
    checksum; returns (folder, table)."""
    table = np.arange(rows * 7, dtype=float).reshape(rows, 7) / 10
    folder = tmp_path / "uci" / "yacht"
    folder.mkdir(parents=True)
    np.savetxt(folder / "data.txt", table)
    digest = hashlib.sha256((folder / "data.txt").read_bytes()).hexdigest()
    monkeypatch.setitem(D.UCI_SETS, "yacht", D.UciSet("yacht", digest, rows, 6, 6))
    monkeypatch.setenv("DROPKIT_DATA", str(tmp_path))
    return folder, table


class TestLoadUci:
    def test_reads_the_folder_dropkit_data_names(self, tmp_path, monkeypatch) -> None:
        _, table = _fake_set(tmp_path, monkeypatch)
        x, y = D.load_uci("yacht")
        assert np.array_equal(x, table[:, :6]) and np.array_equal(y, table[:, 6])
        assert D.missing_uci() is not None  # the other seven are not there

    def test_an_explicit_root_wins(self, tmp_path, monkeypatch) -> None:
        folder, table = _fake_set(tmp_path, monkeypatch)
        monkeypatch.setenv("DROPKIT_DATA", str(tmp_path / "elsewhere"))
        assert np.array_equal(D.load_uci("yacht", folder)[1], table[:, 6])

    def test_a_changed_byte_is_refused_naming_the_file(self, tmp_path, monkeypatch) -> None:
        folder, _ = _fake_set(tmp_path, monkeypatch)
        text = (folder / "data.txt").read_text()
        (folder / "data.txt").write_text(text.replace("1", "2", 1))
        with pytest.raises(UsageError, match=r"data.txt has SHA-256 .* expected"):
            D.load_uci("yacht")

    def test_a_missing_file_says_where_and_how(self, tmp_path, monkeypatch) -> None:
        monkeypatch.setenv("DROPKIT_DATA", str(tmp_path))
        with pytest.raises(UsageError, match=r"uci/yacht/data.txt is missing; .*`download`"):
            D.load_uci("yacht")
        with pytest.raises(UsageError, match=r"expected `name` among concrete, .*got 'boston'"):
            D.load_uci("boston")

    def test_the_wrong_shape_is_refused(self, tmp_path, monkeypatch) -> None:
        _fake_set(tmp_path, monkeypatch)
        spec = D.UCI_SETS["yacht"]
        monkeypatch.setitem(D.UCI_SETS, "yacht", D.UciSet("yacht", spec.sha256, 13, 6, 6))
        with pytest.raises(UsageError, match=r"expected 13 rows of at least 7 columns, got "
                                             r"\(12, 7\)"):
            D.load_uci("yacht")

    def test_download_fetches_and_checks(self, tmp_path, monkeypatch) -> None:
        source, table = _fake_set(tmp_path / "source", monkeypatch)
        monkeypatch.setattr(D, "UCI_URL", source.parent.as_uri() + "/{folder}/")
        target = tmp_path / "fetched"
        x, y = D.load_uci("yacht", target, download=True)
        assert np.array_equal(y, table[:, 6]) and (target / "data.txt").exists()
        # a source with other bytes is fetched, found wrong and not kept
        (source / "data.txt").write_text("1 2 3 4 5 6 7\n")
        with pytest.raises(UsageError, match="wrong SHA-256; not kept"):
            D.load_uci("yacht", tmp_path / "again", download=True)
        assert not (tmp_path / "again" / "data.txt").exists()

    def test_load_dataset_standardizes_one_seeded_split(self, tmp_path, monkeypatch) -> None:
        _fake_set(tmp_path, monkeypatch, rows=30)
        data = D.load_dataset("yacht")
        assert data.task == "regression" and len(data.x_train) == 27 and len(data.x_test) == 3
        assert abs(float(data.y_train.mean())) < 1e-5


@pytest.mark.skipif(REAL is not None, reason=f"the UCI sets are not here: {REAL}")
@pytest.mark.parametrize("name", list(D.UCI_SETS))
def test_the_real_sets_load_with_their_published_shapes(name) -> None:
    x, y = D.load_uci(name)
    spec = D.UCI_SETS[name]
    assert x.shape == (spec.rows, spec.features) and y.shape == (spec.rows,)
    assert np.isfinite(x).all() and np.isfinite(y).all()


def test_the_checksums_are_the_shipped_readme_s() -> None:
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "uci",
                          "README.md")
    if not os.path.exists(readme):
        pytest.skip("the data README is not beside this checkout")
    text = open(readme).read()
    for spec in D.UCI_SETS.values():
        assert f"{spec.sha256}  {spec.folder}/data.txt" in text
