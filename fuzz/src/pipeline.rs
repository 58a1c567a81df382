//! Target `pipeline`: one arbitrary packet through the model's packet pipeline (docs/hw-spec.md §7) on a device
//! programmed with a fixed set of load balancers ([`LBS`]).
//!
//! Input: byte 0 selects the ingress port (low 3 bits: the 4 configured ports and 4 disabled ones) and byte 1 the
//! underlay MTU and hop limit; the rest is the packet as it arrives on the port.
//!
//! What every input must satisfy (each an assertion, so AFL reports a violation as a crash):
//! * no panic in any of the pipeline's entry points, and all of them agree: [`Device::process`],
//!   [`Device::process_into`], [`Device::process_burst`] and [`Device::dry_run`] give the same verdict and bytes;
//! * a drop carries a named reason and increments exactly that reason's drop counter, by one;
//! * a forwarded packet is the input's IP datagram (the input up to its IP length, nothing changed) behind exactly
//!   one well-formed outer IPv6 header: version 6, the inner traffic class, payload length = datagram length,
//!   next header 4/41 by inner family, the device's hop limit, UNDERLAY_SRC as source and, as destination, a target
//!   of the load balancer whose VIP is the inner destination in the ingress port's domain; it fits the MTU, leaves
//!   on the underlay port, and the LB's counter row counts it;
//! * the device's policy holds for what it forwards (checked independently of the model's parser): an IPv4
//!   datagram has a valid header checksum; an unfragmented TCP/UDP/SCTP datagram without extension headers goes
//!   to a port an allow-list range admits; an echo request only to an LB that allows echo.

use crate::Bytes;
use ironlb_hw::entry::Protocol;
use ironlb_hw::regs::{UNDERLAY_HOP_LIMIT, UNDERLAY_MTU};
use ironlb_hw::DropReason;
use ironlb_sim::testing::{self, LbSpec, SimpleAlloc};
use ironlb_sim::{Device, DeviceConfig, Verdict};
use std::cell::RefCell;
use std::net::{IpAddr, Ipv6Addr};

/// The load balancers the target's device holds: both families, all three domains, every protocol, both ICMP
/// policies, an LB without a bucket array and one whose slots hold no target.
pub fn lbs() -> Vec<LbSpec> {
    let ip = |s: &str| s.parse::<IpAddr>().expect("literal address");
    let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("literal address");
    vec![
        LbSpec::new(testing::PUBLIC, ip("203.0.113.10"), 1)
            .range(Protocol::Tcp, 80, 80)
            .range(Protocol::Udp, 53, 53)
            .range(Protocol::Sctp, 9000, 9100)
            .targets([v6("fd00:1::1"), v6("fd00:1::2")])
            .icmp(true, true),
        LbSpec::new(testing::VNI_A, ip("10.0.0.10"), 2)
            .range(Protocol::Tcp, 1, 65535)
            .target(v6("fd00:2::1"))
            .m_log2(1),
        LbSpec::new(testing::VNI_A, ip("fd10::10"), 3)
            .range(Protocol::Tcp, 443, 443)
            .range(Protocol::Udp, 0, 65535)
            .targets([v6("fd00:3::1"), v6("fd00:3::2"), v6("fd00:3::3")])
            .icmp(true, false),
        LbSpec::new(testing::VNI_B, ip("2001:db8::20"), 4)
            .range(Protocol::Udp, 4789, 4789)
            .target(v6("fd00:4::1"))
            .m_log2(0),
        LbSpec::new(testing::PUBLIC, ip("2001:db8::10"), 5).range(Protocol::Tcp, 22, 22),
        LbSpec::new(testing::VNI_B, ip("10.0.0.10"), 6)
            .range(Protocol::Udp, 1000, 2000)
            .range(Protocol::Tcp, 8080, 8080)
            .target(v6("fd00:6::1"))
            .m_log2(14),
    ]
}

/// Underlay MTUs byte 1 selects from (bits 1:0).
const MTUS: [u32; 4] = [9000, 1280, 68, 65535 + 40];
/// Outer hop limits byte 1 selects from (bit 2).
const HOP_LIMITS: [u32; 2] = [64, 1];

