//! Programming speed (issue 4 §5), printed as figures (not asserted):
//! - entry writes per second over sim-shm (model served by another thread through shared-memory files, as a
//!   separate process would): mailbox vs DMA ring by batch size;
//! - MMIO reads and writes per update (target add/remove on an LB), amortized;
//! - cuckoo occupancy of the LB table at the first insert failure, and apply latency p50/p99 of single-VIP LBs.
//!
//! Run: `cargo bench -p ironlb-driver --bench programming`. Results: docs/performance.md.

// The served model (a thread polling the shared-memory files) is the one the integration tests use.
#[path = "../tests/common.rs"]
mod common;

use ironlb_driver::{Cmd, Device, DriverError, InprocBackend, LbSpec, ShmBackend};
use ironlb_hw::entry::{IcmpPolicy, Protocol, RangeEntry, TargetEntry};
use ironlb_hw::regs::TableId;
use ironlb_hw::{LbKey, Vip, DOMAIN_PUBLIC};
use ironlb_sim::DeviceConfig;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

fn target_write(i: u32) -> Cmd {
    let e = TargetEntry {
        lb_id: 1,
        underlay: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16),
    };
    Cmd::Write {
        table: TableId::Target,
        index: i % 200_000,
        data: e.emit().to_vec(),
    }
}

fn writes_per_second(dev: &mut Device) {
    println!("\n## Entry writes per second over sim-shm (32-byte target entries)");
    println!("| path | batch | entries | seconds | entries/s | MMIO writes/entry | MMIO reads/entry |");
    println!("|---|---|---|---|---|---|---|");
    let n = 20_000u32;
    let cmds: Vec<Cmd> = (0..n).map(target_write).collect();
    let c0 = dev.access_counts();
    let t = Instant::now();
    dev.submit_mailbox_for_test(&cmds).unwrap();
    let s = t.elapsed().as_secs_f64();
    let c1 = dev.access_counts();
    println!(
        "| mailbox | 1 | {n} | {s:.3} | {:.0} | {:.1} | {:.1} |",
        n as f64 / s,
        (c1.writes - c0.writes) as f64 / n as f64,
        (c1.reads - c0.reads) as f64 / n as f64
    );
    for batch in [1usize, 16, 256, 4096] {
        let total = if batch < 16 { 20_000 } else { 400_000 };
        let cmds: Vec<Cmd> = (0..total as u32).map(target_write).collect();
        let c0 = dev.access_counts();
        let t = Instant::now();
        for chunk in cmds.chunks(batch) {
            dev.submit_ring_for_test(chunk).unwrap();
        }
        let s = t.elapsed().as_secs_f64();
        let c1 = dev.access_counts();
        println!(
            "| ring | {batch} | {total} | {s:.3} | {:.0} | {:.4} | {:.4} |",
            total as f64 / s,
            (c1.writes - c0.writes) as f64 / total as f64,
            (c1.reads - c0.reads) as f64 / total as f64
        );
    }
}

fn spec(lb_id: u32, vip: Vip, targets: impl IntoIterator<Item = u32>) -> LbSpec {
    LbSpec {
        lb_id,
        vips: [LbKey {
            domain: DOMAIN_PUBLIC,
            vip,
        }]
        .into(),
        icmp: IcmpPolicy::default(),
        ranges: vec![RangeEntry {
            protocol: Protocol::Tcp,
            low: 80,
            high: 80,
        }],
        targets: targets
            .into_iter()
            .map(|t| {
                Ipv6Addr::new(
                    0xfd00,
                    1,
                    0,
                    0,
                    0,
                    0,
                    (lb_id >> 16) as u16 + (t >> 16) as u16,
                    t as u16,
                )
            })
            .collect(),
        draining: Default::default(),
    }
}

fn mmio_per_update(dev: &mut Device) {
    println!(
        "\n## MMIO per update over sim-shm (one target added or removed on an LB with 64 targets, M=4096)"
    );
    let mut s = spec(7, Vip::from_ipv4([198, 51, 100, 7]), 0..64);
    dev.apply(&s).unwrap();
    let n = 1000u32;
    let c0 = dev.access_counts();
    let t = Instant::now();
    for k in 0..n {
        if k % 2 == 0 {
            s.targets
                .insert(Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, k as u16));
        } else {
            let last = *s.targets.iter().next_back().unwrap();
            s.targets.remove(&last);
        }
        dev.apply(&s).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let c1 = dev.access_counts();
    println!(
        "{n} updates: {:.4} MMIO reads/update, {:.2} MMIO writes/update, {:.1} µs/update",
        (c1.reads - c0.reads) as f64 / n as f64,
        (c1.writes - c0.writes) as f64 / n as f64,
        secs * 1e6 / n as f64
    );
}

