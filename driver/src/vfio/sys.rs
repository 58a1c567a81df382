//! The kernel side of the `vfio` backend: the only module of it with `unsafe`, and the only one that calls
//! vfio-ioctls or maps memory. Under `cfg(test)`, `sys_twin.rs` stands in for it with the same signatures.
//!
//! Layering follows rust-vmm's vfio-ioctls (built without its `kvm`/`mshv` features, so no hypervisor is
//! involved): a [`Container`] (`/dev/vfio/vfio`, one IOMMU domain) holds the IOMMU group, which vfio-ioctls opens
//! (`/dev/vfio/N`) and attaches when the first [`Device`] of the group is opened, and detaches and closes when that
//! device is dropped. vfio-ioctls always uses `/dev/vfio`: the devfs root of [`super::VfioRoots`] only moves the
//! pre-checks.
#![allow(unsafe_code)]

use super::errors;
use super::sysfs::{Checked, PciAddress};
use super::{RegionInfo, VfioError};
use crate::dma::DmaRegion;
use crate::error::AccessError;
use crate::window::MappedWindow;
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::fs::FileExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;
use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioOps, VfioRegionInfoCap};

/// The host page size, the granule of DMA mappings.
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant; it has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

/// A VFIO container: one IOMMU address space shared by the device and every DMA buffer mapped for it.
///
/// Cloning shares the container (an `Arc`): the backend, the vfio-ioctls device and each live DMA buffer hold one,
/// so `/dev/vfio/vfio` is closed only after the last of them is gone.
#[derive(Clone)]
pub struct Container(Arc<VfioContainer>);

impl Container {
    /// Open `/dev/vfio/vfio` and check the API version and type1v2 IOMMU support.
    pub fn open(addr: &PciAddress) -> Result<Container, VfioError> {
        VfioContainer::new(None)
            .map(|c| Container(Arc::new(c)))
            .map_err(|e| errors::container_error(addr, e))
    }

    /// Allocate `len` bytes of zeroed, page-rounded anonymous memory and map it for the device at `iova`
    /// (`iova` page aligned). The mapping is removed from the IOMMU, then unmapped, when the region is dropped.
    pub fn alloc_dma(&self, addr: &PciAddress, iova: u64, len: usize) -> Result<DmaRegion, AccessError> {
        let page = page_size();
        let size = len
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| AccessError::DmaAlloc {
                len,
                reason: "size overflows when rounded up to whole pages".into(),
            })?;
        let mem: MmapRaw = MmapOptions::new()
            .len(size)
            .map_anon()
            .map_err(|source| AccessError::Io {
                what: format!("allocate {size:#x} bytes of DMA memory for {addr}"),
                source,
            })?
            .into();
        let ptr = NonNull::new(mem.as_mut_ptr()).ok_or_else(|| AccessError::DmaAlloc {
            len,
            reason: "anonymous mmap returned a null pointer".into(),
        })?;
        // SAFETY: `ptr..ptr+size` is the anonymous mapping owned by `mem`, which lives in the owner box until after
        // the IOMMU mapping is removed (DmaMapping::drop). No Rust reference to it exists or is ever created: the
        // MmapRaw gives out raw pointers only, and MappedWindow accesses it through volatile raw-pointer copies.
        unsafe { self.0.vfio_dma_map(iova, size, ptr.as_ptr()) }
            .map_err(|e| errors::dma_map_error(addr, iova, size, e))?;
        let owner = DmaMapping {
            container: self.clone(),
            iova,
            size,
            _mem: mem,
        };
        // SAFETY: the window covers `len <= size` bytes of the mapping kept alive by `owner`; only MappedWindow's
        // volatile accessors touch it.
        let window = unsafe { MappedWindow::new(ptr, len, Box::new(owner)) };
        Ok(DmaRegion::new(window, iova))
    }
}

/// Owner of one DMA buffer: removes the IOMMU mapping, then (field drop) unmaps the memory.
struct DmaMapping {
    container: Container,
    iova: u64,
    size: usize,
    _mem: MmapRaw,
}

impl Drop for DmaMapping {
    fn drop(&mut self) {
        // Fails harmlessly when the device was closed first: detaching the container's last group already tore
        // down the IOMMU domain with all its mappings.
        if let Err(e) = self.container.0.vfio_dma_unmap(self.iova, self.size) {
            tracing::debug!(iova = self.iova, size = self.size, error = %e, "VFIO_IOMMU_UNMAP_DMA failed");
        }
    }
}

