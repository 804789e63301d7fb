# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_map_entries: argument spec, entry sources, and `reconcile()`, which the module's
main() calls and tests can call in-process.

Order of work: load and encode every declared entry (validation first: nothing is written if one is bad), take the
map's lock, read the current contents, plan (pure), apply (upserts, then deletes), render counts and a bounded diff.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice, repeat
from operator import itemgetter
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.planning import _entries_plan
from ansible_collections.cnf.ebpf.plugins.module_utils.planning._entries_plan import STATES, Change, Declared, ValueOps
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps, _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._entries import (
    ARRAY_KINDS,
    MAP_IN_MAP_KINDS,
    QUEUE_KINDS,
    ApplyError,
    EntryMap,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._files import atomic_file
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._host import BpfError, CodecError
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import LockTimeout
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _options
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import (
    fail_without_libbpf,
    fail_without_privileges,
    with_defaults,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "default": "merged", "choices": list(STATES)},
    "entries": {"type": "list", "elements": "raw"},
    "src": {"type": "path"},
    "key_type": _options.type_schema(),
    "value_type": _options.type_schema(),
    "formats": _options.formats(),
    "diff_limit": {"type": "int", "default": 20},
    "limit": {"type": "int", "default": 10000},
    "dest": {"type": "path"},
    "lock_timeout": _options.lock_timeout(),
    "persist": {"type": "bool", "default": False},
    "state_dir": _options.state_dir(),
}
PERSIST_STATES = ("merged", "replaced", "overridden")
PERSISTED_OPTIONS = ("path", "state", "entries", "src", "key_type", "value_type", "formats")
MUTUALLY_EXCLUSIVE = [("entries", "src")]
LRU_TYPES = frozenset({"lru_hash", "lru_percpu_hash"})
_CSV_CHUNK = 65536
_CSV_BLOCK = 1 << 22  # characters of whole lines read at a time by the column packer
_INT_ONLY = {int}
_ENTRY_FIELDS = frozenset({"key", "value", "inner_map_id"})  # inner_map_id: gathered output fed back in


class EntriesError(ValueError):
    """Bad input: the message names the option or entry, the field path and the problem. Nothing was changed."""


def _with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    full = with_defaults(ARGUMENT_SPEC, params)
    if full["state"] not in STATES:
        raise EntriesError(f"state: {full['state']!r} is not one of {', '.join(STATES)}")
    if full["entries"] is not None and full["src"] is not None:
        raise EntriesError("entries, src: give one or the other")
    return full


# --- entry sources -------------------------------------------------------------------------------------------------


def _csv_cell(cell: str) -> Any:
    # Decimal integers become ints so they take the codecs' fast path; everything else (addresses, names, hex) stays
    # text for the codec to parse, which also accepts numeric text.
    body = cell[1:] if cell[:1] == "-" else cell
    return int(cell) if body.isdigit() and body.isascii() else cell


def _csv_column(cells: tuple[str, ...]) -> list[Any]:
    joined = "".join(cells)
    if joined.isdigit() and joined.isascii():  # every cell a non-negative decimal: one C-level conversion
        return list(map(int, cells))
    return list(map(_csv_cell, cells))


def _nest(paths: list[tuple[str, ...]], columns: list[list[Any]]) -> list[dict[str, Any]]:
    """One dict per row from whole columns and their dotted paths, built level by level with C-level zips: a
    million rows are not walked cell by cell in Python."""
    groups: dict[str, tuple[list[tuple[str, ...]], list[list[Any]]]] = {}
    for column_path, column in zip(paths, columns):
        sub_paths, sub_columns = groups.setdefault(column_path[0], ([], []))
        sub_paths.append(column_path[1:])
        sub_columns.append(column)
    names = list(groups)
    fields = [
        sub_columns[0] if sub_paths == [()] else _nest(sub_paths, sub_columns)
        for sub_paths, sub_columns in groups.values()
    ]
    return list(map(dict, map(zip, repeat(names), zip(*fields))))


