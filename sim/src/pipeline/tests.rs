//! End-to-end tests of the pipeline on a programmed device (docs/hw-spec.md §7), one drop reason or rule each.

use super::*;
use crate::testing::packet::{self, Ipv4, Ipv6};
use crate::testing::{self, InstalledLb, LbSpec, SimpleAlloc, PORT_NET_A, PORT_NET_B, PORT_PUBLIC, VNI_A};
use crate::DeviceConfig;
use ironlb_hw::entry::{PortCfg, PortKind, Protocol};
use ironlb_hw::regs;
use ironlb_hw::DropReason::*;
use ironlb_hw::{FlowTuple, Vip};
use std::net::IpAddr;

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const VIP: &str = "10.0.0.10";
const CLIENT: &str = "10.0.0.1";
const VIP6: &str = "2001:db8::80";
const CLIENT6: &str = "2001:db8::1";

fn targets(n: u16) -> Vec<Ipv6Addr> {
    (1..=n)
        .map(|i| Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, i))
        .collect()
}

/// A device with the standard ports, an IPv4 LB (VNI 100, TCP 80, UDP 5000-5999) and an IPv6 LB (public, TCP 443,
/// SCTP 9000), 4 targets each.
fn setup() -> (Device, InstalledLb, InstalledLb) {
    let mut d = Device::new(DeviceConfig::small()).unwrap();
    testing::setup_ports(&mut d);
    let mut al = SimpleAlloc::default();
    let spec = LbSpec::new(VNI_A, a(VIP), 3)
        .range(Protocol::Tcp, 80, 80)
        .range(Protocol::Udp, 5000, 5999)
        .targets(targets(4))
        .m_log2(6);
    let v4 = testing::install(&mut d, &spec, &mut al);
    let spec6 = LbSpec::new(testing::PUBLIC, a(VIP6), 4)
        .range(Protocol::Tcp, 443, 443)
        .range(Protocol::Sctp, 9000, 9000)
        .targets(
            targets(4)
                .into_iter()
                .map(|t| Ipv6Addr::from(u128::from(t) + 0x100)),
        )
        .m_log2(5);
    let v6 = testing::install(&mut d, &spec6, &mut al);
    (d, v4, v6)
}

fn flow_hash(domain: u32, src: &str, dst: &str, protocol: u8, sp: u16, dp: u16) -> u32 {
    FlowTuple {
        domain,
        src: Vip::from(a(src)),
        dst: Vip::from(a(dst)),
        protocol,
        src_port: sp,
        dst_port: dp,
    }
    .hash()
}

fn drop_reason(d: &mut Device, port: u32, pkt: &[u8]) -> DropReason {
    match d.process(port, pkt) {
        Verdict::Drop(r) => r,
        v => panic!("expected a drop, got {v:?}"),
    }
}

fn forward(d: &mut Device, port: u32, pkt: &[u8]) -> (Vec<u8>, Trace) {
    match d.process_traced(port, pkt) {
        (Verdict::Forward { egress_port, packet }, t) => {
            assert_eq!(egress_port, testing::PORT_UNDERLAY);
            (packet, t)
        }
        (v, t) => panic!("expected a forward, got {v:?}\n{t}"),
    }
}

