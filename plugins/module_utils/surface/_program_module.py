# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Surface layer for cnf.ebpf.bpf_program: compile (cached), load, pin, and upgrade an application's programs
without losing the state in its maps.

An upgrade loads the new object with every compatible pinned map reused (so counters and flow tables carry on),
migrates or recreates the incompatible ones as `map_policy` says, replaces the program pins atomically (rename on
bpffs), swaps the new programs into the application's attachments (bpf_link update / netlink replace), and records
what was deployed in the application's state file. Anything failing before the swap leaves the old deployment
running untouched.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._program_plan import (
    MAP_POLICIES,
    Conversion,
    Desired,
    MapDecision,
    PlanError,
    convert_by_name,
    convert_per_cpu,
    decide_map,
    declared_map,
    reload_reasons,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps, _bcc, _entries, _maps, _objects
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._host import BccMissing, BpfError, CodecError
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import LockTimeout
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _attach_module
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import fail_without_libbpf, with_defaults

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
    "pin_root": {"type": "path", "default": _apps.DEFAULT_PIN_ROOT},
    "state_dir": {"type": "path", "default": _apps.DEFAULT_STATE_DIR},
    "lock_timeout": {"type": "int", "default": 60},
    "loader": {"type": "str", "default": "libbpf", "choices": ["libbpf", "bcc"]},
    "functions": {"type": "dict", "default": {}},
    "program_types": {"type": "dict", "default": {}},
}
MUTUALLY_EXCLUSIVE = [("src", "object")]
REQUIRED_IF = [("state", "present", ("src", "object"), True)]


class ProgramError(ValueError):
    """Bad input or an impossible deployment; nothing was changed."""


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


def _map_spec(layout: _apps.AppLayout, m: Any, shared: set[str], map_sizes: dict[str, int]) -> _maps.MapSpec:
    path = layout.map_pin(m.name, shared=m.name in shared)
    return declared_map(m, path, int(map_sizes.get(m.name, m.max_entries)))


def _live_prog_ids(layout: _apps.AppLayout, names: list[str]) -> dict[str, int | None]:
    ids: dict[str, int | None] = {}
    for name in names:
        path = layout.prog_pin(name)
        ids[name] = _apps.pinned_prog_id(path) if os.path.lexists(path) else None
    return ids


def _migrate(decision: MapDecision, old: _maps.MapState, new_map: Any, new_spec: _maps.MapSpec) -> dict[str, Any]:
    """Copy every entry of the pinned map into the freshly loaded one, field by field by name."""
    with _entries.EntryMap(decision.pin) as old_map:
        raw = old_map.read()
        decode_key, decode_value = old_map.decode_key, old_map.decode_value
    key_codec, value_codec, per_cpu = _entries.entry_encoders(new_spec, new_map.ncpus)
    keys_report, values_report = Conversion(), Conversion()
    pairs = []
    try:
        for key, value in raw.items():
            new_key = convert_by_name(old.key_type, new_spec.key_type, decode_key(key), keys_report, "key")
            old_value = decode_value(value)
            if per_cpu:
                new_value = convert_per_cpu(old.value_type, new_spec.value_type, old_value, values_report)
            else:
                new_value = convert_by_name(old.value_type, new_spec.value_type, old_value, values_report)
            pairs.append((key_codec.encode(new_key), value_codec.encode(new_value)))
    except CodecError as exc:
        raise ProgramError(
            f"map {decision.name}: an entry does not fit the new layout ({exc}); nothing was changed"
        ) from exc
    new_map.update_many(pairs)
    dropped = sorted(keys_report.dropped | values_report.dropped)
    added = sorted(keys_report.added | values_report.added)
    return {"entries": len(pairs), "dropped_fields": dropped, "added_fields": added}


