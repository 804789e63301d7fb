# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_metrics: the CNFs' counters as Prometheus metrics, in the text exposition format that
node_exporter's textfile collector reads.

Pure: readings of the applications in (what the surface read from their maps), exposition text out. Names follow
Prometheus' conventions: a `cnf_ebpf_` prefix, counters end in `_total`, bytes and seconds are base units, and the
label sets are bounded (the top N flows only; interfaces and rules are bounded by the deployment). No sample carries
a timestamp (the textfile collector refuses them); `cnf_ebpf_metrics_last_run_timestamp_seconds` says when the file
was written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PREFIX = "cnf_ebpf_"
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
IF_SLOTS = 256  # flow_tracker counts interfaces by ifindex % 256
FLOW_LABELS = ("app", "proto", "src", "src_port", "dst", "dst_port")
# Families whose series come and go with the traffic (the top N flows): a new set of them is a new reading, not a
# change of what is exported (see `shape`).
TRAFFIC_FAMILIES = frozenset({PREFIX + "flow_packets_total", PREFIX + "flow_bytes_total"})


@dataclass
class Family:
    """One metric family: its name, type (counter or gauge), help text and samples ((label, value) pairs, value)."""

    name: str
    type: str
    help: str
    samples: list[tuple[tuple[tuple[str, str], ...], float]] = field(default_factory=list)

    def add(self, value: float, **labels: Any) -> None:
        self.samples.append((tuple((k, "" if v is None else str(v)) for k, v in labels.items()), value))


def escape_label_value(value: str) -> str:
    """A label value as the exposition format quotes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and line feed escaped (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(families: list[Family]) -> str:
    """The exposition text: for each family with samples, its HELP and TYPE lines and then its samples."""
    lines: list[str] = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
            lines.append(
                f"{family.name}{{{text}}} {format_value(value)}" if text else f"{family.name} {format_value(value)}"
            )
    return "\n".join(lines) + "\n" if lines else ""


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def proto_name(proto: Any) -> str:
    return PROTOCOLS.get(proto, str(proto))


def families(readings: list[dict[str, Any]], now: float, top: int) -> list[Family]:
    """The metric families of the applications' readings, at time `now` (seconds since the epoch), with at most
    `top` flows per application (the first ones of each reading's `flows.entries`, which come ranked).

    A reading: {app, up, flows: {count, entries: [{key, value}]}, interfaces: [{interface, netns, packets, bytes}],
    rules: [{cidr, action, id, hits}], event_drops: int}; every part but app and up is optional (None: the
    application has no such map)."""
    up = Family(PREFIX + "up", "gauge", "1 when the application's maps were read; 0 when its pins are missing.")
    flows = Family(PREFIX + "flows", "gauge", "Flows in the flow tracker's flow table.")
    flow_packets = Family(
        PREFIX + "flow_packets_total", "counter", "Packets of a flow (the top flows by bytes of each tracker only)."
    )
    flow_bytes = Family(
        PREFIX + "flow_bytes_total",
        "counter",
        "Frame bytes of a flow as XDP sees them (the top flows by bytes of each tracker only).",
    )
    if_packets = Family(PREFIX + "interface_packets_total", "counter", "Packets received on an attached interface.")
    if_bytes = Family(PREFIX + "interface_bytes_total", "counter", "Frame bytes received on an attached interface.")
    rule_hits = Family(PREFIX + "rule_hits_total", "counter", "Packets that matched an XDP filter rule.")
    drops = Family(PREFIX + "event_drops_total", "counter", "Events lost because the ring buffer was full.")
    last_run = Family(
        PREFIX + "metrics_last_run_timestamp_seconds",
        "gauge",
        "When this file was written, in seconds since the epoch.",
    )
    for reading in sorted(readings, key=lambda r: r["app"]):
        app = reading["app"]
        up.add(1 if reading.get("up") else 0, app=app)
        if not reading.get("up"):
            continue
        table = reading.get("flows")
        if table is not None:
            flows.add(_number(table.get("count")), app=app)
            for entry in (table.get("entries") or [])[: max(int(top), 0)]:
                key, value = entry.get("key") or {}, entry.get("value") or {}
                labels = {
                    "app": app,
                    "proto": proto_name(key.get("proto")),
                    "src": key.get("src"),
                    "src_port": key.get("src_port"),
                    "dst": key.get("dst"),
                    "dst_port": key.get("dst_port"),
                }
                flow_packets.add(_number(value.get("packets")), **labels)
                flow_bytes.add(_number(value.get("bytes")), **labels)
        for row in sorted(reading.get("interfaces") or [], key=lambda r: (str(r.get("netns")), str(r["interface"]))):
            labels = {"app": app, "interface": row["interface"], "netns": row.get("netns")}
            if_packets.add(_number(row.get("packets")), **labels)
            if_bytes.add(_number(row.get("bytes")), **labels)
        for rule in sorted(reading.get("rules") or [], key=lambda r: (str(r["cidr"]), _number(r.get("id")))):
            rule_hits.add(
                _number(rule.get("hits")), app=app, cidr=rule["cidr"], action=rule.get("action"), id=rule.get("id")
            )
        if reading.get("event_drops") is not None:
            drops.add(_number(reading["event_drops"]), app=app)
    last_run.add(float(now))
    return [up, flows, flow_packets, flow_bytes, if_packets, if_bytes, rule_hits, drops, last_run]


def exposition(readings: list[dict[str, Any]], now: float, top: int) -> str:
    return render(families(readings, now, top))


def sample_lines(text: str) -> list[str]:
    """The sample lines of an exposition text (neither HELP/TYPE comments nor blank lines): one per series."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def shape(text: str) -> set[str]:
    """The series of an exposition text we wrote (`name{labels}`, without values), leaving out the traffic's
    (TRAFFIC_FAMILIES) and the timestamp's: what changes only when the deployment does (an application, an interface
    or a rule appearing or going), not with every reading."""
    series = set()
    for line in sample_lines(text):
        name_and_labels = line.rsplit(" ", 1)[0]
        name = name_and_labels.split("{", 1)[0]
        if name in TRAFFIC_FAMILIES or name == PREFIX + "metrics_last_run_timestamp_seconds":
            continue
        series.add(name_and_labels)
    return series


def interface_rows(attached: list[dict[str, Any]], counters: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per attached interface ({interface, netns, ifindex}), its counters ({slot: {packets, bytes}}: the tracker
    counts by ifindex % IF_SLOTS)."""
    rows = []
    for iface in attached:
        value = counters.get(iface["ifindex"] % IF_SLOTS) or {}
        rows.append(
            {
                "interface": iface["interface"],
                "netns": iface.get("netns"),
                "packets": _number(value.get("packets")),
                "bytes": _number(value.get("bytes")),
            }
        )
    return rows


def rule_rows(rules: list[dict[str, Any]], hits: dict[int, Any]) -> list[dict[str, Any]]:
    """Per rule in the filter's tables ({key: cidr, value: {id, action}}), its hits ({rule id: packets})."""
    return [
        {
            "cidr": entry["key"],
            "action": str((entry.get("value") or {}).get("action", "")).lower(),
            "id": (entry.get("value") or {}).get("id"),
            "hits": _number(hits.get((entry.get("value") or {}).get("id"))),
        }
        for entry in rules
    ]