thread_local! {
    /// Built once per process: programming the device is far more work than one packet.
    static DEVICE: RefCell<Device> = RefCell::new(programmed_device());
}

fn programmed_device() -> Device {
    let mut dev = Device::new(DeviceConfig::small()).expect("anonymous device memory");
    testing::setup_ports(&mut dev);
    let mut alloc = SimpleAlloc::default();
    for lb in lbs() {
        testing::install(&mut dev, &lb, &mut alloc);
    }
    dev
}

/// Run `f` on this thread's programmed device (counters and registers carry over between calls; tables do not
/// change).
pub fn with_device<R>(f: impl FnOnce(&mut Device) -> R) -> R {
    DEVICE.with(|d| f(&mut d.borrow_mut()))
}

/// The domain of an ingress port of the standard layout ([`testing::setup_ports`]).
fn domain(port: u32) -> Option<u32> {
    match port {
        testing::PORT_PUBLIC => Some(testing::PUBLIC),
        testing::PORT_NET_A => Some(testing::VNI_A),
        testing::PORT_NET_B => Some(testing::VNI_B),
        _ => None,
    }
}

/// The harness (see the module documentation).
pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let port = u32::from(b.u8() & 7);
    let knobs = b.u8();
    let pkt = b.rest();
    with_device(|dev| {
        testing::write_reg(dev, UNDERLAY_MTU, MTUS[usize::from(knobs & 3)]);
        testing::write_reg(dev, UNDERLAY_HOP_LIMIT, HOP_LIMITS[usize::from(knobs >> 2 & 1)]);
        check_packet(dev, port, pkt);
    });
}

fn check_packet(dev: &mut Device, port: u32, pkt: &[u8]) {
    let drops_before = dev.drop_counters();
    let (dry, trace) = dev.dry_run(port, pkt);
    assert_eq!(
        dev.drop_counters(),
        drops_before,
        "dry_run changed a drop counter"
    );

    let lb_packets_before = trace.lb_id.map(|id| testing::lb_counter(dev, id).packets);
    let verdict = dev.process(port, pkt);
    assert_eq!(verdict, dry, "process and dry_run disagree");

    let mut out = Vec::new();
    let into = dev.process_into(port, pkt, &mut out);
    let mut burst_out = Vec::new();
    let mut results = Vec::new();
    dev.process_burst(port, &[pkt, pkt], &mut burst_out, &mut results);
    assert_eq!(results.len(), 2, "one burst result per packet");
    let drops_after = dev.drop_counters();

    match &verdict {
        Verdict::Drop(reason) => {
            assert!(!reason.name().is_empty(), "drop reason without a name");
            assert_eq!(trace.drop, Some(*reason), "trace names another drop reason");
            assert_eq!(into, Err(*reason), "process_into disagrees");
            assert!(out.is_empty(), "a dropped packet left bytes in the output");
            for r in &results {
                assert_eq!(r, &Err(*reason), "process_burst disagrees");
            }
            assert!(
                burst_out.is_empty(),
                "dropped burst packets left bytes in the output"
            );
            // process, process_into and two burst packets: 4 drops of this reason, nothing else.
            for r in DropReason::ALL {
                let want = drops_before[r.index()] + if r == *reason { 4 } else { 0 };
                assert_eq!(drops_after[r.index()], want, "drop counter {}", r.name());
            }
        }
        Verdict::Forward { egress_port, packet } => {
            assert_eq!(into, Ok(*egress_port), "process_into disagrees");
            assert_eq!(&out, packet, "process_into wrote other bytes");
            for r in &results {
                let (p, range) = r.clone().expect("process_burst dropped a forwarded packet");
                assert_eq!(p, *egress_port, "process_burst chose another port");
                assert_eq!(
                    &burst_out[range],
                    packet.as_slice(),
                    "process_burst wrote other bytes"
                );
            }
            assert_eq!(
                drops_after, drops_before,
                "a forwarded packet changed a drop counter"
            );
            let lb_id = trace.lb_id.expect("forwarded without an LB");
            let before = lb_packets_before.expect("forwarded without an LB");
            assert_eq!(
                testing::lb_counter(dev, lb_id).packets,
                before + 4,
                "LB counter row {lb_id} did not count the forwarded packets"
            );
            check_forwarded(dev, port, pkt, *egress_port, packet, trace.flow_hash);
        }
    }
}