#[test]
fn forwards_ipv4_tcp_encapsulated() {
    let (mut d, lb, _) = setup();
    let mut h = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 10], 6);
    h.tos = 0xB9;
    h.ttl = 7;
    let pkt = h.build(&packet::tcp_segment(40000, 80, b"GET /"));
    let (out, t) = forward(&mut d, PORT_NET_A, &pkt);
    let hash = flow_hash(VNI_A, CLIENT, VIP, 6, 40000, 80);
    let target = lb.target_for_hash(hash).unwrap();
    let underlay = targets(4)[(target - lb.target_indices[0]) as usize];
    // Outer header, checked with etherparse.
    let (o, inner) = etherparse::Ipv6Header::from_slice(&out).unwrap();
    assert_eq!(o.traffic_class, 0xB9);
    assert_eq!(o.flow_label.value(), hash & 0xF_FFFF);
    assert_eq!(usize::from(o.payload_length), pkt.len());
    assert_eq!(o.next_header, etherparse::IpNumber(4));
    assert_eq!(o.hop_limit, 64);
    assert_eq!(Ipv6Addr::from(o.source), testing::UNDERLAY_SRC);
    assert_eq!(Ipv6Addr::from(o.destination), underlay);
    assert_eq!(
        inner,
        &pkt[..],
        "inner datagram byte-identical (TTL, checksum untouched)"
    );
    // Trace.
    assert_eq!(t.flow_hash, Some(hash));
    assert_eq!(
        (t.lb_id, t.lb_index, t.active_set),
        (Some(3), Some(lb.index), Some(0))
    );
    assert_eq!((t.target, t.underlay), (Some(target), Some(underlay)));
    assert_eq!(t.bucket_slot, lb.slot_for_hash(hash));
    assert_eq!(t.range_match, Some(lb.range_base));
    assert_eq!(
        (t.src_port, t.dst_port, t.protocol, t.family),
        (Some(40000), Some(80), Some(6), Some(4))
    );
    assert_eq!((t.domain, t.egress_port, t.drop), (Some(VNI_A), Some(3), None));
    let names: Vec<_> = t.stages.iter().map(|s| s.stage).collect();
    assert_eq!(
        names,
        [
            "ingress",
            "l3",
            "lookup",
            "l4",
            "port_filter",
            "hash",
            "bucket",
            "target",
            "mtu",
            "egress"
        ]
    );
    assert_eq!(
        t.stage("port_filter"),
        Some(format!("tcp/80 admitted by range {}", lb.range_base).as_str())
    );
    assert!(t.stage("lookup").unwrap().starts_with("hit lb_id=3 at index"));
    // Counters: one packet of the inner length on the LB row and the target row.
    let c = testing::lb_counter(&d, 3);
    assert_eq!((c.packets, c.bytes), (1, pkt.len() as u64));
    let c = testing::target_counter(&d, target);
    assert_eq!((c.packets, c.bytes), (1, pkt.len() as u64));
    assert_eq!(d.drop_counters(), [0; DropReason::COUNT]);
}

#[test]
fn forwards_ipv6_with_traffic_class_and_hop_limit() {
    let (mut d, _, lb6) = setup();
    testing::write_reg(&d, regs::UNDERLAY_HOP_LIMIT, 0x1FF); // bits 7:0 only
    let c6 = CLIENT6.parse::<Ipv6Addr>().unwrap().octets();
    let mut h = Ipv6::new(c6, VIP6.parse::<Ipv6Addr>().unwrap().octets(), 6);
    h.traffic_class = 0x2E;
    let pkt = h.build(&packet::tcp_segment(1111, 443, b""));
    let (out, t) = forward(&mut d, PORT_PUBLIC, &pkt);
    let hash = flow_hash(ironlb_hw::DOMAIN_PUBLIC, CLIENT6, VIP6, 6, 1111, 443);
    assert_eq!(t.flow_hash, Some(hash));
    assert_eq!(t.target, lb6.target_for_hash(hash));
    assert_eq!(out[0] >> 4, 6);
    assert_eq!(((out[0] & 0xF) << 4) | (out[1] >> 4), 0x2E);
    assert_eq!(
        u32::from_be_bytes([0, out[1] & 0xF, out[2], out[3]]),
        hash & 0xF_FFFF
    );
    assert_eq!((out[6], out[7]), (NH_IPV6, 0xFF));
    assert_eq!(&out[40..], &pkt[..]);
}

#[test]
fn ipv4_options_forwarded_and_padding_trimmed() {
    let (mut d, _, _) = setup();
    let mut h = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 10], 17);
    h.options = vec![0x07, 0x07, 0x04, 0, 0, 0, 0, 0x01]; // record route (empty) + NOP
    let mut pkt = h.build(&packet::udp_datagram(9, 5500, b"data"));
    let n = pkt.len();
    pkt.extend_from_slice(&[0; 6]); // link padding
    let (out, t) = forward(&mut d, PORT_NET_A, &pkt);
    assert_eq!(&out[40..], &pkt[..n]);
    assert_eq!(u16::from_be_bytes([out[4], out[5]]) as usize, n);
    assert_eq!(t.datagram_len, Some(n as u32));
    assert_eq!(testing::lb_counter(&d, 3).bytes, n as u64);
    assert!(t.stage("l3").unwrap().contains("6 trailing bytes not forwarded"));
}

