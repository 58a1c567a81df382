//! `inproc` backend: the software model in this process (tests, replay, the embedded default).
//!
//! BAR and host memory are the model's own anonymous mappings; the driver reaches them through the same volatile
//! [`MappedWindow`] as any other backend. After every register write, and while the driver waits, the backend
//! lets the model react (`Device::poll`), which is what the model's own loop does in `ironlb-sim serve`.
#![allow(unsafe_code)]

use crate::access::{AccessCounts, CountedBar, DeviceAccess};
use crate::dma::DmaRegion;
use crate::error::AccessError;
use crate::window::MappedWindow;
use ironlb_sim::{Device as Model, DeviceConfig};
use std::sync::{Arc, Mutex};

/// The model shared between the driver and anything else in the process that sends packets through it.
pub type SharedModel = Arc<Mutex<Model>>;

/// Driver access to an in-process model.
pub struct InprocBackend {
    model: SharedModel,
    bar: CountedBar,
    host: ironlb_sim::Region,
    host_base: u64,
    next_dma: usize,
}

impl InprocBackend {
    /// Create a model with `cfg` and attach to it.
    pub fn new(cfg: DeviceConfig) -> Result<Self, AccessError> {
        let model = Model::new(cfg).map_err(|source| AccessError::Io {
            what: "create in-process model".into(),
            source,
        })?;
        Ok(Self::attach(Arc::new(Mutex::new(model))))
    }

    /// Attach to an existing model (e.g. to simulate a driver restart against the same device).
    pub fn attach(model: SharedModel) -> Self {
        let (bar_region, host, host_base) = {
            let m = model.lock().expect("model lock");
            (m.bar().clone(), m.host().region.clone(), m.host().base)
        };
        let bar_len = bar_region.len();
        let bar_ptr = bar_region.raw_ptr();
        // SAFETY: the region is a live mapping of `bar_len` bytes kept alive by the clone moved into the owner box;
        // the driver only touches it through MappedWindow's volatile accessors.
        let bar = unsafe { MappedWindow::new(bar_ptr, bar_len, Box::new(bar_region)) };
        InprocBackend {
            model,
            bar: CountedBar::new(bar),
            host,
            host_base,
            next_dma: 0,
        }
    }

    /// The shared model (for packet injection in tests and replay).
    pub fn model(&self) -> SharedModel {
        self.model.clone()
    }

    fn poll(&self) {
        self.model.lock().expect("model lock").poll();
    }
}

impl DeviceAccess for InprocBackend {
    fn bar_len(&self) -> usize {
        self.bar.len()
    }
    fn read32(&mut self, offset: u32) -> u32 {
        self.bar.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) {
        self.bar.write32(offset, value);
        self.poll();
    }
    fn write_block(&mut self, offset: u32, words: &[u32]) {
        for (i, w) in words.iter().enumerate() {
            self.bar.write32(offset + 4 * i as u32, *w);
        }
        self.poll();
    }
    fn alloc_dma(&mut self, len: usize) -> Result<DmaRegion, AccessError> {
        alloc_from(&self.host, self.host_base, &mut self.next_dma, len)
    }
    fn counts(&self) -> AccessCounts {
        self.bar.counts()
    }
    fn wait_hint(&mut self) {
        self.poll();
    }
}

/// Carve a page-aligned DMA buffer out of a host-memory region whose byte 0 has IOVA `base` (bump allocation; the
/// model's host memory is the whole IOMMU window, so there is nothing to map).
pub(crate) fn alloc_from(
    host: &ironlb_sim::Region,
    base: u64,
    next: &mut usize,
    len: usize,
) -> Result<DmaRegion, AccessError> {
    let start = next.next_multiple_of(4096);
    let end = start
        .checked_add(len)
        .filter(|e| *e <= host.len())
        .ok_or_else(|| AccessError::DmaAlloc {
            len,
            reason: format!(
                "host memory window of {} bytes exhausted ({} in use)",
                host.len(),
                *next
            ),
        })?;
    *next = end;
    // SAFETY: `start + len <= host.len()`, so the pointer and length stay inside the live mapping, which the cloned
    // region in the owner box keeps alive; access is volatile only.
    let window = unsafe {
        let ptr = std::ptr::NonNull::new_unchecked(host.raw_ptr().as_ptr().add(start));
        MappedWindow::new(ptr, len, Box::new(host.clone()))
    };
    Ok(DmaRegion::new(window, base + start as u64))
}
