# Copyright: contributors to the cnf.ebpf collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Codecs shaped by the map rather than by the type: per-CPU values, maps without BTF, LPM trie keys.

Each wraps a compiled `Codec` (or, without BTF, none) with what the map's kind adds to its bytes: one copy per CPU
padded to 8 bytes, a hex string of the raw value, or an LPM key read and written as CIDR text.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import Array, BtfType, Int, Struct, resolve, type_name
from ansible_collections.cnf.ebpf.plugins.module_utils.types._codec import Codec, compile_codec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._formats import (
    CodecError,
    hex_to_bytes,
    ipv4_text,
    ipv6_text,
)

__all__ = [
    "LpmCodec",
    "PerCpuCodec",
    "compile_lpm_codec",
    "hexdump_codec",
]


class PerCpuCodec:
    """Values of per-CPU maps: ``ncpus`` copies, each padded to a multiple of 8 bytes.

    ``encode`` accepts:

    * ``{'per_cpu': [v0, v1, ...]}`` with exactly ``ncpus`` values (any ``sum`` key, as returned
      by ``decode``, is ignored) -- always unambiguous;
    * a list of exactly ``ncpus`` values, unless the value type is itself an array (then a list
      is the array value, written to every CPU);
    * any other single value, written to every CPU.
    """

    def __init__(self, codec: Any, ncpus: int) -> None:
        if ncpus <= 0:
            raise ValueError("ncpus must be positive")
        self.codec = codec
        self.ncpus = ncpus
        self.stride = (codec.size + 7) // 8 * 8
        self.size = self.stride * ncpus
        self.root = getattr(codec, "root", "value")
        t = getattr(codec, "type", None)
        self._value_is_list = t is not None and isinstance(resolve(t), Array)

    def _split(self, obj: Any) -> list | None:
        if (
            isinstance(obj, Mapping)
            and "per_cpu" in obj
            and isinstance(obj["per_cpu"], (list, tuple))
            and set(obj) <= {"per_cpu", "sum"}
        ):
            return list(obj["per_cpu"])
        if isinstance(obj, (list, tuple)) and not self._value_is_list:
            return list(obj)
        return None

    def encode_many(self, objs: list) -> list[bytes]:
        return list(map(self.encode, objs))

    def encode_columns(self, columns: Mapping[tuple[str, ...], Any]) -> list[bytes] | None:
        """The inner codec's encode_columns(), each value written to every CPU."""
        inner = self.codec.encode_columns(columns)
        if inner is None:
            return None
        pad = bytes(self.stride - self.codec.size)
        ncpus = self.ncpus
        return [(one + pad) * ncpus for one in inner]

    def encode(self, obj: Any) -> bytes:
        values = self._split(obj)
        out = bytearray(self.size)
        if values is None:
            one = self.codec.encode(obj)
            for i in range(self.ncpus):
                out[i * self.stride : i * self.stride + len(one)] = one
            return bytes(out)
        if len(values) != self.ncpus:
            raise CodecError(self.root, f"expected one value per CPU ({self.ncpus}), got {len(values)}")
        for i, v in enumerate(values):
            try:
                raw = self.codec.encode(v)
            except CodecError as exc:
                raise CodecError(exc.path.replace(self.root, f"{self.root}[cpu {i}]", 1), exc.problem) from None
            out[i * self.stride : i * self.stride + len(raw)] = raw
        return bytes(out)

    def decode(self, data: bytes | bytearray | memoryview, offset: int = 0) -> dict:
        if len(data) - offset < self.size:
            raise CodecError(self.root, f"expected {self.size} bytes ({self.ncpus} CPUs), got {len(data) - offset}")
        dec = self.codec.decode
        per_cpu = [dec(data, offset + i * self.stride) for i in range(self.ncpus)]
        return {"per_cpu": per_cpu, "sum": self.codec.aggregate(per_cpu)}


