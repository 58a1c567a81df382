//! `vfio` backend: the real device, reached from user space through Linux VFIO (vfio-pci + a type1 IOMMU).
//!
//! Three layers, after rust-vmm's vfio-ioctls:
//! - [`sysfs`]: pure file-system pre-checks (address, device, IOMMU group, driver binding, group viability, VFIO
//!   nodes and their permissions), each failure an error that says how to fix it;
//! - [`sys`]: the kernel calls (vfio-ioctls container/group/device, region info, config space, BAR and DMA
//!   mmaps) — the only module with `unsafe`;
//! - this module: [`VfioBackend`], which strings them together and implements [`DeviceAccess`].
//!
//! Opening a device: pre-checks; open the container (`/dev/vfio/vfio`); open the device through its group (which
//! attaches the group to the container and selects the type1v2 IOMMU); read the BAR's region info and check it can
//! hold the register map; set Bus Master Enable in the PCI command register; mmap the BAR.
//!
//! DMA memory is anonymous memory mapped into the container's IOMMU domain at IOVAs handed out by
//! [`IovaAllocator`].

#![cfg(target_os = "linux")]

mod errors;
#[cfg(not(test))]
mod sys;
#[cfg(test)]
#[path = "sys_twin.rs"]
mod sys;
mod sysfs;
#[cfg(test)]
mod twin_tests;

use crate::access::{AccessCounts, CountedBar, DeviceAccess};
use crate::dma::DmaRegion;
use crate::error::AccessError;
use std::path::{Path, PathBuf};
use sys::{Container, Device};

pub use sysfs::{precheck, Checked, GroupMember, PciAddress, VfioRoots};

/// The container node vfio-ioctls opens.
pub const CONTAINER_PATH: &str = "/dev/vfio/vfio";
/// PCI config space: the 16-bit command register.
pub const PCI_COMMAND: u64 = 0x04;
/// Command register: Memory Space Enable.
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: Bus Master Enable (the device may issue DMA).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// What VFIO_DEVICE_GET_REGION_INFO says about a BAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// Size in bytes (0: BAR not implemented).
    pub size: u64,
    /// Offset of the region in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// mmap-capable.
    pub mmap: bool,
    /// Raw VFIO_REGION_INFO_FLAG_* bits.
    pub flags: u32,
    /// Only these `(offset, size)` areas may be mmapped (sparse-mmap capability), when present.
    pub sparse: Option<Vec<(u64, u64)>>,
}

/// Highest BAR index of a PCI function (BAR0..BAR5).
pub const MAX_BAR_INDEX: u32 = 5;
/// The register BAR must hold at least the ironlb register map (docs/hw-spec.md §3).
pub const MIN_BAR_LEN: usize = ironlb_hw::regs::BAR0_SIZE;

