# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Event maps: libbpf's ring buffer and perf buffer consumers (libbpf 1.1 signatures).

An `EventReader` polls one map and copies every sample it is handed (`ctypes.string_at`) into `samples`, a list of
bytes; nothing is decoded here, so the callback stays as short as ctypes allows. The ctypes callback objects are kept
on the reader for as long as libbpf holds the consumer (freeing them while libbpf can still call them crashes).

Ring buffer: the sample callback returns a negative value once `limit` samples were taken; libbpf then commits the
consumer position up to and including that sample and returns the value from ring_buffer__poll, so samples past the
limit stay in the ring for the next reader. Perf buffer: libbpf reads each CPU buffer to its end per poll (its sample
callback cannot stop it), so a poll can hand over more than `limit` samples; they are kept. Lost samples are reported
by the kernel (PERF_RECORD_LOST) through the lost callback and summed in `lost`.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError, Fd, check, declare

_VP = ctypes.c_void_p
_INT = ctypes.c_int

RING_SAMPLE_FN = ctypes.CFUNCTYPE(_INT, _VP, _VP, ctypes.c_size_t)
PERF_SAMPLE_FN = ctypes.CFUNCTYPE(None, _VP, _INT, _VP, ctypes.c_uint32)
PERF_LOST_FN = ctypes.CFUNCTYPE(None, _VP, _INT, ctypes.c_uint64)

_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "ring_buffer__new": (_VP, [_INT, RING_SAMPLE_FN, _VP, _VP]),
    "ring_buffer__poll": (_INT, [_VP, _INT]),
    "ring_buffer__consume": (_INT, [_VP]),
    "ring_buffer__free": (None, [_VP]),
    "perf_buffer__new": (_VP, [_INT, ctypes.c_size_t, PERF_SAMPLE_FN, PERF_LOST_FN, _VP, _VP]),
    "perf_buffer__poll": (_INT, [_VP, _INT]),
    "perf_buffer__consume": (_INT, [_VP]),
    "perf_buffer__free": (None, [_VP]),
}

# What the ring buffer callback returns to make libbpf stop after the limit (any negative value works).
_STOP = -errno_mod.ECANCELED


class EventReader:
    """A ring buffer (`kind='ringbuf'`) or perf buffer (`kind='perf_event_array'`) consumer over a map fd.

    `samples` collects raw bytes; `lost` sums perf lost-sample reports. `limit` (> 0) stops ring buffer consumption
    after that many samples. Close it (or use it as a context manager) to free libbpf's consumer."""

    def __init__(self, fd: Fd, kind: str, limit: int, perf_pages: int = 64) -> None:
        self.fd = fd
        self.kind = kind
        self.limit = limit
        self.samples: list[bytes] = []
        self.lost = 0
        self.full = False  # the ring buffer callback stopped at the limit
        self._lib = declare(_PROTOTYPES)
        self._ptr: int | None = None
        samples = self.samples
        append = samples.append
        string_at = ctypes.string_at

        if kind == "ringbuf":

            def on_ring_sample(ctx: Any, data: int, size: int) -> int:
                append(string_at(data, size))
                if len(samples) >= limit:
                    self.full = True
                    return _STOP
                return 0

            self._callbacks: tuple[Any, ...] = (RING_SAMPLE_FN(on_ring_sample),)
            ptr = self._lib.ring_buffer__new(fd.fd, self._callbacks[0], None, None)
            op = "open ring buffer"
        elif kind == "perf_event_array":

            def on_perf_sample(ctx: Any, cpu: int, data: int, size: int) -> None:
                append(string_at(data, size))

            def on_perf_lost(ctx: Any, cpu: int, count: int) -> None:
                self.lost += count

            self._callbacks = (PERF_SAMPLE_FN(on_perf_sample), PERF_LOST_FN(on_perf_lost))
            ptr = self._lib.perf_buffer__new(fd.fd, perf_pages, self._callbacks[0], self._callbacks[1], None, None)
            op = "open perf buffer"
        else:
            raise BpfError("open events", fd.label, errno_mod.EINVAL, f"{kind} maps carry no events")
        if not ptr:
            code = ctypes.get_errno() or errno_mod.EINVAL
            detail = None
            if code == errno_mod.EINVAL and kind == "perf_event_array":
                detail = f"libbpf refused perf_pages={perf_pages} (a power of two is needed)"
            raise BpfError(op, fd.label, code, detail)
        self._ptr = ptr

    def poll(self, timeout_ms: int) -> bool:
        """Wait up to timeout_ms for samples and take them; True when the ring buffer limit was reached. A poll
        interrupted by a signal (EINTR, also after SIGSTOP/SIGCONT) takes nothing and is not an error."""
        if self._ptr is None:
            raise BpfError("poll", self.fd.label, errno_mod.EBADF, "the reader is closed")
        if self.kind == "ringbuf":
            ret = self._lib.ring_buffer__poll(self._ptr, timeout_ms)
        else:
            ret = self._lib.perf_buffer__poll(self._ptr, timeout_ms)
        if ret == _STOP and self.full:
            return True
        if ret < 0 and -ret != errno_mod.EINTR:
            check(ret, "poll", self.fd.label)
        return self.full

    def close(self) -> None:
        if self._ptr is not None:
            if self.kind == "ringbuf":
                self._lib.ring_buffer__free(self._ptr)
            else:
                self._lib.perf_buffer__free(self._ptr)
            self._ptr = None

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort only; callers close explicitly
        self.close()
