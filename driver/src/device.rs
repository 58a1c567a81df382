//! The device API: one type holding all table logic above the [`DeviceAccess`] trait.

use crate::access::{AccessCounts, DeviceAccess};
use crate::alloc::BlockAllocator;
use crate::cmd::{Cmd, Mailbox, Ring};
use crate::error::DriverError;
use crate::state::{Intent, LbState};
use crate::tables::lb::LbTable;
use ironlb_hw::caps::Caps;
use ironlb_hw::entry::PortCfg;
use ironlb_hw::regs::*;
use ironlb_hw::DropReason;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// log2 of the command ring the driver sets up (capped by the device).
pub const RING_LOG2: u8 = 12;

/// Entries of `table` one mailbox WRITE or READ moves at most (`MB_DATA` holds 16 words, docs/hw-spec.md §4.1).
/// A live 64-bit counter register pair read high, low, high, retried while the two high reads differ (docs/hw-spec.md
/// §3.2): the counter only grows and cannot advance 2^32 between two reads, so equal high words bracket a low word
/// of the same epoch.
pub(crate) fn read_live_counter(acc: &mut dyn DeviceAccess, off: u32) -> u64 {
    let mut hi = acc.read32(off + 4);
    for _ in 0..3 {
        let lo = acc.read32(off);
        let hi2 = acc.read32(off + 4);
        if hi2 == hi {
            return u64::from(hi) << 32 | u64::from(lo);
        }
        hi = hi2;
    }
    // Still moving across carries: a carry just happened, so (new high, 0) is a value the counter had.
    u64::from(hi) << 32
}

fn mailbox_entries(table: TableId) -> usize {
    (MB_DATA_WORDS / table.entry_words()).max(1)
}

/// An opened device.
pub struct Device {
    pub(crate) acc: Box<dyn DeviceAccess>,
    pub(crate) caps: Caps,
    pub(crate) mb: Mailbox,
    /// The DMA command ring, `None` when the device has none (`CAP_RING_MAX_LOG2 = 0`, docs/hw-spec.md §4.2):
    /// then every command and every read goes through the mailbox.
    ring: Option<Ring>,
    pub(crate) lbt: LbTable,
    pub(crate) ranges: BlockAllocator,
    pub(crate) buckets: BlockAllocator,
    pub(crate) targets: BlockAllocator,
    pub(crate) lbs: BTreeMap<u32, LbState>,
    /// Mailbox commands and ring batches issued.
    stats: CommandStats,
    /// A change failed because the device did not answer: driver state may not match the device until
    /// [`Device::recover_commands`] re-adopts it.
    pub(crate) stale: bool,
    /// The flow epoch the next created LB gets (v1.2, docs/hw-spec.md §11.2): advanced on every create, so an LB
    /// re-created on a reused slot or LB id never shares its predecessor's epoch.
    pub(crate) next_flow_epoch: u8,
    /// Test-only: drop FENCE commands (shows what the drain rule of docs/hw-spec.md §8.5 prevents).
    pub(crate) skip_fences: bool,
    /// What this driver configured outside the tables, and the device generation it did it in (reset detection
    /// and restore, docs/hw-spec.md §3.4).
    pub(crate) intent: Intent,
    /// A restore that did not finish (the device reset again, or stopped answering, while it re-programmed): what
    /// the driver still owes the device. The driver state then holds only the part that was re-programmed; this
    /// holds all of it, and [`Device::check_reset`] reports a reset until a restore finishes.
    pub(crate) owed: Option<crate::health::Owed>,
}

/// How commands reached the device.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CommandStats {
    /// Mailbox commands executed (a large WRITE or READ on a device without a ring counts once per chunk).
    pub mailbox: u64,
    /// Ring doorbells rung (one per batch, more when a batch outgrows the ring or its payload arena).
    pub ring_batches: u64,
    /// Commands sent through the ring.
    pub ring_commands: u64,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("caps", &self.caps)
            .field("lbs", &self.lbs.len())
            .finish()
    }
}

