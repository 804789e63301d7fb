"""bpf_events with real packets: an XDP program on a veth pair emits one event per UDP datagram to a ring buffer and
to a perf event array; captures return every event decoded field by field, bounded by count and timeout, filtered by
a JMESPath query, written to a JSON lines file, with losses reported (not hidden), and check mode reads nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import MODULES, application, compile_bpf, run_module
from .netns import VethPair

EVENTS_SRC = Path(__file__).parent / "data" / "events_udp.c"
FORMATS = {"event.src": "ipv4", "event.dst": "ipv4"}
# Ethernet 14 + IPv4 20 + UDP 8 + a 4-byte sequence number.
FRAME_LEN = 46


@pytest.fixture
def app(tmp_path: Path, veth: VethPair) -> Any:
    """An application name for the events program (deploy() loads and attaches it); removed afterwards."""
    yield from application(tmp_path, "e")


def deploy(app: dict[str, Any], veth: VethPair, **args: Any) -> None:
    deployed = run_module("bpf_program", dict(app, src=str(EVENTS_SRC), **args))
    assert deployed.get("failed") is not True, deployed
    attached = run_module(
        "bpf_attach",
        {
            "state_dir": app["state_dir"],
            "program": f"{app['name']}/xdp_events",
            "kind": "xdp",
            "interface": veth.if_b,
            "netns": veth.ns_b,
        },
    )
    assert attached.get("failed") is not True, attached


def send(veth: VethPair, port: int, seqs: range, cpu: int | None = None) -> None:
    """One datagram per sequence number (4 bytes, big endian) from side a to side b, from one CPU (the first this
    process may use, unless given): veth runs the receiving side's XDP program on the sending CPU, so events come
    in sending order."""
    if cpu is None:
        cpu = min(os.sched_getaffinity(0))
    code = (
        "import os,socket,sys\n"
        "os.sched_setaffinity(0, {int(sys.argv[5])})\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "dst=(sys.argv[1],int(sys.argv[2]))\n"
        "for i in range(int(sys.argv[3]),int(sys.argv[4])): s.sendto(i.to_bytes(4,'big'),dst)\n"
    )
    args = [veth.addr_b, str(port), str(seqs.start), str(seqs.stop), str(cpu)]
    subprocess.run(["ip", "netns", "exec", veth.ns_a, sys.executable, "-c", code, *args], check=True)


def typed(app: dict[str, Any], **args: Any) -> dict[str, Any]:
    """bpf_events options for the ring buffer, decoded with the loaded program's BTF."""
    params = {
        "path": f"{app['name']}/events",
        "program": f"{app['name']}/xdp_events",
        "event_type": "struct pkt_event",
        "formats": FORMATS,
        "drops_map": f"{app['name']}/ringbuf_drops",
        "timeout": 1,
    }
    params.update(args)
    return params


