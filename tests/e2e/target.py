#!/usr/bin/python3
"""A target VM's servers for the end-to-end tests (tests/tests/e2e.rs), run inside the target's namespace.

HTTP/1.1 on every --tcp port (dual stack, all addresses; keep-alive): each response body is
"NAME conn=N\n", N numbering the TCP connections this target accepted, so a client can tell that several requests
travelled one connection to one target. UDP on every --udp ADDR:PORT (bound to the VIP, so replies leave with the
VIP as source: direct server return): each datagram is answered with "NAME " + the datagram.
Prints "ready" once every socket listens. Exits on SIGTERM.
"""
import argparse
import itertools
import signal
import socket
import sys
import threading

conn_ids = itertools.count(1)


def serve_http(conn, name):
    cid = next(conn_ids)
    conn.settimeout(60)
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            body = f"{name} conn={cid}\n".encode()
            close = b"connection: close" in head.lower()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                         % (len(body), b"Connection: close\r\n" if close else b"", body))
            if close:
                return
    except OSError:
        pass
    finally:
        conn.close()


def tcp_listener(port, name):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(128)

    def run():
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve_http, args=(c, name), daemon=True).start()

    return run


def udp_listener(addr, port, name):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, port))

    def run():
        while True:
            data, peer = s.recvfrom(65535)
            s.sendto(name.encode() + b" " + data, peer)

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--tcp", action="append", type=int, default=[])
    ap.add_argument("--udp", action="append", default=[], help="ADDR:PORT (IPv6 as [ADDR]:PORT)")
    a = ap.parse_args()
    runs = [tcp_listener(p, a.name) for p in a.tcp]
    for spec in a.udp:
        addr, port = spec.rsplit(":", 1)
        runs.append(udp_listener(addr.strip("[]"), int(port), a.name))
    for r in runs:
        threading.Thread(target=r, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    signal.pause()


if __name__ == "__main__":
    main()
