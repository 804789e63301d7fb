# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upgrade transaction of cnf.ebpf.bpf_program, once the plan says to deploy: load the new object with every
compatible pinned map reused, migrate the maps whose layout changed (field by field, by name), replace the program
pins atomically (rename on bpffs), move the application's hooks to the new programs, and put all of it back if any
step fails. Until the program pins are replaced nothing visible changes.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._program_plan import (
    Conversion,
    MapDecision,
    convert_by_name,
    convert_per_cpu,
    declared_map,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps, _entries, _maps, _objects
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._faults import kill_point
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._host import BpfError, CodecError
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _attach_module


class ProgramError(ValueError):
    """Bad input or an impossible deployment; nothing was changed."""


def declared_map_spec(layout: _apps.AppLayout, m: Any, shared: set[str], map_sizes: dict[str, int]) -> _maps.MapSpec:
    path = layout.map_pin(m.name, shared=m.name in shared)
    return declared_map(m, path, int(map_sizes.get(m.name, m.max_entries)))


def _migrate(decision: MapDecision, old: _maps.MapState, new_map: Any, new_spec: _maps.MapSpec) -> dict[str, Any]:
    """Copy every entry of the pinned map into the freshly loaded one, field by field by name. Into a per-CPU map
    from a shared-value one (`decision.into_per_cpu`), each old value goes into CPU 0's slot and the other CPUs'
    slots are zero, so the sums over CPUs are the old totals."""
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
            if decision.into_per_cpu:
                one_cpu = convert_by_name(old.value_type, new_spec.value_type, old_value, values_report)
                pairs.append((key_codec.encode(new_key), _in_first_cpu(value_codec, one_cpu)))
                continue
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
    result: dict[str, Any] = {"entries": len(pairs), "dropped_fields": dropped, "added_fields": added}
    if decision.into_per_cpu:
        result["into_per_cpu"] = f"{old.info['type']} -> {new_spec.type}: each old value is in CPU 0's slot"
    return result


def _in_first_cpu(per_cpu_codec: Any, value: Any) -> bytes:
    """A per-CPU value with `value` in CPU 0's slot and zero bytes in every other CPU's."""
    one = per_cpu_codec.codec.encode(value)
    out = bytearray(per_cpu_codec.size)
    out[: len(one)] = one
    return bytes(out)


def install(
    p: dict[str, Any],
    recorded: dict[str, Any],
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
                new_spec = declared_map_spec(layout, by_name[decision.name], shared, p["map_sizes"])
                with _maps.open_map_fd(loaded.maps[decision.name].fd) as new_map:
                    migrations[decision.name] = _migrate(decision, pinned[decision.name], new_map, new_spec)
                kill_point("program.migrated")  # after each map: the copies are private to this run until the swap
        kill_point("program.loaded")
        layout.make_dirs()  # empty directories for the pins: not yet a change anything runs on
        if shared:
            os.makedirs(layout.shared_dir, exist_ok=True)
        if state is not None:
            # Before the first visible step, the upgrade in progress goes on record: a run killed from here on leaves
            # the old state with this note, which the next run reports and uses to recognise the new programs it
            # finds on hooks and pins as its own half-done work.
            _apps.write_state(
                p["name"], dict(state, pending=_pending_record(digest, loaded, decisions)), p["state_dir"]
            )
            kill_point("program.pending")
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
                kill_point("program.pin")
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
            if state is not None:
                _apps.write_state(p["name"], state, p["state_dir"])  # put back as it was: nothing left to repair
            raise
        finally:
            for fd in previous.values():
                fd.close()
        maps = {}
        kill_point("program.maps")
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
    new_state.pop("pending", None)
    new_state.update(
        params=recorded,
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
        interrupted = ((state or {}).get("pending") or {}).get("programs") or {}
        try:
            _attach_module.swap_program(
                record, old_progs[prog]["id"], loaded.programs[prog].fd, also=[interrupted.get(prog, 0)]
            )
        except (BpfError, OSError) as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV):
                raise
            unreachable.append(hook_id)
            continue
        record["prog_id"] = loaded.programs[prog].info["id"]
        swapped.append(hook_id)
        kill_point("program.swapped")
    return unreachable


def _pending_record(digest: str, loaded: Any, decisions: list[MapDecision]) -> dict[str, Any]:
    return {
        "object_digest": digest,
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "programs": {name: prog.info["id"] for name, prog in loaded.programs.items()},
        # maps filled by this upgrade (migrated, or new) that are pinned only at the end
        "new_maps": sorted(d.name for d in decisions if d.action in ("migrate", "recreate", "create")),
    }


def interrupted_upgrade(state: dict[str, Any] | None, check_mode: bool) -> str | None:
    """What an earlier run left of an upgrade it was killed in (the state's pending note), as a sentence; None
    when there is none."""
    pending = (state or {}).get("pending")
    if not pending:
        return None
    maps = pending.get("new_maps") or []
    lost = (
        f"; what its new programs counted in the maps it had not pinned yet ({', '.join(maps)}) before this run is "
        "not carried over"
        if maps
        else ""
    )
    return (
        f"an upgrade to object {str(pending.get('object_digest'))[:12]} (pid {pending.get('pid')}, started "
        f"{pending.get('started')}) was killed before it finished; this run "
        + ("would redo" if check_mode else "redid")
        + " it, taking the hooks and pins it had moved as its own"
        + lost
    )


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
