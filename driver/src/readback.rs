//! Read-back: every table decoded from device memory (not from driver state), for dumps, adoption on restart and
//! drift detection.

use crate::alloc::{Block, BlockAllocator};
use crate::cmd::Cmd;
use crate::device::Device;
use crate::error::DriverError;
use crate::state::{LbSpec, LbState};
use crate::tables::lb::LbTable;
use ironlb_hw::entry::{CounterEntry, LbEntry, RangeEntry, TargetEntry, NO_TARGET};
use ironlb_hw::regs::TableId;
use std::collections::{BTreeMap, BTreeSet};

/// A decoded LB-table entry and where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LbAt {
    /// Table index (bucket * 4 + way).
    pub index: u32,
    /// The entry.
    pub entry: LbEntry,
}

/// One LB as the device holds it, decoded through its entries' active sets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DecodedLb {
    /// LB id.
    pub lb_id: u32,
    /// Its VIP entries.
    pub vips: Vec<LbAt>,
    /// Allow-list of the first VIP's active set.
    pub ranges: Vec<RangeEntry>,
    /// Bucket array (target indices) of the first VIP's active set.
    pub slots: Vec<u32>,
    /// Target entries referenced by the array.
    pub targets: BTreeMap<u32, TargetEntry>,
    /// Valid target entries of this LB (by their LB_ID) that no slot references: draining targets
    /// (docs/hw-spec.md §11.5).
    pub draining: BTreeMap<u32, TargetEntry>,
    /// True when all VIP entries use the same active configuration.
    pub consistent: bool,
}

impl DecodedLb {
    /// The spec this device state implements.
    pub fn spec(&self) -> LbSpec {
        let first = &self.vips[0].entry;
        LbSpec {
            lb_id: self.lb_id,
            vips: self.vips.iter().map(|v| v.entry.key()).collect(),
            icmp: first.icmp,
            ranges: self.ranges.clone(),
            targets: self.targets.values().map(|t| t.underlay).collect(),
            draining: self.draining.values().map(|t| t.underlay).collect(),
        }
    }
}

/// Everything the device holds, decoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// LBs by id.
    pub lbs: BTreeMap<u32, DecodedLb>,
    /// Valid target entries not referenced by any LB's active array (left over from an interrupted update).
    pub orphan_targets: Vec<u32>,
}

impl Snapshot {
    /// Specs by LB id.
    pub fn specs(&self) -> BTreeMap<u32, LbSpec> {
        self.lbs.iter().map(|(id, l)| (*id, l.spec())).collect()
    }
}

fn corrupt(table: TableId, index: u32) -> impl Fn(ironlb_hw::DecodeError) -> DriverError {
    move |source| DriverError::Corrupt {
        table: table.name(),
        index,
        source,
    }
}

impl Device {
    /// Read and decode a whole table's valid entries of one kind.
    fn read_table<T>(
        &mut self,
        table: TableId,
        parse: impl Fn(&[u8], u32) -> Result<Option<T>, DriverError>,
    ) -> Result<Vec<(u32, T)>, DriverError> {
        let n = match table {
            TableId::Lb => self.caps().lb_buckets * self.caps().lb_ways,
            TableId::Target => self.caps().targets,
            _ => unreachable!("read_table is for the LB and target tables"),
        };
        let bytes = self.read_entries(table, 0, n)?;
        let eb = table.entry_bytes();
        let mut out = Vec::new();
        for (i, chunk) in bytes.chunks_exact(eb).enumerate() {
            if let Some(v) = parse(chunk, i as u32)? {
                out.push((i as u32, v));
            }
        }
        Ok(out)
    }

