//! Unit tests of `parse.rs`, with hand-built byte arrays.

use super::*;
use crate::testing::packet::{self, Ipv4, Ipv6};
use ironlb_hw::DropReason::*;

fn v4hdr(ihl_words: u8, total: u16, payload_len: usize) -> Vec<u8> {
    // A header with IHL `ihl_words`, the given total length, a valid checksum, followed by `payload_len` bytes.
    let hl = usize::from(ihl_words) * 4;
    let mut p = vec![0u8; hl.max(20) + payload_len];
    p[0] = 0x40 | ihl_words;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[192, 0, 2, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 1]);
    let n = hl.clamp(20, p.len());
    let c = !ones_complement_sum(&p[..n]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

fn reason(r: Result<Ip<'_>, Bad>) -> DropReason {
    r.expect_err("expected a parse failure").reason
}

#[test]
fn ipv4_fields() {
    let mut h = Ipv4::new([192, 0, 2, 1], [10, 0, 0, 1], 6);
    h.tos = 0xB8;
    let p = h.build(&packet::tcp_segment(1234, 80, b"xy"));
    let ip = parse_l3(&p).unwrap();
    assert!(!ip.v6);
    assert_eq!(ip.datagram, &p[..]);
    assert_eq!(ip.src, ironlb_hw::Vip::from_ipv4([192, 0, 2, 1]).0);
    assert_eq!(ip.dst, ironlb_hw::Vip::from_ipv4([10, 0, 0, 1]).0);
    assert_eq!(
        (ip.traffic_class, ip.protocol, ip.l4, ip.header_len),
        (0xB8, 6, 20, 20)
    );
    assert_eq!(ip.fragment, Fragment::No);
    assert_eq!(ports(ip.datagram, ip.l4), Some((1234, 80)));
}

#[test]
fn ipv4_options_are_skipped_and_kept() {
    let mut h = Ipv4::new([192, 0, 2, 1], [10, 0, 0, 1], 17);
    h.options = vec![0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00]; // router alert, NOP NOP NOP EOL
    let p = h.build(&packet::udp_datagram(5, 53, b"q"));
    // etherparse agrees on the layout.
    let (eh, _) = etherparse::Ipv4Header::from_slice(&p).unwrap();
    assert_eq!(eh.options.as_slice(), &h.options[..]);
    let ip = parse_l3(&p).unwrap();
    assert_eq!((ip.header_len, ip.l4), (28, 28));
    assert_eq!(&ip.datagram[20..28], &h.options[..]);
    assert_eq!(ports(ip.datagram, ip.l4), Some((5, 53)));
}

#[test]
fn ipv4_malformed() {
    assert_eq!(reason(parse_l3(&[])), L3Malformed);
    assert_eq!(reason(parse_l3(&[0x50; 40])), L3Malformed); // version 5
    assert_eq!(reason(parse_l3(&[0x00; 40])), L3Malformed); // version 0
    assert_eq!(reason(parse_l3(&v4hdr(5, 20, 0)[..19])), L3Malformed); // < 20 bytes
    assert_eq!(reason(parse_l3(&v4hdr(4, 20, 0))), L3Malformed); // IHL < 5
    assert_eq!(reason(parse_l3(&v4hdr(0, 20, 0))), L3Malformed); // IHL 0
    let mut p = v4hdr(5, 24, 4);
    p[0] = 0x46; // IHL 6 = 24 bytes, but header checksum now wrong: length checks come first
    assert_eq!(reason(parse_l3(&p[..23])), L3Malformed); // IHL × 4 > len
    assert_eq!(reason(parse_l3(&v4hdr(6, 20, 4))), L3Malformed); // total < IHL × 4
    assert_eq!(reason(parse_l3(&v4hdr(5, 30, 9))), L3Malformed); // total 30 > 29 bytes
    assert!(parse_l3(&v4hdr(5, 29, 9)).is_ok());
    assert!(parse_l3(&v4hdr(5, 20, 0)).is_ok()); // header only
    assert!(parse_l3(&v4hdr(15, 60, 0)).is_ok()); // IHL 15, 40 bytes of (zero) options
}

#[test]
fn ipv4_checksum() {
    let p = packet::udp(
        "192.0.2.1".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        1,
        2,
        b"",
    );
    assert!(parse_l3(&p).is_ok());
    for i in 0..20 {
        let mut q = p.clone();
        q[i] ^= 0x01; // any single-bit change breaks the sum...
        let r = parse_l3(&q);
        if i == 0 || i == 2 || i == 3 {
            // ...but the length checks run first for IHL and total-length bits.
            assert!(r.is_err());
        } else {
            assert_eq!(r.unwrap_err().reason, Ipv4Checksum, "byte {i}");
        }
    }
    // A checksum error on a packet with bad lengths is l3_malformed (lengths are checked first).
    let mut q = p.clone();
    q[10] ^= 0xFF;
    q[3] = 200;
    assert_eq!(reason(parse_l3(&q)), L3Malformed);
}

#[test]
fn ipv4_trailing_padding_trimmed() {
    let mut p = packet::udp(
        "192.0.2.1".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        1,
        2,
        b"",
    );
    let n = p.len();
    p.extend_from_slice(&[0u8; 18]); // Ethernet minimum-frame padding
    let ip = parse_l3(&p).unwrap();
    assert_eq!(ip.datagram.len(), n);
    assert_eq!(ip.datagram, &p[..n]);
}

#[test]
fn ipv4_fragments() {
    let frag = |flags_frag: u16| {
        let mut h = Ipv4::new([192, 0, 2, 1], [10, 0, 0, 1], 17);
        h.flags_frag = flags_frag;
        parse_l3(&h.build(&[0u8; 16])).unwrap().fragment
    };
    assert_eq!(frag(0), Fragment::No);
    assert_eq!(frag(0x4000), Fragment::No); // DF only
    assert_eq!(frag(0x2000), Fragment::First); // MF, offset 0
    assert_eq!(frag(0x2000 | 185), Fragment::NonFirst); // MF, offset 1480
    assert_eq!(frag(185), Fragment::NonFirst); // last fragment
}

#[test]
fn ipv6_fields_and_trim() {
    let mut h = Ipv6::new(
        [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0xfd; 16],
        17,
    );
    h.traffic_class = 0xA5;
    h.flow_label = 0xABCDE;
    let mut p = h.build(&packet::udp_datagram(7, 8, b"abcd"));
    let n = p.len();
    p.extend_from_slice(&[0xEE; 5]);
    let mut ip = parse_l3(&p).unwrap();
    assert!(ip.v6);
    assert_eq!(ip.datagram.len(), n);
    assert_eq!((ip.traffic_class, ip.protocol, ip.l4), (0xA5, 17, 40));
    assert_eq!((ip.src, ip.dst), (h.src, h.dst));
    walk_ipv6_ext(&mut ip).unwrap();
    assert_eq!(
        (ip.protocol, ip.l4, ip.ext_headers, ip.fragment),
        (17, 40, 0, Fragment::No)
    );
    assert_eq!(ports(ip.datagram, ip.l4), Some((7, 8)));
}

#[test]
fn ipv6_malformed() {
    let p = Ipv6::new([1; 16], [2; 16], 59).build(&[0; 8]);
    assert_eq!(reason(parse_l3(&p[..39])), L3Malformed);
    assert_eq!(reason(parse_l3(&p[..47])), L3Malformed); // payload length 8 > 7
    assert!(parse_l3(&p[..48]).is_ok());
}

/// An HBH/Routing/DestOpts-style header of `(len + 1) * 8` bytes.
fn ext(next: u8, len: u8) -> Vec<u8> {
    let mut e = vec![0u8; (usize::from(len) + 1) * 8];
    e[0] = next;
    e[1] = len;
    e
}

fn frag_hdr(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let v = (offset << 3) | u16::from(more);
    let mut e = vec![next, 0, 0, 0, 0, 0, 0, 42];
    e[2..4].copy_from_slice(&v.to_be_bytes());
    e
}

fn walk(first_nh: u8, chain: &[u8]) -> Result<(u8, usize, u8, Fragment), Bad> {
    let p = Ipv6::new([1; 16], [2; 16], first_nh).build(chain);
    let mut ip = parse_l3(&p).unwrap();
    walk_ipv6_ext(&mut ip).map(|()| (ip.protocol, ip.l4, ip.ext_headers, ip.fragment))
}

#[test]
fn ipv6_hbh_destopts_fragment() {
    let mut chain = ext(proto::DSTOPTS, 0); // HBH, 8 bytes
    chain.extend(ext(proto::FRAGMENT, 1)); // DestOpts, 16 bytes
    chain.extend(frag_hdr(proto::UDP, 0, true)); // first fragment
    chain.extend(packet::udp_datagram(1000, 53, b"x"));
    assert_eq!(
        walk(proto::HOPOPT, &chain).unwrap(),
        (17, 40 + 32, 3, Fragment::First)
    );
    // Non-first fragment: offset 100.
    let mut chain = frag_hdr(proto::TCP, 100, false);
    chain.extend([0u8; 8]);
    assert_eq!(
        walk(proto::FRAGMENT, &chain).unwrap(),
        (6, 48, 1, Fragment::NonFirst)
    );
    // Atomic fragment (offset 0, M clear) still counts as a fragment (§6.2: any Fragment header).
    let chain = frag_hdr(proto::UDP, 0, false);
    assert_eq!(walk(proto::FRAGMENT, &chain).unwrap().3, Fragment::First);
    // AH: (PayloadLen + 2) × 4 bytes; Routing header.
    let mut chain = vec![
        proto::ROUTING,
        4,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    chain.extend(ext(proto::TCP, 0));
    assert_eq!(
        walk(proto::AH, &chain).unwrap(),
        (6, 40 + 24 + 8, 2, Fragment::No)
    );
    // The chain ends at a non-extension header, whatever it is.
    assert_eq!(
        walk(proto::HOPOPT, &ext(59, 0)).unwrap(),
        (59, 48, 1, Fragment::No)
    );
    assert_eq!(walk(50, &[0u8; 8]).unwrap(), (50, 40, 0, Fragment::No));
}

/// Issue 14 item 4: the bytes after a non-first Fragment header are fragment data, however much they look like
/// headers; the walk stops there, and every fragment of a datagram carries the same hashed protocol.
#[test]
fn ipv6_walk_stops_at_non_first_fragment() {
    let walk_full = |first_nh: u8, chain: &[u8]| {
        let p = Ipv6::new([1; 16], [2; 16], first_nh).build(chain);
        let mut ip = parse_l3(&p).unwrap();
        walk_ipv6_ext(&mut ip).map(|()| (ip.protocol, ip.frag_protocol, ip.l4, ip.ext_headers, ip.fragment))
    };
    // Fragment data that reads as a DestOpts header declaring 0x44 × 8 bytes, as AH, as a UDP header.
    for data in [[0x44u8; 24], [0x41; 24], {
        let mut u = [0u8; 24];
        u[0] = 0x11;
        u
    }] {
        for next in [proto::DSTOPTS, proto::AH, proto::UDP, proto::FRAGMENT] {
            let mut chain = frag_hdr(next, 3, true);
            chain.extend(data);
            assert_eq!(
                walk_full(proto::FRAGMENT, &chain).unwrap(),
                (next, next, 48, 1, Fragment::NonFirst),
                "next header {next}, data {:02x}",
                data[0]
            );
            // Behind a Hop-by-Hop header too.
            let mut chain = ext(proto::FRAGMENT, 0);
            chain.extend(frag_hdr(next, 3, false));
            chain.extend(data);
            assert_eq!(
                walk_full(proto::HOPOPT, &chain).unwrap(),
                (next, next, 56, 2, Fragment::NonFirst)
            );
        }
    }
    // The first fragment of the same datagram walks on through its fragmentable part (DestOpts, then UDP) but keeps
    // the Fragment header's Next Header as its hashed protocol.
    let mut chain = frag_hdr(proto::DSTOPTS, 0, true);
    chain.extend(ext(proto::UDP, 0));
    chain.extend(packet::udp_datagram(1000, 53, b"x"));
    assert_eq!(
        walk_full(proto::FRAGMENT, &chain).unwrap(),
        (proto::UDP, proto::DSTOPTS, 56, 2, Fragment::First)
    );
    // Two Fragment headers: the first one's Next Header is hashed; a non-zero offset in the second ends the walk.
    let mut chain = frag_hdr(proto::FRAGMENT, 0, true);
    chain.extend(frag_hdr(proto::UDP, 5, true));
    chain.extend([0x44u8; 16]);
    assert_eq!(
        walk_full(proto::FRAGMENT, &chain).unwrap(),
        (proto::UDP, proto::FRAGMENT, 56, 2, Fragment::NonFirst)
    );
}

fn chain_of(n: usize, last: u8) -> Vec<u8> {
    let mut c = Vec::new();
    for i in 0..n {
        c.extend(ext(if i + 1 == n { last } else { proto::DSTOPTS }, 0));
    }
    c
}

#[test]
fn ipv6_eight_headers_pass_nine_fail() {
    let mut c = chain_of(8, proto::UDP);
    c.extend(packet::udp_datagram(1, 2, b""));
    assert_eq!(walk(proto::DSTOPTS, &c).unwrap(), (17, 40 + 64, 8, Fragment::No));
    let mut c = chain_of(9, proto::UDP);
    c.extend(packet::udp_datagram(1, 2, b""));
    assert_eq!(walk(proto::DSTOPTS, &c).unwrap_err().reason, Ipv6ExtHeaders);
    // A ninth that is a Fragment header counts too.
    let mut c = chain_of(8, proto::FRAGMENT);
    c.extend(frag_hdr(proto::UDP, 0, true));
    assert_eq!(walk(proto::DSTOPTS, &c).unwrap_err().reason, Ipv6ExtHeaders);
}

#[test]
fn ipv6_overrunning_headers() {
    // HdrExtLen says 16 bytes, 8 present.
    assert_eq!(walk(proto::HOPOPT, &ext(17, 0)).unwrap().0, 17);
    let mut e = ext(17, 0);
    e[1] = 1;
    assert_eq!(walk(proto::HOPOPT, &e).unwrap_err().reason, Ipv6ExtHeaders);
    // Only one byte of the 2-byte length prefix.
    assert_eq!(walk(proto::DSTOPTS, &[17]).unwrap_err().reason, Ipv6ExtHeaders);
    assert_eq!(walk(proto::ROUTING, &[]).unwrap_err().reason, Ipv6ExtHeaders);
    // Fragment header cut short.
    assert_eq!(
        walk(proto::FRAGMENT, &[17, 0, 0, 0, 0, 0, 0]).unwrap_err().reason,
        Ipv6ExtHeaders
    );
    // AH: PayloadLen 4 means 24 bytes; 16 present.
    let mut ah = vec![0u8; 16];
    ah[0] = 17;
    ah[1] = 4;
    assert_eq!(walk(proto::AH, &ah).unwrap_err().reason, Ipv6ExtHeaders);
    // Trailing bytes beyond the payload length do not count as inside the datagram.
    let mut p = Ipv6::new([1; 16], [2; 16], proto::HOPOPT).build(&ext(17, 0));
    p[5] = 4; // payload length 4: the 8-byte HBH overruns the datagram though the packet has the bytes
    let mut ip = parse_l3(&p).unwrap();
    assert_eq!(walk_ipv6_ext(&mut ip).unwrap_err().reason, Ipv6ExtHeaders);
}

#[test]
fn l4_and_icmp_helpers() {
    let d = [0u8, 80, 1, 187, 8, 0, 0x12, 0x34];
    assert_eq!(ports(&d, 0), Some((80, 443)));
    assert_eq!(ports(&d, 4), Some((2048, 0x1234)));
    assert_eq!(ports(&d, 5), None);
    assert_eq!(icmp_type_code(&d, 4), Some((8, 0)));
    assert_eq!(icmp_type_code(&d, 5), None);
    assert_eq!(echo_identifier(&d, 0), Some(0x0800));
    assert_eq!(echo_identifier(&d, 1), None);
    assert_eq!(icmp_kind(false, 8), IcmpKind::EchoRequest);
    assert_eq!(icmp_kind(true, 128), IcmpKind::EchoRequest);
    assert_eq!(icmp_kind(false, 128), IcmpKind::Other);
    assert_eq!(icmp_kind(true, 8), IcmpKind::Other);
    for t in [3, 11, 12] {
        assert_eq!(icmp_kind(false, t), IcmpKind::Error);
    }
    for t in [1, 2, 3, 4] {
        assert_eq!(icmp_kind(true, t), IcmpKind::Error);
    }
    for t in [0, 4, 5, 13] {
        assert_eq!(icmp_kind(false, t), IcmpKind::Other);
    }
    for t in [0, 129, 133, 135] {
        assert_eq!(icmp_kind(true, t), IcmpKind::Other);
    }
}

#[test]
fn embedded_packets() {
    let vip: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let client: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let quoted = packet::tcp(vip, client, 80, 40000, b"");
    let e = embedded(false, &quoted[..28], 0).unwrap();
    assert_eq!((e.protocol, e.src_port, e.dst_port), (6, 80, 40000));
    assert_eq!(e.src, ironlb_hw::Vip::from(vip).0);
    assert_eq!(e.dst, ironlb_hw::Vip::from(client).0);
    // At an offset, as in an ICMP message.
    let mut m = vec![0u8; 8];
    m.extend_from_slice(&quoted[..28]);
    assert_eq!(embedded(false, &m, 8).unwrap(), e);
    let r = |v6: bool, q: &[u8]| embedded(v6, q, 0).unwrap_err().reason;
    assert_eq!(r(false, &quoted[..27]), IcmpErrorInvalid); // 7 L4 bytes only
    assert_eq!(r(false, &[]), IcmpErrorInvalid);
    assert_eq!(r(true, &quoted), IcmpErrorInvalid); // wrong family
    let mut q = quoted.clone();
    q[0] = 0x44;
    assert_eq!(r(false, &q), IcmpErrorInvalid); // IHL 4
    let mut q = quoted.clone();
    q[7] = 1;
    assert_eq!(r(false, &q), IcmpErrorInvalid); // non-first fragment
    let mut q = quoted.clone();
    q[6] = 0x20;
    assert!(embedded(false, &q, 0).is_ok()); // first fragment (MF, offset 0) is fine
    let mut q = quoted.clone();
    q[10] ^= 0xFF;
    assert!(embedded(false, &q, 0).is_ok()); // embedded checksum not verified
    let mut q = quoted.clone();
    q[9] = 1;
    assert_eq!(r(false, &q), IcmpErrorInvalid); // ICMP inside
                                                // IPv6.
    let vip6: std::net::IpAddr = "2001:db8::80".parse().unwrap();
    let client6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
    let q6 = packet::udp(vip6, client6, 53, 5353, b"answer");
    let e = embedded(true, &q6[..48], 0).unwrap();
    assert_eq!((e.protocol, e.src_port, e.dst_port), (17, 53, 5353));
    assert_eq!(r(true, &q6[..47]), IcmpErrorInvalid);
    assert_eq!(r(false, &q6), IcmpErrorInvalid);
    let mut chain = ext(proto::UDP, 0);
    chain.extend(packet::udp_datagram(53, 5353, b""));
    let q6 = Ipv6::new([1; 16], [2; 16], proto::DSTOPTS).build(&chain);
    assert_eq!(r(true, &q6), IcmpErrorInvalid); // extension headers are not walked
}
