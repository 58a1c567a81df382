//! Test twin of `sys.rs` (compiled instead of it under `cfg(test)`), after rust-vmm vfio-ioctls' `vfio_syscall`
//! twin: the same types and signatures, with a scripted kernel behind them, so [`super::VfioBackend`]'s open
//! sequence, its error paths and its teardown order are unit-tested without an IOMMU or a vfio-pci device.
//!
//! The kernel is per test thread ([`kernel`]): a test sets what should fail (vfio-ioctls errors, config-space and
//! mmap errnos, a Bus Master Enable that does not stick) and reads back [`Kernel::log`], the order in which nodes
//! were opened and closed and memory mapped and unmapped. vfio-ioctls errors go through the same
//! [`super::errors`] functions as in `sys.rs`. BAR and DMA memory are anonymous mappings.
#![allow(unsafe_code)]

use super::errors;
use super::sysfs::{Checked, PciAddress};
use super::{RegionInfo, VfioError};
use crate::dma::DmaRegion;
use crate::error::AccessError;
use crate::window::MappedWindow;
use memmap2::{MmapOptions, MmapRaw};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;
use vfio_ioctls::VfioError as IoctlError;

/// The fake kernel of one test thread.
#[derive(Debug)]
pub(crate) struct Kernel {
    /// Opening the container fails with this vfio-ioctls error.
    pub container_error: Option<fn() -> IoctlError>,
    /// Opening the device (group, container attach, device fd, infos) fails with this vfio-ioctls error.
    pub device_error: Option<fn() -> IoctlError>,
    /// Region info per index (VFIO_DEVICE_GET_REGION_INFO); absent: size 0, no flags.
    pub regions: BTreeMap<u32, RegionInfo>,
    /// The PCI command register.
    pub command: u16,
    /// Whether a write of Bus Master Enable sticks (a device may hardwire it to 0).
    pub bus_master_sticks: bool,
    /// pread of config space fails with this.
    pub config_read_error: Option<ErrorKind>,
    /// pwrite of config space fails with this.
    pub config_write_error: Option<ErrorKind>,
    /// mmap of the BAR fails with this.
    pub mmap_error: Option<ErrorKind>,
    /// VFIO_IOMMU_MAP_DMA fails with this errno.
    pub dma_map_errno: Option<i32>,
    /// What happened, in order: `open container`, `open device`, `config write 0x..`, `map BAR len`, `map DMA iova`,
    /// and `unmap DMA iova`, `unmap BAR`, `close device`, `close container`.
    pub log: Vec<String>,
}

impl Default for Kernel {
    /// A device that opens: BAR0 64 KiB mappable read-write, memory space enabled, bus mastering off.
    fn default() -> Self {
        Kernel {
            container_error: None,
            device_error: None,
            regions: BTreeMap::from([(0, RegionInfo::bar(0x1_0000))]),
            command: super::PCI_COMMAND_MEMORY,
            bus_master_sticks: true,
            config_read_error: None,
            config_write_error: None,
            mmap_error: None,
            dma_map_errno: None,
            log: Vec::new(),
        }
    }
}

impl RegionInfo {
    /// A mappable read-write memory BAR of `size` bytes.
    pub(crate) fn bar(size: u64) -> RegionInfo {
        RegionInfo {
            size,
            offset: 0,
            read: true,
            write: true,
            mmap: true,
            flags: 0x7,
            sparse: None,
        }
    }
}

thread_local! {
    static KERNEL: RefCell<Kernel> = RefCell::new(Kernel::default());
}

/// Run `f` on this thread's fake kernel.
pub(crate) fn kernel<R>(f: impl FnOnce(&mut Kernel) -> R) -> R {
    KERNEL.with(|k| f(&mut k.borrow_mut()))
}

fn log(what: String) {
    kernel(|k| k.log.push(what));
}

/// The host page size the twin uses.
pub fn page_size() -> usize {
    4096
}

/// Logs its name when dropped (a node closed, a mapping removed).
#[derive(Debug)]
struct OnDrop(String);

impl Drop for OnDrop {
    fn drop(&mut self) {
        log(std::mem::take(&mut self.0));
    }
}

/// Twin of the VFIO container: shared like the real one (by the backend and every live DMA buffer), closed when
/// the last share drops.
#[derive(Clone, Debug)]
pub struct Container {
    _open: Arc<OnDrop>,
}

impl Container {
    /// Open the container, or fail as scripted.
    pub fn open(addr: &PciAddress) -> Result<Container, VfioError> {
        if let Some(e) = kernel(|k| k.container_error) {
            return Err(errors::container_error(addr, e()));
        }
        log("open container".into());
        Ok(Container {
            _open: Arc::new(OnDrop("close container".into())),
        })
    }

