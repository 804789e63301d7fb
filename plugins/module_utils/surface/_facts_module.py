# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_facts: gather the selected subsets into ansible_facts.bpf."""

from __future__ import annotations

import time
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _facts, _hooks
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._host import BpfError, CodecError
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _options
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import (
    fail_without_libbpf,
    fail_without_privileges,
    with_defaults,
)

try:
    import jmespath

    JMESPATH_IMPORT_ERROR = None
except ImportError:
    jmespath = None
    JMESPATH_IMPORT_ERROR = traceback.format_exc()

SUBSETS = ("all", "kernel", "programs", "maps", "links", "attachments", "pins", "contents")
AGGREGATES = ("sum", "max", "min", "none")
MAP_OPTIONS: dict[str, Any] = {
    "path": {"type": "path"},
    "id": {"type": "int"},
    "map_name": {"type": "str"},
    "name": {"type": "str"},
    "key_type": _options.type_schema(),
    "value_type": _options.type_schema(),
    "formats": {"type": "dict"},
    "top": {"type": "int"},
    "sort_by": {"type": "str"},
    "query": {"type": "str"},
    "aggregate": {"type": "str", "choices": list(AGGREGATES)},
    "aggregate_fields": {"type": "dict"},
    "netns": {"type": "str"},
}
ARGUMENT_SPEC: dict[str, Any] = {
    "gather_subset": {"type": "list", "elements": "str", "default": ["all"], "choices": list(SUBSETS)},
    "maps": {
        "type": "list",
        "elements": "dict",
        "options": MAP_OPTIONS,
        "default": [],
        "mutually_exclusive": [("path", "id", "map_name")],
        "required_one_of": [("path", "id", "map_name")],
    },
    "top": {"type": "int"},
    "sort_by": {"type": "str"},
    "query": {"type": "str"},
    "aggregate": {"type": "str", "default": "sum", "choices": list(AGGREGATES)},
    "rates": {"type": "bool", "default": False},
    "netns": {"type": "list", "elements": "str", "default": []},
    "pin_root": _options.pin_root(),
    "state_dir": _options.state_dir(),
}


class FactsError(ValueError):
    pass


def gather(params: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    p = with_defaults(ARGUMENT_SPEC, params)
    subsets = set(p["gather_subset"])
    if "all" in subsets:
        subsets |= {"kernel", "programs", "maps", "links", "attachments", "pins"}
    if p["maps"]:
        subsets.add("contents")
    facts: dict[str, Any] = {}
    if "kernel" in subsets:
        facts["kernel"] = _facts.kernel_facts()
    pinned, truncated = _facts.pins()
    if "pins" in subsets:
        facts["pins"] = pinned
        facts["pins_truncated"] = truncated
    progs: list[dict[str, Any]] = []
    if "programs" in subsets or "attachments" in subsets:
        progs = _facts.programs(pinned, p["pin_root"])
        if "programs" in subsets:
            facts["programs"] = progs
    if "maps" in subsets:
        facts["maps"] = _facts.maps(pinned, p["pin_root"])
    if "links" in subsets:
        facts["links"] = _facts.links(pinned, p["pin_root"])
    if "attachments" in subsets:
        if _hooks.PYROUTE2_IMPORT_ERROR is not None:
            facts["attachments_error"] = "pyroute2 is not installed on the host; attachments were not gathered"
        else:
            managed = {prog["id"] for prog in progs if prog["app"]}
            facts["attachments"] = _facts.attachments([None, *p["netns"]], managed, pinned)
    if "contents" in subsets:
        facts["contents"] = {}
        now = time.time()
        for index, spec in enumerate(p["maps"]):
            merged = {
                k: spec.get(k) if spec.get(k) is not None else p.get(k)
                for k in ("top", "sort_by", "query", "aggregate")
            }
            merged.update(
                {
                    k: spec.get(k)
                    for k in (
                        "path",
                        "id",
                        "map_name",
                        "key_type",
                        "value_type",
                        "formats",
                        "netns",
                        "aggregate_fields",
                    )
                }
            )
            if sum(merged[k] is not None for k in ("path", "id", "map_name")) != 1:
                raise FactsError(f"maps[{index}]: give one of path, id and map_name")
            if merged["query"] and jmespath is None:
                raise FactsError(missing_required_lib("jmespath"))
            try:
                result = _facts.map_contents(merged, jmespath.search if merged["query"] else None)
            except (CodecError, ValueError) as exc:
                raise FactsError(f"maps[{index}]: {exc}") from exc
            if p["rates"] and "entries" in result:
                _facts.add_rates(result, p["state_dir"], now, save=not check_mode)
            key = spec.get("name") or spec.get("path") or spec.get("map_name") or f"id:{spec.get('id')}"
            facts["contents"][key] = result
    return {"changed": False, "ansible_facts": {"bpf": facts}}


def run(module: AnsibleModule) -> None:
    fail_without_libbpf(module)
    fail_without_privileges(module)
    try:
        result = gather(module.params, check_mode=module.check_mode)
    except FactsError as exc:
        module.fail_json(msg=str(exc))
    except BpfError as exc:
        module.fail_json(msg=str(exc), errno=exc.errno_name)
    module.exit_json(**result)
