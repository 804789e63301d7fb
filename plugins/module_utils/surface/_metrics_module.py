# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_metrics: the CNFs' counters in a file for node_exporter's textfile collector, kept fresh by a
systemd timer that runs this code on the host without Ansible.

For each application (by name, as the CNF roles deployed it) the maps it has are read with the reader bpf_facts
uses (resources._facts.map_contents): `flows` (the top N by bytes, per-CPU slots combined as the flow_tracker role
does), `if_counters` (joined to the interfaces the application's state records as attached), `rule_hits` with the
rules of `rules_v4`/`rules_v6`, and `event_drops`. planning._metrics renders them; the file is written atomically
(a temp file in the same directory, which the collector skips, renamed over the .prom file).

The timer: a runtime zip, an entry script and a JSON config under the runtime dir, and `cnf-ebpf-metrics.service`
(oneshot, runs the script) with `cnf-ebpf-metrics.timer` (OnBootSec and OnUnitActiveSec the interval), enabled for
timers.target; the files are made by _host_runtime, as bpf_boot's are.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.planning import _metrics
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps, _facts, _hooks
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._host import BpfError, CodecError
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _host_runtime, _options
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import (
    fail_without_libbpf,
    fail_without_privileges,
    with_defaults,
)

SERVICE_NAME = "cnf-ebpf-metrics.service"
TIMER_NAME = "cnf-ebpf-metrics.timer"
DEFAULT_PATH = "/var/lib/prometheus/node-exporter/cnf_ebpf.prom"
ARGUMENT_SPEC: dict[str, Any] = {
    "apps": {"type": "list", "elements": "str", "default": []},
    "path": {"type": "path", "default": DEFAULT_PATH},
    "top": {"type": "int", "default": 20},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "timer": {"type": "bool", "default": False},
    "interval": {"type": "int", "default": 60},
    "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
    "runtime_dir": {"type": "path"},
    "python": {"type": "path"},
    "pin_root": _options.pin_root(),
    "state_dir": _options.state_dir(),
}
# The options the timer's refresh needs, kept in its JSON config.
REFRESH_OPTIONS = ("apps", "path", "top", "pin_root", "state_dir")


class MetricsError(ValueError):
    pass


# --- reading the applications -------------------------------------------------------------------------------------


def recorded_apps(state_dir: str) -> list[str]:
    paths = glob.glob(os.path.join(state_dir, "apps", "*.json"))
    return sorted(os.path.basename(path)[: -len(".json")] for path in paths)


def _attached_interfaces(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The application's recorded XDP and tc hooks with their interface's index now; an interface that is gone (or
    whose namespace is) has no counters to show."""
    rows = []
    for record in (state.get("attachments") or {}).values():
        spec = record.get("spec") or {}
        if spec.get("kind") not in ("xdp", "tc") or not spec.get("interface"):
            continue
        hook = _hooks.AttachSpec(kind=spec["kind"], interface=spec["interface"], netns=spec.get("netns"))
        try:
            with _hooks.in_netns(hook.netns):
                ifindex = _hooks.ifindex_of(hook)
        except BpfError:
            continue
        rows.append({"interface": hook.interface, "netns": hook.netns, "ifindex": ifindex})
    return rows


def _contents(app: str, maps_dir: str, map_name: str, **spec: Any) -> dict[str, Any]:
    path = os.path.join(maps_dir, map_name)
    try:
        result = _facts.map_contents(dict(spec, path=path))
    except (BpfError, CodecError, ValueError) as exc:
        raise MetricsError(f"apps: {app}: map {path}: {exc}") from exc
    if result.get("error"):
        raise MetricsError(f"apps: {app}: map {path}: {result['error']}")
    return result


def read_app(name: str, state_dir: str, pin_root: str, top: int) -> dict[str, Any]:
    """What planning._metrics.families takes for one application: up (its maps are pinned) and the counters of the
    maps it has."""
    state = _apps.read_state(name, state_dir) or {}
    layout = _apps.AppLayout(name, (state.get("params") or {}).get("pin_root") or pin_root)
    try:
        present = set(os.listdir(layout.maps_dir))
    except OSError:
        return {"app": name, "up": False}
    reading: dict[str, Any] = {"app": name, "up": True}
    if "flows" in present:
        # The flow_tracker role's reading (roles/flow_tracker/tasks/gather.yml): addresses as text, the per-CPU slots
        # combined, the largest flows by bytes.
        flows = _contents(
            name,
            layout.maps_dir,
            "flows",
            formats={"key.src": "ip", "key.dst": "ip"},
            aggregate_fields={"first_seen": "min_nonzero", "last_seen": "max"},
            top=max(top, 1),
            sort_by="bytes",
        )
        reading["flows"] = {"count": flows["count"], "entries": flows["entries"] if top > 0 else []}
    if "if_counters" in present:
        counters = _contents(name, layout.maps_dir, "if_counters")
        slots = {entry["key"]: entry["value"] for entry in counters["entries"]}
        reading["interfaces"] = _metrics.interface_rows(_attached_interfaces(state), slots)
    if "rule_hits" in present:
        hits = {e["key"]: e["value"] for e in _contents(name, layout.maps_dir, "rule_hits")["entries"]}
        tables = [table for table in ("rules_v4", "rules_v6") if table in present]
        rules = [entry for table in tables for entry in _contents(name, layout.maps_dir, table)["entries"]]
        reading["rules"] = _metrics.rule_rows(rules, hits)
    if "event_drops" in present:
        reading["event_drops"] = sum(e["value"] for e in _contents(name, layout.maps_dir, "event_drops")["entries"])
    return reading


def exposition(p: dict[str, Any], strict: bool) -> tuple[str, list[dict[str, Any]]]:
    """The exposition text of the applications `p['apps']` (every recorded one when empty). `strict` (the module's
    run): a name that is not recorded, or maps that cannot be read, are errors. The timer's refresh shows such an
    application as down instead (it may have been removed since) and exports the others."""
    if p["top"] < 0:
        raise MetricsError(f"top: {p['top']} is negative; give the number of flows per application (0: none)")
    names = list(p["apps"]) or recorded_apps(p["state_dir"])
    for index, name in enumerate(names):
        try:
            _apps.check_name(f"apps[{index}]", name)
        except ValueError as exc:
            raise MetricsError(str(exc)) from exc
        if strict and not os.path.exists(_apps.state_path(name, p["state_dir"])):
            raise MetricsError(
                f"apps[{index}]: no application {name!r} is recorded in {p['state_dir']}/apps; deploy it first "
                "(cnf.ebpf.flow_tracker, cnf.ebpf.xdp_filter) or fix the name"
            )
    readings = []
    for name in names:
        try:
            readings.append(read_app(name, p["state_dir"], p["pin_root"], p["top"]))
        except (MetricsError, ValueError) as exc:
            if strict:
                raise
            # The refresh still exports the others; this one shows as down and the service fails (systemctl status).
            readings.append({"app": name, "up": False, "error": str(exc)})
    return _metrics.exposition(readings, time.time(), p["top"]), readings


def write_file(path: str, text: str, check_mode: bool) -> bool:
    """Write the exposition file (0644, atomically); whether that changed what it exports: the file is new, or its
    series other than the top flows' differ (planning._metrics.shape). New values are a reading, not a change."""
    try:
        with open(path, encoding="utf-8") as f:
            before: str | None = f.read()
    except FileNotFoundError:
        before = None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricsError(f"path: {path} cannot be read ({exc})") from exc
    if not check_mode:
        try:
            _host_runtime.write_if_different(path, text.encode(), 0o644, check_mode=False)
        except OSError as exc:
            raise MetricsError(f"path: {path} cannot be written ({exc}); point path at a writable directory") from exc
    return before is None or _metrics.shape(before) != _metrics.shape(text)


# --- the timer -----------------------------------------------------------------------------------------------------


def refresh_script(runtime: str) -> bytes:
    comment = "Written by cnf.ebpf.bpf_metrics: refreshes the cnf.ebpf metrics file (see cnf-ebpf-metrics.service)."
    return _host_runtime.entry_script(runtime, comment, __name__, "refresh_main")


def service_text(python: str, script: str, config: str) -> bytes:
    return (
        "# Written by cnf.ebpf.bpf_metrics.\n"
        "[Unit]\n"
        "Description=Refresh the cnf.ebpf metrics for node_exporter's textfile collector\n"
        "After=local-fs.target sys-fs-bpf.mount cnf-ebpf-restore.service\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={python} {script} {config}\n"
    ).encode()


def timer_text(interval: int) -> bytes:
    return (
        "# Written by cnf.ebpf.bpf_metrics.\n"
        "[Unit]\n"
        f"Description=Refresh the cnf.ebpf metrics every {interval} s\n"
        "\n"
        "[Timer]\n"
        f"OnBootSec={interval}s\n"
        f"OnUnitActiveSec={interval}s\n"
        "AccuracySec=1s\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    ).encode()


def _timer_files(p: dict[str, Any]) -> dict[str, str]:
    runtime_dir = p["runtime_dir"] or os.path.join(p["state_dir"], "runtime")
    return {
        # Its own zip: the restore's holds what bpf_boot imports, this one what bpf_metrics does.
        "runtime": os.path.join(runtime_dir, "cnf-ebpf-metrics-runtime.zip"),
        "script": os.path.join(runtime_dir, "cnf-ebpf-metrics.py"),
        "config": os.path.join(runtime_dir, "cnf-ebpf-metrics.json"),
        "service": os.path.join(p["unit_dir"], SERVICE_NAME),
        "timer": os.path.join(p["unit_dir"], TIMER_NAME),
    }


def install_timer(p: dict[str, Any], check_mode: bool) -> tuple[bool, list[str]]:
    if p["interval"] < 1:
        raise MetricsError(f"interval: {p['interval']} is not a number of seconds of at least 1")
    files = _timer_files(p)
    python = p["python"] or sys.executable
    config = json.dumps({k: p[k] for k in REFRESH_OPTIONS}, indent=1, sort_keys=True) + "\n"
    contents = {
        "runtime": _host_runtime.runtime_zip(),
        "script": refresh_script(files["runtime"]),
        "config": config.encode(),
        "service": service_text(python, files["script"], files["config"]),
        "timer": timer_text(p["interval"]),
    }
    changed = [_host_runtime.write_if_different(files[k], data, 0o644, check_mode) for k, data in contents.items()]
    changed.append(_host_runtime.enable(files["timer"], p["unit_dir"], "timers.target", check_mode))
    return any(changed), [python, files["script"], files["config"]]


def remove_timer(p: dict[str, Any], check_mode: bool) -> bool:
    files = _timer_files(p)
    paths = [*files.values(), _host_runtime.wants_link(files["timer"], p["unit_dir"], "timers.target")]
    removed = [_host_runtime.remove_if_present(path, check_mode) for path in paths]  # every one, not up to the first
    return any(removed)


# --- the module ----------------------------------------------------------------------------------------------------


def apply(params: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    p = with_defaults(ARGUMENT_SPEC, params)
    files = _timer_files(p)
    result: dict[str, Any] = {"changed": False, "path": p["path"], "units": [files["service"], files["timer"]]}
    if p["state"] == "absent":
        units_changed = remove_timer(p, check_mode)
        removed = _host_runtime.remove_if_present(p["path"], check_mode)
        result.update(changed=units_changed or removed, units_changed=units_changed)
        return result
    if not p["path"].endswith(".prom"):
        raise MetricsError(
            f"path: {p['path']} does not end in .prom, and node_exporter's textfile collector reads only *.prom files"
        )
    text, readings = exposition(p, strict=True)
    result["changed"] = write_file(p["path"], text, check_mode)
    result["apps"] = {r["app"]: bool(r["up"]) for r in readings}
    result["series"] = len(_metrics.sample_lines(text))
    if p["timer"]:
        units_changed, command = install_timer(p, check_mode)
        result["refresh_command"] = command
    else:
        units_changed = remove_timer(p, check_mode)
    result["units_changed"] = units_changed
    result["changed"] = result["changed"] or units_changed
    return result


def run(module: AnsibleModule) -> None:
    fail_without_libbpf(module)
    fail_without_privileges(module)
    try:
        result = apply(module.params, check_mode=module.check_mode)
    except MetricsError as exc:
        module.fail_json(msg=str(exc), changed=False)
    module.exit_json(**result)


# --- the refresh (run by the timer's service, without Ansible) ----------------------------------------------------


def refresh_main(argv: list[str]) -> int:
    """Rewrite the metrics file from the JSON config at argv[0]; 0 when it was written with every application's
    maps read (an application that could not be read is down in the file, named on stderr, and makes it 1)."""
    try:
        with open(argv[0], encoding="utf-8") as f:
            p = with_defaults(ARGUMENT_SPEC, json.load(f))
        text, readings = exposition(p, strict=False)
        write_file(p["path"], text, check_mode=False)
    except (OSError, ValueError, IndexError) as exc:
        sys.stderr.write(f"cnf-ebpf-metrics: FAILED: {exc}\n")
        return 1
    down = [r["app"] for r in readings if not r["up"]]
    series = len(_metrics.sample_lines(text))
    sys.stdout.write(f"{p['path']}: {series} series" + (f"; down: {', '.join(down)}" if down else "") + "\n")
    errors = [r["error"] for r in readings if r.get("error")]
    for error in errors:
        sys.stderr.write(f"cnf-ebpf-metrics: {error}\n")
    return 1 if errors else 0
