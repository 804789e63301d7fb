"""clang as the layout oracle: the C equivalent of a schema, compiled for BPF, must have the same BTF layout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf_parse import Btf
from ansible_collections.cnf.ebpf.plugins.module_utils.types._layout_compare import compare_layout
from ansible_collections.cnf.ebpf.plugins.module_utils.types._schema import type_from_schema
from tests.schemas import FLOW_KEY_HOST

CLANG = shutil.which("clang")
OBJCOPY = shutil.which("llvm-objcopy")
pytestmark = pytest.mark.skipif(
    not (CLANG and OBJCOPY), reason="clang and llvm-objcopy are needed for the layout oracle"
)

C_SCALARS = {
    "u8": "unsigned char",
    "u16": "unsigned short",
    "u32": "unsigned int",
    "u64": "unsigned long long",
    "u128": "unsigned __int128",
    "s8": "signed char",
    "s16": "short",
    "s32": "int",
    "s64": "long long",
    "s128": "__int128",
    "char": "char",
    "bool": "_Bool",
    "__be16": "__be16",
    "__be32": "__be32",
    "__be64": "__be64",
}
C_ENUM_BASE = {
    (1, False): "unsigned char",
    (2, False): "unsigned short",
    (4, False): "unsigned int",
    (8, False): "unsigned long long",
    (1, True): "signed char",
    (2, True): "short",
    (4, True): "int",
    (8, True): "long long",
}
PRELUDE = "typedef unsigned short __be16;\ntypedef unsigned int __be32;\ntypedef unsigned long long __be64;\n"


def c_decl(spec: Any, declarator: str) -> str:
    """C declaration of ``declarator`` with the schema's type (struct/enum definitions inline)."""
    if isinstance(spec, str):
        base, _sep, dims = spec.partition("[")
        return f"{C_SCALARS[base.strip()]} {declarator}{'[' + dims if dims else ''}"
    if "count" in spec:
        return c_decl(spec["type"], f"{declarator}[{spec['count']}]")
    if spec.get("kind") == "enum":
        base = C_ENUM_BASE[(spec.get("size", 4), spec.get("signed", False))]
        values = (
            spec["values"].items()
            if isinstance(spec["values"], dict)
            else [(v["name"], v["value"]) for v in spec["values"]]
        )
        body = ", ".join(f"{n} = {v}" for n, v in values)
        return f"enum {spec.get('name', '')} : {base} {{ {body} }} {declarator}"
    fields = []
    for f in spec["fields"]:
        ftype = f["type"]
        if not f.get("name") and isinstance(ftype, dict) and "fields" in ftype:
            ftype = dict(ftype, name="")  # C11 anonymous members have no tag
        decl = c_decl(ftype, f.get("name", ""))
        if "bits" in f:
            decl += f" : {f['bits']}"
        if "align" in f:
            decl += f" __attribute__((aligned({f['align']})))"
        fields.append(f"    {decl};")
    attr = " __attribute__((packed))" if spec.get("packed") else ""
    body = "\n".join(fields)
    return f"{spec.get('kind', 'struct')}{attr} {spec.get('name', '')} {{\n{body}\n}} {declarator}"


def prefixed(spec: Any, prefix: str) -> Any:
    """The schema with struct/enum tags and enumerators prefixed, so several fit in one C file."""
    if isinstance(spec, str):
        return spec
    out = dict(spec)
    if (out.get("name") and "fields" in out) or out.get("kind") == "enum":
        out["name"] = prefix + out.get("name", "") if out.get("name") else ""
    if out.get("kind") == "enum":
        out["values"] = {prefix + n: v for n, v in spec["values"].items()}
    if "count" in out:
        out["type"] = prefixed(spec["type"], prefix)
    if "fields" in out:
        out["fields"] = [dict(f, type=prefixed(f["type"], prefix)) for f in spec["fields"]]
    return out


