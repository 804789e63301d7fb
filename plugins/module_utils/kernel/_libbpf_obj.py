# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BPF object files: libbpf's bpf_object / bpf_program / bpf_map API through ctypes.

`BpfObject` opens an ELF object (`bpf_object__open_file`), exposes its programs and maps as small handles with
plain Python getters/setters, loads it (`bpf_object__load`) and hands out dup'ed `Fd`s. Pointers into libbpf's
object stay inside this file: a handle refuses to work once its object is closed, because libbpf frees the
program/map structs in `bpf_object__close`.

libbpf prints its warnings (why a map could not be created, which CO-RE relocation failed...) to stderr through its
default print callback. A ctypes callback cannot format the C varargs portably, so while libbpf works we point fd 2
at a temporary file and keep what it wrote for error details (`BpfObject.messages`).

Only symbols present in libbpf 1.1 (Debian 12) are used.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import (
    BpfError,
    Fd,
    ProgInfoStruct,
    declare,
    prog_info,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._abi import MAP_TYPE_NAMES, PROG_TYPE_NAMES

# Large enough for the level-1 log of a rejected program of realistic size. Kernels >= 6.4 keep the tail of a
# log that does not fit (and the verifier's error line is at the end), older ones keep the head.
VERIFIER_LOG_SIZE = 16 * 1024 * 1024

_VP = ctypes.c_void_p
_U32 = ctypes.c_uint32
_INT = ctypes.c_int
_STR = ctypes.c_char_p
_SIZE = ctypes.c_size_t


class _OpenOpts(ctypes.Structure):
    """struct bpf_object_open_opts of libbpf 1.1 (fields up to kernel_log_level)."""

    _fields_ = [
        ("sz", _SIZE),
        ("object_name", _STR),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", _STR),
        ("_attach_prog_fd_stub", _U32),
        ("kconfig", _STR),
        ("btf_custom_path", _STR),
        ("kernel_log_buf", _VP),
        ("kernel_log_size", _SIZE),
        ("kernel_log_level", _U32),
    ]


class _TestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts of libbpf 1.1."""

    _fields_ = [
        ("sz", _SIZE),
        ("data_in", _VP),
        ("data_out", _VP),
        ("data_size_in", _U32),
        ("data_size_out", _U32),
        ("ctx_in", _VP),
        ("ctx_out", _VP),
        ("ctx_size_in", _U32),
        ("ctx_size_out", _U32),
        ("retval", _U32),
        ("repeat", _INT),
        ("duration", _U32),
        ("flags", _U32),
        ("cpu", _U32),
        ("batch_size", _U32),
    ]


_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_object__open_file": (_VP, [_STR, ctypes.POINTER(_OpenOpts)]),
    "bpf_object__load": (_INT, [_VP]),
    "bpf_object__close": (None, [_VP]),
    "bpf_object__name": (_STR, [_VP]),
    "bpf_object__btf": (_VP, [_VP]),
    "bpf_object__next_program": (_VP, [_VP, _VP]),
    "bpf_object__next_map": (_VP, [_VP, _VP]),
    "bpf_program__name": (_STR, [_VP]),
    "bpf_program__section_name": (_STR, [_VP]),
    "bpf_program__type": (_INT, [_VP]),
    "bpf_program__expected_attach_type": (_INT, [_VP]),
    "bpf_program__autoload": (ctypes.c_bool, [_VP]),
    "bpf_program__fd": (_INT, [_VP]),
    "bpf_program__insn_cnt": (_SIZE, [_VP]),
    "bpf_program__set_log_buf": (_INT, [_VP, _VP, _SIZE]),
    "bpf_program__set_log_level": (_INT, [_VP, _U32]),
    "bpf_program__set_type": (_INT, [_VP, _INT]),
    "bpf_program__set_expected_attach_type": (_INT, [_VP, _INT]),
    "libbpf_prog_type_by_name": (_INT, [_STR, ctypes.POINTER(_INT), ctypes.POINTER(_INT)]),
    "bpf_map__name": (_STR, [_VP]),
    "bpf_map__type": (_INT, [_VP]),
    "bpf_map__key_size": (_U32, [_VP]),
    "bpf_map__value_size": (_U32, [_VP]),
    "bpf_map__max_entries": (_U32, [_VP]),
    "bpf_map__set_max_entries": (_INT, [_VP, _U32]),
    "bpf_map__map_flags": (_U32, [_VP]),
    "bpf_map__btf_key_type_id": (_U32, [_VP]),
    "bpf_map__btf_value_type_id": (_U32, [_VP]),
    "bpf_map__is_internal": (ctypes.c_bool, [_VP]),
    "bpf_map__inner_map": (_VP, [_VP]),
    "bpf_map__pin_path": (_STR, [_VP]),
    "bpf_map__set_pin_path": (_INT, [_VP, _STR]),
    "bpf_map__fd": (_INT, [_VP]),
    "bpf_map__reuse_fd": (_INT, [_VP, _INT]),
    "bpf_map__initial_value": (_VP, [_VP, ctypes.POINTER(_SIZE)]),
    "bpf_map__set_initial_value": (_INT, [_VP, _VP, _SIZE]),
    "btf__raw_data": (_VP, [_VP, ctypes.POINTER(_U32)]),
    "libbpf_bpf_attach_type_str": (_STR, [_INT]),
    "libbpf_bpf_prog_type_str": (_STR, [_INT]),
    "bpf_obj_get_info_by_fd": (_INT, [_INT, _VP, ctypes.POINTER(_U32)]),
    "bpf_prog_test_run_opts": (_INT, [_INT, ctypes.POINTER(_TestRunOpts)]),
}


def _lib() -> ctypes.CDLL:
    return declare(_PROTOTYPES)


def _text(value: bytes | None) -> str:
    return value.decode(errors="replace") if value else ""


def attach_type_name(value: int) -> str:
    """libbpf's name for an attach type ('xdp', 'cgroup_inet_ingress', 'trace_fentry'), as bpftool prints it."""
    return _text(_lib().libbpf_bpf_attach_type_str(value)) or str(value)


def prog_type_name(value: int) -> str:
    return PROG_TYPE_NAMES.get(value) or _text(_lib().libbpf_bpf_prog_type_str(value)) or str(value)


def prog_map_ids(fd: Fd) -> list[int]:
    """Ids of the maps a loaded program uses (bpf_prog_info.map_ids; two calls: count, then fill)."""
    lib = _lib()
    count = prog_info(fd)["nr_map_ids"]
    if not count:
        return []
    ids = (_U32 * count)()
    info = ProgInfoStruct(nr_map_ids=count, map_ids=ctypes.addressof(ids))
    length = _U32(ctypes.sizeof(info))
    ret = lib.bpf_obj_get_info_by_fd(fd.fd, ctypes.byref(info), ctypes.byref(length))
    if ret < 0:
        raise BpfError("info", fd.label, -ret)
    # The program cannot gain maps after load, but take the smaller count to stay within our buffer regardless.
    return list(ids[: min(count, info.nr_map_ids)])


def prog_test_run(fd: Fd, data: bytes, repeat: int = 1) -> tuple[int, bytes]:
    """Run a loaded program once on `data` in the kernel (BPF_PROG_TEST_RUN, e.g. a packet for XDP/tc programs):
    (the program's return value, the data as the program left it)."""
    opts, out = _test_run(fd, data, repeat)
    return opts.retval, out.raw[: opts.data_size_out]


def prog_test_duration(fd: Fd, data: bytes, repeat: int) -> tuple[int, int]:
    """(return value, average ns per run) of `repeat` runs on `data`, timed by the kernel itself."""
    opts, _out = _test_run(fd, data, repeat)
    return opts.retval, opts.duration


def _test_run(fd: Fd, data: bytes, repeat: int) -> tuple[_TestRunOpts, Any]:
    # Both buffers are locals so they outlive the call; the kernel may grow the packet (XDP head/tail adjust).
    inbuf = ctypes.create_string_buffer(data, len(data))
    out = ctypes.create_string_buffer(max(len(data), 1) + 256)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(inbuf, _VP),
        data_out=ctypes.cast(out, _VP),
        data_size_in=len(data),
        data_size_out=len(out),
        repeat=repeat,
    )
    ret = _lib().bpf_prog_test_run_opts(fd.fd, ctypes.byref(opts))
    if ret < 0:
        raise BpfError("test run", fd.label, -ret)
    return opts, out


