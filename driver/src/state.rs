//! What the driver knows about the device beyond its tables' bytes: the spec and placement of every programmed LB
//! ([`LbState`], rebuilt by adoption) and what it configured outside the tables ([`Intent`], for reset detection).
//! [`crate::Device`] holds both; the modules that change them (program, readback, health) depend on this one, and
//! this one on none of them.

use crate::access::DeviceAccess;
use crate::alloc::Block;
use ironlb_hw::caps::Caps;
use ironlb_hw::entry::{IcmpPolicy, LbEntry, LbSet, PortCfg, RangeEntry};
use ironlb_hw::regs::*;
use ironlb_hw::LbKey;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

/// What one load balancer must look like on the device. All VIPs of an LB share its allow-list, targets and
/// bucket array; each VIP is one LB-table entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct LbSpec {
    /// Counter row and identity of the LB.
    pub lb_id: u32,
    /// (domain, VIP) keys, one LB-table entry each.
    pub vips: BTreeSet<LbKey>,
    /// ICMP policy.
    pub icmp: IcmpPolicy,
    /// Allow-list, sorted.
    pub ranges: Vec<RangeEntry>,
    /// Targets' underlay addresses.
    pub targets: BTreeSet<Ipv6Addr>,
    /// Draining targets (docs/hw-spec.md §11.5): they keep their target entry, so flows pinned to them keep
    /// reaching them, but get no bucket slot, so no new flow does. Disjoint from `targets`. An LB whose targets are
    /// all draining has no bucket array and drops every packet `no_target`, pinned or not (§11.3).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub draining: BTreeSet<Ipv6Addr>,
}

impl LbSpec {
    /// Every target with a target entry: the serving ones and the draining ones.
    pub fn entries(&self) -> impl Iterator<Item = &Ipv6Addr> {
        self.targets.iter().chain(&self.draining)
    }
}

/// The driver's knowledge of one programmed LB (rebuilt from the device by adoption).
#[derive(Debug, Clone)]
pub struct LbState {
    /// What is programmed.
    pub spec: LbSpec,
    /// Active set of every VIP entry.
    pub active_set: u8,
    /// Generation written last.
    pub generation: u32,
    /// Flow epoch (v1.2, docs/hw-spec.md §11.2): chosen at create, kept by every update; 0 on a device without a
    /// flow table.
    pub flow_epoch: u8,
    /// The range block.
    pub range: Block,
    /// Bucket array and its log2(M); `None` without targets.
    pub array: Option<(Block, u8)>,
    /// Target-table index per target.
    pub target_index: BTreeMap<Ipv6Addr, u32>,
    /// Bucket array contents (target-table indices).
    pub slots: Vec<u32>,
    /// LB-table index per VIP.
    pub vip_index: BTreeMap<LbKey, u32>,
    /// Memory referenced by an inconsistent earlier state (found by adoption), freed by the next update.
    pub stale: Vec<(TableId, Block)>,
    /// The VIP entries disagree (an update was interrupted): the next apply republishes all of them.
    pub dirty: bool,
    /// The next apply moves the allow-list to exactly this block even if it did not change (defragmentation).
    pub relocate_to: Option<Block>,
    /// `slots` is known to be this driver's array for the targets (false after adoption until the next apply
    /// compares it: a device programmed by another scheme or size is rewritten then, docs/architecture.md).
    pub array_checked: bool,
}

impl LbState {
    pub(crate) fn set(&self) -> LbSet {
        let (bucket_base, bucket_log2) = self.array.map_or((0, 0), |(b, l)| (b.start, l));
        LbSet {
            range_base: self.range.start,
            range_count: self.range.len as u16,
            bucket_log2,
            bucket_base,
        }
    }

    pub(crate) fn entry(&self, key: &LbKey, other_set: LbSet) -> LbEntry {
        let mut sets = [other_set; 2];
        sets[self.active_set as usize] = self.set();
        LbEntry {
            active_set: self.active_set,
            icmp: self.spec.icmp,
            generation: self.generation,
            flow_epoch: self.flow_epoch,
            domain: key.domain,
            lb_id: self.spec.lb_id,
            vip: key.vip,
            sets,
        }
    }
}

/// What the driver configured outside the tables, and the generation it did it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intent {
    pub(crate) ports: BTreeMap<u32, PortCfg>,
    pub(crate) underlay: Option<(Ipv6Addr, u32, u8)>,
    pub(crate) enabled: bool,
    /// `GENERATION` when the driver last (re)configured the device; `None` on a v1.0 device.
    pub(crate) generation: Option<u32>,
    /// The flow table's configuration (v1.2); `None` without a flow table.
    pub(crate) flow: Option<crate::flows::FlowConfig>,
}

/// FLOW_CTRL and the timeout registers (v1.2).
pub(crate) fn read_flow_config(acc: &mut dyn DeviceAccess) -> crate::flows::FlowConfig {
    crate::flows::FlowConfig {
        enabled: acc.read32(FLOW_CTRL) & FLOW_CTRL_ENABLE != 0,
        timeouts_ms: FlowClass::ALL.map(|c| acc.read32(c.register()) & FLOW_TIMEOUT_MASK),
    }
}

impl Intent {
    /// At open (and after a reset the driver made): the device's present configuration is what this driver
    /// continues, in the device's present generation.
    pub(crate) fn adopt_registers(&mut self, acc: &mut dyn DeviceAccess, caps: &Caps) {
        self.enabled = acc.read32(CONTROL) & CONTROL_ENABLE != 0;
        self.ports = (0..caps.ports.min(MAX_PORTS))
            .filter_map(|p| {
                let c = PortCfg::from_raw(acc.read32(PORT_CFG + 4 * p)).ok()?;
                c.enabled.then_some((p, c))
            })
            .collect();
        let mut o = [0u8; 16];
        for i in 0..4 {
            o[4 * i..4 * i + 4].copy_from_slice(&acc.read32(UNDERLAY_SRC + 4 * i as u32).to_le_bytes());
        }
        self.underlay = Some((
            Ipv6Addr::from(o),
            acc.read32(UNDERLAY_MTU),
            acc.read32(UNDERLAY_HOP_LIMIT) as u8,
        ));
        self.generation = caps.has(FEATURE_GENERATION).then(|| acc.read32(GENERATION));
        self.flow = caps.has(FEATURE_FLOW_TABLE).then(|| read_flow_config(acc));
    }
}
