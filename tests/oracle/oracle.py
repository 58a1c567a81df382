#!/usr/bin/python3
"""Independent oracle for the ironlb device model.

Crafts packets with scapy, replays them through the model (`ironlb replay --example`), and checks the result with
code that shares nothing with the Rust implementation: expected verdicts from the example configuration
(docs/sim.md "Example configuration"), outer IPv6 fields from docs/hw-spec.md section 7.9, flow labels from the flow
hash recomputed here with zlib.crc32 (section 6), inner packets compared byte for byte, and the output capture decoded
by tshark. Exit status 0 when every check passes; prints 'N passed, M failed'.
"""
import ipaddress, json, os, struct, subprocess, sys, tempfile, zlib

from scapy.all import (IP, IPv6, TCP, UDP, ICMP, ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPOption_NOP, Raw, fragment, wrpcap, rdpcap, conf)
from scapy.layers.sctp import SCTP

conf.verb = 0
FLOW_SEED = 0x5EED_F10E
DOMAIN_PUBLIC = 0x0100_0000
UNDERLAY_SRC = "fd00:ffff::1"
HOP_LIMIT = 64
# The example configuration (docs/sim.md).
LB_PUBLIC = dict(lb_id=1, vips={"203.0.113.10", "2001:db8:ff::10"}, targets={"fd00:1::1", "fd00:1::2", "fd00:1::3"})
LB_INTERNAL = dict(lb_id=2, vips={"10.0.0.1"}, targets={"fd00:2::1", "fd00:2::2"})
INGRESS = {"public": DOMAIN_PUBLIC, "vni:100": 100, "vni:200": 200}
CLIENT4, CLIENT6, VM = "198.51.100.7", "2001:db8:c::7", "10.0.0.5"


