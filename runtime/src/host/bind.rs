//! `ironlb device bind`: hands a NIC function to vfio-pci (docs/operations.md §3) through `driver_override`, then
//! runs the driver's own pre-checks ([`ironlb_driver::precheck`]) so that what is still wrong (IOMMU off,
//! group not viable, device nodes missing) is reported as the daemon would report it. The sysfs and devfs roots are
//! parameters ([`VfioRoots`]) so every step is tested against a fake tree.

use ironlb_driver::{precheck, Checked, PciAddress, VfioError, VfioRoots};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The driver a function is handed to.
pub const VFIO_PCI: &str = "vfio-pci";

/// Which functions to bind: one address, or every function with this vendor and device id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `DDDD:BB:DD.F` or `BB:DD.F`.
    Address(PciAddress),
    /// `VVVV:DDDD` (hexadecimal, as `lspci -nn` prints it).
    Id {
        /// Vendor id.
        vendor: u16,
        /// Device id.
        device: u16,
    },
}

/// A binding that failed, with the path involved and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Neither a PCI address nor a vendor:device id.
    #[error("{input:?} is neither a PCI address (0000:3b:00.0) nor a vendor:device id (1af4:1110)")]
    BadSelector {
        /// What was given.
        input: String,
    },
    /// No function has this vendor:device id.
    #[error("no PCI function with vendor:device {vendor:04x}:{device:04x} under {path} (list them with `lspci -nn`)")]
    NoSuchId {
        /// Vendor id.
        vendor: u16,
        /// Device id.
        device: u16,
        /// The directory searched.
        path: PathBuf,
    },
    /// The kernel has no vfio-pci driver and loading it failed.
    #[error(
        "{path} does not exist and `modprobe vfio-pci` failed ({why}); is the vfio-pci module installed?"
    )]
    NoVfioPci {
        /// `SYSFS/bus/pci/drivers/vfio-pci`.
        path: PathBuf,
        /// What modprobe said.
        why: String,
    },
    /// A sysfs or devfs write failed.
    #[error("{what}: writing {path}: {source} (run as root)")]
    Write {
        /// The step.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A pre-check failed after the binding steps (the driver's message names the path and the fix).
    #[error(transparent)]
    Check(#[from] VfioError),
}

impl std::str::FromStr for Selector {
    type Err = BindError;

    fn from_str(s: &str) -> Result<Selector, BindError> {
        if s.contains('.') {
            return PciAddress::parse(s)
                .map(Selector::Address)
                .map_err(BindError::Check);
        }
        let bad = || BindError::BadSelector { input: s.to_string() };
        let (v, d) = s.split_once(':').ok_or_else(bad)?;
        let hex = |x: &str| {
            (x.len() == 4)
                .then(|| u16::from_str_radix(x, 16).ok())
                .flatten()
                .ok_or_else(bad)
        };
        Ok(Selector::Id {
            vendor: hex(v)?,
            device: hex(d)?,
        })
    }
}

/// What a binding did to one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The function.
    pub addr: PciAddress,
    /// The driver it was bound to before (`None`: none), or `vfio-pci` when there was nothing to do.
    pub previous: Option<String>,
    /// What the pre-checks established afterwards.
    pub checked: Checked,
    /// The group the VFIO group node was given (mode 0660), if asked.
    pub node_group: Option<u32>,
}

/// The functions `sel` names.
pub fn resolve(roots: &VfioRoots, sel: &Selector) -> Result<Vec<PciAddress>, BindError> {
    let (vendor, device) = match sel {
        Selector::Address(a) => return Ok(vec![*a]),
        Selector::Id { vendor, device } => (*vendor, *device),
    };
    let dir = roots.sysfs.join("bus/pci/devices");
    let read_id = |p: &Path| -> Option<u16> {
        let s = std::fs::read_to_string(p).ok()?;
        u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
    };
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let p = e.path();
            if read_id(&p.join("vendor")) == Some(vendor) && read_id(&p.join("device")) == Some(device) {
                if let Ok(a) = PciAddress::parse(&e.file_name().to_string_lossy()) {
                    found.push(a);
                }
            }
        }
    }
    found.sort_by_key(|a| a.to_string());
    if found.is_empty() {
        return Err(BindError::NoSuchId {
            vendor,
            device,
            path: dir,
        });
    }
    Ok(found)
}

