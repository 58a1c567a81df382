//! ICMP policy (§7.7) and fragments (§6.2, §7.5, §7.6) end to end.

use super::*;

const VIP_ICMP: &str = "10.0.0.30";

/// The setup plus an LB at 10.0.0.30 (VNI 100, TCP 80) that allows echo; returns it.
fn with_echo_lb(d: &mut Device) -> InstalledLb {
    let mut al = SimpleAlloc {
        next_range: 200,
        next_target: 200,
        next_slot: 20_000,
    };
    let spec = LbSpec::new(VNI_A, a(VIP_ICMP), 30)
        .range(Protocol::Tcp, 80, 80)
        .targets(targets(3))
        .icmp(true, true);
    testing::install(d, &spec, &mut al)
}

#[test]
fn echo_requests() {
    let (mut d, _, _) = setup();
    let lb = with_echo_lb(&mut d);
    // Default policy: dropped.
    let p = packet::icmp_echo(a(CLIENT), a(VIP), 7, 1);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), IcmpEcho);
    let p = packet::icmp_echo(a(CLIENT6), a(VIP6), 7, 1);
    assert_eq!(drop_reason(&mut d, PORT_PUBLIC, &p), IcmpEcho);
    // Allowed: hashed by identifier, no port filter.
    let p = packet::icmp_echo(a(CLIENT), a(VIP_ICMP), 0x1234, 9);
    let (_, t) = forward(&mut d, PORT_NET_A, &p);
    let h = flow_hash(VNI_A, CLIENT, VIP_ICMP, 1, 0x1234, 0);
    assert_eq!((t.flow_hash, t.target), (Some(h), lb.target_for_hash(h)));
    assert_eq!(t.icmp.as_deref(), Some("echo_request id=4660"));
    assert_eq!(t.stage("port_filter"), Some("not applied (echo request)"));
    assert_eq!(t.range_match, None);
    // Echo header needs 8 bytes, ICMP header 4.
    let icmp = |m: &[u8]| Ipv4::new([10, 0, 0, 1], [10, 0, 0, 30], 1).build(m);
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &icmp(&[8, 0, 0, 0, 0, 1, 0])),
        L4Truncated
    );
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &icmp(&[8, 0, 0])), L4Truncated);
    assert!(matches!(
        d.process(PORT_NET_A, &icmp(&[8, 0, 0, 0, 0, 1, 0, 2])),
        Verdict::Forward { .. }
    ));
    // Other types.
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &icmp(&[0, 0, 0, 0, 0, 1, 0, 2])),
        IcmpUnsupported
    ); // reply
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &icmp(&[13, 0, 0, 0, 0, 1, 0, 2])),
        IcmpUnsupported
    );
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &icmp(&[128, 0, 0, 0, 0, 1, 0, 2])),
        IcmpUnsupported
    );
    let c6 = CLIENT6.parse::<Ipv6Addr>().unwrap().octets();
    let ns = Ipv6::new(c6, VIP6.parse::<Ipv6Addr>().unwrap().octets(), 58).build(&[135, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(drop_reason(&mut d, PORT_PUBLIC, &ns), IcmpUnsupported);
    // Fragmented ICMP; the 4-byte check comes first.
    let mut h = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 30], 1);
    h.flags_frag = 0x2000;
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &h.build(&[8, 0, 0, 0, 0, 1, 0, 2])),
        IcmpUnsupported
    );
    h.flags_frag = 100;
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &h.build(&[1, 2, 3, 4])),
        IcmpUnsupported
    );
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &h.build(&[1, 2, 3])), L4Truncated);
}

