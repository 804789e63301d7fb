"""Start, wait for and stop the qemu guests of the molecule scenarios.

Guests run under TCG (KVM hangs on these machines), boot the image's kernel directly (-kernel/-initrd) from a qcow2
overlay over the cached base image, and are reached by SSH through a port forward on 127.0.0.1. Their management NIC
is qemu's user network with restrict=on: a guest can reach nothing but the forwarded port. A second NIC can join two
guests point to point (-netdev socket on 127.0.0.1), for traffic between them.

  vm.py start NAME --image DIR --rundir DIR --ssh-port N [--link listen:PORT | --link connect:PORT] [--index I]
  vm.py wait NAME --image DIR --rundir DIR --ssh-port N [--timeout S]
  vm.py stop NAME --rundir DIR
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def ssh_command(image: Path, port: int) -> list[str]:
    return [
        "ssh",
        "-i",
        str(image / "id_ed25519"),
        "-p",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        "root@127.0.0.1",
    ]


def start(args: argparse.Namespace) -> None:
    rundir = Path(args.rundir) / args.name
    rundir.mkdir(parents=True, exist_ok=True)
    image = Path(args.image).resolve()
    overlay = rundir / "disk.qcow2"
    if overlay.exists():
        overlay.unlink()
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image / "disk.qcow2"), str(overlay)],
        check=True,
    )
    cmd = [
        "qemu-system-x86_64",
        "-name", args.name,
        "-machine", "q35,accel=tcg",
        "-cpu", "max",
        "-smp", "1",
        "-m", str(args.memory),
        "-kernel", str(image / "vmlinuz"),
        "-initrd", str(image / "initrd.img"),
        "-append", "root=/dev/vda rw console=ttyS0 mitigations=off net.ifnames=0 quiet",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{args.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac=52:54:00:00:00:{args.index:02x}",
        "-display", "none",
        "-serial", f"file:{rundir / 'console.log'}",
        "-pidfile", str(rundir / "qemu.pid"),
        "-daemonize",
    ]  # fmt: skip
    if args.link:
        mode, port = args.link.split(":")
        cmd += [
            "-netdev", f"socket,id=link,{mode}=127.0.0.1:{port}",
            "-device", f"virtio-net-pci,netdev=link,mac=52:54:00:01:00:{args.index:02x}",
        ]  # fmt: skip
    subprocess.run(cmd, check=True)


def wait(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    ssh = ssh_command(Path(args.image), args.ssh_port)
    while time.monotonic() < deadline:
        if subprocess.run([*ssh, "true"], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(2)
    console = Path(args.rundir) / args.name / "console.log"
    tail = console.read_text(errors="replace")[-3000:] if console.exists() else "(no console log)"
    sys.exit(f"{args.name}: no SSH on 127.0.0.1:{args.ssh_port} after {args.timeout}s; console:\n{tail}")


def stop(args: argparse.Namespace) -> None:
    rundir = Path(args.rundir) / args.name
    pidfile = rundir / "qemu.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().strip() or 0)
        try:
            os.kill(pid, signal.SIGTERM)
            for _tick in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pidfile.unlink(missing_ok=True)  # qemu removes it itself when it exits
    overlay = rundir / "disk.qcow2"
    if overlay.exists():
        overlay.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "wait", "stop"])
    parser.add_argument("name")
    parser.add_argument("--image")
    parser.add_argument("--rundir", required=True)
    parser.add_argument("--ssh-port", type=int)
    parser.add_argument("--link")
    parser.add_argument("--index", type=int, default=1)
    parser.add_argument("--memory", type=int, default=1536)
    parser.add_argument("--timeout", type=int, default=240)
    args = parser.parse_args()
    {"start": start, "wait": wait, "stop": stop}[args.action](args)


if __name__ == "__main__":
    main()
