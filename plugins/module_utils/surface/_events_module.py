# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_events: argument spec and `capture()`, which the module's main() calls and tests
can call in-process.

Order of work: validate every option and open everything (event map, event type and codec, drop counter, query)
before a single event is read, because reading consumes; in check mode stop there. Then read the drop counter,
capture raw samples (bounded by count and timeout), read the counter again, decode in one pass, write `dest`, apply
the query, cut to `max_events`.
"""

from __future__ import annotations

import json
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps, _events, _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._events import EventTypeError
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._files import atomic_file
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._host import BpfError
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _options
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import (
    fail_without_libbpf,
    fail_without_privileges,
    with_defaults,
)

try:
    import jmespath
except ImportError:
    jmespath = None

ARGUMENT_SPEC: dict[str, Any] = {
    "path": {"type": "str", "required": True},
    "count": {"type": "int", "default": 1000},
    "timeout": {"type": "float", "default": 5.0},
    "event_type": {"type": "str"},
    "object": {"type": "path"},
    "program": {"type": "str"},
    "formats": _options.formats(),
    "query": {"type": "str"},
    "max_events": {"type": "int", "default": 1000},
    "dest": {"type": "path"},
    "drops_map": {"type": "str"},
    "perf_pages": {"type": "int", "default": 64},
    "pin_root": _options.pin_root(),
}
MUTUALLY_EXCLUSIVE = [("object", "program")]
CHECK_MODE_NOTE = "check mode: nothing was read, because reading a ring or perf buffer consumes its events"


class EventsError(ValueError):
    """Bad input; nothing was read."""


def _pin(option: str, value: str, pin_root: str, program: bool = False) -> str:
    """An absolute pin path as is; 'application/name' as that bpf_program deployment's map (or program) pin."""
    if value.startswith("/"):
        refusal = _maps.bpffs_refusal(option, value)
        if refusal:
            raise EventsError(refusal)
        return value
    app, sep, name = value.partition("/")
    if not sep or "/" in name:
        raise EventsError(f"{option}: {value!r} must be a pin path or 'application/{'program' if program else 'map'}'")
    try:
        layout = _apps.AppLayout(app, pin_root)
        _apps.check_name(option, name)
    except ValueError as exc:
        raise EventsError(str(exc)) from exc
    return layout.prog_pin(name) if program else layout.map_pin(name)


def _validate(p: dict[str, Any]) -> None:
    if p["count"] < 1:
        raise EventsError(f"count: {p['count']} must be at least 1")
    if p["timeout"] < 0:
        raise EventsError(f"timeout: {p['timeout']} must not be negative")
    if p["max_events"] < 0:
        raise EventsError(f"max_events: {p['max_events']} must not be negative")
    pages = p["perf_pages"]
    if pages < 1 or pages & (pages - 1):
        raise EventsError(f"perf_pages: {pages} must be a power of two")
    if p["object"] and p["program"]:
        raise EventsError("object, program: give one or the other")
    if p["event_type"] and not (p["object"] or p["program"]):
        raise EventsError("event_type: needs object or program, whose BTF defines the type")
    if p["formats"] and not p["event_type"]:
        raise EventsError("formats: needs event_type (events without a type are hex strings)")


def _compile_query(query: str | None) -> Any:
    if not query:
        return None
    if jmespath is None:
        raise EventsError(missing_required_lib("jmespath"))
    try:
        return jmespath.compile(query)
    except jmespath.exceptions.JMESPathError as exc:
        raise EventsError(f"query: {exc}") from exc


def _write_json_lines(path: str, events: list[Any]) -> None:
    with atomic_file(path) as f:
        f.writelines(json.dumps(event, default=str) + "\n" for event in events)


def capture(params: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """Run the module's logic; raises EventsError or EventTypeError (bad input), BpfError (kernel)."""
    p = with_defaults(ARGUMENT_SPEC, params)
    _validate(p)
    path = _pin("path", p["path"], p["pin_root"])
    query = _compile_query(p["query"])
    codec = None
    if p["event_type"]:
        if p["object"]:
            btf, where = _events.btf_of_object(p["object"]), p["object"]
        else:
            where = _pin("program", p["program"], p["pin_root"], program=True)
            btf = _events.btf_of_program(where)
        codec = _events.event_codec(_events.find_event_type(btf, p["event_type"], where), p["formats"])
    warnings = []
    with _events.open_event_map(path) as event_map:
        drops = None
        if p["drops_map"]:
            if event_map.type == "ringbuf":
                drops = _events.open_drop_counter(_pin("drops_map", p["drops_map"], p["pin_root"]))
            else:
                warnings.append("drops_map: ignored for perf_event_array maps; the kernel reports their losses")
        try:
            result: dict[str, Any] = {
                "changed": False,
                "map": {"path": path, "id": event_map.info["id"], "type": event_map.type},
            }
            if check_mode:
                if drops is not None:
                    _events.read_counter(drops)  # a broken counter fails in check mode too
                result.update(received=0, lost=None, truncated=False, elapsed=0.0, events=[], msg=CHECK_MODE_NOTE)
                return _finish(result, warnings)
            before = _events.read_counter(drops) if drops is not None else None
            got = _events.capture(event_map, p["count"], p["timeout"], p["perf_pages"])
            if event_map.type == "perf_event_array":
                lost: int | None = got["lost"]
            elif drops is not None and before is not None:
                lost = _events.read_counter(drops) - before
            else:
                lost = None
        finally:
            if drops is not None:
                drops.close()
    events, short = _events.decode_events(codec, got["samples"])
    if short:
        warnings.append(f"{short} events were shorter than {p['event_type']} and are returned as hex strings")
    if p["dest"]:
        _write_json_lines(p["dest"], events)
        result["dest"] = p["dest"]
    selected: Any = query.search(events) if query is not None else events
    truncated = isinstance(selected, list) and len(selected) > p["max_events"]
    result.update(
        received=len(events),
        lost=lost,
        truncated=truncated,
        elapsed=round(got["elapsed"], 3),
        stopped=got["stopped"],
        events=selected[: p["max_events"]] if truncated else selected,
    )
    return _finish(result, warnings)


def _finish(result: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    if warnings:
        result["warnings"] = warnings
    return result


def run(module: AnsibleModule) -> None:
    fail_without_libbpf(module)
    fail_without_privileges(module)
    try:
        result = capture(module.params, check_mode=module.check_mode)
    except (EventsError, EventTypeError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    except BpfError as exc:
        module.fail_json(msg=str(exc), changed=False, errno=exc.errno_name)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)