impl Device {
    /// Open a device: check ID and version, read capabilities, set up the command ring (when the device has one:
    /// `CAP_RING_MAX_LOG2 > 0`), and adopt whatever the tables already hold (no flush: docs/hw-spec.md §8,
    /// docs/architecture.md "adoption").
    pub fn open(mut acc: Box<dyn DeviceAccess>) -> Result<Device, DriverError> {
        // Every backend's BAR must hold the whole register file: a shorter one would fault (or panic in the
        // bounds-checked window) at the first register past its end.
        if acc.bar_len() < BAR0_SIZE {
            return Err(crate::error::AccessError::BarTooSmall {
                what: "the device's register BAR".into(),
                len: acc.bar_len(),
                need: BAR0_SIZE,
            }
            .into());
        }
        let caps = crate::caps::read(acc.as_mut())?;
        let mb = Mailbox::new(acc.as_mut());
        let ring = if caps.ring_max_log2 == 0 {
            tracing::debug!(
                "device has no DMA command ring (CAP_RING_MAX_LOG2 = 0): all commands use the mailbox"
            );
            None
        } else {
            Some(Ring::new(acc.as_mut(), RING_LOG2.min(caps.ring_max_log2))?)
        };
        let mut d = Device {
            lbt: LbTable::new(caps.lb_buckets),
            ranges: BlockAllocator::new(caps.ranges),
            buckets: BlockAllocator::new(caps.bucket_slots),
            targets: BlockAllocator::new(caps.targets),
            lbs: BTreeMap::new(),
            acc,
            caps,
            mb,
            ring,
            stats: CommandStats::default(),
            stale: false,
            next_flow_epoch: 1,
            skip_fences: false,
            intent: Intent::default(),
            owed: None,
        };
        d.adopt()?;
        d.intent.adopt_registers(d.acc.as_mut(), &d.caps);
        Ok(d)
    }

    /// Capabilities read at open.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// Register accesses so far (for benches: MMIO per operation).
    pub fn access_counts(&self) -> AccessCounts {
        self.acc.counts()
    }

    /// Free blocks of the range table (1 when it is not fragmented).
    pub fn range_free_blocks(&self) -> usize {
        self.ranges.free_blocks()
    }

    /// Command path statistics.
    pub fn command_stats(&self) -> CommandStats {
        CommandStats {
            ring_batches: self.ring.as_ref().map_or(0, Ring::doorbells),
            ..self.stats
        }
    }

    /// True when the device has a DMA command ring (`CAP_RING_MAX_LOG2 > 0`).
    pub fn has_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Execute commands in order: a single small command through the mailbox, anything else through the ring
    /// (one doorbell per batch). On a device without a ring, everything goes through the mailbox
    /// ([`submit_mailbox`](Self::submit_mailbox)): the commands still execute one after the other in the given
    /// order, and a large WRITE is split into mailbox-sized WRITEs in index order, which is exactly the per-entry,
    /// in-index-order atomicity the contract promises for a multi-entry command (docs/hw-spec.md §4), so the hitless
    /// update sequences of §8 hold on either path.
    ///
    /// A [`Cmd::Fence`] goes to the device as FENCE when it has `FEATURE_FENCE` (contract v1.1). A v1.0 device has
    /// no FENCE: the batch is split at each fence and the driver waits [`crate::cmd::V1_0_DRAIN_WAIT`] between the
    /// parts (docs/hw-spec.md §9, the documented fallback).
    pub(crate) fn submit(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        if self.skip_fences && cmds.contains(&Cmd::Fence) {
            let kept: Vec<Cmd> = cmds.iter().filter(|c| **c != Cmd::Fence).cloned().collect();
            return self.submit_unfenced(&kept);
        }
        if !self.caps.has(FEATURE_FENCE) && cmds.contains(&Cmd::Fence) {
            for (i, part) in cmds.split(|c| *c == Cmd::Fence).enumerate() {
                if i > 0 {
                    std::thread::sleep(crate::cmd::V1_0_DRAIN_WAIT);
                }
                self.submit_unfenced(part)?;
            }
            return Ok(());
        }
        self.submit_unfenced(cmds)
    }

    fn submit_unfenced(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        match (cmds, self.ring.is_some()) {
            ([], _) => Ok(()),
            (_, false) => self.submit_mailbox(cmds),
            ([c], true) if !matches!(c, Cmd::Write { data, .. } if data.len() > 4 * MB_DATA_WORDS) => {
                self.stats.mailbox += 1;
                self.mb.run(self.acc.as_mut(), c)
            }
            (_, true) => self.submit_ring(cmds),
        }
    }

    /// Execute commands through the DMA ring only, whatever their number (bulk loads and benches). Fails on a
    /// device without a ring.
    pub(crate) fn submit_ring(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let ring = self.ring.as_mut().ok_or_else(|| {
            DriverError::Invalid(
                "submit_ring: the device has no DMA command ring (CAP_RING_MAX_LOG2 = 0, docs/hw-spec.md §4.2); \
                 use submit or submit_mailbox"
                    .into(),
            )
        })?;
        self.stats.ring_commands += cmds.len() as u64;
        ring.run(self.acc.as_mut(), cmds)
    }

