"""The bpf_host role on this host: BTF checked, bpffs mounted and recorded for boot, directories made; a second run
changes nothing. Packages are left to the machine (CI installs them); the fstab is a scratch file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def run_role(tmp_path: Path, **role_vars: object) -> tuple[int, dict]:
    play = [{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "cnf.ebpf.bpf_host", "vars": role_vars}]}]
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump(play))
    env = dict(
        os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1"
    )
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", str(book)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    recap = [line for line in proc.stdout.splitlines() if line.startswith("localhost")]
    stats = dict(item.split("=") for item in recap[-1].split(":", 1)[1].split()) if recap else {}
    return proc.returncode, {"stats": stats, "stdout": proc.stdout + proc.stderr}


def test_bpf_host_is_idempotent(tmp_path: Path) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text("proc /proc proc defaults 0 0\n")
    role_vars = {
        "bpf_host_install_packages": False,
        "bpf_host_fstab": str(fstab),
        "bpf_host_state_dir": str(tmp_path / "state"),
    }
    rc, first = run_role(tmp_path, **role_vars)
    assert rc == 0, first["stdout"]
    assert "bpf /sys/fs/bpf bpf defaults 0 0" in fstab.read_text().splitlines()
    assert (tmp_path / "state").is_dir() and Path("/sys/fs/bpf/cnf").is_dir()
    mounts = json.loads(
        subprocess.run(["findmnt", "-J", "-t", "bpf", "/sys/fs/bpf"], capture_output=True, text=True, check=True).stdout
    )
    assert mounts["filesystems"][0]["target"] == "/sys/fs/bpf"
    rc, second = run_role(tmp_path, **role_vars)
    assert rc == 0 and second["stats"]["changed"] == "0", second["stdout"]


def test_missing_btf_fails_clearly(tmp_path: Path) -> None:
    rc, result = run_role(
        tmp_path,
        bpf_host_install_packages=False,
        bpf_host_fstab=str(tmp_path / "fstab"),
        bpf_host_btf_path=str(tmp_path / "no-btf"),
    )
    assert rc != 0
    assert "without CONFIG_DEBUG_INFO_BTF" in result["stdout"]
    assert not (tmp_path / "fstab").exists()  # it failed before changing anything
