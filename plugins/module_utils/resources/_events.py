# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Event capture: the event map, the event type (from an object file's or a loaded program's
BTF), the drop counter, and the bounded capture loop.

The loop only collects raw bytes (see `_libbpf_events`); decoding happens afterwards in one pass with the compiled
codec (`decode_events`), so the per-event work while the buffer is being drained is a ctypes callback and a copy.
"""

from __future__ import annotations

import errno
import time
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _btf_io, _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._bpf_map import BpfMap
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf_events import EventReader
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf, _btf_parse, _codec, _formats

EVENT_MAP_TYPES = ("ringbuf", "perf_event_array")
# Longest single wait inside a capture; the deadline is checked between waits.
_POLL_SLICE_MS = 100


class EventTypeError(ValueError):
    """The event type cannot be found or compiled; the message names what was looked for and where."""


def open_event_map(path: str) -> BpfMap:
    """The pinned ring buffer or perf event array at path."""
    bpf_map = _bpf_map.map_open(path)
    if bpf_map.type not in EVENT_MAP_TYPES:
        bpf_map.close()
        raise BpfError(
            "open", path, errno.EINVAL, f"a {bpf_map.type} map carries no events (ringbuf or perf_event_array needed)"
        )
    return bpf_map


def btf_of_object(path: str) -> _btf_parse.Btf:
    return _btf_parse.Btf.from_raw(_btf_io.btf_raw_from_elf(path))


def btf_of_program(pin: str) -> _btf_parse.Btf:
    """The BTF a pinned program was loaded with (prog info btf_id), as the kernel holds it."""
    with _libbpf.obj_get(pin) as fd:
        kind = _libbpf.obj_kind(fd)
        if kind != "prog":
            raise BpfError("open", pin, errno.EINVAL, f"the pinned object is a {kind}, not a BPF program")
        btf_id = _libbpf.prog_info(fd)["btf_id"]
    if not btf_id:
        raise BpfError("read btf", pin, errno.ENOENT, "the program was loaded without BTF (compile with -g)")
    return _btf_parse.Btf.from_raw(_btf_io.btf_raw_from_kernel(btf_id))


def find_event_type(btf: _btf_parse.Btf, name: str, where: str) -> _btf.BtfType:
    """`struct NAME`, `union NAME` or a plain NAME (a struct first, then a typedef or any other sized type)."""
    kind, sep, bare = name.strip().partition(" ")
    if sep and kind in ("struct", "union"):
        found = btf.find(bare.strip(), kind)
    else:
        found = btf.find(name.strip(), "struct") or btf.find(name.strip())
    if found is None:
        raise EventTypeError(f"event_type: no type {name!r} in the BTF of {where}")
    if _btf.resolve(found).kind in ("func", "func_proto", "fwd", "void", "var", "datasec", "decl_tag"):
        raise EventTypeError(f"event_type: {name!r} in {where} is a {found.kind}, not a data type")
    return found


def event_codec(t: _btf.BtfType, formats: dict[str, str]) -> _codec.Codec:
    try:
        return _codec.compile_codec(t, formats, root="event")
    except _formats.CodecError as exc:
        raise EventTypeError(f"formats: {exc}") from exc


def decode_events(codec: _codec.Codec | None, samples: list[bytes]) -> tuple[list[Any], int]:
    """(decoded events, how many samples were too short for the type and came back as hex). Without a codec every
    event is a hex string. Perf samples are padded to 8 bytes; extra trailing bytes are ignored."""
    if codec is None:
        return [s.hex() for s in samples], 0
    size = codec.size
    if all(len(s) >= size for s in samples):
        return codec.decode_many(samples), 0
    decode = codec.decode
    return [decode(s) if len(s) >= size else s.hex() for s in samples], sum(1 for s in samples if len(s) < size)


def open_drop_counter(path: str) -> BpfMap:
    """The pinned map in which a program counts the events it could not reserve in its ring buffer (element 0)."""
    return _bpf_map.map_open(path)


def read_counter(bpf_map: BpfMap) -> int:
    """Element 0 (a key of zero bytes) of a counter map as an unsigned integer, summed over CPUs for per-CPU maps;
    0 when the element does not exist."""
    if bpf_map.value_size not in (1, 2, 4, 8):
        raise BpfError(
            "read", bpf_map.label, errno.EINVAL, f"a drop counter is a 1-8 byte integer, not {bpf_map.value_size} bytes"
        )
    raw = bpf_map.lookup(bytes(bpf_map.key_size) if bpf_map.key_size else None)
    if raw is None:
        return 0
    size, stride = bpf_map.value_size, bpf_map.value_stride
    return sum(int.from_bytes(raw[i : i + size], "little") for i in range(0, stride * bpf_map.ncpus, stride))


def capture(bpf_map: BpfMap, count: int, timeout: float, perf_pages: int) -> dict[str, Any]:
    """Read events until `count` were taken or `timeout` seconds passed; raw samples, lost (perf), why it stopped."""
    start = time.monotonic()
    deadline = start + timeout
    stopped = "timeout"
    with EventReader(bpf_map.fd, bpf_map.type, count, perf_pages) as reader:
        while True:
            remaining = deadline - time.monotonic()
            wait_ms = max(0, min(_POLL_SLICE_MS, int(remaining * 1000)))
            if reader.poll(wait_ms) or len(reader.samples) >= count:
                stopped = "count"
                break
            if remaining <= 0:
                break
        samples = reader.samples
        lost = reader.lost
    return {"samples": samples, "lost": lost, "stopped": stopped, "elapsed": time.monotonic() - start}
