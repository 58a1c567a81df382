//! The flow table (contract v1.2, docs/hw-spec.md §11): learn, hit, refresh, age per class, sweep, overflow, flush,
//! removed and reused targets, LB delete and re-create on a reused slot, ICMP errors, fragments, FIN/RST, a v1.1
//! part. Each test drives the device through packets, register writes and mailbox commands only (table backdoor
//! writes stand for the driver's table writes).

use super::*;
use ironlb_hw::entry::flow::FlowEntry;
use ironlb_hw::entry::TargetEntry;
use ironlb_hw::regs::{
    FlowClass, FlowCounter, FlushSelector, Opcode, Status, TableId, FLOW_CTRL, FLOW_CTRL_ENABLE,
};

const TCP: u8 = 6;

fn on(d: &Device) {
    testing::write_reg(d, FLOW_CTRL, FLOW_CTRL_ENABLE);
}

/// [`setup`] with the flow table enabled.
fn flow_setup() -> (Device, InstalledLb, InstalledLb) {
    let (d, v4, v6) = setup();
    on(&d);
    (d, v4, v6)
}

fn counters(d: &Device) -> [u64; 6] {
    let c = d.flow_counters();
    FlowCounter::ALL.map(|k| c[k.index()])
}

/// [learned, hits, aged, overflow, flushed, relearned]
fn counts(learned: u64, hits: u64, aged: u64, overflow: u64, flushed: u64, relearned: u64) -> [u64; 6] {
    [learned, hits, aged, overflow, flushed, relearned]
}

/// Forward `p` on the VNI-A port; (target, pinned state).
fn send(d: &mut Device, p: &[u8]) -> (u32, &'static str) {
    let (_, t) = forward(d, PORT_NET_A, p);
    (t.target.unwrap(), t.pinned.unwrap_or("off"))
}

fn tcp(sp: u16) -> Vec<u8> {
    packet::tcp(a(CLIENT), a(VIP), sp, 80, b"")
}

/// A TCP segment with `flags` (FIN 0x01, RST 0x04, ...) instead of SYN; the device does not check TCP checksums.
fn tcp_flags(sp: u16, flags: u8) -> Vec<u8> {
    let mut p = tcp(sp);
    p[20 + 13] = flags;
    p
}

fn valid_entries(d: &Device) -> Vec<(u32, FlowEntry)> {
    (0..d.tables().entries(TableId::Flow))
        .filter_map(|i| {
            let b: &[u8; 64] = d.tables().entry(TableId::Flow, i).try_into().unwrap();
            FlowEntry::parse(b).unwrap().map(|e| (i, e))
        })
        .collect()
}

/// Rewrite every slot of `lb`'s array that holds `from` to `to` (what the driver does when a target leaves the
/// hashing: drain or removal).
fn move_slots(d: &mut Device, lb: &InstalledLb, from: u32, to: u32) {
    for s in lb.bucket_base..lb.bucket_base + (1 << lb.m_log2) {
        if le32(d.tables().entry(TableId::Bucket, s)) == from {
            d.write_entry(TableId::Bucket, s, &to.to_le_bytes());
        }
    }
}

/// Run one mailbox command; its status.
fn mailbox(d: &mut Device, op: Opcode, table: TableId, index: u32, arg: u32) -> Status {
    let seq = d.reg(regs::MB_DONE_SEQ).wrapping_add(1);
    for (r, v) in [
        (regs::MB_OPCODE, op as u32),
        (regs::MB_TABLE, table as u32),
        (regs::MB_INDEX, index),
        (regs::MB_COUNT, 1),
        (regs::MB_ARG, arg),
        (regs::MB_DOORBELL, seq),
    ] {
        testing::write_reg(d, r, v);
    }
    d.poll();
    assert_eq!(d.reg(regs::MB_DONE_SEQ), seq);
    Status::from_raw(d.reg(regs::MB_STATUS)).unwrap()
}

fn flush(d: &mut Device, sel: FlushSelector) -> Status {
    let (arg, index) = sel.to_raw();
    mailbox(d, Opcode::FlowFlush, TableId::Flow, index, arg)
}

