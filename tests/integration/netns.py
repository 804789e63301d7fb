"""Throwaway network namespaces joined by a veth pair, and UDP traffic that stays inside them.

`VethPair` builds two named namespaces (`cnf-t-<random>-a` / `-b`), a veth pair between them with 10.200.<n>.1/24
(side a) and 10.200.<n>.2/24 (side b), static neighbour entries (so no packet waits for ARP) and removes it all in
`close()`. Setup uses `ip` (no pins involved); code that needs bpffs pins switches only the network namespace
in-process (`_hooks.in_netns`), because `ip netns exec` remounts /sys and hides /sys/fs/bpf.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from pyroute2 import netns as pyroute2_netns


def ip(*args: str) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def sysctl(ns: str, *settings: str) -> None:
    """Set sysctls in netns `ns` (a child process: `ip netns exec` remounting /sys there hides nothing of ours)."""
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sysctl {' '.join(settings)} in {ns}: {proc.stderr.strip()}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """This thread in netns `name` for the block (sockets opened inside stay there)."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        pyroute2_netns.setns(target, flags=0)
        yield
    finally:
        pyroute2_netns.setns(saved, flags=0)
        os.close(saved)
        os.close(target)


class VethPair:
    """Two namespaces and one veth pair; side a sends, side b receives (or the other way round)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.ns_a = f"cnf-t-{tag}-a"
        self.ns_b = f"cnf-t-{tag}-b"
        self.if_a = f"cnfa{tag}"
        self.if_b = f"cnfb{tag}"
        self.subnet = random.randint(1, 254)
        self.addr_a = f"10.200.{self.subnet}.1"
        self.addr_b = f"10.200.{self.subnet}.2"
        self.namespaces: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for name in (self.ns_a, self.ns_b):
            ip("netns", "add", name)
            self.namespaces.append(name)
            # No IPv6 unless a test asks for it (add_ipv6): a link-local address sends router solicitations and MLD
            # reports seconds after the link comes up, frames that land in a program's counters between two reads.
            sysctl(name, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        ip("-n", self.ns_a, "link", "add", self.if_a, "type", "veth", "peer", "name", self.if_b, "netns", self.ns_b)
        for ns, ifname, addr in ((self.ns_a, self.if_a, self.addr_a), (self.ns_b, self.if_b, self.addr_b)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", ifname, "up")
        mac_a = self.mac(self.ns_a, self.if_a)
        mac_b = self.mac(self.ns_b, self.if_b)
        ip("-n", self.ns_a, "neigh", "replace", self.addr_b, "lladdr", mac_b, "dev", self.if_a, "nud", "permanent")
        ip("-n", self.ns_b, "neigh", "replace", self.addr_a, "lladdr", mac_a, "dev", self.if_b, "nud", "permanent")

    @staticmethod
    def mac(ns: str, ifname: str) -> str:
        return json.loads(ip("-j", "-n", ns, "link", "show", "dev", ifname))[0]["address"]

    def link_json(self, ns: str, ifname: str) -> dict:
        return json.loads(ip("-j", "-d", "-n", ns, "link", "show", "dev", ifname))[0]

    def close(self) -> None:
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.namespaces = []

    # --- traffic -------------------------------------------------------------------------------------------------

    def add_ipv6(self) -> tuple[str, str]:
        """2001:db8:<n>::1/64 on side a, ::2/64 on side b, no DAD and static neighbours (an XDP program under test
        may drop neighbour discovery)."""
        addr_a, addr_b = f"2001:db8:{self.subnet:x}::1", f"2001:db8:{self.subnet:x}::2"
        sysctl(self.ns_a, f"net.ipv6.conf.{self.if_a}.disable_ipv6=0")
        sysctl(self.ns_b, f"net.ipv6.conf.{self.if_b}.disable_ipv6=0")
        ip("-n", self.ns_a, "addr", "add", f"{addr_a}/64", "dev", self.if_a, "nodad")
        ip("-n", self.ns_b, "addr", "add", f"{addr_b}/64", "dev", self.if_b, "nodad")
        mac_a, mac_b = self.mac(self.ns_a, self.if_a), self.mac(self.ns_b, self.if_b)
        ip("-n", self.ns_a, "neigh", "replace", addr_b, "lladdr", mac_b, "dev", self.if_a, "nud", "permanent")
        ip("-n", self.ns_b, "neigh", "replace", addr_a, "lladdr", mac_a, "dev", self.if_b, "nud", "permanent")
        return addr_a, addr_b

    def send_udp(
        self,
        ns: str,
        dst: str,
        port: int,
        count: int,
        payload: bytes = b"cnf-test",
        cpus: Sequence[int] = (),
        sport: int = 0,
    ) -> int:
        return send_udp(ns, dst, port, count, payload, cpus, sport)

    def udp_through(self, dst: str, count: int, port: int = 9100, cpus: Sequence[int] = ()) -> tuple[int, float]:
        """`count` datagrams from side a to `dst` (an address of side b) as fast as Python sends them: how many side
        b's socket received, and how long the send loop took (first to last datagram). `cpus`: as in send_udp."""
        code = (
            "import os,socket,sys,time\n"
            "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET,socket.SOCK_DGRAM)\n"
            "dst=(sys.argv[1],int(sys.argv[2]))\n"
            "n,cpus,cur=int(sys.argv[3]),[int(c) for c in sys.argv[4].split(',') if c],None\n"
            "start=time.monotonic()\n"
            "for i in range(n):\n"
            "    cpu=cpus[i*len(cpus)//n] if cpus else None\n"
            "    if cpu!=cur: os.sched_setaffinity(0,{cpu}); cur=cpu\n"
            "    s.sendto(b'cnf-test',dst)\n"
            "print(time.monotonic()-start)\n"
        )
        with entered(self.ns_b):
            sock = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((dst, port))
            proc = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.ns_a,
                    sys.executable,
                    "-c",
                    code,
                    dst,
                    str(port),
                    str(count),
                    ",".join(map(str, cpus)),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            return drain(sock), float(proc.stdout)
        finally:
            sock.close()

    def receiver(self, ns: str, addr: str, ports: list[int]) -> AbstractContextManager[dict[int, socket.socket]]:
        return receiver(ns, addr, ports)


