//! Host memory the device reaches by DMA: a mapped window and the IOVA the device uses for it.

use crate::window::MappedWindow;

/// A DMA buffer: a mapped window plus the IOVA the device uses for its first byte.
#[derive(Debug)]
pub struct DmaRegion {
    window: MappedWindow,
    iova: u64,
}

impl DmaRegion {
    /// Pair a window with its IOVA.
    pub fn new(window: MappedWindow, iova: u64) -> Self {
        DmaRegion { window, iova }
    }
    /// The device-side address of byte 0.
    pub fn iova(&self) -> u64 {
        self.iova
    }
    /// The mapped memory.
    pub fn window(&self) -> &MappedWindow {
        &self.window
    }
}