    /// Execute commands one by one, in order, through the mailbox (the single-update path, and every path on a
    /// device without a ring; benches compare it with the ring). A WRITE larger than `MB_DATA` is split into
    /// WRITEs of at most 16 words, in index order.
    pub(crate) fn submit_mailbox(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        for c in cmds {
            match c {
                Cmd::Write { table, index, data } if data.len() > 4 * MB_DATA_WORDS => {
                    let per = mailbox_entries(*table);
                    let eb = table.entry_bytes();
                    for (k, chunk) in data.chunks(per * eb).enumerate() {
                        let part = Cmd::Write {
                            table: *table,
                            index: index + (k * per) as u32,
                            data: chunk.to_vec(),
                        };
                        self.stats.mailbox += 1;
                        self.mb.run(self.acc.as_mut(), &part)?;
                    }
                }
                _ => {
                    self.stats.mailbox += 1;
                    self.mb.run(self.acc.as_mut(), c)?;
                }
            }
        }
        Ok(())
    }

    /// Read `count` entries of a table from the device: mailbox for up to 64 bytes, ring DMA otherwise; on a
    /// device without a ring, mailbox READs of at most 16 words each, in index order.
    pub fn read_entries(&mut self, table: TableId, index: u32, count: u32) -> Result<Vec<u8>, DriverError> {
        if count as usize * table.entry_words() <= MB_DATA_WORDS {
            self.stats.mailbox += 1;
            return self.mb.read(self.acc.as_mut(), table, index, count);
        }
        if let Some(ring) = self.ring.as_mut() {
            return ring.read(self.acc.as_mut(), table, index, count);
        }
        let per = mailbox_entries(table) as u32;
        let mut out = Vec::with_capacity(count as usize * table.entry_bytes());
        let mut done = 0u32;
        while done < count {
            let n = per.min(count - done);
            self.stats.mailbox += 1;
            out.extend(self.mb.read(self.acc.as_mut(), table, index + done, n)?);
            done += n;
        }
        Ok(out)
    }

    /// Configure a port (docs/hw-spec.md §3.3).
    pub fn set_port(&mut self, port: u32, cfg: PortCfg) -> Result<(), DriverError> {
        if port >= self.caps.ports {
            return Err(DriverError::Invalid(format!(
                "port {port} >= CAP_PORTS {}",
                self.caps.ports
            )));
        }
        self.acc.write32(PORT_CFG + 4 * port, cfg.to_raw());
        self.intent.ports.insert(port, cfg);
        self.owe(|o| {
            o.intent.ports.insert(port, cfg);
        });
        Ok(())
    }

    /// Read a port's configuration.
    pub fn port(&mut self, port: u32) -> Result<PortCfg, DriverError> {
        let raw = self.acc.read32(PORT_CFG + 4 * port);
        PortCfg::from_raw(raw).map_err(|source| DriverError::Corrupt {
            table: "port_cfg",
            index: port,
            source,
        })
    }

    /// Set the underlay source address, MTU and hop limit.
    pub fn set_underlay(&mut self, src: Ipv6Addr, mtu: u32, hop_limit: u8) {
        let o = src.octets();
        for i in 0..4 {
            let w = u32::from_le_bytes(o[4 * i..4 * i + 4].try_into().expect("4 bytes"));
            self.acc.write32(UNDERLAY_SRC + 4 * i as u32, w);
        }
        self.acc.write32(UNDERLAY_MTU, mtu);
        self.acc.write32(UNDERLAY_HOP_LIMIT, hop_limit as u32);
        self.intent.underlay = Some((src, mtu, hop_limit));
        self.owe(|o| o.intent.underlay = Some((src, mtu, hop_limit)));
    }

    /// Underlay source address as configured.
    pub fn underlay_src(&mut self) -> Ipv6Addr {
        let mut o = [0u8; 16];
        for i in 0..4 {
            o[4 * i..4 * i + 4].copy_from_slice(&self.acc.read32(UNDERLAY_SRC + 4 * i as u32).to_le_bytes());
        }
        Ipv6Addr::from(o)
    }

    /// Underlay source address, MTU and hop limit as configured (docs/hw-spec.md §3.2).
    pub fn underlay(&mut self) -> (Ipv6Addr, u32, u8) {
        let src = self.underlay_src();
        let mtu = self.acc.read32(UNDERLAY_MTU);
        let hop = self.acc.read32(UNDERLAY_HOP_LIMIT) as u8;
        (src, mtu, hop)
    }

