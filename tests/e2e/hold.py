#!/usr/bin/python3
"""Long-lived TCP connections for the end-to-end tests (tests/tests/e2e.rs), run in the client's namespace.

Opens --count keep-alive HTTP/1.1 connections to ADDR:PORT (tests/e2e/target.py answers "NAME conn=N"), one
request each, and prints one JSON line: a list with, per connection, {"sport", "answer"} or {"sport", "error"}.
Then, for every SIGUSR1, sends one more request on every connection still open and prints the same kind of line (a
connection that failed once stays failed: its "error" is repeated). Every socket operation has a timeout
(--timeout seconds), so a tick is bounded. Exits on SIGTERM.
"""
import argparse
import json
import signal
import socket


def request(s, host):
    s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(4096)
        if not data:
            raise OSError("connection closed by the peer")
        buf += data
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        data = s.recv(4096)
        if not data:
            raise OSError("connection closed in the body")
        body += data
    return body[:length].decode().strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    signals = {signal.SIGUSR1, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    conns = []
    for _ in range(a.count):
        s = socket.create_connection((a.addr, a.port), timeout=a.timeout)
        conns.append({"sock": s, "sport": s.getsockname()[1], "error": None})

    def tick():
        out = []
        for c in conns:
            if c["error"] is None:
                try:
                    out.append({"sport": c["sport"], "answer": request(c["sock"], a.addr)})
                    continue
                except OSError as e:
                    c["error"] = str(e) or type(e).__name__
                    c["sock"].close()
            out.append({"sport": c["sport"], "error": c["error"]})
        print(json.dumps(out), flush=True)

    tick()
    while signal.sigwait(signals) == signal.SIGUSR1:
        tick()


if __name__ == "__main__":
    main()
