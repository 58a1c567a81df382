//! The device API: one type holding all table logic above the [`DeviceAccess`] trait.

use crate::access::{AccessCounts, DeviceAccess};
use crate::alloc::BlockAllocator;
use crate::caps::Caps;
use crate::cmd::{Cmd, Mailbox, Ring};
use crate::error::DriverError;
use crate::program::LbState;
use crate::tables::lb::LbTable;
use ironlb_hw::entry::PortCfg;
use ironlb_hw::regs::*;
use ironlb_hw::DropReason;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// log2 of the command ring the driver sets up (capped by the device).
pub const RING_LOG2: u8 = 12;

/// An opened device.
pub struct Device {
    pub(crate) acc: Box<dyn DeviceAccess>,
    caps: Caps,
    mb: Mailbox,
    ring: Ring,
    pub(crate) lbt: LbTable,
    pub(crate) ranges: BlockAllocator,
    pub(crate) buckets: BlockAllocator,
    pub(crate) targets: BlockAllocator,
    pub(crate) lbs: BTreeMap<u32, LbState>,
    /// Mailbox commands and ring batches issued.
    stats: CommandStats,
}

/// How commands reached the device.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CommandStats {
    /// Commands sent through the mailbox.
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
    /// Open a device: check ID and version, read capabilities, set up the command ring, and adopt whatever the
    /// tables already hold (no flush: docs/hw-spec.md §8, docs/architecture.md "adoption").
    pub fn open(mut acc: Box<dyn DeviceAccess>) -> Result<Device, DriverError> {
        let caps = Caps::read(acc.as_mut())?;
        let mb = Mailbox::new(acc.as_mut());
        let ring = Ring::new(acc.as_mut(), RING_LOG2.min(caps.ring_max_log2))?;
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
        };
        d.adopt()?;
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
            ring_batches: self.ring.doorbells(),
            ..self.stats
        }
    }

    /// Execute commands in order: a single small command through the mailbox, anything else through the ring
    /// (one doorbell per batch).
    pub fn submit(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        match cmds {
            [] => Ok(()),
            [c] if !matches!(c, Cmd::Write { data, .. } if data.len() > 4 * MB_DATA_WORDS) => {
                self.stats.mailbox += 1;
                self.mb.run(self.acc.as_mut(), c)
            }
            _ => {
                self.stats.ring_commands += cmds.len() as u64;
                self.ring.run(self.acc.as_mut(), cmds)
            }
        }
    }

    /// Execute commands through the DMA ring only, whatever their number (bulk loads and benches).
    pub fn submit_ring(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        if cmds.is_empty() {
            return Ok(());
        }
        self.stats.ring_commands += cmds.len() as u64;
        self.ring.run(self.acc.as_mut(), cmds)
    }

    /// Execute commands one by one through the mailbox (single-update path; benches compare it with the ring).
    pub fn submit_mailbox(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        for c in cmds {
            self.stats.mailbox += 1;
            self.mb.run(self.acc.as_mut(), c)?;
        }
        Ok(())
    }

    /// Read `count` entries of a table from the device: mailbox for up to 64 bytes, ring DMA otherwise.
    pub fn read_entries(&mut self, table: TableId, index: u32, count: u32) -> Result<Vec<u8>, DriverError> {
        if count as usize * table.entry_words() <= MB_DATA_WORDS {
            self.stats.mailbox += 1;
            self.mb.read(self.acc.as_mut(), table, index, count)
        } else {
            self.ring.read(self.acc.as_mut(), table, index, count)
        }
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
    }

    /// Underlay source address as configured.
    pub fn underlay_src(&mut self) -> Ipv6Addr {
        let mut o = [0u8; 16];
        for i in 0..4 {
            o[4 * i..4 * i + 4].copy_from_slice(&self.acc.read32(UNDERLAY_SRC + 4 * i as u32).to_le_bytes());
        }
        Ipv6Addr::from(o)
    }

    /// Enable or disable the pipeline.
    pub fn set_enabled(&mut self, on: bool) {
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

    /// Drop counters by reason (registers; docs/hw-spec.md §3.2).
    pub fn drop_counters(&mut self) -> BTreeMap<DropReason, u64> {
        let n = (self.caps.drop_reasons as usize).min(DropReason::COUNT);
        (0..n)
            .filter_map(|i| {
                DropReason::from_index(i).map(|r| (r, self.acc.read64(DROP_COUNTERS + 8 * i as u32)))
            })
            .collect()
    }

    /// Reset the device (clears all tables) and forget all driver state. Only for tests and explicit operator
    /// requests: a restart of the runtime adopts instead.
    pub fn reset(&mut self) -> Result<(), DriverError> {
        self.acc.write32(CONTROL, CONTROL_RESET);
        let acc = self.acc.as_mut();
        let start = std::time::Instant::now();
        while acc.read32(CONTROL) & CONTROL_RESET != 0 {
            if start.elapsed() > crate::cmd::COMMAND_TIMEOUT {
                return Err(DriverError::Timeout {
                    register: "CONTROL.RESET",
                    waited: start.elapsed(),
                });
            }
            acc.wait_hint();
        }
        self.mb = Mailbox::new(self.acc.as_mut());
        self.ring.enable(self.acc.as_mut())?;
        self.lbt = LbTable::new(self.caps.lb_buckets);
        self.ranges = BlockAllocator::new(self.caps.ranges);
        self.buckets = BlockAllocator::new(self.caps.bucket_slots);
        self.targets = BlockAllocator::new(self.caps.targets);
        self.lbs.clear();
        Ok(())
    }
}
