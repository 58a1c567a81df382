#!/usr/bin/python3
"""Crafted packets of the end-to-end tests, built with scapy and sent as they are (header included) through a raw
IP socket of the namespace this runs in (the kernel routes them into the device's port). One argument per packet:

  icmp4:ROUTER:VIP:CLIENT:CPORT    ICMP frag-needed (3/4, MTU 1400) from ROUTER quoting VIP:80 -> CLIENT:CPORT (TCP)
  icmp6:ROUTER:VIP:CLIENT:CPORT    ICMPv6 Packet Too Big (MTU 1280), the same for IPv6 (addresses in [brackets])
  sctp:SRC:VIP:SPORT:DPORT         SCTP INIT
  opts:SRC:VIP:SPORT               TCP SYN to port 80 with TTL 7, IPv4 options (NOP NOP NOP EOL) and DSCP 0x28
"""
import re
import socket
import sys

from scapy.all import IP, IPv6, ICMP, ICMPv6PacketTooBig, TCP, SCTP, SCTPChunkInit, IPOption


def send(p):
    # IPPROTO_RAW: the header is ours (IP_HDRINCL / IPv6 header included), sent unchanged.
    fam = socket.AF_INET6 if p.version == 6 else socket.AF_INET
    with socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(bytes(p), (p.dst, 0))


def fields(arg):
    # Split on ':' outside [brackets].
    return [f.strip("[]") for f in re.findall(r"\[[^\]]*\]|[^:]+", arg)]


for arg in sys.argv[1:]:
    kind, *f = fields(arg)
    if kind == "icmp4":
        router, vip, client, cport = f
        p = IP(src=router, dst=vip) / ICMP(type=3, code=4, nexthopmtu=1400) / \
            IP(src=vip, dst=client, ttl=64) / TCP(sport=80, dport=int(cport), flags="A")
    elif kind == "icmp6":
        router, vip, client, cport = f
        p = IPv6(src=router, dst=vip) / ICMPv6PacketTooBig(mtu=1280) / \
            IPv6(src=vip, dst=client) / TCP(sport=80, dport=int(cport), flags="A")
    elif kind == "sctp":
        src, vip, sport, dport = f
        l3 = IPv6(src=src, dst=vip) if ":" in vip else IP(src=src, dst=vip)
        p = l3 / SCTP(sport=int(sport), dport=int(dport)) / SCTPChunkInit(init_tag=0x1234, a_rwnd=65535)
    elif kind == "opts":
        src, vip, sport = f
        p = IP(src=src, dst=vip, ttl=7, tos=0x28, options=[IPOption(b"\x01\x01\x01\x00")]) / \
            TCP(sport=int(sport), dport=80, flags="S", seq=12345)
    else:
        raise SystemExit(f"unknown packet kind {kind!r} in {arg!r}")
    send(p)
print("sent", len(sys.argv) - 1)