    /// CONTROL.ENABLE: whether the pipeline forwards.
    pub fn enabled(&mut self) -> bool {
        self.acc.read32(CONTROL) & CONTROL_ENABLE != 0
    }

    /// Enable or disable the pipeline.
    pub fn set_enabled(&mut self, on: bool) {
        self.intent.enabled = on;
        self.owe(|o| o.intent.enabled = on);
        let c = self.acc.read32(CONTROL) & !CONTROL_RESET;
        self.acc.write32(
            CONTROL,
            if on {
                c | CONTROL_ENABLE
            } else {
                c & !CONTROL_ENABLE
            },
        );
    }

    /// Drop counters by reason (docs/hw-spec.md §3.2), read so that they cannot tear: through the device's
    /// snapshot (`DROP_SNAPSHOT`, contract v1.1), or on a v1.0 device (or a snapshot that does not complete) by
    /// high-low-high reads of the live registers.
    pub fn drop_counters(&mut self) -> BTreeMap<DropReason, u64> {
        let n = (self.caps.drop_reasons as usize).min(DropReason::COUNT);
        let base = if self.caps.has(FEATURE_DROP_SNAPSHOT) {
            match self.drop_snapshot() {
                Ok(()) => Some(DROP_SNAPSHOT_DATA),
                Err(e) => {
                    tracing::warn!(error = %e, "drop-counter snapshot did not complete; reading the live registers");
                    None
                }
            }
        } else {
            None
        };
        (0..n)
            .filter_map(|i| {
                let v = match base {
                    Some(b) => self.acc.read64(b + 8 * i as u32),
                    None => read_live_counter(self.acc.as_mut(), DROP_COUNTERS + 8 * i as u32),
                };
                DropReason::from_index(i).map(|r| (r, v))
            })
            .collect()
    }

    /// After a command timed out and the device answers again: re-reads the mailbox's sequence number and re-enables
    /// the command ring (its head restarts at 0), so commands the device never completed cannot desynchronise the
    /// next ones; then re-adopts the tables if a change was cut off by the timeout. Tables are kept.
    pub fn recover_commands(&mut self) -> Result<(), DriverError> {
        self.mb = Mailbox::new(self.acc.as_mut());
        if let Some(ring) = self.ring.as_mut() {
            ring.enable(self.acc.as_mut())?;
        }
        if self.stale {
            self.adopt()?;
            self.stale = false;
        }
        Ok(())
    }

    /// Request a drop-counter snapshot and wait for it (v1.1).
    pub(crate) fn drop_snapshot(&mut self) -> Result<(), DriverError> {
        let seq = self.acc.read32(DROP_SNAPSHOT_DONE).wrapping_add(1);
        self.acc.write32(DROP_SNAPSHOT, seq);
        crate::cmd::wait_until(
            self.acc.as_mut(),
            "DROP_SNAPSHOT_DONE",
            crate::cmd::COMMAND_TIMEOUT,
            |a| a.read32(DROP_SNAPSHOT_DONE) == seq,
        )
    }

    /// Reset the device (clears all tables) and forget all driver state, a restore still owed included. Only for
    /// tests, explicit operator requests and [`Device::restore`]: a restart of the runtime adopts instead.
    pub fn reset(&mut self) -> Result<(), DriverError> {
        self.acc.write32(CONTROL, CONTROL_RESET);
        let acc = self.acc.as_mut();
        let start = std::time::Instant::now();
        while acc.read32(CONTROL) & CONTROL_RESET != 0 {
            if start.elapsed() > crate::cmd::RESET_TIMEOUT {
                return Err(DriverError::Timeout {
                    register: "CONTROL.RESET",
                    waited: start.elapsed(),
                });
            }
            acc.wait_hint();
        }
        self.mb = Mailbox::new(self.acc.as_mut());
        if let Some(ring) = self.ring.as_mut() {
            ring.enable(self.acc.as_mut())?;
        }
        self.lbt = LbTable::new(self.caps.lb_buckets);
        self.ranges = BlockAllocator::new(self.caps.ranges);
        self.buckets = BlockAllocator::new(self.caps.bucket_slots);
        self.targets = BlockAllocator::new(self.caps.targets);
        self.lbs.clear();
        self.stale = false;
        self.owed = None;
        self.intent = Intent::default();
        self.intent.adopt_registers(self.acc.as_mut(), &self.caps);
        Ok(())
    }
}
