#!/usr/bin/env python3
"""Host-side checks of the QEMU VFIO harness (tests/qemu/run.sh).

  check.py flows OUT.pcap VIP PORT N          write N TCP SYNs (distinct sources) to VIP:PORT, LINKTYPE_RAW
  check.py same-tables DEVICE.json REF.json   the device's `ironlb dump -o json` programs the same LBs as the
                                              reference dump of the manifests (layout-independent comparison)
  check.py forwarded VERDICTS.jsonl DEVICE.json VIP [--has U] [--lacks U]
                                              every flow was forwarded, and exactly to the targets the device's
                                              LB for VIP holds (each of them used)
Exit status 1 with a message on stderr when a check fails.
"""
import ipaddress
import json
import struct
import sys


def fail(msg):
    sys.stderr.write("check.py: FAILED: " + msg + "\n")
    sys.exit(1)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(src, dst, sport, dport):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


def flows(out, vip, port, n):
    dst = ipaddress.IPv4Address(vip).packed
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for i in range(int(n)):
            src = ipaddress.IPv4Address(0xC6336400 + 1 + i % 250).packed  # 198.51.100.x
            p = syn(src, dst, 20000 + i, int(port))
            f.write(struct.pack("<IIII", 1, i, len(p), len(p)) + p)


def lbs(path):
    """LBs of a dump, keyed by their VIP set, with target indices replaced by underlay addresses."""
    with open(path) as f:
        dump = json.load(f)
    out = {}
    for lb in dump["lbs"].values():
        if not lb["consistent"]:
            fail("%s: lb %s has inconsistent VIP entries" % (path, lb["lb_id"]))
        targets = {int(i): t["underlay"] for i, t in lb["targets"].items()}
        vips = tuple(sorted((v["entry"]["vip"], v["entry"]["domain"]) for v in lb["vips"]))
        out[vips] = {
            "icmp": [v["entry"]["icmp"] for v in lb["vips"]][0],
            "ranges": sorted(json.dumps(r, sort_keys=True) for r in lb["ranges"]),
            "targets": sorted(targets.values()),
            "slots": [targets.get(s) for s in lb["slots"]],
        }
    if dump.get("orphan_targets"):
        fail("%s: orphan target entries %s" % (path, dump["orphan_targets"]))
    return out


def same_tables(device, ref):
    d, r = lbs(device), lbs(ref)
    if not d:
        fail("%s holds no LB" % device)
    if d.keys() != r.keys():
        fail("LBs differ: device %s, manifests %s" % (sorted(d), sorted(r)))
    for k in d:
        for field in ("icmp", "ranges", "targets", "slots"):
            if d[k][field] != r[k][field]:
                fail("LB %s: %s differ:\n device    %s\n manifests %s" % (k, field, d[k][field], r[k][field]))
    print("device tables == manifests: %d LBs, %s" % (len(d), ", ".join(
        "%s -> %d targets" % (k[0][0], len(v["targets"])) for k, v in sorted(d.items()))))


def forwarded(verdicts, device, vip, extra):
    lb = [v for k, v in lbs(device).items() if any(a == vip for a, _ in k)]
    if len(lb) != 1:
        fail("no single LB with VIP %s in %s" % (vip, device))
    want = set(lb[0]["targets"])
    got = {}
    with open(verdicts) as f:
        for line in f:
            v = json.loads(line)
            if v["verdict"] != "forward":
                fail("packet %d not forwarded: %s" % (v["index"], line.strip()))
            got[v["underlay"]] = got.get(v["underlay"], 0) + 1
    if set(got) != want:
        fail("flows to %s went to %s; the device's targets are %s" % (vip, sorted(got), sorted(want)))
    args = iter(extra)
    for flag in args:
        addr = next(args)
        if flag == "--has" and addr not in got:
            fail("no flow to %s reached %s" % (vip, addr))
        if flag == "--lacks" and addr in got:
            fail("%d flows to %s still reach %s" % (got[addr], vip, addr))
    print("%d flows to %s forwarded to the device's %d targets: %s" % (
        sum(got.values()), vip, len(want), ", ".join("%s x%d" % kv for kv in sorted(got.items()))))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "flows":
        flows(*args)
    elif cmd == "same-tables":
        same_tables(*args)
    elif cmd == "forwarded":
        forwarded(args[0], args[1], args[2], args[3:])
    else:
        fail("unknown command %s" % cmd)
