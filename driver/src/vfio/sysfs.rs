//! Pre-checks before any VFIO ioctl: pure file-system reads of sysfs and devfs.
//!
//! Everything the kernel would reject with a bare errno is checked here first so that the user gets an error that
//! says what to do: the PCI address parses, the device exists, it has an IOMMU group, it is bound to vfio-pci,
//! every other device of its group is harmless (unbound or bound to a VFIO-capable driver), and the VFIO character
//! devices exist and can be opened read-write. The roots (`/sys`, `/dev`) are parameters ([`VfioRoots`]) so the
//! checks are unit-tested against fake trees; nothing else differs between the tests and a real machine.

use super::VfioError;
use std::fmt;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The driver a device must be bound to.
pub const VFIO_PCI: &str = "vfio-pci";

/// Where sysfs and devfs are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfioRoots {
    /// sysfs mount point (`/sys`).
    pub sysfs: PathBuf,
    /// devfs mount point (`/dev`).
    pub devfs: PathBuf,
}

impl Default for VfioRoots {
    fn default() -> Self {
        VfioRoots {
            sysfs: PathBuf::from("/sys"),
            devfs: PathBuf::from("/dev"),
        }
    }
}

/// A PCI function address, `DDDD:BB:DD.F` (domain, bus, device, function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddress {
    /// PCI segment (domain); 16 bits on most machines, up to 32 on some (Intel VMD uses `10000`).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl PciAddress {
    /// Parse `DDDD:BB:DD.F` or `BB:DD.F` (domain 0000), hexadecimal, case-insensitive.
    pub fn parse(s: &str) -> Result<PciAddress, VfioError> {
        let bad = |reason: &'static str| VfioError::InvalidAddress {
            input: s.to_string(),
            reason,
        };
        let (rest, function) = s
            .rsplit_once('.')
            .ok_or_else(|| bad("missing `.F` function part"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (*d, *b, *dev),
            [b, dev] => ("0000", *b, *dev),
            _ => {
                return Err(bad(
                    "expected two or three `:`-separated fields before the function",
                ))
            }
        };
        let hex = |field: &str, max_digits: usize, what: &'static str| -> Result<u32, VfioError> {
            if field.is_empty() || field.len() > max_digits || !field.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(what));
            }
            u32::from_str_radix(field, 16).map_err(|_| bad(what))
        };
        let domain = hex(domain, 8, "domain must be 1-8 hex digits")?;
        let bus = hex(bus, 2, "bus must be 1-2 hex digits")?;
        let device = hex(device, 2, "device must be 1-2 hex digits")?;
        let function = hex(function, 1, "function must be one digit 0-7")?;
        if device > 0x1f {
            return Err(bad("device number must be 00-1f"));
        }
        if function > 7 {
            return Err(bad("function must be one digit 0-7"));
        }
        Ok(PciAddress {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl FromStr for PciAddress {
    type Err = VfioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PciAddress::parse(s)
    }
}

impl fmt::Display for PciAddress {
    /// The kernel's spelling: `0000:03:00.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Another device of the IOMMU group and the driver it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Its sysfs name (a PCI address for PCI devices).
    pub name: String,
    /// Bound driver, `None` when unbound.
    pub driver: Option<String>,
}

impl fmt::Display for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.driver {
            Some(d) => write!(f, "{} (bound to {d})", self.name),
            None => write!(f, "{} (no driver)", self.name),
        }
    }
}

/// What the pre-checks established; the input of the ioctl layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The device.
    pub addr: PciAddress,
    /// `SYSFS/bus/pci/devices/ADDR` (what vfio-ioctls is given).
    pub device_path: PathBuf,
    /// IOMMU group number.
    pub group: u32,
    /// Driver the device is bound to (vfio-pci or a vendor vfio-pci variant).
    pub driver: String,
    /// The other devices of the group (all viable).
    pub group_members: Vec<GroupMember>,
    /// `DEVFS/vfio/vfio`.
    pub container_path: PathBuf,
    /// `DEVFS/vfio/GROUP`.
    pub group_path: PathBuf,
}

