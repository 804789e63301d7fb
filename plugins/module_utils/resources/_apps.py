# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where an application's BPF objects live (pin layout on bpffs) and what was deployed (a small
JSON state file per application, written atomically, read and written under a per-application lock).

Pin layout of application NAME under the pin root (default /sys/fs/bpf/cnf):

    <root>/NAME/progs/<program>    programs
    <root>/NAME/maps/<map>         the application's maps
    <root>/NAME/links/<hook>       bpf_links made by cnf.ebpf.bpf_attach (they keep attachments alive)
    <root>/shared/<map>            maps shared between applications, pinned by map name

State: <state_dir>/apps/NAME.json (default state_dir /var/lib/cnf-ebpf); lock: /run/cnf-ebpf/app-NAME.lock.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._files import atomic_file
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import LockTimeout, file_lock

DEFAULT_PIN_ROOT = "/sys/fs/bpf/cnf"
DEFAULT_STATE_DIR = "/var/lib/cnf-ebpf"
STATE_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # pin and file names; bpffs refuses dots


def valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name or ""))


def check_name(what: str, name: str) -> None:
    if not valid_name(name):
        raise ValueError(f"{what}: {name!r} must be 1-64 letters, digits, '_' or '-' (bpffs pin names have no dots)")


class AppLayout:
    """Pin paths of one application."""

    def __init__(self, name: str, pin_root: str = DEFAULT_PIN_ROOT) -> None:
        check_name("name", name)
        self.name = name
        self.pin_root = pin_root
        self.root = os.path.join(pin_root, name)
        self.progs_dir = os.path.join(self.root, "progs")
        self.maps_dir = os.path.join(self.root, "maps")
        self.links_dir = os.path.join(self.root, "links")
        self.shared_dir = os.path.join(pin_root, "shared")

    def prog_pin(self, prog: str) -> str:
        return os.path.join(self.progs_dir, prog)

    def map_pin(self, map_name: str, shared: bool = False) -> str:
        return os.path.join(self.shared_dir if shared else self.maps_dir, map_name)

    def link_pin(self, hook_id: str) -> str:
        return os.path.join(self.links_dir, hook_id)

    def make_dirs(self) -> None:
        for path in (self.progs_dir, self.maps_dir, self.links_dir):
            os.makedirs(path, exist_ok=True)


def open_pin(path: str) -> _libbpf.Fd:
    return _libbpf.obj_get(path)


def fd_prog_id(fd: _libbpf.Fd) -> int:
    return int(_libbpf.prog_info(fd)["id"])


def pinned_prog_id(path: str) -> int | None:
    """Kernel id of the program pinned at path; None when the pin is not a program."""
    with _libbpf.obj_get(path) as fd:
        if _libbpf.obj_kind(fd) != "prog":
            return None
        return int(_libbpf.prog_info(fd)["id"])


def state_path(name: str, state_dir: str = DEFAULT_STATE_DIR) -> str:
    check_name("name", name)
    return os.path.join(state_dir, "apps", f"{name}.json")


STATE_DIR_MIN_FREE = 1 << 20  # bytes: a state file is a few KiB, the compile cache a few objects


def state_dir_refusal(state_dir: str) -> str | None:
    """Why state files could not be written under `state_dir` (read-only, not writable, full), as a sentence that
    says what to fix; None when they can. Asked before a change, so that a run is refused before it deploys anything
    whose record it could not keep (a deployment without its state is one the next run cannot upgrade or remove)."""
    probe = os.path.abspath(state_dir)
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the directory will be created under the nearest one that exists
    problem = None
    if not os.path.isdir(probe):
        problem = f"{probe} is not a directory"
    else:
        st = os.statvfs(probe)
        if st.f_flag & os.ST_RDONLY:
            problem = f"{probe} is on a read-only file system"
        elif not os.access(probe, os.W_OK):
            problem = f"{probe} is not writable by this user"
        elif st.f_bavail * st.f_frsize < STATE_DIR_MIN_FREE:
            problem = (
                f"the file system of {probe} has {st.f_bavail * st.f_frsize // 1024} KiB free, "
                f"less than the {STATE_DIR_MIN_FREE // 1024} KiB the state and compile cache need"
            )
        elif st.f_files and not st.f_favail:
            problem = f"the file system of {probe} has no free inodes"
    if problem is None:
        return None
    return (
        f"state_dir: {problem}. The record of what is deployed is kept there, so nothing was changed: free space, "
        "make it writable, or point state_dir at a writable directory"
    )


def read_state(name: str, state_dir: str = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    path = state_path(name, state_dir)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"state file {path} cannot be read ({exc}); remove it to redeploy from scratch") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError(f"state file {path} is not a cnf.ebpf v{STATE_VERSION} application state")
    return data


def write_state(name: str, data: dict[str, Any], state_dir: str = DEFAULT_STATE_DIR) -> str:
    """Write atomically (temp file + rename): a crash leaves the old state or the new one, never half of one."""
    path = state_path(name, state_dir)
    with atomic_file(path, fsync=True) as f:
        json.dump(dict(data, version=STATE_VERSION, name=name), f, indent=1, sort_keys=True)
    return path


def remove_state(name: str, state_dir: str = DEFAULT_STATE_DIR) -> bool:
    try:
        os.unlink(state_path(name, state_dir))
    except FileNotFoundError:
        return False
    return True


@contextmanager
def app_lock(name: str, timeout: float = 60) -> Iterator[None]:
    """Serialise bpf_program and bpf_attach runs on one application (they share its state file)."""
    check_name("name", name)
    with file_lock(f"app-{name}", timeout):
        yield


__all__ = [
    "DEFAULT_PIN_ROOT",
    "DEFAULT_STATE_DIR",
    "AppLayout",
    "LockTimeout",
    "app_lock",
    "check_name",
    "fd_prog_id",
    "open_pin",
    "pinned_prog_id",
    "read_state",
    "remove_state",
    "state_path",
    "write_state",
]
