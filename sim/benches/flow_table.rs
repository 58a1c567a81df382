//! The flow table's cost (contract v1.2, docs/hw-spec.md §11) at 1 million pinned flows, on one core: the pipeline
//! packet rate with the flow table off, on hit-heavy traffic (every packet of an established, pinned flow) and on
//! learn-heavy traffic (every packet a new flow), and the learn rate. Reference part sizes (2 Mi entries in sets
//! of 8 = 128 MiB, 64 bytes per flow); one IPv4 LB with 64 targets and the driver's 4,096-slot array size.
//!
//! Run: `cargo bench -p ironlb-sim --bench flow_table`. Each figure is the best of 5 passes over its packets
//! (`process_into`, one packet at a time). Results: docs/performance.md.

use ironlb_hw::entry::Protocol;
use ironlb_hw::regs::{FlowCounter, FLOW_CTRL, FLOW_CTRL_ENABLE};
use ironlb_sim::testing::{
    install, packet, setup_ports, write_reg, LbSpec, SimpleAlloc, PORT_PUBLIC, PUBLIC,
};
use ironlb_sim::{Device, DeviceConfig};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

const PINNED: u32 = 1_000_000;
const PASSES: usize = 5;
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Flow `i`: client 10.x.y.z (from i), source port from i, to VIP:443.
fn flow(i: u32) -> Vec<u8> {
    let client = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (i >> 4)));
    packet::tcp(client, IpAddr::V4(VIP), 1024 + (i & 0xF) as u16, 443, &[0u8; 64])
}

fn device(flow_table: bool) -> Device {
    let mut d = Device::new(DeviceConfig::default()).expect("model");
    setup_ports(&mut d);
    let spec = LbSpec::new(PUBLIC, IpAddr::V4(VIP), 1)
        .range(Protocol::Tcp, 443, 443)
        .targets((1..=64).map(|t| Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, t)))
        .m_log2(12);
    install(&mut d, &spec, &mut SimpleAlloc::default());
    if flow_table {
        write_reg(&d, FLOW_CTRL, FLOW_CTRL_ENABLE);
    }
    d
}

/// Run every packet once; the elapsed time.
fn pass(d: &mut Device, pkts: &[Vec<u8>]) -> Duration {
    let mut out = Vec::with_capacity(2048);
    let t = Instant::now();
    for p in pkts {
        let r = d.process_into(PORT_PUBLIC, p, &mut out);
        std::hint::black_box(r).expect("forwarded");
    }
    t.elapsed()
}

fn mpps(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64() / 1e6
}

fn main() {
    // Packets of the 1 M established flows, in a scrambled order (consecutive packets hit unrelated sets).
    let mut order: Vec<u32> = (0..PINNED).collect();
    let mut x = 0x9E37_79B9u32;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        order.swap(i, x as usize % (i + 1));
    }
    let pinned: Vec<Vec<u8>> = order.iter().map(|&i| flow(i)).collect();

    // Off: the v1.1 pipeline on the same packets.
    let mut off = device(false);
    let t_off = (0..PASSES).map(|_| pass(&mut off, &pinned)).min().unwrap();

    // Learn: every packet a new flow, into an empty table (one pass per fresh device).
    let mut t_learn = Duration::MAX;
    let mut on = device(true);
    for k in 0..PASSES {
        let mut d = device(true);
        let t = pass(&mut d, &pinned);
        t_learn = t_learn.min(t);
        if k == PASSES - 1 {
            on = d;
        }
    }
    let c = on.flow_counters();
    let (learned, overflow) = (c[FlowCounter::Learned.index()], c[FlowCounter::Overflow.index()]);

    // Hits: the same packets again, every flow pinned.
    let t_hit = (0..PASSES).map(|_| pass(&mut on, &pinned)).min().unwrap();
    let hits = on.flow_counters()[FlowCounter::Hits.index()];

    let n = pinned.len();
    println!("flow table at {PINNED} pinned flows ({learned} learned, {overflow} overflow, {hits} hits over {PASSES} passes)");
    println!("  off (v1.1 pipeline)      {:>7.2} Mpps", mpps(n, t_off));
    println!("  hit-heavy (all pinned)   {:>7.2} Mpps", mpps(n, t_hit));
    println!(
        "  learn-heavy (all new)    {:>7.2} Mpps = learn rate {:.2} M flows/s",
        mpps(n, t_learn),
        mpps(n, t_learn)
    );
    println!(
        "  bytes per flow           {:>7} (entry size; table {} MiB)",
        64,
        (DeviceConfig::default().caps.flow_entries as usize * 64) >> 20
    );
}
