//! The driver's VFIO layer against a real Linux vfio-pci, inside the QEMU guest of tests/qemu/run.sh (software
//! emulation with an emulated Intel IOMMU). Every test here is ignored on the host: the harness builds this file
//! as a static test binary, boots a guest with its devices bound to vfio-pci, and runs it there with `--ignored
//! --test-threads=1` (one test at a time: a VFIO group can be opened by one container only).
//!
//! Devices of the guest, found by vendor:device in sysfs:
//! - QEMU `edu` (1234:11e8): BAR0 with an ID register, a liveness register and a DMA engine (docs/testing.md
//!   "QEMU VFIO harness"). Exercises open by PCI address, region info, BAR mapping, Bus Master Enable, DMA buffer
//!   allocation with VFIO_IOMMU_MAP_DMA and its removal with VFIO_IOMMU_UNMAP_DMA, a DMA round trip, the blocked
//!   DMA to an unmapped IOVA, and the errors for a wrong address, a device bound to another driver, a wrong BAR.
//! - `ivshmem-plain` (1af4:1110): BAR2 is the host's `ironlb-sim serve --no-dma` register file, so the driver's
//!   `Device` opens it through VFIO exactly as it opens a NIC's BAR0.
//! - a `pcie-root-port`, bound to the kernel's `pcieport` driver: the "bound to another driver" case.

#![cfg(target_os = "linux")]