#[test]
fn learn_then_hit_and_the_entry_holds_the_flow() {
    let (mut d, lb, _) = flow_setup();
    d.set_flow_clock(1000);
    let (t1, s1) = send(&mut d, &tcp(40000));
    assert_eq!(s1, "learned");
    assert_eq!(counters(&d), counts(1, 0, 0, 0, 0, 0));
    d.set_flow_clock(1500);
    let (t2, s2) = send(&mut d, &tcp(40000));
    assert_eq!((t2, s2), (t1, "hit"));
    assert_eq!(counters(&d), counts(1, 1, 0, 0, 0, 0));
    let entries = valid_entries(&d);
    assert_eq!(entries.len(), 1);
    let (index, e) = entries[0];
    let h = flow_hash(VNI_A, CLIENT, VIP, TCP, 40000, 80);
    let sets = d.config().caps.flow_entries / d.config().caps.flow_ways;
    assert_eq!(
        index / d.config().caps.flow_ways,
        h & (sets - 1),
        "placed in set h & (S - 1)"
    );
    assert_eq!(
        (e.key.lb_id, e.key.lb_epoch, e.target, e.hash),
        (lb.entry.lb_id, 0, t1, h)
    );
    assert_eq!((e.last_seen, e.closing), (1500, false), "refreshed by the hit");
    assert_eq!(e.key.tuple.src_port, 40000);
    // The trace names the stage.
    let (_, t) = d.dry_run(PORT_NET_A, &tcp(40000));
    assert_eq!(t.pinned, Some("hit"));
    assert!(t
        .stage("flow")
        .unwrap()
        .starts_with(&format!("hit entry {index}")));
    assert!(t.bucket_slot.is_none(), "a hit does not read the bucket slot");
    assert_eq!(counters(&d), counts(1, 1, 0, 0, 0, 0), "dry_run changes nothing");
}

#[test]
fn a_pinned_flow_stays_when_its_slot_moves_and_new_flows_follow_the_slot() {
    let (mut d, lb, _) = flow_setup();
    let (pinned, _) = send(&mut d, &tcp(40000));
    let other = lb.target_indices.iter().copied().find(|&t| t != pinned).unwrap();
    move_slots(&mut d, &lb, pinned, other); // `pinned` drains: no slot hashes to it any more
    assert_eq!(
        send(&mut d, &tcp(40000)),
        (pinned, "hit"),
        "established flow keeps its target"
    );
    // A new flow whose slot used to be `pinned`'s goes to `other`.
    let fresh = (1..u16::MAX)
        .map(|sp| sp.wrapping_add(20000))
        .find(|&sp| lb.target_for_hash(flow_hash(VNI_A, CLIENT, VIP, TCP, sp, 80)) == Some(pinned))
        .unwrap();
    assert_eq!(send(&mut d, &tcp(fresh)), (other, "learned"));
}

#[test]
fn a_removed_target_falls_back_to_the_bucket_and_relearns() {
    let (mut d, lb, _) = flow_setup();
    let (pinned, _) = send(&mut d, &tcp(40000));
    let other = lb.target_indices.iter().copied().find(|&t| t != pinned).unwrap();
    move_slots(&mut d, &lb, pinned, other);
    d.write_entry(TableId::Target, pinned, &[0u8; 32]); // removed
    assert_eq!(send(&mut d, &tcp(40000)), (other, "relearned"));
    assert_eq!(send(&mut d, &tcp(40000)), (other, "hit"));
    assert_eq!(counters(&d), counts(1, 1, 0, 0, 0, 1));
    assert_eq!(valid_entries(&d).len(), 1, "re-learned in place");
    // The index reused by another LB: the LB_ID check sends the flow back to its own LB's bucket.
    d.write_entry(TableId::Target, pinned, &[0u8; 32]);
    let foreign = TargetEntry {
        lb_id: 77,
        underlay: "fd00:77::1".parse().unwrap(),
    };
    d.write_entry(TableId::Target, other, &foreign.emit());
    let third = lb
        .target_indices
        .iter()
        .copied()
        .find(|&t| t != pinned && t != other)
        .unwrap();
    move_slots(&mut d, &lb, other, third);
    assert_eq!(send(&mut d, &tcp(40000)), (third, "relearned"));
}

#[test]
fn age_per_class_and_refresh() {
    let (mut d, _, _) = flow_setup();
    // Echo requests allowed on the IPv4 LB for the `other` class.
    let spec = LbSpec::new(VNI_A, a("10.0.0.20"), 9)
        .range(Protocol::Tcp, 80, 80)
        .targets(targets(2))
        .icmp(true, true)
        .m_log2(4);
    let mut al = SimpleAlloc {
        next_range: 600,
        next_target: 600,
        next_slot: 60_000,
    };
    testing::install(&mut d, &spec, &mut al);
    let timeouts = [
        (FlowClass::Tcp, 500),
        (FlowClass::Udp, 300),
        (FlowClass::Other, 200),
        (FlowClass::Sctp, 400),
    ];
    for (c, ms) in timeouts {
        testing::write_reg(&d, c.register(), ms);
    }
    let pkts = [
        (FlowClass::Tcp, PORT_NET_A, tcp(1000)),
        (
            FlowClass::Udp,
            PORT_NET_A,
            packet::udp(a(CLIENT), a(VIP), 1000, 5000, b"x"),
        ),
        (
            FlowClass::Other,
            PORT_NET_A,
            packet::icmp_echo(a(CLIENT), a("10.0.0.20"), 7, 1),
        ),
        (
            FlowClass::Sctp,
            PORT_PUBLIC,
            packet::sctp(a(CLIENT6), a(VIP6), 1000, 9000, b""),
        ),
    ];
    for (class, ms) in timeouts {
        let (_, port, p) = pkts.iter().find(|(c, _, _)| *c == class).unwrap();
        let state = |d: &mut Device| forward(d, *port, p).1.pinned.unwrap();
        d.set_flow_clock(10_000);
        assert_eq!(state(&mut d), "learned", "{class:?}");
        d.set_flow_clock(10_000 + ms);
        assert_eq!(
            state(&mut d),
            "hit",
            "{class:?}: idle exactly the timeout is alive"
        );
        d.set_flow_clock(10_000 + 2 * ms);
        assert_eq!(state(&mut d), "hit", "{class:?}: the hit refreshed it");
        d.set_flow_clock(10_000 + 3 * ms + 1);
        // The sweep may have aged it already (a sweep runs as the clock advances) or the learn replaces it.
        assert_eq!(
            state(&mut d),
            "learned",
            "{class:?}: idle longer than the timeout"
        );
        d.write_entry(TableId::Flow, 0, &[0u8; 64]); // keep nothing between classes but the counters
        for i in 0..d.tables().entries(TableId::Flow) {
            d.write_entry(TableId::Flow, i, &[0u8; 64]);
        }
    }
    let c = counters(&d);
    assert_eq!(
        (c[0], c[1], c[2]),
        (8, 8, 4),
        "two learns, two hits and one ageing per class"
    );
}

#[test]
fn the_sweep_ages_idle_entries_without_traffic() {
    let (mut d, _, _) = flow_setup();
    testing::write_reg(&d, FlowClass::Tcp.register(), 1000);
    d.set_flow_clock(0);
    for sp in 0..50 {
        send(&mut d, &tcp(30000 + sp));
    }
    assert_eq!(valid_entries(&d).len(), 50);
    // Idle 1,000 ms: alive. Then every entry is visited within FLOW_SWEEP_MS of clock.
    for now in (100..=1000).step_by(100) {
        d.set_flow_clock(now);
    }
    assert_eq!(valid_entries(&d).len(), 50);
    for now in (1100..=2100).step_by(100) {
        d.set_flow_clock(now);
    }
    assert_eq!(valid_entries(&d).len(), 0, "swept within 1,000 ms after expiry");
    assert_eq!(counters(&d), counts(50, 0, 50, 0, 0, 0));
    // A clock step backwards sweeps nothing.
    send(&mut d, &tcp(1));
    d.set_flow_clock(5);
    assert_eq!(valid_entries(&d).len(), 1);
}