#[test]
fn ingress_checks_come_first() {
    let (mut d, _, _) = setup();
    let good = packet::tcp(a(CLIENT), a(VIP), 1, 80, b"");
    testing::set_enabled(&d, false);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &good), DeviceDisabled);
    assert_eq!(drop_reason(&mut d, 99, &[]), DeviceDisabled); // before the port and L3 checks
    testing::set_enabled(&d, true);
    assert_eq!(drop_reason(&mut d, testing::PORT_UNDERLAY, &good), PortDisabled);
    assert_eq!(drop_reason(&mut d, 4, &good), PortDisabled); // not enabled
    assert_eq!(drop_reason(&mut d, 16, &good), PortDisabled); // >= CAP_PORTS
    assert_eq!(drop_reason(&mut d, 5, &[]), PortDisabled); // before L3
    testing::set_port(
        &d,
        4,
        PortCfg {
            enabled: false,
            kind: PortKind::Public,
        },
    );
    assert_eq!(drop_reason(&mut d, 4, &good), PortDisabled);
    testing::write_reg(&d, regs::PORT_CFG + 4 * 4, 0xB000_0000); // enabled, KIND 3 (reserved)
    assert_eq!(drop_reason(&mut d, 4, &good), PortDisabled);
    let c = d.drop_counters();
    assert_eq!((c[DeviceDisabled.index()], c[PortDisabled.index()]), (2, 6));
    // The BAR mirror of the drop counters.
    assert_eq!(d.reg(regs::DROP_COUNTERS + 8 * PortDisabled.index() as u32), 6);
}

#[test]
fn domains_isolate_vips() {
    let (mut d, _, _) = setup();
    let pkt = packet::tcp(a(CLIENT), a(VIP), 1, 80, b"");
    assert!(matches!(d.process(PORT_NET_A, &pkt), Verdict::Forward { .. }));
    assert_eq!(drop_reason(&mut d, PORT_NET_B, &pkt), NoVip);
    assert_eq!(drop_reason(&mut d, PORT_PUBLIC, &pkt), NoVip);
    let pkt6 = packet::tcp(a(CLIENT6), a(VIP6), 1, 443, b"");
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &pkt6), NoVip);
    // An IPv6 packet to the IPv4-mapped form of the IPv4 VIP matches nothing.
    let mapped = packet::tcp(a(CLIENT6), a("::ffff:10.0.0.10"), 1, 80, b"");
    let (v, t) = d.process_traced(PORT_NET_A, &mapped);
    assert_eq!(v, Verdict::Drop(NoVip));
    assert_eq!(t.drop, Some(NoVip));
    assert!(t.stage("lookup").unwrap().starts_with("drop no_vip"));
}

#[test]
fn l3_checks_before_lookup_and_l4_after() {
    let (mut d, _, _) = setup();
    let mut bad = packet::tcp(a(CLIENT), a("10.9.9.9"), 1, 80, b"");
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &bad), NoVip);
    bad[10] ^= 1;
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &bad), Ipv4Checksum);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &bad[..19]), L3Malformed);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &[]), L3Malformed);
    // Truncated L4 to an unknown VIP: no_vip (lookup first); to the VIP: l4_truncated.
    let p = Ipv4::new([10, 0, 0, 1], [10, 9, 9, 9], 6).build(&[0, 1, 0]);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoVip);
    let p = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 10], 6).build(&[0, 1, 0]);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), L4Truncated);
    // Overrunning extension header to an unknown VIP: ipv6_ext_headers (before the lookup).
    let p = Ipv6::new([1; 16], [2; 16], 0).build(&[17, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(drop_reason(&mut d, PORT_PUBLIC, &p), Ipv6ExtHeaders);
}

#[test]
fn protocols() {
    let (mut d, _, _) = setup();
    let vip6 = VIP6.parse::<Ipv6Addr>().unwrap().octets();
    let c6 = CLIENT6.parse::<Ipv6Addr>().unwrap().octets();
    for proto in [50, 59, 47, 58] {
        // ESP, no next header, GRE, ICMPv6 inside IPv4
        let p = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 10], proto).build(&[0u8; 16]);
        assert_eq!(
            drop_reason(&mut d, PORT_NET_A, &p),
            ProtocolNotAllowed,
            "proto {proto}"
        );
    }
    let p = Ipv6::new(c6, vip6, 1).build(&[8, 0, 0, 0, 0, 0, 0, 0]); // ICMP (v4) inside IPv6
    assert_eq!(drop_reason(&mut d, PORT_PUBLIC, &p), ProtocolNotAllowed);
    let p = Ipv6::new(c6, vip6, 59).build(&[]);
    assert_eq!(drop_reason(&mut d, PORT_PUBLIC, &p), ProtocolNotAllowed);
    // SCTP is filtered by port like TCP/UDP.
    let p = packet::sctp(a(CLIENT6), a(VIP6), 5, 9000, b"");
    assert!(matches!(d.process(PORT_PUBLIC, &p), Verdict::Forward { .. }));
    let p = packet::sctp(a(CLIENT6), a(VIP6), 5, 9001, b"");
    assert_eq!(drop_reason(&mut d, PORT_PUBLIC, &p), PortNotAllowed);
}

