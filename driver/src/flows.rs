//! The flow table (contract v1.2, docs/hw-spec.md §11): configuration (enable, idle timeouts), counters, bulk
//! read-back and flushes. Flushes that belong to a table change (a removed target, a deleted LB) are issued by
//! the programming code in the same batch (program.rs); these are the operator-level operations.
//!
//! On a device without the flow table (`CAP_FEATURES.FLOW_TABLE` clear, a v1.0/v1.1 part) the read-side calls
//! return `None` / an empty table, and enabling it is a typed error: the caller decides whether that is fatal.

use crate::device::Device;
use crate::error::DriverError;
use ironlb_hw::entry::flow::{FlowEntry, SIZE as FLOW_ENTRY_SIZE};
use ironlb_hw::regs::*;

/// Entries read per command when the table is read back (128 KiB of entries per DMA READ).
const READ_CHUNK: u32 = 2048;

/// The flow table's configuration: FLOW_CTRL.ENABLE and the idle timeout of each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FlowConfig {
    /// Look flows up and learn them.
    pub enabled: bool,
    /// Idle timeout per class in milliseconds, indexed by [`FlowClass`] (bits 30:0 are used).
    pub timeouts_ms: [u32; 5],
}

impl Default for FlowConfig {
    /// Enabled, with the contract's reset timeouts (TCP 300 s, closing TCP 10 s, UDP 60 s, SCTP 300 s, other 30 s).
    fn default() -> Self {
        FlowConfig {
            enabled: true,
            timeouts_ms: FlowClass::ALL.map(FlowClass::default_timeout_ms),
        }
    }
}

impl FlowConfig {
    /// The timeout of a class.
    pub fn timeout_ms(&self, c: FlowClass) -> u32 {
        self.timeouts_ms[c as usize]
    }
}

/// The flow counters (docs/hw-spec.md §11.1), read as of one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowCounters {
    /// Entries learned.
    pub learned: u64,
    /// Packets that took a pinned target.
    pub hits: u64,
    /// Entries aged out.
    pub aged: u64,
    /// Flows not pinned because their set was full.
    pub overflow: u64,
    /// Entries flushed.
    pub flushed: u64,
    /// Entries re-learned after their target was removed.
    pub relearned: u64,
}

impl FlowCounters {
    /// Valid entries now: `learned − aged − flushed` (docs/hw-spec.md §11.1).
    pub fn active(&self) -> u64 {
        self.learned.wrapping_sub(self.aged).wrapping_sub(self.flushed)
    }

    /// (name, value) pairs in register order (metrics, `ironlb stats`).
    pub fn named(&self) -> [(FlowCounter, u64); 6] {
        [
            (FlowCounter::Learned, self.learned),
            (FlowCounter::Hits, self.hits),
            (FlowCounter::Aged, self.aged),
            (FlowCounter::Overflow, self.overflow),
            (FlowCounter::Flushed, self.flushed),
            (FlowCounter::Relearned, self.relearned),
        ]
    }
}

impl Device {
    /// Whether the device has the flow table (contract v1.2).
    pub fn has_flow_table(&self) -> bool {
        self.caps().has(FEATURE_FLOW_TABLE)
    }

    fn require_flow_table(&self) -> Result<(), DriverError> {
        if self.has_flow_table() {
            Ok(())
        } else {
            Err(DriverError::NoFeature {
                feature: "flow table",
                minor: self.caps().minor,
            })
        }
    }

    /// Configure the flow table (timeouts first, then FLOW_CTRL). Remembered, so a device reset restores it.
    /// `Err(NoFeature)` on a device without one.
    pub fn set_flow_table(&mut self, cfg: &FlowConfig) -> Result<(), DriverError> {
        self.require_flow_table()?;
        for c in FlowClass::ALL {
            self.acc
                .write32(c.register(), cfg.timeout_ms(c) & FLOW_TIMEOUT_MASK);
        }
        self.acc
            .write32(FLOW_CTRL, if cfg.enabled { FLOW_CTRL_ENABLE } else { 0 });
        self.intent.flow = Some(*cfg);
        self.owe(|o| o.intent.flow = Some(*cfg));
        Ok(())
    }

    /// The flow table's configuration as the device holds it; `None` without a flow table.
    pub fn flow_table(&mut self) -> Option<FlowConfig> {
        self.has_flow_table()
            .then(|| crate::state::read_flow_config(self.acc.as_mut()))
    }

    /// FLOW_CLOCK (milliseconds); 0 without a flow table.
    pub fn flow_clock(&mut self) -> u32 {
        if self.has_flow_table() {
            self.acc.read32(FLOW_CLOCK)
        } else {
            0
        }
    }

    /// Entries of the flow table (`CAP_FLOW_ENTRIES`; 0 without one).
    pub fn flow_capacity(&mut self) -> u32 {
        if self.has_flow_table() {
            self.acc.read32(CAP_FLOW_ENTRIES)
        } else {
            0
        }
    }

    /// The flow counters as of one instant (through the drop-counter snapshot, which copies them too); `None`
    /// without a flow table. If the snapshot does not complete, the live registers are read high-low-high.
    pub fn flow_counters(&mut self) -> Option<FlowCounters> {
        if !self.has_flow_table() {
            return None;
        }
        let base = match self.drop_snapshot() {
            Ok(()) => Some(FLOW_SNAPSHOT_DATA),
            Err(e) => {
                tracing::warn!(error = %e, "counter snapshot did not complete; reading the live flow counters");
                None
            }
        };
        let mut v = [0u64; 6];
        for (i, x) in v.iter_mut().enumerate() {
            let off = 8 * i as u32;
            *x = match base {
                Some(b) => self.acc.read64(b + off),
                None => crate::device::read_live_counter(self.acc.as_mut(), FLOW_COUNTERS + off),
            };
        }
        Some(FlowCounters {
            learned: v[0],
            hits: v[1],
            aged: v[2],
            overflow: v[3],
            flushed: v[4],
            relearned: v[5],
        })
    }

    /// Read the whole flow table back (DMA READs of [`READ_CHUNK`] entries; mailbox READs on a device without a
    /// ring) and return its valid entries with their indices. Each entry is as of one instant; the table as a whole
    /// is not (docs/hw-spec.md §11.5). Empty without a flow table.
    pub fn read_flows(&mut self) -> Result<Vec<(u32, FlowEntry)>, DriverError> {
        let n = self.flow_capacity();
        let mut out = Vec::new();
        let mut first = 0;
        while first < n {
            let count = READ_CHUNK.min(n - first);
            let bytes = self.read_entries(TableId::Flow, first, count)?;
            for (k, e) in bytes.chunks_exact(FLOW_ENTRY_SIZE).enumerate() {
                let index = first + k as u32;
                let e: &[u8; FLOW_ENTRY_SIZE] = e.try_into().expect("64-byte chunk");
                let parsed = FlowEntry::parse(e).map_err(|source| DriverError::Corrupt {
                    table: "flow",
                    index,
                    source,
                })?;
                out.extend(parsed.map(|p| (index, p)));
            }
            first += count;
        }
        Ok(out)
    }

    /// FLOW_FLUSH: invalidate the entries of one LB, one target index, or all (docs/hw-spec.md §11.5).
    pub fn flush_flows(&mut self, sel: FlushSelector) -> Result<(), DriverError> {
        self.require_flow_table()?;
        self.submit(&[crate::cmd::Cmd::FlowFlush(sel)])
    }
}