/// Why opening or using a VFIO device failed. Every message names the PCI address and the path involved, and says
/// what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// The PCI address does not parse.
    #[error("invalid PCI address {input:?}: {reason}; expected DDDD:BB:DD.F (e.g. 0000:03:00.0) or BB:DD.F (domain 0000)")]
    InvalidAddress {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No such PCI device.
    #[error("PCI device {addr} not found: {path} does not exist (list PCI devices with `lspci -D`)")]
    DeviceNotFound {
        /// Device.
        addr: PciAddress,
        /// sysfs path checked.
        path: PathBuf,
    },
    /// A sysfs file could not be read.
    #[error("cannot read {path} for PCI device {addr}: {source}")]
    SysfsIo {
        /// Device.
        addr: PciAddress,
        /// sysfs path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A sysfs entry does not look like the kernel's.
    #[error("unexpected sysfs entry {path} for PCI device {addr}: {detail}")]
    BadSysfsEntry {
        /// Device.
        addr: PciAddress,
        /// sysfs path.
        path: PathBuf,
        /// What is odd about it.
        detail: String,
    },
    /// The device has no IOMMU group.
    #[error(
        "PCI device {addr} has no IOMMU group ({path} does not exist): the kernel has no IOMMU for this device: boot \
         with intel_iommu=on or amd_iommu=on (and enable VT-d / AMD-Vi in the firmware)"
    )]
    NoIommuGroup {
        /// Device.
        addr: PciAddress,
        /// The missing `iommu_group` link.
        path: PathBuf,
    },
    /// The device is bound to a driver other than vfio-pci.
    #[error(
        "PCI device {addr} is bound to driver {driver} ({}/driver), not vfio-pci: unbind it and bind to vfio-pci: {}",
        device_path.display(), sysfs::bind_advice(addr, device_path, true)
    )]
    BoundToOtherDriver {
        /// Device.
        addr: PciAddress,
        /// The driver it is bound to.
        driver: String,
        /// Its sysfs directory.
        device_path: PathBuf,
    },
    /// The device is bound to no driver.
    #[error(
        "PCI device {addr} is not bound to any driver ({path} does not exist): bind it to vfio-pci: {}",
        sysfs::bind_advice(addr, device_path, false)
    )]
    NotBound {
        /// Device.
        addr: PciAddress,
        /// The missing `driver` link.
        path: PathBuf,
        /// Its sysfs directory.
        device_path: PathBuf,
    },
    /// Another device of the IOMMU group is bound to a driver that may DMA, so VFIO refuses the group.
    #[error(
        "IOMMU group {group} of PCI device {addr} is not viable ({path}): every device in the group must be bound to \
         vfio-pci or unbound, but {}; bind each to vfio-pci: echo vfio-pci > /sys/bus/pci/devices/DEV/driver_override; \
         echo DEV > /sys/bus/pci/devices/DEV/driver/unbind; echo DEV > /sys/bus/pci/drivers_probe",
        blockers_list(blockers)
    )]
    GroupNotViable {
        /// Device.
        addr: PciAddress,
        /// IOMMU group.
        group: u32,
        /// The group's sysfs `devices` directory (or `/dev/vfio/GROUP` when the kernel said so).
        path: PathBuf,
        /// The devices that make it non-viable (empty when only the kernel's status ioctl said so).
        blockers: Vec<GroupMember>,
    },
    /// `/dev/vfio/vfio` does not exist.
    #[error("{path} does not exist (needed to open PCI device {addr}): load the vfio-pci module: modprobe vfio-pci")]
    ContainerMissing {
        /// Device.
        addr: PciAddress,
        /// The container node.
        path: PathBuf,
    },
    /// `/dev/vfio/GROUP` does not exist.
    #[error(
        "{path} does not exist for IOMMU group {group} of PCI device {addr}: load the vfio-pci module (modprobe \
         vfio-pci) and bind {addr} to it"
    )]
    GroupNodeMissing {
        /// Device.
        addr: PciAddress,
        /// IOMMU group.
        group: u32,
        /// The group node.
        path: PathBuf,
    },
    /// A VFIO node cannot be opened read-write by this user.
    #[error("permission denied opening {path} read-write for PCI device {addr}: run as root or give the user access to {path}")]
    PermissionDenied {
        /// Device.
        addr: PciAddress,
        /// The node.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A VFIO node cannot be opened for another reason.
    #[error(
        "cannot open {path} read-write for PCI device {addr}: {source}{}",
        busy_hint(source)
    )]
    OpenNode {
        /// Device.
        addr: PciAddress,
        /// The node.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The BAR index is not 0..=5.
    #[error(
        "BAR index {index} is out of range for PCI device {addr}: BARs are 0..=5 (the ironlb NIC has its registers in \
         BAR0, the QEMU ivshmem-plain test harness in BAR2)"
    )]
    BarIndexOutOfRange {
        /// Device.
        addr: PciAddress,
        /// Index given.
        index: u32,
    },
    /// The BAR does not exist on this device.
    #[error(
        "BAR{index} of PCI device {addr} ({path}) is not implemented (size 0): wrong BAR index? (ironlb NIC: 0, QEMU \
         ivshmem-plain harness: 2)"
    )]
    BarNotImplemented {
        /// Device.
        addr: PciAddress,
        /// BAR index.
        index: u32,
        /// Device sysfs path.
        path: PathBuf,
    },
    /// The BAR cannot be mmapped.
    #[error("BAR{index} of PCI device {addr} ({path}) cannot be mmapped: {reason}")]
    BarNotMappable {
        /// Device.
        addr: PciAddress,
        /// BAR index.
        index: u32,
        /// Device sysfs path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The BAR is smaller than the register map.
    #[error(
        "BAR{index} of PCI device {addr} ({path}) is {size:#x} bytes, smaller than the {needed:#x} bytes of the ironlb \
         register map: wrong BAR index or not an ironlb device?"
    )]
    BarTooSmall {
        /// Device.
        addr: PciAddress,
        /// BAR index.
        index: u32,
        /// Device sysfs path.
        path: PathBuf,
        /// BAR size.
        size: u64,
        /// Bytes needed.
        needed: usize,
    },
    /// A VFIO ioctl (or vfio-ioctls operation) failed.
    #[error("VFIO {op} failed for PCI device {addr} ({path}): {source}")]
    Ioctl {
        /// Device.
        addr: PciAddress,
        /// The operation.
        op: &'static str,
        /// The node or sysfs path it was done on.
        path: PathBuf,
        /// vfio-ioctls' error.
        #[source]
        source: vfio_ioctls::VfioError,
    },
    /// mmap of the BAR failed.
    #[error("mmap of BAR{index} of PCI device {addr} ({path}) failed: {source}")]
    Mmap {
        /// Device.
        addr: PciAddress,
        /// BAR index.
        index: u32,
        /// Device sysfs path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing PCI config space through VFIO failed.
    #[error("PCI config space {op} of {addr} ({path}) failed: {source}")]
    ConfigSpace {
        /// Device.
        addr: PciAddress,
        /// `read` or `write`.
        op: &'static str,
        /// Device sysfs path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

fn blockers_list(blockers: &[GroupMember]) -> String {
    if blockers.is_empty() {
        return "the kernel reports a device of the group bound to another driver".into();
    }
    let list: Vec<String> = blockers.iter().map(|m| m.to_string()).collect();
    format!(
        "{} {}",
        list.join(", "),
        if blockers.len() == 1 { "is not" } else { "are not" }
    )
}

fn busy_hint(e: &std::io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EBUSY) {
        " (already in use: another ironlb process or a VM owns this IOMMU group)"
    } else {
        ""
    }
}

/// First IOVA handed out. Low enough for test devices that only DMA below 256 MiB, and clear of page 0 so that a
/// device writing to IOVA 0 (an unset address register) faults instead of corrupting a buffer.
pub const IOVA_BASE: u64 = 0x0100_0000;

/// IOVA ranges never handed out: the ARM SMMU software-MSI window (`MSI_IOVA_BASE`, 1 MiB at 128 MiB) and the x86
/// interrupt window (0xfee0_0000..0xfef0_0000). VFIO reserves one of them in every IOMMU domain on those machines;
/// skipping both everywhere costs 2 MiB of IOVA space.
pub const IOVA_RESERVED: [(u64, u64); 2] = [(0x0800_0000, 0x0810_0000), (0xfee0_0000, 0xfef0_0000)];

/// IOVA allocator for DMA buffers: a bump allocator from [`IOVA_BASE`] upward, page aligned, skipping
/// [`IOVA_RESERVED`]. IOVAs are never reused (freeing a buffer unmaps it but does not return its range): the
/// driver allocates its rings and arenas once per device open, so the space is never exhausted in practice, and
/// a stale device access to a freed buffer faults instead of hitting a new one.
#[derive(Debug, Clone)]
pub struct IovaAllocator {
    next: u64,
    page: u64,
}

impl IovaAllocator {
    /// Allocator with granule `page` (a power of two: the host page size).
    pub fn new(page: u64) -> IovaAllocator {
        assert!(page.is_power_of_two(), "page size {page} is not a power of two");
        IovaAllocator {
            next: IOVA_BASE.next_multiple_of(page),
            page,
        }
    }

    /// IOVA of a new `len`-byte buffer (at least one page is used), or `None` when the 64-bit space is exhausted.
    pub fn alloc(&mut self, len: usize) -> Option<u64> {
        let size = u64::try_from(len.max(1))
            .ok()?
            .checked_next_multiple_of(self.page)?;
        let mut start = self.next;
        for (lo, hi) in IOVA_RESERVED {
            if start < hi && start.checked_add(size)? > lo {
                start = hi.next_multiple_of(self.page);
            }
        }
        self.next = start.checked_add(size)?;
        Some(start)
    }

    /// The next IOVA that would be handed out.
    pub fn next_iova(&self) -> u64 {
        self.next
    }
}

/// Which part of the BAR region to mmap: `(offset into the region, length)`. Checks the BAR exists, is a
/// mappable read-write memory BAR, and holds at least `min_len` bytes from its start.
pub fn plan_bar_mapping(
    addr: &PciAddress,
    index: u32,
    path: &Path,
    info: &RegionInfo,
    min_len: usize,
) -> Result<(u64, usize), VfioError> {
    let not_mappable = |reason: String| VfioError::BarNotMappable {
        addr: *addr,
        index,
        path: path.to_path_buf(),
        reason,
    };
    if info.size == 0 {
        return Err(VfioError::BarNotImplemented {
            addr: *addr,
            index,
            path: path.to_path_buf(),
        });
    }
    if !info.mmap {
        return Err(not_mappable(format!(
            "VFIO region flags {:#x} lack MMAP (an I/O-port BAR, or one the kernel will not map): use the memory BAR \
             that holds the registers",
            info.flags
        )));
    }
    if !(info.read && info.write) {
        return Err(not_mappable(format!(
            "VFIO region flags {:#x} are not read-write",
            info.flags
        )));
    }
    if info.size < min_len as u64 {
        return Err(VfioError::BarTooSmall {
            addr: *addr,
            index,
            path: path.to_path_buf(),
            size: info.size,
            needed: min_len,
        });
    }
    let len = match &info.sparse {
        None => info.size,
        Some(areas) => match areas.iter().find(|(off, _)| *off == 0) {
            Some((_, size)) if *size >= min_len as u64 => *size,
            _ => {
                return Err(not_mappable(format!(
                    "only its sparse-mmap areas {areas:x?} (offset, size) may be mapped, and none covers the {min_len:#x} \
                     bytes of registers from offset 0"
                )))
            }
        },
    };
    let len =
        usize::try_from(len).map_err(|_| not_mappable(format!("size {len:#x} exceeds the address space")))?;
    Ok((0, len))
}

/// Set Bus Master Enable in the command register (read-modify-write), so the device may DMA. Returns the command
/// register as read back afterwards.
fn enable_bus_master(device: &Device) -> Result<u16, VfioError> {
    let cmd = device.config_read16(PCI_COMMAND)?;
    if cmd & PCI_COMMAND_MASTER == 0 {
        device.config_write16(PCI_COMMAND, cmd | PCI_COMMAND_MASTER)?;
    }
    device.config_read16(PCI_COMMAND)
}

/// Driver access to a real device through VFIO.
///
/// Teardown order is the field order below (Rust drops fields in declaration order): the BAR mapping first (it
/// holds a reference to the device file), then the device (vfio-ioctls closes the device fd, which makes vfio-pci
/// disable and reset the function, then detaches the group from the container and closes `/dev/vfio/GROUP`), then
/// the container (`/dev/vfio/vfio` closes, releasing the IOMMU domain, once DMA buffers still alive drop their
/// share of it). So: device before group before container.
pub struct VfioBackend {
    bar: CountedBar,
    device: Device,
    container: Container,
    iova: IovaAllocator,
    addr: PciAddress,
    group: u32,
    bar_index: u32,
}

impl std::fmt::Debug for VfioBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioBackend")
            .field("addr", &self.addr.to_string())
            .field("group", &self.group)
            .field("bar_index", &self.bar_index)
            .field("bar_len", &self.bar.len())
            .field("next_iova", &self.iova.next_iova())
            .finish()
    }
}

