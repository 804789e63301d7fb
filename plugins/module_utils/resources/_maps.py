# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pinned maps on bpffs: read their state, create and pin, unpin; whether a path is on bpffs, and a map type in
the kernel.

Reads a pinned map into a `types._map_spec.MapState` and creates one from a `MapSpec`.
"""

from __future__ import annotations

import errno
import os

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _btf_io, _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._bpf_map import BpfMap
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._btf_io import load_map_btf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _abi, _btf, _btf_parse
from ansible_collections.cnf.ebpf.plugins.module_utils.types._abi import BTF_MAP_TYPES
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec, MapState

DEFAULT_PIN_ROOT = "/sys/fs/bpf/cnf"


def mount_fstype(path: str) -> tuple[str, str]:
    """(mount point, fs type) of the mount holding `path` (its nearest existing ancestor), from mountinfo."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    probe = os.path.realpath(probe)
    best = ("/", "")
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            mount_point = fields[4].replace("\\040", " ")
            fstype = fields[sep + 1]
            inside = probe == mount_point or probe.startswith(mount_point.rstrip("/") + "/")
            # Later lines over-mount earlier ones at the same point.
            if inside and len(mount_point) >= len(best[0]):
                best = (mount_point, fstype)
    return best


# How to create a map of each type libbpf 1.1 cannot probe: (key_size, value_size, max_entries, flags).
_PROBE_BY_CREATION: dict[str, tuple[int, int, int, int]] = {
    "arena": (0, 0, 1, _abi.MAP_FLAGS["mmapable"]),  # one page of memory
}


def map_type_supported(map_type: str) -> bool | None:
    """Whether the running kernel can create maps of this type: libbpf's probe, else a creation of our own, else
    None (unknown). Probed, not read off the kernel version: distributions backport and configure types out."""
    supported = _libbpf.probe_map_type(map_type)
    if supported is None and map_type in _PROBE_BY_CREATION:
        key_size, value_size, max_entries, flags = _PROBE_BY_CREATION[map_type]
        try:
            with _bpf_map.map_create(
                map_type, "cnf_probe", key_size, value_size, max_entries, label="probe", flags=flags
            ):
                return True
        except BpfError as exc:
            # EINVAL (unknown type), EOPNOTSUPP/ENOTSUPP (compiled out) mean no; anything else (EPERM...) is unknown.
            return False if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, _libbpf.ENOTSUPP) else None
    return supported


def unsupported_map_type(option: str, map_type: str) -> str | None:
    """A refusal for a map type the running kernel does not have (None when it has it, or cannot tell)."""
    if map_type_supported(map_type) is False:
        return (
            f"{option}: this kernel ({os.uname().release}) cannot create {map_type} maps (probed); "
            "nothing was created: use a kernel that has them or another map type"
        )
    return None


def on_bpffs(path: str) -> bool:
    return mount_fstype(path)[1] == "bpf"


def bpffs_refusal(option: str, path: str) -> str | None:
    """Why `path` (given as `option`) cannot hold pins, with what to do; None when it is on bpffs. The modules never
    mount bpffs themselves: where it is mounted (and that it is mounted at boot) is the host's setup."""
    mount_point, fstype = mount_fstype(path)
    if fstype == "bpf":
        return None
    return (
        f"{option}: {path} is not on a bpffs mount (it is on {fstype or 'an unknown fs'} at {mount_point}); pins "
        "live on bpffs, which this module does not mount: run the cnf.ebpf.bpf_host role, or "
        "'mount -t bpf bpf /sys/fs/bpf'"
    )


def read_btf_types(
    btf_id: int, key_type_id: int, value_type_id: int
) -> tuple[_btf.BtfType | None, _btf.BtfType | None]:
    if not btf_id:
        return None, None
    btf = _btf_parse.Btf.from_raw(_btf_io.btf_raw_from_kernel(btf_id))
    key = btf.type(key_type_id) if key_type_id else None
    value = btf.type(value_type_id) if value_type_id else None
    return key, value


def map_state(bpf_map: BpfMap, path: str) -> MapState:
    info = bpf_map.info
    key, value = read_btf_types(info["btf_id"], info["btf_key_type_id"], info["btf_value_type_id"])
    return MapState(path=path, info=dict(info), key_type=key, value_type=value)


def read_pinned_map(path: str) -> MapState | None:
    """The state of the map pinned at `path`, None when nothing is pinned there."""
    if not os.path.lexists(path):
        return None
    with _bpf_map.map_open(path) as bpf_map:
        return map_state(bpf_map, path)


def _ensure_parent(path: str) -> None:
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise BpfError("mkdir", parent, exc.errno or errno.EIO) from exc


def create_map(spec: MapSpec) -> BpfMap:
    """Create (not pin) the map described by spec; the caller owns the returned map."""
    btf_fd = None
    key_id = value_id = 0
    if spec.type in BTF_MAP_TYPES and (spec.key_type is not None or spec.value_type is not None):
        btf_fd, key_id, value_id = load_map_btf(spec.key_type, spec.value_type, spec.path)
    inner_map = None
    try:
        if spec.inner_path:
            inner_map = _bpf_map.map_open(spec.inner_path)
        elif spec.inner is not None:
            inner_map = create_map(spec.inner)
        flags = spec.flags | (_abi.MAP_FLAGS["numa_node"] if spec.numa_node is not None else 0)
        return _bpf_map.map_create(
            spec.type,
            spec.name,
            spec.key_size,
            spec.value_size,
            spec.max_entries,
            label=spec.path,
            flags=flags,
            btf_fd=btf_fd,
            btf_key_type_id=key_id,
            btf_value_type_id=value_id,
            inner_map_fd=inner_map.fd if inner_map else None,
            numa_node=spec.numa_node or 0,
        )
    finally:
        # The kernel keeps what it needs (BTF and the inner map template are referenced by the new map).
        if btf_fd is not None:
            btf_fd.close()
        if inner_map is not None:
            inner_map.close()


def create_pinned_map(spec: MapSpec, replace: bool = False) -> MapState:
    """Create the map and pin it at spec.path (replacing an existing pin when asked); returns its state."""
    _ensure_parent(spec.path)
    with create_map(spec) as bpf_map:
        if replace and os.path.lexists(spec.path):
            replace_pin(bpf_map.fd, spec.path)
        else:
            bpf_map.pin(spec.path)
        return map_state(bpf_map, spec.path)


def replace_pin(fd: _libbpf.Fd, path: str) -> None:
    """Pin fd at path in place of what is pinned there, atomically: bpffs supports rename(2), so there is no moment
    when the path is missing (a loader opening it meanwhile sees the old object or the new one)."""
    tmp = f"{path}_cnf_new"  # bpffs refuses names with a dot
    if os.path.lexists(tmp):
        _libbpf.unpin(tmp)
    fd.pin(tmp)
    try:
        os.rename(tmp, path)
    except OSError as exc:
        _libbpf.unpin(tmp)
        raise BpfError("replace pin", path, exc.errno or errno.EIO) from exc


def open_map_fd(fd: _libbpf.Fd) -> BpfMap:
    """A BpfMap on a duplicate of fd (the caller keeps its own fd)."""
    return BpfMap(_libbpf.Fd(os.dup(fd.fd), fd.label))


def remove_pin(path: str) -> None:
    _libbpf.unpin(path)
