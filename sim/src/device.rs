//! The device: BAR0 register file, table memory, counters (docs/hw-spec.md §3–§5).
//!
//! The register file is a [`Region`] shared with the driver. The device reacts to it in [`Device::poll`]: a new
//! mailbox doorbell, a new ring tail, a reset request. In-process, the driver backend calls `poll` after its writes;
//! as its own process (`ironlb-sim serve`), the model polls in a loop. Either way the device sees only what a real
//! device would: register writes and host memory reached by IOVA.

use crate::config::DeviceConfig;
use crate::mem::{HostMemory, Region};
use crate::tables::TableMemory;
use ironlb_hw::entry::PortCfg;
use ironlb_hw::regs::{self, *};
use ironlb_hw::DropReason;

pub(crate) mod commands;
#[cfg(any(test, feature = "testing"))]
mod direct;
pub(crate) mod flow;

pub use commands::CommandCounts;

/// Ring state the device keeps internally (not visible in registers except HEAD/STATUS).
#[derive(Debug, Default, Clone)]
pub(crate) struct RingState {
    /// Consumer index (free-running).
    pub head: u32,
    /// Enable bit as last seen, to detect 0 -> 1 transitions.
    pub enabled: bool,
    /// Stopped on error until re-enabled.
    pub stopped: bool,
    /// Completion-record write sequence.
    pub cpl_seq: u32,
}

/// The software model of one ironlb device.
#[derive(Debug)]
pub struct Device {
    cfg: DeviceConfig,
    bar: Region,
    host: HostMemory,
    pub(crate) tables: TableMemory,
    drops: [u64; DropReason::COUNT],
    pub(crate) mb_done: u32,
    pub(crate) ring: RingState,
    /// Commands executed (model statistics, not device state: kept across resets).
    pub(crate) counts: CommandCounts,
    /// The GENERATION register's value (v1.1): changes on every reset.
    generation: u32,
    /// The pipelined mode (packets in flight between stages), `None` for the atomic model.
    pub(crate) inflight: Option<Box<crate::pipeline::inflight::InFlight>>,
    /// Flow-table clock, counters and sweep position (v1.2).
    pub(crate) flow: flow::FlowState,
}

/// A first GENERATION value that differs between model processes (a restarted `ironlb-sim serve` must not come back
/// with the generation its predecessor had): derived from the clock and the process id.
fn first_generation() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = (t ^ u64::from(std::process::id()) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    next_generation((mixed >> 32) as u32)
}

/// The generation after `g`: `g + 1`, skipping 0 and 0xFFFF_FFFF (never valid, docs/hw-spec.md §3.4).
pub(crate) fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 | u32::MAX => 1,
        n => n,
    }
}

impl Device {
    /// A device with anonymous BAR and host memory (the in-process model).
    pub fn new(cfg: DeviceConfig) -> std::io::Result<Device> {
        let bar = Region::anon(BAR0_SIZE)?;
        let host = HostMemory {
            region: Region::anon(cfg.host_mem_len)?,
            base: cfg.host_iova_base,
        };
        Ok(Device::with_regions(cfg, bar, host))
    }

    /// A device over given regions (shared-memory files when the model is its own process). Registers are
    /// initialised as after reset; host memory is left as it is.
    pub fn with_regions(cfg: DeviceConfig, bar: Region, host: HostMemory) -> Device {
        assert!(
            bar.len() >= BAR0_SIZE,
            "BAR region must hold {BAR0_SIZE:#x} bytes"
        );
        let tables = TableMemory::new(&cfg);
        let mut d = Device {
            cfg,
            bar,
            host,
            tables,
            drops: [0; DropReason::COUNT],
            mb_done: 0,
            ring: RingState::default(),
            counts: CommandCounts::default(),
            generation: first_generation(),
            inflight: None,
            flow: flow::FlowState::default(),
        };
        d.reset_to(d.generation);
        d
    }

    /// Reset (CONTROL.RESET or a function level reset, docs/hw-spec.md §3.4): clear tables, counters, ports,
    /// mailbox and ring; drop the packets in flight; load the capability registers and a new GENERATION; leave the
    /// pipeline disabled.
    pub fn reset(&mut self) {
        self.reset_to(next_generation(self.generation));
    }

