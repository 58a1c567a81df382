//! `sim-shm` backend: a model running as its own process (`ironlb-sim serve`), reached through its shared-memory
//! BAR file and host-memory file — the same attachment QEMU's ivshmem gives a guest.
//!
//! A model served with `--no-dma` has no host-memory file (and reports `CAP_RING_MAX_LOG2 = 0`): the backend then
//! attaches to the BAR alone and refuses DMA allocations, which the driver never asks for on a device without a
//! ring (docs/hw-spec.md §4.2).
#![allow(unsafe_code)]

use crate::access::{AccessCounts, CountedBar, DeviceAccess};
use crate::dma::DmaRegion;
use crate::error::AccessError;
use crate::inproc::alloc_from;
use crate::window::MappedWindow;
use ironlb_hw::regs::BAR0_SIZE;
use ironlb_sim::{open_private, Region};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where a served model lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmPaths {
    /// BAR file (64 KiB).
    pub bar: PathBuf,
    /// Host-memory file (absent for a model served with `--no-dma`).
    pub host: PathBuf,
    /// IOVA of the host-memory file's first byte (as given to `ironlb-sim serve --host-iova-base`).
    pub host_iova_base: u64,
}

impl ShmPaths {
    /// `PREFIX.bar` and `PREFIX.host` with the model's default IOVA base.
    pub fn from_prefix(prefix: &Path) -> ShmPaths {
        let p = prefix.as_os_str().to_owned();
        let with = |ext: &str| {
            let mut s = p.clone();
            s.push(ext);
            PathBuf::from(s)
        };
        ShmPaths {
            bar: with(".bar"),
            host: with(".host"),
            host_iova_base: ironlb_sim::DeviceConfig::default().host_iova_base,
        }
    }
}

/// Driver access to a served model.
pub struct ShmBackend {
    bar: CountedBar,
    /// The DMA window, `None` when the model serves none (`ironlb-sim serve --no-dma`).
    host: Option<Region>,
    host_path: PathBuf,
    host_base: u64,
    next_dma: usize,
    _lock: File,
}

impl ShmBackend {
    /// Map the model's files. Only one driver may own the device: an exclusive lock on the BAR file enforces it.
    ///
    /// Both files must be this user's own, private (mode 0600, as `ironlb-sim serve` creates them) regular files
    /// ([`ironlb_sim::open_private`]): a file another user can write could rewrite the device's registers
    /// under the driver, and one they can read they can lock. The BAR file must hold the whole register file
    /// ([`BAR0_SIZE`] bytes), as the VFIO backend checks for a real BAR.
    pub fn open(paths: &ShmPaths) -> Result<Self, AccessError> {
        let io = |what: String| move |source| AccessError::Io { what, source };
        let bar_file = open_private(&paths.bar, false).map_err(io(format!(
            "model BAR file {} (is `ironlb-sim serve` running?)",
            paths.bar.display()
        )))?;
        let bar_len = bar_file
            .metadata()
            .map_err(io(format!("model BAR file {}", paths.bar.display())))?
            .len() as usize;
        if bar_len < BAR0_SIZE {
            return Err(AccessError::BarTooSmall {
                what: format!("model BAR file {}", paths.bar.display()),
                len: bar_len,
                need: BAR0_SIZE,
            });
        }
        let host_file = match open_private(&paths.host, false) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(AccessError::Io {
                    what: format!("model host-memory file {}", paths.host.display()),
                    source,
                })
            }
        };
        bar_file.try_lock().map_err(|e| AccessError::Io {
            what: format!(
                "lock {}: another driver (ironlb run?) owns this device",
                paths.bar.display()
            ),
            source: match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
            },
        })?;
        let bar_region =
            Region::map_file(&bar_file, bar_len).map_err(io(format!("map {}", paths.bar.display())))?;
        let host = match &host_file {
            Some(f) => {
                let len = f
                    .metadata()
                    .map_err(io(format!("model host-memory file {}", paths.host.display())))?
                    .len() as usize;
                Some(Region::map_file(f, len).map_err(io(format!("map {}", paths.host.display())))?)
            }
            None => None,
        };
        let ptr = bar_region.raw_ptr();
        // SAFETY: live shared mapping of `bar_len` bytes kept alive by the region moved into the owner box;
        // accessed only through MappedWindow's volatile accessors.
        let bar = unsafe { MappedWindow::new(ptr, bar_len, Box::new(bar_region)) };
        // DMA buffers are carved from the top half of host memory, leaving the bottom for other users of the
        // window (none in v1); the model sees the whole file as its IOMMU window.
        Ok(ShmBackend {
            bar: CountedBar::new(bar),
            host,
            host_path: paths.host.clone(),
            host_base: paths.host_iova_base,
            next_dma: 0,
            _lock: bar_file,
        })
    }
}

impl DeviceAccess for ShmBackend {
    fn bar_len(&self) -> usize {
        self.bar.len()
    }
    fn read32(&mut self, offset: u32) -> u32 {
        self.bar.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) {
        self.bar.write32(offset, value);
    }
    fn alloc_dma(&mut self, len: usize) -> Result<DmaRegion, AccessError> {
        match &self.host {
            Some(host) => alloc_from(host, self.host_base, &mut self.next_dma, len),
            None => Err(AccessError::DmaAlloc {
                len,
                reason: format!(
                    "the model's host-memory file {} does not exist (a model served with --no-dma has no DMA window; \
                     otherwise is `ironlb-sim serve` running with this prefix?)",
                    self.host_path.display()
                ),
            }),
        }
    }
    fn counts(&self) -> AccessCounts {
        self.bar.counts()
    }
}
