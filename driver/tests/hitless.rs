//! Hitless updates (docs/hw-spec.md §8): while a thread replays a steady packet stream through the model, another
//! applies updates. The model executes at most one ring descriptor per poll here, so packets interleave with every
//! single table write of every update. Each scenario also runs on a device without a command ring
//! (`CAP_RING_MAX_LOG2 = 0`), where every table write is its own mailbox command.

mod common;

use common::*;
use etherparse::PacketBuilder;
use ironlb_driver::{Device, InprocBackend};
use ironlb_hw::entry::Protocol::Tcp;
use ironlb_hw::{DropReason, DOMAIN_PUBLIC};
use ironlb_sim::{DeviceConfig, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const PUBLIC_PORT: u32 = 0;

fn syn(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1000)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

/// An in-process device whose model executes one ring descriptor per poll (or has no ring at all), with a public
/// port and an underlay.
fn device_under_traffic(ring: bool) -> (Device, ironlb_driver::SharedModel) {
    let cfg = DeviceConfig {
        ring_budget: 1,
        ..DeviceConfig::small()
    };
    let backend = InprocBackend::new(if ring { cfg } else { cfg.without_ring() }).unwrap();
    let model = backend.model();
    let mut dev = Device::open(Box::new(backend)).unwrap();
    public_and_underlay(&mut dev);
    dev.set_enabled(true);
    (dev, model)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    To(Ipv6Addr),
    Dropped(DropReason),
}

fn outer_dst(p: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap())
}

#[test]
fn updates_under_traffic_drop_nothing_of_unchanged_lbs() {
    updates_under_traffic(true);
}

#[test]
fn updates_under_traffic_drop_nothing_of_unchanged_lbs_without_ring() {
    updates_under_traffic(false);
}

fn updates_under_traffic(ring: bool) {
    let (mut dev, model) = device_under_traffic(ring);
    assert_eq!(dev.has_ring(), ring);

    let x = spec(1, &[v4("203.0.113.1", DOMAIN_PUBLIC)], &[(Tcp, 80, 80)], 0..8);
    let mut y = spec(2, &[v4("203.0.113.2", DOMAIN_PUBLIC)], &[(Tcp, 80, 80)], 100..106);
    dev.apply(&x).unwrap();
    dev.apply(&y).unwrap();

    // Flows: 64 to X:80, and to Y on 80 (old list), 443 (new list) and 8080 (in neither).
    let mut flows = Vec::new();
    for i in 0..64u16 {
        flows.push((
            "x80",
            syn([198, 51, 100, i as u8], [203, 0, 113, 1], 10000 + i, 80),
        ));
        flows.push((
            "y80",
            syn([198, 51, 100, i as u8], [203, 0, 113, 2], 20000 + i, 80),
        ));
        flows.push((
            "y443",
            syn([198, 51, 100, i as u8], [203, 0, 113, 2], 30000 + i, 443),
        ));
        flows.push((
            "y8080",
            syn([198, 51, 100, i as u8], [203, 0, 113, 2], 40000 + i, 8080),
        ));
    }
    let flows = Arc::new(flows);
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(usize, Seen)>>> = Arc::default();
    let sender = {
        let (model, flows, stop, log) = (model.clone(), flows.clone(), stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            // Bounded: stops when told, or after 2 million packets at most.
            while !stop.load(Ordering::SeqCst) && sent < 2_000_000 {
                for (i, (_, p)) in flows.iter().enumerate() {
                    let v = model.lock().unwrap().process(PUBLIC_PORT, p);
                    let s = match v {
                        Verdict::Forward { packet, .. } => Seen::To(outer_dst(&packet)),
                        Verdict::Drop(r) => Seen::Dropped(r),
                    };
                    log.lock().unwrap().push((i, s));
                    sent += 1;
                }
            }
        })
    };
    let wait_for_traffic = |n: usize| {
        let start = log.lock().unwrap().len();
        let t0 = std::time::Instant::now();
        while log.lock().unwrap().len() < start + n {
            assert!(t0.elapsed().as_secs() < 30, "packet thread stalled");
            std::thread::yield_now();
        }
    };
    wait_for_traffic(2000);
    // Port change 80 -> 443, then back to both; churn other LBs (cuckoo moves, memory reuse) in between.
    y.ranges = spec(0, &[], &[(Tcp, 443, 443)], []).ranges;
    dev.apply(&y).unwrap();
    wait_for_traffic(1000);
    for k in 10..40u32 {
        dev.apply(&spec(
            k,
            &[v4(&format!("192.0.2.{k}"), DOMAIN_PUBLIC)],
            &[(Tcp, 1, 1)],
            k * 10..k * 10 + 3,
        ))
        .unwrap();
    }
    y.ranges = spec(0, &[], &[(Tcp, 80, 80), (Tcp, 443, 443)], []).ranges;
    dev.apply(&y).unwrap();
    wait_for_traffic(1000);
    for k in 10..40u32 {
        dev.remove(k).unwrap();
    }
    // Target removal: record Y's array before and after.
    let before = dev.read_state().unwrap().lbs[&2].clone();
    let removed = ul(103);
    y.targets.remove(&removed);
    let r = dev.apply(&y).unwrap();
    assert!(r.slots_in_place > 0, "expected an in-place slot update: {r:?}");
    let after = dev.read_state().unwrap().lbs[&2].clone();
    wait_for_traffic(3000);
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();

    let log = log.lock().unwrap();
    let mut x_targets: BTreeMap<usize, BTreeSet<Ipv6Addr>> = BTreeMap::new();
    for &(i, s) in log.iter() {
        let kind = flows[i].0;
        match (kind, s) {
            ("x80", Seen::Dropped(r)) => panic!("packet of unchanged LB X dropped: {r}"),
            ("x80", Seen::To(t)) => {
                x_targets.entry(i).or_default().insert(t);
            }
            ("y8080", Seen::To(_)) => panic!("port 8080 (in neither allow-list) was forwarded"),
            (_, Seen::Dropped(r)) if r != DropReason::PortNotAllowed => panic!("{kind}: unexpected drop {r}"),
            _ => {}
        }
    }
    assert!(
        x_targets.values().all(|t| t.len() == 1),
        "a flow of unchanged LB X changed target"
    );

    // Only flows whose slot changed moved, and every flow of the removed target moved.
    let slot_target = |lb: &ironlb_driver::DecodedLb, slot: usize| lb.targets[&lb.slots[slot]].underlay;
    let m = before.slots.len();
    assert_eq!(m, after.slots.len());
    let mut model = model.lock().unwrap();
    for (_, p) in flows.iter().filter(|(k, _)| *k == "y80" || *k == "y443") {
        let (v, t) = model.process_traced(PUBLIC_PORT, p);
        let Verdict::Forward { packet, .. } = v else {
            panic!("Y flow dropped after the updates: {v:?}")
        };
        let slot = (t.flow_hash.unwrap() as usize) & (m - 1);
        let (old, new) = (slot_target(&before, slot), slot_target(&after, slot));
        assert_eq!(
            outer_dst(&packet),
            new,
            "forwarded to a target other than the array's"
        );
        if old == removed {
            assert_ne!(new, removed, "flow still on the removed target");
        }
        if before.slots[slot] == after.slots[slot] {
            assert_eq!(old, new, "flow on an unchanged slot moved");
        }
    }
}

