//! `Device::process_burst` against `Device::process_into` on each packet in order: same verdicts, output bytes,
//! counter tables and drop counters, on bursts mixing forwarded packets with every kind of drop.

use super::*;
use proptest::prelude::*;

const VIP_ECHO: &str = "10.0.0.30";
const VIP_EMPTY: &str = "10.0.0.50";

/// The standard setup plus an LB that allows ICMP echo and errors (10.0.0.30, TCP 80) and an LB without targets
/// (10.0.0.50, TCP 80: every slot NO_TARGET). `enabled` / `underlay` clear CONTROL.ENABLE / disable the underlay
/// port (DeviceDisabled / no egress port for every packet).
fn device(enabled: bool, underlay: bool) -> Device {
    let (mut d, _, _) = setup();
    let mut al = SimpleAlloc {
        next_range: 200,
        next_target: 200,
        next_slot: 20_000,
    };
    let echo = LbSpec::new(VNI_A, a(VIP_ECHO), 30)
        .range(Protocol::Tcp, 80, 80)
        .targets(targets(3))
        .icmp(true, true);
    testing::install(&mut d, &echo, &mut al);
    let empty = LbSpec::new(VNI_A, a(VIP_EMPTY), 50).range(Protocol::Tcp, 80, 80);
    testing::install(&mut d, &empty, &mut al);
    testing::set_enabled(&d, enabled);
    if !underlay {
        testing::set_port(
            &d,
            testing::PORT_UNDERLAY,
            PortCfg {
                enabled: false,
                kind: PortKind::Underlay,
            },
        );
    }
    d
}

/// One packet: forwarded ones and each drop reason the pipeline can reach per packet.
fn packet() -> impl Strategy<Value = (u32, Vec<u8>)> {
    let v4 = || a(CLIENT);
    let v6 = || a(CLIENT6);
    let edit = (any::<prop::sample::Index>(), any::<u8>());
    prop_oneof![
        // Forwarded: IPv4 TCP 80 / UDP 5000-5999 (VNI 100), IPv6 TCP 443 / SCTP 9000 (public).
        4 => (any::<u16>(), any::<u16>()).prop_map(move |(sp, l)| {
            (PORT_NET_A, packet::tcp(v4(), a(VIP), sp, 80, &vec![0x5a; usize::from(l % 300)]))
        }),
        2 => (any::<u16>(), 5000u16..6000).prop_map(move |(sp, dp)| {
            (PORT_NET_A, packet::udp(v4(), a(VIP), sp, dp, b"payload"))
        }),
        3 => any::<u16>().prop_map(move |sp| (PORT_PUBLIC, packet::tcp(v6(), a(VIP6), sp, 443, b"x"))),
        1 => any::<u16>().prop_map(move |sp| (PORT_PUBLIC, packet::sctp(v6(), a(VIP6), sp, 9000, b""))),
        // Echo request: forwarded by the echo LB, IcmpEcho by the other.
        1 => (any::<u16>(), any::<bool>()).prop_map(move |(id, ok)| {
            let vip = if ok { VIP_ECHO } else { VIP };
            (PORT_NET_A, packet::icmp_echo(v4(), a(vip), id, 1))
        }),
        // ICMP error quoting a reply from the VIP: delivered by the echo LB, IcmpUnsupported by the other.
        1 => (any::<u16>(), any::<bool>()).prop_map(move |(port, ok)| {
            let vip = if ok { VIP_ECHO } else { VIP };
            let reply = packet::tcp(a(vip), v4(), 80, port, b"");
            (PORT_NET_A, packet::icmp_error(a("10.0.0.254"), a(vip), 3, 4, 1300, &reply))
        }),
        // PortNotAllowed, NoVip, ProtocolNotAllowed, NoTarget, MtuExceeded.
        1 => any::<u16>().prop_map(move |sp| (PORT_NET_A, packet::tcp(v4(), a(VIP), sp, 81, b""))),
        1 => any::<u16>().prop_map(move |sp| (PORT_NET_A, packet::tcp(v4(), a("10.9.9.9"), sp, 80, b""))),
        1 => Just((PORT_NET_A, packet::ip(a(CLIENT), a(VIP), 50, b"esp"))),
        1 => any::<u16>().prop_map(move |sp| (PORT_NET_A, packet::tcp(v4(), a(VIP_EMPTY), sp, 80, b""))),
        1 => Just((PORT_NET_A, packet::udp(a(CLIENT), a(VIP), 1, 5000, &[0u8; 9000]))),
        // Wrong or disabled ingress port (PortDisabled; a VIP of another domain: NoVip).
        1 => (0u32..20).prop_map(move |port| (port, packet::tcp(v4(), a(VIP), 1, 80, b""))),
        // Truncated, mutated and arbitrary bytes (BadL3 variants, L4Truncated, ...).
        2 => (any::<bool>(), proptest::collection::vec(edit, 0..4), any::<prop::sample::Index>()).prop_map(
            move |(six, edits, cut)| {
                let (mut p, port) = if six {
                    (packet::tcp(v6(), a(VIP6), 7, 443, b"data"), PORT_PUBLIC)
                } else {
                    (packet::udp(v4(), a(VIP), 7, 5000, b"data"), PORT_NET_A)
                };
                for (i, b) in edits {
                    let i = i.index(p.len());
                    p[i] = b;
                }
                let n = cut.index(p.len() + 1);
                p.truncate(n);
                (port, p)
            }
        ),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(|b| (PORT_NET_A, b)),
    ]
}