def send_udp(
    ns: str,
    dst: str,
    port: int,
    count: int,
    payload: bytes = b"cnf-test",
    cpus: Sequence[int] = (),
    sport: int = 0,
) -> int:
    """`count` datagrams (IPv4 or IPv6, by `dst`) from one socket in a subprocess in `ns` (ip netns exec: it
    needs no pins), from source port `sport` (0: any); returns the source port they were sent from. With `cpus`,
    the sender runs on each of them in turn for an equal share of the datagrams (a veth peer's XDP program runs on
    the sending CPU): one flow seen by several CPUs."""
    code = (
        "import os,socket,sys\n"
        "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind(('::' if ':' in sys.argv[1] else '0.0.0.0',int(sys.argv[6])))\n"
        "n,cpus,cur=int(sys.argv[3]),[int(c) for c in sys.argv[5].split(',') if c],None\n"
        "for i in range(n):\n"
        "    cpu=cpus[i*len(cpus)//n] if cpus else None\n"
        "    if cpu!=cur: os.sched_setaffinity(0,{cpu}); cur=cpu\n"
        "    s.sendto(sys.argv[4].encode(),(sys.argv[1],int(sys.argv[2])))\n"
        "print(s.getsockname()[1])\n"
    )
    args = [dst, str(port), str(count), payload.decode(), ",".join(map(str, cpus)), str(sport)]
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


@contextmanager
def receiver(ns: str, addr: str, ports: list[int]) -> Iterator[dict[int, socket.socket]]:
    """UDP sockets bound in `ns` (opened in-process, then used from the original namespace)."""
    socks: dict[int, socket.socket] = {}
    try:
        with entered(ns):
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((addr, port))
                socks[port] = sock
        yield socks
    finally:
        for sock in socks.values():
            sock.close()


def drain(sock: socket.socket, quiet: float = 0.3) -> int:
    """How many datagrams arrive until none has come for `quiet` seconds."""
    sock.settimeout(quiet)
    got = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            sock.recv(2048)
        except TimeoutError:
            break
        got += 1
    return got
