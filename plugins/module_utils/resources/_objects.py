# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BPF object files: compile (clang, cached), inspect, load-time constants, load.

- `compile_source()` builds a CO-RE object with clang and caches it under a digest of everything that decides the
  output: the source, the local headers it includes (found with `clang -M`), the flags and clang's version. System
  headers (under /usr) are left out of the key so that one source gives the same digest across hosts whose
  distribution headers differ slightly; the digest then names "this program" fleet-wide. Sources that include glibc
  headers (<linux/if.h> pulls in <sys/socket.h>) build as written: see `GLIBC_STUBS_SHIM`.
- `inspect_object()` opens an object with libbpf without loading it: programs, maps (with their BTF types) and the
  `.rodata` constants that can be set at load time.
- `load_object()` loads an object into the kernel: map sizes, reused maps, constants; on a verifier rejection it
  raises `VerifierError` with the verifier's own message and saves the full log on the host. Nothing is pinned
  here: the caller pins the returned fds. On any failure every fd is closed, so the kernel frees what was loaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError, Fd
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf_obj import BpfObject, MapHandle, prog_map_ids
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._files import atomic_file
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _abi
from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import BtfType, Datasec, Var, type_name
from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf_parse import Btf
from ansible_collections.cnf.ebpf.plugins.module_utils.types._codec import compile_codec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._formats import CodecError

DEFAULT_CACHE_DIR = "/var/lib/cnf-ebpf/cache"
DEFAULT_LOG_DIR = "/var/lib/cnf-ebpf/logs"
RODATA_SECTION = ".rodata"
LOG_TAIL_LINES = 20

# Directory prefixes whose headers are "system" headers, left out of the cache key (see the module docstring).
SYSTEM_HEADER_PREFIXES = ("/usr/",)

# bpf_tracing.h's PT_REGS_* macros need to know the target architecture of the kernel the program runs on.
_TARGET_ARCH = {
    "x86_64": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "s390x": "s390",
    "ppc64le": "powerpc",
    "ppc64": "powerpc",
    "riscv64": "riscv",
    "loongarch64": "loongarch",
    "mips64": "mips",
}


# glibc's <gnu/stubs.h> picks <gnu/stubs-32.h> or -64.h by the host architecture's macros (__x86_64__, ...), which
# `clang -target bpf` does not define, and only multilib systems have the 32-bit file: any source that includes a
# glibc header (<linux/if.h> and <linux/icmp.h> pull in <sys/socket.h>; <stdint.h>, <netinet/in.h>) fails with
# "'gnu/stubs-32.h' file not found" on a stock host. The file only lists glibc functions that are stubs (__stub_*
# macros), which BPF code never calls, so an empty one found first is correct on every architecture: the kernel's
# BPF selftests ship the same dummy header. It lives in the compile cache and is written when missing.
GLIBC_STUBS_SHIM = (
    "/* Written by cnf.ebpf: an empty <gnu/stubs.h> for clang -target bpf, which defines none of the host\n"
    " * architecture macros glibc's own stubs.h chooses its stubs-<abi>.h by. See cnf.ebpf's _objects.py. */\n"
)
SHIM_DIR_NAME = "include"

# libbpf before 1.0 took any section name that started with a known prefix (SEC("xdp_icmp_echo") was an XDP program);
# libbpf 1.x wants the section exactly (or the prefix followed by '/'), and leaves the program without a type. These
# are the prefixes such sources use, longest first, to say what to write instead.
_LEGACY_SECTION_PREFIXES = (
    "raw_tracepoint",
    "flow_dissector",
    "lwt_seg6local",
    "cgroup_skb",
    "perf_event",
    "tracepoint",
    "classifier",
    "kretprobe",
    "uretprobe",
    "lwt_xmit",
    "lwt_out",
    "sockops",
    "raw_tp",
    "socket",
    "kprobe",
    "uprobe",
    "action",
    "lwt_in",
    "sk_skb",
    "sk_msg",
    "xdp",
    "tc",
    "tp",
)
PROGRAM_TYPES_DOC = "https://docs.kernel.org/bpf/libbpf/program_types.html"


# --- errors ------------------------------------------------------------------------------------------------------


class CompileError(Exception):
    """clang failed (or could not run). `.command` is the clang command line, `.stderr` clang's output."""

    def __init__(self, source: str, command: list[str], stderr: str, summary: str | None = None) -> None:
        self.source = source
        self.command = command
        self.stderr = stderr
        self.summary = summary or _first_error_line(stderr) or "clang failed"
        hint = _compile_hint(stderr)
        super().__init__(f"clang could not compile {source}: {self.summary}" + (f" ({hint})" if hint else ""))


