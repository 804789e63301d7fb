"""Shared hypothesis strategies: random type schemas (for the codec properties and the clang layout oracle)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import strategies as st

INT_SCALARS = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "char", "__be16", "__be32", "__be64"]
WIDE_SCALARS = ["u128", "s128"]
SCALAR_BITS = {
    "u8": 8,
    "u16": 16,
    "u32": 32,
    "u64": 64,
    "s8": 8,
    "s16": 16,
    "s32": 32,
    "s64": 64,
    "char": 8,
    "__be16": 16,
    "__be32": 32,
    "__be64": 64,
    "bool": 1,
}


@st.composite
def _enum(draw: Any, clang_safe: bool) -> dict:
    size = draw(st.sampled_from([1, 2, 4, 8]))
    # clang 14 writes every enum as unsigned 32-bit BTF ENUM: keep the oracle's enums within that.
    signed = False if clang_safe else draw(st.booleans())
    lo = -100 if signed else 0
    values = draw(st.lists(st.integers(lo, 127), min_size=1, max_size=4, unique=True))
    return {"kind": "enum", "size": size, "signed": signed, "values": values}


@st.composite
def _field(draw: Any, depth: int, clang_safe: bool) -> dict:
    choices = ["scalar", "array", "enum"] + (["struct", "struct_array"] if depth > 0 else [])
    what = draw(st.sampled_from(choices))
    field: dict = {}
    if what == "scalar":
        name = draw(st.sampled_from(INT_SCALARS + WIDE_SCALARS + ["bool"]))
        field["type"] = name
        if name in SCALAR_BITS and draw(st.integers(0, 3)) == 0:
            field["bits"] = draw(st.integers(1, SCALAR_BITS[name]))
    elif what == "array":
        base = draw(st.sampled_from(INT_SCALARS + WIDE_SCALARS + ["bool"]))
        dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
        field["type"] = base + "".join(f"[{d}]" for d in dims)
    elif what == "enum":
        field["type"] = draw(_enum(clang_safe))
        if draw(st.integers(0, 3)) == 0:
            field["bits"] = draw(st.integers(8, field["type"]["size"] * 8))  # wide enough for values <= 127
    elif what == "struct":
        field["type"] = draw(_struct(depth - 1, clang_safe))
        if draw(st.integers(0, 2)) == 0:
            field["anonymous"] = True
    else:
        field["type"] = {"type": draw(_struct(depth - 1, clang_safe)), "count": draw(st.integers(1, 3))}
    if "bits" not in field and not field.get("anonymous") and draw(st.integers(0, 7)) == 0:
        field["align"] = draw(st.sampled_from([1, 2, 4, 8, 16]))
    return field


@st.composite
def _struct(draw: Any, depth: int, clang_safe: bool) -> dict:
    spec: dict = {"kind": draw(st.sampled_from(["struct", "struct", "union"]))}
    if draw(st.booleans()):
        spec["packed"] = True
    fields = draw(st.lists(_field(depth, clang_safe), min_size=1, max_size=5))
    if spec["kind"] == "struct" and draw(st.integers(0, 4)) == 0:
        # Unnamed padding: a zero-width bitfield or a few anonymous bits.
        pad_at = draw(st.integers(0, len(fields)))
        pad_type = draw(st.sampled_from(["u8", "u16", "u32", "u64"]))
        fields.insert(pad_at, {"type": pad_type, "bits": draw(st.integers(0, SCALAR_BITS[pad_type])), "pad": True})
    spec["fields"] = fields
    return spec


def finalize(spec: Any, counter: Any = None) -> Any:
    """Give every field, struct tag and enumerator a unique name (C needs them unique across the file)."""
    counter = counter if counter is not None else itertools.count()
    if isinstance(spec, str):
        return spec
    if spec.get("kind") == "enum":
        out = {k: v for k, v in spec.items() if k != "values"}
        out["name"] = f"e{next(counter)}"
        out["values"] = {f"E{next(counter)}": v for v in spec["values"]}
        return out
    if "count" in spec:
        return {"type": finalize(spec["type"], counter), "count": spec["count"]}
    out = {k: v for k, v in spec.items() if k != "fields"}
    out["name"] = f"s{next(counter)}"
    fields = []
    for f in spec["fields"]:
        nf = {k: v for k, v in f.items() if k not in ("anonymous", "pad")}
        nf["type"] = finalize(f["type"], counter)
        if not f.get("anonymous") and not f.get("pad"):
            nf["name"] = f"f{next(counter)}"
        fields.append(nf)
    out["fields"] = fields
    return out


def schema_strategy(clang_safe: bool = False, depth: int = 2) -> st.SearchStrategy:
    top = st.one_of(_struct(depth, clang_safe), _field(0, clang_safe).map(lambda f: f["type"]))
    return top.map(finalize)


@pytest.fixture(scope="session")
def schemas():
    """Factory for random schema strategies: ``schemas(clang_safe=False, depth=2)``."""
    return schema_strategy