#[test]
fn icmp_errors_follow_the_flow() {
    let (mut d, lb, lb6) = setup();
    // The flow: client:40000 -> VIP:80. The target's reply VIP:80 -> client:40000 hits a router with a small MTU.
    let fwd_pkt = packet::tcp(a(CLIENT), a(VIP), 40000, 80, b"");
    let (_, ft) = forward(&mut d, PORT_NET_A, &fwd_pkt);
    let reply = packet::tcp(a(VIP), a(CLIENT), 80, 40000, &[0u8; 1400]);
    let err = packet::icmp_error(a("10.0.0.254"), a(VIP), 3, 4, 1300, &reply[..28]);
    let (out, t) = forward(&mut d, PORT_NET_A, &err);
    assert_eq!(
        t.flow_hash, ft.flow_hash,
        "the error hashes like the forward flow"
    );
    assert_eq!(t.target, ft.target);
    assert_eq!(t.target, lb.target_for_hash(ft.flow_hash.unwrap()));
    assert_eq!(&out[40..], &err[..]);
    assert_eq!(
        t.icmp.as_deref(),
        Some("error type=3 code=4 embedded tcp 10.0.0.10:80 -> 10.0.0.1:40000")
    );
    assert_eq!(t.range_match, Some(lb.range_base));
    assert_eq!(t.protocol, Some(1));
    let f = t.flow.unwrap();
    assert_eq!(
        (f.src, f.dst, f.protocol, f.src_port, f.dst_port),
        (a(CLIENT), a(VIP), 6, 40000, 80)
    );
    // Time exceeded and parameter problem too; the whole quote may be present.
    for ty in [11, 12] {
        let err = packet::icmp_error(a("10.0.0.254"), a(VIP), ty, 0, 0, &reply);
        assert_eq!(forward(&mut d, PORT_NET_A, &err).1.flow_hash, ft.flow_hash);
    }
    // IPv6 Packet Too Big (and the other three error types).
    let fwd6 = packet::tcp(a(CLIENT6), a(VIP6), 1111, 443, b"");
    let (_, ft6) = forward(&mut d, PORT_PUBLIC, &fwd6);
    let reply6 = packet::tcp(a(VIP6), a(CLIENT6), 443, 1111, &[0u8; 100]);
    for ty in 1..=4 {
        let err6 = packet::icmp_error(a("2001:db8::fe"), a(VIP6), ty, 0, 1280, &reply6[..48]);
        let (_, t6) = forward(&mut d, PORT_PUBLIC, &err6);
        assert_eq!(
            (t6.flow_hash, t6.target),
            (ft6.flow_hash, ft6.target),
            "type {ty}"
        );
        assert_eq!(t6.target, lb6.target_for_hash(ft6.flow_hash.unwrap()));
    }
}

#[test]
fn icmp_error_validation() {
    let (mut d, _, _) = setup();
    let err = |quoted: &[u8]| packet::icmp_error(a("10.0.0.254"), a(VIP), 3, 4, 1300, quoted);
    let reply = packet::tcp(a(VIP), a(CLIENT), 80, 40000, b"");
    // Not from the VIP.
    let other = packet::tcp(a("10.0.0.11"), a(CLIENT), 80, 40000, b"");
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &err(&other[..28])),
        IcmpErrorInvalid
    );
    // Quote shorter than IP header + 8.
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &err(&reply[..27])),
        IcmpErrorInvalid
    );
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &err(&[])), IcmpErrorInvalid);
    // Wrong family inside.
    let reply6 = packet::tcp(a(VIP6), a(CLIENT6), 443, 1111, b"");
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &err(&reply6)), IcmpErrorInvalid);
    // Quoting a non-first fragment / an ICMP packet.
    let mut q = reply.clone();
    q[7] = 10;
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &err(&q)), IcmpErrorInvalid);
    let echo = packet::icmp_echo(a(VIP), a(CLIENT), 1, 1);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &err(&echo)), IcmpErrorInvalid);
    // The port filter applies to the embedded source port (the VIP's port).
    let reply81 = packet::tcp(a(VIP), a(CLIENT), 81, 40000, b"");
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &err(&reply81)), PortNotAllowed);
    let to80 = packet::tcp(a(VIP), a(CLIENT), 40000, 80, b""); // VIP port is the *source* port
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &err(&to80)), PortNotAllowed);
    // ICMP message cut at 4 bytes: no embedded packet.
    let p = Ipv4::new([10, 0, 0, 254], [10, 0, 0, 10], 1).build(&[3, 4, 0, 0]);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), IcmpErrorInvalid);
    // Delivery disabled: icmp_unsupported before the quote is looked at.
    let mut al = SimpleAlloc {
        next_range: 300,
        next_target: 300,
        next_slot: 30_000,
    };
    let spec = LbSpec::new(VNI_A, a("10.0.0.40"), 40)
        .range(Protocol::Tcp, 80, 80)
        .targets(targets(1))
        .icmp(false, false);
    testing::install(&mut d, &spec, &mut al);
    let p = packet::icmp_error(a("10.0.0.254"), a("10.0.0.40"), 3, 4, 0, &[]);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), IcmpUnsupported);
}

