# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_attach: attach a pinned program to a hook, idempotently, with drift and conflict
detection; and the helpers bpf_program uses to move an application's attachments to a new program version.

Attachments of programs deployed by cnf.ebpf.bpf_program are recorded in the application's state file (under its
lock), so an upgrade finds every hook to swap and `state: absent` of the application finds every hook to detach.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
import time
from collections.abc import Collection
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps, _attach, _hooks, _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._faults import kill_point
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._host import BpfError, Fd
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import LockTimeout
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _options
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import (
    fail_without_libbpf,
    fail_without_privileges,
    with_defaults,
)

KINDS = _hooks.KINDS
ARGUMENT_SPEC: dict[str, Any] = {
    "program": {"type": "str", "required": True},
    "kind": {"type": "str", "required": True, "choices": list(KINDS)},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "interface": {"type": "str"},
    "netns": {"type": "str"},
    "direction": {"type": "str", "default": "ingress", "choices": ["ingress", "egress"]},
    "xdp_mode": {"type": "str", "default": "auto", "choices": ["auto", "native", "generic", "offload"]},
    "tc_backend": {"type": "str", "default": "auto", "choices": ["auto", "tcx", "cls_bpf"]},
    "priority": {"type": "int", "default": 1},
    "handle": {"type": "int", "default": 1},
    "cgroup": {"type": "path"},
    "attach_type": {"type": "str", "default": "cgroup_inet_ingress"},
    "target": {"type": "str"},
    "on_conflict": {"type": "str", "default": "fail", "choices": ["fail", "replace"]},
    "pin_root": _options.pin_root(),
    "state_dir": _options.state_dir(),
    "lock_timeout": _options.lock_timeout(),
}
REQUIRED_IF = [
    ("kind", "xdp", ("interface",)),
    ("kind", "tc", ("interface",)),
    ("kind", "cgroup", ("cgroup",)),
    ("kind", "tracepoint", ("target",)),
    ("kind", "raw_tracepoint", ("target",)),
    ("kind", "kprobe", ("target",)),
    ("kind", "kretprobe", ("target",)),
]
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class AttachError(ValueError):
    """Bad input, or a hook held by a program we may not replace; nothing was changed."""


def resolve_program(program: str, pin_root: str) -> tuple[str, str | None, str | None]:
    """(pin path, application, program name) for 'app/prog' (a bpf_program deployment) or an absolute pin path."""
    refusal = _maps.bpffs_refusal("program", program) if program.startswith("/") else None
    refusal = refusal or _maps.bpffs_refusal("pin_root", pin_root)
    if refusal:
        raise AttachError(refusal)
    if program.startswith("/"):
        rel = os.path.relpath(program, pin_root)
        parts = rel.split(os.sep)
        if len(parts) == 3 and parts[1] == "progs" and not rel.startswith(".."):
            return program, parts[0], parts[2]
        return program, None, None
    app, sep, prog = program.partition("/")
    if not sep or not app or not prog:
        raise AttachError(f"program: {program!r} must be 'application/program' or a pin path on bpffs")
    layout = _apps.AppLayout(app, pin_root)
    return layout.prog_pin(prog), app, prog


def hook_id(p: dict[str, Any]) -> str:
    """A stable name for the hook, used for the link pin and the state record."""
    where = p.get("netns") or "host"
    if p["kind"] == "xdp":
        name = f"xdp-{where}-{p['interface']}"
    elif p["kind"] == "tc":
        name = f"tc-{p['direction']}-{where}-{p['interface']}"
    elif p["kind"] in _hooks.TRACING_KINDS:
        name = f"{p['kind']}-{p['target']}"  # tracepoint-syscalls_sys_enter_openat, kprobe-do_unlinkat
    else:
        digest = hashlib.sha256(p["cgroup"].encode()).hexdigest()[:10]
        name = f"cgroup-{p['attach_type']}-{os.path.basename(p['cgroup'].rstrip('/')) or 'root'}-{digest}"
    return _UNSAFE.sub("_", name)