/// All table memory, counters included.
fn table_bytes(d: &Device) -> Vec<Vec<u8>> {
    use TableId::*;
    [Lb, Range, Target, Bucket, LbCounter, TargetCounter]
        .into_iter()
        .map(|t| {
            let m = d.tables();
            m.get(t, 0, m.entries(t)).unwrap().to_vec()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Bursts of mixed packets (split into calls of random sizes, some longer than one internal chunk) give exactly
    /// the results, bytes and counters of `process_into` on each packet in order on an identical device.
    #[test]
    fn burst_is_sequential_process_into(
        pkts in proptest::collection::vec(packet(), 0..100),
        call in 1usize..80,
        enabled in prop::bool::weighted(0.9),
        underlay in prop::bool::weighted(0.9),
        one_port in any::<bool>(),
    ) {
        // With `one_port`, every packet arrives on PORT_NET_A (IPv6 VIPs are public: NoVip), so calls are as long
        // as `call` (several internal chunks).
        let pkts: Vec<(u32, Vec<u8>)> = pkts
            .into_iter()
            .map(|(port, p)| (if one_port { PORT_NET_A } else { port }, p))
            .collect();
        let mut seq = device(enabled, underlay);
        let mut bur = device(enabled, underlay);
        prop_assert_eq!(table_bytes(&seq), table_bytes(&bur));
        let mut out = Vec::new();
        let expected: Vec<Result<(u32, Vec<u8>), DropReason>> = pkts
            .iter()
            .map(|(port, p)| seq.process_into(*port, p, &mut out).map(|e| (e, out.clone())))
            .collect();
        let mut got = Vec::new();
        let mut results = Vec::new();
        let mut burst_out = vec![1, 2, 3]; // cleared by the call
        let mut i = 0;
        while i < pkts.len() {
            // One call per ingress port: up to `call` packets with the port of the first.
            let port = pkts[i].0;
            let n = pkts[i..].iter().take(call).take_while(|(p, _)| *p == port).count();
            let group: Vec<&[u8]> = pkts[i..i + n].iter().map(|(_, p)| p.as_slice()).collect();
            bur.process_burst(port, &group, &mut burst_out, &mut results);
            prop_assert_eq!(results.len(), n);
            let mut end = 0;
            for r in &results {
                match r {
                    Ok((e, range)) => {
                        prop_assert_eq!(range.start, end);
                        end = range.end;
                        got.push(Ok((*e, burst_out[range.clone()].to_vec())));
                    }
                    Err(r) => got.push(Err(*r)),
                }
            }
            prop_assert_eq!(end, burst_out.len());
            i += n;
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(table_bytes(&seq), table_bytes(&bur));
        prop_assert_eq!(seq.drop_counters(), bur.drop_counters());
    }
}

/// Every drop reason the per-packet generator aims at is reached, and packets are forwarded, in one burst.
#[test]
fn burst_covers_forwards_and_drops() {
    let mut d = device(true, true);
    let pkts = [
        packet::tcp(a(CLIENT), a(VIP), 1, 80, b""),
        packet::tcp(a(CLIENT), a(VIP), 1, 81, b""),
        packet::tcp(a(CLIENT), a("10.9.9.9"), 1, 80, b""),
        packet::ip(a(CLIENT), a(VIP), 50, b"esp"),
        packet::tcp(a(CLIENT), a(VIP_EMPTY), 1, 80, b""),
        packet::udp(a(CLIENT), a(VIP), 1, 5000, &[0u8; 9000]),
        packet::icmp_echo(a(CLIENT), a(VIP), 1, 1),
        packet::icmp_echo(a(CLIENT), a(VIP_ECHO), 1, 1),
        vec![0x45],
    ];
    let refs: Vec<&[u8]> = pkts.iter().map(|p| p.as_slice()).collect();
    let (mut out, mut results) = (Vec::new(), Vec::new());
    d.process_burst(PORT_NET_A, &refs, &mut out, &mut results);
    let verdicts: Vec<Result<u32, DropReason>> = results.iter().map(|r| r.clone().map(|(e, _)| e)).collect();
    let u = testing::PORT_UNDERLAY;
    assert_eq!(
        verdicts,
        [
            Ok(u),
            Err(PortNotAllowed),
            Err(NoVip),
            Err(ProtocolNotAllowed),
            Err(NoTarget),
            Err(MtuExceeded),
            Err(IcmpEcho),
            Ok(u),
            verdicts[8],
        ]
    );
    assert!(verdicts[8].is_err());
    let r = results[7].clone().unwrap().1;
    assert_eq!(r.start, results[0].clone().unwrap().1.end);
    assert_eq!(r.end, out.len());
}