impl VfioBackend {
    /// Open the PCI function `pci_addr` (`0000:03:00.0`, or `03:00.0` for domain 0000) bound to vfio-pci and map
    /// its register BAR `bar_index`.
    ///
    /// The BAR index is a parameter because the registers are not in the same BAR everywhere: on the real ironlb
    /// NIC they are BAR0, while the QEMU test harness (an ivshmem-plain device whose shared memory holds the
    /// model's BAR) exposes them as BAR2.
    ///
    /// Needs an IOMMU, vfio-pci, and read-write access to `/dev/vfio/vfio` and `/dev/vfio/GROUP`; each missing
    /// piece is reported as a [`VfioError`] saying how to provide it.
    pub fn open(pci_addr: &str, bar_index: u32) -> Result<VfioBackend, VfioError> {
        Self::open_with_roots(&VfioRoots::default(), pci_addr, bar_index)
    }

    /// [`open`](Self::open) with the pre-checks run against other sysfs/devfs roots (tests). The ioctl layer
    /// (vfio-ioctls) always opens `/dev/vfio/...`, and reads the device's `iommu_group` under `roots.sysfs`.
    pub fn open_with_roots(
        roots: &VfioRoots,
        pci_addr: &str,
        bar_index: u32,
    ) -> Result<VfioBackend, VfioError> {
        let addr = PciAddress::parse(pci_addr)?;
        if bar_index > MAX_BAR_INDEX {
            return Err(VfioError::BarIndexOutOfRange {
                addr,
                index: bar_index,
            });
        }
        let checked = precheck(roots, &addr)?;
        tracing::debug!(%addr, group = checked.group, driver = %checked.driver, "VFIO pre-checks passed");

        // Locals drop in reverse order on an early return: device before container, as in the struct.
        let container = Container::open(&addr)?;
        let device = Device::open(&container, &checked)?;
        let info = device.region(bar_index);
        let (start, len) = plan_bar_mapping(&addr, bar_index, &checked.device_path, &info, MIN_BAR_LEN)?;
        let cmd = enable_bus_master(&device)?;
        if cmd & PCI_COMMAND_MASTER == 0 {
            tracing::warn!(%addr, command = cmd, "Bus Master Enable did not stick: the device cannot DMA");
        }
        let bar = device.map_region(bar_index, &info, start, len)?;
        tracing::info!(%addr, group = checked.group, bar_index, bar_len = len, command = cmd, "VFIO device open");
        Ok(VfioBackend {
            bar: CountedBar::new(bar),
            device,
            container,
            iova: IovaAllocator::new(sys::page_size() as u64),
            addr,
            group: checked.group,
            bar_index,
        })
    }

