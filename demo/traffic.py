#!/usr/bin/env python3
"""Demo traffic for one sandbox host (demo/sandbox.sh traffic): flows through the flow tracker's interface and
packets from allowed, denied and rate-limited sources through the XDP filter's, all inside the sandbox's
namespaces. Prints what was sent and what arrived. Usage: traffic.py HOST N (as root)."""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def netns(name: str) -> Iterator[None]:
    """This thread in netns `name` for the block; sockets made inside stay there (Python 3.11 has no os.setns)."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        _libc.setns(saved, CLONE_NEWNET)
        os.close(saved)
        os.close(target)


def udp(ns: str, src: str, dst: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with netns(ns):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # a whole burst fits: arrivals are exact
        sock.bind((src, 0) if src else (dst, port))
    return sock


def drain(sock: socket.socket) -> int:
    sock.settimeout(0.3)
    got = 0
    try:
        while True:
            sock.recv(4096)
            got += 1
    except TimeoutError:
        return got


def flow(host_ns: str, peer_ns: str, src: str, dst: str, port: int, count: int, size: int, pace: float = 0) -> int:
    """`count` datagrams of `size` bytes from src to dst:port; returns how many arrived."""
    receiver = udp(host_ns, "", dst, port)
    sender = udp(peer_ns, src, dst, port)
    try:
        payload = b"x" * size
        for _ in range(count):
            sender.sendto(payload, (dst, port))
            if pace:
                time.sleep(pace)
        return drain(receiver)
    finally:
        sender.close()
        receiver.close()


def main() -> None:
    host, n = sys.argv[1], int(sys.argv[2])
    host_ns, peer_ns = f"cnfdemo-{host}", f"cnfdemo-{host}-peer"
    cases: list[tuple[str, Callable[[], int], int]] = []

    def case(label: str, count: int, **kw: Any) -> None:
        cases.append((label, lambda: flow(host_ns, peer_ns, count=count, **kw), count))

    # Through ft0 (the flow tracker): a few flows of different weight, both families.
    case("tracker udp 10.77.%d.2 -> :8080 (1200 B)" % n, 100 * n, src=f"10.77.{n}.2", dst=f"10.77.{n}.1", port=8080, size=1200)
    case("tracker udp 10.77.%d.2 -> :443 (800 B)" % n, 60, src=f"10.77.{n}.2", dst=f"10.77.{n}.1", port=443, size=800)
    case("tracker udp 10.77.%d.2 -> :53 (80 B)" % n, 30, src=f"10.77.{n}.2", dst=f"10.77.{n}.1", port=53, size=80)
    case("tracker udp fd00:77:%d::2 -> :9000 (500 B)" % n, 40, src=f"fd00:77:{n}::2", dst=f"fd00:77:{n}::1", port=9000, size=500)
    # Through fw0 (the XDP filter): one source per rule.
    case("filter 10.78.%d.2 (allowed)" % n, 20, src=f"10.78.{n}.2", dst=f"10.78.{n}.1", port=7000, size=64)
    case("filter 10.78.%d.3 (denied)" % n, 20, src=f"10.78.{n}.3", dst=f"10.78.{n}.1", port=7000, size=64)
    case("filter 10.78.%d.4 (rate limit 50/s, burst 10)" % n, 200, src=f"10.78.{n}.4", dst=f"10.78.{n}.1", port=7000, size=64)
    case("filter fd00:78:%d::3 (denied)" % n, 10, src=f"fd00:78:{n}::3", dst=f"fd00:78:{n}::1", port=7000, size=64)
    case("filter fd00:78:%d::2 (default: allow)" % n, 10, src=f"fd00:78:{n}::2", dst=f"fd00:78:{n}::1", port=7000, size=64)

    print(f"{host}: traffic inside {peer_ns} -> {host_ns}")
    for label, run, count in cases:
        print(f"  {label:<48} sent {count:>4}  arrived {run():>4}")


if __name__ == "__main__":
    main()
