# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-wide locks under /run/cnf-ebpf: runs that touch the same map or application (two playbooks, or forks on one
host) wait for each other instead of interleaving."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOCK_DIR = "/run/cnf-ebpf"


class LockTimeout(Exception):
    pass


@contextmanager
def file_lock(name: str, timeout: float) -> Iterator[None]:
    """An exclusive flock on LOCK_DIR/<name>.lock, waited for at most `timeout` seconds. The kernel releases it when
    the process dies, so a killed run never leaves the lock behind."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, f"{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"another run has held {path} for more than {timeout:g}s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock
