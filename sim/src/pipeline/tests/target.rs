//! Target selection (§7.8), MTU and egress (§7.9), counters, the three entry points, robustness.

use super::*;
use ironlb_hw::entry::{LbSet, NO_TARGET};
use proptest::prelude::*;

fn set_bucket_fields(d: &mut Device, lb: &InstalledLb, bucket_log2: u8, bucket_base: u32) {
    let mut e = lb.entry;
    e.sets[0] = LbSet {
        bucket_log2,
        bucket_base,
        ..e.sets[0]
    };
    d.write_entry(TableId::Lb, lb.index, &e.emit());
}

#[test]
fn no_target_cases() {
    let (mut d, lb, _) = setup();
    let p = packet::tcp(a(CLIENT), a(VIP), 40000, 80, b"");
    let (_, t) = forward(&mut d, PORT_NET_A, &p);
    let (slot, target) = (t.bucket_slot.unwrap(), t.target.unwrap());
    // The slot's target entry invalid.
    let saved = d.tables().entry(TableId::Target, target).to_vec();
    d.write_entry(TableId::Target, target, &[0u8; 32]);
    let (v, t) = d.process_traced(PORT_NET_A, &p);
    assert_eq!(v, Verdict::Drop(NoTarget));
    assert_eq!(
        t.stage("target"),
        Some(format!("drop no_target: target entry {target} is not valid").as_str())
    );
    d.write_entry(TableId::Target, target, &saved);
    // NO_TARGET, an index >= CAP_TARGETS.
    d.write_entry(TableId::Bucket, slot, &NO_TARGET.to_le_bytes());
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoTarget);
    d.write_entry(TableId::Bucket, slot, &d.config().caps.targets.to_le_bytes());
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoTarget);
    d.write_entry(TableId::Bucket, slot, &target.to_le_bytes());
    assert!(matches!(d.process(PORT_NET_A, &p), Verdict::Forward { .. }));
    // BUCKET_LOG2 0, above CAP_BUCKET_LOG2.max (14 on the small part).
    set_bucket_fields(&mut d, &lb, 0, lb.bucket_base);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoTarget);
    set_bucket_fields(&mut d, &lb, 15, lb.bucket_base);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoTarget);
    set_bucket_fields(&mut d, &lb, 255, lb.bucket_base);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoTarget);
    // The array runs past the end of bucket memory (slots there are outside).
    let n = d.tables().entries(TableId::Bucket);
    set_bucket_fields(&mut d, &lb, 14, u32::MAX - 3);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoTarget);
    set_bucket_fields(&mut d, &lb, 14, n);
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoTarget);
    // An LB without targets: every slot NO_TARGET.
    let mut al = SimpleAlloc {
        next_range: 400,
        next_target: 400,
        next_slot: 40_000,
    };
    let spec = LbSpec::new(VNI_A, a("10.0.0.50"), 50).range(Protocol::Tcp, 80, 80);
    testing::install(&mut d, &spec, &mut al);
    let p = packet::tcp(a(CLIENT), a("10.0.0.50"), 1, 80, b"");
    assert_eq!(drop_reason(&mut d, PORT_NET_A, &p), NoTarget);
    assert_eq!(d.drop_counters()[NoTarget.index()], 9);
}

#[test]
fn mtu_and_egress() {
    let (mut d, _, _) = setup();
    let p = packet::udp(a(CLIENT), a(VIP), 1, 5000, &[0u8; 100]);
    let outer = (p.len() + 40) as u32;
    testing::write_reg(&d, regs::UNDERLAY_MTU, outer - 1);
    let (v, t) = d.process_traced(PORT_NET_A, &p);
    assert_eq!(v, Verdict::Drop(MtuExceeded));
    assert!(t.target.is_some() && t.egress_port.is_none());
    testing::write_reg(&d, regs::UNDERLAY_MTU, outer);
    assert!(matches!(
        d.process(PORT_NET_A, &p),
        Verdict::Forward { egress_port: 3, .. }
    ));
    // Lowest-numbered enabled underlay port.
    let ul = |enabled| PortCfg {
        enabled,
        kind: PortKind::Underlay,
    };
    testing::set_port(&d, 9, ul(true));
    testing::set_port(&d, 2, ul(false));
    assert!(matches!(
        d.process(PORT_NET_A, &p),
        Verdict::Forward { egress_port: 3, .. }
    ));
    testing::set_port(&d, 3, ul(false));
    assert!(matches!(
        d.process(PORT_NET_A, &p),
        Verdict::Forward { egress_port: 9, .. }
    ));
    testing::set_port(&d, 9, ul(false));
    let (v, t) = d.process_traced(PORT_NET_A, &p);
    assert_eq!(v, Verdict::Drop(PortDisabled));
    assert_eq!(
        t.stage("egress"),
        Some("drop port_disabled: no enabled underlay port")
    );
    // Nothing was counted for drops on the LB/target rows.
    assert_eq!(testing::lb_counter(&d, 3).packets, 3);
}

