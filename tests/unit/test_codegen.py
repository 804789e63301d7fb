"""bpf_codegen's pure parts: schema validation with field paths, the C and Go text (stable, packed only where
asked, Go layouts that keep every C offset), schemas from object map records, and the command line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from ansible_collections.cnf.ebpf.plugins.module_utils.planning import _codegen, _codegen_go, _codegen_go_types
from ansible_collections.cnf.ebpf.plugins.module_utils.planning._map_plan import SpecError
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._codegen_module import cli_main
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _schema

CORPUS = Path(__file__).resolve().parents[1] / "data" / "codegen" / "corpus.yml"


def corpus() -> list[dict[str, Any]]:
    return yaml.safe_load(CORPUS.read_text())


def test_output_is_stable_and_packed_only_where_asked() -> None:
    header = _codegen.c_header(_codegen.maps_from_schemas(corpus()), "G")
    assert header == _codegen.c_header(_codegen.maps_from_schemas(corpus()), "G")
    go = _codegen_go.go_source(_codegen.maps_from_schemas(corpus()), "maps")
    assert go == _codegen_go.go_source(_codegen.maps_from_schemas(corpus()), "maps")
    packed = [line for line in header.splitlines() if "packed" in line]
    assert len(packed) == 3  # flow_key, recent_key, sample_event: the schemas that say packed: true
    assert "struct flow_key {" in header and "union addr_union {" in header
    assert "enum verdict : __u8 {" in header and "enum event_kind : __u16 {" in header
    assert "__uint(map_flags, BPF_F_NO_PREALLOC);" in header  # lpm tries get it as bpf_map gives it
    assert "__array(values, struct tenants_inner_map_def);" in header
    assert "__uint(value_size, sizeof(struct tenant_rule));" in header  # inner struct types go by size
    assert "static const struct event *__cnf_event_events CNF_TYPE_ANCHOR;" in header


def test_go_layout_keeps_every_c_offset() -> None:
    layout = _codegen_go.go_layout(_codegen.maps_from_schemas(corpus()))
    flow_key = layout["FlowKey"]
    assert flow_key["size"] == 13  # the classic bug: 13 bytes, not 16
    fields = {name: (f["offset"], f["kind"]) for name, f in flow_key["fields"].items()}
    # Be32 is a byte array (align 1) and stays a field; the u16 ports of a packed struct cannot be Go fields.
    assert fields == {
        "SrcIP": (0, "native"),
        "DstIP": (4, "native"),
        "srcPortRaw": (8, "raw"),
        "dstPortRaw": (10, "raw"),
        "Protocol": (12, "native"),
    }
    holey = {name: f["offset"] for name, f in layout["HoleyKey"]["fields"].items()}
    assert holey == {"A": 0, "B": 4, "C": 8, "D": 16} and layout["HoleyKey"]["size"] == 24
    bits = layout["BitValue"]["fields"]
    assert [(f["offset"], f["size"], f["kind"]) for f in bits.values()] == [
        (0, 1, "bits"),
        (1, 1, "bits"),
        (2, 2, "bits"),
        (4, 8, "embed"),
        (12, 1, "bits"),
    ]
    assert layout["AddrUnion"] == {
        "c": "addr_union",
        "size": 16,
        "fields": {"raw": {"offset": 0, "size": 16, "c": None, "kind": "raw"}},
    }


def test_go_source_has_the_api() -> None:
    go = _codegen_go.go_source(_codegen.maps_from_schemas(corpus()), "maps")
    for text in (
        "var _ [unsafe.Sizeof(FlowKey{}) - 13]byte",
        "func OpenFlows(path string) (*FlowsMap, error) {",
        "func (m *FlowsMap) BatchUpdate(keys []FlowKey, values []FlowStats, flags ebpf.MapUpdateFlags) (int, error) {",
        "func (m *CountersMap) LookupSum(key uint32) (Counter, error) {",
        "func SumCounters(values []Counter) Counter {",
        "func (m *TenantsMap) Lookup(key uint32) (*TenantsInnerMap, error) {",
        "func (m *WorkMap) Pop() (Job, error) {",
        "func (m *EventsMap) ReadEvents(ctx context.Context, fn func(ev Event) error) error {",
        "func (s *FlowKey) SrcPort() uint16 {",
        "func (s *FlowKey) SetSrcPort(v uint16) {",
        "func (s *BitValue) Delta() int32 {",
        "func (s *AddrUnion) Word() uint32 {",
    ):
        assert text in go, text
    assert "Delete" not in go.split("func (m *BitsMap)")[1].split("\n}\n")[0]  # arrays have no delete


@pytest.mark.parametrize(
    ("schemas", "message"),
    [
        ([], "maps: expected a non-empty list"),
        (
            [{"name": "m", "type": "hash", "key": "u33", "value": "u32", "max_entries": 1}],
            "maps[0].key: unknown type 'u33'",
        ),
        (
            [{"name": "m-1", "type": "hash", "key": "u32", "value": "u32", "max_entries": 1}],
            "maps[0].name: 'm-1' is not a C identifier",
        ),
        ([{"name": "m", "type": "hashy"}], "maps[0].type: 'hashy' is not one of"),
        (
            [{"name": "m", "type": "hash", "key": "u32", "value": "u32", "max_entries": 1, "colour": 1}],
            "maps[0]: unknown key(s) colour",
        ),
        ([{"name": "m", "type": "hash", "value": "u32", "max_entries": 1}], "maps[0].key: hash maps need a key type"),
        (
            [
                {
                    "name": "m",
                    "type": "array",
                    "value": {"fields": [{"name": "x", "type": "u8", "bits": 9}]},
                    "max_entries": 1,
                }
            ],
            "maps[0].value.fields[0].bits: 9 exceeds",
        ),
        (
            [{"name": "m", "type": "hash", "key": "u32", "value": "u32", "max_entries": 1, "event_type": "u32"}],
            "maps[0].event_type: only ringbuf",
        ),
        (
            [
                {
                    "name": "m",
                    "type": "hash_of_maps",
                    "key": "u32",
                    "max_entries": 1,
                    "inner_map": {"path": "/sys/fs/bpf/x"},
                }
            ],
            "maps[0].inner_map: code generation needs",
        ),
        (
            [
                {
                    "name": "m",
                    "type": "hash_of_maps",
                    "key": "u32",
                    "max_entries": 1,
                    "inner_map": {"type": "hash", "key": "u32", "value": "u9", "max_entries": 1},
                }
            ],
            "maps[0].inner_map.value: unknown type",
        ),
        (
            [{"name": "m", "type": "queue", "value": "u32", "max_entries": 1, "pinning": "always"}],
            "maps[0].pinning: 'always' is not one of",
        ),
        (
            [
                {"name": "m", "type": "stack", "value": "u32", "max_entries": 1},
                {"name": "m", "type": "stack", "value": "u32", "max_entries": 1},
            ],
            "maps[1].name: 'm' is already the name of maps[0]",
        ),
        (
            [
                {
                    "name": "a",
                    "type": "queue",
                    "value": {"name": "v", "fields": [{"name": "x", "type": "u8"}]},
                    "max_entries": 1,
                },
                {
                    "name": "b",
                    "type": "queue",
                    "value": {"name": "v", "fields": [{"name": "x", "type": "u16"}]},
                    "max_entries": 1,
                },
            ],
            "maps[1].value: struct v is defined differently at maps[0].value",
        ),
    ],
)
def test_bad_schemas_name_the_field(schemas: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        _codegen.maps_from_schemas(schemas)
    assert message in str(err.value)


def test_anonymous_types_get_names_in_c_and_go() -> None:
    maps = _codegen.maps_from_schemas(
        [
            {
                "name": "conf",
                "type": "array",
                "max_entries": 1,
                "value": {
                    "fields": [
                        {"name": "mode", "type": {"kind": "enum", "values": {"A": 1}}},
                        {"name": "pair", "type": {"fields": [{"name": "x", "type": "u8"}]}},
                    ]
                },
            }
        ]
    )
    header = _codegen.c_header(maps, "G")
    assert "enum conf_value_mode : __u32 {" in header and "struct conf_value_pair {" in header
    assert "struct conf_value {" in header and "__type(value, struct conf_value);" in header
    assert _codegen_go.go_type_names(maps) == {
        "conf_value": "ConfValue",
        "conf_value_mode": "ConfValueMode",
        "conf_value_pair": "ConfValuePair",
    }


def test_map_to_schema_round_trips() -> None:
    maps = _codegen.maps_from_schemas(corpus())
    again = _codegen.maps_from_schemas([_codegen.map_to_schema(m) for m in maps])
    assert _codegen.c_header(again, "G") == _codegen.c_header(maps, "G")


def test_schemas_from_object_map_records() -> None:
    key = _schema.type_from_schema(
        {"name": "k", "packed": True, "fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u32"}]}
    )
    records = [
        SimpleNamespace(
            name="flows",
            type="hash",
            key_type=key,
            value_type=_schema.type_from_schema("u64"),
            key_size=5,
            value_size=8,
            max_entries=16,
            flags=1,
            internal=False,
            inner=None,
            pin_path="/sys/fs/bpf/flows",
        ),
        SimpleNamespace(
            name="x.rodata",
            type="array",
            key_type=None,
            value_type=None,
            key_size=4,
            value_size=8,
            max_entries=1,
            flags=0,
            internal=True,
            inner=None,
            pin_path=None,
        ),
        SimpleNamespace(
            name="rb",
            type="ringbuf",
            key_type=None,
            value_type=None,
            key_size=0,
            value_size=0,
            max_entries=4096,
            flags=0,
            internal=False,
            inner=None,
            pin_path=None,
        ),
    ]
    schemas = _codegen.schemas_from_object_maps(records, "x.o")
    assert schemas == [
        {
            "name": "flows",
            "type": "hash",
            "key": {
                "name": "k",
                "kind": "struct",
                "packed": True,
                "fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u32"}],
            },
            "value": "u64",
            "max_entries": 16,
            "flags": ["no_prealloc"],
            "pinning": "by_name",
        },
        {"name": "rb", "type": "ringbuf", "max_entries": 4096},
    ]
    assert _codegen.maps_from_schemas(schemas)[0].key.size == 5  # type: ignore[union-attr]
    with pytest.raises(SpecError, match=r"names: nope not among the maps of x\.o"):
        _codegen.schemas_from_object_maps(records, "x.o", ["nope"])


def test_go_names() -> None:
    assert [_codegen_go_types.go_name(n) for n in ("flow_key", "src_ip", "_x", "ipv6_addr", "9lives")] == [
        "FlowKey",
        "SrcIP",
        "X",
        "IPV6Addr",
        "X9lives",
    ]


def test_cli_writes_checks_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "maps.yml"
    src.write_text(yaml.safe_dump({"maps": corpus()[:2]}))
    header, go = tmp_path / "maps.h", tmp_path / "flows" / "maps.go"
    args = ["--src", str(src), "--c-header", str(header), "--go", str(go)]
    assert cli_main([*args, "--check"]) == 1 and not header.exists()
    assert cli_main(args) == 0 and header.exists() and go.read_text().startswith("// Code generated")
    assert "package flows" in go.read_text()  # the directory names the package
    capsys.readouterr()
    assert cli_main([*args, "--check"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "changed": False,
        "files": {str(header): "unchanged", str(go): "unchanged"},
    }
    src.write_text(yaml.safe_dump([{"name": "bad", "type": "hash"}]))
    assert cli_main(args) == 2
    assert "src[0].key: hash maps need a key type" in capsys.readouterr().err


def test_command_line_wrapper(tmp_path: Path) -> None:
    """tools/cnf-ebpf-codegen: the same generator from a shell, without Ansible."""
    import subprocess

    script = Path(__file__).resolve().parents[2] / "tools" / "cnf-ebpf-codegen"
    header = tmp_path / "m.h"
    run = subprocess.run(
        [str(script), "--src", str(CORPUS), "--c-header", str(header)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["files"] == {str(header): "created"}
    assert header.read_text() == _codegen.c_header(_codegen.maps_from_schemas(corpus()), _codegen.header_guard("m.h"))