/// Updates that free memory carry one FENCE per batch (docs/hw-spec.md §8.5): what it costs, measured against the
/// same updates with fences switched off (the test-only switch). Three kinds: an allow-list change (a new range
/// block, the old one freed), a target removed/added (in-place slot rewrites; the removed entry invalidated after
/// the fence), and a large target change (a shadow bucket array, the old one freed).
fn fence_cost(dev: &mut Device) {
    println!("\n## Updates with and without FENCE over sim-shm (1,000 updates each; one FENCE per batch that frees memory)");
    println!("| update | fences | µs/update | updates/s | descriptors/update | MMIO writes/update | MMIO reads/update |");
    println!("|---|---|---|---|---|---|---|");
    for (what, lb_id) in [
        ("allow-list change", 20u32),
        ("target remove/add", 21),
        ("shadow array (half the targets)", 22),
    ] {
        for fences in [true, false] {
            dev.skip_fences_for_test(!fences);
            let mut s = spec(
                lb_id + u32::from(fences) * 10,
                Vip::from_ipv4([198, 51, 101, (lb_id + u32::from(fences) * 10) as u8]),
                0..64,
            );
            dev.apply(&s).unwrap();
            let n = 1000u32;
            let c0 = dev.access_counts();
            let d0 = dev.command_stats().ring_commands;
            let t = Instant::now();
            for k in 0..n {
                match lb_id {
                    20 => {
                        let p = 1000 + (k % 2) as u16;
                        s.ranges = vec![RangeEntry {
                            protocol: Protocol::Tcp,
                            low: p,
                            high: p,
                        }];
                    }
                    21 => {
                        if k % 2 == 0 {
                            s.targets
                                .insert(Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 0, k as u16));
                        } else {
                            let last = *s.targets.iter().next_back().unwrap();
                            s.targets.remove(&last);
                        }
                    }
                    _ => {
                        let base = if k % 2 == 0 { 1000 } else { 2000 };
                        s.targets = (0..64u32)
                            .map(|i| {
                                Ipv6Addr::new(
                                    0xfd00,
                                    4,
                                    0,
                                    0,
                                    0,
                                    0,
                                    0,
                                    (if i < 32 { i } else { base + i }) as u16,
                                )
                            })
                            .collect();
                    }
                }
                dev.apply(&s).unwrap();
            }
            let secs = t.elapsed().as_secs_f64();
            let c1 = dev.access_counts();
            let d1 = dev.command_stats().ring_commands;
            println!(
                "| {what} | {} | {:.1} | {:.0} | {:.1} | {:.2} | {:.3} |",
                if fences { "yes" } else { "no" },
                secs * 1e6 / n as f64,
                n as f64 / secs,
                (d1 - d0) as f64 / n as f64,
                (c1.writes - c0.writes) as f64 / n as f64,
                (c1.reads - c0.reads) as f64 / n as f64
            );
        }
    }
    dev.skip_fences_for_test(false);
}

fn cuckoo(pattern: &str) {
    let mut dev = Device::open(Box::new(InprocBackend::new(DeviceConfig::default()).unwrap())).unwrap();
    let cap = dev.caps().lb_buckets * dev.caps().lb_ways;
    let mut lat = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut i = 0u32;
    let err = loop {
        let n = if pattern == "random" {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u32
        } else {
            0x0a00_0000 + i
        };
        let vip = if i.is_multiple_of(2) {
            Vip::from_ipv4(Ipv4Addr::from(n).octets())
        } else {
            Vip(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                (rng >> 32) as u16,
                (rng >> 48) as u16,
                (n >> 16) as u16,
                n as u16,
            )
            .octets())
        };
        let s = LbSpec {
            lb_id: i,
            targets: Default::default(),
            draining: Default::default(),
            ..spec(i, vip, [])
        };
        let t = Instant::now();
        match dev.apply(&s) {
            Ok(_) => lat.push(t.elapsed()),
            Err(DriverError::Invalid(_)) => continue, // a random VIP drawn twice
            Err(e) => break e,
        }
        i += 1;
    };
    assert!(matches!(err, DriverError::TableFull { table: "lb", .. }), "{err}");
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "| {pattern} | {i}/{cap} | {:.2}% | {:?} | {:?} | {:?} |",
        100.0 * i as f64 / cap as f64,
        p(0.5),
        p(0.99),
        lat.last().unwrap()
    );
}

fn main() {
    let served = common::serve(DeviceConfig::default());
    let mut dev = Device::open(Box::new(ShmBackend::open(&served.paths).unwrap())).unwrap();
    writes_per_second(&mut dev);
    mmio_per_update(&mut dev);
    fence_cost(&mut dev);
    drop(dev);
    drop(served); // stops the model thread and removes its files
    println!("\n## LB table (cuckoo, 2 candidate buckets x 4 ways), in-process model, reference part (32768 entries)");
    println!("| VIPs | placed at first failure | occupancy | apply p50 | apply p99 | apply max |");
    println!("|---|---|---|---|---|---|");
    cuckoo("sequential");
    cuckoo("random");
}