def attach_spec(p: dict[str, Any], link_pin: str | None) -> _hooks.AttachSpec:
    return _hooks.AttachSpec(
        kind=p["kind"],
        interface=p.get("interface"),
        netns=p.get("netns"),
        direction=p.get("direction") or "ingress",
        xdp_mode=p.get("xdp_mode") or "auto",
        tc_backend=p.get("tc_backend") or "auto",
        priority=int(p.get("priority") or 1),
        handle=int(p.get("handle") or 1),
        cgroup=p.get("cgroup"),
        cgroup_attach_type=p.get("attach_type") or "cgroup_inet_ingress",
        link_pin=link_pin,
        target=p.get("target"),
    )


def _describe(attachments: list[_hooks.Attachment]) -> list[dict[str, Any]]:
    return [a.describe() for a in attachments]


def _btf_target(p: dict[str, Any], pin: str, app: str | None, prog_name: str | None) -> str:
    """The function a fentry/fexit/fmod_ret program was loaded for: its target is fixed at load, so `target` may be
    omitted and, when given, must name that function. Without the program (removed), the recorded hook's target."""
    if os.path.lexists(pin):
        fd, info = _hooks.open_program(pin)
        try:
            loaded_for = _hooks.loaded_for(fd) if info["type"] == "tracing" else None
        finally:
            fd.close()
        if not loaded_for:
            raise AttachError(
                f"program: {pin} is a {info['type']} program without a kernel function target; {p['kind']} needs a "
                f"program loaded from a '{p['kind']}/<function>' section"
            )
        if p.get("target") and p["target"] != loaded_for:
            raise AttachError(
                f"target: {p['target']!r} is not the function the program was loaded for ({loaded_for}); the target "
                f"of {p['kind']} programs comes from their section name, omit target or set it to {loaded_for}"
            )
        return loaded_for
    if p.get("target"):
        return p["target"]
    state = _apps.read_state(app, p["state_dir"]) if app else None
    targets = {
        (rec.get("spec") or {}).get("target")
        for rec in ((state or {}).get("attachments") or {}).values()
        if rec.get("program") == prog_name and (rec.get("spec") or {}).get("kind") == p["kind"]
    }
    if len(targets) == 1 and None not in targets:
        return targets.pop()
    raise AttachError(f"target: required for {p['kind']} when the program {pin} is not pinned")