/// True for vfio-pci and the vendor variant drivers built on vfio-pci-core (`mlx5_vfio_pci`, ...).
pub fn is_vfio_driver(driver: &str) -> bool {
    driver == VFIO_PCI || driver.ends_with("_vfio_pci") || driver.ends_with("-vfio-pci")
}

/// The kernel's group-viability rule for the *other* devices of a group: each is unbound, bound to a VFIO driver,
/// or bound to a driver that never does DMA on its own behalf (`pci-stub`, the PCIe port driver of a bridge).
pub fn member_is_viable(driver: Option<&str>) -> bool {
    match driver {
        None => true,
        Some(d) => is_vfio_driver(d) || d == "pci-stub" || d == "pcieport",
    }
}

/// The shell steps that hand `addr` to vfio-pci (`unbind` only when it is bound to another driver now).
pub(crate) fn bind_advice(addr: &PciAddress, device_path: &Path, bound: bool) -> String {
    let dev = device_path.display();
    let probe = device_path
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("drivers_probe").display().to_string())
        .unwrap_or_else(|| "/sys/bus/pci/drivers_probe".into());
    let unbind = if bound {
        format!("echo {addr} > {dev}/driver/unbind; ")
    } else {
        String::new()
    };
    format!("modprobe vfio-pci; echo vfio-pci > {dev}/driver_override; {unbind}echo {addr} > {probe}")
}

