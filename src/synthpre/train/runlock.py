"""An exclusive lock on a run folder for the life of a training run: ``with run_lock(run_dir): ...``.

Two processes training into one folder would interleave their checkpoints and metrics, so the engine's
main process holds ``run_dir/.lock`` while it checks, writes and trains.  The lock is
``fcntl.flock(LOCK_EX | LOCK_NB)``: a second process fails at once with a ``UserError`` that names the
holder (the file holds ``pid@hostname``, written once the lock is taken).  The kernel releases a flock
when its holder dies, so the lock file of a killed run never blocks a later one (the file stays, with
the dead holder's name in it, until the next run takes it over).

On release the lock file is removed (while still held; a process that opened the old file meanwhile
notices that it locked a removed file and tries again), and so are the folders that taking the lock
created, when they are still empty: a run refused for bad input leaves nothing behind.

Run folders belong on a local disk.  On NFS, flock depends on the mount: Linux NFS v4 clients map it to
byte-range (POSIX) locks that the server arbitrates, so it works between machines when the server
supports locking; with ``nolock`` or ``local_lock=flock`` mounts a lock only excludes processes on the
same machine.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from synthpre.errors import UserError

LOCK_FILE = ".lock"


def _holder(fd: int) -> tuple[str, str]:
    """(pid, host) written in the lock file of another process (``?`` where it has not written yet)."""
    try:
        text = os.pread(fd, 1024, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, host = text.partition("@")
    return pid or "?", host or "?"


def _missing_folders(run_dir: Path) -> list[Path]:
    """``run_dir`` and those of its parents that do not exist yet, innermost first."""
    missing = []
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


class RunLock:
    """``acquire()`` (``UserError`` when another process holds it) and ``release()``; see the module."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None
        self.created: list[Path] = []  # folders made to hold the lock file, innermost first

    def acquire(self) -> None:
        missing = _missing_folders(self.run_dir)
        for _ in range(100):  # a retry only when the holder removed the file under us
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # a releasing holder removed the folder it had made
                continue
            except OSError as error:
                raise UserError(
                    f"cannot use {self.run_dir} as a run folder: cannot create its lock file {self.path} "
                    f"({error.strerror or error}); choose another --out, or fix the folder's permissions"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                pid, host = _holder(fd)
                os.close(fd)
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(
                        f"cannot lock {self.run_dir}: flock on {self.path} failed ({error.strerror}); "
                        "put the run folder on a local disk (--out)"
                    ) from None
                raise UserError(
                    f"{self.run_dir} is in use by process {pid} on {host} (its lock file {self.path}); "
                    "wait for it to finish, or choose another --out"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # locked a file its holder removed on release: take the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
            os.fsync(fd)
            self.fd, self.created = fd, missing
            return
        raise UserError(f"cannot lock {self.run_dir}: its lock file {self.path} keeps being replaced")

    def release(self) -> None:
        """Remove the lock file while still holding it, then unlock; remove the folders made for it
        if they are still empty."""
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:  # not empty (a run was written) or gone: keep the rest
                break
        self.created = []


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[RunLock]:
    """Hold the exclusive lock of ``run_dir`` for the ``with`` block (``UserError`` if it is in use)."""
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
