"""Entry sources of bpf_map_entries: CSV files with dotted headers, read column-wise when every row is complete."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._entries_module import (
    EntriesError,
    _integer_columns,
    load_src,
)

HEADER = ("key.src", "key.port", "value.stats.packets", "value.stats.bytes", "value.action")


def write(tmp_path: Path, rows: list[list[str]], header: Sequence[str] = HEADER) -> str:
    path = tmp_path / "entries.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def test_complete_rows_nest_by_header_and_turn_decimals_into_ints(tmp_path: Path) -> None:
    rows = [["10.0.0.1", "80", "1", "100", "allow"], ["10.0.0.2", "0x50", "-2", "007", "deny"]]
    assert load_src(write(tmp_path, rows)) == [
        {"key": {"src": "10.0.0.1", "port": 80}, "value": {"stats": {"packets": 1, "bytes": 100}, "action": "allow"}},
        {"key": {"src": "10.0.0.2", "port": "0x50"}, "value": {"stats": {"packets": -2, "bytes": 7}, "action": "deny"}},
    ]


def test_empty_cells_are_left_out(tmp_path: Path) -> None:
    rows = [["10.0.0.1", "80", "", "100", "allow"], ["10.0.0.2", "81", "3", "4", ""]]
    assert load_src(write(tmp_path, rows)) == [
        {"key": {"src": "10.0.0.1", "port": 80}, "value": {"stats": {"bytes": 100}, "action": "allow"}},
        {"key": {"src": "10.0.0.2", "port": 81}, "value": {"stats": {"packets": 3, "bytes": 4}}},
    ]


def test_bad_headers_and_rows_are_named(tmp_path: Path) -> None:
    with pytest.raises(EntriesError, match=r"column key.port appears twice in the header"):
        load_src(write(tmp_path, [["1", "2"]], ["key.port", "key.port"]))
    with pytest.raises(EntriesError, match=r"column key.a.b nests under column key.a"):
        load_src(write(tmp_path, [["1", "2"]], ["key.a", "key.a.b"]))
    with pytest.raises(EntriesError, match=r"line 3: more cells than header columns"):
        load_src(write(tmp_path, [["1", "2", "3", "4", "5"], ["1", "2", "3", "4", "5", "6"]]))


_CELL = st.one_of(st.sampled_from(["", "0", "12", "-3", "0x1f", "a.b", " 7", "٣"]), st.integers(0, 10**20).map(str))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(_CELL, min_size=5, max_size=5), max_size=6))
def test_column_wise_reading_equals_row_by_row(tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]]) -> None:
    """The column-wise reader (complete rows) and the row-by-row one (any empty cell) give the same entries."""
    path = write(tmp_path_factory.mktemp("csv"), rows)
    expected = []
    for row in csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))):
        if row == list(HEADER):
            continue
        entry: dict = {}
        for column, cell in zip(HEADER, row):
            if cell == "":
                continue
            *parents, leaf = column.split(".")
            node = entry
            for part in parents:
                node = node.setdefault(part, {})
            body = cell[1:] if cell.startswith("-") else cell
            node[leaf] = int(cell) if body.isdigit() and body.isascii() else cell
        expected.append(entry)
    assert load_src(path) == expected


def test_integer_columns_only_for_unquoted_complete_decimal_lines() -> None:
    """The column packer's reader takes a block of lines only when slicing it is certain to give the csv module's
    cells; anything else goes to the csv module (None)."""
    assert _integer_columns(["1,2,3\n", "4,5,6\n"], 3) == [[1, 4], [2, 5], [3, 6]]
    assert _integer_columns(["1,2,3\n", "4,5,6"], 3) == [[1, 4], [2, 5], [3, 6]], "the last line without a newline"
    assert _integer_columns(["1,2,3,4\n", "5,6\n"], 3) is None, "cells shifted between lines, same total"
    assert _integer_columns(["1,,3\n"], 3) is None, "an empty cell"
    assert _integer_columns(['1,"2",3\n'], 3) is None, "a quoted cell"
    assert _integer_columns(["1,-2,3\n"], 3) == [[1], [-2], [3]], "a negative number (as load_src reads it)"
    assert _integer_columns(["1,007,3\n"], 3) is None, "leading zeros"
    assert _integer_columns(["1,2.0,3\n"], 3) is None, "a float"
    assert _integer_columns(["1,true,3\n"], 3) is None, "a JSON word"
    assert _integer_columns(["1,[2],3\n"], 3) is None, "a JSON array"
    assert _integer_columns(["1,2,3\n", "\n", "4,5,6\n"], 3) is None, "a blank line"
    assert _integer_columns(["1, 2,3\n"], 3) is None, "a space"
    assert _integer_columns(["1,0x2,3\n"], 3) is None, "hex"
    assert _integer_columns(["1,\u0662,3\n"], 3) is None, "a non-ASCII digit"
    assert _integer_columns(["\n"], 3) is None, "only a blank line"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**64), 2**64), min_size=3, max_size=3), min_size=1, max_size=20))
def test_integer_columns_agree_with_the_csv_module(rows: list[list[int]]) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    lines = out.getvalue().splitlines(keepends=True)
    parsed = [list(map(int, row)) for row in csv.reader(lines)]
    assert _integer_columns(lines, 3) == [list(column) for column in zip(*parsed)]