def _deploy(
    p: dict[str, Any],
    digest: str,
    load: Callable[[dict[str, str]], _objects.LoadedObject],
    spec: Any,
    layout: _apps.AppLayout,
    state: dict[str, Any] | None,
    decisions: list[MapDecision],
    pinned: dict[str, _maps.MapState | None],
    reattach: bool = True,
) -> dict[str, Any]:
    """Load, migrate, pin, swap (unless `reattach` is false: a restore after a reboot attaches by itself, once the
    maps are filled); returns the new state. Until the program pins are replaced nothing visible changes, and a
    failure closes everything it loaded."""
    reuse = {d.name: d.pin for d in decisions if d.action == "reuse"}
    loaded = load(reuse)
    shared = set(p["shared_maps"])
    migrations: dict[str, Any] = {}
    try:
        by_name = {m.name: m for m in spec.maps}
        for decision in decisions:
            if decision.action == "migrate":
                new_spec = _map_spec(layout, by_name[decision.name], shared, p["map_sizes"])
                with _maps.open_map_fd(loaded.maps[decision.name].fd) as new_map:
                    migrations[decision.name] = _migrate(decision, pinned[decision.name], new_map, new_spec)
        layout.make_dirs()
        if shared:
            os.makedirs(layout.shared_dir, exist_ok=True)
        old_progs = dict((state or {}).get("programs") or {})
        programs = {}
        swapped: list[str] = []
        unreachable: list[str] = []
        # The running programs, held so that a failure from here on can put them back (pins and hooks).
        previous = {
            name: _apps.open_pin(layout.prog_pin(name))
            for name in loaded.programs
            if os.path.lexists(layout.prog_pin(name))
        }
        try:
            for name, prog in loaded.programs.items():
                if name in previous:
                    _maps.replace_pin(prog.fd, layout.prog_pin(name))  # atomic: rename over the old pin
                else:
                    prog.fd.pin(layout.prog_pin(name))
                programs[name] = {
                    "id": prog.info["id"],
                    "tag": prog.info["tag"],
                    "type": prog.info["type"],
                    "pin": layout.prog_pin(name),
                }
            if reattach:
                unreachable = _swap_attachments(state, old_progs, loaded, swapped)
        except BaseException:
            _revert_programs(state, layout, loaded, previous, programs, swapped)
            raise
        finally:
            for fd in previous.values():
                fd.close()
        maps = {}
        for decision in decisions:
            loaded_map = loaded.maps[decision.name]
            if decision.action == "create":
                loaded_map.fd.pin(decision.pin)
            elif decision.action in ("recreate", "migrate"):
                _maps.replace_pin(loaded_map.fd, decision.pin)
            maps[decision.name] = {
                "id": loaded_map.info["id"],
                "pin": decision.pin,
                "action": decision.action,
                "shared": decision.name in shared,
            }
        for name in set(old_progs) - set(programs):  # programs the new object no longer has
            if os.path.lexists(layout.prog_pin(name)):
                os.unlink(layout.prog_pin(name))
    finally:
        loaded.close()
    new_state = dict(state or {})
    new_state.update(
        params=recorded_params(p),
        object_digest=digest,
        constants=dict(p["constants"]),
        map_sizes={k: int(v) for k, v in p["map_sizes"].items()},
        programs=programs,
        maps=maps,
        deployed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        generation=int((state or {}).get("generation", 0)) + 1,
    )
    new_state.setdefault("attachments", {})
    return {"state": new_state, "migrations": migrations, "swapped": swapped, "unreachable": unreachable}


def _swap_attachments(
    state: dict[str, Any] | None, old_progs: dict[str, Any], loaded: Any, swapped: list[str]
) -> list[str]:
    """Point every recorded attachment of an upgraded program at the new program, atomically per hook; `swapped`
    grows as hooks move, so a failure midway knows which to move back. Hooks whose interface or network namespace
    is gone are skipped (and returned): the program is upgraded for every hook that still exists."""
    unreachable = []
    for hook_id, record in ((state or {}).get("attachments") or {}).items():
        prog = record.get("program")
        if prog not in loaded.programs or prog not in old_progs:
            continue
        try:
            _attach_module.swap_program(record, old_progs[prog]["id"], loaded.programs[prog].fd)
        except (BpfError, OSError) as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV):
                raise
            unreachable.append(hook_id)
            continue
        record["prog_id"] = loaded.programs[prog].info["id"]
        swapped.append(hook_id)
    return unreachable


def _revert_programs(
    state: dict[str, Any] | None,
    layout: _apps.AppLayout,
    loaded: Any,
    previous: dict[str, Any],
    programs: dict[str, Any],
    swapped: list[str],
) -> None:
    """Undo a failed upgrade: hooks already moved go back to the old programs, then the old program pins."""
    attachments = (state or {}).get("attachments") or {}
    for hook_id in reversed(swapped):
        record = attachments[hook_id]
        prog = record["program"]
        _attach_module.swap_program(record, loaded.programs[prog].info["id"], previous[prog])
        record["prog_id"] = _apps.fd_prog_id(previous[prog])
    for name in programs:
        if name in previous:
            _maps.replace_pin(previous[name], layout.prog_pin(name))
        elif os.path.lexists(layout.prog_pin(name)):
            os.unlink(layout.prog_pin(name))


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
        shared = set(p["shared_maps"])
        decisions, pinned = [], {}
        for m in spec.maps if spec is not None else []:
            if m.internal:
                continue
            map_spec = _map_spec(layout, m, shared, p["map_sizes"])
            pinned[m.name] = _maps.read_pinned_map(map_spec.path) if os.path.lexists(map_spec.path) else None
            decisions.append(decide_map(map_spec, pinned[m.name], p["map_policy"]))
        reasons.extend(
            f"map {d.name}: {d.action} ({'; '.join(d.differences)})"
            for d in decisions
            if d.action in ("recreate", "migrate")
        )
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
        if not reasons or check_mode:
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
        outcome = _deploy(p, digest, load, spec, layout, state, decisions, pinned, reattach)
        _apps.write_state(p["name"], outcome["state"], p["state_dir"])
        result.update(state=outcome["state"], migrations=outcome["migrations"], swapped=outcome["swapped"])
        if outcome["unreachable"]:
            result["unreachable_hooks"] = outcome["unreachable"]
        return result


def _present(p: dict[str, Any], check_mode: bool, reattach: bool = True) -> dict[str, Any]:
    layout = _apps.AppLayout(p["name"], p["pin_root"])
    if _maps.mount_fstype(p["pin_root"])[1] != "bpf":
        raise ProgramError(f"pin_root: {p['pin_root']} is not on a bpffs mount (mount -t bpf bpf /sys/fs/bpf)")
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