    /// The current GENERATION value (also in the register on a v1.1 part).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    fn reset_to(&mut self, generation: u32) {
        self.generation = generation;
        if let Some(f) = self.inflight.as_mut() {
            f.flush_on_reset();
        }
        for off in (0..0x1000u32).step_by(4) {
            self.bar.write32(off as usize, 0);
        }
        // GENERATION exists from contract v1.1 (FEATURE_GENERATION); a v1.0 part reads 0 there.
        let gen_reg = if self.cfg.caps.has(FEATURE_GENERATION) {
            generation
        } else {
            0
        };
        let other = [
            (GENERATION, gen_reg),
            (UNDERLAY_MTU, DEFAULT_UNDERLAY_MTU),
            (UNDERLAY_HOP_LIMIT, DEFAULT_HOP_LIMIT as u32),
            (STATUS, STATUS_READY),
        ];
        for (off, v) in self.cfg.caps.registers().into_iter().chain(other) {
            self.bar.write32(off as usize, v);
        }
        self.tables = TableMemory::new(&self.cfg);
        self.drops = [0; DropReason::COUNT];
        self.mb_done = 0;
        self.ring = RingState::default();
        self.reset_flow_registers();
    }

    /// The configuration the device was built with.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// The BAR0 register file.
    pub fn bar(&self) -> &Region {
        &self.bar
    }

    /// Host memory as reached by DMA.
    pub fn host(&self) -> &HostMemory {
        &self.host
    }

    /// Table memory (read-only view for the pipeline, dumps and tests).
    pub fn tables(&self) -> &TableMemory {
        &self.tables
    }

    /// Read a register (0 outside the BAR).
    #[inline]
    pub fn reg(&self, offset: u32) -> u32 {
        self.bar.read32(offset as usize).unwrap_or(0)
    }

    /// Write a register as the device (status, counters).
    #[inline]
    pub(crate) fn set_reg(&self, offset: u32, value: u32) {
        self.bar.write32(offset as usize, value);
    }

    /// CONTROL.ENABLE.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.reg(CONTROL) & CONTROL_ENABLE != 0
    }

    /// Configuration of `port`, `None` outside CAP_PORTS or when the register holds an undefined value.
    #[inline]
    pub fn port_cfg(&self, port: u32) -> Option<PortCfg> {
        if port >= self.cfg.caps.ports {
            return None;
        }
        PortCfg::from_raw(self.reg(PORT_CFG + 4 * port)).ok()
    }

    /// UNDERLAY_SRC as 16 bytes in network order.
    pub fn underlay_src(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        self.bar.read_bytes(UNDERLAY_SRC as usize, &mut a);
        a
    }

    /// UNDERLAY_MTU.
    #[inline]
    pub fn underlay_mtu(&self) -> u32 {
        self.reg(UNDERLAY_MTU)
    }

    /// UNDERLAY_HOP_LIMIT (bits 7:0).
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.reg(UNDERLAY_HOP_LIMIT) as u8
    }

    /// Count a dropped packet (internal counter mirrored into the DROP_COUNTERS registers).
    #[inline]
    pub fn count_drop(&mut self, reason: DropReason) {
        let i = reason.index();
        self.drops[i] = self.drops[i].wrapping_add(1);
        let off = regs::DROP_COUNTERS + 8 * i as u32;
        self.set_reg(off, self.drops[i] as u32);
        self.set_reg(off + 4, (self.drops[i] >> 32) as u32);
    }

    /// Drop counters by reason.
    pub fn drop_counters(&self) -> [u64; DropReason::COUNT] {
        self.drops
    }

    /// Set a drop counter (tests: start a counter just below a 2^32 boundary). Not a device operation.
    pub fn preset_drop_counter(&mut self, reason: DropReason, value: u64) {
        let i = reason.index();
        self.drops[i] = value;
        let off = regs::DROP_COUNTERS + 8 * i as u32;
        self.set_reg(off, value as u32);
        self.set_reg(off + 4, (value >> 32) as u32);
    }

    /// DROP_SNAPSHOT (v1.1): on a new sequence number, copy every drop counter as of this instant into
    /// DROP_SNAPSHOT_DATA, then publish the number in DROP_SNAPSHOT_DONE.
    fn poll_drop_snapshot(&mut self) -> bool {
        if self.cfg.is_v1_0() {
            return false;
        }
        let want = self.reg(DROP_SNAPSHOT);
        if want == self.reg(DROP_SNAPSHOT_DONE) {
            return false;
        }
        for (i, v) in self.drops.iter().enumerate() {
            let off = DROP_SNAPSHOT_DATA + 8 * i as u32;
            self.set_reg(off, *v as u32);
            self.set_reg(off + 4, (*v >> 32) as u32);
        }
        self.snapshot_flow_counters();
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.set_reg(DROP_SNAPSHOT_DONE, want);
        true
    }

    /// Clear drop counters (DROP_CLEAR).
    pub(crate) fn clear_drops(&mut self) {
        self.drops = [0; DropReason::COUNT];
        for i in 0..32u32 {
            self.set_reg(regs::DROP_COUNTERS + 8 * i, 0);
            self.set_reg(regs::DROP_COUNTERS + 8 * i + 4, 0);
        }
    }

    /// React to register writes: reset requests, drop-counter clears, the mailbox doorbell, the ring tail.
    /// Returns true when any command was executed. Cheap when there is nothing to do.
    pub fn poll(&mut self) -> bool {
        let mut worked = false;
        if self.reg(CONTROL) & CONTROL_RESET != 0 {
            self.reset();
            worked = true;
        }
        if self.reg(DROP_CLEAR) != 0 {
            self.clear_drops();
            self.set_reg(DROP_CLEAR, 0);
            worked = true;
        }
        worked |= self.poll_drop_snapshot();
        worked |= commands::poll_mailbox(self);
        worked |= commands::poll_ring(self);
        worked
    }
}
