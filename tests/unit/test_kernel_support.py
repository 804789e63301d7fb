"""Refusals of map and program types the running kernel lacks, given what the probes answer (the test host's kernel
has every map type, so its "no" is stood in for here; a real "no" for a program type is in
tests/integration/test_refusals.py)."""

from __future__ import annotations

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _maps, _objects


def spec(map_types: list[str], prog_types: list[str]) -> _objects.ObjectSpec:
    maps = [
        _objects.MapSpecInObject(f"m{i}", t, 4, 4, 1, 0, None, None, internal=False) for i, t in enumerate(map_types)
    ]
    maps.append(_objects.MapSpecInObject(".rodata", "array", 4, 8, 1, 0, None, None, internal=True))
    progs = [_objects.ProgramSpec(f"p{i}", "sec", t, "") for i, t in enumerate(prog_types)]
    return _objects.ObjectSpec("o.o", "o", progs, maps, {})


def test_only_what_the_probes_deny_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"cgrp_storage": False, "arena": None}
    monkeypatch.setattr(_libbpf, "probe_map_type", lambda t: answers.get(t, True))
    monkeypatch.setattr(_libbpf, "probe_prog_type", lambda t: {"lirc_mode2": False, "tracing": None}.get(t, True))
    assert _maps.unsupported_map_type("type", "hash") is None
    refusal = _maps.unsupported_map_type("type", "cgrp_storage")
    assert (
        refusal is not None and refusal.startswith("type: this kernel") and "cannot create cgrp_storage maps" in refusal
    )
    assert _objects.unsupported_by_kernel(spec(["hash", "cgrp_storage"], ["xdp", "lirc_mode2", "tracing"])) == [
        "program p1 is of type lirc_mode2",
        "map m1 is of type cgrp_storage",
    ]
    assert _objects.unsupported_by_kernel(spec(["hash"], ["xdp", "tracing"])) == [], "unknown is not no"


def test_unreliable_program_probes_are_never_asked() -> None:
    # libbpf 1.1 answers "no" for tracing programs wherever lockdown refuses fentry: that is not the kernel lacking
    # the type, so the probe is not trusted for it
    assert _libbpf.probe_prog_type("tracing") is None
    assert _libbpf.probe_prog_type("no_such_type") is None
