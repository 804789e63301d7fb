# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the surface may know of the layers under the resources, in one place: whether libbpf is installed, the
capabilities the process lacks, the kernel's CPU count, the handle type resources pass around, and the errors that
every resource call can raise.

The surface imports these from here, never from the kernel or types layers (tests/unit/test_layers.py): what it
handles is the resources' contract, whichever layer beneath them the error starts in.
"""

from __future__ import annotations

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbcc import BccMissing
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import (
    LIBBPF_PACKAGE_HINT,
    BpfError,
    Fd,
    libbpf_available,
    num_possible_cpus,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._privileges import (
    effective_capabilities,
    missing_capabilities,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._formats import CodecError

__all__ = [
    "LIBBPF_PACKAGE_HINT",
    "BccMissing",
    "BpfError",
    "CodecError",
    "Fd",
    "effective_capabilities",
    "libbpf_available",
    "missing_capabilities",
    "num_possible_cpus",
]