#[test]
fn entry_points_agree_and_hot_path_reuses_the_buffer() {
    let (mut d, _, _) = setup();
    let pkts = [
        packet::tcp(a(CLIENT), a(VIP), 40000, 80, b"abc"),
        packet::tcp(a(CLIENT), a(VIP), 40000, 81, b"abc"),
        packet::udp(a(CLIENT), a(VIP), 7, 5999, &[1; 300]),
    ];
    let mut out = Vec::with_capacity(2048);
    let ptr = out.as_ptr();
    for p in &pkts {
        let v = d.process(PORT_NET_A, p);
        let (vt, _) = d.process_traced(PORT_NET_A, p);
        let r = d.process_into(PORT_NET_A, p, &mut out);
        assert_eq!(v, vt);
        match v {
            Verdict::Forward { egress_port, packet } => {
                assert_eq!(r, Ok(egress_port));
                assert_eq!(out, packet);
            }
            Verdict::Drop(reason) => {
                assert_eq!(r, Err(reason));
                assert!(out.is_empty(), "out is cleared on a drop");
            }
        }
        assert_eq!(out.as_ptr(), ptr, "no reallocation");
    }
    assert_eq!(testing::lb_counter(&d, 3).packets, 6);
    assert_eq!(d.drop_counters()[PortNotAllowed.index()], 3);
}

#[test]
fn lb_id_beyond_counter_rows_is_not_counted() {
    let (mut d, _, _) = setup();
    let mut al = SimpleAlloc {
        next_range: 500,
        next_target: 500,
        next_slot: 50_000,
    };
    let big = d.config().caps.lb_ids;
    let spec = LbSpec::new(VNI_A, a("10.0.0.60"), big)
        .range(Protocol::Tcp, 80, 80)
        .targets(targets(1));
    let lb = testing::install(&mut d, &spec, &mut al);
    let p = packet::tcp(a(CLIENT), a("10.0.0.60"), 1, 80, b"");
    assert!(matches!(d.process(PORT_NET_A, &p), Verdict::Forward { .. }));
    assert_eq!(testing::target_counter(&d, lb.target_indices[0]).packets, 1);
}

#[test]
fn trace_serializes() {
    let (mut d, _, _) = setup();
    let (_, t) = d.process_traced(PORT_NET_A, &packet::tcp(a(CLIENT), a(VIP), 1, 81, b""));
    let j = serde_json::to_value(&t).unwrap();
    assert_eq!(j["drop"], "port_not_allowed");
    assert_eq!(j["lb_id"], 3);
    assert_eq!(j["dst"], VIP);
    assert_eq!(
        j["stages"].as_array().unwrap().last().unwrap()["stage"],
        "port_filter"
    );
}

fn total_counted(d: &Device) -> u64 {
    d.drop_counters().iter().sum::<u64>()
        + testing::lb_counter(d, 3).packets
        + testing::lb_counter(d, 4).packets
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes: no panic, and exactly one counter moves (a drop reason or an LB row).
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), port in 0u32..20) {
        let (mut d, _, _) = setup();
        let _ = d.process(port, &bytes);
        prop_assert_eq!(total_counted(&d), 1);
    }

    /// Valid packets with a few bytes changed or cut: no panic, exactly one counter per packet.
    #[test]
    fn mutated_packets(
        v6 in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let (mut d, _, _) = setup();
        let (mut p, port) = if v6 {
            let mut chain = vec![6, 0, 1, 4, 0xC2, 4, 0, 0];
            chain.extend(packet::tcp_segment(1111, 443, b"data"));
            (Ipv6::new(CLIENT6.parse::<Ipv6Addr>().unwrap().octets(), VIP6.parse::<Ipv6Addr>().unwrap().octets(), 0).build(&chain), PORT_PUBLIC)
        } else {
            let reply = packet::tcp(a(VIP), a(CLIENT), 80, 40000, b"");
            (packet::icmp_error(a("10.0.0.254"), a(VIP), 3, 4, 1300, &reply), PORT_NET_A)
        };
        for (i, b) in edits {
            let i = i.index(p.len());
            p[i] = b;
        }
        let n = cut.index(p.len() + 1);
        let _ = d.process(port, &p[..n]);
        let _ = d.process(port, &p);
        prop_assert_eq!(total_counted(&d), 2);
    }
}
