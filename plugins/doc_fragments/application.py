# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the modules that work on bpf_program applications, documented once.

A module takes the ones it has, by attribute: `extends_documentation_fragment: [cnf.ebpf.application.pin_root]`
is PIN_ROOT. Their argument specs come from plugins/module_utils/surface/_options.py, and
tests/unit/test_shared_options.py fails when the two disagree."""

from __future__ import annotations


class ModuleDocFragment:
    PIN_ROOT = r"""
options:
  pin_root:
    description:
      - bpffs directory holding the applications M(cnf.ebpf.bpf_program) deploys, each under C(<pin_root>/<name>/)
        (C(progs/), C(maps/), and C(links/) for the links M(cnf.ebpf.bpf_attach) makes), and their
        O(cnf.ebpf.bpf_program#module:shared_maps) under C(<pin_root>/shared/). M(cnf.ebpf.bpf_attach) pins the
        links of programs outside any application under C(<pin_root>/links/).
      - Every module of the collection that takes this option must be given the same directory.
    type: path
    default: /sys/fs/bpf/cnf
"""

    STATE_DIR = r"""
options:
  state_dir:
    description:
      - Directory of the collection's state on the managed host. It holds the applications' state files
        (C(apps/<name>.json)), which M(cnf.ebpf.bpf_program) and M(cnf.ebpf.bpf_attach) write,
        M(cnf.ebpf.bpf_map_entries) updates with O(cnf.ebpf.bpf_map_entries#module:persist), and
        M(cnf.ebpf.bpf_boot) marks and replays at boot, so they must all be given the same directory.
      - It also holds the compile cache (C(cache/)) and verifier logs (C(logs/)) of M(cnf.ebpf.bpf_program), the
        restore runtime of M(cnf.ebpf.bpf_boot) (C(runtime/), unless O(cnf.ebpf.bpf_boot#module:runtime_dir) says
        otherwise) and the metrics timer's of M(cnf.ebpf.bpf_metrics) (there too), and the previous gatherings
        M(cnf.ebpf.bpf_facts) computes O(cnf.ebpf.bpf_facts#module:rates) against (C(facts/)).
    type: path
    default: /var/lib/cnf-ebpf
"""

    LOCK_TIMEOUT = r"""
options:
  lock_timeout:
    description:
      - Seconds to wait for another run holding the same lock to finish; the task fails when the wait runs out.
      - Runs on the same application (M(cnf.ebpf.bpf_program), M(cnf.ebpf.bpf_attach), M(cnf.ebpf.bpf_boot), and
        M(cnf.ebpf.bpf_map_entries) with O(cnf.ebpf.bpf_map_entries#module:persist)) wait for each other, and so do
        runs of M(cnf.ebpf.bpf_map_entries) on the same map, through locks under C(/run/cnf-ebpf).
    type: int
    default: 60
"""
