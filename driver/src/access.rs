//! The one thing that differs between backends: how BAR0 and DMA memory are reached.
//!
//! Everything above this trait (mailbox, DMA ring, table logic in [`crate::Device`]) is shared by the VFIO,
//! shared-memory-model and in-process-model backends. Register offsets are byte offsets into BAR0 as defined in
//! docs/hw-spec.md §3.

use crate::dma::DmaRegion;
use crate::error::AccessError;
use crate::window::MappedWindow;

/// Counts of register accesses, kept by every backend so benches can report MMIO reads/writes per operation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AccessCounts {
    /// 32-bit register reads.
    pub reads: u64,
    /// 32-bit register writes (a 64-bit write counts as two).
    pub writes: u64,
}

/// Mapped device access: 32/64-bit register reads and writes, block writes, DMA buffer allocation.
///
/// Reads take `&mut self` because device registers may have read side effects (tock-registers/safe-mmio rule);
/// none of the v1 contract's do, but the trait does not promise it.
pub trait DeviceAccess: Send {
    /// Size of the mapped register BAR in bytes.
    fn bar_len(&self) -> usize;
    /// Read the 32-bit register at byte `offset` (4-byte aligned, inside the BAR).
    fn read32(&mut self, offset: u32) -> u32;
    /// Write the 32-bit register at byte `offset` (4-byte aligned, inside the BAR).
    fn write32(&mut self, offset: u32, value: u32);
    /// Allocate `len` bytes of host memory the device can reach by DMA, and return it with its IOVA.
    fn alloc_dma(&mut self, len: usize) -> Result<DmaRegion, AccessError>;
    /// Access counts since the backend was opened.
    fn counts(&self) -> AccessCounts;

    /// Called by the driver while it waits for the device (between polls of a completion). Backends whose device
    /// runs elsewhere just spin; the in-process backend lets the model run here.
    fn wait_hint(&mut self) {
        std::hint::spin_loop();
    }

    /// Read a 64-bit register as two 32-bit reads, low word first (docs/hw-spec.md §3.1).
    fn read64(&mut self, offset: u32) -> u64 {
        let lo = self.read32(offset) as u64;
        let hi = self.read32(offset + 4) as u64;
        lo | (hi << 32)
    }
    /// Write a 64-bit register as two 32-bit writes, low word first (docs/hw-spec.md §3.1).
    fn write64(&mut self, offset: u32, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
    /// Write consecutive 32-bit registers starting at `offset`.
    fn write_block(&mut self, offset: u32, words: &[u32]) {
        for (i, w) in words.iter().enumerate() {
            self.write32(offset + 4 * i as u32, *w);
        }
    }
}

/// A mapped register BAR that counts the driver's 32-bit accesses (for MMIO-per-operation figures). Every backend
/// whose BAR is a mapping (vfio, sim-shm, inproc) reaches its registers through one of these.
#[derive(Debug)]
pub struct CountedBar {
    window: MappedWindow,
    counts: AccessCounts,
}

impl CountedBar {
    /// Count accesses to `window`.
    pub fn new(window: MappedWindow) -> Self {
        CountedBar {
            window,
            counts: Default::default(),
        }
    }
    /// BAR length.
    pub fn len(&self) -> usize {
        self.window.len()
    }
    /// Counted volatile read.
    pub fn read32(&mut self, offset: u32) -> u32 {
        self.counts.reads += 1;
        self.window.read32(offset as usize)
    }
    /// Counted volatile write.
    pub fn write32(&mut self, offset: u32, value: u32) {
        self.counts.writes += 1;
        self.window.write32(offset as usize, value);
    }
    /// Accesses so far.
    pub fn counts(&self) -> AccessCounts {
        self.counts
    }
}
