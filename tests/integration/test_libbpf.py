"""The kernel layer (_libbpf) on the real kernel: element and batch operations, fallbacks, errors, fds."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
from pathlib import Path

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _btf_io, _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _abi

from .conftest import bpftool, compile_bpf


def u32(i: int) -> bytes:
    return struct.pack("<I", i)


def u64(i: int) -> bytes:
    return struct.pack("<Q", i)


def test_batch_round_trip_in_small_chunks() -> None:
    with _bpf_map.map_create("hash", "t", 4, 8, 1000, label="t") as m:
        pairs = [(u32(i), u64(i * 3)) for i in range(1000)]
        assert m.update_many(pairs, chunk=97) == 1000
        assert m._batch_ok["update"] is True
        got = dict(m.items(chunk=13))
        assert m._batch_ok["lookup"] is True
        assert got == dict(pairs)
        assert m.delete_many([u32(i) for i in range(0, 1000, 2)] + [u32(5000)], chunk=50) == 500
        assert sorted(struct.unpack("<I", k)[0] for k in m.iter_keys()) == list(range(1, 1000, 2))


def test_array_refuses_batch_delete_and_element_delete_reports_it() -> None:
    with _bpf_map.map_create("array", "t", 4, 8, 4, label="/sys/fs/bpf/x/arr") as m:
        m.update_many([(u32(i), u64(i)) for i in range(4)])
        with pytest.raises(BpfError) as err:
            m.delete_many([u32(1)])
        assert err.value.op == "delete" and err.value.errno == errno.EINVAL
        assert m._batch_ok["delete"] is False  # the batch refusal was remembered, then the element call failed


def test_full_map_error_names_operation_object_and_capacity() -> None:
    with _bpf_map.map_create("hash", "t", 4, 4, 2, label="/sys/fs/bpf/cnf/acl/rules") as m:
        m.update(u32(1), u32(1))
        m.update(u32(2), u32(2))
        with pytest.raises(BpfError) as err:
            m.update(u32(3), u32(3))
    assert str(err.value) == "update /sys/fs/bpf/cnf/acl/rules: E2BIG (map is full, max_entries=2)"
    assert err.value.errno_name == "E2BIG"


def test_noexist_flag_and_missing_keys() -> None:
    with _bpf_map.map_create("hash", "t", 4, 4, 4, label="t") as m:
        m.update(u32(1), u32(1))
        with pytest.raises(BpfError, match="EEXIST"):
            m.update(u32(1), u32(2), _bpf_map.UPDATE_NOEXIST)
        with pytest.raises(BpfError, match="ENOENT"):
            m.update(u32(9), u32(2), _bpf_map.UPDATE_EXIST)
        assert m.lookup(u32(9)) is None
        assert m.delete(u32(9)) is False
        assert m.lookup(u32(1)) == u32(1)


def test_wrong_sized_key_is_refused_before_the_syscall() -> None:
    with _bpf_map.map_create("hash", "t", 4, 4, 4, label="t") as m, pytest.raises(BpfError, match="key is 2 bytes"):
        m.lookup(b"ab")


@pytest.mark.parametrize(("kind", "order"), [("queue", [0, 1, 2]), ("stack", [2, 1, 0])])
def test_queue_and_stack_push_peek_pop(kind: str, order: list[int]) -> None:
    with _bpf_map.map_create(kind, "q", 0, 4, 3, label=kind) as m:
        m.update_many([(b"", u32(i)) for i in range(3)])
        with pytest.raises(BpfError, match="E2BIG"):
            m.update(None, u32(9))
        assert m.lookup(None) == u32(order[0])  # peek leaves it there
        assert [m.pop() for _i in range(3)] == [u32(i) for i in order]
        assert m.pop() is None
        with pytest.raises(BpfError, match="cannot be iterated"):
            list(m.items())


def test_percpu_values_have_an_eight_byte_stride_per_possible_cpu() -> None:
    with _bpf_map.map_create("percpu_array", "p", 4, 4, 2, label="p") as m:
        assert m.ncpus == _libbpf.num_possible_cpus()
        assert m.value_stride == 8 and m.value_bytes == 8 * m.ncpus
        value = b"".join(u32(c + 1) + b"\0" * 4 for c in range(m.ncpus))
        m.update(u32(1), value)
        assert m.lookup(u32(1)) == value


def test_lpm_trie_longest_prefix_lookup() -> None:
    with _bpf_map.map_create("lpm_trie", "l", 8, 4, 8, label="l", flags=_abi.MAP_FLAGS["no_prealloc"]) as m:
        m.update_many([(u32(8) + bytes([10, 0, 0, 0]), u32(8)), (u32(24) + bytes([10, 1, 2, 0]), u32(24))])
        assert m.lookup(u32(32) + bytes([10, 1, 2, 3])) == u32(24)
        assert m.lookup(u32(32) + bytes([10, 9, 9, 9])) == u32(8)
        assert m.lookup(u32(32) + bytes([11, 0, 0, 1])) is None


def test_map_in_map_holds_inner_maps_by_fd_and_reads_back_ids() -> None:
    inner = _bpf_map.map_create("array", "inner", 4, 8, 4, label="inner")
    with inner, _bpf_map.map_create("hash_of_maps", "outer", 4, 4, 4, label="outer", inner_map_fd=inner.fd) as outer:
        outer.update(u32(7), u32(inner.fd.fd))
        assert outer.lookup(u32(7)) == u32(inner.info["id"])


def test_pin_open_info_and_unpin(pin_dir: Path) -> None:
    pin_dir.mkdir()
    path = str(pin_dir / "m")
    with _bpf_map.map_create("hash", "pinned_map", 4, 4, 4, label=path) as m:
        m.pin(path)
        created_id = m.info["id"]
    with _bpf_map.map_open(path) as again:
        assert again.info["id"] == created_id
        assert again.info["name"] == "pinned_map"
        assert bpftool("map", "show", "id", str(created_id))["name"] == "pinned_map"
        assert created_id in set(_libbpf.map_ids())
        with _libbpf.map_fd_by_id(created_id) as by_id:
            assert _libbpf.map_info(by_id)["id"] == created_id
    _libbpf.unpin(path)
    with pytest.raises(BpfError) as err:
        _bpf_map.map_open(path)
    assert str(err.value).startswith(f"open {path}: ENOENT")


def test_fds_are_closed_deterministically() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _i in range(50):
        with _bpf_map.map_create("array", "t", 4, 4, 1, label="t") as m:
            m.update(u32(0), u32(1))
        writer = _btf_io.BtfWriter("t")
        writer.add_int("int", 4, signed=True)
        writer.load().close()
        writer.close()
    assert len(os.listdir("/proc/self/fd")) <= before + 1


def test_btf_writer_blob_loads_and_bpftool_reads_it() -> None:
    with _btf_io.BtfWriter("t") as w:
        u32_id = w.add_int("unsigned int", 4)
        sid = w.add_struct("pair", 8)
        w.add_field("a", u32_id, 0)
        w.add_field("b", u32_id, 32)
        fd = w.load()
    with fd:
        btf_id = _libbpf.btf_info(fd)["id"]
        dumped = bpftool("btf", "dump", "id", str(btf_id))
    assert sid == 2
    assert [t["name"] for t in dumped["types"]] == ["unsigned int", "pair"]


def test_create_errors_explain_the_refusal() -> None:
    with pytest.raises(BpfError) as err:
        _bpf_map.map_create("lpm_trie", "l", 8, 4, 8, label="/sys/fs/bpf/cnf/l")  # no no_prealloc
    assert err.value.op == "create" and err.value.errno == errno.EINVAL
    assert "type=lpm_trie" in str(err.value)


def test_program_pins_are_told_apart_and_described(pin_dir: Path, tmp_path: Path) -> None:
    obj = compile_bpf(Path(__file__).parent / "data" / "xdp_pass.c", tmp_path / "xdp_pass.o")
    pin_dir.mkdir()
    subprocess.run(["bpftool", "prog", "load", str(obj), str(pin_dir / "prog")], check=True)
    with _libbpf.obj_get(str(pin_dir / "prog")) as fd:
        assert _libbpf.obj_kind(fd) == "prog"
        info = _libbpf.prog_info(fd)
    shown = bpftool("prog", "show", "pinned", str(pin_dir / "prog"))
    assert info["type"] == "xdp" == shown["type"]
    assert info["id"] == shown["id"] and info["name"] == "xdp_pass"
    assert info["tag"] == shown["tag"]
    with pytest.raises(BpfError, match="is a prog, not a BPF map"):
        _bpf_map.map_open(str(pin_dir / "prog"))
