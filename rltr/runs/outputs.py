"""Output folders and files: checked writable before any work, written under a temporary name and renamed,
claimed while in use (two evaluations into one folder do not mix), new folders never collide.

Every error is a ValueError naming the path, so the CLI reports it as one line with exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_NAME = ".rltr-in-use"


def check_writable_folder(path: str | Path, what: str) -> Path:
    """``path`` is, or can be created as, a folder this process may write into; else ValueError naming it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a file, not a folder")
    existing = path
    while not existing.exists():  # the nearest existing ancestor is where the folder would be created
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {str(path)!r} cannot be created: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(path)!r} is not writable (no write permission on {str(existing)!r})")
    return path


def check_writable_file(path: str | Path, what: str) -> Path:
    """``path`` can be written as a file (it is not a folder, its folder is writable); else ValueError."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {str(path)!r} is not writable")
    check_writable_folder(path.parent, f"the folder of {what}")
    return path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, then rename it into place: ``path`` only ever holds
    a whole file, and a failed write leaves nothing."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))


def _holder_alive(lock: Path) -> bool:
    """Whether the process named in ``lock`` still runs (a lock left by a killed process is stale)."""
    try:
        pid = int(lock.read_text().strip() or 0)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return pid > 0


def _claim(lock: Path) -> None:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if _holder_alive(lock):
            raise ValueError(
                f"{str(lock.parent)!r} is in use by another rltr process (pid {lock.read_text().strip()}); choose another --out"
            ) from None
        lock.unlink(missing_ok=True)  # stale: its process is gone
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))


@contextlib.contextmanager
def claimed_folder(path: str | Path, what: str = "--out") -> Iterator[Path]:
    """Check ``path`` writable, create it and hold it for this process until the block ends; refuse a
    folder another live rltr process holds. If the block fails, a folder created here is removed again."""
    path = check_writable_folder(path, what)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    lock = path / LOCK_NAME
    try:
        _claim(lock)
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        yield path
    except BaseException:
        lock.unlink(missing_ok=True)
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    lock.unlink(missing_ok=True)


def make_new_folder(path: str | Path) -> Path:
    """Create ``path``, or ``path-2``, ``path-3``, ... when that name is taken (two runs started in the
    same second); return the folder created. Never reuses an existing folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        candidate = path if i == 1 else path.with_name(f"{path.name}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise ValueError(f"no free folder name next to {str(path)!r} (999 taken)")
