//! Choosing and opening the device: `--backend inproc | sim-shm:PREFIX | vfio:PCI_ADDR[@BAR]`.

use ironlb_driver::{
    Device, DeviceAccess, DriverError, InprocBackend, SharedModel, ShmBackend, ShmPaths, VfioBackend,
};
use ironlb_sim::DeviceConfig;
use std::fmt;
use std::path::PathBuf;

/// A device to drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// The software model in this process (the embedded default).
    Inproc,
    /// A model served by `ironlb-sim serve` from `PREFIX.bar` / `PREFIX.host`.
    SimShm(PathBuf),
    /// A real device bound to vfio-pci: PCI address and the index of the BAR holding the registers (`@BAR`,
    /// default 0: the ironlb NIC has them in BAR0; the QEMU harness's ivshmem-plain device exposes the model's
    /// register file as BAR2, docs/operations.md §3).
    Vfio(String, u32),
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSpec::Inproc => f.write_str("inproc"),
            BackendSpec::SimShm(p) => write!(f, "sim-shm:{}", p.display()),
            BackendSpec::Vfio(pci, 0) => write!(f, "vfio:{pci}"),
            BackendSpec::Vfio(pci, bar) => write!(f, "vfio:{pci}@{bar}"),
        }
    }
}

impl std::str::FromStr for BackendSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "inproc" {
            return Ok(BackendSpec::Inproc);
        }
        if let Some(prefix) = s.strip_prefix("sim-shm:") {
            if prefix.is_empty() {
                return Err(format!(
                    "{s:?}: sim-shm needs a path prefix, e.g. sim-shm:/dev/shm/ironlb"
                ));
            }
            return Ok(BackendSpec::SimShm(PathBuf::from(prefix)));
        }
        if let Some(rest) = s.strip_prefix("vfio:") {
            let (pci, bar) = match rest.split_once('@') {
                Some((p, b)) => (
                    p,
                    b.parse::<u32>()
                        .map_err(|_| format!("{s:?}: BAR index {b:?} is not a number"))?,
                ),
                None => (rest, 0),
            };
            if pci.is_empty() {
                return Err(format!("{s:?}: vfio needs a PCI address, e.g. vfio:0000:3b:00.0"));
            }
            return Ok(BackendSpec::Vfio(pci.to_string(), bar));
        }
        Err(format!(
            "{s:?}: expected inproc, sim-shm:PREFIX or vfio:PCI_ADDR[@BAR]"
        ))
    }
}

/// An opened device, with the in-process model when there is one (for packet injection and traces).
pub struct Opened {
    /// The driver's device (its tables already adopted).
    pub device: Device,
    /// The model, for `inproc`.
    pub model: Option<SharedModel>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("device", &self.device)
            .field("model", &self.model.is_some())
            .finish()
    }
}

/// Why a device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The driver refused the device (or the model could not be created).
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The VFIO setup failed (binding, IOMMU group, permissions).
    #[error(transparent)]
    Vfio(#[from] ironlb_driver::VfioError),
}

impl From<ironlb_driver::AccessError> for OpenError {
    fn from(e: ironlb_driver::AccessError) -> Self {
        OpenError::Driver(e.into())
    }
}

impl BackendSpec {
    /// Opens the device; `inproc` creates a model with `cfg`.
    pub fn open(&self, cfg: &DeviceConfig) -> Result<Opened, OpenError> {
        let (access, model): (Box<dyn DeviceAccess>, Option<SharedModel>) = match self {
            BackendSpec::Inproc => {
                let b = InprocBackend::new(cfg.clone())?;
                let m = b.model();
                (Box::new(b), Some(m))
            }
            BackendSpec::SimShm(prefix) => {
                (Box::new(ShmBackend::open(&ShmPaths::from_prefix(prefix))?), None)
            }
            BackendSpec::Vfio(pci, bar) => (Box::new(VfioBackend::open(pci, *bar)?), None),
        };
        Ok(Opened {
            device: Device::open(access)?,
            model,
        })
    }
}
