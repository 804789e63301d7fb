"""The capability check behind every module's up-front refusal: CapEff parsing and which groups are missing."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._privileges import (
    CAP_BPF,
    CAP_NET_ADMIN,
    CAP_SYS_ADMIN,
    effective_capabilities,
    missing_capabilities,
)


def test_capeff_is_read_from_the_status_file(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n")
    assert effective_capabilities(str(status)) == 0x1FFFFFFFFFF
    status.write_text("Name:\tpython3\n")
    assert effective_capabilities(str(status)) is None
    assert effective_capabilities(str(tmp_path / "missing")) is None


def test_missing_groups() -> None:
    root = (1 << 41) - 1
    assert missing_capabilities(("bpf", "net_admin"), root) == []
    assert missing_capabilities(("bpf",), 0)[0].startswith("CAP_SYS_ADMIN")
    only_bpf = 1 << CAP_BPF | 1 << CAP_NET_ADMIN
    assert [m.split()[0] for m in missing_capabilities(("bpf", "net_admin"), only_bpf)] == ["CAP_SYS_ADMIN"]
    assert [m.split()[0] for m in missing_capabilities(("bpf", "net_admin"), 1 << CAP_SYS_ADMIN)] == ["CAP_NET_ADMIN"]
    assert missing_capabilities(("bpf", "net_admin"), None) == [], "unknown: nothing is refused up front"
