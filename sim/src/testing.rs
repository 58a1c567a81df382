//! Test support: program a [`Device`] the quick way, for unit tests, the golden fixture suite and benches.
//!
//! * [`setup_ports`] configures the standard port layout, the underlay source and enables the pipeline — through
//!   register writes to BAR0, exactly as a driver would.
//! * [`install`] programs one load balancer from an [`LbSpec`]: range block, target entries, a bucket array filled
//!   round-robin and the LB entry in a free way of its cuckoo bucket `b1` (else `b2`), in the order of
//!   docs/hw-spec.md §8.1. Table memory is written through [`Device::write_entry`], the test backdoor (a real
//!   device is programmed through the mailbox/ring; see `driver/`).
//! * [`packet`] builds IPv4/IPv6 packets by hand (no dependency), with correct checksums.
//!
//! ```
//! use ironlb_sim::testing::{self, packet, LbSpec, SimpleAlloc};
//! use ironlb_sim::{Device, DeviceConfig, Verdict};
//! use ironlb_hw::entry::Protocol;
//!
//! let mut dev = Device::new(DeviceConfig::small()).unwrap();
//! testing::setup_ports(&mut dev);
//! let spec = LbSpec::new(testing::VNI_A, "10.0.0.10".parse().unwrap(), 3)
//!     .range(Protocol::Tcp, 80, 80)
//!     .targets(["fd00:1::1".parse().unwrap(), "fd00:1::2".parse().unwrap()]);
//! let lb = testing::install(&mut dev, &spec, &mut SimpleAlloc::default());
//! let pkt = packet::tcp("10.0.0.1".parse().unwrap(), "10.0.0.10".parse().unwrap(), 40000, 80, b"hello");
//! let (verdict, trace) = dev.process_traced(testing::PORT_NET_A, &pkt);
//! assert!(matches!(verdict, Verdict::Forward { egress_port: testing::PORT_UNDERLAY, .. }));
//! assert_eq!(trace.target, lb.target_for_hash(trace.flow_hash.unwrap()));
//! ```

pub mod packet;

use crate::Device;
use ironlb_hw::entry::lb::CTRL_WORD;
use ironlb_hw::entry::{CounterEntry, IcmpPolicy, LbEntry, LbSet, PortCfg, PortKind, Protocol, RangeEntry};
use ironlb_hw::entry::{TargetEntry, NO_TARGET};
use ironlb_hw::regs::{self, TableId};
use ironlb_hw::{LbKey, Vip, DOMAIN_PUBLIC};
use std::net::{IpAddr, Ipv6Addr};

/// Standard layout: port 0, the public uplink (domain [`DOMAIN_PUBLIC`]).
pub const PORT_PUBLIC: u32 = 0;
/// Standard layout: port 1, network VNI [`VNI_A`] (100).
pub const PORT_NET_A: u32 = 1;
/// Standard layout: port 2, network VNI [`VNI_B`] (200).
pub const PORT_NET_B: u32 = 2;
/// Standard layout: port 3, the underlay (transmit only; every forwarded packet leaves here).
pub const PORT_UNDERLAY: u32 = 3;
/// VNI of [`PORT_NET_A`].
pub const VNI_A: u32 = 100;
/// VNI of [`PORT_NET_B`].
pub const VNI_B: u32 = 200;
/// The public domain (re-exported for specs: `LbSpec::new(testing::PUBLIC, ...)`).
pub const PUBLIC: u32 = DOMAIN_PUBLIC;
/// UNDERLAY_SRC set by [`setup_ports`]: `fd00:ffff::1`.
pub const UNDERLAY_SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xffff, 0, 0, 0, 0, 0, 1);

/// Write a BAR0 register as a driver would.
pub fn write_reg(dev: &Device, offset: u32, value: u32) {
    assert!(
        dev.bar().write32(offset as usize, value),
        "register {offset:#x} outside BAR0"
    );
}

/// Configure port `port` (PORT_CFG register).
pub fn set_port(dev: &Device, port: u32, cfg: PortCfg) {
    write_reg(dev, regs::PORT_CFG + 4 * port, cfg.to_raw());
}