#[test]
fn tcp_fin_and_rst_do_not_learn_and_shorten_a_hit_flow() {
    let (mut d, _, _) = flow_setup();
    testing::write_reg(&d, FlowClass::TcpClosing.register(), 100);
    d.set_flow_clock(0);
    assert_eq!(send(&mut d, &tcp_flags(1, 0x01)).1, "not_learned");
    assert_eq!(send(&mut d, &tcp_flags(2, 0x04)).1, "not_learned");
    assert!(valid_entries(&d).is_empty());
    send(&mut d, &tcp(3));
    assert_eq!(send(&mut d, &tcp_flags(3, 0x11)).1, "hit"); // FIN|ACK
    assert!(valid_entries(&d)[0].1.closing);
    d.set_flow_clock(101);
    assert_eq!(
        send(&mut d, &tcp(3)).1,
        "learned",
        "closing timeout (100 ms), not the TCP one"
    );
    assert!(!valid_entries(&d)[0].1.closing, "a learn starts open");
}

#[test]
fn a_full_set_overflows_without_a_drop() {
    let cfg = DeviceConfig::small().with_flow_table(4, 4); // one set of four ways
    let mut d = Device::new(cfg).unwrap();
    testing::setup_ports(&mut d);
    let spec = LbSpec::new(VNI_A, a(VIP), 3)
        .range(Protocol::Tcp, 80, 80)
        .targets(targets(4));
    let lb = testing::install(&mut d, &spec, &mut SimpleAlloc::default());
    on(&d);
    for sp in 0..4 {
        assert_eq!(send(&mut d, &tcp(sp)).1, "learned");
    }
    let (target, state) = send(&mut d, &tcp(4));
    assert_eq!(state, "overflow");
    assert_eq!(
        Some(target),
        lb.target_for_hash(flow_hash(VNI_A, CLIENT, VIP, TCP, 4, 80))
    );
    assert_eq!(counters(&d), counts(4, 0, 0, 1, 0, 0));
    assert_eq!(d.drop_counters().iter().sum::<u64>(), 0);
    // An expired entry makes room (counted aged by the learn that replaces it).
    testing::write_reg(&d, FlowClass::Tcp.register(), 1000);
    d.set_flow_clock(600);
    send(&mut d, &tcp(0)); // refreshed at 600
    d.set_flow_clock(1500); // the sweep visits all four entries: 1..3 expired (idle 1500), 0 alive (idle 900)
    assert_eq!(counters(&d)[FlowCounter::Aged.index()], 3);
    assert_eq!(send(&mut d, &tcp(4)).1, "learned");
}

#[test]
fn flush_by_lb_by_target_and_all() {
    let (mut d, v4, v6) = flow_setup();
    let mut by_target = std::collections::BTreeMap::<u32, u64>::new();
    for sp in 0..40 {
        *by_target.entry(send(&mut d, &tcp(10_000 + sp)).0).or_default() += 1;
    }
    for sp in 0..10 {
        forward(
            &mut d,
            PORT_PUBLIC,
            &packet::tcp(a(CLIENT6), a(VIP6), 10_000 + sp, 443, b""),
        );
    }
    assert_eq!(valid_entries(&d).len(), 50);
    let (&t, &n) = by_target.iter().next().unwrap();
    assert_eq!(flush(&mut d, FlushSelector::Target(t)), Status::Ok);
    assert_eq!(valid_entries(&d).len(), 50 - n as usize);
    assert!(valid_entries(&d).iter().all(|(_, e)| e.target != t));
    assert_eq!(flush(&mut d, FlushSelector::Lb(v4.entry.lb_id)), Status::Ok);
    assert!(valid_entries(&d)
        .iter()
        .all(|(_, e)| e.key.lb_id == v6.entry.lb_id));
    assert_eq!(valid_entries(&d).len(), 10);
    assert_eq!(flush(&mut d, FlushSelector::All), Status::Ok);
    assert!(valid_entries(&d).is_empty());
    assert_eq!(counters(&d), counts(50, 0, 0, 0, 50, 0));
    // Bad selectors, other tables, writes to the flow table.
    assert_eq!(
        mailbox(&mut d, Opcode::FlowFlush, TableId::Flow, 0, 3),
        Status::BadWord
    );
    assert_eq!(
        mailbox(&mut d, Opcode::FlowFlush, TableId::Target, 0, 0),
        Status::BadTable
    );
    assert_eq!(
        mailbox(&mut d, Opcode::Fill, TableId::Flow, 0, 0),
        Status::BadTable
    );
    assert_eq!(
        mailbox(&mut d, Opcode::WriteWord, TableId::Flow, 0, 0),
        Status::BadTable
    );
    assert_eq!(
        mailbox(&mut d, Opcode::Write, TableId::Flow, 0, 0),
        Status::BadTable
    );
    assert_eq!(mailbox(&mut d, Opcode::Read, TableId::Flow, 0, 0), Status::Ok);
    // The live counters are in registers, and a snapshot copies them.
    let flushed = regs::FLOW_COUNTERS + 8 * FlowCounter::Flushed.index() as u32;
    assert_eq!(d.reg(flushed), 50);
    testing::write_reg(&d, regs::DROP_SNAPSHOT, 9);
    d.poll();
    assert_eq!(
        d.reg(regs::FLOW_SNAPSHOT_DATA + 8 * FlowCounter::Learned.index() as u32),
        50
    );
}

