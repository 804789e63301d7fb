# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-wide locks under /run/cnf-ebpf: runs that touch the same map or application (two playbooks, or forks on one
host) wait for each other instead of interleaving.

A lock is an flock on `<name>.lock`, and the file lives only while someone holds it: the holder unlinks it before
letting go, so lock files of maps and applications that are gone do not pile up. That makes a waiter able to win the
flock on a file that is no longer at the path (it opened the file before the holder unlinked it): after every
acquisition the locker checks that the file it locked is still the one at the path (same device and inode) and
starts over otherwise. Only the holder of the file at the path ever unlinks it, so at any time at most one process
holds a lock on the file the path names: the classic flock + unlink + inode re-check pattern.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOCK_DIR = "/run/cnf-ebpf"
# Leftovers swept per lock release (files of runs killed while holding, or of versions that kept their lock files).
SWEEP_LIMIT = 256


class LockTimeout(Exception):
    pass


def _is_at_path(fd: int, path: str) -> bool:
    """Whether the open file `fd` is still the file named by `path` (not unlinked or replaced since we opened it)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)


def _acquire(path: str, timeout: float) -> int:
    """An fd holding the exclusive flock on the file at `path`, waited for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"another run has held {path} for more than {timeout:g}s") from None
                    time.sleep(0.05)
            if _is_at_path(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        # The previous holder removed this file while we waited for it: lock the one at the path now.
        os.close(fd)


def _release(fd: int, path: str) -> None:
    """Unlink the lock file while still holding it (so nobody can lock it afresh), then let go."""
    try:
        os.unlink(path)
    except OSError:  # removed by hand meanwhile (nobody else unlinks a held lock): nothing to clean
        pass
    finally:
        os.close(fd)


def sweep(directory: str = LOCK_DIR, limit: int = SWEEP_LIMIT) -> int:
    """Remove lock files nobody holds (left by runs killed while holding, or by earlier versions of the collection,
    which never removed theirs): each is locked without waiting, re-checked and unlinked as a holder would. Returns
    how many were removed; held files are left alone. Best effort: housekeeping never fails a run."""
    removed = 0
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".lock"))[:limit]
    except FileNotFoundError:
        return 0
    for name in names:
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # gone already (its holder removed it), or not ours to open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # held (EWOULDBLOCK): its holder removes it
        if _is_at_path(fd, path):
            _release(fd, path)
            removed += 1
        else:
            os.close(fd)
    return removed


@contextmanager
def file_lock(name: str, timeout: float) -> Iterator[None]:
    """An exclusive flock on LOCK_DIR/<name>.lock, waited for at most `timeout` seconds. The kernel releases it when
    the process dies, so a killed run never leaves the lock held (its file is swept by a later run); the file is
    removed when the lock is released."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, f"{name}.lock")
    fd = _acquire(path, timeout)
    try:
        yield
    finally:
        _release(fd, path)
    sweep()
