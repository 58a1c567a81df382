//! Pipeline throughput on one core (issue 3 §6), and the same with 16 LBs (cache resident): 1,000 LBs (half IPv4, half IPv6 VIPs) with 64 targets and a
//! 16,384-slot bucket array each, 10,000 flows over them, every packet forwarded. Compared in the same run with a
//! reference that does the same lookups with std collections (HashMap exact match, Vec ranges, CRC32 flow hash,
//! slot array, outer header + copy), so the figure is a ratio as well as a rate. `process_into` (one packet at a
//! time) and `process_burst` (bursts of 32, table reads overlapped) are both measured.
//!
//! Run: `cargo bench -p ironlb-sim --bench pipeline`. Results: docs/performance.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use ironlb_hw::entry::Protocol;
use ironlb_hw::{FlowTuple, Vip, DOMAIN_PUBLIC};
use ironlb_sim::testing::{install, setup_ports, LbSpec, SimpleAlloc, PORT_PUBLIC};
use ironlb_sim::{Device, DeviceConfig};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Packets per `process_burst` call.
const BURST: usize = 32;

const TARGETS: u32 = 64;
const M_LOG2: u8 = 14;
const FLOWS: usize = 10_000;

fn vip(i: u32) -> IpAddr {
    if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::new(203, 0, (i >> 8) as u8, i as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, i as u16))
    }
}

fn target(lb: u32, t: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, lb as u16, t as u16)
}

/// Deterministic pseudo-random numbers (xorshift), so every run replays the same flows.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

fn flows(lbs: u32) -> Vec<Vec<u8>> {
    let mut r = Rng(0x001b_1b5e_ed00);
    (0..FLOWS)
        .map(|_| {
            let lb = r.next() % lbs;
            let sport = (r.next() % 60000 + 1024) as u16;
            let dport = [80u16, 443, 1500][(r.next() % 3) as usize];
            let mut v = Vec::new();
            match vip(lb) {
                IpAddr::V4(d) => {
                    let s = r.next().to_be_bytes();
                    let b = PacketBuilder::ipv4(s, d.octets(), 64);
                    if dport == 1500 {
                        b.udp(sport, dport).write(&mut v, &[0u8; 32]).unwrap();
                    } else {
                        b.tcp(sport, dport, 1, 64240).syn().write(&mut v, &[]).unwrap();
                    }
                }
                IpAddr::V6(d) => {
                    let s = Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0xc,
                        0,
                        0,
                        0,
                        (r.next() >> 16) as u16,
                        r.next() as u16,
                    );
                    let b = PacketBuilder::ipv6(s.octets(), d.octets(), 64);
                    if dport == 1500 {
                        b.udp(sport, dport).write(&mut v, &[0u8; 32]).unwrap();
                    } else {
                        b.tcp(sport, dport, 1, 64240).syn().write(&mut v, &[]).unwrap();
                    }
                }
            }
            v
        })
        .collect()
}

fn device(lbs: u32) -> Device {
    let mut dev = Device::new(DeviceConfig::default()).expect("model");
    setup_ports(&mut dev);
    let mut alloc = SimpleAlloc::default();
    for i in 0..lbs {
        let spec = LbSpec::new(DOMAIN_PUBLIC, vip(i), i)
            .range(Protocol::Tcp, 80, 80)
            .range(Protocol::Tcp, 443, 443)
            .range(Protocol::Udp, 1024, 2048)
            .targets((0..TARGETS).map(|t| target(i, t)))
            .m_log2(M_LOG2);
        install(&mut dev, &spec, &mut alloc);
    }
    dev
}

/// The reference: the same work with std collections.
struct RefLb {
    ranges: Vec<(u8, u16, u16)>,
    slots: Vec<u32>,
    targets: Vec<[u8; 16]>,
}

struct Reference {
    lbs: HashMap<(u32, Vip), RefLb>,
    src: [u8; 16],
}