def _csv_header(rows: Iterator[list[str]], path: str) -> list[tuple[str, ...]] | None:
    """The header's dotted column names split into paths (None for an empty file); refuses a column given twice or
    one nesting under another."""
    try:
        header = next(rows)
    except StopIteration:
        return None
    paths = [tuple(column.strip().split(".")) for column in header]
    if len(set(paths)) != len(paths):
        twice = next(column for column in paths if paths.count(column) > 1)
        raise EntriesError(f"src: {path}: column {'.'.join(twice)} appears twice in the header")
    for column_path in paths:
        for other in paths:
            if other != column_path and other[: len(column_path)] == column_path:
                raise EntriesError(f"src: {path}: column {'.'.join(other)} nests under column {'.'.join(column_path)}")
    return paths


def _integer_columns(lines: list[str], width: int) -> list[list[int]] | None:
    """A block of CSV lines as columns of ints when every line has `width` cells, each an integer in decimal, and
    nothing is quoted or padded; None otherwise. The block is parsed as one JSON array of numbers (C code: no string
    per cell, no Python step per row; about half the time of splitting cells and int() of each) and cut into
    columns by slicing."""
    if set(map(str.count, lines, repeat(","))) != {width - 1}:
        return None
    text = "".join(lines).rstrip("\n")
    if " " in text or "\t" in text or "\n\n" in text:
        return None  # cells with spaces, or blank lines: the csv module's business
    try:
        cells = json.loads("[" + text.replace("\n", ",") + "]")
    except ValueError:
        return None  # empty cells, text, leading zeros
    # JSON has floats, booleans, strings, null and nested arrays too: only a block of ints, one per cell, is taken
    if len(cells) != width * len(lines) or set(map(type, cells)) != _INT_ONLY:
        return None
    return [cells[j::width] for j in range(width)]


def encode_csv_columns(emap: EntryMap, path: str, state: str) -> Declared | None:
    """A CSV `src` whose header names exactly the integer fields of the key and (for states that write) of the value,
    with a decimal in every cell, packed block by block straight from its columns: no dict per row, so a million rows
    cost a fraction of the time and memory. None for any other file (other columns, text, quotes, empty or odd cells, a
    value out of range, no rows): load_src() and encode_entries() then read it entry by entry and explain what is
    wrong."""
    need_value = state in ("merged", "replaced", "overridden")
    try:
        with open(path, encoding="utf-8") as f:  # universal newlines: \r\n and \r lines end in \n
            paths = _csv_header(csv.reader([f.readline()]), path)
            if not paths:
                return None
            sides = [column_path[0] for column_path in paths]
            if set(sides) != ({"key", "value"} if need_value else {"key"}):
                return None
            keys: list[bytes] = []
            values: list[bytes] = []
            while True:
                lines = f.readlines(_CSV_BLOCK)
                if not lines:
                    break
                columns = _integer_columns(lines, len(paths))
                if columns is None:
                    return None
                by_side: dict[str, dict[tuple[str, ...], list[int]]] = {"key": {}, "value": {}}
                for side, column_path, column in zip(sides, paths, columns):
                    by_side[side][column_path[1:]] = column
                block_keys = emap.encode_key_columns(by_side["key"])
                block_values = emap.encode_value_columns(by_side["value"]) if need_value else []
                if block_keys is None or block_values is None:
                    return None
                keys.extend(block_keys)
                values.extend(block_values)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None  # load_src() reports it
    if not keys:
        return None
    if not need_value:
        return Declared(keys)
    # What merging needs of the values as given is which fields they name, the same for every row: one shared object
    # (the value's field names; 0 for a plain integer value) stands for all of them.
    value_paths = [column_path[1:] for side, column_path in zip(sides, paths) if side == "value"]
    named: Any = 0 if value_paths == [()] else dict.fromkeys((p[0] for p in value_paths), 0)
    return Declared(keys, values, [named] * len(keys))


