# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named crash points in the operations that change the host, for the crash-consistency tests.

`CNF_EBPF_KILL_AT=<point>` (or `<point>@<n>`, the n-th time) makes the process SIGKILL itself when it reaches that
point, as the OOM killer, a reboot or a dropped SSH session would stop a run: no cleanup, no finally block. Unset
(always, outside the tests) a point costs one comparison. The points are listed in docs/failure-modes.md.
"""

from __future__ import annotations

import os
import signal

KILL_AT = "CNF_EBPF_KILL_AT"

_spec = os.environ.get(KILL_AT)
_point, _at, _nth = (_spec or "").partition("@")
_hits = 0


def kill_point(name: str) -> None:
    """Die here when the environment names this point (and this is its n-th visit)."""
    global _hits
    if _spec is None or name != _point:
        return
    _hits += 1
    if _hits == int(_nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
