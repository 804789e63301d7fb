# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A map described: `MapSpec` is what a playbook or an object declares, `MapState` what the kernel has pinned.

Plain data: resources read and create them, planning compares them (`planning._map_plan`) without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf


@dataclass
class MapSpec:
    """A map as declared: everything needed to create it, and to tell whether a pinned one matches."""

    path: str
    type: str
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    key_type: _btf.BtfType | None = None
    value_type: _btf.BtfType | None = None
    numa_node: int | None = None
    inner: MapSpec | None = None
    inner_path: str | None = None


@dataclass
class MapState:
    """A pinned map as the kernel reports it, with its key/value types when it carries BTF."""

    path: str
    info: dict[str, Any]
    key_type: _btf.BtfType | None = None
    value_type: _btf.BtfType | None = None
    extra: dict[str, Any] = field(default_factory=dict)