#[test]
fn a_re_created_lb_never_matches_its_predecessors_flows() {
    let (mut d, lb, _) = flow_setup();
    let (old_target, _) = send(&mut d, &tcp(40000));
    // Delete (CTRL = 0) without a flush, and re-create on the same slot and LB_ID with a new epoch and other
    // targets; the old target indices are still valid entries of the same LB_ID.
    testing::write_ctrl(&mut d, &lb, 0);
    let mut e = lb.entry;
    e.flow_epoch = 1;
    let reversed: Vec<u32> = lb.target_indices.iter().rev().copied().collect();
    for (i, s) in (lb.bucket_base..lb.bucket_base + (1 << lb.m_log2)).enumerate() {
        d.write_entry(TableId::Bucket, s, &reversed[i % reversed.len()].to_le_bytes());
    }
    d.write_entry(TableId::Lb, lb.index, &e.emit());
    let (t, state) = send(&mut d, &tcp(40000));
    assert_eq!(state, "learned", "the old epoch's entry does not match");
    let h = flow_hash(VNI_A, CLIENT, VIP, TCP, 40000, 80);
    let slot = lb.slot_for_hash(h).unwrap();
    assert_eq!(t, le32(d.tables().entry(TableId::Bucket, slot)));
    assert_ne!(t, old_target, "the reversed array moves this flow");
    // The same LB_ID and epoch 0 (as before) would have hit the stale entry: the epoch is what prevents it.
    assert_eq!(valid_entries(&d).len(), 2);
}

#[test]
fn icmp_errors_use_but_never_create_or_refresh_entries() {
    let (mut d, lb, _) = flow_setup();
    // The quoted packet: the target's reply VIP:80 -> CLIENT:40000.
    let quoted = packet::tcp(a(VIP), a(CLIENT), 80, 40000, b"");
    let err = packet::icmp_error(a("10.0.0.254"), a(VIP), 3, 4, 1300, &quoted[..28]);
    d.set_flow_clock(0);
    assert_eq!(send(&mut d, &err).1, "not_learned");
    assert!(valid_entries(&d).is_empty());
    let (pinned, _) = send(&mut d, &tcp(40000));
    let other = lb.target_indices.iter().copied().find(|&t| t != pinned).unwrap();
    move_slots(&mut d, &lb, pinned, other);
    d.set_flow_clock(50);
    assert_eq!(
        send(&mut d, &err),
        (pinned, "hit"),
        "the error reaches the flow's pinned target"
    );
    assert_eq!(valid_entries(&d)[0].1.last_seen, 0, "not refreshed");
    d.write_entry(TableId::Target, pinned, &[0u8; 32]);
    assert_eq!(send(&mut d, &err), (other, "stale"));
    assert_eq!(
        valid_entries(&d)[0].1.target,
        pinned,
        "an error does not re-learn"
    );
}

#[test]
fn fragments_of_a_pair_share_one_entry() {
    let (mut d, _, _) = flow_setup();
    let seg = packet::tcp_segment(40000, 80, &[0u8; 32]);
    let frag = |ident: u16, flags_frag: u16, bytes: &[u8]| {
        let mut h = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 10], TCP);
        h.ident = ident;
        h.flags_frag = flags_frag;
        h.build(bytes)
    };
    let first = frag(1, 0x2000, &seg[..24]);
    let rest = frag(1, 3, &seg[24..]);
    let other_datagram = frag(2, 0x2000, &seg[..24]);
    let (t, s) = send(&mut d, &first);
    assert_eq!(s, "learned");
    assert_eq!(send(&mut d, &rest), (t, "hit"));
    assert_eq!(send(&mut d, &other_datagram), (t, "hit"));
    let e = valid_entries(&d)[0].1;
    assert_eq!((e.key.tuple.src_port, e.key.tuple.dst_port), (0, 0));
    // The unfragmented 5-tuple has its own entry.
    assert_eq!(send(&mut d, &tcp(40000)).1, "learned");
}