def addr16(a):
    ip = ipaddress.ip_address(a)
    return (b"\0" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed


def flow_hash(domain, src, dst, proto, sport, dport):
    key = struct.pack(">I", domain) + addr16(src) + addr16(dst) + struct.pack(">BHH", proto, sport, dport)
    return zlib.crc32(key, FLOW_SEED)


class Case:
    def __init__(self, name, ingress, pkt, expect, lb=None, flow=None, group=None):
        self.name, self.ingress, self.expect, self.lb, self.flow, self.group = name, ingress, expect, lb, flow, group
        self.raw = bytes(pkt)


def cases():
    c = []
    add = lambda *a, **k: c.append(Case(*a, **k))
    P, V6 = "203.0.113.10", "2001:db8:ff::10"
    d = DOMAIN_PUBLIC
    add("tcp/80 v4", "public", IP(src=CLIENT4, dst=P) / TCP(sport=40000, dport=80, flags="S"), "forward",
        LB_PUBLIC, (d, CLIENT4, P, 6, 40000, 80), group="flowA")
    add("tcp/80 v4 same flow again", "public", IP(src=CLIENT4, dst=P, id=2) / TCP(sport=40000, dport=80, flags="A"),
        "forward", LB_PUBLIC, (d, CLIENT4, P, 6, 40000, 80), group="flowA")
    add("tcp/81 filtered", "public", IP(src=CLIENT4, dst=P) / TCP(sport=40000, dport=81), "port_not_allowed")
    for port, exp in [(1023, "port_not_allowed"), (1024, "forward"), (2048, "forward"), (2049, "port_not_allowed")]:
        add(f"udp/{port}", "public", IP(src=CLIENT4, dst=P) / UDP(sport=5000, dport=port) / Raw(b"x" * 20), exp,
            LB_PUBLIC, (d, CLIENT4, P, 17, 5000, port))
    add("sctp/80 not allowed (tcp only)", "public", IP(src=CLIENT4, dst=P) / SCTP(sport=9, dport=80), "port_not_allowed")
    add("tcp/80 v6", "public", IPv6(src=CLIENT6, dst=V6) / TCP(sport=41000, dport=80, flags="S"), "forward",
        LB_PUBLIC, (d, CLIENT6, V6, 6, 41000, 80), group="flowB")
    add("udp/1500 v6", "public", IPv6(src=CLIENT6, dst=V6) / UDP(sport=7, dport=1500), "forward",
        LB_PUBLIC, (d, CLIENT6, V6, 17, 7, 1500))
    add("icmp echo v4 dropped", "public", IP(src=CLIENT4, dst=P) / ICMP(type=8, id=1), "icmp_echo")
    add("icmpv6 echo dropped", "public", IPv6(src=CLIENT6, dst=V6) / ICMPv6EchoRequest(id=1), "icmp_echo")
    emb4 = IP(src=P, dst=CLIENT4, flags="DF") / TCP(sport=80, dport=40000, flags="A")
    add("icmp frag-needed to flowA's target", "public",
        IP(src="192.0.2.1", dst=P) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(emb4)[:28], "forward",
        LB_PUBLIC, (d, CLIENT4, P, 6, 40000, 80), group="flowA")
    emb6 = IPv6(src=V6, dst=CLIENT6) / TCP(sport=80, dport=41000, flags="A")
    add("icmpv6 packet-too-big to flowB's target", "public",
        IPv6(src="2001:db8:1::1", dst=V6) / ICMPv6PacketTooBig(mtu=1280) / bytes(emb6)[:48], "forward",
        LB_PUBLIC, (d, CLIENT6, V6, 6, 41000, 80), group="flowB")
    add("internal VIP from public", "public", IP(src=CLIENT4, dst="10.0.0.1") / TCP(sport=1, dport=8080), "no_vip")
    add("unknown VIP", "public", IP(src=CLIENT4, dst="203.0.113.99") / TCP(sport=1, dport=80), "no_vip")
    add("ipv4 options untouched", "public",
        IP(src=CLIENT4, dst=P, ttl=3, options=[IPOption_NOP()] * 4) / TCP(sport=40001, dport=80), "forward",
        LB_PUBLIC, (d, CLIENT4, P, 6, 40001, 80))
    bad = bytearray(bytes(IP(src=CLIENT4, dst=P) / TCP(sport=40002, dport=80)))
    bad[10] ^= 0xFF
    add("ipv4 bad checksum", "public", bytes(bad), "ipv4_checksum")
    trunc = bytes(IP(src=CLIENT4, dst=P) / TCP(sport=40003, dport=80) / Raw(b"y" * 40))[:50]
    add("ipv4 truncated", "public", trunc, "l3_malformed")
    big = IP(src=CLIENT4, dst=P, id=777) / UDP(sport=6000, dport=1500) / Raw(b"z" * 3000)
    for i, f in enumerate(fragment(big, fragsize=1200)):
        add(f"ipv4 fragment {i}", "public", f, "forward", LB_PUBLIC, (d, CLIENT4, P, 17, 0, 0), group="frags")
    add("ipv6 hbh+destopts", "public",
        IPv6(src=CLIENT6, dst=V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=41001, dport=80), "forward",
        LB_PUBLIC, (d, CLIENT6, V6, 6, 41001, 80))
    add("ipv6 fragment header (atomic)", "public",
        IPv6(src=CLIENT6, dst=V6) / IPv6ExtHdrFragment(id=9, offset=0, m=0) / UDP(sport=8, dport=1500), "forward",
        LB_PUBLIC, (d, CLIENT6, V6, 17, 0, 0))
    # A datagram whose fragmentable part starts with a Destination Options header (RFC 8200 section 4.5), split by
    # hand: later fragments hold bytes that look like headers (44 44.., 41 41.., a UDP header 11 00..). hw-spec
    # sections 6.2 and 7.3: the walk stops at a non-first Fragment header; every fragment is hashed with the
    # Fragment header's Next Header (60) and no ports, so all reach the first fragment's target.
    body = b"\x5a" * 8 + b"\x44" * 24 + b"\x41" * 24 + b"\x11\x00\x00\x35\x01\xbb\x00\x00" + b"\0" * 16
    whole = bytes(IPv6(src=CLIENT6, dst=V6) / IPv6ExtHdrDestOpt() / UDP(sport=6001, dport=1500) / Raw(body))
    part = whole[40:]  # DestOpts (8) + UDP (8) + body (80)
    for i, (lo, hi) in enumerate([(0, 24), (24, 48), (48, 72), (72, 96)]):
        hdr = bytearray(whole[:40])
        hdr[6] = 44
        hdr[4:6] = struct.pack(">H", 8 + hi - lo)
        fh = struct.pack(">BBHI", 60, 0, (lo // 8) << 3 | (1 if hi < len(part) else 0), 0xD0D0)
        add(f"ipv6 fragment {i} behind destopts", "public", bytes(hdr) + fh + part[lo:hi], "forward", LB_PUBLIC,
            (d, CLIENT6, V6, 60, 0, 0), group="frags6-destopts")
    add("gre not allowed", "public", IP(src=CLIENT4, dst=P, proto=47) / Raw(b"\0" * 8), "protocol_not_allowed")
    add("internal tcp/8080 from its network", "vni:100", IP(src=VM, dst="10.0.0.1") / TCP(sport=33000, dport=8080),
        "forward", LB_INTERNAL, (100, VM, "10.0.0.1", 6, 33000, 8080))
    add("internal tcp/80 filtered", "vni:100", IP(src=VM, dst="10.0.0.1") / TCP(sport=33000, dport=80), "port_not_allowed")
    add("public VIP from a network", "vni:100", IP(src=VM, dst=P) / TCP(sport=33000, dport=80), "no_vip")
    add("internal VIP from another network", "vni:200", IP(src=VM, dst="10.0.0.1") / TCP(sport=33000, dport=8080), "no_vip")
    return c


def replay(binary, ingress, packets, workdir):
    tag = ingress.replace(":", "_")
    inp, out, ver = (os.path.join(workdir, f"{tag}.{e}") for e in ("in.pcap", "out.pcap", "jsonl"))
    # LINKTYPE_RAW input: scapy writes raw IP with linktype 101 when given raw IP packets and linktype=101.
    from scapy.all import PcapWriter
    w = PcapWriter(inp, linktype=101, sync=True)
    for raw in packets:
        w.write(raw)
    w.close()
    subprocess.run([binary, "replay", "--example", "--ingress", ingress, "--in", inp, "--out", out, "--verdicts", ver],
                   check=True, stdout=subprocess.DEVNULL)
    verdicts = [json.loads(l) for l in open(ver)]
    outs = [bytes(p) for p in rdpcap(out)] if os.path.getsize(out) > 24 else []
    return verdicts, outs, out


def main():
    binary = sys.argv[1]
    passed, failed = 0, 0
    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL:", what)
    groups = {}
    all_cases = cases()
    with tempfile.TemporaryDirectory() as wd:
        for ingress in INGRESS:
            cs = [c for c in all_cases if c.ingress == ingress]
            verdicts, outs, out_path = replay(binary, ingress, [c.raw for c in cs], wd)
            check(len(verdicts) == len(cs), f"{ingress}: {len(verdicts)} verdict lines for {len(cs)} packets")
            fwd = iter(outs)
            for c, v in zip(cs, verdicts):
                got = v["verdict"] if v["verdict"] != "drop" else v["reason"]
                check(got == c.expect, f"{c.name}: expected {c.expect}, model said {got}")
                if got != "forward" or c.expect != "forward":
                    continue
                o = next(fwd, None)
                check(o is not None, f"{c.name}: forwarded but no output packet")
                if o is None:
                    continue
                h = flow_hash(*c.flow)
                inner_ver = c.raw[0] >> 4
                inner = c.raw[: (struct.unpack(">H", c.raw[2:4])[0] if inner_ver == 4 else 40 + struct.unpack(">H", c.raw[4:6])[0])]
                ver_tc_fl, plen, nh, hlim = struct.unpack(">IHBB", o[:8])
                src, dst = str(ipaddress.IPv6Address(o[8:24])), str(ipaddress.IPv6Address(o[24:40]))
                tos = c.raw[1] if inner_ver == 4 else ((struct.unpack(">I", c.raw[:4])[0] >> 20) & 0xFF)
                check(ver_tc_fl >> 28 == 6, f"{c.name}: outer version")
                check((ver_tc_fl >> 20) & 0xFF == tos, f"{c.name}: traffic class copied from inner")
                check(ver_tc_fl & 0xFFFFF == h & 0xFFFFF, f"{c.name}: flow label {ver_tc_fl & 0xFFFFF:#x} != hash {h & 0xFFFFF:#x}")
                check(v.get("flow_hash") == h, f"{c.name}: JSON flow_hash {v.get('flow_hash')} != {h}")
                check(plen == len(inner) and nh == (4 if inner_ver == 4 else 41) and hlim == HOP_LIMIT,
                      f"{c.name}: outer plen/nh/hlim {plen}/{nh}/{hlim}")
                check(src == UNDERLAY_SRC, f"{c.name}: outer src {src}")
                check(dst in c.lb["targets"], f"{c.name}: outer dst {dst} not a target of lb {c.lb['lb_id']}")
                check(v.get("underlay") == dst and v.get("lb_id") == c.lb["lb_id"], f"{c.name}: JSON underlay/lb_id")
                check(o[40:] == inner, f"{c.name}: inner packet not byte-identical")
                if c.group:
                    groups.setdefault(c.group, set()).add(dst)
            # tshark decodes every output packet as IPv6 carrying IPv4/IPv6 (independent dissector).
            if outs:
                r = subprocess.run(["tshark", "-r", out_path, "-T", "fields", "-e", "ipv6.nxt", "-e", "ipv6.src"],
                                   capture_output=True, text=True, check=True)
                lines = [l.split("\t") for l in r.stdout.splitlines() if l.strip()]
                check(len(lines) == len(outs), f"{ingress}: tshark saw {len(lines)} packets, expected {len(outs)}")
                check(all(l[0].split(",")[0] in ("4", "41") and l[1].split(",")[0] == UNDERLAY_SRC for l in lines),
                      f"{ingress}: tshark decode {lines[:3]}")
    for g, targets in groups.items():
        check(len(targets) == 1, f"flow group {g} reached several targets {targets}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
