"""_objects on the real kernel: compile (cached), inspect, load with constants/map sizes/reused maps, verifier
rejections, compile errors, and no leftovers (programs, maps, fds) after failures."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf_obj import prog_test_run
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._objects import (
    SHIM_DIR_NAME,
    CompileError,
    ObjectParamError,
    VerifierError,
    compile_source,
    decode_constants,
    inspect_object,
    load_object,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import Int, Struct, resolve

from .conftest import bpftool

DATA = Path(__file__).parent / "data"
XDP_DROP, XDP_PASS = 1, 2
RODATA = "obj_coun.rodata"  # libbpf: 8 characters of the object name + the section


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def counter_obj(cache_dir: Path) -> str:
    return compile_source(str(DATA / "obj_counter.c"), cache_dir=str(cache_dir)).path


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def prog_ids_named(*names: str) -> set[int]:
    return {p["id"] for p in bpftool("prog", "list") if p.get("name") in names}


def eventually(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def udp_packet(dport: int) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x0800)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    udp = struct.pack("!HHHH", 1234, dport, 8, 0)
    return eth + ip + udp + bytes(32)


def test_compile_twice_second_is_a_cache_hit(tmp_path: Path) -> None:
    first = compile_source(str(DATA / "obj_counter.c"), cache_dir=str(tmp_path))
    second = compile_source(str(DATA / "obj_counter.c"), cache_dir=str(tmp_path))
    assert not first.cached and second.cached
    assert first.digest == second.digest and first.path == second.path == f"{tmp_path}/{first.digest}.o"
    assert first.command[:5] == ["clang", "-target", "bpf", "-O2", "-g"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{first.digest}.o", SHIM_DIR_NAME])


def test_the_same_source_in_two_places_compiles_to_the_same_object(tmp_path: Path) -> None:
    """Two applications deploy copies of one source from their own directories: one cache key, so one object, byte
    for byte, whichever compiles first (the source's directory must not leak into debug info or BTF)."""
    objects = []
    for place in ("app-one", "app-two/nested"):
        src = tmp_path / place / "obj_counter.c"
        src.parent.mkdir(parents=True)
        src.write_bytes((DATA / "obj_counter.c").read_bytes())
        compiled = compile_source(str(src), cache_dir=str(tmp_path / f"cache-{len(objects)}"))
        objects.append((compiled.digest, Path(compiled.path).read_bytes()))
    assert objects[0] == objects[1]
    assert str(tmp_path).encode() not in objects[0][1]


def test_inspect_reports_programs_maps_and_constants(counter_obj: str) -> None:
    before = prog_ids_named("xdp_counter")
    spec = inspect_object(counter_obj, object_name="obj_counter")
    assert prog_ids_named("xdp_counter") == before  # nothing was loaded

    assert [(p.name, p.section, p.type, p.expected_attach_type) for p in spec.programs] == [
        ("xdp_counter", "xdp", "xdp", "xdp")
    ]
    maps = {m.name: m for m in spec.maps}
    assert set(maps) == {"counters", "ports", RODATA}
    counters, ports, rodata = maps["counters"], maps["ports"], maps[RODATA]
    assert (counters.type, counters.key_size, counters.value_size, counters.max_entries) == ("percpu_array", 4, 8, 4)
    assert (ports.type, ports.key_size, ports.value_size, ports.max_entries) == ("hash", 4, 24, 128)
    assert not counters.internal and not ports.internal
    value = resolve(ports.value_type)
    assert isinstance(value, Struct) and value.name == "port_stats"
    assert [(m.name, m.offset) for m in value.members] == [
        ("packets", 0),
        ("bytes", 8),
        ("last_seen", 16),
        ("proto", 20),
    ]
    assert resolve(counters.key_type).size == 4 and resolve(counters.value_type).size == 8
    assert rodata.internal and rodata.section == ".rodata" and spec.rodata_map is rodata

    assert set(spec.constants) == {"drop_port", "enabled"}
    port, enabled = spec.constants["drop_port"], spec.constants["enabled"]
    assert (port.offset, port.size, enabled.offset, enabled.size) == (0, 4, 4, 1)
    assert isinstance(resolve(port.type), Int) and not resolve(port.type).signed
    assert resolve(enabled.type).is_bool
    assert port.type_name == "const volatile __u32"
    assert decode_constants(spec, spec.rodata) == {"drop_port": 0, "enabled": False}


def test_load_with_constants_and_map_sizes(counter_obj: str, pin_dir: Path, tmp_path: Path) -> None:
    fds = open_fds()
    loaded = load_object(
        counter_obj,
        constants={"drop_port": 53, "enabled": True},
        map_sizes={"ports": 1000},
        object_name="obj_counter",
        log_dir=str(tmp_path),
    )
    try:
        pin_dir.mkdir()
        prog = loaded.programs["xdp_counter"]
        prog.fd.pin(f"{pin_dir}/prog")
        for name, m in loaded.maps.items():
            m.fd.pin(f"{pin_dir}/{name.replace('.', '_')}")
        assert set(loaded.maps) == {"counters", "ports", RODATA}
        assert loaded.maps[RODATA].internal and not loaded.maps["ports"].internal
        assert not any(m.reused for m in loaded.maps.values())
        assert loaded.spec is not None and loaded.object_btf_raw == loaded.spec.btf_raw

        shown = bpftool("prog", "show", "pinned", f"{pin_dir}/prog")
        assert shown["id"] == prog.info["id"] and shown["type"] == "xdp"
        assert sorted(shown["map_ids"]) == sorted(m.info["id"] for m in loaded.maps.values())
        assert sorted(prog.map_ids) == sorted(shown["map_ids"])
        assert bpftool("map", "show", "id", str(loaded.maps["ports"].info["id"]))["max_entries"] == 1000
        assert bpftool("map", "show", "id", str(loaded.maps["counters"].info["id"]))["max_entries"] == 4

        dump = bpftool("map", "dump", "id", str(loaded.maps[RODATA].info["id"]))
        assert dump[0]["formatted"]["value"][".rodata"] == [{"drop_port": 53}, {"enabled": True}]
        assert bpftool("map", "show", "id", str(loaded.maps[RODATA].info["id"]))["frozen"] == 1

        # The constants are what the program runs with: port 53 is dropped, port 54 passes and is counted.
        assert prog_test_run(prog.fd, udp_packet(53))[0] == XDP_DROP
        assert prog_test_run(prog.fd, udp_packet(54))[0] == XDP_PASS
        with _bpf_map.map_open(f"{pin_dir}/counters") as counters:
            drops = counters.lookup(struct.pack("<I", 1))
            assert sum(struct.unpack_from("<Q", drops, i * 8)[0] for i in range(counters.ncpus)) == 1
    finally:
        loaded.close()
    assert open_fds() == fds


def test_reused_map_keeps_its_state(counter_obj: str, pin_dir: Path, tmp_path: Path) -> None:
    pin_dir.mkdir()
    first = load_object(counter_obj, object_name="obj_counter", log_dir=str(tmp_path))
    with first:
        first.maps["ports"].fd.pin(f"{pin_dir}/ports")
        old_id = first.maps["ports"].info["id"]
        old_prog = first.programs["xdp_counter"].info["id"]
    with _bpf_map.map_open(f"{pin_dir}/ports") as ports:
        ports.update(struct.pack("<I", 53), struct.pack("<QQIHxx", 7, 700, 1, 17))

    fds = open_fds()
    second = load_object(
        counter_obj,
        reuse_maps={"ports": f"{pin_dir}/ports"},
        map_sizes={"counters": 8},
        object_name="obj_counter",
        log_dir=str(tmp_path),
    )
    with second:
        prog = second.programs["xdp_counter"]
        assert prog.info["id"] != old_prog
        ports_map = second.maps["ports"]
        assert ports_map.reused and ports_map.info["id"] == old_id
        assert not second.maps["counters"].reused and second.maps["counters"].info["max_entries"] == 8
        assert old_id in prog.map_ids
        assert old_id in bpftool("prog", "show", "id", str(prog.info["id"]))["map_ids"]
        # The new program updates the old map's entry: state survived and is shared.
        assert prog_test_run(prog.fd, udp_packet(53))[0] == XDP_PASS  # constants left at 0/false
    with _bpf_map.map_open(f"{pin_dir}/ports") as ports:
        packets, _bytes, seen, proto = struct.unpack("<QQIHxx", ports.lookup(struct.pack("<I", 53)))
        assert (packets, seen, proto) == (8, 1, 17)
    assert open_fds() == fds


def test_reuse_refuses_a_map_of_another_shape(counter_obj: str, pin_dir: Path, tmp_path: Path) -> None:
    pin_dir.mkdir()
    with _bpf_map.map_create("hash", "other", 4, 8, 16, label="other") as other:
        other.pin(f"{pin_dir}/other")
    fds = open_fds()
    with pytest.raises(ObjectParamError) as err:
        load_object(counter_obj, reuse_maps={"ports": f"{pin_dir}/other"}, log_dir=str(tmp_path))
    assert err.value.path == "reuse_maps.ports"
    assert "value_size 8 (object declares 24)" in str(err.value)
    with pytest.raises(ObjectParamError, match=r"^reuse_maps\.nope: .*its maps: ports, counters"):
        load_object(counter_obj, reuse_maps={"nope": f"{pin_dir}/other"}, log_dir=str(tmp_path))
    with pytest.raises(_libbpf.BpfError, match="ENOENT"):
        load_object(counter_obj, reuse_maps={"ports": f"{pin_dir}/missing"}, log_dir=str(tmp_path))
    assert open_fds() == fds


def test_bad_parameters_name_their_path(counter_obj: str, tmp_path: Path) -> None:
    fds = open_fds()
    with pytest.raises(ObjectParamError, match=r"^map_sizes\.flows: the object has no map named 'flows'"):
        load_object(counter_obj, map_sizes={"flows": 10}, log_dir=str(tmp_path))
    with pytest.raises(ObjectParamError, match=r"^map_sizes\.ports: expected a positive 32-bit integer"):
        load_object(counter_obj, map_sizes={"ports": 0}, log_dir=str(tmp_path))
    with pytest.raises(ObjectParamError, match=r"^constants\.drop_prot: .*drop_port, enabled"):
        load_object(counter_obj, constants={"drop_prot": 1}, log_dir=str(tmp_path))
    with pytest.raises(ObjectParamError, match=r"^constants\.drop_port: .*range"):
        load_object(counter_obj, constants={"drop_port": 70000 * 70000}, log_dir=str(tmp_path))
    assert open_fds() == fds


def test_verifier_rejection_leaves_nothing_loaded(cache_dir: Path, tmp_path: Path) -> None:
    obj = compile_source(str(DATA / "obj_bad_access.c"), cache_dir=str(cache_dir)).path
    names = ("xdp_ok", "xdp_unchecked")
    progs_before = prog_ids_named(*names)
    maps_before = {m["id"] for m in bpftool("map", "list") if m.get("name") == "seen"}
    fds = open_fds()
    with pytest.raises(VerifierError) as err:
        load_object(obj, log_dir=str(tmp_path / "logs"))
    exc = err.value
    assert exc.program == "xdp_unchecked"
    assert "invalid access to packet" in exc.message
    assert exc.insns_processed is not None and exc.insns_processed > 0
    assert exc.kernel_release == os.uname().release
    assert "invalid access to packet" in exc.log_tail and len(exc.log_tail.splitlines()) <= 20
    assert exc.log_path is not None and Path(exc.log_path).parent == tmp_path / "logs"
    assert Path(exc.log_path).name.endswith("-xdp_unchecked.log")
    assert "processed" in Path(exc.log_path).read_text()
    text = str(exc)
    assert "xdp_unchecked" in text and "invalid access to packet" in text and os.uname().release in text
    assert "\n" not in text

    assert open_fds() == fds
    # xdp_ok was loaded first and its map created; with no fd left the kernel frees both (maps after an RCU grace
    # period and a workqueue run, hence the short wait).
    assert eventually(lambda: prog_ids_named(*names) == progs_before)
    assert eventually(lambda: {m["id"] for m in bpftool("map", "list") if m.get("name") == "seen"} == maps_before)


def test_clang_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(CompileError) as err:
        compile_source(str(DATA / "obj_syntax_error.c"), cache_dir=str(tmp_path))
    assert "obj_syntax_error.c" in str(err.value) and "expected ';'" in str(err.value)
    assert "error:" in err.value.stderr
    assert err.value.command[0] == "clang" and "-c" in err.value.command
    assert [p.name for p in tmp_path.iterdir()] == [SHIM_DIR_NAME]  # no object, no temporary file


def test_inspect_and_failed_open_close_their_fds(counter_obj: str, tmp_path: Path) -> None:
    fds = open_fds()
    for _unused in range(3):
        inspect_object(counter_obj)
    not_elf = tmp_path / "not-an-object.o"
    not_elf.write_bytes(b"garbage")
    with pytest.raises(_libbpf.BpfError) as err:
        inspect_object(str(not_elf))
    assert err.value.op == "open" and str(not_elf) in str(err.value)
    assert open_fds() == fds


def test_failed_core_relocation_is_explained(cache_dir: Path, tmp_path: Path) -> None:
    obj = compile_source(str(DATA / "obj_core_missing.c"), cache_dir=str(cache_dir)).path
    with pytest.raises(VerifierError) as err:
        load_object(obj, log_dir=str(tmp_path))
    assert err.value.program == "xdp_core"
    # libbpf rewrites the poisoned instruction's log line, so the verifier's message names the missing field.
    assert "CO-RE relocation" in err.value.message and "no_such_field_in_any_kernel" in err.value.message
