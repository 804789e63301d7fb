# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_map: argument spec and the run() the module's main() hands off to."""

from __future__ import annotations

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.planning import _map_plan
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _host, _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _options
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import (
    fail_without_libbpf,
    fail_without_privileges,
)

INNER_MAP_OPTIONS: dict[str, Any] = {
    "path": {"type": "path"},
    "type": {"type": "str", "choices": list(_map_plan.MANAGED_MAP_TYPES)},
    "name": {"type": "str"},
    "key": _options.type_schema(),
    "key_size": {"type": "int"},
    "value": _options.type_schema(),
    "value_size": {"type": "int"},
    "max_entries": {"type": "int"},
    "flags": {"type": "list", "elements": "str", "choices": list(_map_plan.MAP_FLAG_NAMES)},
}

ARGUMENT_SPEC: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "type": {"type": "str", "choices": list(_map_plan.MANAGED_MAP_TYPES)},
    "name": {"type": "str"},
    "key": _options.type_schema(),
    "key_size": {"type": "int"},
    "value": _options.type_schema(),
    "value_size": {"type": "int"},
    "max_entries": {"type": "int"},
    "flags": {"type": "list", "elements": "str", "default": [], "choices": list(_map_plan.MAP_FLAG_NAMES)},
    "numa_node": {"type": "int"},
    "inner_map": {"type": "dict", "options": INNER_MAP_OPTIONS},
    "on_mismatch": {"type": "str", "default": "fail", "choices": ["fail", "recreate"]},
}


def _apply_permissions(module: AnsibleModule, path: str, changed: bool, diff: dict[str, Any]) -> bool:
    file_args = module.load_file_common_arguments(module.params, path=path)
    return module.set_fs_attributes_if_different(file_args, changed, diff=diff)


def _ensure_absent(module: AnsibleModule, result: dict[str, Any]) -> None:
    path = module.params["path"]
    state = _maps.read_pinned_map(path)
    plan = _map_plan.plan_map(None, state, module.params["on_mismatch"])
    if plan.action == "remove" and not module.check_mode:
        _maps.remove_pin(path)
    before = _map_plan.describe_state(state) if state else {}
    result.update(action=plan.action, changed=plan.action == "remove", diff={"before": before, "after": {}})
    module.exit_json(**result)


def _ensure_present(module: AnsibleModule, result: dict[str, Any]) -> None:
    params = module.params
    path = params["path"]
    error = _maps.bpffs_refusal("path", path)
    if error:
        module.fail_json(msg=error, **result)
    spec = _map_plan.build_map_spec(
        params, page_size=os.sysconf("SC_PAGE_SIZE"), possible_cpus=_host.num_possible_cpus()
    )
    state = _maps.read_pinned_map(path)
    plan = _map_plan.plan_map(spec, state, params["on_mismatch"])
    result.update(action=plan.action, differences=plan.differences)
    if plan.action == "mismatch":
        module.fail_json(
            msg=f"{path}: the pinned map differs from the declared one: "
            + "; ".join(plan.differences)
            + " (set on_mismatch=recreate to replace it; programs using the old map keep using it)",
            **result,
        )
    before = _map_plan.describe_state(state) if state else {}
    after = before
    if plan.action in ("create", "recreate"):
        for option, map_spec in (("type", spec), ("inner_map.type", spec.inner)):
            refusal = _maps.unsupported_map_type(option, map_spec.type) if map_spec is not None else None
            if refusal:
                module.fail_json(msg=refusal, **result)
        if module.check_mode:
            after = _map_plan.describe_spec(spec)
        else:
            after = _map_plan.describe_state(_maps.create_pinned_map(spec, replace=plan.action == "recreate"))
        result["changed"] = True  # only once it is done: a failed creation changed nothing
    diff: dict[str, Any] = {"before": before, "after": after}
    if os.path.lexists(path):
        result["changed"] = _apply_permissions(module, path, result["changed"], diff)
    elif any(params.get(k) is not None for k in ("owner", "group", "mode")):
        result["changed"] = True  # check mode: the pin that would be created would get them
    if spec.type in ("lru_hash", "lru_percpu_hash") and plan.action != "none":
        module.warn(f"{path}: LRU maps evict the least recently used entries when full, declared ones included")
    result.update(map=after, diff=diff)
    module.exit_json(**result)


def run(module: AnsibleModule) -> None:
    fail_without_libbpf(module)
    fail_without_privileges(module)
    result: dict[str, Any] = {"changed": False, "path": module.params["path"], "differences": []}
    try:
        if module.params["state"] == "absent":
            _ensure_absent(module, result)
        else:
            _ensure_present(module, result)
    except ValueError as exc:  # SpecError, BtfError and CodecError are ValueErrors naming the field
        module.fail_json(msg=str(exc), **result)
    except _host.BpfError as exc:
        module.fail_json(msg=str(exc), errno=exc.errno_name, **result)
