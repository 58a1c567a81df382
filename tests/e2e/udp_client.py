#!/usr/bin/python3
"""UDP client of the end-to-end tests: COUNT datagrams to DST:PORT, each from a new socket (a new source port, so a
new flow), each waiting up to TIMEOUT seconds for its answer. Prints one JSON object:
{"sent": COUNT, "answers": {target: n}, "lost": n}."""
import json
import socket
import sys

dst, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
answers, lost = {}, 0
for i in range(count):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.connect((dst, port))
    msg = f"probe {i}".encode()
    s.send(msg)
    try:
        data = s.recv(65535)
        name, _, echo = data.partition(b" ")
        if echo != msg:
            raise SystemExit(f"answer {data!r} does not echo {msg!r}")
        answers[name.decode()] = answers.get(name.decode(), 0) + 1
    except socket.timeout:
        lost += 1
    s.close()
print(json.dumps({"sent": count, "answers": answers, "lost": lost}))
