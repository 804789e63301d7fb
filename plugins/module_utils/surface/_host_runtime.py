# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Our Python, run on the host by systemd without Ansible: the mechanism cnf.ebpf.bpf_boot (the restore at boot)
and cnf.ebpf.bpf_metrics (the metrics timer) share.

- a runtime: one zip of the Python code the job needs (this collection's module_utils and the parts of
  ansible.module_utils they import), built from the very modules this run imported, so the host needs no Ansible;
- an entry script that puts the zip on sys.path and calls one function of a surface file with its arguments;
- systemd unit files, written atomically and only when they differ, and enabled with the symlink
  `systemctl enable` makes (so this works in an image or a chroot where systemd is not running).
"""

from __future__ import annotations

import io
import os
import sys
import zipfile

from ansible_collections.cnf.ebpf.plugins.module_utils.resources._files import atomic_file

COLLECTION_UTILS = "ansible_collections.cnf.ebpf.plugins.module_utils"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same code makes the same zip, byte for byte


def _package_files(package: str) -> dict[str, bytes]:
    """The .py files of an imported package, read from where it was imported from: a directory, or the AnsiballZ
    payload zip (which holds just what the module needs). Read as files, not through sys.modules: some packages
    (ansible.module_utils.distro) replace themselves in sys.modules with another module."""
    location = sys.modules[package].__spec__.submodule_search_locations[0]
    prefix = package.replace(".", "/") + "/"
    files: dict[str, bytes] = {}
    if ".zip" + os.sep in location:
        archive = location[: location.index(".zip" + os.sep) + len(".zip")]
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith(prefix) and member.endswith(".py"):
                    files[member] = zf.read(member)
        return files
    for root, dirs, names in os.walk(location):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for fname in names:
            if fname.endswith(".py"):
                path = os.path.join(root, fname)
                with open(path, "rb") as f:
                    files[prefix + os.path.relpath(path, location).replace(os.sep, "/")] = f.read()
    return files


def runtime_zip() -> bytes:
    """This collection's module_utils and ansible.module_utils, as this run imported them, with empty __init__ files
    for the packages above them (as AnsiballZ does)."""
    files = _package_files(COLLECTION_UTILS)
    files.update(_package_files("ansible.module_utils"))
    parts = COLLECTION_UTILS.split(".")
    for depth in range(1, len(parts) + 1):
        files.setdefault("/".join(parts[:depth]) + "/__init__.py", b"")
    files["ansible/__init__.py"] = b""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[path])
    return buf.getvalue()


def entry_script(runtime: str, comment: str, module: str, function: str) -> bytes:
    """A script that runs `module.function(sys.argv[1:])` from the runtime zip and exits with what it returns."""
    return (
        f"# {comment}\n"
        "import sys\n"
        f"sys.path.insert(0, {runtime!r})\n"
        f"from {module} import {function}\n"
        f"sys.exit({function}(sys.argv[1:]))\n"
    ).encode()


def write_if_different(path: str, data: bytes, mode: int, check_mode: bool) -> bool:
    """Atomic (temp + rename) write of `data` unless the file already holds it; whether it (would have) changed."""
    try:
        with open(path, "rb") as f:
            if f.read() == data and (os.stat(path).st_mode & 0o777) == mode:
                return False
    except FileNotFoundError:
        pass
    if not check_mode:
        with atomic_file(path, binary=True, mode=mode) as f:
            f.write(data)
    return True


def remove_if_present(path: str, check_mode: bool) -> bool:
    """Remove a file or symlink; whether it (would have) changed anything."""
    if not os.path.lexists(path):
        return False
    if not check_mode:
        os.unlink(path)
    return True


def wants_link(unit_path: str, unit_dir: str, target: str) -> str:
    return os.path.join(unit_dir, f"{target}.wants", os.path.basename(unit_path))


def enable(unit_path: str, unit_dir: str, target: str, check_mode: bool) -> bool:
    """What `systemctl enable` does for a unit WantedBy=`target` (works without a running systemd)."""
    link = wants_link(unit_path, unit_dir, target)
    if os.path.islink(link) and os.readlink(link) == unit_path:
        return False
    if not check_mode:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(unit_path, link)
    return True
