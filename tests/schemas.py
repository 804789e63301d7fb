"""Type schemas the tests share: the classic flow example (a packed 13-byte 5-tuple key and a 32-byte stats value)."""

from __future__ import annotations

from typing import Any

# The 5-tuple in network byte order, as a C program declares it with __be32/__be16.
FLOW_KEY: dict[str, Any] = {
    "name": "flow_key",
    "packed": True,
    "fields": [
        {"name": "src_ip", "type": "__be32"},
        {"name": "dst_ip", "type": "__be32"},
        {"name": "src_port", "type": "__be16"},
        {"name": "dst_port", "type": "__be16"},
        {"name": "protocol", "type": "u8"},
    ],
}
# The same layout with host-order integers (no default formats apply).
FLOW_KEY_HOST: dict[str, Any] = {
    "name": "flow_key",
    "packed": True,
    "fields": [
        {"name": "src_ip", "type": "u32"},
        {"name": "dst_ip", "type": "u32"},
        {"name": "src_port", "type": "u16"},
        {"name": "dst_port", "type": "u16"},
        {"name": "protocol", "type": "u8"},
    ],
}
FLOW_STATS: dict[str, Any] = {
    "name": "flow_stats",
    "fields": [{"name": n, "type": "u64"} for n in ("packets", "bytes", "first_seen", "last_seen")],
}