    /// Anonymous memory "mapped" at `iova`, or the scripted VFIO_IOMMU_MAP_DMA failure.
    pub fn alloc_dma(&self, addr: &PciAddress, iova: u64, len: usize) -> Result<DmaRegion, AccessError> {
        let size = len.max(1).next_multiple_of(page_size());
        if let Some(errno) = kernel(|k| k.dma_map_errno) {
            let e = IoctlError::IommuDmaMap(vmm_sys_util::errno::Error::new(errno));
            return Err(errors::dma_map_error(addr, iova, size, e));
        }
        let mem = anon(size).map_err(|source| AccessError::Io {
            what: "twin DMA memory".into(),
            source,
        })?;
        log(format!("map DMA {iova:#x}"));
        let ptr = NonNull::new(mem.as_mut_ptr()).expect("mmap never returns null");
        let owner = (OnDrop(format!("unmap DMA {iova:#x}")), self.clone(), mem);
        // SAFETY: `ptr..ptr+size` is the anonymous mapping owned by `mem`, kept alive in the owner box; `len <=
        // size`; nothing creates a reference into it.
        let window = unsafe { MappedWindow::new(ptr, len, Box::new(owner)) };
        Ok(DmaRegion::new(window, iova))
    }
}

fn anon(len: usize) -> std::io::Result<MmapRaw> {
    Ok(MmapOptions::new().len(len).map_anon()?.into())
}

/// Twin of an opened VFIO device.
#[derive(Debug)]
pub struct Device {
    addr: PciAddress,
    path: PathBuf,
    _open: OnDrop,
}

impl Device {
    /// Open the device of `checked`, or fail as scripted.
    pub fn open(_container: &Container, checked: &Checked) -> Result<Device, VfioError> {
        if let Some(e) = kernel(|k| k.device_error) {
            return Err(errors::device_open_error(checked, e()));
        }
        log("open device".into());
        Ok(Device {
            addr: checked.addr,
            path: checked.device_path.clone(),
            _open: OnDrop("close device".into()),
        })
    }

    /// The scripted region info (size 0 where none is scripted).
    pub fn region(&self, index: u32) -> RegionInfo {
        kernel(|k| k.regions.get(&index).cloned()).unwrap_or(RegionInfo {
            size: 0,
            offset: 0,
            read: false,
            write: false,
            mmap: false,
            flags: 0,
            sparse: None,
        })
    }

    fn config_io(&self, op: &'static str, kind: ErrorKind) -> VfioError {
        VfioError::ConfigSpace {
            addr: self.addr,
            op,
            path: self.path.clone(),
            source: kind.into(),
        }
    }

    /// The command register (the only config register the twin has), or the scripted read error.
    pub fn config_read16(&self, off: u64) -> Result<u16, VfioError> {
        assert_eq!(
            off,
            super::PCI_COMMAND,
            "the twin models the command register only"
        );
        match kernel(|k| k.config_read_error) {
            Some(kind) => Err(self.config_io("read", kind)),
            None => Ok(kernel(|k| k.command)),
        }
    }

    /// Write the command register (Bus Master Enable sticks as scripted), or fail as scripted.
    pub fn config_write16(&self, off: u64, value: u16) -> Result<(), VfioError> {
        assert_eq!(
            off,
            super::PCI_COMMAND,
            "the twin models the command register only"
        );
        if let Some(kind) = kernel(|k| k.config_write_error) {
            return Err(self.config_io("write", kind));
        }
        log(format!("config write {value:#06x}"));
        kernel(|k| {
            k.command = if k.bus_master_sticks {
                value
            } else {
                value & !super::PCI_COMMAND_MASTER
            }
        });
        Ok(())
    }

    /// Anonymous memory standing in for the BAR, or the scripted mmap failure.
    pub fn map_region(
        &self,
        index: u32,
        _info: &RegionInfo,
        _start: u64,
        len: usize,
    ) -> Result<MappedWindow, VfioError> {
        let mmap_err = |source| VfioError::Mmap {
            addr: self.addr,
            index,
            path: self.path.clone(),
            source,
        };
        if let Some(kind) = kernel(|k| k.mmap_error) {
            return Err(mmap_err(kind.into()));
        }
        let map = anon(len).map_err(mmap_err)?;
        log(format!("map BAR{index} {len:#x}"));
        let ptr = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        // SAFETY: `ptr..ptr+len` is the anonymous mapping owned by `map`, moved into the owner box; nothing creates
        // a reference into it.
        Ok(unsafe { MappedWindow::new(ptr, len, Box::new((map, OnDrop("unmap BAR".into())))) })
    }
}
