"""Atomic writes: a kill at any moment leaves either the old file or the new one, never half."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from dropkit.errors import UsageError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save",
           "check_writable_dir", "folder_lock", "LOCK", "check_manifest", "MANIFEST"]

MANIFEST = "settings.json"  # the settings that define a run folder's results

LOCK = ".dropkit.lock"  # in a run folder while a dropkit process writes it


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and prove it is writable, before any work starts."""
    if not str(path).strip():  # Path("") is ".": the current folder, never meant
        raise UsageError("check_writable_dir: expected `out` to name a folder, got ''", "out")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe.", delete=True)
        probe.close()
    except OSError as error:
        raise UsageError(f"check_writable_dir: cannot write to `out` {str(path)!r} "
                         f"({error.strerror})", "out") from None
    return path


@contextmanager
def folder_lock(path: str | os.PathLike[str], owner: str) -> Iterator[Path]:
    """Inside, this process alone writes the folder ``path`` (created if needed): an
    exclusive ``flock`` on ``path/.dropkit.lock``, which holds the owner's pid. A second
    writer is refused with a :class:`UsageError` naming that pid, before any work. The
    kernel drops the lock when its process ends, however it ends: a killed run leaves no
    stale lock (the file stays, unlocked, and the next writer takes it)."""
    import fcntl  # POSIX; imported here so that the module loads everywhere

    created = not Path(path).exists()
    folder = check_writable_dir(path)
    handle = open(folder / LOCK, "a+")  # noqa: SIM115 - held until the block ends
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise UsageError(f"{owner}: `out` {str(folder)!r} is being written by another "
                             f"dropkit process (pid {holder}); wait for it to end or choose "
                             "another folder", "out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield folder
    finally:
        handle.close()  # closing the descriptor releases the lock
        if created and [p.name for p in folder.iterdir()] == [LOCK]:
            # refused before any work (a bad argument): leave no folder behind
            (folder / LOCK).unlink(missing_ok=True)
            folder.rmdir()


def check_manifest(folder: Path, command: str, settings: dict[str, Any],
                   may_change: frozenset[str] = frozenset()) -> None:
    """Record ``settings`` in ``folder/settings.json``, or check them against it.

    A folder holds one run of one command: a manifest written by another command, or
    settings that differ from the recorded ones in a key outside ``may_change``, is
    refused with a :class:`UsageError` naming each, before any work; a key that may
    change is recorded anew. Call it once the folder may be continued (``resume``)."""
    path = folder / MANIFEST
    now = json.loads(json.dumps(settings))  # as JSON holds them: tuples become lists
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
                raise ValueError("not a manifest")
        except (OSError, ValueError) as error:
            raise UsageError(f"{command}: cannot read {str(path)!r} ({error}); it is not a "
                             "dropkit manifest: continue in another folder", "out") from None
        if saved.get("command") != command:
            raise UsageError(f"{command}: `out` {str(folder)!r} holds a run of "
                             f"`dropkit {saved.get('command')}`; choose another folder", "out")
        old = saved["settings"]
        changed = sorted(k for k in {*old, *now} - may_change if old.get(k) != now.get(k))
        if changed:
            was = ", ".join(f"{k}={old.get(k)!r}" for k in changed)
            asked = ", ".join(f"{k}={now.get(k)!r}" for k in changed)
            raise UsageError(f"{command}: cannot `resume` a run made with {was} with {asked}; "
                             f"resume with the same settings (only {', '.join(sorted(may_change))}"
                             " may change) or choose another folder", changed[0])
    atomic_write_json(path, {"command": command, "settings": now})