impl Reference {
    fn new(n: u32) -> Self {
        let lbs = (0..n)
            .map(|i| {
                let lb = RefLb {
                    ranges: vec![(6, 80, 80), (6, 443, 443), (17, 1024, 2048)],
                    slots: (0..1u32 << M_LOG2).map(|s| s % TARGETS).collect(),
                    targets: (0..TARGETS).map(|t| target(i, t).octets()).collect(),
                };
                ((DOMAIN_PUBLIC, Vip::from(vip(i))), lb)
            })
            .collect();
        Reference {
            lbs,
            src: [0xfd, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        }
    }

    fn process(&self, pkt: &[u8], out: &mut Vec<u8>) -> bool {
        let (src, dst, proto, l4) = if pkt[0] >> 4 == 4 {
            let ihl = (pkt[0] & 15) as usize * 4;
            (
                Vip::from_ipv4(pkt[12..16].try_into().unwrap()),
                Vip::from_ipv4(pkt[16..20].try_into().unwrap()),
                pkt[9],
                ihl,
            )
        } else {
            (
                Vip(pkt[8..24].try_into().unwrap()),
                Vip(pkt[24..40].try_into().unwrap()),
                pkt[6],
                40,
            )
        };
        let Some(lb) = self.lbs.get(&(DOMAIN_PUBLIC, dst)) else {
            return false;
        };
        let sport = u16::from_be_bytes([pkt[l4], pkt[l4 + 1]]);
        let dport = u16::from_be_bytes([pkt[l4 + 2], pkt[l4 + 3]]);
        if !lb
            .ranges
            .iter()
            .any(|&(p, lo, hi)| p == proto && lo <= dport && dport <= hi)
        {
            return false;
        }
        let h = FlowTuple {
            domain: DOMAIN_PUBLIC,
            src,
            dst,
            protocol: proto,
            src_port: sport,
            dst_port: dport,
        }
        .hash();
        let t = &lb.targets[lb.slots[(h & ((1 << M_LOG2) - 1)) as usize] as usize];
        out.clear();
        out.extend_from_slice(&[0x60, 0, 0, 0]);
        out.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
        out.extend_from_slice(&[if pkt[0] >> 4 == 4 { 4 } else { 41 }, 64]);
        out.extend_from_slice(&self.src);
        out.extend_from_slice(t);
        out.extend_from_slice(pkt);
        true
    }
}

fn bench(c: &mut Criterion) {
    // 1000 LBs: 64 MiB of bucket memory hit at random (DRAM-latency bound, as the realistic table).
    // 16 LBs: the same work with tables that stay in cache (compute bound).
    for lbs in [1000u32, 16] {
        let pkts = flows(lbs);
        let mut dev = device(lbs);
        let reference = Reference::new(lbs);
        let mut out = Vec::with_capacity(2048);
        // Every flow must be forwarded by both, or the comparison is meaningless.
        for p in &pkts {
            assert!(
                dev.process_into(PORT_PUBLIC, p, &mut out).is_ok(),
                "model dropped a benchmark packet"
            );
            assert!(
                reference.process(p, &mut out),
                "reference dropped a benchmark packet"
            );
        }
        let refs: Vec<&[u8]> = pkts.iter().map(|p| p.as_slice()).collect();
        let mut results = Vec::with_capacity(BURST);
        let mut burst_out = Vec::with_capacity(BURST * 2048);
        for b in refs.chunks(BURST) {
            dev.process_burst(PORT_PUBLIC, b, &mut burst_out, &mut results);
            assert!(
                results.iter().all(|r| r.is_ok()),
                "model dropped a benchmark packet in a burst"
            );
        }
        let mut g = c.benchmark_group(format!("pipeline/{lbs} LBs x 64 targets, 10k flows"));
        g.throughput(Throughput::Elements(pkts.len() as u64));
        g.bench_function("model process_into", |b| {
            b.iter(|| {
                for p in &pkts {
                    black_box(dev.process_into(PORT_PUBLIC, black_box(p), &mut out).ok());
                }
            })
        });
        g.bench_function(format!("model process_burst ({BURST})"), |b| {
            b.iter(|| {
                for burst in refs.chunks(BURST) {
                    dev.process_burst(PORT_PUBLIC, black_box(burst), &mut burst_out, &mut results);
                    black_box(&results);
                }
            })
        });
        g.bench_function("reference HashMap + Vec", |b| {
            b.iter(|| {
                for p in &pkts {
                    black_box(reference.process(black_box(p), &mut out));
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
