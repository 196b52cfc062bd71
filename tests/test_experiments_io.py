"""Atomic writes: a failure mid-write leaves the old file, never half of the new one."""

from __future__ import annotations

import json

import pytest
import torch

from dropkit.app.experiments import io
from dropkit.errors import UsageError


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


class TestFolderLock:
    """One writer per run folder: two runs on one `--out` mixed their files."""

    def test_a_second_writer_is_refused_naming_the_first(self, tmp_path) -> None:
        import os

        with io.folder_lock(tmp_path / "run", "train"):
            pid = os.getpid()
            with pytest.raises(UsageError, match=rf"^train: `out` .* is being written by "
                                                  rf"another dropkit process \(pid {pid}\)"):
                with io.folder_lock(tmp_path / "run", "train"):
                    pass  # pragma: no cover
        with io.folder_lock(tmp_path / "run", "compare"):  # released on exit
            pass

    def test_released_when_the_block_raises(self, tmp_path) -> None:
        with pytest.raises(RuntimeError):
            with io.folder_lock(tmp_path, "train"):
                raise RuntimeError("boom")
        with io.folder_lock(tmp_path, "train"):
            pass

    def test_a_killed_holder_leaves_no_stale_lock(self, tmp_path) -> None:
        """The kernel drops a flock with its process: SIGKILL, then the folder is free."""
        import signal
        import subprocess
        import sys

        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; from dropkit.app.experiments import io\n"
             f"with io.folder_lock({str(tmp_path)!r}, 'train'):\n"
             "    print('held', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with pytest.raises(UsageError, match=rf"pid {holder.pid}\)"):
                with io.folder_lock(tmp_path, "train"):
                    pass  # pragma: no cover
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
        with io.folder_lock(tmp_path, "train"):  # the lock file is left, unlocked
            assert (tmp_path / io.LOCK).exists()


def test_two_cli_runs_on_one_out_the_second_refused_in_one_line(tmp_path, capsys) -> None:
    from dropkit.app import cli

    with io.folder_lock(tmp_path / "d", "train"):  # a run in progress there
        code = cli.main(["train", "--epochs", "1", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("dropkit train: error: train: --out ")
    assert "is being written by another dropkit process" in err
    assert not (tmp_path / "d" / "config.json").exists()  # refused before any work


class TestManifest:
    """A folder holds one run of one command: changed settings are refused by name."""

    def test_recorded_then_checked(self, tmp_path) -> None:
        io.check_manifest(tmp_path, "active", {"step": 10, "budget": 40, "dims": (1, 2)},
                          frozenset({"budget"}))
        # the same settings (a tuple read back as a list), and a key that may change
        io.check_manifest(tmp_path, "active", {"step": 10, "budget": 90, "dims": [1, 2]},
                          frozenset({"budget"}))
        saved = json.loads((tmp_path / io.MANIFEST).read_text())
        assert saved == {"command": "active", "settings": {"step": 10, "budget": 90,
                                                           "dims": [1, 2]}}
        with pytest.raises(UsageError, match=r"^active: cannot `resume` a run made with "
                                             r"dims=\[1, 2\], step=10 with dims=\[3\], step=15;"
                                             r" .*only budget may change") as caught:
            io.check_manifest(tmp_path, "active", {"step": 15, "budget": 90, "dims": [3]},
                              frozenset({"budget"}))
        assert caught.value.argument == "dims"
        assert json.loads((tmp_path / io.MANIFEST).read_text()) == saved  # unchanged

    def test_another_command_s_folder_is_refused(self, tmp_path) -> None:
        io.check_manifest(tmp_path, "compare", {"rates": ["0.5"]})
        with pytest.raises(UsageError, match=r"^active: `out` .* holds a run of "
                                             r"`dropkit compare`"):
            io.check_manifest(tmp_path, "active", {"step": 10})

    @pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"command": "active"}'])
    def test_an_unreadable_manifest_is_named(self, tmp_path, text) -> None:
        (tmp_path / io.MANIFEST).write_text(text)
        with pytest.raises(UsageError, match=r"settings.json.*it is corrupt: start afresh"):
            io.check_manifest(tmp_path, "active", {"step": 10})


class TestCheckedFiles:
    """A checkpoint carries its checksum: changed bytes are refused, naming the file."""

    STATE = {"model": {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(3, dtype=torch.bool)},
             "rng": torch.ByteTensor([1, 2, 3]), "history": [{"epoch": 1, "loss": 0.5}],
             "step": torch.tensor(7)}

    def test_round_trip(self, tmp_path) -> None:
        io.save_checked(tmp_path / "c.pt", self.STATE)
        back = io.load_checked(tmp_path / "c.pt")
        assert io.digest(back) == io.digest(self.STATE)
        assert torch.equal(back["model"]["w"], self.STATE["model"]["w"])
        assert back["history"] == self.STATE["history"]

    def test_the_digest_sees_values_dtypes_shapes_and_order(self) -> None:
        base = io.digest({"a": torch.ones(2), "b": 1})
        assert base == io.digest({"a": torch.ones(2), "b": 1})
        for other in ({"a": torch.ones(2) * 2, "b": 1}, {"a": torch.ones(2).double(), "b": 1},
                      {"a": torch.ones(1, 2), "b": 1}, {"b": 1, "a": torch.ones(2)},
                      {"a": torch.ones(2), "b": 1.0}, {"a": torch.ones(2), "b": [1]}):
            assert io.digest(other) != base, other

    def test_a_flipped_byte_in_the_weights_is_refused(self, tmp_path) -> None:
        path = tmp_path / "c.pt"
        io.save_checked(path, {"model": {"w": torch.full((256,), 0.25)}})
        raw = bytearray(path.read_bytes())
        at = bytes(raw).index(torch.full((4,), 0.25).numpy().tobytes())  # inside the weights
        raw[at + 1] ^= 0xFF
        path.write_bytes(bytes(raw))
        torch.load(path, weights_only=True)  # torch alone reads it without complaint
        with pytest.raises(UsageError, match=r"c.pt' does not match its checksum.*start afresh"):
            io.load_checked(path)

    @pytest.mark.parametrize("content", [b"", b"junk" * 10, None])
    def test_unreadable_or_unchecked_files_are_named(self, tmp_path, content) -> None:
        path = tmp_path / "c.pt"
        if content is None:  # readable, but written without a checksum
            torch.save({"model": {}}, path)
        else:
            path.write_bytes(content)
        with pytest.raises(UsageError, match=r"c.pt.*start afresh in another folder"):
            io.load_checked(path)

    @pytest.mark.parametrize("text, match", [("{oops", "cannot read"), ("[1]", "holds a list"),
                                             (b"\xff\xfe", "cannot read")])
    def test_read_json_names_the_file(self, tmp_path, text, match) -> None:
        path = tmp_path / "state.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(UsageError, match=r"state.json.*start afresh") as caught:
            io.read_json(path)
        assert match in str(caught.value)


def test_a_full_disk_error_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    import errno

    def full(fd) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError) as caught:
        io.atomic_write_text(tmp_path / "metrics.jsonl", "x\n")
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "metrics.jsonl")
    assert list(tmp_path.iterdir()) == []
