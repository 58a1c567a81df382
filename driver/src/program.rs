//! Programming load balancers: create, update and delete with no packet ever seeing a half-written
//! configuration (docs/hw-spec.md §8). All memory is allocated before any command is sent, so a request that
//! does not fit fails with `TableFull` and leaves the device and the driver's state as they were.

use crate::alloc::Block;
use crate::cmd::Cmd;
use crate::device::Device;
use crate::error::DriverError;
use crate::state::{LbSpec, LbState};
use crate::tables::buckets::{array_log2, default_hasher, TargetKey};
use crate::tables::lb::Placement;
use ironlb_hw::entry::lb::CTRL_WORD;
use ironlb_hw::entry::{LbEntry, LbSet, RangeEntry, TargetEntry};
use ironlb_hw::regs::{FlushSelector, TableId, FEATURE_FLOW_TABLE};
use ironlb_hw::LbKey;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

/// What an apply did (for logs, metrics and benches).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    /// True when the LB did not exist before.
    pub created: bool,
    /// Commands sent.
    pub commands: usize,
    /// Bucket slots rewritten in place.
    pub slots_in_place: usize,
    /// True when a shadow array was written and flipped to.
    pub shadow_flip: bool,
    /// True when the allow-list moved to a new block.
    pub ranges_rewritten: bool,
    /// Cuckoo moves performed.
    pub cuckoo_moves: usize,
}

/// Allocations made for one step, undone if it cannot complete.
#[derive(Default)]
struct Txn {
    allocated: Vec<(TableId, Block)>,
}

/// What a successful step changes in the driver's state once its commands completed.
type Commit = Box<dyn FnOnce(&mut Device)>;

impl Device {
    fn alloc(&mut self, txn: &mut Txn, table: TableId, len: u32, align: u32) -> Result<Block, DriverError> {
        let a = match table {
            TableId::Range => &mut self.ranges,
            TableId::Bucket => &mut self.buckets,
            TableId::Target => &mut self.targets,
            _ => unreachable!("only range, bucket and target memory is allocated"),
        };
        let b = a.alloc(len, align).ok_or_else(|| DriverError::TableFull {
            table: table.name(),
            detail: format!(
                "no free block of {len} entries (largest free block {})",
                a.largest_free()
            ),
        })?;
        txn.allocated.push((table, b));
        Ok(b)
    }

    /// The flow epoch for a new LB: 0 on a device without a flow table, else the next value of the driver's
    /// counter (never 0, so an LB written by a v1.1 driver never shares an epoch with one of ours).
    fn take_flow_epoch(&mut self) -> u8 {
        if !self.caps().has(FEATURE_FLOW_TABLE) {
            return 0;
        }
        let e = self.next_flow_epoch;
        self.next_flow_epoch = match e.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        e
    }

    pub(crate) fn free_block(&mut self, table: TableId, b: Block) {
        match table {
            TableId::Range => self.ranges.free(b),
            TableId::Bucket => self.buckets.free(b),
            TableId::Target => self.targets.free(b),
            _ => unreachable!("only range, bucket and target memory is allocated"),
        }
    }

    fn validate(&self, spec: &LbSpec) -> Result<(), DriverError> {
        let c = self.caps();
        let bad = |m: String| Err(DriverError::Invalid(format!("lb_id {}: {m}", spec.lb_id)));
        if spec.lb_id >= c.lb_ids {
            return bad(format!("lb_id >= CAP_LB_IDS {}", c.lb_ids));
        }
        if spec.ranges.len() > c.max_ranges_per_lb as usize {
            return bad(format!(
                "{} port ranges, the device compares at most {}",
                spec.ranges.len(),
                c.max_ranges_per_lb
            ));
        }
        let n = spec.targets.len() + spec.draining.len();
        if n > c.max_targets_per_lb as usize {
            return bad(format!(
                "{n} targets (draining ones included), the device supports at most {} per LB",
                c.max_targets_per_lb
            ));
        }
        if let Some(t) = spec.targets.intersection(&spec.draining).next() {
            return bad(format!("target {t} is both serving and draining"));
        }
        if spec.vips.is_empty() {
            return bad("no VIP".into());
        }
        // VIP ownership through the LB-table mirror: O(1) per VIP.
        for k in &spec.vips {
            if let Some(owner) = self.lbt.find(k).and_then(|i| self.lbt.get(i)).map(|e| e.lb_id) {
                if owner != spec.lb_id {
                    return Err(DriverError::VipInUse {
                        lb_id: spec.lb_id,
                        vip: k.vip,
                        domain: k.domain,
                        owner,
                    });
                }
            }
        }
        Ok(())
    }