def _compile_hint(stderr: str) -> str:
    """What clang's message means when the cause is a libbpf version the source was written for."""
    if "struct bpf_map_def" in stderr:
        return (
            'struct bpf_map_def in SEC("maps") is the map definition of libbpf before 1.0, which libbpf 1.x '
            "removed: declare the map as a BTF-defined map, struct { __uint(type, ...); __type(key, ...); "
            '__type(value, ...); __uint(max_entries, ...); } name SEC(".maps")'
        )
    return ""


# What libbpf 1.1 prints when an object needs the kernel's BTF (CO-RE relocations, kfuncs, BTF-typed hooks) and it
# finds none: /sys/kernel/btf/vmlinux missing (CONFIG_DEBUG_INFO_BTF off) and no vmlinux image in its fallbacks.
_NO_KERNEL_BTF = "failed to find valid kernel BTF"
KERNEL_BTF_MISSING = (
    "the object needs the kernel's BTF (CO-RE relocations), and this kernel has none: no readable "
    "/sys/kernel/btf/vmlinux, so it was built without CONFIG_DEBUG_INFO_BTF. Run a kernel with BTF (the "
    "cnf.ebpf.bpf_host role checks for it), or build the program without CO-RE; nothing was loaded"
)


class LoadError(BpfError):
    """libbpf refused to load the object before any program reached the verifier (a map it could not create, a
    relocation, a program without a type...). `.libbpf_log` is everything libbpf printed."""

    def __init__(self, error: BpfError, libbpf_log: str) -> None:
        super().__init__(error.op, error.obj, error.errno, error.detail)
        self.libbpf_log = libbpf_log


