//! vfio-ioctls' errors turned into [`VfioError`]s that name the device, the node and the fix. Pure functions, shared
//! by the kernel module (`sys.rs`) and its test twin (`sys_twin.rs`), so the mapping is the same code in both and
//! is unit-tested here with constructed errors.

use super::sysfs::{open_error, Checked, PciAddress};
use super::{VfioError, CONTAINER_PATH};
use crate::error::AccessError;
use std::io::ErrorKind;
use std::path::Path;
use vfio_ioctls::VfioError as IoctlError;

/// The vfio-ioctls operation behind an error (the ioctl name where there is one), for messages.
pub(crate) fn op_name(e: &IoctlError) -> &'static str {
    match e {
        IoctlError::OpenContainer(_) => "open container",
        IoctlError::OpenGroup(..) => "open group",
        IoctlError::VfioApiVersion => "VFIO_GET_API_VERSION",
        IoctlError::VfioExtension | IoctlError::VfioType1V2 | IoctlError::VfioInvalidType => {
            "VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU)"
        }
        IoctlError::GetGroupStatus | IoctlError::GroupViable => "VFIO_GROUP_GET_STATUS",
        IoctlError::GroupSetContainer => "VFIO_GROUP_SET_CONTAINER",
        IoctlError::UnsetContainer => "VFIO_GROUP_UNSET_CONTAINER",
        IoctlError::ContainerSetIOMMU(_) => "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)",
        IoctlError::GroupGetDeviceFD(_) => "VFIO_GROUP_GET_DEVICE_FD",
        IoctlError::VfioDeviceGetInfo(_)
        | IoctlError::VfioDeviceGetInfoPCI
        | IoctlError::VfioDeviceGetInfoOther => "VFIO_DEVICE_GET_INFO",
        IoctlError::VfioDeviceGetRegionInfo(_) => "VFIO_DEVICE_GET_REGION_INFO",
        IoctlError::VfioDeviceGetIrqInfo => "VFIO_DEVICE_GET_IRQ_INFO",
        IoctlError::InvalidPath => "read iommu_group link",
        IoctlError::IommuDmaMap(_) => "VFIO_IOMMU_MAP_DMA",
        IoctlError::IommuDmaUnmap(_) | IoctlError::InvalidDmaUnmapSize => "VFIO_IOMMU_UNMAP_DMA",
        _ => "VFIO operation",
    }
}

/// A failed vfio-ioctls operation on `path`.
pub(crate) fn ioctl(addr: &PciAddress, path: &Path, source: IoctlError) -> VfioError {
    VfioError::Ioctl {
        addr: *addr,
        op: op_name(&source),
        path: path.to_path_buf(),
        source,
    }
}

/// Opening the container (`/dev/vfio/vfio`, API version and type1v2 checks) failed.
pub(crate) fn container_error(addr: &PciAddress, e: IoctlError) -> VfioError {
    let path = Path::new(CONTAINER_PATH);
    match e {
        IoctlError::OpenContainer(e) if e.kind() == ErrorKind::NotFound => VfioError::ContainerMissing {
            addr: *addr,
            path: path.to_path_buf(),
        },
        IoctlError::OpenContainer(e) => open_error(addr, path, e),
        e => ioctl(addr, path, e),
    }
}

/// The group node vfio-ioctls opens for `checked`'s device: always under the real `/dev`, whatever devfs root the
/// pre-checks used.
pub(crate) fn group_node(checked: &Checked) -> std::path::PathBuf {
    Path::new(CONTAINER_PATH).with_file_name(checked.group.to_string())
}

/// Opening the device through its group (group node, status, set container, set IOMMU, device fd, device and
/// region info) failed. Group-level failures name the group node, the rest the device.
pub(crate) fn device_open_error(checked: &Checked, e: IoctlError) -> VfioError {
    let addr = &checked.addr;
    let group_path = group_node(checked);
    match e {
        IoctlError::OpenGroup(io, _) if io.kind() == ErrorKind::NotFound => VfioError::GroupNodeMissing {
            addr: *addr,
            group: checked.group,
            path: group_path,
        },
        IoctlError::OpenGroup(io, _) => open_error(addr, &group_path, io),
        IoctlError::GroupViable => VfioError::GroupNotViable {
            addr: *addr,
            group: checked.group,
            path: group_path,
            blockers: Vec::new(),
        },
        e @ (IoctlError::GetGroupStatus
        | IoctlError::GroupSetContainer
        | IoctlError::ContainerSetIOMMU(_)) => ioctl(addr, &group_path, e),
        e => ioctl(addr, &checked.device_path, e),
    }
}

