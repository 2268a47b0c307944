"""Workspace locks and atomic files: what keeps two runs on one workspace from
corrupting each other.

A lock is an advisory `flock` on a file under `<home>/locks/`, so it binds
every process on the machine that shares the workspace (a scheduled run, a
UI-triggered one, a CLI run) and is released by the kernel if its holder dies.
Runs on other machines that share only a tracking server are serialised by
the deployments' concurrency limit instead (flows/deployments.py).
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(TimeoutError):
    """Another run held the lock for longer than we were willing to wait."""


@contextmanager
def workspace_lock(home: Path, name: str, timeout: float = 600.0, poll: float = 0.1) -> Iterator[None]:
    """Hold `<home>/locks/<name>.lock` exclusively for the block."""
    folder = Path(home) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".lock")
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{path} was held by another run for over {timeout:.0f} s") from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file of its own in the same folder, then
    rename: a reader sees the old file or the new one, never half of one, and
    two writers never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def unique_temporary(path: Path) -> Path:
    """A temporary name beside `path` that no other writer uses, with the
    same suffix (numpy and parquet writers look at it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.{time.monotonic_ns()}{path.suffix}")