class ObjectParamError(ValueError):
    """A load parameter that does not fit the object (unknown map or constant, wrong type, out of range).

    `.path` names the parameter (`constants.drop_port`, `map_sizes.flows`, `reuse_maps.flows`)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class VerifierError(Exception):
    """The kernel's verifier rejected a program; the message is the verifier's own, the full log is on the host."""

    def __init__(
        self,
        program: str,
        message: str,
        log_tail: str,
        log_path: str | None,
        insns_processed: int | None,
        kernel_release: str,
        errno: int = 0,
        libbpf_log: str = "",
    ) -> None:
        self.libbpf_log = libbpf_log
        self.program = program
        self.message = message
        self.log_tail = log_tail
        self.log_path = log_path
        self.insns_processed = insns_processed
        self.kernel_release = kernel_release
        self.errno = errno
        where = f"after processing {insns_processed} instructions, " if insns_processed is not None else ""
        log = f"; full verifier log: {log_path}" if log_path else ""
        super().__init__(
            f"the kernel verifier rejected program {program}: {message} ({where}kernel {kernel_release}){log}"
        )


# --- compile -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    path: str
    digest: str
    cached: bool
    command: list[str]


def _first_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line
    return lines[0] if lines else ""


def multiarch_include_dir() -> str:
    """Where Debian/Ubuntu keep <asm/types.h>; clang -target bpf does not search it by itself."""
    return f"/usr/include/{platform.machine()}-linux-gnu"


def base_flags(shim_dir: str | None = None) -> list[str]:
    """The flags every compile gets: a BPF target with BTF (-g) for CO-RE, our shim headers (first, so that its
    <gnu/stubs.h> wins), the multiarch include dir when this host has one, and the target architecture that
    bpf_tracing.h needs."""
    flags = ["-target", "bpf", "-O2", "-g"]
    if shim_dir:
        flags += ["-I", shim_dir]
    multiarch = multiarch_include_dir()
    if os.path.isdir(multiarch):
        flags += ["-I", multiarch]
    return flags


def build_flags(
    include_dirs: Sequence[str] = (),
    defines: Mapping[str, str | int | None] | None = None,
    cflags: Sequence[str] = (),
    shim_dir: str | None = None,
) -> list[str]:
    """The full clang flag list (without the source and output), in a stable order. Without `shim_dir` it is part
    of the cache key, whose digest must not depend on where a host keeps its cache (the key covers the shim by
    its contents)."""
    flags = base_flags(shim_dir)
    for inc in include_dirs:
        flags += ["-I", os.path.abspath(inc)]
    defined = set(defines or {})
    arch = _TARGET_ARCH.get(platform.machine())
    if (
        arch
        and not any(d.startswith("__TARGET_ARCH_") for d in defined)
        and not any(f.startswith("-D__TARGET_ARCH_") for f in cflags)
    ):
        flags.append(f"-D__TARGET_ARCH_{arch}")
    for name in sorted(defined):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)):
            raise ObjectParamError(f"defines.{name}", "not a valid C macro name")
        value = (defines or {})[name]
        if value is None:
            flags.append(f"-D{name}")
        elif isinstance(value, bool):
            flags.append(f"-D{name}={int(value)}")
        else:
            flags.append(f"-D{name}={value}")
    flags += list(cflags)
    return flags


# CO-RE objects need BTF with field relocations (__builtin_preserve_access_index) and BTF-defined maps: clang 10.
MIN_CLANG_MAJOR = 10
_CLANG_VERSION = re.compile(r"clang version (\d+)\.")


@functools.lru_cache(maxsize=8)
def clang_version(clang: str = "clang", source: str = "(none)") -> str:
    """`clang --version` (the whole text: a different build of the same version may compile differently). A clang
    that is missing, does not run or is older than MIN_CLANG_MAJOR is refused with what to install."""
    command = [clang, "--version"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise CompileError(
            source,
            command,
            str(exc),
            f"{clang} is not installed or not on PATH: install clang and llvm (the cnf.ebpf.bpf_host role does)",
        ) from exc
    except OSError as exc:
        raise CompileError(source, command, str(exc), f"cannot run {clang}: {exc.strerror}") from exc
    if proc.returncode != 0:
        raise CompileError(source, command, proc.stderr)
    found = _CLANG_VERSION.search(proc.stdout)
    if found and int(found.group(1)) < MIN_CLANG_MAJOR:
        raise CompileError(
            source,
            command,
            proc.stdout,
            f"{clang} is clang {found.group(1)}; CO-RE BPF objects need clang {MIN_CLANG_MAJOR} or newer: install a "
            "newer clang",
        )
    return proc.stdout.strip()


def parse_make_deps(text: str) -> list[str]:
    """The prerequisites of a `clang -M` make rule (escaped spaces kept, line continuations joined)."""
    text = text.replace("\\\n", " ")
    _target, sep, rest = text.partition(": ")
    if not sep:
        return []
    deps: list[str] = []
    for token in re.split(r"(?<!\\)\s+", rest.strip()):
        if token:
            deps.append(token.replace("\\ ", " ").replace("$$", "$"))
    return deps


def local_headers(deps: Sequence[str], source: str, shim_dir: str | None = None) -> list[str]:
    """Absolute paths of the dependencies that count for the cache key: not the source, not system headers, not our
    own shim headers (the key covers those by their contents, wherever the cache is)."""
    src = os.path.abspath(source)
    excluded = SYSTEM_HEADER_PREFIXES + ((os.path.join(os.path.abspath(shim_dir), ""),) if shim_dir else ())
    out: list[str] = []
    for dep in deps:
        path = os.path.abspath(dep)
        if path == src or path.startswith(excluded) or path in out:
            continue
        out.append(path)
    return sorted(out)


def cache_key(
    source_bytes: bytes, source_dir: str, headers: Sequence[tuple[str, bytes]], flags: Sequence[str], version: str
) -> str:
    """sha256 over the source, each local header (its path relative to the source's directory, so moving a whole
    tree keeps the key, and its bytes), the flags and clang's version; every part is length-prefixed so that no
    two different inputs can produce the same byte stream."""
    h = hashlib.sha256()

    def part(tag: bytes, data: bytes) -> None:
        h.update(tag + len(data).to_bytes(8, "little") + data)

    part(b"format", b"cnf-ebpf-compile-2")  # 2: objects no longer depend on the source's directory
    part(b"shim", GLIBC_STUBS_SHIM.encode())
    part(b"source", source_bytes)
    for path, data in headers:
        part(b"header-path", os.path.relpath(path, source_dir).encode())
        part(b"header", data)
    for flag in flags:
        part(b"flag", flag.encode())
    part(b"clang", version.encode())
    return h.hexdigest()


def _run_clang(source: str, command: list[str], shown: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run clang; CompileError on failure, naming `shown` (the command as a user would rerun it: the final output
    path rather than our temporary file) or else `command`."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise CompileError(source, shown or command, str(exc), f"cannot run {command[0]}: {exc.strerror}") from exc
    if proc.returncode != 0:
        raise CompileError(source, shown or command, proc.stderr)
    return proc


def compile_source(
    src: str,
    *,
    include_dirs: Sequence[str] = (),
    defines: Mapping[str, str | int | None] | None = None,
    cflags: Sequence[str] = (),
    cache_dir: str = DEFAULT_CACHE_DIR,
    clang: str = "clang",
) -> Compiled:
    """Compile `src` into `<cache_dir>/<digest>.o`, or return the cached object when the digest is already there.

    The dependency scan (`clang -M`, preprocessor only) always runs: without it we cannot know which headers the key
    covers. The object is written to a temporary file and renamed, so a concurrent run never sees half an object.
    """
    source = os.path.abspath(src)
    try:
        with open(source, "rb") as f:
            source_bytes = f.read()
    except OSError as exc:
        raise CompileError(source, [], str(exc), f"cannot read the source: {exc.strerror}") from exc
    flags = build_flags(include_dirs, defines, cflags)
    version = clang_version(clang, source)
    shim_dir = write_shim(cache_dir)
    compile_flags = build_flags(include_dirs, defines, cflags, shim_dir)

    scan = _run_clang(source, [clang, *compile_flags, "-M", "-MT", "object", source])
    headers: list[tuple[str, bytes]] = []
    for path in local_headers(parse_make_deps(scan.stdout), source, shim_dir):
        try:
            with open(path, "rb") as f:
                headers.append((path, f.read()))
        except OSError as exc:
            raise CompileError(source, scan.args, str(exc), f"cannot read header {path}: {exc.strerror}") from exc
    digest = cache_key(source_bytes, os.path.dirname(source), headers, flags, version)

    out = os.path.join(cache_dir, digest + ".o")
    # The key ignores where the source lives, so the object must too: without these the debug info and BTF line info
    # carry the source's directory, and the same source copied to two places would make two different objects
    # under one key (whichever compile wrote last would win, and the other deployment would see its object change).
    relocatable = [f"-fdebug-prefix-map={os.path.dirname(source)}=.", "-fdebug-compilation-dir=."]
    command = [clang, *compile_flags, *relocatable, "-c", source, "-o", out]
    if os.path.isfile(out) and os.path.getsize(out) > 0:
        return Compiled(out, digest, True, command)

    fd, tmp = tempfile.mkstemp(prefix=f".{digest}.", suffix=".o.tmp", dir=cache_dir)
    os.close(fd)
    try:
        _run_clang(source, [clang, *compile_flags, *relocatable, "-c", source, "-o", tmp], shown=command)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Compiled(out, digest, False, command)


def write_shim(cache_dir: str) -> str:
    """The directory of our <gnu/stubs.h> (GLIBC_STUBS_SHIM) under `cache_dir`, written atomically when missing."""
    shim_dir = os.path.join(cache_dir, SHIM_DIR_NAME)
    header = os.path.join(shim_dir, "gnu", "stubs.h")
    try:
        with open(header, encoding="utf-8") as f:
            if f.read() == GLIBC_STUBS_SHIM:
                return shim_dir
    except OSError:
        pass
    os.makedirs(cache_dir, mode=0o755, exist_ok=True)
    os.makedirs(os.path.dirname(header), mode=0o755, exist_ok=True)
    with atomic_file(header, mode=0o644) as f:
        f.write(GLIBC_STUBS_SHIM)
    return shim_dir


def object_digest(path: str) -> str:
    """sha256 of an object file (what was loaded, whatever produced it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(functools.partial(f.read, 1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- inspect -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    section: str
    type: str
    expected_attach_type: str


@dataclass(frozen=True)
class MapSpecInObject:
    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    key_type: BtfType | None
    value_type: BtfType | None
    internal: bool
    # For the global-data maps libbpf creates: the ELF section (.rodata, .data, .bss, .kconfig, .rodata.foo).
    section: str | None = None
    # Maps of maps: the inner map template declared with __array(values, ...).
    inner: MapSpecInObject | None = None
    # Set when the object asks libbpf to pin the map by name (LIBBPF_PIN_BY_NAME).
    pin_path: str | None = None


@dataclass(frozen=True)
class ConstantSpec:
    name: str
    type: BtfType
    offset: int
    size: int

    @property
    def type_name(self) -> str:
        return type_name(self.type)


@dataclass
class ObjectSpec:
    path: str
    name: str
    programs: list[ProgramSpec]
    maps: list[MapSpecInObject]
    constants: dict[str, ConstantSpec]
    btf_raw: bytes | None = None
    # The initial .rodata image (the constants' values as compiled); None when the object has no .rodata.
    rodata: bytes | None = None

    def map(self, name: str) -> MapSpecInObject | None:
        for m in self.maps:
            if m.name == name:
                return m
        return None

    @property
    def rodata_map(self) -> MapSpecInObject | None:
        for m in self.maps:
            if m.internal and m.section == RODATA_SECTION:
                return m
        return None


def unsupported_by_kernel(spec: ObjectSpec) -> list[str]:
    """The programs and maps of an object whose type the running kernel does not have, found by probing each type
    (not by the kernel version): what a load would fail on with a bare EINVAL, said before anything is loaded."""
    missing = [
        f"program {prog.name} is of type {prog.type}"
        for prog in spec.programs
        if _libbpf.probe_prog_type(prog.type) is False
    ]
    for m in spec.maps:
        for declared in (m, m.inner):
            if declared is not None and not declared.internal and _maps.map_type_supported(declared.type) is False:
                missing.append(f"map {m.name} is of type {declared.type}")
    return missing


def _btf_type(btf: Btf | None, type_id: int) -> BtfType | None:
    if btf is None or not type_id:
        return None
    try:
        return btf.type(type_id)
    except KeyError:
        return None


def _spec_from(obj: BpfObject, path: str) -> ObjectSpec:
    btf_raw = obj.btf_raw()
    btf = Btf.from_raw(btf_raw) if btf_raw else None
    programs = [ProgramSpec(p.name, p.section, p.type, p.expected_attach_type) for p in obj.programs()]
    maps: list[MapSpecInObject] = []
    rodata: bytes | None = None

    def describe(m: MapHandle, inner: bool = False) -> MapSpecInObject:
        key_type = _btf_type(btf, m.btf_key_type_id)
        value_type = _btf_type(btf, m.btf_value_type_id)
        internal = m.internal and not inner
        section = None
        if internal and isinstance(value_type, Datasec):
            section = value_type.name
        elif internal:
            # libbpf names internal maps "<object prefix><section>"; the section starts at the first dot.
            section = m.name[m.name.index(".") :] if "." in m.name else None
        template = m.inner if not inner else None
        return MapSpecInObject(
            name=m.name,
            type=m.type,
            key_size=m.key_size,
            value_size=m.value_size,
            max_entries=m.max_entries,
            flags=m.flags,
            key_type=key_type,
            value_type=value_type,
            internal=internal,
            section=section,
            inner=describe(template, inner=True) if template is not None else None,
            pin_path=m.pin_path if not inner else None,
        )

    for m in obj.maps():
        spec = describe(m)
        section = spec.section
        if section == RODATA_SECTION:
            rodata = m.initial_value()
        maps.append(spec)
    constants: dict[str, ConstantSpec] = {}
    if btf is not None:
        for _tid, t in btf.types():
            if isinstance(t, Datasec) and t.name == RODATA_SECTION:
                for var, offset, size in t.vars:
                    if isinstance(var, Var):
                        constants[var.name] = ConstantSpec(var.name, var.type, offset, size)
    return ObjectSpec(
        path=path,
        name=obj.name,
        programs=programs,
        maps=maps,
        constants=constants,
        btf_raw=btf_raw,
        rodata=rodata,
    )


def inspect_object(
    path: str, *, object_name: str | None = None, program_types: Mapping[str, str] | None = None
) -> ObjectSpec:
    """Programs, maps and constants of an object file, read by libbpf without loading anything into the kernel.

    `object_name` overrides the name libbpf derives from the file name (it prefixes the internal maps' names, e.g.
    `counter.rodata`; a cached `<digest>.o` would otherwise give them a hex prefix). `program_types` loads the named
    programs as if they were in those sections (see set_program_types)."""
    with BpfObject(path, object_name) as obj:
        set_program_types(obj, program_types)
        return _spec_from(obj, path)


def set_program_types(obj: BpfObject, program_types: Mapping[str, str] | None) -> None:
    """Give programs the type of a libbpf 1.x section, by program name: how a source whose section names only older
    libbpf knew (SEC("xdp_pass")) loads as written. ObjectParamError names an unknown program or section."""
    if not program_types:
        return
    handles = {prog.name: prog for prog in obj.programs()}
    for name, section in program_types.items():
        path = f"program_types.{name}"
        if name not in handles:
            known = ", ".join(sorted(handles)) or "none"
            raise ObjectParamError(path, f"the object has no program named {name!r} (its programs: {known})")
        if not isinstance(section, str) or not section:
            raise ObjectParamError(path, f"expected a libbpf section name such as xdp or tc, got {section!r}")
        try:
            handles[name].set_section_type(section)
        except BpfError:
            raise ObjectParamError(
                path, f"libbpf 1.x knows no section named {section!r} (the names it knows: {PROGRAM_TYPES_DOC})"
            ) from None


def legacy_section_replacement(section: str) -> str | None:
    """The libbpf 1.x section an older libbpf read `section` as (xdp_icmp_echo -> xdp), None when none fits."""
    for prefix in _LEGACY_SECTION_PREFIXES:
        if section.startswith(prefix) and section != prefix:
            return prefix
    return None


def check_program_types(spec: ObjectSpec) -> None:
    """Refuse, before anything is loaded, an object whose program libbpf could not give a type from its section:
    the kernel would refuse it with a bare EINVAL. The message names the section and what to write instead."""
    for prog in spec.programs:
        if prog.type != "unspec":
            continue
        section = prog.section
        modern = legacy_section_replacement(section)
        if modern:
            older = f'libbpf before 1.0 read any section starting with "{modern}" as SEC("{modern}")'
            fix = f'write SEC("{modern}") in the source, or keep the source as written and set program_types: '
            fix += f"{{{prog.name}: {modern}}}"
        else:
            older = f"the section names libbpf knows are listed at {PROGRAM_TYPES_DOC}"
            fix = f"write one of them in SEC(), or set program_types: {{{prog.name}: <section>}}"
        raise ObjectParamError(
            f"programs.{prog.name}",
            f'SEC("{section}") is not a section name libbpf 1.x knows, so it cannot tell the program\'s type '
            f"({older}); {fix}",
        )


# --- constants ---------------------------------------------------------------------------------------------------


def encode_constants(
    spec: ObjectSpec,
    constants: Mapping[str, Any],
    current: bytes,
    formats: Mapping[str, str] | None = None,
) -> bytes:
    """A new .rodata image: `current` with each named constant encoded through its BTF type.

    `formats` maps field paths rooted at `constants.<name>` to a codec text format (ipv4, ipv6, ip, mac, hex, be)."""
    if not isinstance(constants, Mapping):
        raise ObjectParamError(
            "constants", f"expected a dict of constant names to values, got {type(constants).__name__}"
        )
    image = bytearray(current)
    for name, value in constants.items():
        path = f"constants.{name}"
        const = spec.constants.get(name)
        if const is None:
            if spec.constants:
                known = ", ".join(sorted(spec.constants))
                problem = f"the object has no constant named {name!r} (its .rodata constants: {known})"
            else:
                problem = (
                    "the object has no .rodata constants (declare them in the C source as `volatile const` globals)"
                )
            raise ObjectParamError(path, problem)
        mine = {p: f for p, f in (formats or {}).items() if p == path or p.startswith(path + ".")}
        try:
            data = compile_codec(const.type, mine, root=path).encode(value)
        except CodecError as exc:
            raise ObjectParamError(exc.path, exc.problem) from None
        end = const.offset + const.size
        if len(data) != const.size or end > len(image):
            raise ObjectParamError(
                path,
                f"{type_name(const.type)} at offset {const.offset} ({const.size} bytes) does not fit the "
                f"{len(image)}-byte .rodata image",
            )
        image[const.offset : end] = data
    return bytes(image)


def decode_constants(spec: ObjectSpec, image: bytes, formats: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The value of every constant in a .rodata image (e.g. spec.rodata, or a loaded object's rodata map)."""
    out: dict[str, Any] = {}
    for name, const in spec.constants.items():
        path = f"constants.{name}"
        mine = {p: f for p, f in (formats or {}).items() if p == path or p.startswith(path + ".")}
        codec = compile_codec(const.type, mine, root=path)
        if const.offset + const.size <= len(image):
            out[name] = codec.decode(image, const.offset)
    return out


# --- verifier log ------------------------------------------------------------------------------------------------

# An instruction ("12: (61) r2 = ..."), a register state ("12: R1=ctx()") or a branch state ("from 4 to 6: ...").
_STATE_LINE = re.compile(r"^(\d+: |from \d+ to \d+: |;)")
_PROCESSED = re.compile(r"^processed (\d+) insns")


def parse_verifier_log(log: str) -> tuple[str, int | None]:
    """(the verifier's error text, instructions processed) from a level-1 verifier log.

    The error is what the verifier printed after the last instruction/state line and before its "processed N insns"
    summary (often two lines: the error and an explanation, which are joined)."""
    lines = [line.rstrip() for line in log.splitlines()]
    end = len(lines)
    insns: int | None = None
    for i in range(len(lines) - 1, -1, -1):
        m = _PROCESSED.match(lines[i])
        if m:
            end, insns = i, int(m.group(1))
            break
    message: list[str] = []
    for line in reversed(lines[:end]):
        if not line.strip():
            if message:
                break
            continue
        if _STATE_LINE.match(line):
            break
        message.append(line.strip())
    message.reverse()
    if len(message) > 4:
        # No instruction lines close by (e.g. a rejected BTF or a program too large): keep the last lines.
        message = message[-2:]
    text = " ".join(message)
    if not text:
        rest = [line.strip() for line in lines[:end] if line.strip()]
        text = rest[-1] if rest else ""
    return text, insns


def _log_tail(log: str, count: int = LOG_TAIL_LINES) -> str:
    lines = log.rstrip().splitlines()
    return "\n".join(lines[-count:])


def _write_atomic(path: str, data: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    with atomic_file(path) as f:
        f.write(data)


_FAILED_PROG = re.compile(r"prog '([^']+)': (?:BPF program load failed|failed to load)")


def _failed_program(obj: BpfObject) -> str | None:
    """Which program libbpf was loading when it failed: it names it in its warnings; with a single program there is
    no doubt either way."""
    for line in reversed(obj.messages.splitlines()):
        m = _FAILED_PROG.search(line)
        if m:
            return m.group(1)
    names = [p.name for p in obj.programs() if p.autoload]
    return names[0] if len(names) == 1 else None


# libbpf replaces what it could not relocate with calls to these bogus helper ids, so the verifier's complaint
# ("invalid func unknown#195896080") hides the real cause, which libbpf printed as a warning.
_POISON_HINTS = (
    ("unknown#195896080", "a CO-RE relocation failed: the running kernel lacks a field or type the program uses"),
    ("unknown#2001", "the program uses a map that libbpf did not create"),
)


def _libbpf_hint(obj: BpfObject, message: str) -> str:
    for marker, hint in _POISON_HINTS:
        if marker in message:
            detail = [line for line in obj.messages.splitlines() if "relo #" in line or "map '" in line]
            return f"{hint}; libbpf: {detail[-1].strip()}" if detail else hint
    return ""


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "program"


# --- load --------------------------------------------------------------------------------------------------------


@dataclass
class LoadedProgram:
    name: str
    fd: Fd
    info: dict[str, Any]
    map_ids: list[int] = field(default_factory=list)


@dataclass
class LoadedMap:
    name: str
    fd: Fd
    info: dict[str, Any]
    reused: bool
    internal: bool
    section: str | None = None


@dataclass
class LoadedObject:
    """Loaded programs and maps, each with our own fd: pin them (`fd.pin(path)`) before close(), or they go away."""

    programs: dict[str, LoadedProgram]
    maps: dict[str, LoadedMap]
    object_btf_raw: bytes
    spec: ObjectSpec | None = None
    digest: str = ""

    def close(self) -> None:
        for prog in self.programs.values():
            prog.fd.close()
        for m in self.maps.values():
            m.fd.close()

    def __enter__(self) -> LoadedObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_reusable(name: str, pin: str, have: _bpf_map.BpfMap, want: MapSpecInObject) -> None:
    """bpf_map__reuse_fd takes the pinned map's definition as it is without comparing: compare the kernel-visible
    shape here so a mismatch is reported by name instead of as a verifier error (or not at all)."""
    problems = []
    for what, theirs, ours in (
        ("type", have.info["type"], want.type),
        ("key_size", have.info["key_size"], want.key_size),
        ("value_size", have.info["value_size"], want.value_size),
        (
            "flags",
            _abi.declared_map_flags(have.info["type"], have.info["flags"]),
            _abi.declared_map_flags(want.type, want.flags),
        ),
    ):
        if theirs != ours:
            problems.append(f"{what} {theirs} (object declares {ours})")
    if problems:
        raise ObjectParamError(f"reuse_maps.{name}", f"the map pinned at {pin} has " + ", ".join(problems))


def load_object(
    path: str,
    *,
    constants: Mapping[str, Any] | None = None,
    map_sizes: Mapping[str, int] | None = None,
    reuse_maps: Mapping[str, str] | None = None,
    log_dir: str = DEFAULT_LOG_DIR,
    object_name: str | None = None,
    constant_formats: Mapping[str, str] | None = None,
    program_types: Mapping[str, str] | None = None,
) -> LoadedObject:
    """Load every program of an object file into the kernel and return our own fds for its programs and maps.

    `map_sizes` sets max_entries by map name; `reuse_maps` maps a map name to the pin of an existing map that the
    new programs use instead of a new one (its contents survive); `constants` sets .rodata variables by name;
    `program_types` sets program types by section name (set_program_types). Maps the object asks libbpf to pin by
    name (LIBBPF_PIN_BY_NAME) are not pinned by libbpf: the caller pins every map where it keeps the application's.
    Raises ObjectParamError (bad parameter, named by path), VerifierError, LoadError, or BpfError."""
    digest = object_digest(path)
    obj = BpfObject(path, object_name)
    result = LoadedObject(programs={}, maps={}, object_btf_raw=b"", digest=digest)
    try:
        set_program_types(obj, program_types)
        spec = _spec_from(obj, path)
        result.spec = spec
        result.object_btf_raw = spec.btf_raw or b""
        # Keep handles under the names the object declares: bpf_map__reuse_fd renames a map to the reused one's.
        handles = list(zip(spec.maps, obj.maps()))
        by_name = {m.name: (m, h) for m, h in handles}
        reuse = dict(reuse_maps or {})
        for _want, handle in handles:
            if handle.pin_path:
                # Left to libbpf, a PIN_BY_NAME map is pinned at /sys/fs/bpf/<name> (outside the application, shared
                # with any other object that has a map of that name, left behind on removal) and, when a map is
                # already pinned there, that one is used instead of the reused or recreated one decided here.
                handle.clear_pin_path()

        for name, pin in reuse.items():
            if name not in by_name:
                raise ObjectParamError(f"reuse_maps.{name}", _no_such_map(name, spec))
            want, handle = by_name[name]
            with _bpf_map.map_open(pin) as existing:
                _check_reusable(name, pin, existing, want)
                size = (map_sizes or {}).get(name)
                if size is not None and size != existing.info["max_entries"]:
                    raise ObjectParamError(
                        f"map_sizes.{name}",
                        f"the map is reused from {pin}, which has max_entries={existing.info['max_entries']}; a "
                        "reused map keeps its size",
                    )
                handle.reuse_fd(existing.fd)

        for name, size in (map_sizes or {}).items():
            if name not in by_name:
                raise ObjectParamError(f"map_sizes.{name}", _no_such_map(name, spec))
            if isinstance(size, bool) or not isinstance(size, int) or not 0 < size < 2**32:
                raise ObjectParamError(f"map_sizes.{name}", f"expected a positive 32-bit integer, got {size!r}")
            want, handle = by_name[name]
            if want.internal:
                raise ObjectParamError(f"map_sizes.{name}", "the size of a global-data map is fixed by the object")
            if name not in reuse:
                handle.set_max_entries(size)

        if constants:
            rodata = [(m, h) for m, h in handles if m.section == RODATA_SECTION]
            current = rodata[0][1].initial_value() if rodata else None
            image = encode_constants(spec, constants, current or b"", constant_formats)
            if rodata:
                rodata[0][1].set_initial_value(image)

        obj.capture_verifier_logs()
        try:
            obj.load()
        except BpfError as exc:
            log = obj.verifier_log()
            if not log.strip():
                if _NO_KERNEL_BTF in obj.messages:
                    exc = BpfError(exc.op, exc.obj, exc.errno, KERNEL_BTF_MISSING)
                raise LoadError(exc, obj.messages) from None
            raise _verifier_error(obj, log, exc, digest, log_dir) from None

        for prog_handle in obj.programs():
            if not prog_handle.loaded:
                continue  # not autoloaded (SEC("?...")): nothing in the kernel to hand out
            name = prog_handle.name
            fd = prog_handle.dup_fd(f"program {name}")
            result.programs[name] = LoadedProgram(name, fd, {})
            result.programs[name].info = _libbpf.prog_info(fd)
            result.programs[name].map_ids = prog_map_ids(fd)
        for want, handle in handles:
            fd = handle.dup_fd(f"map {want.name}")
            result.maps[want.name] = LoadedMap(
                want.name, fd, {}, reused=want.name in reuse, internal=want.internal, section=want.section
            )
            result.maps[want.name].info = _libbpf.map_info(fd)
    except BaseException:
        result.close()
        raise
    finally:
        # Our dup'ed fds keep what loaded alive; libbpf's own fds and memory go now.
        obj.close()
    return result


def _no_such_map(name: str, spec: ObjectSpec) -> str:
    known = ", ".join(m.name for m in spec.maps if not m.internal) or "none"
    return f"the object has no map named {name!r} (its maps: {known})"


def _verifier_error(obj: BpfObject, log: str, exc: BpfError, digest: str, log_dir: str) -> VerifierError:
    program = _failed_program(obj) or "(unknown)"
    message, insns = parse_verifier_log(log)
    log_path: str | None = os.path.join(log_dir, f"{digest}-{_safe_name(program)}.log")
    try:
        _write_atomic(log_path, log)
    except OSError:
        # The rejection is what matters; a log directory we cannot write must not hide it.
        log_path = None
    hint = _libbpf_hint(obj, message)
    if hint:
        message = f"{message} ({hint})"
    return VerifierError(
        program=program,
        message=message or exc.detail,
        log_tail=_log_tail(log),
        log_path=log_path,
        insns_processed=insns,
        kernel_release=os.uname().release,
        errno=exc.errno,
        libbpf_log=obj.messages,
    )
