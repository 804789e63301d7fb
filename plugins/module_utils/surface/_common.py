# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module's surface needs: the failures before any work (libbpf missing, capabilities missing), and
defaults for in-process calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _host

if TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule


def fail_without_libbpf(module: AnsibleModule) -> None:
    # Imported here: with_defaults also serves the command line (tools/cnf-ebpf-codegen), which runs without ansible.
    from ansible.module_utils.basic import missing_required_lib

    ok, error = _host.libbpf_available()
    if not ok:
        module.fail_json(msg=missing_required_lib(_host.LIBBPF_PACKAGE_HINT), exception=error)


def fail_without_privileges(module: AnsibleModule, needs: tuple[str, ...] = ("bpf",)) -> None:
    """Refuse, before anything is touched, a task whose process lacks the capabilities its BPF work needs (the
    kernel would answer the first syscall with a bare EPERM, perhaps after other steps were done)."""
    missing = _host.missing_capabilities(needs, _host.effective_capabilities())
    if missing:
        module.fail_json(
            msg=f"This task needs root: the process lacks {', '.join(missing)}. Run the task with "
            "become: true, or grant the process those capabilities; nothing was changed",
            missing_capabilities=missing,
        )


def with_defaults(argument_spec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Module parameters with the argument spec's defaults filled in, so the engines can be called in-process (by
    tests and by other modules) with only the options that matter; AnsibleModule does the same for real runs."""
    full = {name: spec.get("default") for name, spec in argument_spec.items()}
    full.update({k: v for k, v in params.items() if v is not None or k not in full})
    return full