use ironlb_driver::{
    CapsError, Device, DeviceAccess, DmaRegion, DriverError, VfioBackend, VfioError, PCI_COMMAND_MASTER,
    PCI_COMMAND_MEMORY,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// QEMU edu registers (QEMU docs/specs/edu.rst).
mod edu {
    pub const ID: u32 = 0x00;
    pub const ID_VALUE: u32 = 0x0100_00ed;
    pub const LIVENESS: u32 = 0x04;
    pub const DMA_SRC: u32 = 0x80;
    pub const DMA_DST: u32 = 0x88;
    pub const DMA_COUNT: u32 = 0x90;
    pub const DMA_CMD: u32 = 0x98;
    pub const CMD_RUN: u32 = 1;
    pub const CMD_TO_RAM: u32 = 2;
    /// The device-side address of edu's 4 KiB DMA buffer.
    pub const BUFFER: u64 = 0x40000;
    /// Largest transfer used: QEMU 7.2's edu aborts on transfers above 2048 bytes.
    pub const MAX_DMA: usize = 2048;
}

/// The PCI address of the first device with this vendor:device, from sysfs.
fn find(vendor: u16, device: u16) -> String {
    let want = (format!("{vendor:#06x}"), format!("{device:#06x}"));
    let dir = Path::new("/sys/bus/pci/devices");
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let read = |f: &str| {
            std::fs::read_to_string(p.join(f))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        if (read("vendor"), read("device")) == want {
            return p.file_name().unwrap().to_string_lossy().into_owned();
        }
    }
    panic!(
        "no PCI device {vendor:04x}:{device:04x} in {} (is this the QEMU guest of tests/qemu/run.sh?)",
        dir.display()
    )
}

fn edu_addr() -> String {
    find(0x1234, 0x11e8)
}

fn ivshmem_addr() -> String {
    find(0x1af4, 0x1110)
}

fn driver_of(addr: &str) -> Option<String> {
    let link = PathBuf::from(format!("/sys/bus/pci/devices/{addr}/driver"));
    std::fs::read_link(link)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn open_edu() -> VfioBackend {
    let addr = edu_addr();
    VfioBackend::open(&addr, 0).unwrap_or_else(|e| panic!("open edu {addr}: {e}"))
}

fn wait_dma(b: &mut VfioBackend) {
    let start = Instant::now();
    while b.read32(edu::DMA_CMD) & edu::CMD_RUN != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "edu DMA did not complete (DMA_CMD {:#x})",
            b.read32(edu::DMA_CMD)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Host memory -> edu buffer.
fn dma_to_device(b: &mut VfioBackend, iova: u64, len: usize) {
    assert!(
        len <= edu::MAX_DMA && iova < 1 << 28,
        "edu reaches 256 MiB of IOVA"
    );
    b.write32(edu::DMA_SRC, iova as u32);
    b.write32(edu::DMA_DST, edu::BUFFER as u32);
    b.write32(edu::DMA_COUNT, len as u32);
    b.write32(edu::DMA_CMD, edu::CMD_RUN);
    wait_dma(b);
}

/// edu buffer -> host memory.
fn dma_to_ram(b: &mut VfioBackend, iova: u64, len: usize) {
    assert!(
        len <= edu::MAX_DMA && iova < 1 << 28,
        "edu reaches 256 MiB of IOVA"
    );
    b.write32(edu::DMA_SRC, edu::BUFFER as u32);
    b.write32(edu::DMA_DST, iova as u32);
    b.write32(edu::DMA_COUNT, len as u32);
    b.write32(edu::DMA_CMD, edu::CMD_RUN | edu::CMD_TO_RAM);
    wait_dma(b);
}

fn fill(r: &DmaRegion, len: usize, seed: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    r.window().write_bytes(0, &data);
    data
}

fn read(r: &DmaRegion, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    r.window().read_bytes(0, &mut v);
    v
}

/// Kernel log lines reporting a DMA remapping fault at `iova`.
fn dmar_faults_at(iova: u64) -> Vec<String> {
    let out = std::process::Command::new("dmesg").output().expect("run dmesg");
    let needle = format!("fault addr {iova:#x}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("DMAR") || l.contains(&needle))
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "runs inside the QEMU guest: tests/qemu/run.sh"]
fn edu_open_maps_bar0_and_enables_bus_master() {
    let addr = edu_addr();
    let mut b = open_edu();
    assert_eq!(b.pci_address().to_string(), addr);
    assert_eq!(b.bar_index(), 0);
    // edu's BAR0 is 1 MiB; the whole BAR is mapped.
    assert_eq!(b.bar_len(), 1 << 20, "{b:?}");
    assert_eq!(b.read32(edu::ID), edu::ID_VALUE);
    for v in [0u32, 0x1234_5678, 0xffff_ffff] {
        b.write32(edu::LIVENESS, v);
        assert_eq!(b.read32(edu::LIVENESS), !v, "liveness register");
    }
    let cmd = b.command_register().unwrap();
    assert_ne!(cmd & PCI_COMMAND_MASTER, 0, "Bus Master Enable not set: {cmd:#x}");
    assert_ne!(
        cmd & PCI_COMMAND_MEMORY,
        0,
        "Memory Space Enable not set: {cmd:#x}"
    );
    let counts = b.counts();
    assert!(counts.reads >= 4 && counts.writes >= 3, "{counts:?}");
    // The group is taken while the backend lives: a second open fails and says so.
    let e = VfioBackend::open(&addr, 0).expect_err("a VFIO group opens once");
    let msg = e.to_string();
    assert!(msg.contains(&addr), "{msg}");
    eprintln!("second open of {addr}: {msg}");
    drop(b);
    // Dropping released it.
    drop(open_edu());
}

#[test]
#[ignore = "runs inside the QEMU guest: tests/qemu/run.sh"]
fn edu_dma_round_trip_through_the_iommu() {
    let mut b = open_edu();
    let len = edu::MAX_DMA;
    let src = b.alloc_dma(len).unwrap();
    let dst = b.alloc_dma(len).unwrap();
    assert_ne!(src.iova(), dst.iova());
    assert_eq!(src.iova() % 4096, 0);
    let data = fill(&src, len, 7);
    dst.window().write_bytes(0, &vec![0u8; len]);
    dma_to_device(&mut b, src.iova(), len);
    dma_to_ram(&mut b, dst.iova(), len);
    assert_eq!(read(&dst, len), data, "DMA round trip host -> edu -> host");
    // Again with other data and a short transfer at an offset into the buffer.
    let data2 = fill(&src, 64, 99);
    dma_to_device(&mut b, src.iova(), 64);
    dma_to_ram(&mut b, dst.iova(), 64);
    assert_eq!(read(&dst, 64), data2);
    assert_eq!(
        read(&dst, len)[64..],
        data[64..],
        "bytes beyond the transfer untouched"
    );
}

#[test]
#[ignore = "runs inside the QEMU guest: tests/qemu/run.sh"]
fn edu_dma_to_unmapped_iova_is_blocked_and_unmap_takes_effect() {
    let mut b = open_edu();
    let len = 512;
    let a = b.alloc_dma(len).unwrap();
    let filler = b.alloc_dma(len).unwrap();
    let out = b.alloc_dma(len).unwrap();
    let secret = fill(&a, len, 0x5a);
    let other = fill(&filler, len, 0x11);
    // While mapped, A is reachable.
    dma_to_device(&mut b, a.iova(), len);
    dma_to_ram(&mut b, out.iova(), len);
    assert_eq!(read(&out, len), secret);
    // Load other data into edu, then unmap A (VFIO_IOMMU_UNMAP_DMA when the region drops).
    dma_to_device(&mut b, filler.iova(), len);
    let a_iova = a.iova();
    drop(a);
    // A read from A's IOVA must now be blocked: edu must not see the secret again.
    dma_to_device(&mut b, a_iova, len);
    out.window().write_bytes(0, &vec![0u8; len]);
    dma_to_ram(&mut b, out.iova(), len);
    let got = read(&out, len);
    assert_ne!(
        got, secret,
        "DMA read from an unmapped IOVA {a_iova:#x} reached the old buffer"
    );
    eprintln!(
        "edu buffer after the blocked read from {a_iova:#x}: not the unmapped buffer's data; still the data loaded \
         before: {}",
        got == other
    );
    // A write to an IOVA never mapped is blocked too, and the IOMMU reports both faults.
    let never = 0x0f00_0000u64;
    dma_to_ram(&mut b, never, len);
    let start = Instant::now();
    loop {
        let (fa, fn_) = (dmar_faults_at(a_iova), dmar_faults_at(never));
        if !fa.is_empty() && !fn_.is_empty() {
            eprintln!("DMAR faults: {fa:?} {fn_:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no DMAR fault logged for IOVA {a_iova:#x} ({fa:?}) or {never:#x} ({fn_:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The mapped buffers still work after the faults.
    dma_to_device(&mut b, filler.iova(), len);
    dma_to_ram(&mut b, out.iova(), len);
    assert_eq!(read(&out, len), other);
}

#[test]
#[ignore = "runs inside the QEMU guest: tests/qemu/run.sh"]
fn clear_errors_for_wrong_address_bar_and_binding() {
    // No such device.
    let e = VfioBackend::open("0000:00:1e.7", 0).unwrap_err();
    assert!(matches!(e, VfioError::DeviceNotFound { .. }), "{e:?}");
    assert!(
        e.to_string().contains("0000:00:1e.7") && e.to_string().contains("lspci"),
        "{e}"
    );
    // Not a PCI address at all.
    let e = VfioBackend::open("edu", 0).unwrap_err();
    assert!(matches!(e, VfioError::InvalidAddress { .. }), "{e:?}");
    // A BAR edu does not implement.
    let edu = edu_addr();
    let e = VfioBackend::open(&edu, 1).unwrap_err();
    assert!(
        matches!(e, VfioError::BarNotImplemented { index: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains(&edu), "{e}");
    // ivshmem's BAR0 is its 256-byte register block, not the shared memory.
    let iv = ivshmem_addr();
    let e = VfioBackend::open(&iv, 0).unwrap_err();
    assert!(matches!(e, VfioError::BarTooSmall { index: 0, .. }), "{e:?}");
    eprintln!("{e}");
    // A device bound to a kernel driver (the harness adds a PCIe root port, bound to pcieport).
    let dir = Path::new("/sys/bus/pci/devices");
    let bound = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find_map(|a| driver_of(&a).filter(|d| d != "vfio-pci").map(|d| (a, d)))
        .expect("a PCI device bound to a driver other than vfio-pci (the harness's pcie-root-port)");
    let e = VfioBackend::open(&bound.0, 0).unwrap_err();
    assert!(
        matches!(&e, VfioError::BoundToOtherDriver { driver, .. } if *driver == bound.1),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&bound.0) && msg.contains(&bound.1) && msg.contains("vfio-pci"),
        "{msg}"
    );
    eprintln!("{msg}");
}

#[test]
#[ignore = "runs inside the QEMU guest: tests/qemu/run.sh"]
fn the_driver_refuses_a_device_that_is_not_ironlb() {
    let e = Device::open(Box::new(open_edu())).unwrap_err();
    assert!(
        matches!(
            e,
            DriverError::Caps(CapsError::BadMagic {
                found: edu::ID_VALUE,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("BAR index"), "{e}");
}

#[test]
#[ignore = "runs inside the QEMU guest: tests/qemu/run.sh"]
fn ivshmem_bar2_is_the_served_model_without_a_ring() {
    let addr = ivshmem_addr();
    let b = VfioBackend::open(&addr, 2).unwrap_or_else(|e| panic!("open ivshmem {addr}@2: {e}"));
    assert_eq!(b.bar_index(), 2);
    assert!(b.bar_len() >= ironlb_hw::regs::BAR0_SIZE, "{b:?}");
    let mut dev = Device::open(Box::new(b)).unwrap_or_else(|e| panic!("Device::open(vfio:{addr}@2): {e}"));
    assert_eq!(
        dev.caps().ring_max_log2,
        0,
        "the harness serves the model with --no-dma"
    );
    assert!(!dev.has_ring());
    // Read back everything the device holds: whole-table reads through the mailbox only.
    let snap = dev.read_state().unwrap();
    let stats = dev.command_stats();
    assert_eq!((stats.ring_batches, stats.ring_commands), (0, 0), "{stats:?}");
    assert!(stats.mailbox > 0, "{stats:?}");
    eprintln!("device at {addr}@2 holds {} LBs; {stats:?}", snap.lbs.len());
}