    /// Decode the device's tables.
    pub fn read_state(&mut self) -> Result<Snapshot, DriverError> {
        let lb_entries = self.read_table(TableId::Lb, |b, i| {
            LbEntry::parse(b.try_into().expect("64 bytes")).map_err(corrupt(TableId::Lb, i))
        })?;
        let targets: BTreeMap<u32, TargetEntry> = self
            .read_table(TableId::Target, |b, i| {
                TargetEntry::parse(b.try_into().expect("32 bytes")).map_err(corrupt(TableId::Target, i))
            })?
            .into_iter()
            .collect();
        let mut by_id: BTreeMap<u32, Vec<LbAt>> = BTreeMap::new();
        for (index, entry) in lb_entries {
            by_id.entry(entry.lb_id).or_default().push(LbAt { index, entry });
        }
        let mut referenced = BTreeSet::new();
        let mut lbs = BTreeMap::new();
        for (lb_id, vips) in by_id {
            let set = *vips[0].entry.active();
            let consistent = vips
                .iter()
                .all(|v| *v.entry.active() == set && v.entry.icmp == vips[0].entry.icmp);
            let ranges = if set.range_count == 0 {
                Vec::new()
            } else {
                let raw = self.read_entries(TableId::Range, set.range_base, set.range_count as u32)?;
                let mut r = Vec::new();
                for (k, c) in raw.chunks_exact(8).enumerate() {
                    let i = set.range_base + k as u32;
                    if let Some(e) = RangeEntry::parse(c.try_into().expect("8 bytes"))
                        .map_err(corrupt(TableId::Range, i))?
                    {
                        r.push(e);
                    }
                }
                r
            };
            let slots: Vec<u32> = if set.bucket_log2 == 0 {
                Vec::new()
            } else {
                self.read_entries(TableId::Bucket, set.bucket_base, set.bucket_slots())?
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect()
            };
            let mut lb_targets = BTreeMap::new();
            for &s in &slots {
                if s != NO_TARGET {
                    if let Some(t) = targets.get(&s) {
                        lb_targets.insert(s, *t);
                    }
                    referenced.insert(s);
                }
            }
            lbs.insert(
                lb_id,
                DecodedLb {
                    lb_id,
                    vips,
                    ranges,
                    slots,
                    targets: lb_targets,
                    draining: BTreeMap::new(),
                    consistent,
                },
            );
        }
        // Unreferenced entries of an existing LB are its draining targets; the rest are orphans.
        let mut orphan_targets = Vec::new();
        for (&i, t) in targets.iter().filter(|(i, _)| !referenced.contains(i)) {
            match lbs.get_mut(&t.lb_id) {
                Some(lb) => {
                    lb.draining.insert(i, *t);
                }
                None => orphan_targets.push(i),
            }
        }
        Ok(Snapshot { lbs, orphan_targets })
    }

    /// Per-LB counters for the given LB ids (DMA snapshot of the whole table, docs/hw-spec.md §5.5).
    pub fn lb_counters(&mut self) -> Result<Vec<CounterEntry>, DriverError> {
        self.counter_table(TableId::LbCounter, self.caps().lb_ids)
    }

    /// Per-target counters, indexed by target index.
    pub fn target_counters(&mut self) -> Result<Vec<CounterEntry>, DriverError> {
        self.counter_table(TableId::TargetCounter, self.caps().targets)
    }

    fn counter_table(&mut self, t: TableId, n: u32) -> Result<Vec<CounterEntry>, DriverError> {
        Ok(self
            .read_entries(t, 0, n)?
            .chunks_exact(16)
            .map(|c| CounterEntry::parse(c.try_into().expect("16 bytes")))
            .collect())
    }

