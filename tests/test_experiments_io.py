"""Atomic writes: a failure mid-write leaves the old file, never half of the new one."""

from __future__ import annotations

import json

import pytest
import torch

from dropkit.errors import UsageError
from dropkit.experiments import io


class TestAtomicWrites:
    def test_text_json_and_torch_round_trip(self, tmp_path) -> None:
        io.atomic_write_text(tmp_path / "a.txt", "héllo\n")
        io.atomic_write_json(tmp_path / "b.json", {"b": 1, "a": [2]})
        io.atomic_torch_save(tmp_path / "c.pt", {"w": torch.arange(3)})
        assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
        assert json.loads((tmp_path / "b.json").read_text()) == {"a": [2], "b": 1}
        assert torch.equal(torch.load(tmp_path / "c.pt")["w"], torch.arange(3))
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    def test_a_failed_write_keeps_the_old_file_and_no_temporary(self, tmp_path,
                                                               monkeypatch) -> None:
        target = tmp_path / "metrics.jsonl"
        target.write_text("old\n")

        def crash(src, dst) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(io.os, "replace", crash)
        with pytest.raises(OSError, match="disk full"):
            io.atomic_write_text(target, "new\n")
        assert target.read_text() == "old\n"
        assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


class TestWritableDir:
    def test_creates_and_returns_it(self, tmp_path) -> None:
        assert io.check_writable_dir(tmp_path / "x" / "y") == tmp_path / "x" / "y"
        assert (tmp_path / "x" / "y").is_dir()

    def test_a_file_in_the_way_is_a_usage_error_naming_out(self, tmp_path) -> None:
        (tmp_path / "f").write_text("x")
        with pytest.raises(UsageError, match=r"^check_writable_dir: cannot write to `out`") \
                as caught:
            io.check_writable_dir(tmp_path / "f" / "sub")
        assert caught.value.argument == "out"
