"""The collection's declared dependencies agree with each other and with the code: requirements.txt with what the
plugins import, bindep.txt with the Makefile's package lists and the bpf_host role's, meta/execution-environment.yml
with the files the build ships."""

from __future__ import annotations

import ast
import fnmatch
import functools
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml
from bindep.depends import Depends
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

# Imported by plugins but not pip requirements: ansible-core itself (and PyYAML, which it requires), the collection,
# and bcc's bindings (a system package: bindep.txt's bcc profile).
NOT_PIP = {"ansible", "ansible_collections", "yaml", "bcc"}


def _requirements(path: Path) -> dict[str, Requirement]:
    reqs = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            reqs[req.name.lower()] = req
    return reqs


def _plugin_imports() -> dict[str, str]:
    """Top-level module name -> a file importing it, for every non-stdlib import under plugins/ (optional imports in
    try blocks included: they are needed for the features that use them)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


@functools.cache
def _bindep_file() -> Depends:
    return Depends((ROOT / "bindep.txt").read_text())  # parsing takes a quarter of a second


def _bindep(profiles: list[str]) -> set[str]:
    return {rule[0] for rule in _bindep_file().active_rules(profiles)}


def _bindep_by_profile(platform: str) -> dict[str, set[str]]:
    """bindep.txt's packages on a platform: the default profile, and what each other profile adds to it."""
    default = _bindep([platform, "default"])
    extra = _bindep_file().profiles()
    return {"default": default} | {name: _bindep([platform, name]) - default for name in extra}


def _make_variables(*names: str) -> dict[str, list[str]]:
    """The Makefile's variables as make itself expands them."""
    rules = "".join(f"print-{name}:\n\t@echo '{name}=$({name})'\n" for name in names)
    out = subprocess.run(
        ["make", "--no-print-directory", "-s", "-f", "Makefile", "-f", "-", *(f"print-{name}" for name in names)],
        cwd=ROOT,
        input=rules,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {name: value.split() for name, value in (line.split("=", 1) for line in out.splitlines())}


def _same(left: Iterable[str], right: Iterable[str], left_name: str, right_name: str) -> None:
    left, right = set(left), set(right)
    assert left == right, f"only in {left_name}: {sorted(left - right)}; only in {right_name}: {sorted(right - left)}"


def test_requirements_txt_lists_exactly_what_the_plugins_import():
    imports = _plugin_imports()
    needed = {name.lower() for name in imports} - NOT_PIP
    listed = set(_requirements(ROOT / "requirements.txt"))
    assert needed == listed, {
        "imported, not in requirements.txt": {name: imports[name] for name in needed - listed},
        "in requirements.txt, imported nowhere": sorted(listed - needed),
    }


def test_requirements_txt_accepts_the_versions_tests_run_with():
    dev = _requirements(ROOT / "requirements-dev.txt")
    for name, req in _requirements(ROOT / "requirements.txt").items():
        assert name in dev, f"{name} is a runtime requirement but requirements-dev.txt does not pin it"
        pinned = next(iter(dev[name].specifier)).version
        assert req.specifier.contains(pinned), f"requirements.txt's {req} excludes the tested {name}=={pinned}"
        assert not any(spec.operator in ("==", "<", "<=", "~=") for spec in req.specifier), (
            f"requirements.txt's {req}: a pin or upper bound in a collection's requirements conflicts with other "
            "collections in the same execution environment"
        )


def test_bindep_and_the_makefile_agree():
    make = _make_variables("APT_RUNTIME_PKGS", "APT_BCC_PKGS", "APT_DEV_PKGS", "APT_PKGS")
    dpkg = _bindep_by_profile("platform:dpkg")
    assert set(dpkg) == {"default", "bcc"}, f"bindep.txt profiles: {sorted(dpkg)}"
    _same(make["APT_RUNTIME_PKGS"], dpkg["default"], "Makefile's APT_RUNTIME_PKGS", "bindep.txt's default profile")
    _same(make["APT_BCC_PKGS"], dpkg["bcc"], "Makefile's APT_BCC_PKGS", "bindep.txt's bcc profile")
    # `make deps` installs the union, and the development packages are not the collection's.
    assert set(make["APT_PKGS"]) == set(make["APT_RUNTIME_PKGS"]) | set(make["APT_BCC_PKGS"]) | set(
        make["APT_DEV_PKGS"]
    )
    assert not set(make["APT_DEV_PKGS"]) & (dpkg["default"] | dpkg["bcc"])


def test_bindep_and_the_bpf_host_role_agree():
    """The role installs the same system packages per OS family, and the distribution's builds of requirements.txt."""
    defaults = yaml.safe_load((ROOT / "roles/bpf_host/defaults/main.yml").read_text())
    python = {f"python3-{name}" for name in _requirements(ROOT / "requirements.txt")}
    for family, platform in (("Debian", "platform:dpkg"), ("RedHat", "platform:rpm")):
        bindep = _bindep_by_profile(platform)
        role = set(defaults["bpf_host_packages"][family])
        _same(role - python, bindep["default"], f"bpf_host_packages.{family}", f"bindep.txt's default {platform}")
        assert role & python == python, f"{family}: the role does not install {sorted(python - role)}"
        bcc = defaults["bpf_host_bcc_packages"][family]
        _same(bcc, bindep["bcc"], f"bpf_host_bcc_packages.{family}", f"bindep.txt's bcc {platform}")


def test_collection_metadata_names_files_the_build_ships():
    """ansible-builder reads meta/execution-environment.yml from the installed collection: the files it names must
    exist, hold something, and not be left out by galaxy.yml's build_ignore."""
    meta = yaml.safe_load((ROOT / "meta/execution-environment.yml").read_text())
    ignore = yaml.safe_load((ROOT / "galaxy.yml").read_text())["build_ignore"]
    assert set(meta["dependencies"]) == {"python", "system"}
    for kind, name in meta["dependencies"].items():
        path = ROOT / name
        assert path.is_file() and path.read_text().strip(), f"dependencies.{kind}: {name}"
        assert not any(fnmatch.fnmatch(name, pattern) for pattern in ignore), f"build_ignore leaves out {name}"


def test_the_demo_runs_from_the_installed_copy_alone():
    """`make demo`'s playbooks see the tarball `make install` installed and nothing else: not the linked tree (on
    PYTHONPATH or a collections path) and no ansible_collections directory on sys.path."""
    env = _make_variables("DEMO_ENV", "INSTALLED")
    words = env["DEMO_ENV"]
    assert words[:3] == ["env", "-u", "PYTHONPATH"], words
    assert f"ANSIBLE_COLLECTIONS_PATH={ROOT}/.build/installed" in words and env["INSTALLED"] == [
        f"{ROOT}/.build/installed"
    ]
    assert "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false" in words
    assert not [word for word in words if word.startswith("PYTHONPATH=") or ".build/collections" in word]