    /// The device's PCI address.
    pub fn pci_address(&self) -> PciAddress {
        self.addr
    }

    /// Its IOMMU group.
    pub fn iommu_group(&self) -> u32 {
        self.group
    }

    /// The BAR the registers are mapped from.
    pub fn bar_index(&self) -> u32 {
        self.bar_index
    }

    /// Re-read the PCI command register (e.g. to check Bus Master Enable is still set).
    pub fn command_register(&self) -> Result<u16, VfioError> {
        self.device.config_read16(PCI_COMMAND)
    }
}

impl DeviceAccess for VfioBackend {
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
        let iova = self.iova.alloc(len).ok_or_else(|| AccessError::DmaAlloc {
            len,
            reason: format!("IOVA space of {} exhausted", self.addr),
        })?;
        self.container.alloc_dma(&self.addr, iova, len)
    }
    fn counts(&self) -> AccessCounts {
        self.bar.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "0000:03:00.0";

    fn addr() -> PciAddress {
        PciAddress::parse(ADDR).unwrap()
    }

    fn region(size: u64) -> RegionInfo {
        RegionInfo {
            size,
            offset: 2 << 40,
            read: true,
            write: true,
            mmap: true,
            flags: 0xf,
            sparse: None,
        }
    }

    #[test]
    fn open_on_this_machine_fails_cleanly() {
        // No IOMMU and no vfio device here: whatever is missing first must come back as an error naming the device.
        match VfioBackend::open(ADDR, 0) {
            Ok(b) => eprintln!("a real VFIO device is present at {ADDR}: {b:?}"),
            Err(e) => {
                assert!(!matches!(e, VfioError::InvalidAddress { .. }), "{e:?}");
                assert!(e.to_string().contains(ADDR), "{e}");
                eprintln!("open({ADDR}, 0) on this machine: {e}");
            }
        }
    }

    #[test]
    fn bar_index_out_of_range_is_checked_first() {
        let f = sysfs::tests::Fake::new();
        let e = VfioBackend::open_with_roots(&f.roots, ADDR, 6).unwrap_err();
        assert!(
            matches!(e, VfioError::BarIndexOutOfRange { index: 6, .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(ADDR) && msg.contains("0..=5") && msg.contains("BAR0") && msg.contains("BAR2"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_address_is_reported_before_anything_else() {
        let e = VfioBackend::open("3:0", 0).unwrap_err();
        assert!(matches!(e, VfioError::InvalidAddress { .. }), "{e:?}");
        assert!(e.to_string().contains("0000:03:00.0"), "{e}");
    }

    #[test]
    fn bar_plans() {
        let p = Path::new("/sys/bus/pci/devices/0000:03:00.0");
        let a = addr();
        assert_eq!(
            plan_bar_mapping(&a, 0, p, &region(0x1_0000), MIN_BAR_LEN).unwrap(),
            (0, 0x1_0000)
        );
        assert_eq!(
            plan_bar_mapping(&a, 2, p, &region(0x40_0000), MIN_BAR_LEN).unwrap(),
            (0, 0x40_0000)
        );

        let e = plan_bar_mapping(&a, 1, p, &region(0), MIN_BAR_LEN).unwrap_err();
        assert!(
            matches!(e, VfioError::BarNotImplemented { index: 1, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(ADDR) && e.to_string().contains("0000:03:00.0"),
            "{e}"
        );

        let e = plan_bar_mapping(&a, 0, p, &region(0x1000), MIN_BAR_LEN).unwrap_err();
        assert!(
            matches!(
                e,
                VfioError::BarTooSmall {
                    size: 0x1000,
                    needed: 0x1_0000,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("0x1000") && e.to_string().contains(&p.display().to_string()),
            "{e}"
        );

        let io_bar = RegionInfo {
            mmap: false,
            flags: 0x3,
            ..region(0x1_0000)
        };
        let e = plan_bar_mapping(&a, 4, p, &io_bar, MIN_BAR_LEN).unwrap_err();
        assert!(matches!(e, VfioError::BarNotMappable { index: 4, .. }), "{e:?}");
        assert!(
            e.to_string().contains("MMAP") && e.to_string().contains(ADDR),
            "{e}"
        );

        let ro = RegionInfo {
            write: false,
            ..region(0x1_0000)
        };
        assert!(matches!(
            plan_bar_mapping(&a, 0, p, &ro, MIN_BAR_LEN),
            Err(VfioError::BarNotMappable { .. })
        ));

        // Sparse mmap (e.g. an MSI-X table at the top of the BAR): map the area at offset 0 if it holds the registers.
        let sparse = RegionInfo {
            sparse: Some(vec![(0, 0x1_0000), (0x1_1000, 0xf000)]),
            ..region(0x2_0000)
        };
        assert_eq!(
            plan_bar_mapping(&a, 0, p, &sparse, MIN_BAR_LEN).unwrap(),
            (0, 0x1_0000)
        );
        let sparse = RegionInfo {
            sparse: Some(vec![(0x1000, 0x1_f000)]),
            ..region(0x2_0000)
        };
        let e = plan_bar_mapping(&a, 0, p, &sparse, MIN_BAR_LEN).unwrap_err();
        assert!(matches!(e, VfioError::BarNotMappable { .. }), "{e:?}");
        assert!(e.to_string().contains("sparse"), "{e}");
    }

    #[test]
    fn iova_allocator_is_page_aligned_bump_from_16mib() {
        let mut a = IovaAllocator::new(4096);
        assert_eq!(a.alloc(100), Some(IOVA_BASE));
        assert_eq!(a.alloc(0), Some(IOVA_BASE + 0x1000));
        assert_eq!(a.alloc(0x1001), Some(IOVA_BASE + 0x2000));
        assert_eq!(a.alloc(0x1000), Some(IOVA_BASE + 0x4000));
        let mut big = IovaAllocator::new(0x1_0000);
        assert_eq!(big.alloc(1), Some(IOVA_BASE));
        assert_eq!(big.alloc(1), Some(IOVA_BASE + 0x1_0000));
    }

    #[test]
    fn iova_allocator_skips_reserved_windows() {
        let mut a = IovaAllocator::new(4096);
        // Up to just below the ARM MSI window; the next buffer would overlap it.
        assert_eq!(
            a.alloc((0x0800_0000 - IOVA_BASE - 0x1000) as usize),
            Some(IOVA_BASE)
        );
        assert_eq!(a.alloc(0x2000), Some(0x0810_0000));
        // Straight into the x86 window: skipped too.
        a.next = 0xfed0_0000;
        assert_eq!(a.alloc(0x20_0000), Some(0xfef0_0000));
        for _ in 0..100 {
            let iova = a.alloc(0x3000).unwrap();
            assert_eq!(iova % 4096, 0);
            for (lo, hi) in IOVA_RESERVED {
                assert!(iova + 0x3000 <= lo || iova >= hi);
            }
        }
        a.next = u64::MAX - 0xfff;
        assert_eq!(a.alloc(0x2000), None);
    }

    #[test]
    fn errors_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<VfioError>();
        fn send<T: Send>() {}
        send::<VfioBackend>();
    }
}
