# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_boot: applications that come back by themselves after a reboot.

bpffs is empty after a reboot: programs, maps, pinned links and the attachments they held are gone. The application
state files under the state dir survive, and record what the last tasks declared: bpf_program its parameters,
bpf_attach each hook's parameters, bpf_map_entries (with persist) the declared entries. `bpf_boot` marks an
application for restoring and installs, on the host itself (with _host_runtime, which cnf.ebpf.bpf_metrics's timer
shares),

- a runtime: one zip of the Python code the restore needs (this collection's module_utils and the parts of
  ansible.module_utils they import), built from the very modules this run imported, so the host needs no Ansible;
- a restore script and a systemd oneshot unit that runs it at boot (enabled with the same symlink
  `systemctl enable` makes).

The restore replays, per marked application: bpf_program (loading and pinning, without attaching), the persisted
entries (config, rules) and then each recorded attachment, so a filter has its rules before it sees a packet. It is
idempotent: run on a host where nothing was lost, it changes nothing.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import LockTimeout
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import (
    _attach_module,
    _entries_module,
    _host_runtime,
    _options,
    _program_module,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import (
    fail_without_libbpf,
    fail_without_privileges,
    with_defaults,
)

UNIT_NAME = "cnf-ebpf-restore.service"
ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "state_dir": _options.state_dir(),
    "runtime_dir": {"type": "path"},
    "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
    "enable": {"type": "bool", "default": True},
    "python": {"type": "path"},
    "lock_timeout": _options.lock_timeout(),
}


class BootError(ValueError):
    pass


# --- the files on the host (the runtime, the script and the unit: _host_runtime) -------------------------------------


def restore_script(runtime: str) -> bytes:
    comment = "Written by cnf.ebpf.bpf_boot: restores the marked cnf.ebpf applications (see the unit)."
    return _host_runtime.entry_script(runtime, comment, __name__, "restore_main")


def unit_text(python: str, script: str, state_dir: str) -> bytes:
    return (
        "# Written by cnf.ebpf.bpf_boot.\n"
        "[Unit]\n"
        "Description=Restore cnf.ebpf applications after boot (programs, maps, entries, attachments)\n"
        "After=local-fs.target sys-fs-bpf.mount network.target\n"
        "Wants=network.target\n"
        f"ConditionPathIsDirectory={state_dir}/apps\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={python} {script} {state_dir}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    ).encode()


def install(params: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    p = with_defaults(ARGUMENT_SPEC, params)
    _apps.check_name("name", p["name"])
    runtime_dir = p["runtime_dir"] or os.path.join(p["state_dir"], "runtime")
    runtime = os.path.join(runtime_dir, "cnf-ebpf-runtime.zip")
    script = os.path.join(runtime_dir, "cnf-ebpf-restore.py")
    unit_path = os.path.join(p["unit_dir"], UNIT_NAME)
    result: dict[str, Any] = {"changed": False, "runtime": runtime, "unit": unit_path}
    with _apps.app_lock(p["name"], p["lock_timeout"]):
        state = _apps.read_state(p["name"], p["state_dir"])
        if p["state"] == "absent":
            if state is not None and state.get("boot"):
                result["changed"] = True
                if not check_mode:
                    state["boot"] = False
                    _apps.write_state(p["name"], state, p["state_dir"])
            return result
        if state is None or not state.get("params"):
            raise BootError(
                f"name: no application {p['name']!r} deployed by cnf.ebpf.bpf_program is recorded in "
                f"{p['state_dir']}; deploy it first (a deployment made before this version records no parameters "
                "until bpf_program runs again)"
            )
        missing = sorted(hook for hook, rec in (state.get("attachments") or {}).items() if "params" not in rec)
        if missing:
            raise BootError(
                f"name: the attachments {', '.join(missing)} were recorded without their parameters; run "
                "their cnf.ebpf.bpf_attach tasks again before marking the application for boot"
            )
        if not state.get("boot"):
            result["changed"] = True
            if not check_mode:
                state["boot"] = True
                _apps.write_state(p["name"], state, p["state_dir"])
    python = p["python"] or sys.executable
    changed = [
        _host_runtime.write_if_different(runtime, _host_runtime.runtime_zip(), 0o644, check_mode),
        _host_runtime.write_if_different(script, restore_script(runtime), 0o644, check_mode),
        _host_runtime.write_if_different(unit_path, unit_text(python, script, p["state_dir"]), 0o644, check_mode),
    ]
    if p["enable"]:
        changed.append(_host_runtime.enable(unit_path, p["unit_dir"], "multi-user.target", check_mode))
    result["changed"] = result["changed"] or any(changed)
    result["restore_command"] = [python, script, p["state_dir"]]
    return result


def run(module: AnsibleModule) -> None:
    fail_without_libbpf(module)
    fail_without_privileges(module)
    try:
        result = install(module.params, check_mode=module.check_mode)
    except (BootError, ValueError, LockTimeout) as exc:
        module.fail_json(msg=str(exc), changed=False)
    module.exit_json(**result)


# --- the restore (run by the unit at boot, without Ansible) --------------------------------------------------------


def restore_app(state: dict[str, Any], log: Any) -> bool:
    """Program, then persisted entries, then attachments. Whether every step worked; a failed deploy stops the
    application's restore (nothing to fill or attach), a failed entry or attachment step does not stop the others."""
    name = state["name"]
    ok = True
    try:
        deployed = _program_module.deploy(state["params"], reattach=False)
        reasons = "; ".join(deployed.get("reasons") or [])
        log(f"{name}: program {f'loaded ({reasons})' if deployed['changed'] else 'unchanged'}")
    except Exception as exc:  # one application's failure must not stop the others
        log(f"{name}: program: FAILED: {exc}")
        return False
    for path, record in sorted((state.get("entries") or {}).items()):
        try:
            done = _entries_module.reconcile(dict(record))
            counts = json.dumps(done.get("counts"))
            log(f"{name}: entries {path}: {f'written {counts}' if done['changed'] else 'unchanged'}")
        except Exception as exc:
            ok = False
            log(f"{name}: entries {path}: FAILED: {exc}")
    for hook, record in sorted((state.get("attachments") or {}).items()):
        try:
            done = _attach_module.attach(dict(record["params"]))
            log(f"{name}: attach {hook}: {done.get('action', 'none') if done['changed'] else 'unchanged'}")
        except Exception as exc:
            ok = False
            log(f"{name}: attach {hook}: FAILED: {exc}")
    return ok


def restore_main(argv: list[str]) -> int:
    """Restore every application marked for boot under the state dir (argv[0]); 0 when all of it worked."""
    state_dir = argv[0] if argv else _apps.DEFAULT_STATE_DIR

    def log(line: str) -> None:
        sys.stdout.write(line + "\n")  # to the journal, line by line
        sys.stdout.flush()

    ok = True
    for path in sorted(glob.glob(os.path.join(state_dir, "apps", "*.json"))):
        name = os.path.basename(path)[: -len(".json")]
        try:
            state = _apps.read_state(name, state_dir)
        except ValueError as exc:
            log(f"{name}: FAILED: {exc}")
            ok = False
            continue
        if not state or not state.get("boot"):
            continue
        try:
            ok = restore_app(state, log) and ok
        except Exception:
            log(f"{name}: FAILED:\n{traceback.format_exc()}")
            ok = False
    return 0 if ok else 1