    /// The bucket array for a target set: target-table indices per slot, from the consistent-hashing scheme (a pure
    /// function of the set of underlay addresses, M being the same for every LB, so every host computes the same
    /// array; docs/architecture.md "Bucket arrays").
    /// Only the serving targets (`serving`) get slots: draining ones keep their entry in `targets` but no slot.
    fn array_for(targets: &BTreeMap<Ipv6Addr, u32>, serving: &BTreeSet<Ipv6Addr>, m_log2: u8) -> Vec<u32> {
        let targets: Vec<(&Ipv6Addr, &u32)> = targets.iter().filter(|(a, _)| serving.contains(a)).collect();
        let keys: Vec<TargetKey> = targets.iter().map(|(a, _)| TargetKey(a.octets())).collect();
        let idx: Vec<u32> = targets.iter().map(|(_, i)| **i).collect();
        default_hasher()
            .assign(&keys, m_log2)
            .into_iter()
            .map(|i| idx[i as usize])
            .collect()
    }

    /// Whether bucket memory has a free, aligned block for an array of `len` slots (probed, nothing kept).
    fn bucket_room(&mut self, len: u32) -> bool {
        match self.buckets.alloc(len, len) {
            Some(b) => {
                self.buckets.free(b);
                true
            }
            None => false,
        }
    }

    fn target_cmd(lb_id: u32, underlay: Ipv6Addr, index: u32) -> Cmd {
        Cmd::Write {
            table: TableId::Target,
            index,
            data: TargetEntry { lb_id, underlay }.emit().to_vec(),
        }
    }

    /// The write of an allow-list into its block (nothing for an empty list).
    fn ranges_cmd(block: Block, ranges: &[RangeEntry]) -> Option<Cmd> {
        (block.len > 0).then(|| Cmd::Write {
            table: TableId::Range,
            index: block.start,
            data: ranges.iter().flat_map(|r| r.emit()).collect(),
        })
    }

    fn slots_cmd(base: u32, slots: &[u32]) -> Cmd {
        Cmd::Write {
            table: TableId::Bucket,
            index: base,
            data: slots.iter().flat_map(|s| s.to_le_bytes()).collect(),
        }
    }

    /// After a batch failed on the device: re-adopt the device state, unless the device did not answer (a
    /// timeout), where reading it back would only wait for another timeout: the driver state is then marked stale
    /// and re-adopted by [`Device::recover_commands`] once the device answers again.
    fn after_failed_submit(&mut self, e: &DriverError) -> Result<(), DriverError> {
        if matches!(e, DriverError::Timeout { .. }) {
            tracing::error!(error = %e, "the device did not answer while applying a change; its state is re-adopted when it answers again");
            self.stale = true;
            return Ok(());
        }
        tracing::error!(error = %e, "device failed while applying a change; re-adopting device state");
        self.adopt()
    }

    /// Run a planned step: on a planning error undo its allocations; on a device error re-adopt.
    fn run_step(
        &mut self,
        planned: Result<(Vec<Cmd>, Commit), DriverError>,
        txn: Txn,
    ) -> Result<usize, DriverError> {
        let (cmds, commit) = match planned {
            Ok(p) => p,
            Err(e) => {
                for (t, b) in txn.allocated {
                    self.free_block(t, b);
                }
                return Err(e);
            }
        };
        if let Err(e) = self.submit(&cmds) {
            self.after_failed_submit(&e)?;
            return Err(e);
        }
        commit(self);
        Ok(cmds.len())
    }