/// Set UNDERLAY_SRC (16 bytes, network order; register 0x50 holds bytes 0–3 little-endian).
pub fn set_underlay_src(dev: &Device, addr: Ipv6Addr) {
    for (i, c) in addr.octets().chunks_exact(4).enumerate() {
        let w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        write_reg(dev, regs::UNDERLAY_SRC + 4 * i as u32, w);
    }
}

/// Set or clear CONTROL.ENABLE.
pub fn set_enabled(dev: &Device, on: bool) {
    write_reg(dev, regs::CONTROL, if on { regs::CONTROL_ENABLE } else { 0 });
}

/// The standard port layout: port 0 public uplink, port 1 network VNI 100, port 2 network VNI 200, port 3
/// underlay; UNDERLAY_SRC = [`UNDERLAY_SRC`]; MTU and hop limit left at their reset defaults (9000, 64); pipeline
/// enabled. All by register writes.
pub fn setup_ports(dev: &mut Device) {
    let on = |kind| PortCfg { enabled: true, kind };
    set_port(dev, PORT_PUBLIC, on(PortKind::Public));
    set_port(dev, PORT_NET_A, on(PortKind::Network { vni: VNI_A }));
    set_port(dev, PORT_NET_B, on(PortKind::Network { vni: VNI_B }));
    set_port(dev, PORT_UNDERLAY, on(PortKind::Underlay));
    set_underlay_src(dev, UNDERLAY_SRC);
    set_enabled(dev, true);
}

/// What to install: one LB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbSpec {
    /// Domain: a VNI, or [`PUBLIC`].
    pub domain: u32,
    /// The VIP.
    pub vip: IpAddr,
    /// LB_ID (per-LB counter row).
    pub lb_id: u32,
    /// The allow-list, in range-block order: (protocol, low, high).
    pub ranges: Vec<(Protocol, u16, u16)>,
    /// Targets' underlay addresses; one target entry each, in this order.
    pub targets: Vec<Ipv6Addr>,
    /// log2(M) of the bucket array; 0 = no array (every packet `no_target`).
    pub m_log2: u8,
    /// ICMP policy (default: echo dropped, errors delivered).
    pub icmp: IcmpPolicy,
    /// FLOW_EPOCH of the LB entry (v1.2; default 0).
    pub flow_epoch: u8,
}

impl LbSpec {
    /// An LB without ranges and targets, M = 2^8, default ICMP policy.
    pub fn new(domain: u32, vip: IpAddr, lb_id: u32) -> LbSpec {
        LbSpec {
            domain,
            vip,
            lb_id,
            ranges: Vec::new(),
            targets: Vec::new(),
            m_log2: 8,
            icmp: IcmpPolicy::default(),
            flow_epoch: 0,
        }
    }
    /// Set the flow epoch.
    pub fn flow_epoch(mut self, epoch: u8) -> LbSpec {
        self.flow_epoch = epoch;
        self
    }
    /// Allow `protocol` ports `low..=high`.
    pub fn range(mut self, protocol: Protocol, low: u16, high: u16) -> LbSpec {
        self.ranges.push((protocol, low, high));
        self
    }
    /// Add a target.
    pub fn target(mut self, underlay: Ipv6Addr) -> LbSpec {
        self.targets.push(underlay);
        self
    }
    /// Add targets.
    pub fn targets(mut self, underlays: impl IntoIterator<Item = Ipv6Addr>) -> LbSpec {
        self.targets.extend(underlays);
        self
    }
    /// Set log2(M).
    pub fn m_log2(mut self, m_log2: u8) -> LbSpec {
        self.m_log2 = m_log2;
        self
    }
    /// Set the ICMP policy.
    pub fn icmp(mut self, allow_echo: bool, deliver_errors: bool) -> LbSpec {
        self.icmp = IcmpPolicy {
            allow_echo,
            deliver_errors,
        };
        self
    }
}

/// Bump allocator for range entries, target entries and bucket slots. Starts deliberately away from 0 (ranges 8,
/// targets 1, slots 64), so a pipeline that ignores a base address fails tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleAlloc {
    /// Next free range-table entry.
    pub next_range: u32,
    /// Next free target-table entry.
    pub next_target: u32,
    /// Next free bucket-memory slot.
    pub next_slot: u32,
}

