"""cnf.ebpf.bpf_codegen end to end: the corpus of map schemas (every map type, awkward layouts) becomes a header that
clang compiles into an object whose BTF has exactly the schema's layout and whose program loads; and Go bindings
that Debian's Go and cilium/ebpf build offline, whose structs have the BTF's sizes and offsets, which read the
maps bpf_map_entries populated and print exactly what `gathered` returns, write entries `gathered` reads back,
and decode ring buffer and perf events."""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import obj_get
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf_obj import prog_test_run
from ansible_collections.cnf.ebpf.plugins.module_utils.planning import _codegen, _codegen_go, _codegen_go_types
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._objects import inspect_object
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf, _btf_parse, _layout_compare

from .conftest import compile_bpf, run_module

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "codegen" / "corpus.yml"
PROG = Path(__file__).parent / "data" / "codegen_prog.c"
GO_PATHS = "/usr/share/gocode"
# Maps whose whole contents the Go side dumps and copies (queue, stack, events and maps of maps have their own tests).
DUMPED = ["flows", "holes", "bits", "counters", "conns", "recent", "prefixes", "prefixes6", "config"]
BATCHED = {"flows", "holes", "bits", "config"}  # hash, lru_hash and array maps: copied half by BatchUpdate
PERCPU = {"counters", "conns", "recent"}

ENTRIES: dict[str, list[dict[str, Any]]] = {
    "flows": [
        {
            "key": {"src_ip": 0x0A000001, "dst_ip": 0x0A000002, "src_port": 40000, "dst_port": 443, "protocol": 6},
            "value": {"packets": 10, "bytes": 1500, "first_seen": 1, "last_seen": 2},
        },
        {
            "key": {"src_ip": 0xC0A80001, "dst_ip": 0x08080808, "src_port": 53000, "dst_port": 53, "protocol": 17},
            "value": {"packets": 1, "bytes": 80, "first_seen": 3, "last_seen": 3},
        },
    ],
    "holes": [
        {
            "key": {"a": 1, "b": 2, "c": 3, "d": 4},
            "value": {
                "kind": "VERDICT_DROP",
                "inner": {"x": 5, "y": -6},
                "history": [{"t": 1, "v": -1}, {"t": 2, "v": 2}, {"t": 3, "v": -3}],
                "label": "abc",
                "addr": {"word": 0x01020304},
                "big": 2**100 + 7,
                "ratio": 1.5,
                "ok": True,
            },
        },
        {"key": {"a": 255, "b": 0, "c": 0, "d": 2**64 - 1}, "value": {"kind": 7, "label": "", "ratio": -0.25}},
    ],
    "bits": [
        {"key": 0, "value": {"version": 4, "ihl": 5, "flags": 2, "offset": 1000, "lo": 7, "hi": 8, "delta": -3}},
        {
            "key": 2,
            "value": {"version": 15, "ihl": 0, "flags": 7, "offset": 8191, "lo": 0, "hi": 2**32 - 1, "delta": 63},
        },
    ],
    "counters": [{"key": 1, "value": {"packets": 3, "bytes": 300, "state": 2}}],
    "conns": [{"key": 5, "value": 9}, {"key": 6, "value": 2**40}],
    "recent": [{"key": {"port": 53, "proto": 17}, "value": {"hits": 1, "last": 2}}],
    "prefixes": [
        {"key": "10.0.0.0/8", "value": {"action": 1, "ifindex": 2}},
        {"key": "192.168.1.0/24", "value": {"action": 3, "ifindex": 4}},
    ],
    "prefixes6": [{"key": "fd00::/8", "value": 3}, {"key": "2001:db8::/32", "value": 4}],
    "config": [{"key": 0, "value": {"enabled": 1, "mode": "MODE_AUTO", "mac": [2, 0, 0, 0, 0, 1], "port": 8080}}],
}


def go_env(gopath: Path) -> dict[str, str]:
    return dict(
        os.environ,
        GOPATH=f"{gopath}:{GO_PATHS}",
        GO111MODULE="off",
        GOFLAGS="",
        GOCACHE=str(gopath / ".cache"),
        CGO_ENABLED="0",
    )