/// An opened VFIO device (with its group attached to the container).
pub struct Device {
    addr: PciAddress,
    path: PathBuf,
    dev: VfioDevice,
}

impl Device {
    /// Open the device of `checked` through its group, attaching the group to `container` (vfio-ioctls: opens
    /// `/dev/vfio/GROUP`, VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU, VFIO_GROUP_GET_DEVICE_FD,
    /// VFIO_DEVICE_GET_INFO / _GET_REGION_INFO / _GET_IRQ_INFO).
    pub fn open(container: &Container, checked: &Checked) -> Result<Device, VfioError> {
        let ops: Arc<dyn VfioOps> = container.0.clone();
        let dev = VfioDevice::new(&checked.device_path, ops, false)
            .map_err(|e| errors::device_open_error(checked, e))?;
        Ok(Device {
            addr: checked.addr,
            path: checked.device_path.clone(),
            dev,
        })
    }

    /// Region info of region `index` (BARs are 0..=5), as read when the device was opened.
    pub fn region(&self, index: u32) -> RegionInfo {
        let flags = self.dev.get_region_flags(index);
        let sparse = self.dev.get_region_caps(index).into_iter().find_map(|c| match c {
            VfioRegionInfoCap::SparseMmap(s) => Some(s.areas.iter().map(|a| (a.offset, a.size)).collect()),
            _ => None,
        });
        RegionInfo {
            size: self.dev.get_region_size(index),
            offset: self.dev.get_region_offset(index),
            read: flags & VFIO_REGION_INFO_FLAG_READ != 0,
            write: flags & VFIO_REGION_INFO_FLAG_WRITE != 0,
            mmap: flags & VFIO_REGION_INFO_FLAG_MMAP != 0,
            flags,
            sparse,
        }
    }

    /// Run `f` with the device fd as a `File` that is never closed (it stays owned by `self.dev`).
    fn with_fd<R>(&self, f: impl FnOnce(&File) -> R) -> R {
        // SAFETY: the fd is open and owned by `self.dev`, which outlives this call; the File is only lent to `f`
        // and ManuallyDrop guarantees it never closes the fd.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(self.dev.as_raw_fd()) });
        f(&file)
    }

    fn config_io(&self, op: &'static str, source: std::io::Error) -> VfioError {
        VfioError::ConfigSpace {
            addr: self.addr,
            op,
            path: self.path.clone(),
            source,
        }
    }

    /// Read the 16-bit config register at `off` through the VFIO config region.
    pub fn config_read16(&self, off: u64) -> Result<u16, VfioError> {
        let cfg = self.region(VFIO_PCI_CONFIG_REGION_INDEX);
        if cfg.size < off + 2 {
            return Err(self.config_io(
                "read",
                std::io::Error::other("config region missing or too small"),
            ));
        }
        let mut b = [0u8; 2];
        self.with_fd(|f| f.read_exact_at(&mut b, cfg.offset + off))
            .map_err(|e| self.config_io("read", e))?;
        Ok(u16::from_le_bytes(b))
    }

    /// Write the 16-bit config register at `off` through the VFIO config region.
    pub fn config_write16(&self, off: u64, value: u16) -> Result<(), VfioError> {
        let cfg = self.region(VFIO_PCI_CONFIG_REGION_INDEX);
        if cfg.size < off + 2 || !cfg.write {
            return Err(self.config_io(
                "write",
                std::io::Error::other("config region missing or read-only"),
            ));
        }
        self.with_fd(|f| f.write_all_at(&value.to_le_bytes(), cfg.offset + off))
            .map_err(|e| self.config_io("write", e))
    }

    /// mmap `len` bytes of region `index` starting `start` bytes into it (shared, read-write).
    pub fn map_region(
        &self,
        index: u32,
        info: &RegionInfo,
        start: u64,
        len: usize,
    ) -> Result<MappedWindow, VfioError> {
        let mmap_err = |source| VfioError::Mmap {
            addr: self.addr,
            index,
            path: self.path.clone(),
            source,
        };
        let map = self
            .with_fd(|f| MmapOptions::new().offset(info.offset + start).len(len).map_raw(f))
            .map_err(mmap_err)?;
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| mmap_err(std::io::Error::other("mmap returned a null pointer")))?;
        // SAFETY: `ptr..ptr+len` is the shared mapping of the BAR owned by `map`, moved into the owner box; the
        // mapping holds its own reference to the device file, and no Rust reference into it is ever created.
        Ok(unsafe { MappedWindow::new(ptr, len, Box::new(map)) })
    }
}