def _read_csv(f: Any, path: str) -> list[dict[str, Any]]:
    """Rows of a CSV file with dotted headers (key.src_ip, value.stats.packets) as nested entries; empty cells are
    left out. The header is split into paths once, not per row."""
    rows = csv.reader(f)
    paths = _csv_header(rows, path)
    if paths is None:
        return []
    entries: list[dict[str, Any]] = []
    line = 2
    # In chunks, so that the cells of one chunk are freed (and their memory reused) before the next is read
    while True:
        chunk = list(islice(rows, _CSV_CHUNK))
        if not chunk:
            return entries
        if set(map(len, chunk)) == {len(paths)} and not any(map(list.__contains__, chunk, repeat(""))):
            entries.extend(_nest(paths, [_csv_column(column) for column in zip(*chunk)]))
        else:
            entries.extend(_csv_rows(chunk, paths, path, line))
        line += len(chunk)


def _csv_rows(rows: list[list[str]], paths: list[tuple[str, ...]], path: str, first_line: int) -> list[dict[str, Any]]:
    """Rows one by one: any row with empty cells (left out) or the wrong number of cells (refused by line)."""
    entries = []
    for line, row in enumerate(rows, start=first_line):
        if len(row) > len(paths):
            raise EntriesError(f"src: {path} line {line}: more cells than header columns")
        entry: dict[str, Any] = {}
        for column_path, cell in zip(paths, row):
            if cell == "":
                continue
            node = entry
            for part in column_path[:-1]:
                node = node.setdefault(part, {})
            node[column_path[-1]] = _csv_cell(cell)
        entries.append(entry)
    return entries