@contextmanager
def capture_stderr(sink: list[str]) -> Iterator[None]:
    """Point fd 2 at a temporary file while libbpf runs; append what was written (libbpf's warnings) to sink."""
    try:
        saved = os.dup(2)
    except OSError:
        # No usable fd 2 (a daemon with it closed): nothing to capture, let libbpf print wherever it goes.
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode(errors="replace"))


class BpfObject:
    """An opened libbpf bpf_object: programs and maps before load, then load() and dup'ed fds.

    close() frees libbpf's object and its own fds; fds handed out by `ProgramHandle.dup_fd()`/`MapHandle.dup_fd()`
    are the caller's and keep the kernel objects alive. Use as a context manager.
    """

    def __init__(self, path: str, object_name: str | None = None) -> None:
        self.path = path
        self._obj: int | None = None
        self._messages: list[str] = []
        self._log_buf: Any = None
        self.loaded = False
        lib = _lib()
        opts = _OpenOpts(sz=ctypes.sizeof(_OpenOpts), object_name=object_name.encode() if object_name else None)
        with capture_stderr(self._messages):
            ctypes.set_errno(0)
            ptr = lib.bpf_object__open_file(path.encode(), ctypes.byref(opts))
            code = ctypes.get_errno()
        if not ptr:
            raise BpfError("open", path, code or errno_mod.EINVAL, self.last_message() or None)
        self._obj = ptr

    # lifetime

    def close(self) -> None:
        if self._obj:
            _lib().bpf_object__close(self._obj)
            self._obj = None
        self._log_buf = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort only; callers close explicitly
        self.close()

    def _ptr(self) -> int:
        if not self._obj:
            raise BpfError("use", self.path, errno_mod.EBADF, "the BPF object is closed")
        return self._obj

    # what libbpf said

    @property
    def messages(self) -> str:
        """Everything libbpf printed while opening and loading this object."""
        return "".join(self._messages)

    def last_message(self) -> str:
        """libbpf's last warning line (the most specific reason for a failure), without the 'libbpf: ' prefix."""
        lines = [line.strip() for line in self.messages.splitlines() if line.strip()]
        # libbpf ends a failed load with generic "failed to load object" lines; the cause is the line before them.
        for line in reversed(lines):
            text = line[len("libbpf: ") :] if line.startswith("libbpf: ") else line
            if "failed to load object" in text or text.startswith("-- END"):
                continue
            return text
        return ""

    # contents

    @property
    def name(self) -> str:
        return _text(_lib().bpf_object__name(self._ptr()))

    def programs(self) -> list[ProgramHandle]:
        lib = _lib()
        out: list[ProgramHandle] = []
        prog = lib.bpf_object__next_program(self._ptr(), None)
        while prog:
            out.append(ProgramHandle(self, prog))
            prog = lib.bpf_object__next_program(self._ptr(), prog)
        return out

    def maps(self) -> list[MapHandle]:
        lib = _lib()
        out: list[MapHandle] = []
        map_ptr = lib.bpf_object__next_map(self._ptr(), None)
        while map_ptr:
            out.append(MapHandle(self, map_ptr))
            map_ptr = lib.bpf_object__next_map(self._ptr(), map_ptr)
        return out

    def btf_raw(self) -> bytes | None:
        """The object's BTF as libbpf holds it after open (DATASEC sizes and variable offsets fixed up)."""
        lib = _lib()
        btf = lib.bpf_object__btf(self._ptr())
        if not btf:
            return None
        size = _U32(0)
        data = lib.btf__raw_data(btf, ctypes.byref(size))
        if not data:
            raise BpfError("read btf", self.path, ctypes.get_errno() or errno_mod.ENOMEM)
        return ctypes.string_at(data, size.value)

    # load

    def capture_verifier_logs(self, size: int = VERIFIER_LOG_SIZE) -> None:
        """Give every program one shared log buffer. libbpf loads without a log first and retries a failed program
        with log level 1 into this buffer; it stops at the first failure, so one buffer holds that program's log."""
        self._log_buf = ctypes.create_string_buffer(size)
        for prog in self.programs():
            prog.set_log_buf(self._log_buf, size)

    def verifier_log(self) -> str:
        """The log captured for the program that failed to load ('' when none was written)."""
        if self._log_buf is None:
            return ""
        return self._log_buf.value.decode(errors="replace")

    def load(self) -> None:
        """bpf_object__load: create (or reuse) the maps, relocate and load every program; BpfError on failure."""
        if self._log_buf is not None:
            self._log_buf[0] = b"\0"
        with capture_stderr(self._messages):
            ret = _lib().bpf_object__load(self._ptr())
        if ret < 0:
            raise BpfError("load", self.path, -ret, self.last_message() or None)
        self.loaded = True