#[test]
fn port_filter() {
    let (mut d, lb, _) = setup();
    for (proto_ok, port, ok) in [
        (true, 80, true),
        (true, 81, false),
        (false, 5000, true),
        (false, 5999, true),
    ] {
        let p = if proto_ok {
            packet::tcp(a(CLIENT), a(VIP), 1, port, b"")
        } else {
            packet::udp(a(CLIENT), a(VIP), 1, port, b"")
        };
        assert_eq!(
            matches!(d.process(PORT_NET_A, &p), Verdict::Forward { .. }),
            ok,
            "{port}"
        );
    }
    let p = packet::udp(a(CLIENT), a(VIP), 1, 6000, b"");
    let (v, t) = d.process_traced(PORT_NET_A, &p);
    assert_eq!(v, Verdict::Drop(PortNotAllowed));
    assert_eq!(t.range_match, None);
    let want = format!(
        "drop port_not_allowed: udp/6000 not admitted by ranges [{}, {})",
        lb.range_base,
        lb.range_base + 2
    );
    assert_eq!(t.stage("port_filter"), Some(want.as_str()));
    let p = packet::tcp(a(CLIENT), a(VIP), 1, 5000, b""); // UDP range, TCP packet
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), PortNotAllowed);
    // RANGE_COUNT = 0 allows nothing.
    let mut al = SimpleAlloc {
        next_range: 100,
        next_target: 100,
        next_slot: 10_000,
    };
    let spec = LbSpec::new(VNI_A, a("10.0.0.20"), 5).targets(targets(1));
    testing::install(&mut d, &spec, &mut al);
    let p = packet::tcp(a(CLIENT), a("10.0.0.20"), 1, 80, b"");
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), PortNotAllowed);
}

#[test]
fn active_set_switch() {
    let (mut d, lb, _) = setup();
    let p80 = packet::tcp(a(CLIENT), a(VIP), 1, 80, b"");
    let p8080 = packet::tcp(a(CLIENT), a(VIP), 1, 8080, b"");
    assert!(matches!(d.process(PORT_NET_A, &p80), Verdict::Forward { .. }));
    // Set 1: TCP 8080 only, same bucket array; then flip ACTIVE_SET.
    let r = ironlb_hw::entry::RangeEntry {
        protocol: Protocol::Tcp,
        low: 8080,
        high: 8080,
    };
    d.write_entry(TableId::Range, 500, &r.emit());
    let mut e = lb.entry;
    e.sets[1] = ironlb_hw::entry::LbSet {
        range_base: 500,
        range_count: 1,
        ..e.sets[0]
    };
    d.write_entry(TableId::Lb, lb.index, &e.emit());
    assert!(matches!(d.process(PORT_NET_A, &p80), Verdict::Forward { .. }));
    e.active_set = 1;
    testing::write_ctrl(&mut d, &lb, e.ctrl());
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p80), PortNotAllowed);
    let (_, t) = forward(&mut d, PORT_NET_A, &p8080);
    assert_eq!((t.active_set, t.range_match), (Some(1), Some(500)));
    // CTRL = 0 deletes the LB.
    testing::write_ctrl(&mut d, &lb, 0);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p8080), NoVip);
}

mod burst;
mod flow;
mod icmp_frag;
mod target;

#[test]
fn underlay_port_predicate_is_the_port_cfg_decode() {
    let want = Some(PortCfg {
        enabled: true,
        kind: PortKind::Underlay,
    });
    for top in 0..=255u32 {
        for low in [0, 1, 0x00AB_CDEF, 0x00FF_FFFF] {
            let raw = (top << 24) | low;
            assert_eq!(
                is_enabled_underlay(raw),
                PortCfg::from_raw(raw).ok() == want,
                "{raw:#010x}"
            );
        }
    }
}
