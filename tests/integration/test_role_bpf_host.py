"""The bpf_host role on this host: BTF checked, bpffs mounted and recorded for boot, directories made; a second run
changes nothing. Packages are left to the machine (CI installs them); the fstab is a scratch file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .conftest import RoleRun, run_role


def bpf_host(tmp_path: Path, **role_vars: object) -> RoleRun:
    return run_role(tmp_path, [{"role": "cnf.ebpf.bpf_host", "vars": role_vars}])


def test_bpf_host_is_idempotent(tmp_path: Path) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text("proc /proc proc defaults 0 0\n")
    role_vars = {
        "bpf_host_install_packages": False,
        "bpf_host_fstab": str(fstab),
        "bpf_host_state_dir": str(tmp_path / "state"),
    }
    first = bpf_host(tmp_path, **role_vars)
    assert first.rc == 0, first.stdout
    assert "bpf /sys/fs/bpf bpf defaults 0 0" in fstab.read_text().splitlines()
    assert (tmp_path / "state").is_dir() and Path("/sys/fs/bpf/cnf").is_dir()
    mounts = json.loads(
        subprocess.run(["findmnt", "-J", "-t", "bpf", "/sys/fs/bpf"], capture_output=True, text=True, check=True).stdout
    )
    assert mounts["filesystems"][0]["target"] == "/sys/fs/bpf"
    second = bpf_host(tmp_path, **role_vars)
    assert second.rc == 0 and second.changed == 0, second.stdout


def test_missing_btf_fails_clearly(tmp_path: Path) -> None:
    result = bpf_host(
        tmp_path,
        bpf_host_install_packages=False,
        bpf_host_fstab=str(tmp_path / "fstab"),
        bpf_host_btf_path=str(tmp_path / "no-btf"),
    )
    assert result.rc != 0
    assert "without CONFIG_DEBUG_INFO_BTF" in result.stdout
    assert not (tmp_path / "fstab").exists()  # it failed before changing anything