class _Handle:
    """A program or map pointer inside a BpfObject; valid only while the object is open."""

    def __init__(self, obj: BpfObject, ptr: int) -> None:
        self._obj = obj
        self._p = ptr

    def _ptr(self) -> int:
        self._obj._ptr()  # raises once the object is closed: libbpf freed the struct this points to
        return self._p


class ProgramHandle(_Handle):
    @property
    def name(self) -> str:
        return _text(_lib().bpf_program__name(self._ptr()))

    @property
    def section(self) -> str:
        return _text(_lib().bpf_program__section_name(self._ptr()))

    @property
    def type(self) -> str:
        return prog_type_name(_lib().bpf_program__type(self._ptr()))

    @property
    def expected_attach_type(self) -> str:
        return attach_type_name(_lib().bpf_program__expected_attach_type(self._ptr()))

    @property
    def autoload(self) -> bool:
        return bool(_lib().bpf_program__autoload(self._ptr()))

    @property
    def insn_count(self) -> int:
        return int(_lib().bpf_program__insn_cnt(self._ptr()))

    def set_section_type(self, section: str) -> None:
        """Load this program as libbpf 1.x would load one in SEC(`section`): its program type and expected attach
        type, found by libbpf's own section table (for sources whose section name libbpf no longer knows)."""
        lib = _lib()
        prog_type, attach_type = _INT(0), _INT(0)
        ret = lib.libbpf_prog_type_by_name(section.encode(), ctypes.byref(prog_type), ctypes.byref(attach_type))
        if ret < 0:
            raise BpfError("set type", f"program {self.name}", -ret, f"libbpf knows no section named {section!r}")
        ret = lib.bpf_program__set_type(self._ptr(), prog_type.value)
        if ret >= 0:
            ret = lib.bpf_program__set_expected_attach_type(self._ptr(), attach_type.value)
        if ret < 0:
            raise BpfError("set type", f"program {self.name}", -ret, section)

    def set_log_buf(self, buf: Any, size: int) -> None:
        ret = _lib().bpf_program__set_log_buf(self._ptr(), ctypes.cast(buf, _VP), size)
        if ret < 0:
            raise BpfError("set log buffer", f"program {self.name}", -ret)

    @property
    def loaded(self) -> bool:
        return _lib().bpf_program__fd(self._ptr()) >= 0

    def dup_fd(self, label: str | None = None) -> Fd:
        """A new fd for the loaded program, owned by the caller (outlives the object)."""
        fd = _lib().bpf_program__fd(self._ptr())
        if fd < 0:
            raise BpfError("get fd", f"program {self.name}", -fd, "the program is not loaded")
        return Fd(os.dup(fd), label or f"program {self.name}")