/// The driver `device_path` is bound to now.
fn current_driver(device_path: &Path) -> Option<String> {
    std::fs::read_link(device_path.join("driver"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn write(what: &'static str, path: PathBuf, value: &str) -> Result<(), BindError> {
    std::fs::write(&path, value).map_err(|source| BindError::Write { what, path, source })
}

/// Binds `addr` to vfio-pci (unless it is bound to a VFIO driver already): `driver_override`, unbind from the current
/// driver, `drivers_probe`; then the driver's pre-checks, and, with `node_group`, the VFIO group node is given to
/// that group with mode 0660 so that an unprivileged daemon of that group can open it.
pub fn bind(roots: &VfioRoots, addr: &PciAddress, node_group: Option<u32>) -> Result<Bound, BindError> {
    let device_path = roots.sysfs.join("bus/pci/devices").join(addr.to_string());
    if !device_path.exists() {
        // The driver's message: not found, with `lspci -D`.
        return Err(precheck(roots, addr).expect_err("device path missing").into());
    }
    let previous = current_driver(&device_path);
    // The driver's own rule decides whether the bound driver is a VFIO one (vfio-pci or a vendor variant); an
    // earlier failure (no IOMMU group) is reported as it is: binding would not help.
    let needs_bind = match precheck(roots, addr) {
        Err(VfioError::BoundToOtherDriver { .. } | VfioError::NotBound { .. }) => true,
        Err(e) => return Err(e.into()),
        Ok(_) => false,
    };
    if needs_bind {
        ensure_vfio_pci(roots)?;
        write(
            "set driver_override",
            device_path.join("driver_override"),
            VFIO_PCI,
        )?;
        if previous.is_some() {
            write(
                "unbind from the current driver",
                device_path.join("driver/unbind"),
                &addr.to_string(),
            )?;
        }
        write(
            "probe",
            roots.sysfs.join("bus/pci/drivers_probe"),
            &addr.to_string(),
        )?;
    }
    let checked = precheck(roots, addr)?;
    if let Some(gid) = node_group {
        let node = &checked.group_path;
        std::os::unix::fs::chown(node, None, Some(gid)).map_err(|source| BindError::Write {
            what: "give the VFIO group node to the daemon's group",
            path: node.clone(),
            source,
        })?;
        std::fs::set_permissions(node, std::fs::Permissions::from_mode(0o660)).map_err(|source| {
            BindError::Write {
                what: "make the VFIO group node group-writable",
                path: node.clone(),
                source,
            }
        })?;
    }
    Ok(Bound {
        addr: *addr,
        previous,
        checked,
        node_group,
    })
}

/// Loads vfio-pci when the kernel does not have it yet (on the real `/sys` only: a fake tree must provide it).
fn ensure_vfio_pci(roots: &VfioRoots) -> Result<(), BindError> {
    let path = roots.sysfs.join("bus/pci/drivers").join(VFIO_PCI);
    match std::fs::metadata(&path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(BindError::NoVfioPci {
                path,
                why: e.to_string(),
            })
        }
    }
    if roots.sysfs != Path::new("/sys") {
        return Err(BindError::NoVfioPci {
            path,
            why: "not the real /sys: not loading modules".into(),
        });
    }
    let why = match std::process::Command::new("modprobe").arg(VFIO_PCI).output() {
        Ok(o) if o.status.success() && path.exists() => return Ok(()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    Err(BindError::NoVfioPci { path, why })
}

#[cfg(test)]
mod tests;
