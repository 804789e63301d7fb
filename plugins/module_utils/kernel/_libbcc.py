# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bcc's Python bindings (the distribution's python3-bpfcc), found even from a virtualenv, and the few
libbcc calls they do not offer (the names of a compiled module's tables and functions)."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

# Where Debian and Ubuntu install python3-bpfcc. bcc is pure Python over libbcc.so (ctypes), so any CPython 3 can
# import it from there, including a virtualenv's interpreter that does not see the system's site-packages.
DIST_PACKAGES = "/usr/lib/python3/dist-packages"
BCC_PACKAGE_HINT = "python3-bpfcc (Debian/Ubuntu; the cnf.ebpf.bpf_host role installs it with bpf_host_bcc: true)"


class BccMissing(ImportError):
    """bcc's Python bindings are not installed where the module runs."""


def import_bcc() -> Any:
    try:
        import bcc  # type: ignore[import-not-found]
    except ImportError:
        if os.path.isdir(os.path.join(DIST_PACKAGES, "bcc")) and DIST_PACKAGES not in sys.path:
            sys.path.append(DIST_PACKAGES)
        try:
            import bcc  # type: ignore[import-not-found]
        except ImportError as exc:
            raise BccMissing(f"bcc's Python bindings are not installed: install {BCC_PACKAGE_HINT}") from exc
    return bcc


_DECLARED = False


def _lib() -> Any:
    global _DECLARED
    lib = import_bcc().libbcc.lib
    if not _DECLARED:
        for name, restype, argtypes in (
            ("bpf_num_tables", ctypes.c_size_t, [ctypes.c_void_p]),
            ("bpf_table_name", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_size_t]),
            ("bpf_num_functions", ctypes.c_size_t, [ctypes.c_void_p]),
            ("bpf_function_name", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_size_t]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        _DECLARED = True
    return lib


def table_names(module: int) -> list[str]:
    """The tables (maps) a compiled bcc module declares, in declaration order."""
    lib = _lib()
    return [lib.bpf_table_name(module, i).decode() for i in range(lib.bpf_num_tables(module))]


def function_names(module: int) -> list[str]:
    """The functions a compiled bcc module holds (candidates for load_func)."""
    lib = _lib()
    return [lib.bpf_function_name(module, i).decode() for i in range(lib.bpf_num_functions(module))]


def libbcc_path() -> str:
    """The file of the libbcc bcc loaded (its embedded helpers.h is the dialect's definition)."""
    _lib()
    with open("/proc/self/maps", encoding="utf-8") as f:
        for line in f:
            path = line.split(None, 5)[-1].strip()
            if os.path.basename(path).startswith("libbcc.so"):
                return path
    raise BccMissing("libbcc is not mapped into this process after importing bcc")