#[test]
fn ipv4_fragments() {
    let (mut d, lb, _) = setup();
    let frag = |proto: u8, flags_frag: u16, payload: &[u8]| {
        let mut h = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 10], proto);
        h.ident = 77;
        h.flags_frag = flags_frag;
        h.build(payload)
    };
    let first = frag(17, 0x2000, &packet::udp_datagram(1234, 5500, &[0u8; 64]));
    let middle = frag(17, 0x2000 | 9, &[0u8; 64]);
    let last = frag(17, 18, &[0u8; 3]);
    let h = flow_hash(VNI_A, CLIENT, VIP, 17, 0, 0);
    let want = lb.target_for_hash(h);
    for p in [&first, &middle, &last] {
        let (_, t) = forward(&mut d, PORT_NET_A, p);
        assert_eq!((t.flow_hash, t.target), (Some(h), want));
    }
    let (_, t) = forward(&mut d, PORT_NET_A, &first);
    assert_eq!(
        (t.fragment, t.src_port, t.dst_port),
        (Some("first"), Some(1234), Some(5500))
    );
    let (_, t) = forward(&mut d, PORT_NET_A, &middle);
    assert_eq!(
        (t.fragment, t.src_port, t.range_match),
        (Some("non_first"), None, Some(lb.range_base + 1))
    );
    assert_eq!(
        t.stage("port_filter"),
        Some(format!("udp non-first fragment admitted by range {}", lb.range_base + 1).as_str())
    );
    // The first fragment is filtered by its port and needs its ports.
    let bad_first = frag(17, 0x2000, &packet::udp_datagram(1234, 22, &[0u8; 64]));
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &bad_first), PortNotAllowed);
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &frag(17, 0x2000, &[0, 1, 0])),
        L4Truncated
    );
    // A non-first fragment needs any range of its protocol; it carries no ports.
    assert_eq!(
        drop_reason(&mut d, PORT_NET_A, &frag(132, 9, &[0u8; 8])),
        PortNotAllowed
    );
    assert!(matches!(
        d.process(PORT_NET_A, &frag(6, 9, &[])),
        Verdict::Forward { .. }
    ));
}

#[test]
fn ipv6_fragments() {
    let (mut d, _, lb6) = setup();
    let c6 = CLIENT6.parse::<Ipv6Addr>().unwrap().octets();
    let v6 = VIP6.parse::<Ipv6Addr>().unwrap().octets();
    let frag = |offset: u16, more: bool, next: u8, rest: &[u8]| {
        let mut f = vec![next, 0];
        f.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 9]);
        f.extend_from_slice(rest);
        Ipv6::new(c6, v6, 44).build(&f)
    };
    let h = flow_hash(ironlb_hw::DOMAIN_PUBLIC, CLIENT6, VIP6, 6, 0, 0);
    let first = frag(0, true, 6, &packet::tcp_segment(1111, 443, &[0; 32]));
    let (out, t) = forward(&mut d, PORT_PUBLIC, &first);
    assert_eq!((t.flow_hash, t.fragment), (Some(h), Some("first")));
    assert_eq!(t.target, lb6.target_for_hash(h));
    assert_eq!(&out[40..], &first[..]);
    assert!(t
        .stage("ext_headers")
        .unwrap()
        .starts_with("1 extension header(s), upper-layer protocol 6"));
    let (_, t) = forward(&mut d, PORT_PUBLIC, &frag(7, false, 6, &[0; 8]));
    assert_eq!((t.flow_hash, t.fragment), (Some(h), Some("non_first")));
    assert_eq!(
        drop_reason(&mut d, PORT_PUBLIC, &frag(7, false, 17, &[0; 8])),
        PortNotAllowed
    );
    assert_eq!(
        drop_reason(
            &mut d,
            PORT_PUBLIC,
            &frag(0, true, 6, &packet::tcp_segment(1, 80, b""))
        ),
        PortNotAllowed
    );
    // Fragmented ICMPv6.
    assert_eq!(
        drop_reason(
            &mut d,
            PORT_PUBLIC,
            &frag(0, true, 58, &[128, 0, 0, 0, 0, 1, 0, 1])
        ),
        IcmpUnsupported
    );
}

