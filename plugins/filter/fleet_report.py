# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.fleet_report: the per-host reports of the CNF roles (flow_tracker_report, xdp_filter_report) folded into
one fleet-wide model: hosts with their drift and errors, top talkers, interface counters and rule hits. Pure data in,
data out; the fleet_report role renders it as HTML, CSV and JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# The same protocol names and interface slots as the metrics of cnf.ebpf.bpf_metrics.
from ansible_collections.cnf.ebpf.plugins.module_utils.planning._metrics import IF_SLOTS, proto_name

SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _number(value: Any) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _rate(entry: Mapping[str, Any], field: str) -> float | None:
    rate = entry.get("rate") or {}
    return rate.get(field)


def _flows(host: str, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in report.get("flows") or []:
        key, value = entry.get("key") or {}, entry.get("value") or {}
        proto = key.get("proto")
        rows.append(
            {
                "host": host,
                "family": "ipv6" if key.get("family") == 10 else "ipv4",
                "proto": proto_name(proto),
                "src": key.get("src"),
                "src_port": key.get("src_port"),
                "dst": key.get("dst"),
                "dst_port": key.get("dst_port"),
                "packets": _number(value.get("packets")),
                "bytes": _number(value.get("bytes")),
                "bytes_per_s": _rate(entry, "bytes"),
            }
        )
    return rows


def _interfaces(host: str, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    counters = {entry.get("key"): entry for entry in report.get("counters") or []}
    rows = []
    for iface in report.get("interfaces") or []:
        ifindex = iface.get("ifindex")
        entry = counters.get(ifindex % IF_SLOTS) if isinstance(ifindex, int) else None
        value = (entry or {}).get("value") or {}
        rows.append(
            {
                "host": host,
                "interface": iface.get("interface"),
                "netns": iface.get("netns"),
                "packets": _number(value.get("packets")),
                "bytes": _number(value.get("bytes")),
                "packets_per_s": _rate(entry or {}, "packets"),
                "bytes_per_s": _rate(entry or {}, "bytes"),
            }
        )
    return rows


def _rules(host: str, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "host": host,
            "cidr": rule.get("cidr"),
            "action": rule.get("action"),
            "id": rule.get("id"),
            "hits": _number(rule.get("hits")),
            "hits_per_s": rule.get("hits_per_s"),
        }
        for rule in report.get("rules") or []
    ]


def fleet_report(
    hostvars: Mapping[str, Any], hosts: list[str], failed: list[str] | None = None, top: int = 20
) -> dict[str, Any]:
    """The fleet model from `hostvars` of `hosts`; `failed` hosts (unreachable or failed in the play) are errors."""
    if not isinstance(hostvars, Mapping):
        kind = type(hostvars).__name__
        raise AnsibleFilterError(f"cnf.ebpf.fleet_report: expected hostvars or saved reports (host: vars), got {kind}")
    failed_set = set(failed or [])
    host_rows, flows, interfaces, rules = [], [], [], []
    for host in hosts:
        hv = hostvars.get(host) or {}
        if not isinstance(hv, Mapping):
            raise AnsibleFilterError(f"cnf.ebpf.fleet_report: the variables of host {host} are a {type(hv).__name__}")
        tracker = hv.get("flow_tracker_report")
        filt = hv.get("xdp_filter_report")
        for field, report in (("flow_tracker_report", tracker), ("xdp_filter_report", filt)):
            if report is not None and not isinstance(report, Mapping):
                kind = type(report).__name__
                raise AnsibleFilterError(f"cnf.ebpf.fleet_report: {field} of host {host} is a {kind}, not a dict")
        error = None
        if host in failed_set:
            error = "the play failed on this host or could not reach it"
        elif tracker is None and filt is None:
            error = "no CNF report gathered (run the CNF roles with *_gather: true)"
        drift = [
            name for name, report in (("flow_tracker", tracker), ("xdp_filter", filt)) if (report or {}).get("changed")
        ]
        host_rows.append(
            {
                "host": host,
                "flow_tracker": tracker is not None,
                "xdp_filter": filt is not None,
                "flows": _number((tracker or {}).get("flow_count")),
                "event_drops": _number((tracker or {}).get("event_drops")),
                "rules": len((filt or {}).get("rules") or []),
                "drift": drift,
                "error": error,
                "gathered_at": (tracker or filt or {}).get("gathered_at"),
            }
        )
        if tracker:
            flows += _flows(host, tracker)
            interfaces += _interfaces(host, tracker)
        if filt:
            rules += _rules(host, filt)
    flows.sort(key=lambda row: (row["bytes"], row["packets"]), reverse=True)
    interfaces.sort(key=lambda row: (row["host"], str(row["netns"]), str(row["interface"])))
    rules.sort(key=lambda row: row["hits"], reverse=True)
    gathered = [row["gathered_at"] for row in host_rows if row["gathered_at"]]
    return {
        # The time of the data, not of the rendering: the same facts make the same report (and an unchanged file).
        "generated_at": max(gathered) if gathered else None,
        "hosts": host_rows,
        "talkers": flows[: int(top)],
        "interfaces": interfaces,
        "rules": rules,
        "totals": {
            "hosts": len(host_rows),
            "hosts_with_errors": sum(1 for row in host_rows if row["error"]),
            "hosts_with_drift": sum(1 for row in host_rows if row["drift"]),
            "flows": sum(row["flows"] for row in host_rows),
            "packets": sum(row["packets"] for row in interfaces),
            "bytes": sum(row["bytes"] for row in interfaces),
            "rule_hits": sum(row["hits"] for row in rules),
        },
    }


def si_number(value: Any) -> str:
    """`value` in 3 significant digits with a k/M/G/T prefix from 1000 on (integers below 1000 as they are): 0.0312,
    7.45, 463, 12.3k, 1M; '-' for none (no rate yet). A chart's bar and its label are drawn from the same number,
    so a small rate reads as itself (0.0312), never as a rounded 0.0 beside a bar of some length."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnsibleFilterError(f"cnf.ebpf.si_number: expected a number or none, got {value!r}")
    if isinstance(value, int) and abs(value) < 1000:
        return str(value)
    rounded = float(f"{value:.3g}")  # rounded first, so 999.96 becomes 1k rather than 1e+03
    for scale, prefix in SI_PREFIXES:
        if abs(rounded) >= scale:
            return f"{rounded / scale:.3g}{prefix}"
    return f"{rounded:.3g}"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fleet_report": fleet_report, "si_number": si_number}
