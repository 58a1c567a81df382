//! The sim-shm backend against device files it must not trust (issue 12 item 11): files at the model's prefix made
//! by another user or open to other users are refused with an error naming the file; a BAR file shorter than the
//! register file is refused on every backend instead of panicking the driver.

use ironlb_driver::{
    AccessCounts, AccessError, Device, DeviceAccess, DmaRegion, DriverError, ShmBackend, ShmPaths,
};
use ironlb_hw::regs::{BAR0_SIZE, ID_MAGIC};
use ironlb_sim::ServeArgs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn write_bar(path: &Path, len: usize, mode: u32) {
    let mut bytes = vec![0u8; len];
    bytes[..4].copy_from_slice(&ID_MAGIC.to_le_bytes());
    std::fs::write(path, &bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn open_err(prefix: &Path) -> String {
    match ShmBackend::open(&ShmPaths::from_prefix(prefix)) {
        Ok(_) => panic!("{} was accepted", prefix.display()),
        Err(e) => format!(
            "{e}: {}",
            std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
        ),
    }
}

#[test]
fn a_100_byte_bar_file_with_a_valid_id_is_refused_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("dev");
    write_bar(&d.path().join("dev.bar"), 100, 0o600);
    let e = open_err(&prefix);
    assert!(
        e.contains("dev.bar") && e.contains("100 bytes") && e.contains(&BAR0_SIZE.to_string()),
        "{e}"
    );
}

/// Another user's files, writable by everyone, at the prefix: the driver refuses them (it used to program them).
#[test]
fn files_owned_by_another_user_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let bar = d.path().join("dev.bar");
    write_bar(&bar, BAR0_SIZE, 0o666);
    std::os::unix::fs::chown(&bar, Some(65534), Some(65534)).unwrap();
    let e = open_err(&d.path().join("dev"));
    assert!(e.contains("dev.bar") && e.contains("owned by uid 65534"), "{e}");
}

#[test]
fn own_files_open_to_other_users_are_refused() {
    let d = tempfile::tempdir().unwrap();
    write_bar(&d.path().join("dev.bar"), BAR0_SIZE, 0o644);
    let e = open_err(&d.path().join("dev"));
    assert!(e.contains("dev.bar") && e.contains("mode 0644"), "{e}");
    // The host-memory file is checked too.
    let d = tempfile::tempdir().unwrap();
    write_bar(&d.path().join("dev.bar"), BAR0_SIZE, 0o600);
    write_bar(&d.path().join("dev.host"), 1 << 20, 0o666);
    let e = open_err(&d.path().join("dev"));
    assert!(e.contains("dev.host") && e.contains("mode 0666"), "{e}");
}

#[test]
fn a_symlink_or_fifo_at_the_bar_path_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_bar(&d.path().join("real.bar"), BAR0_SIZE, 0o600);
    std::os::unix::fs::symlink(d.path().join("real.bar"), d.path().join("dev.bar")).unwrap();
    assert!(open_err(&d.path().join("dev")).contains("symlink"));
    let fifo = d.path().join("f.bar");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    assert!(open_err(&d.path().join("f")).contains("not a regular file"));
}

/// The model creates its files 0600 and refuses to reuse another user's.
#[test]
fn the_model_creates_private_files_and_refuses_foreign_ones() {
    let d = tempfile::tempdir().unwrap();
    let args = |n: &str| ServeArgs {
        bar: d.path().join(format!("{n}.bar")),
        host_mem: d.path().join(format!("{n}.host")),
        host_mem_len: Some(1 << 20),
        host_iova_base: 0x1_0000_0000,
        small: true,
        bar_offset: 0,
        no_dma: false,
        tun: Vec::new(),
    };
    let a = args("new");
    drop(a.open_device().unwrap());
    for p in [&a.bar, &a.host_mem] {
        assert_eq!(
            std::fs::metadata(p).unwrap().mode() & 0o777,
            0o600,
            "{}",
            p.display()
        );
    }
    // The driver accepts what the model made.
    assert!(ShmBackend::open(&ShmPaths {
        bar: a.bar.clone(),
        host: a.host_mem.clone(),
        host_iova_base: 0x1_0000_0000,
    })
    .is_ok());
    let b = args("foreign");
    write_bar(&b.bar, BAR0_SIZE, 0o666);
    std::os::unix::fs::chown(&b.bar, Some(65534), Some(65534)).unwrap();
    let e = b.open_device().unwrap_err();
    assert!(
        e.contains("foreign.bar") && e.contains("owned by uid 65534"),
        "{e}"
    );
}

/// A backend whose BAR is shorter than the register file (any backend: the check is in `Device::open`).
struct ShortBar(Vec<u32>);

impl DeviceAccess for ShortBar {
    fn bar_len(&self) -> usize {
        self.0.len() * 4
    }
    fn read32(&mut self, offset: u32) -> u32 {
        self.0[offset as usize / 4]
    }
    fn write32(&mut self, offset: u32, value: u32) {
        self.0[offset as usize / 4] = value;
    }
    fn alloc_dma(&mut self, len: usize) -> Result<DmaRegion, AccessError> {
        Err(AccessError::DmaAlloc {
            len,
            reason: "none".into(),
        })
    }
    fn counts(&self) -> AccessCounts {
        AccessCounts::default()
    }
}

#[test]
fn every_backend_checks_the_bar_length() {
    let mut words = vec![0u32; 25];
    words[0] = ID_MAGIC;
    match Device::open(Box::new(ShortBar(words))) {
        Err(DriverError::Access(AccessError::BarTooSmall { len: 100, need, .. })) => {
            assert_eq!(need, BAR0_SIZE)
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a 100-byte BAR was accepted"),
    }
}

/// Issue 12 item 10 for the device: the driver's lock on a sim-shm device is an `flock` of the BAR file, so a user
/// who could open it could hold that lock and keep every daemon off the device. The model's files are 0600: another
/// local user (uid 65534) cannot open, hence cannot lock, them, even in a directory everyone can enter.
#[test]
fn other_users_cannot_take_the_device_lock() {
    use std::os::unix::process::CommandExt as _;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = ServeArgs {
        bar: d.path().join("dev.bar"),
        host_mem: d.path().join("dev.host"),
        host_mem_len: Some(1 << 20),
        host_iova_base: 0x1_0000_0000,
        small: true,
        bar_offset: 0,
        no_dma: false,
        tun: Vec::new(),
    };
    drop(args.open_device().unwrap());
    for p in [&args.bar, &args.host_mem] {
        let out = std::process::Command::new("flock")
            .args(["-n", "-s"])
            .arg(p)
            .arg("true")
            .uid(65534)
            .gid(65534)
            .output()
            .expect("flock (util-linux)");
        assert!(
            !out.status.success(),
            "user 65534 could open and lock {}",
            p.display()
        );
    }
    // The owner's driver attaches (and takes the lock) as before.
    assert!(ShmBackend::open(&ShmPaths {
        bar: args.bar.clone(),
        host: args.host_mem.clone(),
        host_iova_base: 0x1_0000_0000,
    })
    .is_ok());
}
