# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bcc-dialect programs (BPF_HASH, BPF_ARRAY, `.increment()`...) compiled and loaded by bcc on the
managed host, handed out as an `_objects.LoadedObject` like a libbpf object, so the rest of bpf_program (pins,
upgrades that keep map state, attachment swaps, state files, restore at boot) treats them the same.

Map reuse uses bcc's own pinned tables: a table whose ELF section names a path (`maps/hash:/sys/fs/bpf/...`, what
BPF_TABLE_PINNED writes) is opened from that pin when it exists and created and pinned there when not. A prelude
redefines the dialect's two table macros (taken from the installed libbcc, so they match its version) to name a
staging directory; the maps to reuse are pinned into it beforehand, and the staging pins are removed after loading
(the loader's own fds hold the maps until bpf_program pins them where they belong).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbcc import (
    function_names,
    import_bcc,
    libbcc_path,
    table_names,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import Fd
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf_obj import capture_stderr
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._maps import read_btf_types
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._objects import (
    LoadedMap,
    LoadedObject,
    LoadedProgram,
    MapSpecInObject,
)

# Program types whose hooks outlive the module's process: bpf_attach attaches them through netlink (XDP, tc) or
# pinned bpf links (cgroup, tracepoint, raw_tracepoint, kprobe). Values: bcc's BPF.<type> constant names.
PROGRAM_TYPES = {
    "xdp": "XDP",
    "tc": "SCHED_CLS",
    "cgroup_skb": "CGROUP_SKB",
    "cgroup_sock": "CGROUP_SOCK",
    "tracepoint": "TRACEPOINT",
    "raw_tracepoint": "RAW_TRACEPOINT",
    "kprobe": "KPROBE",
}
# Hooks held by a file descriptor of the process that attaches them: they would go when the module exits.
PROCESS_BOUND = {
    "socket_filter": "a socket of the attaching process",
    "perf_event": "a perf event file descriptor of the attaching process",
    "uprobe": "a perf event of the attaching process (bcc's attach_uprobe)",
    "sk_skb": "a sockmap the attaching process manages",
    "sk_msg": "a sockmap the attaching process manages",
}
_TABLE_MACROS = ("BPF_F_TABLE", "BPF_QUEUESTACK")
_SECTION = 'section("maps/" _table_type)'
_PINNED_SECTION = 'section("maps/" _table_type ":" CNF_BCC_PIN_DIR "/" #_name)'


class BccError(Exception):
    """bcc refused the program: `stderr` holds what it printed (clang's errors, the verifier's log)."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


@dataclass(frozen=True)
class BccProgramSpec:
    name: str
    type: str


@dataclass
class BccSpec:
    programs: list[BccProgramSpec]
    maps: list[MapSpecInObject]


def check_functions(functions: dict[str, Any]) -> dict[str, str]:
    """`functions` (name -> program type) validated; the message names the function and the way out."""
    if not functions:
        raise ValueError(
            "functions: loader=bcc needs the functions to load and their program types, e.g. {xdp_count: xdp}"
        )
    out = {}
    for name, kind in functions.items():
        if kind in PROCESS_BOUND:
            raise ValueError(
                f"functions.{name}: {kind} programs are attached through {PROCESS_BOUND[kind]} and would be "
                "detached when the module exits; run them with their bcc tool, or use a hook that persists "
                f"({', '.join(PROGRAM_TYPES)})"
            )
        if kind not in PROGRAM_TYPES:
            raise ValueError(f"functions.{name}: {kind!r} is not one of {', '.join(PROGRAM_TYPES)}")
        out[str(name)] = str(kind)
    return out


def source_digest(text: str, functions: dict[str, str], cflags: list[str]) -> str:
    """What identifies a bcc deployment: the source, how it is compiled and loaded, and the bcc version."""
    h = hashlib.sha256(b"cnf-ebpf-bcc-1\0")
    h.update(str(getattr(import_bcc(), "__version__", "")).encode() + b"\0")
    h.update(repr(sorted(functions.items())).encode() + b"\0" + repr(list(cflags)).encode() + b"\0")
    h.update(text.encode())
    return h.hexdigest()


def _macro(header: str, name: str) -> str:
    m = re.search(rf"^#define {name}\(.*?[^\\]\n", header, re.M | re.S)
    if m is None or _SECTION not in m.group(0):
        raise BccError(
            f"this bcc ({libbcc_path()}) defines {name} in a way cnf.ebpf does not know; cannot pin its tables"
        )
    return m.group(0)


def prelude() -> str:
    """C prepended to the source: every table reuses or creates a pin under CNF_BCC_PIN_DIR."""
    with open(libbcc_path(), "rb") as f:
        header = f.read().decode("latin-1")
    out = ["/* cnf.ebpf: tables pinned under CNF_BCC_PIN_DIR (reused when a pin is there) */"]
    for name in _TABLE_MACROS:
        out += [f"#undef {name}", _macro(header, name).replace(_SECTION, _PINNED_SECTION).rstrip("\n")]
    # Tables the source pins itself are pinned where bpf_program pins every map instead.
    out += [
        "#undef BPF_TABLE_PINNED6",
        "#define BPF_TABLE_PINNED6(_t, _k, _l, _n, _m, _p) BPF_F_TABLE(_t, _k, _l, _n, _m, 0)",
        "#undef BPF_TABLE_PINNED7",
        "#define BPF_TABLE_PINNED7(_t, _k, _l, _n, _m, _p, _f) BPF_F_TABLE(_t, _k, _l, _n, _m, _f)",
        "#undef BPF_QUEUESTACK_PINNED",
        "#define BPF_QUEUESTACK_PINNED(_t, _n, _l, _m, _f, _p) BPF_QUEUESTACK(_t, _n, _l, _m, _f)",
        "#line 1",
    ]
    return "\n".join(out) + "\n"


def _compile(text: str, cflags: list[str], staging: str, source: str) -> Any:
    bcc = import_bcc()
    sink: list[str] = []
    try:
        with capture_stderr(sink):
            return bcc.BPF(text=prelude() + text, cflags=[*cflags, f'-DCNF_BCC_PIN_DIR="{staging}"'])
    except BccError:
        raise
    except Exception as exc:
        stderr = "".join(sink)
        first = next((line for line in stderr.splitlines() if "error:" in line), "") or str(exc)
        message = f"bcc could not compile {source}: {first.strip()}"
        if not headers_present():
            message += f" ({headers_hint()})"
        raise BccError(message, stderr) from None


def headers_present(release: str | None = None) -> bool:
    """bcc compiles against the running kernel's headers, found through /lib/modules/<release>/build."""
    release = release or os.uname().release
    return os.path.isfile(os.path.join("/lib/modules", release, "build", "Makefile"))


def headers_hint(release: str | None = None) -> str:
    release = release or os.uname().release
    return (
        f"bcc needs the headers of the running kernel {release} in /lib/modules/{release}/build: install "
        f"linux-headers-{release}, or run the cnf.ebpf.bpf_host role with bpf_host_bcc: true"
    )


def _staging(pin_dir: str) -> str:
    path = os.path.join(pin_dir, f"bcc-staging-{uuid.uuid4().hex[:8]}")  # bpffs names cannot hold dots
    os.makedirs(path)
    return path


def _map_spec(name: str, fd: Fd) -> MapSpecInObject:
    info = _libbpf.map_info(fd)
    key_type, value_type = read_btf_types(info["btf_id"], info["btf_key_type_id"], info["btf_value_type_id"])
    return MapSpecInObject(
        name=name,
        type=info["type"],
        key_size=info["key_size"],
        value_size=info["value_size"],
        max_entries=info["max_entries"],
        flags=info["flags"],
        key_type=key_type,
        value_type=value_type,
        internal=False,
    )


def inspect(text: str, functions: dict[str, str], cflags: list[str], pin_dir: str, source: str) -> BccSpec:
    """Compile (without loading the functions) to learn the tables bcc makes of the source: their types, sizes
    and BTF. The maps it creates for that are freed before returning."""
    staging = _staging(pin_dir)
    try:
        b = _compile(text, cflags, staging, source)
        try:
            known = function_names(b.module)
            for name in functions:
                if name not in known:
                    raise ValueError(f"functions.{name}: {source} has no function {name} (it has: {', '.join(known)})")
            maps = []
            for table in table_names(b.module):
                with Fd(os.dup(import_bcc().libbcc.lib.bpf_table_fd(b.module, table.encode())), table) as fd:
                    maps.append(_map_spec(table, fd))
        finally:
            b.cleanup()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BccSpec([BccProgramSpec(n, t) for n, t in functions.items()], maps)


def load(
    text: str, functions: dict[str, str], cflags: list[str], pin_dir: str, source: str, reuse_maps: dict[str, str]
) -> LoadedObject:
    """Compile and load: our own fds for each function (as a program of its type) and each table; tables named in
    `reuse_maps` (name -> pin) are the pinned maps themselves."""
    bcc = import_bcc()
    staging = _staging(pin_dir)
    result = LoadedObject(programs={}, maps={}, object_btf_raw=b"")
    try:
        for name, pin in reuse_maps.items():
            with _libbpf.obj_get(pin) as fd:
                fd.pin(os.path.join(staging, name))
        b = _compile(text, cflags, staging, source)
        try:
            for name, kind in functions.items():
                sink: list[str] = []
                try:
                    with capture_stderr(sink):
                        fn = b.load_func(name, getattr(bcc.BPF, PROGRAM_TYPES[kind]))
                except Exception as exc:
                    raise BccError(f"bcc could not load {name} ({kind}) from {source}: {exc}", "".join(sink)) from None
                fd = Fd(os.dup(fn.fd), f"program {name}")
                result.programs[name] = LoadedProgram(name, fd, _libbpf.prog_info(fd))
            for table in table_names(b.module):
                fd = Fd(os.dup(bcc.libbcc.lib.bpf_table_fd(b.module, table.encode())), f"map {table}")
                info = _libbpf.map_info(fd)
                reused = table in reuse_maps
                result.maps[table] = LoadedMap(table, fd, info, reused=reused, internal=False)
                if reused:
                    with _bpf_map.map_open(reuse_maps[table]) as pinned:
                        if pinned.info["id"] != info["id"]:
                            raise BccError(f"bcc did not reuse the map pinned at {reuse_maps[table]} for table {table}")
        finally:
            b.cleanup()  # bcc's fds and its module; ours keep the programs and maps
    except BaseException:
        result.close()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
