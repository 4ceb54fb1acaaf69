#!/usr/bin/env python3
"""IP fragment probes for the lab tests (tests/integration/lab_test.cc), run inside a lab
namespace with `ip netns exec`. Every mode is bounded in time and count.

  send SRC DST SPORT DPORT IPID PAYLOAD PIECE ORDER
      Builds one UDP datagram (PAYLOAD bytes, correct checksum) and sends it as IPv4
      fragments of PIECE bytes of UDP data each (a multiple of 8), in ORDER (comma-separated
      fragment indexes, e.g. "2,0,1", or explicit OFFSET:LEN ranges of the UDP bytes, e.g.
      "0:104,96:212" for an overlap; MF is set unless a piece reaches the end), through a
      raw IP_HDRINCL socket. Prints "sent N".
  listen PORT SECONDS
      Binds UDP PORT, prints "ready", waits up to SECONDS for one datagram and prints
      "got LEN SUM" (SUM: the payload's byte sum); exit 1 if none came.
  count SRC SECONDS
      Counts IPv4 frames from SRC seen by an AF_PACKET socket for SECONDS; prints "ready",
      then one line "id IPID frames N offsets O1,O2,..." (sorted) per IP id, then "done".
  metrics HOST:PORT
      GET /metrics from nwfqd's Prometheus endpoint; prints the body.
"""
import select
import socket
import struct
import sys
import time


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def send(src, dst, sport, dport, ipid, payload_len, piece, order):
    payload = bytes((i * 7 + 3) & 0xFF for i in range(payload_len))
    udp_len = 8 + len(payload)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    assert piece % 8 == 0 and piece > 0
    # (offset, bytes): fixed-size pieces by index, or explicit "offset:len" ranges.
    fixed = [(o, udp[o:o + piece]) for o in range(0, len(udp), piece)]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    n = 0
    for item in order:
        if ":" in item:
            off, ln = (int(x) for x in item.split(":"))
            data = udp[off:off + ln]
        else:
            off, data = fixed[int(item)]
        more = 0x2000 if off + len(data) < len(udp) else 0
        frag = more | (off // 8)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(data), ipid, frag, 64, 17, 0,
                          socket.inet_aton(src), socket.inet_aton(dst))
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
        s.sendto(hdr + data, (dst, 0))
        n += 1
        time.sleep(0.02)
    print("sent", n, flush=True)


def listen(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    r, _, _ = select.select([s], [], [], seconds)
    if not r:
        print("none", flush=True)
        return 1
    data = s.recv(65536)
    print("got", len(data), sum(data), flush=True)
    return 0


def count(src, seconds):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    want = socket.inet_aton(src)
    seen = {}
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        frame, addr = s.recvfrom(65536)
        if addr[2] == socket.PACKET_OUTGOING or len(frame) < 34:
            continue
        ip = frame[14:]
        if ip[12:16] != want:
            continue
        ipid, frag = struct.unpack("!HH", ip[4:8])
        seen.setdefault(ipid, []).append((frag & 0x1FFF) * 8)
    for ipid, offs in sorted(seen.items()):
        print("id", ipid, "frames", len(offs), "offsets", ",".join(map(str, sorted(offs))))
    print("done", flush=True)
    return 0


def metrics(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as c:
        c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        c.settimeout(5)
        out = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            out += b
    sys.stdout.write(out.decode("utf-8", "replace"))
    return 0


def main(argv):
    mode = argv[1]
    if mode == "send":
        send(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]), int(argv[7]),
             int(argv[8]), argv[9].split(","))
        return 0
    if mode == "listen":
        return listen(int(argv[2]), float(argv[3]))
    if mode == "count":
        return count(argv[2], float(argv[3]))
    if mode == "metrics":
        return metrics(argv[2])
    print("unknown mode", mode, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