class MapHandle(_Handle):
    @property
    def name(self) -> str:
        return _text(_lib().bpf_map__name(self._ptr()))

    @property
    def type(self) -> str:
        value = _lib().bpf_map__type(self._ptr())
        return MAP_TYPE_NAMES.get(value, str(value))

    @property
    def key_size(self) -> int:
        return int(_lib().bpf_map__key_size(self._ptr()))

    @property
    def value_size(self) -> int:
        return int(_lib().bpf_map__value_size(self._ptr()))

    @property
    def max_entries(self) -> int:
        return int(_lib().bpf_map__max_entries(self._ptr()))

    @property
    def flags(self) -> int:
        return int(_lib().bpf_map__map_flags(self._ptr()))

    @property
    def btf_key_type_id(self) -> int:
        return int(_lib().bpf_map__btf_key_type_id(self._ptr()))

    @property
    def btf_value_type_id(self) -> int:
        return int(_lib().bpf_map__btf_value_type_id(self._ptr()))

    @property
    def internal(self) -> bool:
        return bool(_lib().bpf_map__is_internal(self._ptr()))

    @property
    def inner(self) -> MapHandle | None:
        """The inner map template of a map of maps (from `__array(values, ...)`), None for other maps."""
        ptr = _lib().bpf_map__inner_map(self._ptr())
        return MapHandle(self._obj, ptr) if ptr else None

    @property
    def pin_path(self) -> str | None:
        """Where libbpf pins the map (set by `pinning = LIBBPF_PIN_BY_NAME`), None when it does not."""
        value = _lib().bpf_map__pin_path(self._ptr())
        return _text(value) if value else None

    def clear_pin_path(self) -> None:
        """Take pinning out of libbpf's hands for this map (LIBBPF_PIN_BY_NAME): otherwise bpf_object__load pins it
        at <pin_root_path>/<name> itself and, when a map is already pinned there, uses that one."""
        ret = _lib().bpf_map__set_pin_path(self._ptr(), None)
        if ret < 0:
            raise BpfError("clear pin path", f"map {self.name}", -ret)

    def set_max_entries(self, count: int) -> None:
        ret = _lib().bpf_map__set_max_entries(self._ptr(), count)
        if ret < 0:
            raise BpfError("set max_entries", f"map {self.name}", -ret)

    def reuse_fd(self, fd: Fd) -> None:
        """Use an existing map instead of creating one (libbpf dups the fd; the caller keeps and closes its own)."""
        ret = _lib().bpf_map__reuse_fd(self._ptr(), fd.fd)
        if ret < 0:
            raise BpfError("reuse", f"map {self.name}", -ret, f"cannot reuse {fd.label}")

    def initial_value(self) -> bytes | None:
        """The initial contents of a global-data map (.rodata/.data/.bss), None for other maps."""
        size = _SIZE(0)
        data = _lib().bpf_map__initial_value(self._ptr(), ctypes.byref(size))
        if not data:
            return None
        return ctypes.string_at(data, size.value)

    def set_initial_value(self, data: bytes) -> None:
        ret = _lib().bpf_map__set_initial_value(self._ptr(), data, len(data))
        if ret < 0:
            raise BpfError("set initial value", f"map {self.name}", -ret, f"{len(data)} bytes")

    def dup_fd(self, label: str | None = None) -> Fd:
        """A new fd for the created (or reused) map, owned by the caller."""
        fd = _lib().bpf_map__fd(self._ptr())
        if fd < 0:
            raise BpfError("get fd", f"map {self.name}", -fd if fd < -1 else errno_mod.EBADF, "the map is not created")
        return Fd(os.dup(fd), label or f"map {self.name}")