impl Default for SimpleAlloc {
    fn default() -> Self {
        SimpleAlloc {
            next_range: 8,
            next_target: 1,
            next_slot: 64,
        }
    }
}

impl SimpleAlloc {
    fn take(next: &mut u32, n: u32) -> u32 {
        let base = *next;
        *next += n;
        base
    }
}

/// Where [`install`] put an LB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledLb {
    /// LB-table index (bucket × 4 + way).
    pub index: u32,
    /// The LB entry as written (its set 0 is active).
    pub entry: LbEntry,
    /// First range entry.
    pub range_base: u32,
    /// First bucket slot (meaningless when `m_log2` is 0).
    pub bucket_base: u32,
    /// log2(M).
    pub m_log2: u8,
    /// Target-table index of each spec target, in spec order.
    pub target_indices: Vec<u32>,
}

impl InstalledLb {
    /// The absolute bucket slot a flow hash selects (`None` without an array).
    pub fn slot_for_hash(&self, hash: u32) -> Option<u32> {
        (self.m_log2 != 0).then(|| self.bucket_base + (hash & ((1u32 << self.m_log2) - 1)))
    }
    /// The target index a flow hash selects with the round-robin fill of [`install`] (`None`: no_target).
    pub fn target_for_hash(&self, hash: u32) -> Option<u32> {
        let off = self.slot_for_hash(hash)? - self.bucket_base;
        (!self.target_indices.is_empty())
            .then(|| self.target_indices[off as usize % self.target_indices.len()])
    }
}

/// Install `spec`: write its range block, target entries, bucket array (slot i → target i mod n, `NO_TARGET` without
/// targets) and finally the valid LB entry (set 0 active) into the first free way of bucket b1, else b2.
///
/// # Panics
/// When all 8 candidate ways are taken, or memory runs out.
pub fn install(dev: &mut Device, spec: &LbSpec, alloc: &mut SimpleAlloc) -> InstalledLb {
    let range_base = SimpleAlloc::take(&mut alloc.next_range, spec.ranges.len() as u32);
    for (i, &(protocol, low, high)) in spec.ranges.iter().enumerate() {
        let r = RangeEntry { protocol, low, high };
        dev.write_entry(TableId::Range, range_base + i as u32, &r.emit());
    }
    let target_base = SimpleAlloc::take(&mut alloc.next_target, spec.targets.len() as u32);
    let target_indices: Vec<u32> = (0..spec.targets.len() as u32).map(|i| target_base + i).collect();
    for (&i, &underlay) in target_indices.iter().zip(&spec.targets) {
        let t = TargetEntry {
            lb_id: spec.lb_id,
            underlay,
        };
        dev.write_entry(TableId::Target, i, &t.emit());
    }
    let m = if spec.m_log2 == 0 { 0 } else { 1u32 << spec.m_log2 };
    let bucket_base = SimpleAlloc::take(&mut alloc.next_slot, m);
    let slots: Vec<u8> = (0..m)
        .flat_map(|s| {
            match target_indices.len() {
                0 => NO_TARGET,
                n => target_indices[s as usize % n],
            }
            .to_le_bytes()
        })
        .collect();
    if !slots.is_empty() {
        dev.write_entry(TableId::Bucket, bucket_base, &slots);
    }
    let entry = LbEntry {
        active_set: 0,
        icmp: spec.icmp,
        generation: 1,
        flow_epoch: spec.flow_epoch,
        domain: spec.domain,
        lb_id: spec.lb_id,
        vip: Vip::from(spec.vip),
        sets: [
            LbSet {
                range_base,
                range_count: spec.ranges.len() as u16,
                bucket_log2: spec.m_log2,
                bucket_base,
            },
            LbSet::default(),
        ],
    };
    let index = free_way(dev, &entry.key()).unwrap_or_else(|| {
        panic!(
            "install: both cuckoo buckets of ({:#x}, {}) are full",
            spec.domain, spec.vip
        )
    });
    dev.write_entry(TableId::Lb, index, &entry.emit());
    InstalledLb {
        index,
        entry,
        range_base,
        bucket_base,
        m_log2: spec.m_log2,
        target_indices,
    }
}

