# Copyright: contributors to the cnf.ebpf collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text formats of field values (ipv4, ipv6, ip, mac, hex, be), and `CodecError`, the error of every codec.

A format changes how a field is written in YAML, not its bytes: an address or a MAC as text, bytes or numbers as
hex, a number in network byte order. The conversions between that text and the field's bytes are here, apart from
the codec compiler that picks them per field. `CodecError` lives here too, at the bottom of the codec modules,
because a value that does not parse as its format is the first place one is raised.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

__all__ = [
    "FORMATS",
    "WHOLE_WIDTH",
    "CodecError",
    "hex_to_bytes",
    "ip_text",
    "ipv4_text",
    "ipv6_text",
    "mac_text",
    "text_to_bytes",
]

FORMATS = ("ipv4", "ipv6", "ip", "mac", "hex", "be")
# "ip" is a 16-byte address holding either family, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 2.5.5.2).
WHOLE_WIDTH = {"ipv4": 4, "ipv6": 16, "ip": 16, "mac": 6}
_V4_MAPPED = bytes(10) + b"\xff\xff"


class CodecError(ValueError):
    """A value that does not fit its type, or a bad format declaration.

    ``path`` is the dotted field path (``key.src_ip``, ``value.ports[2]``); ``problem`` the
    message without it.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def ipv4_text(b: bytes) -> str:
    return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])


def ipv6_text(b: bytes) -> str:
    return str(ipaddress.IPv6Address(b))


def ip_text(b: bytes) -> str:
    return ipv4_text(b[12:]) if b[:12] == _V4_MAPPED else str(ipaddress.IPv6Address(b))


def mac_text(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def text_to_bytes(fmt: str, val: Any, path: str, width: int) -> bytes:
    """Parse user input for an ipv4/ipv6/mac field into ``width`` bytes in network order."""
    if isinstance(val, int) and not isinstance(val, bool):
        if not 0 <= val < 1 << (8 * width):
            raise CodecError(path, f"{val} is out of range for a {width}-byte {fmt} value")
        return val.to_bytes(width, "big")
    if not isinstance(val, str):
        raise CodecError(path, f"expected {_FORMAT_NOUN[fmt]} as text, got {val!r}")
    text = val.strip()
    if fmt == "mac":
        parts = re.split(r"[:-]", text)
        if len(parts) == 6 and all(re.match(r"^[0-9A-Fa-f]{1,2}$", p) for p in parts):
            return bytes(int(p, 16) for p in parts)
        raise CodecError(path, f"{val!r} is not a MAC address")
    try:
        if fmt == "ip":
            addr = ipaddress.ip_address(text)
            return _V4_MAPPED + addr.packed if addr.version == 4 else addr.packed
        addr = ipaddress.IPv4Address(text) if fmt == "ipv4" else ipaddress.IPv6Address(text)
    except ValueError:
        raise CodecError(path, f"{val!r} is not an {_FORMAT_NOUN[fmt]}") from None
    return addr.packed


_FORMAT_NOUN = {"ipv4": "IPv4 address", "ipv6": "IPv6 address", "ip": "IP address", "mac": "MAC address"}


def hex_to_bytes(val: Any, path: str, width: int) -> bytes:
    if isinstance(val, (bytes, bytearray)):
        raw = bytes(val)
    elif isinstance(val, str):
        text = re.sub(r"[\s:.-]", "", val)
        if text[:2].lower() == "0x":
            text = text[2:]
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise CodecError(path, f"{val!r} is not a hex string") from None
    else:
        raise CodecError(path, f"expected a hex string of {width} bytes, got {val!r}")
    if len(raw) != width:
        raise CodecError(path, f"{val!r} is {len(raw)} bytes, expected {width}")
    return raw