def harness_source(layout: dict[str, Any]) -> str:
    """A Go program over the generated package: `layout`, `dump DIR`, `copy SRC DST`, `queue DIR`, `events DIR`."""
    types = ", ".join(f'"{name}": gen.{name}{{}}' for name in layout)
    dump = []
    copy = []
    for name in DUMPED:
        go = _codegen_go_types.go_name(name)
        dump.append(
            f'\t{{\n\t\tm, err := gen.Open{go}(dir + "/{name}")\n\t\tmust(err)\n\t\tes, err := m.Entries()\n'
            f'\t\tmust(err)\n\t\tout["{name}"] = es\n\t\tm.Close()\n\t}}'
        )
        if name in BATCHED:
            body = (
                "\t\thalf := len(es) / 2\n\t\tfor _, e := range es[:half] {\n"
                "\t\t\tmust(d.Update(e.Key, e.Value, ebpf.UpdateAny))\n\t\t}\n"
                f"\t\tvar keys []{_key_type(name)}\n\t\tvar values []{_value_type(name)}\n"
                "\t\tfor _, e := range es[half:] {\n\t\t\tkeys = append(keys, e.Key)\n"
                "\t\t\tvalues = append(values, e.Value)\n\t\t}\n"
                "\t\tn, err := d.BatchUpdate(keys, values, ebpf.UpdateAny)\n\t\tmust(err)\n"
                '\t\tif n != len(keys) {\n\t\t\tmust(fmt.Errorf("batch wrote %d of %d", n, len(keys)))\n\t\t}'
            )
        else:
            body = "\t\tfor _, e := range es {\n\t\t\tmust(d.Update(e.Key, e.Value, ebpf.UpdateAny))\n\t\t}"
        copy.append(
            f'\t{{\n\t\ts, err := gen.Open{go}(src + "/{name}")\n\t\tmust(err)\n'
            f'\t\td, err := gen.Open{go}(dst + "/{name}")\n\t\tmust(err)\n\t\tes, err := s.Entries()\n'
            f"\t\tmust(err)\n{body}\n\t}}"
        )
    return string.Template(HARNESS.read_text()).substitute(types=types, dump="\n".join(dump), copy="\n".join(copy))


_TYPES: dict[str, tuple[str, str]] = {}


def _key_type(name: str) -> str:
    return _TYPES[name][0]


def _value_type(name: str) -> str:
    return _TYPES[name][1]