/// Issue 14 item 4: a datagram whose fragmentable part starts with a Destination Options header (RFC 8200 §4.5).
/// Every fragment reaches the first fragment's target, hashed with the Fragment header's Next Header (60) and no
/// ports, whatever the later fragments' data looks like: a DestOpts/AH-like `44 44…`/`41 41…` (dropped
/// `ipv6_ext_headers` before the fix) or a UDP-like `11 00…` (hashed as UDP before the fix).
#[test]
fn ipv6_fragments_behind_destination_options() {
    let (mut d, _, lb6) = setup();
    let c6 = CLIENT6.parse::<Ipv6Addr>().unwrap().octets();
    let v6 = VIP6.parse::<Ipv6Addr>().unwrap().octets();
    let frag = |offset: u16, more: bool, next: u8, rest: &[u8]| {
        let mut f = vec![next, 0];
        f.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x51, 0x51]);
        f.extend_from_slice(rest);
        Ipv6::new(c6, v6, 44).build(&f)
    };
    let h = flow_hash(ironlb_hw::DOMAIN_PUBLIC, CLIENT6, VIP6, 60, 0, 0);
    // First fragment: Fragment(next 60) + DestOpts(next TCP, 8 bytes) + TCP to 443: walked, port-filtered.
    let mut rest = vec![6, 0, 1, 4, 0, 0, 0, 0];
    rest.extend(packet::tcp_segment(1111, 443, &[0; 16]));
    let (_, t) = forward(&mut d, PORT_PUBLIC, &frag(0, true, 60, &rest));
    assert_eq!(
        (t.flow_hash, t.fragment, t.protocol),
        (Some(h), Some("first"), Some(6))
    );
    assert_eq!(t.flow.as_ref().map(|f| f.protocol), Some(60));
    let target = t.target;
    assert_eq!(target, lb6.target_for_hash(h));
    // The same datagram with the first fragment to a port outside the allow-list is filtered by its port.
    let mut bad = vec![6, 0, 1, 4, 0, 0, 0, 0];
    bad.extend(packet::tcp_segment(1111, 80, &[0; 16]));
    assert_eq!(
        drop_reason(&mut d, PORT_PUBLIC, &frag(0, true, 60, &bad)),
        PortNotAllowed
    );
    // Later fragments: the data is not parsed.
    let mut udp_like = vec![0x11, 0x00, 0x00, 0x35, 0x01, 0xBB, 0, 0];
    udp_like.extend([0u8; 16]);
    for (i, data) in [vec![0x44; 24], vec![0x41; 24], udp_like].into_iter().enumerate() {
        let p = frag(3 + i as u16, i < 2, 60, &data);
        let (out, t) = forward(&mut d, PORT_PUBLIC, &p);
        assert_eq!(
            (t.flow_hash, t.fragment, t.target),
            (Some(h), Some("non_first"), target),
            "fragment {i}"
        );
        assert_eq!((t.protocol, t.src_port, t.dst_port), (Some(60), None, None));
        assert_eq!(&out[40..], &p[..]);
    }
    // AH as the first fragmentable header is admitted the same way.
    let (_, t) = forward(&mut d, PORT_PUBLIC, &frag(3, false, 51, &[0x11; 16]));
    assert_eq!(
        t.flow_hash,
        Some(flow_hash(ironlb_hw::DOMAIN_PUBLIC, CLIENT6, VIP6, 51, 0, 0))
    );
    // A later fragment of ESP / No Next Header / another protocol: not load-balanced, like its first fragment.
    for next in [50, 59, 47] {
        assert_eq!(
            drop_reason(&mut d, PORT_PUBLIC, &frag(3, false, next, &[0x44; 16])),
            ProtocolNotAllowed,
            "next header {next}"
        );
    }
    // ICMPv6 fragments stay unsupported.
    assert_eq!(
        drop_reason(&mut d, PORT_PUBLIC, &frag(3, false, 58, &[0x44; 16])),
        IcmpUnsupported
    );
}

/// A non-first fragment of unknown upper-layer protocol needs a non-empty allow-list: an LB that allows nothing
/// drops it `port_not_allowed`.
#[test]
fn unknown_protocol_fragment_needs_an_allow_list() {
    let mut d = Device::new(DeviceConfig::small()).unwrap();
    testing::setup_ports(&mut d);
    let spec = LbSpec::new(testing::PUBLIC, a(VIP6), 9)
        .targets(targets(2))
        .m_log2(4);
    testing::install(&mut d, &spec, &mut SimpleAlloc::default());
    let c6 = CLIENT6.parse::<Ipv6Addr>().unwrap().octets();
    let v6 = VIP6.parse::<Ipv6Addr>().unwrap().octets();
    let p = Ipv6::new(c6, v6, 44).build(&[60, 0, 0, 24, 0, 0, 0, 1, 0x44, 0x44, 0x44, 0x44, 0, 0, 0, 0]);
    assert_eq!(drop_reason(&mut d, PORT_PUBLIC, &p), PortNotAllowed);
}
