# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_program: compile (cached), load, pin, and upgrade an application's programs without losing the
state in its maps.

This file decides: it reads the application's state, asks planning whether and why to (re)deploy and what to do
with each pinned map, and records what was deployed in the application's state file. `_program_upgrade` carries a
deployment out (load with compatible maps reused, migrate, replace pins atomically, move the hooks, undo on failure);
anything failing before the swap leaves the old deployment running untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._program_plan import (
    MAP_POLICIES,
    Desired,
    PlanError,
    decide_map,
    reload_reasons,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps, _bcc, _maps, _objects
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._faults import kill_point
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._host import BccMissing, BpfError
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import LockTimeout
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _attach_module, _options
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import (
    fail_without_libbpf,
    fail_without_privileges,
    with_defaults,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._program_upgrade import (
    ProgramError,
    declared_map_spec,
    install,
    interrupted_upgrade,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "src": {"type": "path"},
    "object": {"type": "path"},
    "include_dirs": {"type": "list", "elements": "path", "default": []},
    "defines": {"type": "dict", "default": {}},
    "cflags": {"type": "list", "elements": "str", "default": []},
    "constants": {"type": "dict", "default": {}},
    "map_sizes": {"type": "dict", "default": {}},
    "map_policy": {"type": "str", "default": "fail", "choices": list(MAP_POLICIES)},
    "shared_maps": {"type": "list", "elements": "str", "default": []},
    "pin_root": _options.pin_root(),
    "state_dir": _options.state_dir(),
    "lock_timeout": _options.lock_timeout(),
    "loader": {"type": "str", "default": "libbpf", "choices": ["libbpf", "bcc"]},
    "functions": {"type": "dict", "default": {}},
    "program_types": {"type": "dict", "default": {}},
}
MUTUALLY_EXCLUSIVE = [("src", "object")]
REQUIRED_IF = [("state", "present", ("src", "object"), True)]


def recorded_params(p: dict[str, Any]) -> dict[str, Any]:
    """The parameters a deployment is recorded with: what cnf.ebpf.bpf_boot replays to restore it after a reboot."""
    return {k: v for k, v in p.items() if k in ARGUMENT_SPEC and k != "state"}


def _get_object(p: dict[str, Any], scratch: str | None) -> tuple[str, dict[str, Any]]:
    """The object file to load, compiling `src` when given (into the cache, or into a scratch dir in check mode, so
    check mode writes nothing on the host)."""
    if p["object"]:
        if not os.path.isfile(p["object"]):
            raise ProgramError(f"object: {p['object']} does not exist")
        return p["object"], {"object": p["object"]}
    cache_dir = scratch or os.path.join(p["state_dir"], "cache")
    compiled = _objects.compile_source(
        p["src"],
        include_dirs=list(p["include_dirs"]),
        defines=dict(p["defines"]),
        cflags=list(p["cflags"]),
        cache_dir=cache_dir,
    )
    info = {"src": p["src"], "cached": compiled.cached, "source_digest": compiled.digest}
    return compiled.path, info


def _live_prog_ids(layout: _apps.AppLayout, names: list[str]) -> dict[str, int | None]:
    ids: dict[str, int | None] = {}
    for name in names:
        path = layout.prog_pin(name)
        ids[name] = _apps.pinned_prog_id(path) if os.path.lexists(path) else None
    return ids


def _reconcile(
    p: dict[str, Any],
    check_mode: bool,
    reattach: bool,
    layout: _apps.AppLayout,
    program_names: list[str],
    digest: str,
    spec: Any | None,
    inspect: Callable[[], Any],
    load: Callable[[dict[str, str]], _objects.LoadedObject],
    source: dict[str, Any],
) -> dict[str, Any]:
    """Decide whether to (re)deploy and do it, the same for every loader. `spec` (programs and maps with their
    types) is given when it is cheap to know; otherwise `inspect()` learns it, only when a deployment is due."""
    with _apps.app_lock(p["name"], p["lock_timeout"]):
        state = _apps.read_state(p["name"], p["state_dir"])
        desired = Desired(
            digest,
            dict(p["constants"]),
            {k: int(v) for k, v in p["map_sizes"].items()},
            {prog.name: prog.type for prog in spec.programs} if spec is not None else None,
        )
        reasons = reload_reasons(state, desired, _live_prog_ids(layout, program_names))
        missing_maps = sorted(
            name
            for name, record in ((state or {}).get("maps") or {}).items()
            if record.get("pin") and not os.path.lexists(record["pin"])
        )
        reasons.extend(f"map {name}: pin missing (removed behind our back)" for name in missing_maps)
        if spec is None and reasons and not check_mode:
            spec = inspect()
        unsupported = _objects.unsupported_by_kernel(spec) if spec is not None and reasons else []
        if unsupported:
            raise ProgramError(
                f"this kernel ({os.uname().release}) cannot run the object: {'; '.join(unsupported)}, a type it does "
                "not have (probed); nothing was loaded or changed"
            )
        shared = set(p["shared_maps"])
        decisions, pinned = [], {}
        for m in spec.maps if spec is not None else []:
            if m.internal:
                continue
            map_spec = declared_map_spec(layout, m, shared, p["map_sizes"])
            pinned[m.name] = _maps.read_pinned_map(map_spec.path) if os.path.lexists(map_spec.path) else None
            decisions.append(decide_map(map_spec, pinned[m.name], p["map_policy"]))
        reasons.extend(
            f"map {d.name}: {d.action} ({'; '.join(d.differences)})"
            for d in decisions
            if d.action in ("recreate", "migrate")
        )
        repaired = interrupted_upgrade(state, check_mode)
        result: dict[str, Any] = {
            "changed": bool(reasons),
            "reasons": reasons,
            "source": source,
            "maps": {d.name: {"action": d.action, "pin": d.pin, "differences": d.differences} for d in decisions},
            "state_path": _apps.state_path(p["name"], p["state_dir"]),
        }
        if spec is None:  # not inspected: the recorded maps, as they are
            result["maps"] = {
                name: {"action": "none", "pin": record.get("pin"), "differences": []}
                for name, record in ((state or {}).get("maps") or {}).items()
            }
        if repaired:
            result["repaired"] = [repaired]
        if not reasons or check_mode:
            if repaired and not check_mode:  # killed before anything visible moved: only the note is left
                state.pop("pending", None)
                _apps.write_state(p["name"], state, p["state_dir"])
            if reasons:  # check mode: the hooks an upgrade would move
                result["swapped"] = sorted(
                    hook
                    for hook, record in ((state or {}).get("attachments") or {}).items()
                    if record.get("program") in program_names
                )
            if state is not None and not check_mode and state.get("params") != recorded_params(p):
                # bookkeeping, not a change: what a restore at boot would deploy follows the latest task
                state["params"] = recorded_params(p)
                _apps.write_state(p["name"], state, p["state_dir"])
            result["state"] = state
            return result
        outcome = install(p, recorded_params(p), digest, load, spec, layout, state, decisions, pinned, reattach)
        kill_point("program.state")
        _apps.write_state(p["name"], outcome["state"], p["state_dir"])
        result.update(state=outcome["state"], migrations=outcome["migrations"], swapped=outcome["swapped"])
        if outcome["unreachable"]:
            result["unreachable_hooks"] = outcome["unreachable"]
        return result


def _present(p: dict[str, Any], check_mode: bool, reattach: bool = True) -> dict[str, Any]:
    layout = _apps.AppLayout(p["name"], p["pin_root"])
    refusal = _maps.bpffs_refusal("pin_root", p["pin_root"])
    if refusal:
        raise ProgramError(refusal)
    refusal = None if check_mode else _apps.state_dir_refusal(p["state_dir"])
    if refusal:
        raise ProgramError(refusal)
    if p["loader"] == "bcc":
        return _present_bcc(p, check_mode, reattach, layout)
    if p["functions"]:
        raise ProgramError("functions: only used with loader=bcc (a libbpf object says its program types itself)")
    scratch = tempfile.mkdtemp(prefix="cnf-ebpf-check-") if check_mode else None
    try:
        obj_path, source = _get_object(p, scratch)
        spec = _objects.inspect_object(obj_path, object_name=p["name"], program_types=p["program_types"])
        _objects.check_program_types(spec)
        if p["constants"]:
            _objects.encode_constants(spec, dict(p["constants"]), spec.rodata or b"")  # type-check before anything
        known_maps = {m.name for m in spec.maps if not m.internal}
        for name in p["map_sizes"]:
            if name not in known_maps:
                raise ProgramError(
                    f"map_sizes.{name}: the object has no such map (maps: {', '.join(sorted(known_maps))})"
                )
        for name in p["shared_maps"]:
            if name not in known_maps:
                raise ProgramError(f"shared_maps: the object has no map {name!r}")
        return _reconcile(
            p,
            check_mode,
            reattach,
            layout,
            [pr.name for pr in spec.programs],
            _objects.object_digest(obj_path),
            spec,
            lambda: spec,
            lambda reuse: _objects.load_object(
                obj_path,
                constants=dict(p["constants"]),
                map_sizes={k: int(v) for k, v in p["map_sizes"].items()},
                reuse_maps=reuse,
                log_dir=os.path.join(p["state_dir"], "logs"),
                object_name=p["name"],
                program_types=p["program_types"],
            ),
            source,
        )
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _present_bcc(p: dict[str, Any], check_mode: bool, reattach: bool, layout: _apps.AppLayout) -> dict[str, Any]:
    """bcc-dialect source, compiled by bcc on this host; content-keyed like an object (source, cflags, functions
    and the bcc version), so an unchanged task compiles nothing."""
    if p["object"]:
        raise ProgramError("object: loader=bcc compiles bcc-dialect C from src; load object files with loader=libbpf")
    if p["program_types"]:
        raise ProgramError("program_types: bcc-dialect sources declare their program types in functions")
    for option in ("constants", "map_sizes"):
        if p[option]:
            raise ProgramError(
                f"{option}: not supported with loader=bcc (bcc sizes its tables in the source: use defines)"
            )
    try:
        functions = _bcc.check_functions(dict(p["functions"]))
    except ValueError as exc:
        raise ProgramError(str(exc)) from None
    try:
        with open(p["src"], encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ProgramError(f"src: cannot read {p['src']}: {exc.strerror}") from None
    defines = [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in sorted(p["defines"].items())]
    cflags = [*(f"-I{d}" for d in p["include_dirs"]), *defines]
    cflags += list(p["cflags"])
    digest = _bcc.source_digest(text, functions, cflags)

    def inspect() -> Any:
        spec = _bcc.inspect(text, functions, cflags, p["pin_root"], p["src"])
        for name in p["shared_maps"]:
            if name not in {m.name for m in spec.maps}:
                raise ProgramError(f"shared_maps: {p['src']} has no table {name!r}")
        return spec

    return _reconcile(
        p,
        check_mode,
        reattach,
        layout,
        list(functions),
        digest,
        None,
        inspect,
        lambda reuse: _bcc.load(text, functions, cflags, p["pin_root"], p["src"], reuse),
        {
            "src": p["src"],
            "loader": "bcc",
            "source_digest": digest,
            "functions": functions,
        },
    )


def _absent(p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    layout = _apps.AppLayout(p["name"], p["pin_root"])
    with _apps.app_lock(p["name"], p["lock_timeout"]):
        state = _apps.read_state(p["name"], p["state_dir"])
        present = state is not None or os.path.isdir(layout.root)
        result: dict[str, Any] = {"changed": present, "state_path": _apps.state_path(p["name"], p["state_dir"])}
        if not present or check_mode:
            return result
        for record in ((state or {}).get("attachments") or {}).values():
            _attach_module.detach_record(record)
        if os.path.isdir(layout.root):
            shutil.rmtree(layout.root)  # unlinking pins drops the references; the kernel frees what nothing else holds
        _apps.remove_state(p["name"], p["state_dir"])
        return result


def deploy(params: dict[str, Any], check_mode: bool = False, reattach: bool = True) -> dict[str, Any]:
    p = with_defaults(ARGUMENT_SPEC, params)
    _apps.check_name("name", p["name"])
    if p["state"] == "absent":
        return _absent(p, check_mode)
    if not p["src"] and not p["object"]:
        raise ProgramError("src, object: one is required with state=present")
    return _present(p, check_mode, reattach)


def run(module: AnsibleModule) -> None:
    fail_without_libbpf(module)
    fail_without_privileges(module)
    try:
        result = deploy(module.params, check_mode=module.check_mode)
    except _objects.VerifierError as exc:
        module.fail_json(
            msg=str(exc),
            verifier_log_tail=exc.log_tail,
            log_path=exc.log_path,
            insns_processed=exc.insns_processed,
            kernel_release=exc.kernel_release,
            libbpf_log=exc.libbpf_log,
            changed=False,
        )
    except _objects.LoadError as exc:
        module.fail_json(msg=str(exc), libbpf_log=exc.libbpf_log, changed=False)
    except _objects.CompileError as exc:
        module.fail_json(msg=str(exc), stderr=exc.stderr, cmd=exc.command, changed=False)
    except _bcc.BccError as exc:  # bcc's compiler errors or the verifier's log in stderr
        module.fail_json(msg=str(exc), stderr=exc.stderr, changed=False)
    except BccMissing as exc:
        module.fail_json(msg=str(exc), changed=False)
    except (ProgramError, PlanError, ValueError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    except (BpfError, LockTimeout) as exc:
        module.fail_json(msg=str(exc), changed=False)
    module.exit_json(**result)
