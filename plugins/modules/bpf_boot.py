#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_boot
short_description: Restore an eBPF application by itself after a reboot, without Ansible
version_added: 0.1.0
description:
  - bpffs starts empty after a reboot, so programs, maps and attachments are gone. This module marks an application
    deployed by M(cnf.ebpf.bpf_program) for restoring at boot and installs, on the host, what restores it.
  - "Installs a runtime (one zip of the Python code the restore needs, built from the modules this run imported: no
    Ansible is needed on the host at boot), a restore script, and the systemd oneshot unit C(cnf-ebpf-restore.service)
    that runs it after bpffs is mounted, enabled for C(multi-user.target)."
  - "At boot the restore replays, per marked application, the last recorded tasks: M(cnf.ebpf.bpf_program) (load and
    pin), the entries of M(cnf.ebpf.bpf_map_entries) tasks run with O(cnf.ebpf.bpf_map_entries#module:persist=true)
    (config, rules), then every hook of M(cnf.ebpf.bpf_attach), so a filter holds its rules before it is attached.
    A hook whose interface is missing fails alone; the unit fails so that C(systemctl status) shows it."
  - The restore is idempotent; run on a host where nothing was lost it changes nothing.
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.1 or newer (libbpf.so.1) and systemd on the managed host
extends_documentation_fragment:
  - cnf.ebpf.application.state_dir
  - cnf.ebpf.application.lock_timeout
options:
  name:
    description: The application (the O(cnf.ebpf.bpf_program#module:name) it was deployed with).
    type: str
    required: true
  state:
    description: V(present) marks the application for restoring at boot and installs the restore; V(absent) unmarks it.
    type: str
    choices: [present, absent]
    default: present
  runtime_dir:
    description: Where the runtime zip and the restore script go (default O(state_dir)/runtime).
    type: path
  unit_dir:
    description: Directory of the systemd unit.
    type: path
    default: /etc/systemd/system
  enable:
    description: Enable the unit for C(multi-user.target) (the symlink C(systemctl enable) makes).
    type: bool
    default: true
  python:
    description: Interpreter of the unit (default the one running this module, which has the modules' libraries).
    type: path
notes:
  - The latest run of each task is what gets restored; parameters are recorded by bpf_program and bpf_attach on
    every run, entries only with O(cnf.ebpf.bpf_map_entries#module:persist=true).
  - Network namespaces do not survive a reboot; hooks inside them fail to restore until something recreates them.
attributes:
  check_mode:
    support: full
    description: Reports whether the marking, the runtime, the script or the unit would change; writes nothing.
  diff_mode:
    support: none
    description: No diff; the result names the files.
"""

EXAMPLES = r"""
- name: Deploy the filter
  cnf.ebpf.bpf_program:
    name: edge_filter
    src: /opt/cnf/xdp_filter.c

- name: Its rules, recorded for the restore at boot
  cnf.ebpf.bpf_map_entries:
    path: /sys/fs/bpf/cnf/edge_filter/maps/rules_v4
    state: overridden
    persist: true
    entries:
      - {key: 192.0.2.0/24, value: {id: 1, action: DENY, rate_pps: 0, burst: 0}}

- name: Attach it
  cnf.ebpf.bpf_attach:
    program: edge_filter/xdp_filter
    kind: xdp
    interface: eth0

- name: Bring all of it back after every reboot
  cnf.ebpf.bpf_boot:
    name: edge_filter
"""

RETURN = r"""
runtime:
  description: The runtime zip on the host.
  returned: always
  type: str
unit:
  description: The systemd unit file.
  returned: always
  type: str
restore_command:
  description: The command the unit runs (run it by hand to restore now).
  returned: state is present
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._boot_module import ARGUMENT_SPEC, run


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
