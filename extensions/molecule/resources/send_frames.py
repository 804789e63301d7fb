"""Send N Ethernet/IPv4/UDP frames out of one end of a veth pair with an AF_PACKET socket, so they arrive at the
other end's XDP hook (two ends in one network namespace would otherwise talk over the local route, not the wire).
Usage: send_frames.py OUT_IF IN_IF SRC DST SPORT DPORT COUNT PAYLOAD_BYTES"""

import socket
import struct
import sys


def checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def main() -> None:
    out_if, in_if, src, dst, sport, dport, count, size = sys.argv[1:9]
    mac = {}
    for name in (out_if, in_if):
        with open(f"/sys/class/net/{name}/address", encoding="ascii") as f:
            mac[name] = bytes.fromhex(f.read().strip().replace(":", ""))
    payload = bytes(int(size))
    udp = struct.pack("!HHHH", int(sport), int(dport), 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    frame = mac[in_if] + mac[out_if] + struct.pack("!H", 0x0800) + ip + udp
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((out_if, 0))
    for _frame in range(int(count)):
        sock.send(frame)
    print(len(frame))


if __name__ == "__main__":
    main()
