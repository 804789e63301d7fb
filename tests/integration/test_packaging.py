"""The collection as operators get it: the tarball `ansible-galaxy collection build` makes holds every file the
collection runs from and no development leftovers, it installs into a fresh collections path and its playbooks
resolve from there, and an execution environment built from examples/execution-environment/ gets the collection with
its Python and system packages (the image build's galaxy and introspection stages run here, without a container)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bindep.depends import Depends

ROOT = Path(__file__).resolve().parents[2]
EE_DEFINITION = "examples/execution-environment/execution-environment.yml"

# What the collection runs from: every tracked file there must be in the tarball.
SHIPPED = ["plugins", "roles", "playbooks", "bpf", "meta", "demo", "docs", "changelogs", "tools", "examples"]
SHIPPED_FILES = ["README.md", "LICENSE", "requirements.txt", "bindep.txt"]
# Never in the tarball: path components, and name suffixes.
LEFTOVER_PARTS = {".venv", ".build", ".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", "bench"}
LEFTOVER_SUFFIXES = (".pyc", ".o", ".tar.gz")
ROLE_PATH_REF = re.compile(r"\{\{\s*role_path\s*\}\}/([^\s\"'{}]+)")


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _requirement_lines() -> list[str]:
    return [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]


def _alone(collections: Path) -> dict[str, str]:
    """Environment in which Ansible sees the collections under `collections` and nothing else."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    return env | {"ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false"}


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run("ansible-galaxy", "collection", "build", "--output-path", out, ROOT)
    (built,) = out.glob("cnf-ebpf-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def members(tarball: Path) -> set[str]:
    with tarfile.open(tarball) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    dest = tmp_path_factory.mktemp("installed")
    _run("ansible-galaxy", "collection", "install", "-p", dest, tarball, env=_alone(dest))
    yield dest
    shutil.rmtree(dest)


def _tasks_references(role: str, node: Any) -> Iterator[str]:
    """Files a role's task list names: included task files, templates, copied files, other roles' task files."""
    if isinstance(node, list):
        for item in node:
            yield from _tasks_references(role, item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        action = key.rsplit(".", 1)[-1]
        if action in ("include_tasks", "import_tasks"):
            name = value if isinstance(value, str) else value["file"]
            yield f"roles/{role}/tasks/{name}"
        elif action in ("include_role", "import_role"):
            other = value["name"].removeprefix("cnf.ebpf.")
            yield f"roles/{other}/tasks/{value.get('tasks_from', 'main')}.yml".replace(".yml.yml", ".yml")
        elif action in ("template", "copy") and isinstance(value, dict) and "{{" not in str(value.get("src", "{{")):
            yield f"roles/{role}/{'templates' if action == 'template' else 'files'}/{value['src']}"
        else:
            yield from _tasks_references(role, value)


def _role_references() -> set[str]:
    refs = set()
    for role_dir in sorted((ROOT / "roles").iterdir()):
        if not role_dir.is_dir():
            continue
        for tasks in sorted(role_dir.glob("tasks/*.yml")):
            refs.update(_tasks_references(role_dir.name, yaml.safe_load(tasks.read_text())))
        for path in sorted(role_dir.glob("*/*.yml")):  # defaults and argument specs: "{{ role_path }}/../../bpf/x.c"
            for text in _strings(yaml.safe_load(path.read_text())):
                for ref in ROLE_PATH_REF.findall(text):
                    refs.add(os.path.normpath(f"roles/{role_dir.name}/{ref}"))
    return refs


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_tarball_holds_every_file_the_collection_runs_from(members: set[str]):
    tracked = _run("git", "ls-files", "-co", "--exclude-standard", "--", *SHIPPED, *SHIPPED_FILES, cwd=ROOT).split()
    assert set(SHIPPED_FILES) <= set(tracked)
    references = _role_references()
    assert {"bpf/xdp_filter.c", "bpf/flow_tracker.c", "roles/fleet_report/templates/report.html.j2"} <= references
    assert "roles/xdp_app/tasks/attach.yml" in references
    missing = sorted((set(tracked) | references | {"MANIFEST.json", "FILES.json"}) - members)
    assert not missing, f"left out of the tarball: {missing}"


def test_tarball_leaves_out_development_files(members: set[str]):
    leftovers = sorted(
        name
        for name in members
        if LEFTOVER_PARTS & set(name.split("/")) or name.endswith(LEFTOVER_SUFFIXES) or name.startswith("tests/output/")
    )
    assert not leftovers, f"development files in the tarball: {leftovers}"
    assert not {"Makefile", "requirements-dev.txt", "pyproject.toml"} & members


def test_installed_copy_runs_on_its_own(installed: Path):
    coll = installed / "ansible_collections/cnf/ebpf"
    listed = _run("ansible-galaxy", "collection", "list", "cnf.ebpf", "--format", "yaml", env=_alone(installed))
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    assert yaml.safe_load(listed) == {str(installed / "ansible_collections"): {"cnf.ebpf": {"version": version}}}
    playbooks = [f"cnf.ebpf.{p.stem}" for p in sorted((coll / "playbooks").glob("*.yml"))]
    assert len(playbooks) == len(list((ROOT / "playbooks").glob("*.yml"))) >= 4
    _run("ansible-playbook", "--syntax-check", "-i", "localhost,", *playbooks, env=_alone(installed))
    # ansible-builder's collection metadata, read from the installed copy as an image build reads it.
    deps = yaml.safe_load(_run("ansible-builder", "introspect", "--sanitize", installed))
    assert deps["python"] == [f"{line}  # from collection cnf.ebpf" for line in _requirement_lines()]


def test_execution_environment_build_context(tarball: Path, tmp_path: Path):
    # The definition takes the tarball from the checkout's .build/ee-src (put there by `make ee`): same layout here.
    (tmp_path / "examples/execution-environment").mkdir(parents=True)
    shutil.copy(ROOT / EE_DEFINITION, tmp_path / EE_DEFINITION)
    (tmp_path / ".build/ee-src").mkdir(parents=True)
    shutil.copy(tarball, tmp_path / ".build/ee-src/cnf-ebpf.tar.gz")
    context = tmp_path / "context"
    _run(
        "ansible-builder", "create", "-f", tmp_path / EE_DEFINITION, "-c", context, "--output-filename", "Containerfile"
    )

    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/fedora/fedora:41"' in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "RUN $PYCMD /output/scripts/introspect.py introspect" in containerfile
    build = context / "_build"
    assert (build / "collections/cnf-ebpf.tar.gz").read_bytes() == tarball.read_bytes()

    # The galaxy stage: `ansible-galaxy collection install -r requirements.yml` in /build (the context's _build).
    share = tmp_path / "share"
    _run("ansible-galaxy", "collection", "install", "-r", "requirements.yml", "-p", share, cwd=build, env=_alone(share))
    assert (share / "ansible_collections/cnf/ebpf/meta/execution-environment.yml").is_file()

    # The builder stage: the context's own introspect.py over what the galaxy stage installed, then bindep on the
    # result for the image's platform (what install-from-bindep hands to dnf).
    pip, bindep = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    _run(
        "python", build / "scripts/introspect.py", "introspect", share, f"--write-pip={pip}", f"--write-bindep={bindep}"
    )
    assert [line.split("#")[0].strip() for line in pip.read_text().splitlines()] == _requirement_lines()
    rpm = ["platform:rpm", "default"]
    rpms = {rule[0] for rule in Depends(bindep.read_text()).active_rules(rpm)}
    assert rpms == {rule[0] for rule in Depends((ROOT / "bindep.txt").read_text()).active_rules(rpm)}
    assert {"clang", "libbpf", "bpftool"} <= rpms