#[test]
fn off_and_on_a_v1_1_part_the_pipeline_is_stateless() {
    let (mut d, _, _) = setup();
    let p = tcp(40000);
    assert_eq!(send(&mut d, &p).1, "off");
    assert_eq!(counters(&d), [0; 6]);
    assert!(valid_entries(&d).is_empty());
    assert_eq!(d.reg(regs::VERSION), 0x0001_0002);
    assert_eq!(d.reg(regs::CAP_FEATURES), regs::FEATURES_V1_2);
    assert_eq!(d.reg(regs::CAP_FLOW_ENTRIES), d.config().caps.flow_entries);
    assert_eq!(d.reg(regs::CAP_FLOW_WAYS), 8);
    assert_eq!(d.reg(FlowClass::Udp.register()), 60_000);
    // A v1.1 part: no flow table, whatever FLOW_CTRL says; table 7 and opcode 7 are refused.
    let mut old = Device::new(DeviceConfig::small().as_v1_1()).unwrap();
    testing::setup_ports(&mut old);
    let spec = LbSpec::new(VNI_A, a(VIP), 3)
        .range(Protocol::Tcp, 80, 80)
        .targets(targets(4));
    testing::install(&mut old, &spec, &mut SimpleAlloc::default());
    on(&old);
    assert_eq!(old.reg(regs::VERSION), 0x0001_0001);
    assert_eq!(old.reg(regs::CAP_FEATURES), regs::FEATURES_V1_1);
    assert_eq!(old.reg(regs::CAP_FLOW_ENTRIES), 0);
    assert_eq!(send(&mut old, &p).1, "off");
    assert_eq!(
        mailbox(&mut old, Opcode::FlowFlush, TableId::Flow, 0, 0),
        Status::BadOpcode
    );
    assert_eq!(
        mailbox(&mut old, Opcode::Read, TableId::Flow, 0, 0),
        Status::BadTable
    );
    let v10 = Device::new(DeviceConfig::small().as_v1_0()).unwrap();
    assert_eq!(
        (v10.reg(regs::VERSION), v10.reg(regs::CAP_FEATURES)),
        (0x0001_0000, 0)
    );
}

#[test]
fn reset_clears_the_table_counters_and_control() {
    let (mut d, _, _) = flow_setup();
    send(&mut d, &tcp(1));
    testing::write_reg(&d, FlowClass::Tcp.register(), 5);
    d.reset();
    assert!(valid_entries(&d).is_empty());
    assert_eq!(counters(&d), [0; 6]);
    assert_eq!(d.reg(FLOW_CTRL), 0);
    assert_eq!(d.reg(FlowClass::Tcp.register()), 300_000);
}

#[test]
fn bursts_with_the_flow_table_match_single_packets() {
    let (mut a_dev, _, _) = flow_setup();
    let (mut b_dev, _, _) = flow_setup();
    let pkts: Vec<Vec<u8>> = (0..100u16).map(|i| tcp(20_000 + i % 37)).collect();
    let refs: Vec<&[u8]> = pkts.iter().map(Vec::as_slice).collect();
    let (mut out, mut results) = (Vec::new(), Vec::new());
    a_dev.process_burst(PORT_NET_A, &refs, &mut out, &mut results);
    for (i, p) in pkts.iter().enumerate() {
        let mut o = Vec::new();
        let r = b_dev.process_into(PORT_NET_A, p, &mut o);
        let (egress, range) = results[i].clone().unwrap();
        assert_eq!((r, o.as_slice()), (Ok(egress), &out[range]));
    }
    assert_eq!(counters(&a_dev), counters(&b_dev));
    assert_eq!(counters(&a_dev), counts(37, 63, 0, 0, 0, 0));
}
