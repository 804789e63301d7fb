"""bpf_facts' combination of per-CPU values: one way for the whole value, or field by field (counters summed,
timestamps the earliest non-zero or the latest), with bad field specs named."""

from __future__ import annotations

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.resources._facts import aggregate

SLOTS = [
    {"packets": 3, "bytes": 300, "first_seen": 50, "last_seen": 90},
    {"packets": 0, "bytes": 0, "first_seen": 0, "last_seen": 0},  # a CPU that never saw the flow
    {"packets": 2, "bytes": 120, "first_seen": 70, "last_seen": 80},
]
VALUE = {"per_cpu": SLOTS, "sum": {"packets": 5, "bytes": 420, "first_seen": 120, "last_seen": 170}}
FLOW_FIELDS = {"first_seen": "min_nonzero", "last_seen": "max"}


def test_fields_combine_their_own_way() -> None:
    assert aggregate(VALUE, "sum", FLOW_FIELDS) == {"packets": 5, "bytes": 420, "first_seen": 50, "last_seen": 90}
    assert aggregate(VALUE, "max", {"packets": "sum"}) == {
        "packets": 5,
        "bytes": 300,
        "first_seen": 70,
        "last_seen": 90,
    }
    assert aggregate(VALUE, "sum", {"first_seen": "min"})["first_seen"] == 0
    assert aggregate(VALUE, "none", FLOW_FIELDS) == SLOTS
    assert aggregate({"packets": 1}, "sum", FLOW_FIELDS) == {"packets": 1}  # not per-CPU: as it is


def test_min_nonzero_of_all_zero_slots_is_zero() -> None:
    zero = {"per_cpu": [{"first_seen": 0}, {"first_seen": 0}], "sum": {"first_seen": 0}}
    assert aggregate(zero, "sum", {"first_seen": "min_nonzero"}) == {"first_seen": 0}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"first_seen": "median"}, "aggregate_fields.first_seen: 'median' is not one of sum, max, min, min_nonzero"),
        ({"seen": "max"}, "aggregate_fields.seen: the value has no such field (fields: packets, bytes"),
    ],
)
def test_bad_field_specs_are_named(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError) as exc:
        aggregate(VALUE, "sum", fields)
    assert problem in str(exc.value)


def test_scalar_values_have_no_fields() -> None:
    with pytest.raises(ValueError, match="not structs"):
        aggregate({"per_cpu": [1, 2], "sum": 3}, "sum", {"x": "max"})