def clang_types(specs: list[Any], tmp: Path) -> list[Any]:
    """Compile one global per schema and return their BTF types, in order."""
    src = PRELUDE + "".join(f"{c_decl(prefixed(spec, f'p{i}_'), f'v{i}')};\n" for i, spec in enumerate(specs))
    c_file, obj, btf_file = tmp / "types.c", tmp / "types.o", tmp / "types.btf"
    c_file.write_text(src)
    proc = subprocess.run(
        [CLANG, "-target", "bpf", "-g", "-O2", "-Wno-everything", "-c", str(c_file), "-o", str(obj)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + "\n" + src
    subprocess.run([OBJCOPY, "--dump-section", f".BTF={btf_file}", str(obj)], check=True)
    btf = Btf.from_raw(btf_file.read_bytes())
    out = []
    for i in range(len(specs)):
        var = btf.find(f"v{i}", "var")
        assert var is not None, src
        out.append(var.type)
    return out


def assert_same_layout(specs: list[Any], tmp: Path) -> None:
    for i, (spec, clang_t) in enumerate(zip(specs, clang_types(specs, tmp))):
        ours = type_from_schema(prefixed(spec, f"p{i}_"))
        assert clang_t.size == ours.size, spec
        assert compare_layout(clang_t, ours) == [], spec


FIXED = [
    FLOW_KEY_HOST,
    {
        "name": "bits",
        "fields": [
            {"name": "a", "type": "u32", "bits": 3},
            {"name": "b", "type": "u64", "bits": 40},
            {"name": "c", "type": "u8", "bits": 7},
            {"name": "d", "type": "u16", "bits": 10},
            {"name": "f", "type": "bool", "bits": 1},
            {"name": "e", "type": "s8", "bits": 4},
        ],
    },
    {
        "name": "pbits",
        "packed": True,
        "fields": [
            {"name": "a", "type": "char"},
            {"name": "b", "type": "u32", "bits": 3},
            {"name": "c", "type": "u32", "bits": 30},
        ],
    },
    {
        "name": "zw",
        "fields": [
            {"name": "a", "type": "char"},
            {"type": "u32", "bits": 0},
            {"name": "b", "type": "char"},
            {"type": "u64", "bits": 3},
            {"name": "c", "type": "char"},
        ],
    },
    {
        "name": "anon",
        "fields": [
            {"name": "x", "type": "s32"},
            {
                "type": {
                    "kind": "union",
                    "fields": [
                        {"name": "a", "type": "s32"},
                        {"name": "b", "type": "char[8]"},
                        {"type": {"fields": [{"name": "lo", "type": "u16"}, {"name": "hi", "type": "u16"}]}},
                    ],
                }
            },
            {
                "name": "u",
                "type": {
                    "kind": "union",
                    "fields": [{"name": "p", "type": "u8", "bits": 3}, {"name": "q", "type": "u64"}],
                },
            },
        ],
    },
    {
        "name": "wide",
        "fields": [
            {"name": "a", "type": "u8"},
            {"name": "b", "type": "u128"},
            {"name": "c", "type": "s128"},
            {"name": "d", "type": "u8"},
        ],
    },
    {
        "name": "enums",
        "fields": [
            {"name": "e1", "type": {"kind": "enum", "name": "en1", "size": 1, "values": {"A1": 1}}},
            {"name": "e2", "type": {"kind": "enum", "name": "en2", "size": 2, "values": {"A2": 2}}},
            {"name": "e8", "type": {"kind": "enum", "name": "en8", "size": 8, "values": {"A8": 3, "B8": 4}}},
            {"name": "e4", "type": {"kind": "enum", "name": "en4", "values": {"A4": 5}}, "bits": 5},
        ],
    },
    {
        "name": "strs",
        "fields": [
            {"name": "comm", "type": "char[16]"},
            {"name": "m", "type": "u32[2][3]"},
            {"name": "port", "type": "__be16"},
            {"name": "names", "type": "char[2][5]"},
        ],
    },
    {
        "name": "aligned",
        "fields": [
            {"name": "a", "type": "char"},
            {"name": "b", "type": "s32", "align": 16},
            {"name": "c", "type": "char"},
        ],
    },
    {
        "name": "aligned_packed",
        "packed": True,
        "fields": [{"name": "a", "type": "char"}, {"name": "b", "type": "s32", "align": 8}],
    },
    {
        "name": "nested",
        "fields": [
            {
                "name": "hdr",
                "type": {
                    "name": "hdr",
                    "packed": True,
                    "fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u32"}],
                },
            },
            {"name": "tail", "type": "u64"},
            {
                "name": "arr",
                "type": {
                    "type": {"name": "pair", "fields": [{"name": "k", "type": "u16"}, {"name": "v", "type": "u8"}]},
                    "count": 3,
                },
            },
        ],
    },
    "u128",
    "char[16]",
    "u32[2][3]",
]


def test_fixed_schemas_match_clang(tmp_path):
    assert_same_layout(FIXED, tmp_path)


def test_random_schemas_match_clang(schemas, tmp_path_factory):
    # Batches of random schemas per clang run keep this affordable while covering many shapes.
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(specs=st.lists(schemas(clang_safe=True), min_size=1, max_size=4))
    def check(specs):
        assert_same_layout(specs, tmp_path_factory.mktemp("c"))

    check()