class _HexCodec:
    """Values of maps without BTF: hex strings of exactly ``size`` bytes."""

    type = None

    def __init__(self, size: int, root: str) -> None:
        self.size = size
        self.root = root

    def encode_many(self, objs: list) -> list[bytes]:
        return list(map(self.encode, objs))

    def encode_columns(self, columns: Mapping[tuple[str, ...], Any]) -> None:
        return None  # hex strings and CIDR text: one by one

    def encode(self, obj: Any) -> bytes:
        return hex_to_bytes(obj, self.root, self.size)

    def decode(self, data: bytes | bytearray | memoryview, offset: int = 0) -> str:
        chunk = bytes(data[offset : offset + self.size])
        if len(chunk) != self.size:
            raise CodecError(self.root, f"expected {self.size} bytes, got {len(chunk)}")
        return chunk.hex()

    def aggregate(self, values: list) -> Any:
        return values[0]


def hexdump_codec(size: int, root: str = "value") -> _HexCodec:
    return _HexCodec(size, root)


class LpmCodec:
    """LPM trie keys ``struct { u32 prefixlen; <data> }``: CIDR text when the data is one 4 or
    16-byte field without a non-address format, the struct's dict otherwise (dicts are always
    accepted on encode)."""

    def __init__(self, inner: Codec, cidr: str | None, data_offset: int, data_size: int) -> None:
        self.inner = inner
        self.type = inner.type
        self.root = inner.root
        self.size = inner.size
        self.cidr = cidr
        self._data = slice(data_offset, data_offset + data_size)
        self._data_size = data_size

    def encode_many(self, objs: list) -> list[bytes]:
        return list(map(self.encode, objs))

    def encode_columns(self, columns: Mapping[tuple[str, ...], Any]) -> None:
        return None  # hex strings and CIDR text: one by one

    def encode(self, obj: Any) -> bytes:
        if not isinstance(obj, str):
            return self.inner.encode(obj)
        if self.cidr is None:
            raise CodecError(
                self.root,
                f"{obj!r}: CIDR strings need a 4 or 16-byte address after prefixlen; "
                "give a mapping with prefixlen and the data fields",
            )
        text = obj.strip()
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                raise CodecError(self.root, f"{obj!r} has host bits set") from None
            raise CodecError(
                self.root, f"{obj!r} is not an {'IPv4' if self.cidr == 'ipv4' else 'IPv6'} network"
            ) from None
        want = 4 if self.cidr == "ipv4" else 6
        if net.version != want:
            raise CodecError(self.root, f"{obj!r} is not an IPv{want} network")
        out = bytearray(self.size)
        struct.pack_into("=I", out, 0, net.prefixlen)
        out[self._data] = net.network_address.packed
        return bytes(out)

    def decode(self, data: bytes | bytearray | memoryview, offset: int = 0) -> Any:
        if self.cidr is None:
            return self.inner.decode(data, offset)
        if len(data) - offset < self.size:
            raise CodecError(self.root, f"expected {self.size} bytes, got {len(data) - offset}")
        plen = struct.unpack_from("=I", data, offset)[0]
        raw = bytes(data[offset + self._data.start : offset + self._data.stop])
        text = ipv4_text(raw) if self.cidr == "ipv4" else ipv6_text(raw)
        return f"{text}/{plen}"

    def aggregate(self, values: list) -> Any:
        return values[0]


def compile_lpm_codec(t: BtfType, formats: Mapping[str, str] | None = None, root: str = "key") -> LpmCodec:
    rt = resolve(t)
    if not isinstance(rt, Struct) or rt.is_union or not rt.members:
        raise CodecError(root, f"an LPM trie key must be a struct starting with u32 prefixlen, got {type_name(t)}")
    first = rt.members[0]
    ft = resolve(first.type)
    if first.bit_offset != 0 or first.bitfield_size or not isinstance(ft, Int) or ft.size != 4:
        raise CodecError(
            root,
            f"an LPM trie key must start with a u32 prefixlen, got {type_name(first.type)} {first.name or '(anon)'}",
        )
    inner = compile_codec(t, formats, root)
    rest = rt.members[1:]
    cidr = None
    data_offset = data_size = 0
    if len(rest) == 1 and not rest[0].bitfield_size and rest[0].name and rest[0].bit_offset % 8 == 0:
        data = rest[0]
        data_size = data.type.size
        data_offset = data.bit_offset // 8
        fmt = (formats or {}).get(f"{root}.{data.name}")
        if (
            data_size in (4, 16)
            and fmt in (None, "ipv4" if data_size == 4 else "ipv6")
            and data_offset + data_size <= rt.size
        ):
            cidr = "ipv4" if data_size == 4 else "ipv6"
    return LpmCodec(inner, cidr, data_offset, data_size)
