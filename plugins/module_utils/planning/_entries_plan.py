# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Map contents: from (declared entries, current entries) to the writes and deletes that make the
map hold what was declared, for the resource-module states merged / replaced / overridden / deleted.

Pure: keys and values are bytes, decoding/encoding goes through the `ValueOps` the caller passes in. Check mode, diff
mode and the real run share one plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress, filterfalse, repeat
from operator import ne
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf

STATES = ("merged", "replaced", "overridden", "deleted", "gathered")


class Declared:
    """The declared entries as columns: encoded keys, encoded values (fields not given are zero) and the values as
    given, where position i is entries[i] of the input. Millions of entries cost three lists, not an object each;
    `values` and `given` are None for state=deleted."""

    __slots__ = ("given", "keys", "values")

    def __init__(self, keys: list[bytes], values: list[bytes] | None = None, given: list[Any] | None = None) -> None:
        self.keys = keys
        self.values = values
        self.given = given

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class ValueOps:
    """What the planner needs to know about values: how to decode them (for comparisons that ignore padding), their
    type (to know which bytes a partial struct value covers) and, for per-CPU maps, the number of CPUs and the
    stride of each CPU's copy."""

    decode: Callable[[bytes], Any]
    value_type: _btf.BtfType | None = None
    ncpus: int = 0
    stride: int = 0


@dataclass
class Change:
    key: bytes
    before: bytes | None
    after: bytes | None


@dataclass
class EntriesPlan:
    upserts: list[tuple[bytes, bytes]] = field(default_factory=list)
    deletes: list[bytes] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.upserts or self.deletes)

    def counts(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed, "unchanged": self.unchanged}


class PlanError(ValueError):
    """A declaration that cannot be planned (e.g. the same key twice); the message names the entry."""


def _locate(t: _btf.Struct, name: str, base: int = 0) -> tuple[_btf.Member, int, tuple[int, int] | None] | None:
    """The member called `name` (looking through anonymous members, as C does) with its absolute bit offset, and
    the bit range of the outermost anonymous union on the way, if any: writing one member of a union replaces the
    whole union."""
    for member in t.members:
        offset = base + member.bit_offset
        if member.name == name:
            return member, offset, None
        inner = _btf.resolve(member.type)
        if not member.name and isinstance(inner, _btf.Struct):
            found = _locate(inner, name, offset)
            if found is not None:
                union_range = (offset, inner.size * 8) if inner.is_union else found[2]
                return found[0], found[1], union_range
    return None


def given_bit_ranges(t: _btf.BtfType, given: Any, base: int = 0) -> list[tuple[int, int]]:
    """The (bit offset, bit count) ranges of a value that the fields in `given` cover.

    A dict given for a struct covers only its fields (recursively); anything else covers the whole value."""
    r = _btf.resolve(t)
    if not isinstance(r, _btf.Struct) or r.is_union or not isinstance(given, dict):
        return [(base, r.size * 8)]
    ranges: list[tuple[int, int]] = []
    for name, value in given.items():
        found = _locate(r, name, base)
        if found is None:
            continue  # unknown field: the encoder has refused it already
        member, offset, union_range = found
        if union_range is not None:
            ranges.append(union_range)
        elif member.bitfield_size:
            ranges.append((offset, member.bitfield_size))
        else:
            ranges.extend(given_bit_ranges(member.type, value, offset))
    return ranges


def overlay(current: bytes, given: bytes, ranges: list[tuple[int, int]], base: int = 0) -> bytes:
    """`current` with the bit ranges (relative to byte offset `base`) copied from `given`."""
    out = bytearray(current)
    for start, nbits in ranges:
        if start % 8 == 0 and nbits % 8 == 0:
            lo, hi = base + start // 8, base + (start + nbits) // 8
            out[lo:hi] = given[lo:hi]
            continue
        # A bitfield: splice the bits within the bytes that hold them (little-endian bit numbering, as BTF on x86).
        lo, hi = base + start // 8, base + (start + nbits + 7) // 8
        shift = start % 8
        mask = ((1 << nbits) - 1) << shift
        cur = int.from_bytes(out[lo:hi], "little")
        new = int.from_bytes(given[lo:hi], "little")
        out[lo:hi] = ((cur & ~mask) | (new & mask)).to_bytes(hi - lo, "little")
    return bytes(out)


def merge_bytes(ops: ValueOps, current: bytes, given_obj: Any, given: bytes) -> bytes:
    """state=merged: the fields the user gave, laid over the current value; everything else (other fields, union
    members, padding) keeps its current bytes. Per-CPU values merge CPU by CPU."""
    if ops.value_type is None:  # untyped (hex) values and inner maps are replaced whole
        return given
    if not ops.ncpus:
        return overlay(current, given, given_bit_ranges(ops.value_type, given_obj))
    if isinstance(given_obj, dict) and "per_cpu" in given_obj and set(given_obj) <= {"per_cpu", "sum"}:
        per_cpu = list(given_obj["per_cpu"])
    elif isinstance(given_obj, list) and not isinstance(_btf.resolve(ops.value_type), _btf.Array):
        per_cpu = given_obj
    else:
        per_cpu = [given_obj] * ops.ncpus
    out = current
    for cpu, obj in enumerate(per_cpu):
        out = overlay(out, given, given_bit_ranges(ops.value_type, obj), base=cpu * ops.stride)
    return out


def _same(ops: ValueOps, have: bytes, want: bytes) -> bool:
    # Bytes first (the common, cheap case); then decoded, so garbage in padding written by a program is not a change.
    return have == want or ops.decode(have) == ops.decode(want)


