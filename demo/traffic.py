"""Demo traffic for one sandbox host (demo/sandbox.sh traffic): flows through the flow tracker's interface and
packets from allowed, denied and rate-limited sources through the XDP filter's, all inside the sandbox's
namespaces. Prints what was sent and what arrived. Usage: traffic.py HOST N (as root)."""

from __future__ import annotations

import ctypes
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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


def flow(host_ns: str, peer_ns: str, src: str, dst: str, port: int, count: int, size: int) -> int:
    """`count` datagrams of `size` bytes from src to dst:port; returns how many arrived."""
    receiver = udp(host_ns, "", dst, port)
    sender = udp(peer_ns, src, dst, port)
    try:
        payload = b"x" * size
        for _sent in range(count):
            sender.sendto(payload, (dst, port))
        return drain(receiver)
    finally:
        sender.close()
        receiver.close()


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: traffic.py HOST N (see demo/sandbox.sh traffic)")
    host, n = sys.argv[1], int(sys.argv[2])
    host_ns, peer_ns = f"cnfdemo-{host}", f"cnfdemo-{host}-peer"
    # (label, source, destination, port, datagrams, bytes each)
    cases = [
        # Through ft0 (the flow tracker): a few flows of different weight, both families.
        ("tracker udp -> :8080 (1200 B)", f"10.77.{n}.2", f"10.77.{n}.1", 8080, 100 * n, 1200),
        ("tracker udp -> :443 (800 B)", f"10.77.{n}.2", f"10.77.{n}.1", 443, 60, 800),
        ("tracker udp -> :53 (80 B)", f"10.77.{n}.2", f"10.77.{n}.1", 53, 30, 80),
        ("tracker udp over IPv6 -> :9000 (500 B)", f"fd00:77:{n}::2", f"fd00:77:{n}::1", 9000, 40, 500),
        # Through fw0 (the XDP filter): one source per rule.
        ("filter 10.78.N.2 (allowed)", f"10.78.{n}.2", f"10.78.{n}.1", 7000, 20, 64),
        ("filter 10.78.N.3 (denied)", f"10.78.{n}.3", f"10.78.{n}.1", 7000, 20, 64),
        ("filter 10.78.N.4 (rate limit 50/s, burst 10)", f"10.78.{n}.4", f"10.78.{n}.1", 7000, 200, 64),
        ("filter fd00:78:N::3 (denied)", f"fd00:78:{n}::3", f"fd00:78:{n}::1", 7000, 10, 64),
        ("filter fd00:78:N::2 (default: allow)", f"fd00:78:{n}::2", f"fd00:78:{n}::1", 7000, 10, 64),
    ]
    print(f"{host}: traffic inside {peer_ns} -> {host_ns}")
    for label, src, dst, port, count, size in cases:
        arrived = flow(host_ns, peer_ns, src, dst, port, count, size)
        print(f"  {label:<48} sent {count:>4}  arrived {arrived:>4}")


if __name__ == "__main__":
    main()