/// The first LB-table index among b1 ways 0–3, b2 ways 0–3 whose entry is not valid.
pub fn free_way(dev: &Device, key: &LbKey) -> Option<u32> {
    let n = dev.tables().entries(TableId::Lb) / 4;
    key.buckets(n)
        .into_iter()
        .flat_map(|b| (0..4).map(move |w| b * 4 + w))
        .find(|&i| ironlb_hw::entry::lb::view::ctrl(dev.tables().entry(TableId::Lb, i)) & (1 << 31) == 0)
}

/// Rewrite the CTRL (commit) word of an installed LB, as `WRITE_WORD` would (e.g. `0` deletes it).
pub fn write_ctrl(dev: &mut Device, lb: &InstalledLb, ctrl: u32) {
    let mut e = dev.tables().entry(TableId::Lb, lb.index).to_vec();
    let w = CTRL_WORD as usize * 4;
    e[w..w + 4].copy_from_slice(&ctrl.to_le_bytes());
    dev.write_entry(TableId::Lb, lb.index, &e);
}

fn counter(dev: &Device, t: TableId, row: u32) -> CounterEntry {
    dev.tables()
        .get(t, row, 1)
        .map(|b| CounterEntry::parse(b.try_into().expect("16 bytes")))
        .unwrap_or_default()
}

/// Per-LB counter row `lb_id`.
pub fn lb_counter(dev: &Device, lb_id: u32) -> CounterEntry {
    counter(dev, TableId::LbCounter, lb_id)
}

/// Per-target counter row `target`.
pub fn target_counter(dev: &Device, target: u32) -> CounterEntry {
    counter(dev, TableId::TargetCounter, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceConfig;

    #[test]
    fn setup_ports_programs_registers() {
        let mut d = Device::new(DeviceConfig::small()).unwrap();
        assert!(!d.enabled());
        setup_ports(&mut d);
        assert!(d.enabled());
        assert_eq!(
            d.port_cfg(PORT_PUBLIC).unwrap().ingress_domain(),
            Some(DOMAIN_PUBLIC)
        );
        assert_eq!(d.port_cfg(PORT_NET_A).unwrap().ingress_domain(), Some(VNI_A));
        assert_eq!(d.port_cfg(PORT_NET_B).unwrap().ingress_domain(), Some(VNI_B));
        assert_eq!(d.port_cfg(PORT_UNDERLAY).unwrap().kind, PortKind::Underlay);
        assert_eq!(d.underlay_src(), UNDERLAY_SRC.octets());
        assert_eq!(
            d.reg(regs::UNDERLAY_SRC),
            u32::from_le_bytes([0xfd, 0, 0xff, 0xff])
        );
    }

    #[test]
    fn install_places_entries() {
        let mut d = Device::new(DeviceConfig::small()).unwrap();
        let mut a = SimpleAlloc::default();
        let spec = LbSpec::new(VNI_A, "10.1.2.3".parse().unwrap(), 5)
            .range(Protocol::Tcp, 80, 80)
            .range(Protocol::Udp, 53, 53)
            .targets(["fd00::a".parse().unwrap(), "fd00::b".parse().unwrap()])
            .m_log2(3);
        let lb = install(&mut d, &spec, &mut a);
        let [b1, _] = lb.entry.key().buckets(d.config().caps.lb_buckets);
        assert_eq!(lb.index, b1 * 4);
        assert_eq!(
            (lb.range_base, lb.bucket_base, lb.target_indices.clone()),
            (8, 64, vec![1, 2])
        );
        let e: &[u8; 64] = d.tables().entry(TableId::Lb, lb.index).try_into().unwrap();
        assert_eq!(LbEntry::parse(e).unwrap(), Some(lb.entry));
        let slots = d.tables().get(TableId::Bucket, 64, 8).unwrap();
        assert_eq!(&slots[..12], &[1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(lb.target_for_hash(0xFFFF_FFF9), Some(2));
        // Same key again: next free way of b1.
        let lb2 = install(&mut d, &spec, &mut a);
        assert_eq!(lb2.index, b1 * 4 + 1);
        assert_eq!(
            a,
            SimpleAlloc {
                next_range: 12,
                next_target: 5,
                next_slot: 80
            }
        );
        write_ctrl(&mut d, &lb2, 0);
        assert_eq!(free_way(&d, &lb.entry.key()), Some(b1 * 4 + 1));
    }
}