/// `VFIO_IOMMU_MAP_DMA` of a DMA buffer failed (most often the locked-memory limit of a non-root user).
pub(crate) fn dma_map_error(addr: &PciAddress, iova: u64, size: usize, e: IoctlError) -> AccessError {
    AccessError::Io {
        what: format!(
            "VFIO_IOMMU_MAP_DMA of {size:#x} bytes at IOVA {iova:#x} for {addr} (on {CONTAINER_PATH}; as non-root, \
             raise the locked-memory limit: ulimit -l)"
        ),
        source: dma_errno(e),
    }
}

/// The OS error inside a DMA map/unmap failure.
fn dma_errno(e: IoctlError) -> std::io::Error {
    match e {
        IoctlError::IommuDmaMap(s) | IoctlError::IommuDmaUnmap(s) => {
            std::io::Error::from_raw_os_error(s.errno())
        }
        other => std::io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Error as IoError;
    use vmm_sys_util::errno::Error as SysError;

    fn checked() -> Checked {
        let f = super::super::sysfs::tests::Fake::viable();
        super::super::precheck(&f.roots, &PciAddress::parse("0000:03:00.0").unwrap()).unwrap()
    }

    fn addr() -> PciAddress {
        PciAddress::parse("0000:03:00.0").unwrap()
    }

    #[test]
    fn container_errors() {
        let e = container_error(
            &addr(),
            IoctlError::OpenContainer(IoError::from(ErrorKind::NotFound)),
        );
        assert!(matches!(e, VfioError::ContainerMissing { .. }), "{e:?}");
        assert!(
            e.to_string().contains("modprobe vfio-pci") && e.to_string().contains("0000:03:00.0"),
            "{e}"
        );

        let e = container_error(
            &addr(),
            IoctlError::OpenContainer(IoError::from_raw_os_error(libc::EACCES)),
        );
        assert!(matches!(e, VfioError::PermissionDenied { .. }), "{e:?}");
        assert!(e.to_string().contains("/dev/vfio/vfio"), "{e}");

        let e = container_error(&addr(), IoctlError::VfioType1V2);
        assert!(
            matches!(
                e,
                VfioError::Ioctl {
                    op: "VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU)",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = container_error(&addr(), IoctlError::VfioApiVersion);
        assert!(e.to_string().contains("VFIO_GET_API_VERSION"), "{e}");
    }

    #[test]
    fn device_open_errors_name_the_group_or_the_device() {
        let c = checked();
        let e = device_open_error(
            &c,
            IoctlError::OpenGroup(IoError::from(ErrorKind::NotFound), "7".into()),
        );
        assert!(
            matches!(&e, VfioError::GroupNodeMissing { group: 7, path, .. } if path == Path::new("/dev/vfio/7"))
        );

        let e = device_open_error(
            &c,
            IoctlError::OpenGroup(IoError::from_raw_os_error(libc::EBUSY), "7".into()),
        );
        assert!(matches!(e, VfioError::OpenNode { .. }), "{e:?}");
        assert!(e.to_string().contains("already in use"), "{e}");

        let e = device_open_error(&c, IoctlError::GroupViable);
        assert!(
            matches!(&e, VfioError::GroupNotViable { blockers, .. } if blockers.is_empty()),
            "{e:?}"
        );
        assert!(e.to_string().contains("the kernel reports"), "{e}");

        let e = device_open_error(&c, IoctlError::ContainerSetIOMMU(SysError::new(libc::EPERM)));
        assert!(
            matches!(&e, VfioError::Ioctl { op: "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)", path, .. } if path == Path::new("/dev/vfio/7")),
            "{e:?}"
        );

        let e = device_open_error(&c, IoctlError::GroupGetDeviceFD(SysError::new(libc::ENODEV)));
        assert!(
            matches!(&e, VfioError::Ioctl { op: "VFIO_GROUP_GET_DEVICE_FD", path, .. } if *path == c.device_path),
            "{e:?}"
        );
    }

    #[test]
    fn dma_map_errors_carry_the_errno_and_the_fix() {
        let e = dma_map_error(
            &addr(),
            0x100_0000,
            0x2000,
            IoctlError::IommuDmaMap(SysError::new(libc::ENOMEM)),
        );
        let AccessError::Io { what, source } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(source.raw_os_error(), Some(libc::ENOMEM));
        assert!(
            what.contains("ulimit -l") && what.contains("0x1000000") && what.contains("0000:03:00.0"),
            "{what}"
        );
    }

    #[test]
    fn every_operation_has_a_name() {
        assert_eq!(
            op_name(&IoctlError::IommuDmaUnmap(SysError::new(libc::EINVAL))),
            "VFIO_IOMMU_UNMAP_DMA"
        );
        assert_eq!(
            op_name(&IoctlError::GroupSetContainer),
            "VFIO_GROUP_SET_CONTAINER"
        );
        assert_eq!(
            op_name(&IoctlError::VfioDeviceGetRegionInfo(SysError::new(1))),
            "VFIO_DEVICE_GET_REGION_INFO"
        );
        assert_eq!(op_name(&IoctlError::DowncastVfioOps), "VFIO operation");
    }
}