/// Defragmenting the range table under traffic: every LB keeps admitting exactly its ports, nothing is dropped, and
/// the free space ends up in one block.
#[test]
fn range_defragmentation_under_traffic() {
    range_defragmentation(true);
}

#[test]
fn range_defragmentation_under_traffic_without_ring() {
    range_defragmentation(false);
}

fn range_defragmentation(ring: bool) {
    let (mut dev, model) = device_under_traffic(ring);
    // 20 LBs with allow-lists of 1..4 ranges; then every other LB is deleted, leaving holes between the rest.
    let mut specs = Vec::new();
    for k in 0..20u32 {
        let ranges: Vec<_> = (0..(k % 4 + 1) as u16).map(|i| (Tcp, 80 + i, 80 + i)).collect();
        let s = spec(
            k,
            &[v4(&format!("203.0.113.{}", k + 1), DOMAIN_PUBLIC)],
            &ranges,
            [k],
        );
        dev.apply(&s).unwrap();
        specs.push(s);
    }
    for k in (0..20u32).step_by(2) {
        dev.remove(k).unwrap();
    }
    let kept: Vec<_> = specs.into_iter().filter(|s| s.lb_id % 2 == 1).collect();
    assert!(
        dev.range_free_blocks() > 1,
        "setup should leave the range table fragmented"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    let sender = {
        let (model, stop, bad) = (model.clone(), stop.clone(), bad.clone());
        let kept = kept.clone();
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) && rounds < 100_000 {
                rounds += 1;
                for s in &kept {
                    let ip = match s.vips.iter().next().unwrap().vip.to_ip() {
                        std::net::IpAddr::V4(a) => a.octets(),
                        _ => unreachable!(),
                    };
                    let n = s.ranges.len() as u16;
                    // Allowed: 80..80+n; not allowed: 80+n.
                    for (port, allowed) in [(80, true), (79 + n, true), (80 + n, false)] {
                        let v = model
                            .lock()
                            .unwrap()
                            .process(PUBLIC_PORT, &syn([198, 51, 100, 1], ip, 999, port));
                        let ok = matches!(v, Verdict::Forward { .. });
                        if ok != allowed {
                            bad.lock()
                                .unwrap()
                                .push(format!("lb {} port {port}: {v:?}", s.lb_id));
                        }
                    }
                }
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    let moved = dev.defragment_ranges().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    assert!(moved > 0);
    assert_eq!(
        dev.range_free_blocks(),
        1,
        "free space not in one block after defragmentation"
    );
    let bad = bad.lock().unwrap();
    assert!(
        bad.is_empty(),
        "{} wrong verdicts during defragmentation, first: {:?}",
        bad.len(),
        bad.first()
    );
    let state = dev.read_state().unwrap().specs();
    for s in &kept {
        let mut want = s.clone();
        want.ranges.sort();
        assert_eq!(state[&s.lb_id], want);
    }
}