def _declared_keys(keys: list[bytes]) -> set[bytes]:
    """The set of declared keys, refusing a key declared twice (the second would silently win otherwise)."""
    keyset = set(keys)
    if len(keyset) == len(keys):
        return keyset
    seen: dict[bytes, int] = {}
    for index, key in enumerate(keys):
        first = seen.setdefault(key, index)
        if first != index:
            raise PlanError(f"entries[{index}].key: the same key as entries[{first}]")
    raise AssertionError("unreachable: a duplicate was counted but not found")


def plan_entries(
    state: str,
    want: Declared,
    have: dict[bytes, bytes],
    ops: ValueOps,
    *,
    array: bool = False,
    zero_value: bytes = b"",
    delete_all: bool = False,
    track_changes: bool = True,
) -> EntriesPlan:
    """The plan for hash-like maps and arrays (array=True: every key exists; deleting writes zero_value).

    `delete_all` is state=deleted with no entries listed: empty the map. `track_changes` records before/after of
    each change for diffs; without it only counts and writes are planned (large rule sets, no diff asked).

    Entries are compared as encoded bytes in C-level passes (one dict lookup and one bytes comparison per declared
    key); only entries whose bytes differ reach the Python loop that merges, compares decoded values and records
    changes, so a no-op over a million entries runs no Python code per entry."""
    keys = want.keys
    keyset = _declared_keys(keys)
    plan = EntriesPlan()
    change = plan.changes.append if track_changes else _discard
    if state in ("merged", "replaced", "overridden"):
        values = want.values
        if values is None or None in values:
            first = 0 if values is None else values.index(None)
            raise PlanError(f"entries[{first}].value: required for state={state}")
        _plan_upserts(plan, change, want, values, have, ops, merging=state == "merged", track_changes=track_changes)
    if state == "overridden" or (state == "deleted" and delete_all):
        keep = keyset if state == "overridden" else set()
        gone = list(filterfalse(keep.__contains__, have))
        if not array:
            plan.deletes = gone
            plan.removed = len(gone)
            if track_changes:
                plan.changes.extend(Change(key, have[key], None) for key in gone)
        else:
            for key in gone:
                _remove(plan, change, key, have[key], array, zero_value, ops)
    elif state == "deleted":
        present = list(compress(keys, map(have.__contains__, keys)))
        plan.unchanged += len(keys) - len(present)
        for key in present:
            _remove(plan, change, key, have[key], array, zero_value, ops)
    return plan


def _plan_upserts(
    plan: EntriesPlan,
    change: Callable[[Change], None],
    want: Declared,
    values: list[bytes],
    have: dict[bytes, bytes],
    ops: ValueOps,
    *,
    merging: bool,
    track_changes: bool,
) -> None:
    keys = want.keys
    if not have:  # an empty map (a first run): every entry is new
        plan.upserts = list(zip(keys, values))
        plan.added = len(keys)
        if track_changes:
            plan.changes.extend(map(Change, keys, repeat(None), values))
        return
    current_values = list(map(have.get, keys))
    differ = list(compress(range(len(keys)), map(ne, current_values, values)))
    given = want.given if want.given is not None else [None] * len(keys)
    upsert = plan.upserts.append
    added = updated = 0
    unchanged = len(keys) - len(differ)
    for i in differ:
        key, new, current = keys[i], values[i], current_values[i]
        if current is None:
            upsert((key, new))
            if track_changes:
                change(Change(key, None, new))
            added += 1
            continue
        if merging:
            new = merge_bytes(ops, current, given[i], new)
        if _same(ops, current, new):
            unchanged += 1
        else:
            upsert((key, new))
            change(Change(key, current, new))
            updated += 1
    plan.added, plan.unchanged, plan.updated = added, unchanged, updated


def _discard(_change: Change) -> None:
    pass


def _remove(
    plan: EntriesPlan,
    change: Callable[[Change], None],
    key: bytes,
    current: bytes,
    array: bool,
    zero_value: bytes,
    ops: ValueOps,
) -> None:
    if not array:
        plan.deletes.append(key)
        change(Change(key, current, None))
        plan.removed += 1
    elif _same(ops, current, zero_value):
        plan.unchanged += 1
    else:
        # Array slots always exist: "deleting" one resets it to zero.
        plan.upserts.append((key, zero_value))
        change(Change(key, current, zero_value))
        plan.removed += 1


@dataclass
class QueuePlan:
    """Queue/stack contents in pop order: what to drain, then what to push (in push order)."""

    drain: bool = False
    push: list[bytes] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return self.drain or bool(self.push)

    def counts(self) -> dict[str, int]:
        return {"added": self.added, "updated": 0, "removed": self.removed, "unchanged": self.unchanged}


def push_order(values_in_pop_order: list[bytes], stack: bool) -> list[bytes]:
    """The order to push values in so they pop in the given order: a queue pops first-in first, a stack last-in."""
    return list(reversed(values_in_pop_order)) if stack else list(values_in_pop_order)


def plan_queue(state: str, want: list[bytes], have: list[bytes], stack: bool) -> QueuePlan:
    """merged pushes the listed values; overridden makes the contents exactly `want` (pop order);
    deleted (no entries) drains."""
    plan = QueuePlan()
    if state == "merged":
        plan.push = list(want)  # appended behind what is there (queue) or on top of it (stack), as listed
        plan.added = len(want)
        plan.unchanged = len(have)
    elif state == "overridden":
        if want == have:
            plan.unchanged = len(have)
        else:
            plan.drain = bool(have)
            plan.removed = len(have)
            plan.push = push_order(want, stack)
            plan.added = len(want)
    elif state == "deleted":
        if want:
            raise PlanError("entries: queue and stack maps can only be drained as a whole (state=deleted, no entries)")
        plan.drain = bool(have)
        plan.removed = len(have)
    return plan
