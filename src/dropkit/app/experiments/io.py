"""Run-folder files: atomic writes (a kill at any moment leaves either the old file or the
new one, never half), checksummed checkpoints that refuse to load changed bytes, the lock
that keeps one writer per folder, and the manifest of the settings that define a run."""

from __future__ import annotations

import hashlib
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

__all__ = ["CORRUPT", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_torch_save", "check_writable_dir", "folder_lock", "LOCK", "check_manifest",
           "MANIFEST", "save_checked", "load_checked", "digest", "read_json", "first_sentence"]

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
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None and error.errno is not None:
            # name the file the write was for (a full disk's error names none)
            raise OSError(error.errno, error.strerror, str(path)) from error
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


DIGEST = "sha256"  # the key of a checked file's checksum
CORRUPT = "it is corrupt: start afresh in another folder (or delete the folder)"


def digest(obj: Any) -> str:
    """SHA-256 of a nested structure of tensors, numbers, strings, lists and dicts: of
    every tensor's dtype, shape and bytes, and of every other leaf's ``repr``, in order."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())  # any dtype, as its bytes
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for value in obj:
            _feed(h, value)
    else:
        h.update(f"V{obj!r};".encode())


def save_checked(path: str | os.PathLike[str], obj: dict[str, Any]) -> None:
    """:func:`atomic_torch_save` of ``obj`` with its :func:`digest` under ``"sha256"``:
    the checksum travels inside the file, so no second file can disagree with it after a
    kill, and :func:`load_checked` catches a flipped byte that ``torch.load`` would not."""
    atomic_torch_save(path, {**obj, DIGEST: digest(obj)})


def load_checked(path: str | os.PathLike[str], map_location: Any = None) -> dict[str, Any]:
    """What :func:`save_checked` wrote to ``path``, its checksum verified; a file that cannot
    be read, is not dropkit's, or whose bytes changed is a
    :class:`~dropkit.errors.UsageError` naming it."""
    try:  # torch.load fails in many ways on a damaged file (zip, pickle, storage errors)
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - each is the same fact: unreadable
        raise UsageError(f"cannot read {str(path)!r} ({first_sentence(error)}); "
                         f"{CORRUPT}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get(DIGEST), str):
        raise UsageError(f"{str(path)!r} holds no checksum: it was not written by this "
                         f"version of dropkit; {CORRUPT}")
    body = {k: v for k, v in obj.items() if k != DIGEST}
    if digest(body) != obj[DIGEST]:
        raise UsageError(f"{str(path)!r} does not match its checksum: its bytes changed "
                         f"after it was written; {CORRUPT}")
    return body


def first_sentence(error: BaseException) -> str:
    """``Type: first sentence`` of an error: the part that fits one line."""
    text = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def read_json(path: str | os.PathLike[str], expected: type = dict) -> Any:
    """The JSON in ``path``, of type ``expected``; unreadable or another shape is a
    :class:`~dropkit.errors.UsageError` naming the file."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError, JSONDecodeError
        raise UsageError(f"cannot read {str(path)!r} ({first_sentence(error)}); "
                         f"{CORRUPT}") from None
    if not isinstance(obj, expected):
        raise UsageError(f"{str(path)!r} holds a {type(obj).__name__}, expected a "
                         f"{expected.__name__}; {CORRUPT}")
    return obj


def check_writable_dir(path: str | os.PathLike[str], argument: str = "out") -> Path:
    """Create ``path`` if needed and prove it is writable, before any work starts; a
    failure is a :class:`~dropkit.errors.UsageError` naming ``argument``."""
    if not str(path).strip():  # Path("") is ".": the current folder, never meant
        raise UsageError(f"check_writable_dir: expected `{argument}` to name a folder, got ''",
                         argument)
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe.", delete=True)
        probe.close()
    except OSError as error:
        raise UsageError(f"check_writable_dir: cannot write to `{argument}` {str(path)!r} "
                         f"({error.strerror})", argument) from None
    return path


@contextmanager
def folder_lock(path: str | os.PathLike[str], owner: str) -> Iterator[Path]:
    """Inside, this process alone writes the folder ``path`` (created if needed): an
    exclusive ``flock`` on ``path/.dropkit.lock``, which holds the owner's pid. A second
    writer is refused with a :class:`~dropkit.errors.UsageError` naming that pid, before
    any work. The kernel drops the lock when its process ends, however it ends: a killed
    run leaves no stale lock (the file stays, unlocked, and the next writer takes it)."""
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
    refused with a :class:`~dropkit.errors.UsageError` naming each, before any work; a key that may
    change is recorded anew. Call it once the folder may be continued (``resume``)."""
    path = folder / MANIFEST
    now = json.loads(json.dumps(settings))  # as JSON holds them: tuples become lists
    if path.exists():
        saved = read_json(path)
        if not isinstance(saved.get("settings"), dict):
            raise UsageError(f"{str(path)!r} records no settings: it is not a dropkit "
                             f"manifest; {CORRUPT}")
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