/// The outer header and the policy of a forwarded packet (see the module documentation).
fn check_forwarded(dev: &Device, port: u32, pkt: &[u8], egress: u32, out: &[u8], hash: Option<u32>) {
    assert_eq!(
        egress,
        testing::PORT_UNDERLAY,
        "forwarded to a port that is not the underlay"
    );
    assert!(out.len() >= 40, "forwarded packet shorter than an IPv6 header");
    let (outer, inner) = out.split_at(40);
    // The inner datagram: the input's first `IP length` bytes, unchanged.
    assert!(!pkt.is_empty(), "forwarded an empty packet");
    let v6 = match pkt[0] >> 4 {
        4 => false,
        6 => true,
        v => panic!("forwarded an IP version {v} packet"),
    };
    let ip_len = if v6 {
        assert!(pkt.len() >= 40, "forwarded a truncated IPv6 header");
        40 + usize::from(be16(pkt, 4))
    } else {
        assert!(pkt.len() >= 20, "forwarded a truncated IPv4 header");
        usize::from(be16(pkt, 2))
    };
    assert_eq!(inner.len(), ip_len, "inner datagram length is not the IP length");
    assert_eq!(
        inner,
        &pkt[..ip_len],
        "inner datagram is not the input's datagram"
    );

    // Exactly one well-formed outer IPv6 header.
    assert_eq!(outer[0] >> 4, 6, "outer version");
    let tc = (outer[0] & 0xF) << 4 | outer[1] >> 4;
    let inner_tc = if v6 {
        (pkt[0] & 0xF) << 4 | pkt[1] >> 4
    } else {
        pkt[1]
    };
    assert_eq!(tc, inner_tc, "outer traffic class");
    let flow_label = u32::from_be_bytes([0, outer[1] & 0xF, outer[2], outer[3]]);
    assert_eq!(Some(flow_label), hash.map(|h| h & 0xF_FFFF), "outer flow label");
    assert_eq!(usize::from(be16(outer, 4)), inner.len(), "outer payload length");
    assert_eq!(outer[6], if v6 { 41 } else { 4 }, "outer next header");
    assert_eq!(outer[7], dev.hop_limit(), "outer hop limit");
    assert_eq!(outer[8..24], testing::UNDERLAY_SRC.octets(), "outer source");
    assert!(
        out.len() as u64 <= u64::from(dev.underlay_mtu()),
        "outer packet exceeds the MTU"
    );

    // The destination is a target of the LB of (ingress domain, inner destination).
    let dst: IpAddr = if v6 {
        IpAddr::from(<[u8; 16]>::try_from(&pkt[24..40]).expect("16 bytes"))
    } else {
        IpAddr::from(<[u8; 4]>::try_from(&pkt[16..20]).expect("4 bytes"))
    };
    let dom = domain(port).expect("forwarded from a port that is not an ingress port");
    let lbs = lbs();
    let lb = lbs
        .iter()
        .find(|lb| lb.domain == dom && lb.vip == dst)
        .unwrap_or_else(|| panic!("forwarded to {dst}, not a VIP of domain {dom:#x}"));
    let underlay = Ipv6Addr::from(<[u8; 16]>::try_from(&outer[24..40]).expect("16 bytes"));
    assert!(
        lb.targets.contains(&underlay),
        "outer destination {underlay} is not a target of {dst}"
    );

    check_policy(lb, v6, inner);
}