    /// Make the device hold `spec`: create the LB, or update it hitlessly (docs/hw-spec.md §8).
    ///
    /// Steps, each complete and consistent on its own: (1) VIPs no longer wanted are invalidated; (2) allow-list,
    /// targets, bucket array and ICMP policy are written to unused memory and published by one commit-word write per
    /// VIP; (3) new VIPs are placed (cuckoo moves, then the entry). A `TableFull` or `Invalid` error leaves the
    /// device as it was before the failing step; for a new LB nothing of it remains.
    pub fn apply(&mut self, spec: &LbSpec) -> Result<ApplyReport, DriverError> {
        let report = self.apply_now(spec)?;
        self.owe(|o| {
            o.specs.insert(spec.lb_id, spec.clone());
        });
        Ok(report)
    }

    fn apply_now(&mut self, spec: &LbSpec) -> Result<ApplyReport, DriverError> {
        self.validate(spec)?;
        let mut spec = spec.clone();
        spec.ranges.sort();
        let mut report = ApplyReport::default();
        let existed = self.lbs.contains_key(&spec.lb_id);
        if existed {
            let old = self.lbs[&spec.lb_id].spec.vips.clone();
            let gone: Vec<LbKey> = old.difference(&spec.vips).copied().collect();
            if !gone.is_empty() {
                report.commands += self.remove_vips(spec.lb_id, &gone)?;
            }
            let mut txn = Txn::default();
            let planned = self.plan_body_update(&spec, &mut txn, &mut report);
            report.commands += self.run_step(planned, txn)?;
        } else {
            let mut txn = Txn::default();
            let planned = self.plan_body_create(&spec, &mut txn);
            report.commands += self.run_step(planned, txn)?;
            report.created = true;
        }
        let have = self.lbs[&spec.lb_id].spec.vips.clone();
        let mut added = Vec::new();
        for key in spec.vips.difference(&have) {
            match self.insert_vip(spec.lb_id, *key) {
                Ok((n, moves)) => {
                    report.commands += n;
                    report.cuckoo_moves += moves;
                    added.push(*key);
                }
                Err(e) => {
                    if existed {
                        self.remove_vips(spec.lb_id, &added)?;
                    } else {
                        self.remove(spec.lb_id)?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(report)
    }

    /// Step 2 for a new LB: its memory, with no VIP yet (nothing can reach it).
    fn plan_body_create(&mut self, spec: &LbSpec, txn: &mut Txn) -> Result<(Vec<Cmd>, Commit), DriverError> {
        let range = self.alloc(txn, TableId::Range, spec.ranges.len() as u32, 1)?;
        let mut target_index = BTreeMap::new();
        for t in spec.entries() {
            target_index.insert(*t, self.alloc(txn, TableId::Target, 1, 1)?.start);
        }
        let array = if spec.targets.is_empty() {
            None
        } else {
            let c = self.caps();
            let log2 = array_log2(c.bucket_log2_min, c.bucket_log2_max);
            Some((self.alloc(txn, TableId::Bucket, 1 << log2, 1 << log2)?, log2))
        };
        let slots = array.map_or(Vec::new(), |(_, l)| {
            Self::array_for(&target_index, &spec.targets, l)
        });
        let mut cmds = Vec::new();
        cmds.extend(Self::ranges_cmd(range, &spec.ranges));
        for (t, &i) in &target_index {
            cmds.push(Self::target_cmd(spec.lb_id, *t, i));
        }
        if let Some((b, _)) = array {
            cmds.push(Self::slots_cmd(b.start, &slots));
        }
        let st = LbState {
            spec: LbSpec {
                vips: BTreeSet::new(),
                ..spec.clone()
            },
            active_set: 0,
            generation: 1,
            flow_epoch: self.take_flow_epoch(),
            range,
            array,
            target_index,
            slots,
            vip_index: BTreeMap::new(),
            stale: Vec::new(),
            dirty: false,
            relocate_to: None,
            array_checked: true,
        };
        Ok((
            cmds,
            Box::new(move |d: &mut Device| {
                d.lbs.insert(st.spec.lb_id, st);
            }),
        ))
    }

    /// Step 2 for an existing LB: new allow-list block, target entries, in-place slot rewrites or a shadow array,
    /// then the commit-word flip of every VIP (§8.2, §8.3).
    fn plan_body_update(
        &mut self,
        spec: &LbSpec,
        txn: &mut Txn,
        report: &mut ApplyReport,
    ) -> Result<(Vec<Cmd>, Commit), DriverError> {
        let old = self.lbs[&spec.lb_id].clone();
        let mut st = old.clone();
        st.spec = LbSpec {
            vips: old.spec.vips.clone(),
            ..spec.clone()
        };
        st.stale.clear();
        st.dirty = false;
        st.relocate_to = None;
        let mut cmds = Vec::new();
        let mut to_free: Vec<(TableId, Block)> = old.stale.clone();
        let mut flip = old.dirty;

        if spec.ranges != old.spec.ranges || old.relocate_to.is_some() {
            let b = match old.relocate_to {
                Some(b) if b.len == spec.ranges.len() as u32 => {
                    if !self.ranges.reserve(b) {
                        return Err(DriverError::TableFull {
                            table: "range",
                            detail: format!("block {}..{} is not free", b.start, b.start + b.len),
                        });
                    }
                    txn.allocated.push((TableId::Range, b));
                    b
                }
                _ => self.alloc(txn, TableId::Range, spec.ranges.len() as u32, 1)?,
            };
            cmds.extend(Self::ranges_cmd(b, &spec.ranges));
            to_free.push((TableId::Range, old.range));
            st.range = b;
            flip = true;
            report.ranges_rewritten = true;
        }

        // An adopted array that is not this driver's (another size or scheme, e.g. written before issue 13) is
        // rewritten like a target change, so that every host serves the same array.
        let c = self.caps().clone();
        let foreign_array = !old.array_checked
            && old.array.is_some_and(|(_, l)| {
                let want = array_log2(c.bucket_log2_min, c.bucket_log2_max);
                l != want || Self::array_for(&old.target_index, &old.spec.targets, want) != old.slots
            });
        st.array_checked = true;
        let mut removed_targets = Vec::new();
        let (new_all, old_all): (BTreeSet<Ipv6Addr>, BTreeSet<Ipv6Addr>) = (
            spec.entries().copied().collect(),
            old.spec.entries().copied().collect(),
        );
        if spec.targets != old.spec.targets || new_all != old_all || foreign_array {
            if foreign_array {
                tracing::info!(
                    lb_id = spec.lb_id,
                    "adopted bucket array differs from this driver's; rewriting it"
                );
            }
            for t in new_all.difference(&old_all) {
                let i = self.alloc(txn, TableId::Target, 1, 1)?.start;
                st.target_index.insert(*t, i);
                cmds.push(Self::target_cmd(spec.lb_id, *t, i));
            }
            for t in old_all.difference(&new_all) {
                removed_targets.push(st.target_index.remove(t).expect("old target has an index"));
            }
            let new_log2 =
                (!spec.targets.is_empty()).then(|| array_log2(c.bucket_log2_min, c.bucket_log2_max));
            let new_slots = new_log2.map_or(Vec::new(), |l| {
                Self::array_for(&st.target_index, &spec.targets, l)
            });
            let in_place = match (old.array, new_log2) {
                (Some((b, l)), Some(nl)) if l == nl => {
                    let changed: Vec<usize> = (0..new_slots.len())
                        .filter(|&i| new_slots[i] != old.slots[i])
                        .collect();
                    // A large change goes to a shadow array (fewer commands), unless bucket memory has no room for one
                    // (a full device): slot writes are atomic, so writing in place is as hitless, only longer.
                    let small = changed.len() <= new_slots.len() / 4;
                    (small || !self.bucket_room(new_slots.len() as u32)).then_some((b, changed))
                }
                _ => None,
            };
            if let Some((b, changed)) = in_place {
                // Small change: rewrite only the changed slots, in runs of consecutive slots.
                let mut i = 0;
                while i < changed.len() {
                    let mut j = i;
                    while j + 1 < changed.len() && changed[j + 1] == changed[j] + 1 {
                        j += 1;
                    }
                    cmds.push(Self::slots_cmd(
                        b.start + changed[i] as u32,
                        &new_slots[changed[i]..=changed[j]],
                    ));
                    i = j + 1;
                }
                report.slots_in_place = changed.len();
            } else {
                if let Some(nl) = new_log2 {
                    let nb = self.alloc(txn, TableId::Bucket, 1 << nl, 1 << nl)?;
                    cmds.push(Self::slots_cmd(nb.start, &new_slots));
                    st.array = Some((nb, nl));
                    report.shadow_flip = true;
                } else {
                    st.array = None;
                }
                if let Some((b, _)) = old.array {
                    to_free.push((TableId::Bucket, b));
                }
                flip = true;
            }
            st.slots = new_slots;
        }

        // Publish: per VIP, write the entry with the inactive set staged (ACTIVE_SET unchanged, one atomic entry
        // write), then the commit word with ACTIVE_SET flipped.
        let mut new_entries = Vec::new();
        if flip || spec.icmp != old.spec.icmp {
            if flip {
                st.active_set ^= 1;
                st.generation = old.generation.wrapping_add(1);
            }
            for (key, &idx) in &old.vip_index {
                let cur = *self.lbt.get(idx).expect("programmed VIP in mirror");
                // The set not in use after this step: the old active one on a flip, else the untouched inactive.
                let other = cur.sets[(old.active_set ^ u8::from(!flip)) as usize];
                let next = st.entry(key, other);
                if flip {
                    let staged = LbEntry {
                        active_set: old.active_set,
                        icmp: old.spec.icmp,
                        ..next
                    };
                    cmds.push(Cmd::Write {
                        table: TableId::Lb,
                        index: idx,
                        data: staged.emit().to_vec(),
                    });
                }
                cmds.push(Cmd::WriteWord {
                    table: TableId::Lb,
                    index: idx,
                    word: CTRL_WORD,
                    value: next.ctrl(),
                });
                new_entries.push((idx, next));
            }
        }
        // Drain (§8.5): packets that read the old set before the flip may still read the old range block, array
        // or target entries; one fence per step, after the flip, before any of that memory is invalidated or
        // (in a later step) reused.
        if !to_free.is_empty() || !removed_targets.is_empty() {
            cmds.push(Cmd::Fence);
        }
        // Removed targets are invalidated only after no slot references them; then their pinned flows are flushed
        // (v1.2, docs/hw-spec.md §11.5), before the index can be reused.
        for &i in &removed_targets {
            cmds.push(Cmd::Fill {
                table: TableId::Target,
                index: i,
                count: 1,
                value: 0,
            });
            to_free.push((TableId::Target, Block { start: i, len: 1 }));
        }
        if self.caps().has(FEATURE_FLOW_TABLE) {
            cmds.extend(
                removed_targets
                    .iter()
                    .map(|&i| Cmd::FlowFlush(FlushSelector::Target(i))),
            );
        }
        Ok((
            cmds,
            Box::new(move |d: &mut Device| {
                for (idx, e) in new_entries {
                    d.lbt.set(idx, e);
                }
                for (t, b) in to_free {
                    d.free_block(t, b);
                }
                d.lbs.insert(st.spec.lb_id, st);
            }),
        ))
    }

    /// Step 1: invalidate VIP entries (§8.4).
    fn remove_vips(&mut self, lb_id: u32, keys: &[LbKey]) -> Result<usize, DriverError> {
        let st = &self.lbs[&lb_id];
        let idx: Vec<u32> = keys.iter().filter_map(|k| st.vip_index.get(k).copied()).collect();
        let cmds: Vec<Cmd> = idx
            .iter()
            .map(|&i| Cmd::WriteWord {
                table: TableId::Lb,
                index: i,
                word: CTRL_WORD,
                value: 0,
            })
            .collect();
        let keys = keys.to_vec();
        self.run_step(
            Ok((
                cmds,
                Box::new(move |d: &mut Device| {
                    for i in idx {
                        d.lbt.clear(i);
                    }
                    let st = d.lbs.get_mut(&lb_id).expect("LB exists");
                    for k in &keys {
                        st.vip_index.remove(k);
                        st.spec.vips.remove(k);
                    }
                }),
            )),
            Txn::default(),
        )
    }

    /// Step 3: place one VIP of an existing LB: cuckoo moves (each written to its new place before its old place
    /// is reused), then the entry, which publishes the LB under this VIP.
    fn insert_vip(&mut self, lb_id: u32, key: LbKey) -> Result<(usize, usize), DriverError> {
        let st = &self.lbs[&lb_id];
        let e = st.entry(&key, LbSet::default());
        let p: Placement = self.lbt.plan_insert(&key).ok_or_else(|| DriverError::TableFull {
            table: "lb",
            detail: format!(
                "no room for VIP {} in domain {:#x} ({} of {} entries used)",
                key.vip,
                key.domain,
                self.lbt.used(),
                self.lbt.capacity()
            ),
        })?;
        let mut cmds = Vec::with_capacity(p.moves.len() + 1);
        for &(from, to) in &p.moves {
            let moved = self.lbt.get(from).expect("move source occupied");
            cmds.push(Cmd::Write {
                table: TableId::Lb,
                index: to,
                data: moved.emit().to_vec(),
            });
        }
        cmds.push(Cmd::Write {
            table: TableId::Lb,
            index: p.index,
            data: e.emit().to_vec(),
        });
        let moves = p.moves.len();
        let n = self.run_step(
            Ok((
                cmds,
                Box::new(move |d: &mut Device| {
                    for &(from, to) in &p.moves {
                        let moved = *d.lbt.get(from).expect("move source occupied");
                        if let Some(s) = d.lbs.get_mut(&moved.lb_id) {
                            s.vip_index.insert(moved.key(), to);
                        }
                    }
                    d.lbt.apply(&p, e);
                    let st = d.lbs.get_mut(&lb_id).expect("LB exists");
                    st.vip_index.insert(key, p.index);
                    st.spec.vips.insert(key);
                }),
            )),
            Txn::default(),
        )?;
        Ok((n, moves))
    }

    /// Delete an LB: invalidate its entries first, then free its memory (§8.4).
    pub fn remove(&mut self, lb_id: u32) -> Result<(), DriverError> {
        self.remove_now(lb_id)?;
        self.owe(|o| {
            o.specs.remove(&lb_id);
        });
        Ok(())
    }

    fn remove_now(&mut self, lb_id: u32) -> Result<(), DriverError> {
        let Some(st) = self.lbs.get(&lb_id).cloned() else {
            return Ok(());
        };
        let mut cmds: Vec<Cmd> = st
            .vip_index
            .values()
            .map(|&i| Cmd::WriteWord {
                table: TableId::Lb,
                index: i,
                word: CTRL_WORD,
                value: 0,
            })
            .collect();
        // Drain (§8.5) before the target entries are invalidated and the memory is reused.
        cmds.push(Cmd::Fence);
        for &i in st.target_index.values() {
            cmds.push(Cmd::Fill {
                table: TableId::Target,
                index: i,
                count: 1,
                value: 0,
            });
        }
        // Its pinned flows go too (v1.2, docs/hw-spec.md §11.5); a new epoch covers any the flush missed.
        if self.caps().has(FEATURE_FLOW_TABLE) {
            cmds.push(Cmd::FlowFlush(FlushSelector::Lb(lb_id)));
        }
        if let Err(e) = self.submit(&cmds) {
            self.after_failed_submit(&e)?;
            return Err(e);
        }
        for &i in st.vip_index.values() {
            self.lbt.clear(i);
        }
        self.free_block(TableId::Range, st.range);
        if let Some((b, _)) = st.array {
            self.free_block(TableId::Bucket, b);
        }
        for &i in st.target_index.values() {
            self.free_block(TableId::Target, Block { start: i, len: 1 });
        }
        for (t, b) in st.stale {
            self.free_block(t, b);
        }
        self.lbs.remove(&lb_id);
        Ok(())
    }

    /// Compact the range table without dropping a packet: allow-lists are slid down, in address order, to the end
    /// of the previous one. Each move writes the list into its new block and publishes it with the usual commit-word
    /// flip (§8.2) before the old block is freed; when old and new places overlap, the list first goes to a
    /// temporary block elsewhere. Afterwards all free range memory is one block at the top. Returns the number of
    /// moves made.
    pub fn defragment_ranges(&mut self) -> Result<usize, DriverError> {
        let mut order: Vec<(u32, u32)> = self.lbs.values().map(|s| (s.range.start, s.spec.lb_id)).collect();
        order.sort();
        let mut moves = 0;
        let mut cursor = 0u32;
        for (start, lb_id) in order {
            let len = self.lbs[&lb_id].range.len;
            if len == 0 || start == cursor {
                cursor += len;
                continue;
            }
            let target = Block { start: cursor, len };
            if cursor + len > start {
                // Overlap with its own block: park it elsewhere first.
                let tmp = self.ranges.alloc(len, 1).ok_or_else(|| DriverError::TableFull {
                    table: "range",
                    detail: format!("no free block of {len} entries to stage a move"),
                })?;
                self.ranges.free(tmp);
                self.relocate(lb_id, tmp)?;
                moves += 1;
            }
            self.relocate(lb_id, target)?;
            moves += 1;
            cursor += len;
        }
        Ok(moves)
    }

    fn relocate(&mut self, lb_id: u32, to: Block) -> Result<(), DriverError> {
        let spec = self.lbs[&lb_id].spec.clone();
        self.lbs.get_mut(&lb_id).expect("programmed LB").relocate_to = Some(to);
        let r = self.apply(&spec);
        if let Some(st) = self.lbs.get_mut(&lb_id) {
            st.relocate_to = None;
        }
        r.map(|_| ())
    }

    /// Rewrites every adopted bucket array that is not this driver's array for its targets (another size or
    /// scheme: a device programmed before issue 13 or by another version), hitlessly as a target change would
    /// (docs/hw-spec.md §8.3), so that this host serves the array every other host computes. Arrays already checked
    /// cost nothing; the check computes each adopted array once. Returns the LBs rewritten.
    pub fn rewrite_foreign_arrays(&mut self) -> Result<Vec<u32>, DriverError> {
        let unchecked: Vec<LbSpec> = self
            .lbs
            .values()
            .filter(|s| !s.array_checked)
            .map(|s| s.spec.clone())
            .collect();
        let mut rewritten = Vec::new();
        for spec in unchecked {
            if self.apply(&spec)?.commands > 0 {
                rewritten.push(spec.lb_id);
            }
        }
        Ok(rewritten)
    }

    /// What the driver believes is programmed (from its state; [`Device::read_state`] reads the device).
    pub fn programmed(&self) -> impl Iterator<Item = &LbSpec> {
        self.lbs.values().map(|s| &s.spec)
    }

    /// Driver state of one LB.
    pub fn lb_state(&self, lb_id: u32) -> Option<&LbState> {
        self.lbs.get(&lb_id)
    }
}