/// Turn a failed read-write open of a VFIO node into the matching error.
pub(crate) fn open_error(addr: &PciAddress, path: &Path, source: std::io::Error) -> VfioError {
    match source.kind() {
        ErrorKind::PermissionDenied => VfioError::PermissionDenied {
            addr: *addr,
            path: path.to_path_buf(),
            source,
        },
        _ => VfioError::OpenNode {
            addr: *addr,
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The last path component of a symlink's target (`../../../bus/pci/drivers/vfio-pci` -> `vfio-pci`).
fn link_name(addr: &PciAddress, link: &Path) -> Result<Option<String>, VfioError> {
    match std::fs::read_link(link) {
        Ok(target) => match target.file_name().and_then(|n| n.to_str()) {
            Some(n) => Ok(Some(n.to_string())),
            None => Err(VfioError::BadSysfsEntry {
                addr: *addr,
                path: link.to_path_buf(),
                detail: format!("symlink target {} has no usable last component", target.display()),
            }),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(VfioError::SysfsIo {
            addr: *addr,
            path: link.to_path_buf(),
            source,
        }),
    }
}

/// The IOMMU group number of the device at `device_path`.
pub(crate) fn iommu_group(addr: &PciAddress, device_path: &Path) -> Result<u32, VfioError> {
    let link = device_path.join("iommu_group");
    let name = link_name(addr, &link)?.ok_or_else(|| VfioError::NoIommuGroup {
        addr: *addr,
        path: link.clone(),
    })?;
    name.parse::<u32>().map_err(|_| VfioError::BadSysfsEntry {
        addr: *addr,
        path: link,
        detail: format!("points to group {name:?}, not a group number"),
    })
}

/// The members of IOMMU group `group` other than `addr`, with their drivers.
pub(crate) fn group_members(
    roots: &VfioRoots,
    addr: &PciAddress,
    group: u32,
) -> Result<(PathBuf, Vec<GroupMember>), VfioError> {
    let dir = roots
        .sysfs
        .join("kernel/iommu_groups")
        .join(group.to_string())
        .join("devices");
    let entries = std::fs::read_dir(&dir).map_err(|source| VfioError::SysfsIo {
        addr: *addr,
        path: dir.clone(),
        source,
    })?;
    let me = addr.to_string();
    let mut members = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| VfioError::SysfsIo {
            addr: *addr,
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == me {
            continue;
        }
        let driver = link_name(addr, &entry.path().join("driver"))?;
        members.push(GroupMember { name, driver });
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((dir, members))
}

/// Check that the VFIO node `path` exists and opens read-write (the file is closed again at once).
fn check_node(addr: &PciAddress, path: &Path, missing: impl FnOnce() -> VfioError) -> Result<(), VfioError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(open_error(addr, path, e)),
        Ok(_) => {}
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| open_error(addr, path, e))
}

/// Run every pre-check for `addr` under `roots`, in the order a user has to fix them.
pub fn precheck(roots: &VfioRoots, addr: &PciAddress) -> Result<Checked, VfioError> {
    let device_path = roots.sysfs.join("bus/pci/devices").join(addr.to_string());
    match std::fs::metadata(&device_path) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(VfioError::DeviceNotFound {
                addr: *addr,
                path: device_path,
            })
        }
        Err(source) => {
            return Err(VfioError::SysfsIo {
                addr: *addr,
                path: device_path,
                source,
            })
        }
    }

    let group = iommu_group(addr, &device_path)?;

    let driver_link = device_path.join("driver");
    let driver = match link_name(addr, &driver_link)? {
        Some(d) if is_vfio_driver(&d) => d,
        Some(driver) => {
            return Err(VfioError::BoundToOtherDriver {
                addr: *addr,
                driver,
                device_path,
            })
        }
        None => {
            return Err(VfioError::NotBound {
                addr: *addr,
                path: driver_link,
                device_path,
            })
        }
    };

    let (group_dir, group_members) = group_members(roots, addr, group)?;
    let blockers: Vec<GroupMember> = group_members
        .iter()
        .filter(|m| !member_is_viable(m.driver.as_deref()))
        .cloned()
        .collect();
    if !blockers.is_empty() {
        return Err(VfioError::GroupNotViable {
            addr: *addr,
            group,
            path: group_dir,
            blockers,
        });
    }

    let vfio_dir = roots.devfs.join("vfio");
    let container_path = vfio_dir.join("vfio");
    check_node(addr, &container_path, || VfioError::ContainerMissing {
        addr: *addr,
        path: container_path.clone(),
    })?;
    let group_path = vfio_dir.join(group.to_string());
    check_node(addr, &group_path, || VfioError::GroupNodeMissing {
        addr: *addr,
        group,
        path: group_path.clone(),
    })?;

    Ok(Checked {
        addr: *addr,
        device_path,
        group,
        driver,
        group_members,
        container_path,
        group_path,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const ADDR: &str = "0000:03:00.0";

    /// A fake `/sys` + `/dev` in a tempdir, laid out like the kernel's (devices are symlinks into
    /// `devices/pci0000:00/`, `iommu_group` and `driver` are symlinks).
    pub(crate) struct Fake {
        _dir: tempfile::TempDir,
        pub(crate) roots: VfioRoots,
    }

    impl Fake {
        pub(crate) fn new() -> Fake {
            let dir = tempfile::tempdir().expect("tempdir");
            let roots = VfioRoots {
                sysfs: dir.path().join("sys"),
                devfs: dir.path().join("dev"),
            };
            for d in [
                "bus/pci/devices",
                "bus/pci/drivers",
                "devices/pci0000:00",
                "kernel/iommu_groups",
            ] {
                std::fs::create_dir_all(roots.sysfs.join(d)).unwrap();
            }
            Fake { _dir: dir, roots }
        }
        fn sys(&self, p: &str) -> PathBuf {
            self.roots.sysfs.join(p)
        }
        /// Add a device, optionally in a group and bound to a driver.
        fn device(&self, addr: &str, group: Option<u32>, driver: Option<&str>) -> &Self {
            let real = self.sys("devices/pci0000:00").join(addr);
            std::fs::create_dir_all(&real).unwrap();
            symlink(&real, self.sys("bus/pci/devices").join(addr)).unwrap();
            if let Some(g) = group {
                let gdir = self.sys("kernel/iommu_groups").join(g.to_string());
                std::fs::create_dir_all(gdir.join("devices")).unwrap();
                symlink(&gdir, real.join("iommu_group")).unwrap();
                symlink(&real, gdir.join("devices").join(addr)).unwrap();
            }
            if let Some(d) = driver {
                let ddir = self.sys("bus/pci/drivers").join(d);
                std::fs::create_dir_all(&ddir).unwrap();
                symlink(&ddir, real.join("driver")).unwrap();
            }
            self
        }
        fn node(&self, name: &str) -> &Self {
            let dir = self.roots.devfs.join("vfio");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), b"").unwrap();
            self
        }
        /// A device bound to vfio-pci, alone in group 7, with both VFIO nodes.
        pub(crate) fn viable() -> Fake {
            let f = Fake::new();
            f.device(ADDR, Some(7), Some("vfio-pci")).node("vfio").node("7");
            f
        }
        fn check(&self) -> Result<Checked, VfioError> {
            precheck(&self.roots, &PciAddress::parse(ADDR).unwrap())
        }
    }

    fn assert_msg(e: &VfioError, needles: &[&str]) {
        let msg = e.to_string();
        for n in needles {
            assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
        }
    }

    #[test]
    fn parses_and_prints_addresses() {
        let a = PciAddress::parse("0000:03:00.0").unwrap();
        assert_eq!(
            a,
            PciAddress {
                domain: 0,
                bus: 3,
                device: 0,
                function: 0
            }
        );
        assert_eq!(a.to_string(), "0000:03:00.0");
        assert_eq!(PciAddress::parse("03:00.0").unwrap(), a);
        assert_eq!(
            PciAddress::parse("0001:AF:1f.7").unwrap().to_string(),
            "0001:af:1f.7"
        );
        assert_eq!(
            PciAddress::parse("10000:00:00.0").unwrap().to_string(),
            "10000:00:00.0"
        );
        assert_eq!("3:0.1".parse::<PciAddress>().unwrap().to_string(), "0000:03:00.1");
    }

    #[test]
    fn rejects_bad_addresses_with_the_expected_form() {
        for bad in [
            "",
            "03:00",
            "0000:03:00:00.0",
            "0000:03:20.0",
            "0000:03:00.8",
            "0000:3g:00.0",
            "0000:123:00.0",
            "x",
        ] {
            let e = PciAddress::parse(bad).unwrap_err();
            assert!(matches!(e, VfioError::InvalidAddress { .. }), "{bad:?}: {e:?}");
            assert_msg(&e, &[&format!("{bad:?}"), "DDDD:BB:DD.F", "0000:03:00.0"]);
        }
    }

    #[test]
    fn viable_device_passes() {
        let f = Fake::viable();
        // A bridge and an unbound function in the same group are fine.
        f.device("0000:00:01.0", Some(7), Some("pcieport"))
            .device("0000:03:00.1", Some(7), None);
        let c = f.check().expect("pre-checks pass");
        assert_eq!(c.group, 7);
        assert_eq!(c.driver, "vfio-pci");
        assert_eq!(c.device_path, f.sys("bus/pci/devices/0000:03:00.0"));
        assert_eq!(c.container_path, f.roots.devfs.join("vfio/vfio"));
        assert_eq!(c.group_path, f.roots.devfs.join("vfio/7"));
        assert_eq!(
            c.group_members,
            vec![
                GroupMember {
                    name: "0000:00:01.0".into(),
                    driver: Some("pcieport".into())
                },
                GroupMember {
                    name: "0000:03:00.1".into(),
                    driver: None
                },
            ]
        );
    }

    #[test]
    fn short_address_means_domain_zero() {
        let f = Fake::viable();
        let c = precheck(&f.roots, &PciAddress::parse("03:00.0").unwrap()).unwrap();
        assert_eq!(c.addr.to_string(), ADDR);
    }

    #[test]
    fn vendor_vfio_variant_driver_is_accepted() {
        let f = Fake::new();
        f.device(ADDR, Some(2), Some("mlx5_vfio_pci"))
            .node("vfio")
            .node("2");
        assert_eq!(f.check().unwrap().driver, "mlx5_vfio_pci");
    }

    #[test]
    fn missing_device() {
        let f = Fake::new();
        let e = f.check().unwrap_err();
        assert!(matches!(e, VfioError::DeviceNotFound { .. }), "{e:?}");
        assert_msg(
            &e,
            &[
                ADDR,
                &f.sys("bus/pci/devices/0000:03:00.0").display().to_string(),
                "lspci",
            ],
        );
    }

    #[test]
    fn no_iommu_group() {
        let f = Fake::new();
        f.device(ADDR, None, Some("vfio-pci"));
        let e = f.check().unwrap_err();
        assert!(matches!(e, VfioError::NoIommuGroup { .. }), "{e:?}");
        let link = f.sys("bus/pci/devices/0000:03:00.0/iommu_group");
        assert_msg(
            &e,
            &[
                ADDR,
                &link.display().to_string(),
                "the kernel has no IOMMU for this device",
                "intel_iommu=on",
                "amd_iommu=on",
            ],
        );
    }

    #[test]
    fn iommu_group_link_to_a_non_number() {
        let f = Fake::new();
        f.device(ADDR, None, Some("vfio-pci"));
        symlink(
            "../../kernel/iommu_groups/abc",
            f.sys("devices/pci0000:00/0000:03:00.0/iommu_group"),
        )
        .unwrap();
        let e = f.check().unwrap_err();
        assert!(matches!(e, VfioError::BadSysfsEntry { .. }), "{e:?}");
        assert_msg(&e, &[ADDR, "iommu_group", "\"abc\""]);
    }

    #[test]
    fn bound_to_another_driver() {
        let f = Fake::new();
        f.device(ADDR, Some(7), Some("ixgbe")).node("vfio").node("7");
        let e = f.check().unwrap_err();
        assert!(
            matches!(&e, VfioError::BoundToOtherDriver { driver, .. } if driver == "ixgbe"),
            "{e:?}"
        );
        let dev = f.sys("bus/pci/devices/0000:03:00.0").display().to_string();
        assert_msg(
            &e,
            &[
                ADDR,
                "ixgbe",
                "unbind it and bind to vfio-pci",
                &format!("echo vfio-pci > {dev}/driver_override"),
                &format!("echo {ADDR} > {dev}/driver/unbind"),
                &format!("echo {ADDR} > {}", f.sys("bus/pci/drivers_probe").display()),
            ],
        );
    }

    #[test]
    fn not_bound_to_any_driver() {
        let f = Fake::new();
        f.device(ADDR, Some(7), None).node("vfio").node("7");
        let e = f.check().unwrap_err();
        assert!(matches!(e, VfioError::NotBound { .. }), "{e:?}");
        let dev = f.sys("bus/pci/devices/0000:03:00.0").display().to_string();
        assert_msg(
            &e,
            &[
                ADDR,
                &format!("{dev}/driver"),
                "not bound to any driver",
                "bind it to vfio-pci",
                &format!("echo vfio-pci > {dev}/driver_override"),
                &format!("echo {ADDR} > {}", f.sys("bus/pci/drivers_probe").display()),
            ],
        );
        assert!(!e.to_string().contains("unbind"), "nothing to unbind: {e}");
    }

    #[test]
    fn group_not_viable_names_the_other_devices() {
        let f = Fake::viable();
        f.device("0000:03:00.1", Some(7), Some("ixgbe"))
            .device("0000:03:00.2", Some(7), Some("vfio-pci"))
            .device("0000:03:00.3", Some(7), Some("nvme"));
        let e = f.check().unwrap_err();
        match &e {
            VfioError::GroupNotViable { group, blockers, .. } => {
                assert_eq!(*group, 7);
                let names: Vec<&str> = blockers.iter().map(|m| m.name.as_str()).collect();
                assert_eq!(names, ["0000:03:00.1", "0000:03:00.3"]);
            }
            other => panic!("{other:?}"),
        }
        assert_msg(
            &e,
            &[
                ADDR,
                "IOMMU group 7",
                &f.sys("kernel/iommu_groups/7/devices").display().to_string(),
                "0000:03:00.1 (bound to ixgbe)",
                "0000:03:00.3 (bound to nvme)",
                "vfio-pci",
            ],
        );
        assert!(
            !e.to_string().contains("0000:03:00.2"),
            "viable member listed: {e}"
        );
    }

    #[test]
    fn container_node_missing() {
        let f = Fake::new();
        f.device(ADDR, Some(7), Some("vfio-pci")).node("7");
        std::fs::remove_file(f.roots.devfs.join("vfio/vfio")).ok();
        let e = f.check().unwrap_err();
        assert!(matches!(e, VfioError::ContainerMissing { .. }), "{e:?}");
        let p = f.roots.devfs.join("vfio/vfio").display().to_string();
        assert_msg(&e, &[ADDR, &p, "load the vfio-pci module: modprobe vfio-pci"]);
    }

    #[test]
    fn container_node_missing_when_no_vfio_dir() {
        let f = Fake::new();
        f.device(ADDR, Some(7), Some("vfio-pci"));
        let e = f.check().unwrap_err();
        assert!(matches!(e, VfioError::ContainerMissing { .. }), "{e:?}");
    }

    #[test]
    fn group_node_missing() {
        let f = Fake::new();
        f.device(ADDR, Some(7), Some("vfio-pci")).node("vfio");
        let e = f.check().unwrap_err();
        assert!(matches!(e, VfioError::GroupNodeMissing { group: 7, .. }), "{e:?}");
        assert_msg(
            &e,
            &[
                ADDR,
                &f.roots.devfs.join("vfio/7").display().to_string(),
                "modprobe vfio-pci",
            ],
        );
    }

    #[test]
    fn permission_denied_message() {
        let path = Path::new("/dev/vfio/7");
        let addr = PciAddress::parse(ADDR).unwrap();
        let e = open_error(&addr, path, std::io::Error::from(ErrorKind::PermissionDenied));
        assert!(matches!(e, VfioError::PermissionDenied { .. }), "{e:?}");
        assert_msg(
            &e,
            &[
                ADDR,
                "/dev/vfio/7",
                "run as root or give the user access to /dev/vfio/7",
            ],
        );
        assert!(std::error::Error::source(&e).is_some());

        let busy = open_error(&addr, path, std::io::Error::from_raw_os_error(libc::EBUSY));
        assert!(matches!(busy, VfioError::OpenNode { .. }), "{busy:?}");
        assert_msg(&busy, &[ADDR, "/dev/vfio/7", "in use"]);
    }

    /// The real open path: a group node the user cannot open. Root bypasses file modes, so as root this only
    /// checks that the pre-checks pass.
    #[test]
    fn permission_denied_on_group_node() {
        use std::os::unix::fs::PermissionsExt;
        let f = Fake::viable();
        let node = f.roots.devfs.join("vfio/7");
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o000)).unwrap();
        let privileged = OpenOptions::new().read(true).write(true).open(&node).is_ok();
        match f.check() {
            Ok(_) => assert!(
                privileged,
                "unprivileged open of a mode-000 node passed the pre-checks"
            ),
            Err(e) => {
                assert!(!privileged);
                assert!(matches!(e, VfioError::PermissionDenied { .. }), "{e:?}");
                assert_msg(&e, &[ADDR, &node.display().to_string(), "run as root"]);
            }
        }
    }

    #[test]
    fn member_rules() {
        assert!(member_is_viable(None));
        assert!(member_is_viable(Some("vfio-pci")));
        assert!(member_is_viable(Some("pci-stub")));
        assert!(member_is_viable(Some("pcieport")));
        assert!(!member_is_viable(Some("e1000e")));
        assert!(!is_vfio_driver("vfio"));
    }
}
