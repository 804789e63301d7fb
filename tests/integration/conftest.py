"""Fixtures for tests against the real kernel: bpffs, throwaway pin directories, module and playbook runners."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from .netns import VethPair

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "plugins" / "modules"
BPFFS = "/sys/fs/bpf"
ARTIFACTS = REPO / ".build" / "artifacts"  # kept by CI: the report pages' screenshots
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _bpffs_mounted() -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split()[4] == BPFFS and " - bpf " in line for line in f)


@pytest.fixture(scope="session", autouse=True)
def kernel_ready() -> None:
    if os.geteuid() != 0:
        pytest.fail("integration tests run against the real kernel and need root (CAP_BPF, CAP_NET_ADMIN)")
    if not _bpffs_mounted():
        subprocess.run(["mount", "-t", "bpf", "bpf", BPFFS], check=True)


@pytest.fixture
def pin_dir() -> Any:
    """A fresh directory on bpffs, removed with every pin in it afterwards, even when the test fails."""
    path = Path(BPFFS) / f"cnf-test-{uuid.uuid4().hex[:10]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def veth() -> Iterator[VethPair]:
    """Two namespaces joined by a veth pair (netns.VethPair), removed after the test whatever happened."""
    pair = VethPair()
    try:
        yield pair
    finally:
        pair.close()


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Headless Chromium driven by chromedriver (selenium), its browser console kept (driver.get_log('browser'));
    the test is skipped where chromium or chromium-driver is not installed (`make deps` installs them)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    headless = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")
    for arg in (*headless, "--window-size=1280,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def application(tmp_path: Path, prefix: str = "t") -> Iterator[dict[str, Any]]:
    """Body of the tests' `app` fixtures: a unique application name and state dir, the application (pins, hooks,
    state) removed afterwards. Each test file's fixture says what it must outlive (e.g. depends on `veth`)."""
    base = {"name": f"{prefix}{uuid.uuid4().hex[:8]}", "state_dir": str(tmp_path / "state")}
    yield base
    run_module("bpf_program", dict(base, state="absent"))


def run_module(
    name: str, args: dict[str, Any], check: bool = False, diff: bool = False, prefix: Sequence[str] = ()
) -> dict[str, Any]:
    """Run one module the way Ansible does for a local connection (an args file), and return its JSON result.
    `prefix`: a command the module's interpreter runs under (setpriv, to take capabilities away)."""
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check, _ansible_diff=diff)}
    args_file = Path(f"/tmp/cnf-ebpf-args-{uuid.uuid4().hex}.json")
    args_file.write_text(json.dumps(payload))
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, str(MODULES / f"{name}.py"), str(args_file)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        args_file.unlink()
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"module {name} printed no JSON:\n{proc.stdout}\n{proc.stderr}") from None


def run_playbook(workdir: Path, tasks: list[dict[str, Any]], check: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run tasks in a playbook on localhost; each task's registered result comes back under its `register` name."""
    names = [t["register"] for t in tasks if "register" in t]
    out = workdir / "results.json"
    collect = {
        "name": "collect results",
        "ansible.builtin.copy": {
            "dest": str(out),
            "content": "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}",
        },
        "check_mode": False,
        "diff": False,
    }
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [*tasks, collect]}]
    book = workdir / "play.yml"
    book.write_text(yaml.safe_dump(play, sort_keys=False))
    cmd = ["ansible-playbook", "-i", "localhost,", "-c", "local", str(book)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if not out.exists():
        raise AssertionError(f"playbook failed:\n{proc.stdout}\n{proc.stderr}")
    results = json.loads(out.read_text())
    results["_stdout"] = proc.stdout
    return results


class RoleRun:
    """One ansible-playbook run of roles on localhost: return code, the recap's counters, the output and the
    variables asked for (read after the roles ran)."""

    def __init__(self, rc: int, stats: dict[str, int], stdout: str, variables: dict[str, Any]) -> None:
        self.rc, self.stats, self.stdout, self.variables = rc, stats, stdout, variables

    @property
    def changed(self) -> int:
        return self.stats.get("changed", -1)


def run_role(
    workdir: Path,
    roles: list[dict[str, Any]],
    collect: tuple[str, ...] = (),
    check: bool = False,
    diff: bool = False,
    host_vars: dict[str, Any] | None = None,
) -> RoleRun:
    """Run `roles` ([{role: cnf.ebpf.x, vars: {...}}]) on localhost; `collect` names variables to bring back;
    `host_vars` are the inventory's variables for localhost."""
    out = workdir / f"vars-{uuid.uuid4().hex[:6]}.json"
    play: dict[str, Any] = {"hosts": "localhost", "gather_facts": False, "roles": roles}
    if collect:
        content = "{{ {" + ", ".join(f"'{n}': {n} | default(none)" for n in collect) + "} | to_json }}"
        play["post_tasks"] = [
            {
                "ansible.builtin.copy": {"dest": str(out), "content": content, "mode": "0600"},
                "check_mode": False,
                "changed_when": False,
            }
        ]
    book = workdir / f"play-{uuid.uuid4().hex[:6]}.yml"
    book.write_text(yaml.safe_dump([play], sort_keys=False))
    inventory = workdir / f"inventory-{uuid.uuid4().hex[:6]}.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": host_vars or {}}}}))
    cmd = ["ansible-playbook", "-i", str(inventory), "-c", "local", str(book)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    env = dict(
        os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1"
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    recap = [line for line in proc.stdout.splitlines() if line.startswith("localhost")]
    stats = {k: int(v) for k, v in (item.split("=") for item in recap[-1].split(":", 1)[1].split())} if recap else {}
    variables = json.loads(out.read_text()) if out.exists() else {}
    return RoleRun(proc.returncode, stats, proc.stdout + proc.stderr, variables)


def compile_bpf(src: Path, out: Path) -> Path:
    """clang -target bpf with the multiarch include dir Debian keeps <asm/types.h> in."""
    multiarch = f"/usr/include/{platform.machine()}-linux-gnu"
    subprocess.run(
        ["clang", "-O2", "-g", "-target", "bpf", "-I", multiarch, "-c", str(src), "-o", str(out)], check=True
    )
    return out


def bpftool(*args: str) -> Any:
    proc = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)