def attach(params: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    p = with_defaults(ARGUMENT_SPEC, params)
    pin, app, prog_name = resolve_program(p["program"], p["pin_root"])
    if p["kind"] in _hooks.BTF_KINDS:
        p["target"] = _btf_target(p, pin, app, prog_name)
    hook = hook_id(p)
    link_dir = _apps.AppLayout(app, p["pin_root"]).links_dir if app else os.path.join(p["pin_root"], "links")
    spec = attach_spec(p, os.path.join(link_dir, hook))
    result: dict[str, Any] = {"changed": False, "hook": hook, "program": pin, "reasons": []}
    refusal = _apps.state_dir_refusal(p["state_dir"]) if app and not check_mode else None
    if refusal:  # an application's attachments are recorded in its state: refuse before attaching what it cannot
        raise AttachError(refusal)
    lock = _apps.app_lock(app, p["lock_timeout"]) if app else _apps.app_lock("_unmanaged", p["lock_timeout"])
    with lock:
        state = _apps.read_state(app, p["state_dir"]) if app else None
        record = ((state or {}).get("attachments") or {}).get(hook)
        if p["state"] == "absent":
            return _detach(p, spec, hook, pin, app, state, record, result, check_mode)
        current = _attach.current(spec)
        result["before"] = _describe(current)
        defunct = _attach.defunct_link(spec)
        fd, info = _hooks.open_program(pin)
        try:
            result["prog_id"] = info["id"]
            mine = [a for a in current if a.prog_id == info["id"]]
            others = [a for a in current if a.prog_id != info["id"]]
            previous = [a for a in others if record is not None and a.prog_id == record.get("prog_id")]
            # Only XDP holds one program per interface; tc, cgroup and tracing hooks run several side by side, so
            # other programs there are neighbours, not conflicts.
            shared_hook = p["kind"] != "xdp"
            target: _hooks.Attachment | None = None
            holder: dict[str, Any] | None = None
            if mine and (shared_hook or not others):
                action = "none"
            elif previous:
                action, target = "swap", previous[0]  # our earlier version (an upgrade missed this hook)
            elif shared_hook or not others:
                action = "attach"
            else:
                holders = [(a, _holder(a, p["pin_root"])) for a in others]
                if p["on_conflict"] != "replace":
                    raise AttachError(f"{hook}: {_conflict(holders)}; set on_conflict=replace to take it over")
                action, (target, holder) = "replace", holders[0]
                result["replaced"] = dict(
                    _brief(target),
                    application=(holder or {}).get("application"),
                    link_pin=(holder or {}).get("link_pin"),
                )
                result["reasons"].append(f"took the hook over from {_holder_text(target, holder)}")
            result["action"] = action
            if defunct is not None:
                result["reasons"].insert(0, _defunct_reason(spec, defunct, again=action != "none"))
            final = mine[0] if mine else None
            if action != "none" or defunct is not None:
                result["changed"] = True
            if action != "none" and not check_mode:
                if target is None:
                    final = _attach.attach(spec, fd)  # drops a defunct link at the pin first
                elif holder is not None and holder.get("application") not in (None, app):
                    final = _take_over(p, spec, target, fd, holder, app, pin)
                else:
                    final = _attach.replace(spec, target, fd, take_pin=(holder or {}).get("link_pin"))
                    if holder is not None and holder.get("application") == app and state is not None:
                        _forget_hook(state, holder, hook, app, pin, info["id"], spec)
            if defunct is not None and not check_mode:
                _attach.drop_defunct(spec)  # still there when the hook went to a cls_bpf filter or stayed as it was
            kill_point("attach.attached")
            if app and state is not None and record is None and action == "none" and mine:
                result["repaired"] = [
                    f"{hook}: the program was attached by a run killed before it recorded the attachment; "
                    + ("it would be recorded now" if check_mode else "recorded now")
                ]
            new_record = {
                "program": prog_name,
                "pin": pin,
                "prog_id": info["id"],
                # the bpf_link holding the attachment, where it is pinned (None: held by netlink or a cls_bpf filter)
                "link_pin": final.link_pin if final is not None else None,
                "spec": dataclasses.asdict(spec),
                # what cnf.ebpf.bpf_boot replays to attach again after a reboot
                "params": {k: v for k, v in p.items() if k in ARGUMENT_SPEC and k != "state"},
            }
            if app and state is not None and not check_mode:
                noted = (state.get("taken_over") or {}).pop(hook, None)
                if record != new_record or noted is not None:
                    state.setdefault("attachments", {})[hook] = new_record
                    _apps.write_state(app, state, p["state_dir"])
            result["after"] = result["before"] if check_mode else _describe(_attach.current(spec))
        finally:
            fd.close()
        return result


def _detach(
    p: dict[str, Any],
    spec: _hooks.AttachSpec,
    hook: str,
    pin: str,
    app: str | None,
    state: dict[str, Any] | None,
    record: dict[str, Any] | None,
    result: dict[str, Any],
    check_mode: bool,
) -> dict[str, Any]:
    """state=absent: detach our program from the hook, drop its link pin (a defunct one too) and its record. A hook
    whose interface, network namespace or cgroup is gone holds nothing: only the pin and the record are left to
    remove."""
    try:
        current = _attach.current(spec)
    except BpfError as exc:
        if exc.errno not in (errno.ENODEV, errno.ENOENT):
            raise
        current = []
        result["reasons"].append(f"{spec.where()}: {exc.detail or exc.errno_name}; nothing is attached there")
    result["before"] = _describe(current)
    ours = _owned(current, pin, record)
    defunct = _attach.defunct_link(spec)
    if defunct is not None:
        result["reasons"].append(_defunct_reason(spec, defunct, again=False))
    if not check_mode:
        for att in ours:
            _attach.detach(spec, att)
        _attach.drop_defunct(spec)
        if app and state is not None:
            noted = (state.get("taken_over") or {}).pop(hook, None)
            if record is not None or noted is not None:
                state.get("attachments", {}).pop(hook, None)
                _apps.write_state(app, state, p["state_dir"])
    result["changed"] = bool(ours) or record is not None or defunct is not None
    if check_mode or not current:
        result["after"] = result["before"]
    else:
        result["after"] = _describe(_attach.current(spec))
    return result


def _defunct_reason(spec: _hooks.AttachSpec, info: dict[str, Any], again: bool = True) -> str:
    target = "cgroup" if info["type"] == "cgroup" else "interface"
    text = (
        f"link id {info['id']} pinned at {spec.link_pin} is defunct: its {target} went away (or it was detached), "
        f"so the kernel keeps it on no hook"
    )
    return f"{text}; attached again to {spec.where()}" if again else f"{text}; unpinned"


def _brief(att: _hooks.Attachment) -> dict[str, Any]:
    return {"prog_id": att.prog_id, "prog_name": att.prog_name, "via": att.via, "link_id": att.link_id}


def _holder(att: _hooks.Attachment, pin_root: str) -> dict[str, Any] | None:
    """Which of our deployments holds `att`, from where its link, else its program, is pinned under the pin root:
    {"application": name (None for a link made by bpf_attach for a program outside any application), "link_pin":
    that pin or None, "program": the program pin or None}. None when nothing under the pin root holds it."""
    try:
        names = sorted(os.listdir(pin_root))
    except OSError:
        return None
    apps = [name for name in names if name not in ("shared", "links") and _apps.valid_name(name)]
    if att.link_id is not None:
        dirs = [(name, _apps.AppLayout(name, pin_root).links_dir) for name in apps]
        dirs.append((None, os.path.join(pin_root, "links")))
        for name, links_dir in dirs:
            for path in _listdir(links_dir):
                if _hooks.pinned_link_id(path) == att.link_id:
                    return {"application": name, "link_pin": path, "program": None}
    for name in apps:
        for path in _listdir(_apps.AppLayout(name, pin_root).progs_dir):
            try:
                prog_id = _apps.pinned_prog_id(path)
            except BpfError:
                continue
            if prog_id == att.prog_id:
                return {"application": name, "link_pin": None, "program": path}
    return None


def _listdir(path: str) -> list[str]:
    try:
        return [os.path.join(path, name) for name in sorted(os.listdir(path))]
    except OSError:
        return []


def _holder_text(att: _hooks.Attachment, holder: dict[str, Any] | None) -> str:
    prog = f"program id {att.prog_id} ({att.prog_name or 'unnamed'})"
    if holder is None:
        return f"{prog}, not deployed by cnf.ebpf"
    if holder["application"] is None:
        return f"{prog}, attached by cnf.ebpf.bpf_attach outside any application (link pin {holder['link_pin']})"
    where = f"link pin {holder['link_pin']}" if holder["link_pin"] else f"program pin {holder['program']}"
    return f"application {holder['application']} ({prog}, {where})"


def _conflict(holders: list[tuple[_hooks.Attachment, dict[str, Any] | None]]) -> str:
    """'the hook is held by application A (...)' / 'the hook holds program id N (x), not deployed by cnf.ebpf'."""
    texts = [_holder_text(att, holder) for att, holder in holders]
    ours = [text for text, (_att, holder) in zip(texts, holders) if holder is not None]
    foreign = [text for text, (_att, holder) in zip(texts, holders) if holder is None]
    parts = []
    if ours:
        parts.append("the hook is held by " + "; ".join(ours))
    if foreign:
        parts.append("the hook holds " + "; ".join(foreign))
    return "; ".join(parts)


def _take_over(
    p: dict[str, Any],
    spec: _hooks.AttachSpec,
    target: _hooks.Attachment,
    fd: Fd,
    holder: dict[str, Any],
    app: str | None,
    pin: str,
) -> _hooks.Attachment:
    """Replace another application's program on the hook, under that application's lock: its link (when it holds
    the hook through one) now runs our program and its pin moves to ours, and its state file forgets the hook (noted
    under `taken_over`), so removing that application leaves our attachment alone."""
    other = holder["application"]
    with _apps.app_lock(other, p["lock_timeout"]):
        other_state = _apps.read_state(other, p["state_dir"])
        final = _attach.replace(spec, target, fd, take_pin=holder.get("link_pin"))
        if other_state is not None:
            _forget_hook(other_state, holder, hook_id(p), app, pin, final.prog_id, spec)
            _apps.write_state(other, other_state, p["state_dir"])
    return final


def _forget_hook(
    state: dict[str, Any],
    holder: dict[str, Any],
    hook: str,
    by: str | None,
    pin: str,
    prog_id: int,
    spec: _hooks.AttachSpec,
) -> None:
    """Drop the holder's records of a hook it lost (its own name for the hook, or the record of the link pin that
    moved) and note who took it."""
    names = {hook}
    if holder.get("link_pin"):
        names.add(os.path.basename(holder["link_pin"]))
    records = state.get("attachments") or {}
    lost = [
        name
        for name, rec in records.items()
        if (name in names or (rec.get("spec") or {}).get("link_pin") == holder.get("link_pin"))
        and (rec.get("spec") or {}).get("link_pin") != spec.link_pin
    ]
    for name in lost:
        records.pop(name)
        state.setdefault("taken_over", {})[name] = {
            "by": by,
            "program": pin,
            "prog_id": prog_id,
            "link_pin": spec.link_pin,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def _owned(current: list[_hooks.Attachment], pin: str, record: dict[str, Any] | None) -> list[_hooks.Attachment]:
    ids = set()
    if os.path.lexists(pin):
        try:
            fd, info = _hooks.open_program(pin)
            fd.close()
            ids.add(info["id"])
        except (AttachError, BpfError):
            pass
    if record is not None:
        ids.add(record.get("prog_id"))
    return [a for a in current if a.prog_id in ids]


def swap_program(record: dict[str, Any], old_prog_id: int, new_fd: Fd, also: Collection[int] = ()) -> None:
    """bpf_program upgrades: move one recorded hook from the old program to the new one, atomically. The hook is
    ours when it runs the old program, the recorded one, one of `also` (an interrupted upgrade's programs) or sits
    on our pinned link."""
    spec = _hooks.AttachSpec(**record["spec"])
    current = _attach.current(spec)
    ours = {old_prog_id, record.get("prog_id"), *also}
    old = [a for a in current if a.prog_id in ours or (a.link_pin and a.link_pin == spec.link_pin)]
    if old:
        _attach.replace(spec, old[0], new_fd)
    elif not current:
        _attach.attach(spec, new_fd)  # detached behind our back: put it back
    else:
        names = ", ".join(f"id {a.prog_id} ({a.prog_name})" for a in current)
        raise AttachError(f"{spec.link_pin}: the hook now holds {names}, not our program; not swapping")


def detach_record(record: dict[str, Any]) -> None:
    """Detach one recorded hook of an application being removed. A hook whose network namespace or interface is gone
    went with it; removing the application must not fail over it (its pins would be left behind)."""
    spec = _hooks.AttachSpec(**record["spec"])
    try:
        current = _attach.current(spec)
    except BpfError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV):
            return
        raise
    for att in current:
        if att.prog_id == record.get("prog_id") or (att.link_pin and att.link_pin == spec.link_pin):
            _attach.detach(spec, att)


def run(module: AnsibleModule) -> None:
    fail_without_libbpf(module)
    tracing = module.params["kind"] in _hooks.TRACING_KINDS
    fail_without_privileges(module, ("bpf",) if tracing else ("bpf", "net_admin"))
    if _hooks.PYROUTE2_IMPORT_ERROR is not None and module.params["kind"] not in _hooks.TRACING_KINDS:
        module.fail_json(msg=missing_required_lib("pyroute2"), exception=_hooks.PYROUTE2_IMPORT_ERROR)
    try:
        result = attach(module.params, check_mode=module.check_mode)
    except (AttachError, ValueError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    except (BpfError, LockTimeout) as exc:
        module.fail_json(msg=str(exc), changed=False)
    module.exit_json(**result)