/// The LB's policy on a forwarded datagram, parsed here independently of the model.
fn check_policy(lb: &LbSpec, v6: bool, d: &[u8]) {
    let (proto, l4) = if v6 {
        (d[6], 40)
    } else {
        let ihl = usize::from(d[0] & 0xF) * 4;
        assert!(
            ihl >= 20 && ihl <= d.len(),
            "forwarded an IPv4 datagram with IHL {ihl}"
        );
        assert_eq!(
            checksum(&d[..ihl]),
            0,
            "forwarded an IPv4 datagram with a bad header checksum"
        );
        let fragment = be16(d, 6) & 0x3FFF != 0; // MF or an offset
        if fragment {
            return;
        }
        (d[9], ihl)
    };
    let l4 = &d[l4..];
    match proto {
        6 | 17 | 132 if l4.len() >= 4 => {
            let port = be16(l4, 2);
            let admitted = lb
                .ranges
                .iter()
                .any(|&(p, low, high)| p.number() == proto && (low..=high).contains(&port));
            assert!(
                admitted,
                "forwarded protocol {proto} port {port}, which no range of {} admits",
                lb.vip
            );
        }
        6 | 17 | 132 => panic!("forwarded protocol {proto} without its ports"),
        1 if l4.first() == Some(&8) && !v6 => {
            assert!(
                lb.icmp.allow_echo,
                "forwarded an echo request to {}, which does not allow echo",
                lb.vip
            );
        }
        58 if l4.first() == Some(&128) && v6 => {
            assert!(
                lb.icmp.allow_echo,
                "forwarded an echo request to {}, which does not allow echo",
                lb.vip
            );
        }
        _ => {}
    }
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// The Internet checksum of `b` (0 for a header with a correct checksum field).
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironlb_sim::testing::packet;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// The forward checks are not vacuous: the model's real output passes, and each kind of corruption of it fails.
    #[test]
    fn forward_checks_reject_every_corruption() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let pkt = packet::tcp(ip("198.51.100.7"), ip("203.0.113.10"), 40000, 80, b"hello");
        let port = testing::PORT_PUBLIC;
        with_device(|dev| {
            let (Verdict::Forward { egress_port, packet }, trace) = dev.dry_run(port, &pkt) else {
                panic!("the example packet is forwarded");
            };
            let check = |out: &[u8], egress: u32| {
                catch_unwind(AssertUnwindSafe(|| {
                    check_forwarded(dev, port, &pkt, egress, out, trace.flow_hash)
                }))
                .is_ok()
            };
            assert!(check(&packet, egress_port), "the model's output passes");
            assert!(!check(&packet, testing::PORT_PUBLIC), "wrong egress port");
            type Corrupt = fn(&mut Vec<u8>);
            let corruptions: [(&str, Corrupt); 9] = [
                ("version", |p| p[0] = 0x40),
                ("flow label", |p| p[3] ^= 1),
                ("payload length", |p| p[5] ^= 1),
                ("next header", |p| p[6] = 41),
                ("hop limit", |p| p[7] ^= 1),
                ("source", |p| p[23] ^= 1),
                ("destination", |p| p[39] ^= 1),
                ("inner byte", |p| *p.last_mut().unwrap() ^= 1),
                ("second outer header", |p| {
                    let outer = p[..40].to_vec();
                    p.splice(40..40, outer);
                }),
            ];
            for (what, corrupt) in corruptions {
                let mut p = packet.clone();
                corrupt(&mut p);
                assert!(!check(&p, egress_port), "corrupted {what} passes");
            }
        });
    }

    #[test]
    fn policy_checks_reject_what_the_lb_does_not_allow() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let lbs = lbs();
        let (public, vni_a) = (&lbs[0], &lbs[1]);
        let ok = |lb: &LbSpec, v6: bool, d: &[u8]| catch_unwind(|| check_policy(lb, v6, d)).is_ok();
        let (c, v) = (ip("198.51.100.7"), ip("203.0.113.10"));
        assert!(ok(public, false, &packet::tcp(c, v, 1, 80, b"")));
        assert!(
            !ok(public, false, &packet::tcp(c, v, 1, 81, b"")),
            "port outside the ranges"
        );
        assert!(
            !ok(public, false, &packet::udp(c, v, 1, 80, b"")),
            "protocol of no range"
        );
        assert!(ok(public, false, &packet::icmp_echo(c, v, 1, 1)));
        assert!(
            !ok(vni_a, false, &packet::icmp_echo(c, v, 1, 1)),
            "echo to an LB without echo"
        );
        let mut bad = packet::tcp(c, v, 1, 80, b"");
        bad[10] ^= 1;
        assert!(!ok(public, false, &bad), "bad IPv4 checksum");
    }
}