def load_src(path: str) -> list[Any]:
    """Entries from a file on the managed host: JSON or YAML (a list of {key, value}), or CSV with a header row."""
    lower = path.lower()
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if lower.endswith(".csv"):
                return _read_csv(f, path)
            if lower.endswith(".json"):
                data = json.load(f)
            elif lower.endswith((".yml", ".yaml")):
                try:
                    import yaml
                except ImportError:
                    raise EntriesError(
                        f"src: {path}: reading YAML needs PyYAML on the managed host; use JSON or CSV"
                    ) from None
                loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
                data = yaml.load(f, Loader=loader)  # a SafeLoader (C version when libyaml is there)
            else:
                raise EntriesError(f"src: {path}: use a .json, .yml/.yaml or .csv file")
    except OSError as exc:
        raise EntriesError(f"src: cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:  # JSON and YAML parse errors
        if isinstance(exc, EntriesError):
            raise
        raise EntriesError(f"src: {path} is not valid: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        data = data["entries"]  # a saved gathered result
    if not isinstance(data, list):
        raise EntriesError(f"src: {path} must hold a list of entries, not {type(data).__name__}")
    return data


# --- encoding (validation first) -----------------------------------------------------------------------------------


def _field(entry: Any, index: int, name: str, required: bool) -> Any:
    if not isinstance(entry, dict):
        raise EntriesError(f"entries[{index}]: expected a mapping with key and value, got {entry!r}")
    unknown = sorted(set(entry) - _ENTRY_FIELDS)
    if unknown:
        raise EntriesError(f"entries[{index}].{unknown[0]}: unknown field (entries have key and value)")
    if required and name not in entry:
        raise EntriesError(f"entries[{index}].{name}: missing")
    return entry.get(name)


_GET_KEY = itemgetter("key")
_GET_VALUE = itemgetter("value")
_DICT_ONLY = {dict}


def encode_entries(emap: EntryMap, entries: list[Any], state: str) -> Declared:
    """Encode every declared entry; the first bad one fails the task naming its index and field.

    Large rule sets (millions of entries) are encoded column-wise, all keys then all values, with C-level map()
    calls; when anything in that pass is off, the entries are encoded again one by one, which finds the first bad
    entry and says which it is."""
    need_value = state in ("merged", "replaced", "overridden")
    if entries and set(map(type, entries)) == _DICT_ONLY:
        # {key, value} in every entry (the usual shape): checked by size and by the two lookups, cheaper than a
        # union of every entry's field names, which the other shapes get
        lengths = set(map(len, entries))
        usual = need_value and lengths == {2}
        try:
            if usual or _ENTRY_FIELDS.issuperset(set().union(*entries)):
                keys = emap.encode_keys(list(map(_GET_KEY, entries)))
                if not need_value:
                    return Declared(keys)
                given = list(map(_GET_VALUE, entries))
                if None not in given:
                    return Declared(keys, emap.encode_values(given), given)
        except (KeyError, CodecError):
            pass  # explained below, entry by entry
    return _encode_entries_one_by_one(emap, entries, need_value)


def _encode_entries_one_by_one(emap: EntryMap, entries: list[Any], need_value: bool) -> Declared:
    encode_key = emap.encode_key
    encode_value = emap.encode_value
    fields = _ENTRY_FIELDS
    keys: list[bytes] = []
    values: list[bytes] = []
    given: list[Any] = []
    index = 0
    try:
        for index, entry in enumerate(entries):
            if entry.__class__ is not dict or "key" not in entry or not fields.issuperset(entry):
                _field(entry, index, "key", True)
            keys.append(encode_key(entry["key"]))
            if need_value:
                value_obj = entry.get("value")
                if value_obj is None:
                    _field(entry, index, "value", True)
                values.append(encode_value(value_obj))
                given.append(value_obj)
    except CodecError as exc:
        raise EntriesError(f"entries[{index}].{exc}") from exc
    return Declared(keys, values, given) if need_value else Declared(keys)


def encode_queue_values(emap: EntryMap, entries: list[Any]) -> list[bytes]:
    values = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and "key" in entry:
            raise EntriesError(f"entries[{index}].key: {emap.type} maps have no keys; give entries as {{value: ...}}")
        value_obj = _field(entry, index, "value", True)
        try:
            values.append(emap.encode_value(value_obj))
        except CodecError as exc:
            raise EntriesError(f"entries[{index}].{exc}") from exc
    return values


# --- rendering -----------------------------------------------------------------------------------------------------


def _render_line(key: Any, value: Any, keyless: bool) -> str:
    return json.dumps({"value": value} if keyless else {"key": key, "value": value}, default=str)


def render_diff(emap: EntryMap, changes: list[Change], limit: int) -> dict[str, str]:
    """Decoded before/after of the changed keys only, one line per key; at most `limit` keys, then a count."""
    before, after = [], []
    # Queue/stack changes keep their pop order (their keys are all empty, and sorted() is stable).
    for change in sorted(changes, key=lambda c: c.key)[: max(limit, 0)]:
        keyless = emap.key_codec is None
        key = None if keyless else emap.decode_key(change.key)
        if change.before is not None:
            before.append(_render_line(key, emap.decode_value(change.before), keyless))
        if change.after is not None:
            after.append(_render_line(key, emap.decode_value(change.after), keyless))
    if len(changes) > limit:
        more = f"... and {len(changes) - limit} more changed keys"
        before.append(more)
        after.append(more)
    return {
        "before": "".join(line + "\n" for line in before),
        "after": "".join(line + "\n" for line in after),
        "before_header": f"{emap.path} (changed entries)",
        "after_header": f"{emap.path} (changed entries)",
    }


def gather(emap: EntryMap, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    with emap.lock(timeout):
        if emap.type in QUEUE_KINDS:
            entries = [{"value": emap.decode_value(v)} for v in emap.read_queue()]
        else:
            raw = sorted(emap.read().items())
            entries = [{"key": emap.decode_key(k), "value": emap.decode_value(v)} for k, v in raw]
    if emap.type in MAP_IN_MAP_KINDS:
        paths = emap.inner_pin_paths({e["value"] for e in entries})
        for entry in entries:
            entry["inner_map_id"] = entry["value"]
            entry["value"] = paths.get(entry["value"], entry["value"])
    result: dict[str, Any] = {"changed": False, "count": len(entries)}
    if params["dest"]:
        with atomic_file(params["dest"]) as f:
            json.dump(entries, f)
        result["dest"] = params["dest"]
    limit = params["limit"]
    result["truncated"] = len(entries) > limit
    result["entries"] = entries[:limit] if limit >= 0 else entries
    return result


# --- reconcile -----------------------------------------------------------------------------------------------------


def _reconcile_queue(emap: EntryMap, state: str, entries: list[Any], check_mode: bool, timeout: float) -> dict:
    if state == "replaced":
        raise EntriesError(
            f"state: replaced has no meaning for {emap.type} maps (no keys); use merged to push, overridden for exact "
            "contents, deleted to drain"
        )
    want = encode_queue_values(emap, entries)
    with emap.lock(timeout):
        have = emap.read_queue()
        try:
            plan = _entries_plan.plan_queue(state, want, have, stack=emap.type == "stack")
        except _entries_plan.PlanError as exc:
            raise EntriesError(str(exc)) from exc
        if plan.changed and not check_mode:
            emap.refill_queue(plan.drain, plan.push)
    result: dict[str, Any] = {"changed": plan.changed, "counts": plan.counts()}
    result["_diff"] = (
        [Change(b"", v, None) for v in have] + [Change(b"", None, v) for v in want]
        if plan.changed and state == "overridden"
        else []
    )
    return result


def _check_capacity(emap: EntryMap, current: int, plan: _entries_plan.EntriesPlan) -> bool:
    """Refuse a plan whose result cannot fit (before writing anything); True when deletes must go first because
    the new keys only fit once the old ones are gone."""
    if emap.type in ARRAY_KINDS or emap.type == "array_of_maps":
        return False
    final = current + plan.added - len(plan.deletes)
    if final > emap.max_entries and emap.type not in LRU_TYPES:
        raise EntriesError(
            f"entries: the map would hold {final} entries, more than its max_entries={emap.max_entries}; "
            "nothing was written"
        )
    return current + plan.added > emap.max_entries


@contextmanager
def _no_gc() -> Iterator[None]:
    """Large rule sets allocate millions of small objects that all live until the end of the run; Python's cyclic
    collector would rescan them again and again (a third of the run time at 1M entries), for nothing to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def reconcile(params: dict[str, Any], check_mode: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run the module's logic; raises EntriesError (bad input), BpfError or ApplyError (kernel), LockTimeout."""
    with _no_gc():
        return _reconcile(params, check_mode, diff)


def _owning_app(p: dict[str, Any]) -> str:
    """The application whose map `path` is (<pin root>/<app>/maps/<map>, recorded in the state dir), for persist."""
    if p["state"] not in PERSIST_STATES:
        raise EntriesError(f"persist: only {', '.join(PERSIST_STATES)} declare entries to restore, not {p['state']}")
    maps_dir = os.path.dirname(os.path.normpath(p["path"]))
    app = os.path.basename(os.path.dirname(maps_dir))
    if (
        os.path.basename(maps_dir) != "maps"
        or not _apps.valid_name(app)
        or _apps.read_state(app, p["state_dir"]) is None
    ):
        raise EntriesError(
            f"persist: {p['path']} is not a map of an application deployed by cnf.ebpf.bpf_program "
            f"(<pin_root>/<name>/maps/<map> with its state in {p['state_dir']})"
        )
    return app


def _persist(app: str, p: dict[str, Any]) -> None:
    """Record the declared entries in the application's state, replayed by cnf.ebpf.bpf_boot after a reboot."""
    record = {k: p[k] for k in PERSISTED_OPTIONS}
    with _apps.app_lock(app, p["lock_timeout"]):
        state = _apps.read_state(app, p["state_dir"])
        if state is None:
            return  # removed meanwhile: nothing to restore
        persisted = state.setdefault("entries", {})
        if persisted.get(p["path"]) != record:
            persisted[p["path"]] = record
            _apps.write_state(app, state, p["state_dir"])


def _interrupted_text(record: dict[str, Any], check_mode: bool) -> str:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.get("started") or 0))
    return (
        f"a run of state={record.get('what') or '?'} (pid {record.get('pid')}, started {started}) was killed while "
        f"writing this map ({record.get('writes')} writes and {record.get('deletes')} deletes planned); this run "
        + ("would finish" if check_mode else "finished")
        + " the job from the map's contents as they were"
    )


def _reconcile(params: dict[str, Any], check_mode: bool, diff: bool) -> dict[str, Any]:
    p = _with_defaults(params)
    refusal = _maps.bpffs_refusal("path", p["path"])
    if refusal:
        raise EntriesError(refusal)
    app = _owning_app(p) if p["persist"] else None
    refusal = _apps.state_dir_refusal(p["state_dir"]) if app and not check_mode else None
    if refusal:  # persisted entries are recorded in the application's state, for the restore at boot
        raise EntriesError(refusal)
    state = p["state"]
    # A CSV src is read after the map is open: its integer columns may be packed without a dict per row
    src_csv = p["src"] is not None and p["src"].lower().endswith(".csv")
    entries = None if src_csv else (load_src(p["src"]) if p["src"] else (p["entries"] or []))
    try:
        emap = EntryMap(p["path"], p["key_type"], p["value_type"], p["formats"])
    except (ValueError, CodecError) as exc:
        raise EntriesError(str(exc)) from exc
    with emap:
        warnings = []
        if emap.type in LRU_TYPES and state != "gathered":
            warnings.append(f"{emap.path}: {emap.type} maps evict entries when full, declared ones included")
        if state == "gathered":
            result = gather(emap, p, p["lock_timeout"])
        elif emap.type in QUEUE_KINDS:
            entries = load_src(p["src"]) if entries is None else entries
            result = _reconcile_queue(emap, state, entries, check_mode, p["lock_timeout"])
            changes = result.pop("_diff")
            if diff:
                result["diff"] = render_diff(emap, changes, p["diff_limit"])
        else:
            want = encode_csv_columns(emap, p["src"], state) if src_csv else None
            if want is None:
                entries = load_src(p["src"]) if entries is None else entries
                want = encode_entries(emap, entries, state)
            ops = ValueOps(
                decode=emap.decode_value,
                value_type=emap.value_type,
                ncpus=emap.per_cpu,
                stride=emap.bpf_map.value_stride,
            )
            with emap.lock(p["lock_timeout"]):
                interrupted = emap.interrupted_write()
                have = emap.read()
                try:
                    plan = _entries_plan.plan_entries(
                        state,
                        want,
                        have,
                        ops,
                        array=emap.type in ARRAY_KINDS or emap.type == "array_of_maps",
                        zero_value=emap.zero_value,
                        delete_all=state == "deleted" and not want,
                        track_changes=diff,
                    )
                except _entries_plan.PlanError as exc:
                    raise EntriesError(str(exc)) from exc
                deletes_first = _check_capacity(emap, len(have), plan)
                if plan.changed and not check_mode:
                    emap.apply(plan.upserts, plan.deletes, deletes_first, what=state)
                elif interrupted is not None and not check_mode:
                    emap.clear_interrupted()  # the killed run had written everything: nothing left to repair
            result = {"changed": plan.changed, "counts": plan.counts()}
            if interrupted is not None:
                result["repaired"] = [_interrupted_text(interrupted, check_mode)]
            if diff:
                result["diff"] = render_diff(emap, plan.changes, p["diff_limit"])
        result["map"] = {"path": emap.path, "id": emap.map_id, "type": emap.type}
        if warnings:
            result["warnings"] = warnings
    if app is not None and not check_mode:
        _persist(app, p)
    return result


def run(module: AnsibleModule) -> None:
    fail_without_libbpf(module)
    fail_without_privileges(module)
    try:
        result = reconcile(module.params, check_mode=module.check_mode, diff=module._diff)
    except EntriesError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except ApplyError as exc:
        module.fail_json(msg=str(exc), changed=exc.written > 0, errno=exc.cause.errno_name)
    except BpfError as exc:
        module.fail_json(msg=str(exc), changed=False, errno=exc.errno_name)
    except LockTimeout as exc:
        module.fail_json(msg=str(exc), changed=False)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)
