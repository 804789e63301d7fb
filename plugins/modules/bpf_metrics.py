#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_metrics
short_description: Export the CNFs' counters as Prometheus metrics for node_exporter's textfile collector
version_added: 0.1.0
description:
  - Reads the maps of the named applications (as the CNF roles deployed them) and writes their counters in the
    Prometheus text exposition format to O(path), atomically (a temporary file in the same directory, which the
    collector skips, renamed over the file), mode 0644. Point node_exporter's C(--collector.textfile.directory) at
    the directory.
  - "Metrics, each labelled with C(app): C(cnf_ebpf_up) (1 when the application's maps are pinned),
    C(cnf_ebpf_flows) (flows in the tracker's table), C(cnf_ebpf_flow_packets_total) and C(cnf_ebpf_flow_bytes_total)
    (the top O(top) flows by bytes only, labelled C(proto), C(src), C(src_port), C(dst), C(dst_port)),
    C(cnf_ebpf_interface_packets_total) and C(cnf_ebpf_interface_bytes_total) (per attached interface, labelled
    C(interface) and C(netns)), C(cnf_ebpf_rule_hits_total) (per filter rule, labelled C(cidr), C(action), C(id)),
    C(cnf_ebpf_event_drops_total) (events lost on a full ring buffer), and
    C(cnf_ebpf_metrics_last_run_timestamp_seconds)."
  - Each application gets the metrics of the maps it has (C(flows), C(if_counters), C(rule_hits) with C(rules_v4) and
    C(rules_v6), C(event_drops)), read as the C(cnf.ebpf.flow_tracker) and C(cnf.ebpf.xdp_filter) roles' reports read
    them (per-CPU counters summed).
  - "With O(timer), installs C(cnf-ebpf-metrics.service) and C(cnf-ebpf-metrics.timer) (every O(interval) seconds
    from boot on, enabled for C(timers.target)) that rewrite the file without Ansible: like M(cnf.ebpf.bpf_boot), a
    runtime zip of the Python code this run imported, a script and a JSON config go to O(runtime_dir). The module
    does not start the timer; the C(cnf.ebpf.metrics) role does, with systemd."
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.1 or newer (libbpf.so.1) on the managed host; systemd for the timer
extends_documentation_fragment:
  - cnf.ebpf.application.pin_root
  - cnf.ebpf.application.state_dir
options:
  apps:
    description:
      - Applications to export, by name (the O(cnf.ebpf.bpf_program#module:name) they were deployed with).
      - Empty means every application recorded under O(state_dir), looked up again at each refresh of the timer.
      - A name that is not recorded fails the task; at a refresh of the timer an application whose pins are missing
        (removed, or not restored yet after a boot) has C(cnf_ebpf_up) 0 and no other series.
    type: list
    elements: str
    default: []
  path:
    description: The exposition file; its name must end in C(.prom) (node_exporter's textfile collector reads only the
      C(*.prom) files of its directory).
    type: path
    default: /var/lib/prometheus/node-exporter/cnf_ebpf.prom
  top:
    description: Flows exported per flow tracker, the largest by bytes (0 exports none; the label set stays bounded).
    type: int
    default: 20
  state:
    description: V(present) writes the file (and installs or removes the timer per O(timer)); V(absent) removes the
      file and the timer.
    type: str
    choices: [present, absent]
    default: present
  timer:
    description: Install the systemd service and timer that refresh the file; V(false) removes them.
    type: bool
    default: false
  interval:
    description: Seconds between two refreshes of the timer (its C(OnBootSec) and C(OnUnitActiveSec)).
    type: int
    default: 60
  unit_dir:
    description: Directory of the systemd units.
    type: path
    default: /etc/systemd/system
  runtime_dir:
    description: Where the runtime zip, the refresh script and its config go (default O(state_dir)/runtime).
    type: path
  python:
    description: Interpreter of the service (default the one running this module, which has the modules' libraries).
    type: path
notes:
  - "Idempotence: the counters move with the traffic, so the file is rewritten on every run; C(changed) reports a
    change of what is exported, not of the values: the file is new, or a series other than the top flows' appeared
    or went (an application, an interface, a rule), or the timer's files changed. A new reading (other values, other
    top flows, a new timestamp) is not a change."
  - Interfaces are counted by ifindex modulo 256 by the flow tracker; two attached interfaces sharing a slot show the
    same counters.
attributes:
  check_mode:
    support: full
    description: Reads the maps and reports what would change; writes nothing.
  diff_mode:
    support: none
    description: No diff; the result gives the file and the number of series.
"""

EXAMPLES = r"""
- name: Export the CNFs' counters, refreshed every 30 s
  cnf.ebpf.bpf_metrics:
    apps: [flow_tracker, xdp_filter]
    timer: true
    interval: 30

- name: Once, to a directory of one's own
  cnf.ebpf.bpf_metrics:
    path: /srv/textfile/cnf_ebpf.prom
    top: 5
"""

RETURN = r"""
path:
  description: The exposition file.
  returned: always
  type: str
apps:
  description: The applications exported, each with whether its maps were read (C(cnf_ebpf_up)).
  returned: state is present
  type: dict
series:
  description: Samples in the file.
  returned: state is present
  type: int
units:
  description: The service and timer unit files.
  returned: always
  type: list
  elements: str
units_changed:
  description: Whether the timer's files (runtime, script, config, units, enable link) changed.
  returned: always
  type: bool
refresh_command:
  description: The command the service runs (run it by hand to refresh now).
  returned: timer is true
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._metrics_module import ARGUMENT_SPEC, run


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
