"""The process that stands in for a pod's containers: it answers on the pod's container ports.

    python3 server.py NAME --tcp 80,8080 --udp 53

Runs inside the pod's network namespace (``ip netns exec``). Every TCP connection gets ``NAME\\n`` and
is closed; every UDP datagram is answered with ``NAME``. The name lets a probe tell the server it
reached from any other. Prints ``ready`` once every socket is bound, so the harness never probes a
port nobody listens on yet. Standard library only: it runs under any python3.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys


def ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--tcp", type=ports, default=[])
    parser.add_argument("--udp", type=ports, default=[])
    args = parser.parse_args()
    banner = args.name.encode()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sel = selectors.DefaultSelector()
    try:
        for port in args.tcp:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("0.0.0.0", port))
            tcp.listen(256)
            tcp.setblocking(False)
            sel.register(tcp, selectors.EVENT_READ, "tcp")
        for port in args.udp:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("0.0.0.0", port))
            udp.setblocking(False)
            sel.register(udp, selectors.EVENT_READ, "udp")
    except OSError as exc:
        print(f"error: {args.name}: cannot listen: {exc}", flush=True)
        return 1
    print("ready", flush=True)
    sys.stdout.close()  # the harness may be gone by now (the human script detaches)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if key.data == "tcp":
                    conn, _ = sock.accept()
                    with conn:
                        conn.settimeout(1)
                        conn.sendall(banner + b"\n")
                else:
                    _, peer = sock.recvfrom(2048)
                    sock.sendto(banner, peer)
            except OSError:
                pass  # a client that went away, or a blocked reply: nothing to do for a stand-in


if __name__ == "__main__":
    sys.exit(main())