class Background:
    """bpf_events in a subprocess (as run_module runs it), to emit events while it captures."""

    def __init__(self, args: dict[str, Any]) -> None:
        payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False, _ansible_diff=False)}
        self.args_file = Path(f"/tmp/cnf-ebpf-args-{uuid.uuid4().hex}.json")
        self.args_file.write_text(json.dumps(payload))
        self.proc = subprocess.Popen(
            [sys.executable, str(MODULES / "bpf_events.py"), str(self.args_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_reading(self, mapping: str, count: int = 1) -> None:
        """Until the process has `count` mappings of `mapping` (its buffers are set up: the capture has begun)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            with open(f"/proc/{self.proc.pid}/maps", encoding="utf-8") as f:
                if sum(1 for line in f if line.rstrip().endswith(mapping)) >= count:
                    time.sleep(0.2)
                    return
            time.sleep(0.05)
        raise AssertionError(f"bpf_events did not start reading ({mapping})")

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=60)
        finally:
            self.args_file.unlink()
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            raise AssertionError(f"bpf_events printed no JSON:\n{out}\n{err}") from None


def check_events(veth: VethPair, events: list[dict[str, Any]], port: int, seqs: range) -> None:
    assert sorted(e["seq"] for e in events) == list(seqs)
    for event in events:
        assert event["src"] == veth.addr_a and event["dst"] == veth.addr_b
        assert event["dst_port"] == port and 1024 <= event["src_port"] <= 65535
        assert event["len"] == FRAME_LEN
        assert set(event) == {"src", "dst", "src_port", "dst_port", "seq", "len", "cpu"}


def test_ringbuf_events_decoded_field_by_field(app: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    deploy(app, veth)
    send(veth, 7001, range(0, 300))
    send(veth, 7002, range(300, 400))
    dest = tmp_path / "events.jsonl"
    got = run_module("bpf_events", typed(app, query="[?dst_port == `7001`]", max_events=250, dest=str(dest)))
    assert got["changed"] is False and got.get("failed") is not True, got
    assert got["received"] == 400 and got["lost"] == 0 and got["stopped"] == "timeout"
    assert got["map"]["type"] == "ringbuf"
    assert got["truncated"] is True and len(got["events"]) == 250
    assert all(e["dst_port"] == 7001 for e in got["events"])
    written = [json.loads(line) for line in dest.read_text().splitlines()]
    assert len(written) == 400  # every received event, not the filtered, limited result
    check_events(veth, [e for e in written if e["dst_port"] == 7001], 7001, range(0, 300))
    check_events(veth, [e for e in written if e["dst_port"] == 7002], 7002, range(300, 400))
    assert [e["seq"] for e in written] == list(range(400))  # one sender, one CPU queue: in order
    # They were consumed; a non-list query result comes back as is.
    again = run_module("bpf_events", typed(app, timeout=0, query="length(@)"))
    assert again["received"] == 0 and again["events"] == 0


def test_count_and_timeout_bound_the_capture(app: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    deploy(app, veth)
    obj = compile_bpf(EVENTS_SRC, tmp_path / "events.o")
    send(veth, 7001, range(50))
    started = time.monotonic()
    by_object = typed(app, object=str(obj), count=20, timeout=30)
    by_object.pop("program")
    first = run_module("bpf_events", by_object)
    assert time.monotonic() - started < 15, "count did not end the capture"
    assert first.get("failed") is not True, first
    assert first["received"] == 20 and first["stopped"] == "count" and first["elapsed"] < 15
    check_events(veth, first["events"], 7001, range(20))
    rest = run_module("bpf_events", typed(app, count=1000, timeout=0.5))
    assert rest["received"] == 30 and rest["stopped"] == "timeout"
    assert 0.5 <= rest["elapsed"] < 5
    check_events(veth, rest["events"], 7001, range(20, 50))
    # Without a type: hex strings of the 24-byte struct.
    send(veth, 7003, range(3))
    raw = run_module("bpf_events", {"path": f"/sys/fs/bpf/cnf/{app['name']}/maps/events", "timeout": 0})
    assert raw["received"] == 3 and raw["lost"] is None
    assert all(isinstance(e, str) and len(e) == 48 for e in raw["events"])
    assert [int(e[24:32], 16) for e in raw["events"]] == [0, 1 << 24, 2 << 24]  # seq, host (little endian) order


def test_check_mode_consumes_nothing(app: dict[str, Any], veth: VethPair) -> None:
    deploy(app, veth)
    send(veth, 7001, range(10))
    checked = run_module("bpf_events", typed(app), check=True)
    assert checked["changed"] is False and checked["received"] == 0 and checked["events"] == []
    assert "check mode" in checked["msg"]
    got = run_module("bpf_events", typed(app, timeout=0))
    assert got["received"] == 10
    check_events(veth, got["events"], 7001, range(10))


def test_full_ringbuf_losses_are_reported(app: dict[str, Any], veth: VethPair) -> None:
    deploy(app, veth, map_sizes={"events": 4096})  # one page: 4096 / (8 + 24) = 128 events at most
    capture = Background(typed(app, count=10000, timeout=6))
    capture.wait_reading("anon_inode:bpf-map")
    os.kill(capture.proc.pid, signal.SIGSTOP)  # the reader stalls; the program keeps emitting
    try:
        send(veth, 7001, range(1000))
    finally:
        os.kill(capture.proc.pid, signal.SIGCONT)
    got = capture.result()
    assert got.get("failed") is not True, got
    assert 0 < got["received"] <= 128 and got["lost"] > 0
    assert got["received"] + got["lost"] == 1000
    check_events(veth, got["events"], 7001, range(got["received"]))  # the first ones fit, the rest were dropped


def test_perf_event_array_events_and_losses(app: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    deploy(app, veth)
    obj = compile_bpf(EVENTS_SRC, tmp_path / "events.o")
    perf = {
        "path": f"{app['name']}/perf_events",
        "object": str(obj),
        "event_type": "pkt_event",
        "formats": FORMATS,
    }
    ncpus = os.cpu_count() or 1
    # Perf event arrays keep nothing without a reader: start the capture, then send.
    capture = Background(dict(perf, count=200, timeout=20))
    capture.wait_reading("anon_inode:[perf_event]", ncpus)
    send(veth, 7001, range(200))
    got = capture.result()
    assert got.get("failed") is not True, got
    assert got["map"]["type"] == "perf_event_array"
    assert got["received"] == 200 and got["lost"] == 0 and got["stopped"] == "count"
    check_events(veth, got["events"], 7001, range(200))
    # A one-page buffer and a stalled reader: the kernel counts what did not fit and reports it with the next sample.
    capture = Background(dict(perf, count=100000, timeout=6, perf_pages=1))
    capture.wait_reading("anon_inode:[perf_event]", ncpus)
    os.kill(capture.proc.pid, signal.SIGSTOP)
    try:
        send(veth, 7001, range(1000))
    finally:
        os.kill(capture.proc.pid, signal.SIGCONT)
    time.sleep(1)
    # The kernel writes a CPU buffer's lost record before that CPU's next sample: send some from every CPU.
    cpus = sorted(os.sched_getaffinity(0))
    trailing = range(1000, 1000 + 10 * len(cpus))
    for index, cpu in enumerate(cpus):
        send(veth, 7001, trailing[index * 10 : index * 10 + 10], cpu=cpu)
    got = capture.result()
    assert got.get("failed") is not True, got
    assert got["lost"] > 0 and got["received"] + got["lost"] == trailing.stop
    assert set(trailing) <= {e["seq"] for e in got["events"]}


def test_bad_input_fails_before_reading(app: dict[str, Any], veth: VethPair) -> None:
    deploy(app, veth)
    send(veth, 7001, range(5))
    missing = run_module("bpf_events", typed(app, event_type="struct nope"))
    assert missing["failed"] and "no type 'struct nope'" in missing["msg"]
    bad_query = run_module("bpf_events", typed(app, query="[?"))
    assert bad_query["failed"] and bad_query["msg"].startswith("query:")
    not_events = run_module("bpf_events", typed(app, path=f"{app['name']}/ringbuf_drops"))
    assert not_events["failed"] and "percpu_array map carries no events" in not_events["msg"]
    no_btf_source = run_module("bpf_events", {"path": f"{app['name']}/events", "event_type": "pkt_event"})
    assert no_btf_source["failed"] and "needs object or program" in no_btf_source["msg"]
    assert run_module("bpf_events", typed(app, timeout=0))["received"] == 5  # nothing was consumed