    /// Rebuild all driver state from the device (open, and after a device error). Nothing is written: memory in
    /// use by any VIP entry's active set is reserved; everything else is free.
    pub fn adopt(&mut self) -> Result<(), DriverError> {
        let snap = self.read_state()?;
        let caps = self.caps().clone();
        self.lbt = LbTable::new(caps.lb_buckets);
        self.ranges = BlockAllocator::new(caps.ranges);
        self.buckets = BlockAllocator::new(caps.bucket_slots);
        self.targets = BlockAllocator::new(caps.targets);
        self.lbs.clear();
        for (lb_id, d) in snap.lbs {
            let first = d.vips[0].entry;
            let set = *first.active();
            let mut stale = Vec::new();
            // Every VIP's active set keeps its memory; the first VIP's is the LB's configuration.
            for v in &d.vips {
                self.lbt.set(v.index, v.entry);
                let s = v.entry.active();
                let r = Block {
                    start: s.range_base,
                    len: s.range_count as u32,
                };
                if self.ranges.reserve(r) && *s != set {
                    stale.push((TableId::Range, r));
                }
                if s.bucket_log2 != 0 {
                    let b = Block {
                        start: s.bucket_base,
                        len: s.bucket_slots(),
                    };
                    if self.buckets.reserve(b) && *s != set {
                        stale.push((TableId::Bucket, b));
                    }
                }
            }
            let mut target_index = BTreeMap::new();
            for (&i, t) in d.targets.iter().chain(&d.draining) {
                self.targets.reserve(Block { start: i, len: 1 });
                target_index.insert(t.underlay, i);
            }
            let spec = d.spec();
            if !d.consistent {
                tracing::warn!(lb_id, "VIP entries of this LB use different configurations (interrupted update); the next apply rewrites them");
            }
            let st = LbState {
                vip_index: d.vips.iter().map(|v| (v.entry.key(), v.index)).collect(),
                active_set: first.active_set,
                generation: first.generation,
                flow_epoch: first.flow_epoch,
                range: Block {
                    start: set.range_base,
                    len: set.range_count as u32,
                },
                array: (set.bucket_log2 != 0).then(|| {
                    (
                        Block {
                            start: set.bucket_base,
                            len: set.bucket_slots(),
                        },
                        set.bucket_log2,
                    )
                }),
                target_index,
                slots: d.slots,
                spec,
                stale,
                dirty: !d.consistent,
                relocate_to: None,
                array_checked: false,
            };
            self.lbs.insert(lb_id, st);
        }
        // New LBs get epochs after every adopted one's (docs/hw-spec.md §11.2).
        if let Some(max) = self.lbs.values().map(|s| s.flow_epoch).max() {
            self.next_flow_epoch = max.wrapping_add(1).max(1);
        }
        Ok(())
    }
}

impl Device {
    /// Copies what decides forwarding into `dst`, a device with the same table sizes: every load balancer's VIP
    /// entries, its active allow-list block, bucket array and target entries, at the same table indexes, then
    /// the port configuration, the underlay settings and CONTROL.ENABLE — all through `dst`'s own command path.
    /// A packet then meets the same entries on `dst` as on this device (diagnostics replay and trace captures
    /// through a software model loaded this way). Entries `dst` held before stay: give it a fresh device.
    /// Returns the number of load balancers copied. Fails, copying nothing, for a load balancer caught in the
    /// middle of an update (its VIPs on different configuration sets).
    pub fn mirror_to(&mut self, dst: &mut Device) -> Result<usize, DriverError> {
        let shape = |c: &ironlb_hw::caps::Caps| {
            (
                c.lb_buckets,
                c.lb_ways,
                c.ranges,
                c.targets,
                c.bucket_slots,
                c.ports,
                c.lb_ids,
            )
        };
        if shape(self.caps()) != shape(dst.caps()) {
            return Err(DriverError::Invalid(format!(
                "mirror: the devices' table sizes differ ({:?} vs {:?})",
                shape(self.caps()),
                shape(dst.caps())
            )));
        }
        let snap = self.read_state()?;
        let mut cmds = Vec::new();
        for lb in snap.lbs.values() {
            if !lb.consistent {
                return Err(DriverError::Invalid(format!(
                    "mirror: LB {} is being updated (its VIPs use different configuration sets); try again",
                    lb.lb_id
                )));
            }
            for at in &lb.vips {
                cmds.push(Cmd::Write {
                    table: TableId::Lb,
                    index: at.index,
                    data: at.entry.emit().to_vec(),
                });
            }
            let set = *lb.vips[0].entry.active();
            if !lb.ranges.is_empty() {
                cmds.push(Cmd::Write {
                    table: TableId::Range,
                    index: set.range_base,
                    data: lb.ranges.iter().flat_map(|r| r.emit()).collect(),
                });
            }
            if !lb.slots.is_empty() {
                cmds.push(Cmd::Write {
                    table: TableId::Bucket,
                    index: set.bucket_base,
                    data: lb.slots.iter().flat_map(|s| s.to_le_bytes()).collect(),
                });
            }
            for (i, t) in &lb.targets {
                cmds.push(Cmd::Write {
                    table: TableId::Target,
                    index: *i,
                    data: t.emit().to_vec(),
                });
            }
        }
        dst.submit(&cmds)?;
        for p in 0..self.caps().ports {
            let cfg = self.port(p)?;
            dst.set_port(p, cfg)?;
        }
        let (src, mtu, hop) = self.underlay();
        dst.set_underlay(src, mtu, hop);
        let on = self.enabled();
        dst.set_enabled(on);
        Ok(snap.lbs.len())
    }
}