HARNESS = Path(__file__).parent / "data" / "codegen_harness.go.in"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The corpus generated once through the module: header, Go package, schemas file and a built harness."""
    if shutil.which("go") is None or not Path(GO_PATHS, "src/github.com/cilium/ebpf").is_dir():
        pytest.fail("Go and golang-github-cilium-ebpf-dev are needed (make deps installs them)")
    base = tmp_path_factory.mktemp("codegen")
    gopath = base / "gopath"
    pkg = gopath / "src" / "cnfgen" / "maps"
    schemas = yaml.safe_load(CORPUS.read_text())
    params = {
        "maps": schemas,
        "c_header": str(base / "include" / "maps.h"),
        "go": str(pkg / "maps.go"),
        "schemas": str(base / "maps.yml"),
    }
    first = run_module("bpf_codegen", params)
    assert first["changed"] is True, first
    maps = _codegen.maps_from_schemas(schemas)
    layout = _codegen_go.go_layout(maps)
    names = _codegen_go.go_type_names(maps)
    for m in maps:
        if m.key is not None and m.value is not None:
            k, v = _btf.resolve(m.key), _btf.resolve(m.value)
            _TYPES[m.name] = (
                _go_expr(names, k),
                _go_expr(names, v),
            )
    harness = gopath / "src" / "cnfgen" / "harness"
    harness.mkdir(parents=True)
    (harness / "main.go").write_text(harness_source(layout))
    build = subprocess.run(
        ["go", "build", "-o", str(base / "harness"), "cnfgen/harness"],
        env=go_env(gopath),
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    return {"base": base, "gopath": gopath, "pkg": pkg, "params": params, "maps": maps, "layout": layout}


def _go_expr(names: dict[str, str], t: _btf.BtfType) -> str:
    if getattr(t, "name", "") in names:
        return f"gen.{names[t.name]}"
    assert isinstance(t, _btf.Int)
    return f"{'int' if t.signed else 'uint'}{t.size * 8}"


def harness(generated: dict[str, Any], *args: str) -> Any:
    proc = subprocess.run(
        [str(generated["base"] / "harness"), *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture
def deployed(generated: dict[str, Any], tmp_path: Path) -> Any:
    """codegen_prog.c built on the generated header and loaded by bpf_program: every corpus map, pinned."""
    app = {
        "name": f"cg{uuid.uuid4().hex[:8]}",
        "src": str(PROG),
        "include_dirs": [str(generated["base"] / "include")],
        "state_dir": str(tmp_path / "state"),
    }
    result = run_module("bpf_program", app)
    assert result.get("failed") is not True, result.get("msg")
    yield {"app": app, "maps": Path("/sys/fs/bpf/cnf") / app["name"] / "maps", "result": result}
    run_module("bpf_program", dict(app, state="absent"))


def gathered(path: Path, **args: Any) -> list[dict[str, Any]]:
    result = run_module("bpf_map_entries", dict(args, path=str(path), state="gathered"))
    assert result.get("failed") is not True, result.get("msg")
    return result["entries"]


def by_key(entries: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return sorted(entries or [], key=lambda e: json.dumps(e["key"], sort_keys=True))


# ----------------------------------------------------------------------------------------------------------------


def test_files_are_formatted_stable_and_idempotent(generated: dict[str, Any]) -> None:
    params = generated["params"]
    header = Path(params["c_header"]).read_text()
    formatted = subprocess.run(
        ["clang-format", f"--style={_codegen.CLANG_FORMAT_STYLE}", "--assume-filename=maps.h"],
        input=header,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert formatted == header
    gofmt = subprocess.run(["gofmt", "-l", str(generated["pkg"])], capture_output=True, text=True, check=True)
    assert gofmt.stdout == "", gofmt.stdout
    stats = {p: os.stat(params[p]).st_mtime_ns for p in ("c_header", "go", "schemas")}
    again = run_module("bpf_codegen", params)
    assert again["changed"] is False and set(again["files"].values()) == {"unchanged"}
    assert {p: os.stat(params[p]).st_mtime_ns for p in stats} == stats

    # A schema change: check mode reports it with a diff and writes nothing; the real run rewrites the files.
    changed = yaml.safe_load(CORPUS.read_text())
    changed[0]["max_entries"] = 2048
    check = run_module("bpf_codegen", dict(params, maps=changed), check=True, diff=True)
    assert check["changed"] is True and check["files"][params["c_header"]] == "updated"
    assert any("__uint(max_entries, 2048);" in d["after"] for d in check["diff"])
    assert Path(params["c_header"]).read_text() == header


def test_header_compiles_to_the_schema_layout_and_every_map_loads(
    generated: dict[str, Any], deployed: dict[str, Any], tmp_path: Path
) -> None:
    obj = tmp_path / "codegen.o"
    src = tmp_path / "codegen.c"
    src.write_text(PROG.read_text())
    shutil.copy(generated["base"] / "include" / "maps.h", tmp_path / "maps.h")
    spec = inspect_object(str(compile_bpf(src, obj)))
    in_object = {m.name: m for m in spec.maps}
    btf = _btf_parse.Btf.from_raw(spec.btf_raw or b"")
    for m in generated["maps"]:
        got = in_object[m.name]
        assert got.type == m.type, m.name
        assert (got.key_size, got.value_size) == (m.key_size, m.value_size), m.name
        if m.max_entries is not None:
            assert got.max_entries == m.max_entries, m.name
        assert sorted(_codegen.flag_names(got.flags)) == sorted(m.flags), m.name
        for side, want, have in (("key", m.key, got.key_type), ("value", m.value, got.value_type)):
            # libbpf keeps no BTF for maps the kernel takes none for (maps of maps, queues, events)
            if want is not None and m.type not in _codegen.NO_BTF_TYPES:
                assert have is not None, f"{m.name}.{side} has no BTF"
                assert _layout_compare.compare_layout(have, want, side) == [], m.name
        if m.event is not None:
            have_event = btf.find(m.event.name, "struct")
            assert have_event is not None
            assert _layout_compare.compare_layout(have_event, m.event, "event_type") == []
        if m.inner is not None:
            assert got.inner is not None and got.inner.type == m.inner.type
            assert (got.inner.key_size, got.inner.value_size) == (m.inner.key_size, m.inner.value_size)
    # The program using every map was loaded by bpf_program, every map pinned.
    pinned = {p.name for p in deployed["maps"].iterdir()}
    assert {m.name for m in generated["maps"]} <= pinned


def test_schemas_read_back_from_the_object(generated: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "codegen.c"
    src.write_text(PROG.read_text())
    shutil.copy(generated["base"] / "include" / "maps.h", tmp_path / "maps.h")
    obj = compile_bpf(src, tmp_path / "codegen.o")
    result = run_module(
        "bpf_codegen", {"object": str(obj), "schemas": str(tmp_path / "back.yml"), "c_header": str(tmp_path / "b.h")}
    )
    assert result["changed"] is True, result
    back = {m.name: m for m in _codegen.maps_from_schemas(yaml.safe_load((tmp_path / "back.yml").read_text()))}
    for m in generated["maps"]:
        r = back[m.name]
        assert (r.type, r.key_size, r.value_size, r.max_entries) == (m.type, m.key_size, m.value_size, m.max_entries)
        for want, have in ((m.key, r.key), (m.value, r.value)):
            if want is not None and m.type not in _codegen.NO_BTF_TYPES:
                assert have is not None and _layout_compare.compare_layout(have, want) == [], m.name
        if m.inner is not None:
            assert r.inner is not None and (r.inner.type, r.inner.value_size) == (m.inner.type, m.inner.value_size)
            if m.inner.value is not None:
                assert (
                    r.inner.value is not None and _layout_compare.compare_layout(r.inner.value, m.inner.value) == []
                ), m.name
        if m.event is not None:  # from the anchor the header leaves in the object
            assert r.event is not None and _layout_compare.compare_layout(r.event, m.event) == [], m.name
    picked = run_module("bpf_codegen", {"object": str(obj), "names": ["flows"], "schemas": str(tmp_path / "f.yml")})
    assert [s["name"] for s in picked["maps"]] == ["flows"]
    missing = run_module("bpf_codegen", {"object": str(obj), "names": ["nope"], "schemas": str(tmp_path / "n.yml")})
    assert missing["failed"] is True and "nope" in missing["msg"] and not (tmp_path / "n.yml").exists()


def test_go_structs_have_the_btf_layout(generated: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "codegen.c"
    src.write_text(PROG.read_text())
    shutil.copy(generated["base"] / "include" / "maps.h", tmp_path / "maps.h")
    btf = _btf_parse.Btf.from_raw(inspect_object(str(compile_bpf(src, tmp_path / "o.o"))).btf_raw or b"")
    go = harness(generated, "layout")
    layout = generated["layout"]
    assert set(go) == set(layout)
    checked = 0
    for go_name, want in layout.items():
        assert go[go_name]["size"] == want["size"], go_name
        assert go[go_name]["fields"] == {f: v["offset"] for f, v in want["fields"].items()}, go_name
        if not want["c"]:
            continue  # anonymous member types: checked through their parent's offsets
        c = btf.find(want["c"], "union") or btf.find(want["c"], "struct")
        assert isinstance(c, _btf.Struct) and c.size == want["size"], go_name
        members = {m.name: m for m in c.members if m.name}
        for field in want["fields"].values():
            if field["c"] and field["kind"] in ("native", "raw"):
                assert members[field["c"]].offset == field["offset"], (go_name, field)
                checked += 1
    assert checked > 40


def test_go_reads_what_gathered_returns_and_writes_what_gathered_reads(
    generated: dict[str, Any], deployed: dict[str, Any], pin_dir: Path
) -> None:
    maps_dir = deployed["maps"]
    for name, entries in ENTRIES.items():
        result = run_module("bpf_map_entries", {"path": str(maps_dir / name), "entries": entries})
        assert result.get("changed") is True, (name, result.get("msg"))
    want = {name: gathered(maps_dir / name) for name in DUMPED}
    assert all(want[name] for name in DUMPED)
    got = harness(generated, "dump", str(maps_dir))
    for name in DUMPED:
        assert by_key(got[name]) == by_key(want[name]), name

    # Copies made by bpf_map from the same schemas, written by the Go side (Update and BatchUpdate).
    schemas = {s["name"]: s for s in yaml.safe_load(CORPUS.read_text())}
    pin_dir.mkdir()
    for name in DUMPED:
        decl = {k: v for k, v in schemas[name].items() if k != "name"}
        created = run_module("bpf_map", dict(decl, path=str(pin_dir / name)))
        assert created.get("failed") is not True and created["changed"] is True, created.get("msg")
    subprocess.run([str(generated["base"] / "harness"), "copy", str(maps_dir), str(pin_dir)], check=True, timeout=60)
    for name in DUMPED:
        assert by_key(gathered(pin_dir / name)) == by_key(want[name]), name


def test_go_queue_and_stack(generated: dict[str, Any], deployed: dict[str, Any]) -> None:
    maps_dir = deployed["maps"]
    # The kernel keeps no BTF for queues and stacks: bpf_map_entries takes the schema's type.
    job = {s["name"]: s for s in yaml.safe_load(CORPUS.read_text())}["work"]["value"]
    peeked = harness(generated, "queue", str(maps_dir))
    assert peeked == {"work_peek": {"id": 1, "weight": 10}, "undo_peek": 200}
    want = [{"value": {"id": 1, "weight": 10}}, {"value": {"id": 2, "weight": 20}}]
    assert gathered(maps_dir / "work", value_type=job) == want
    assert gathered(maps_dir / "undo", value_type="u64") == [{"value": 200}, {"value": 100}]
    assert harness(generated, "pop", str(maps_dir)) == {"work": {"id": 1, "weight": 10}, "undo": 200}
    assert gathered(maps_dir / "work", value_type=job) == want[1:]


def test_go_map_of_maps(generated: dict[str, Any], deployed: dict[str, Any], pin_dir: Path) -> None:
    """The Go side stores an inner map (made by bpf_map from the schema's inner_map) and reads it back typed."""
    inner_decl = {s["name"]: s for s in yaml.safe_load(CORPUS.read_text())}["tenants"]["inner_map"]
    pin_dir.mkdir()
    inner = pin_dir / "tenant7"
    assert run_module("bpf_map", dict(inner_decl, path=str(inner))).get("failed") is not True
    rules = [{"key": 1, "value": {"allow": 1, "rate": 100}}, {"key": 2, "value": {"allow": 0, "rate": 0}}]
    assert run_module("bpf_map_entries", {"path": str(inner), "entries": rules})["changed"] is True
    got = harness(generated, "tenants", str(deployed["maps"]), str(inner))
    assert by_key(got["inner"]) == by_key(gathered(inner)) == by_key(rules)
    outer = gathered(deployed["maps"] / "tenants")
    assert outer == [{"key": 7, "value": got["ids"]["7"], "inner_map_id": got["ids"]["7"]}]


def test_go_reads_ring_buffer_and_perf_events(generated: dict[str, Any], deployed: dict[str, Any]) -> None:
    maps_dir = deployed["maps"]
    reader = subprocess.Popen(
        [str(generated["base"] / "harness"), "events", str(maps_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        prog = obj_get(str(Path("/sys/fs/bpf/cnf") / deployed["app"]["name"] / "progs" / "codegen_all"))
        packet = bytes(64)
        for _i in range(3):
            assert prog_test_run(prog, packet)[0] == 2  # XDP_PASS
        out, err = reader.communicate(timeout=40)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert reader.returncode == 0, err
    events = json.loads(out.splitlines()[-1])
    assert len(events["ringbuf"]) == 3 and events["lost"] == 0
    for ev in events["ringbuf"]:
        assert ev["pid"] == 42 and ev["comm"] == "codegen" and ev["kind"] == "EVENT_CLOSE" and ev["ts"] > 0
    assert events["perf"] == [{"cpu": 7, "value": -5}] * 3


def test_bad_schemas_name_the_field_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "x.h"
    cases = [
        ([{"name": "m", "type": "hash", "key": "u33", "value": "u32", "max_entries": 4}], "maps[0].key: unknown type"),
        ([{"name": "9m", "type": "hash", "key": "u32", "value": "u32", "max_entries": 4}], "maps[0].name"),
        ([{"name": "m", "type": "ringbuf", "max_entries": 1000}], "maps[0].max_entries: a ringbuf size"),
        (
            [
                {
                    "name": "a",
                    "type": "hash",
                    "key": "u32",
                    "value": {"name": "v", "fields": [{"name": "x", "type": "u8"}]},
                    "max_entries": 1,
                },
                {
                    "name": "b",
                    "type": "hash",
                    "key": "u32",
                    "value": {"name": "v", "fields": [{"name": "x", "type": "u16"}]},
                    "max_entries": 1,
                },
            ],
            "struct v is defined differently",
        ),
        (
            [{"name": "m", "type": "hash", "key": "u32", "value": "u32", "max_entries": 4, "event_type": "u32"}],
            "maps[0].event_type",
        ),
    ]
    for maps, message in cases:
        result = run_module("bpf_codegen", {"maps": maps, "c_header": str(out)})
        assert result.get("failed") is True and message in result["msg"], (message, result.get("msg"))
        assert not out.exists()
