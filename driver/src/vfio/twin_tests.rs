//! [`VfioBackend`] against the test twin of the kernel module (`sys_twin.rs`): the open sequence, every error path
//! after the pre-checks, DMA allocation and the teardown order, without an IOMMU or a vfio-pci device.

use super::sys::kernel;
use super::sysfs::tests::Fake;
use super::*;
use std::io::ErrorKind;
use vfio_ioctls::VfioError as IoctlError;
use vmm_sys_util::errno::Error as SysError;

const ADDR: &str = "0000:03:00.0";

/// Open through a fake sysfs tree that passes every pre-check, against this thread's scripted kernel.
fn open(bar_index: u32) -> (Result<VfioBackend, VfioError>, Fake) {
    let f = Fake::viable();
    (VfioBackend::open_with_roots(&f.roots, ADDR, bar_index), f)
}

fn log() -> Vec<String> {
    kernel(|k| std::mem::take(&mut k.log))
}

#[test]
fn opens_sets_bus_master_and_maps_the_bar() {
    let (b, _f) = open(0);
    let mut b = b.unwrap();
    assert_eq!(
        log(),
        [
            "open container",
            "open device",
            "config write 0x0006",
            "map BAR0 0x10000"
        ]
    );
    assert_eq!(
        b.command_register().unwrap(),
        PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER
    );
    assert_eq!(
        (b.pci_address().to_string(), b.iommu_group(), b.bar_index()),
        (ADDR.into(), 7, 0)
    );
    assert_eq!(b.bar_len(), 0x1_0000);
    b.write32(0x40, 0xdead_beef);
    assert_eq!(b.read32(0x40), 0xdead_beef);
    assert_eq!(b.counts(), AccessCounts { reads: 1, writes: 1 });
}

#[test]
fn bus_master_already_set_is_not_written_again() {
    kernel(|k| k.command = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    let (b, _f) = open(0);
    b.unwrap();
    assert!(!log().iter().any(|l| l.starts_with("config write")));
}

#[test]
fn a_bus_master_bit_that_does_not_stick_still_opens() {
    // Logged as a warning (the device cannot DMA); registers still work through the mailbox.
    kernel(|k| k.bus_master_sticks = false);
    let (b, _f) = open(0);
    let b = b.unwrap();
    assert_eq!(b.command_register().unwrap() & PCI_COMMAND_MASTER, 0);
}

#[test]
fn a_missing_container_names_the_module_to_load() {
    kernel(|k| k.container_error = Some(|| IoctlError::OpenContainer(ErrorKind::NotFound.into())));
    let (e, _f) = open(2);
    let e = e.unwrap_err();
    assert!(matches!(e, VfioError::ContainerMissing { .. }), "{e:?}");
    assert!(
        e.to_string().contains("modprobe vfio-pci") && e.to_string().contains(ADDR),
        "{e}"
    );
    assert_eq!(log(), Vec::<String>::new());
}

#[test]
fn a_container_without_type1v2_is_an_ioctl_error() {
    kernel(|k| k.container_error = Some(|| IoctlError::VfioType1V2));
    let e = open(0).0.unwrap_err();
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
}

#[test]
fn device_open_failures_close_the_container() {
    type Failure = fn() -> IoctlError;
    let cases: [(Failure, &str); 4] = [
        (
            || IoctlError::OpenGroup(ErrorKind::NotFound.into(), "7".into()),
            "GroupNodeMissing",
        ),
        (
            || IoctlError::OpenGroup(ErrorKind::PermissionDenied.into(), "7".into()),
            "PermissionDenied",
        ),
        (|| IoctlError::GroupViable, "GroupNotViable"),
        (
            || IoctlError::GroupGetDeviceFD(SysError::new(libc::EBUSY)),
            "Ioctl",
        ),
    ];
    for (err, variant) in cases {
        kernel(|k| k.device_error = Some(err));
        let e = open(0).0.unwrap_err();
        assert!(format!("{e:?}").starts_with(variant), "{variant}: {e:?}");
        assert!(e.to_string().contains(ADDR), "{e}");
        assert_eq!(log(), ["open container", "close container"], "{variant}");
    }
}

#[test]
fn bar_problems_close_device_then_container() {
    // Not implemented (no region info scripted for BAR2), then too small.
    let e = open(2).0.unwrap_err();
    assert!(
        matches!(e, VfioError::BarNotImplemented { index: 2, .. }),
        "{e:?}"
    );
    assert_eq!(
        log(),
        ["open container", "open device", "close device", "close container"]
    );

    kernel(|k| k.regions.insert(0, RegionInfo::bar(0x1000)));
    let e = open(0).0.unwrap_err();
    assert!(matches!(e, VfioError::BarTooSmall { size: 0x1000, .. }), "{e:?}");
}

#[test]
fn config_space_failures_are_reported_with_the_operation() {
    kernel(|k| k.config_read_error = Some(ErrorKind::PermissionDenied));
    let e = open(0).0.unwrap_err();
    assert!(matches!(e, VfioError::ConfigSpace { op: "read", .. }), "{e:?}");
    kernel(|k| {
        k.config_read_error = None;
        k.config_write_error = Some(ErrorKind::Other);
    });
    let e = open(0).0.unwrap_err();
    assert!(matches!(e, VfioError::ConfigSpace { op: "write", .. }), "{e:?}");
    assert!(
        e.to_string().contains("PCI config space write") && e.to_string().contains(ADDR),
        "{e}"
    );
}

#[test]
fn a_failed_bar_mmap_closes_device_then_container() {
    kernel(|k| k.mmap_error = Some(ErrorKind::OutOfMemory));
    let e = open(0).0.unwrap_err();
    assert!(matches!(e, VfioError::Mmap { index: 0, .. }), "{e:?}");
    let l = log();
    assert_eq!(l[l.len() - 2..], ["close device", "close container"]);
}

#[test]
fn dma_buffers_get_page_aligned_iovas_and_map_errors_say_how_to_fix() {
    let (b, _f) = open(0);
    let mut b = b.unwrap();
    let r1 = b.alloc_dma(100).unwrap();
    let r2 = b.alloc_dma(0x1001).unwrap();
    assert_eq!((r1.iova(), r2.iova()), (IOVA_BASE, IOVA_BASE + 0x1000));
    r1.window().write32(0, 7);
    assert_eq!(r1.window().read32(0), 7);

    kernel(|k| k.dma_map_errno = Some(libc::ENOMEM));
    let e = b.alloc_dma(4096).unwrap_err();
    let AccessError::Io { what, source } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(source.raw_os_error(), Some(libc::ENOMEM));
    assert!(what.contains("ulimit -l") && what.contains(ADDR), "{what}");
}

#[test]
fn teardown_unmaps_the_bar_then_closes_device_then_container() {
    let (b, _f) = open(0);
    log();
    drop(b.unwrap());
    assert_eq!(log(), ["unmap BAR", "close device", "close container"]);

    let (b, _f) = open(0);
    let mut b = b.unwrap();
    let dma = b.alloc_dma(64).unwrap();
    log();
    drop(b);
    // The live DMA buffer still holds its share of the container: the container closes after it.
    assert_eq!(log(), ["unmap BAR", "close device"]);
    drop(dma);
    assert_eq!(
        log(),
        [format!("unmap DMA {IOVA_BASE:#x}"), "close container".into()]
    );
}
