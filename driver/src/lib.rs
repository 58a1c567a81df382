//! ironlb driver: programs the device of docs/hw-spec.md through a mapped BAR.
//!
//! One [`DeviceAccess`] trait, three backends (`vfio`; `sim-shm` and `inproc` with the feature `model`); all table
//! logic — command paths, cuckoo placement, range blocks, bucket arrays, read-back — sits above the trait in
//! [`Device`].
//!
//! Every module is private; what the crate offers is re-exported here (docs/architecture.md "Crates and features").
#![deny(unsafe_code)] // allowed only in the modules that touch mapped memory or ioctls (docs/architecture.md)

mod access;
mod alloc;
mod caps;
mod cmd;
mod device;
mod dma;
mod error;
mod flows;
mod health;
#[cfg(feature = "model")]
mod inproc;
mod program;
mod readback;
#[cfg(feature = "model")]
mod shm;
mod state;
mod tables;
#[cfg(feature = "testing")]
mod testing;
mod vfio;
mod window;

// The device API.
pub use device::{CommandStats, Device};
pub use error::{AccessError, DriverError};
pub use flows::{FlowConfig, FlowCounters};
pub use health::{ResetSeen, RestoreReport};
pub use ironlb_hw::caps::{Caps, CapsError};
pub use program::ApplyReport;
pub use readback::{DecodedLb, LbAt, Snapshot};
pub use state::{LbSpec, LbState};

/// Bucket arrays: the consistent hashing that maps flows to targets (docs/architecture.md "Bucket arrays").
pub use tables::buckets;

// The backend seam: what a backend implements, and the backends.
pub use access::{AccessCounts, DeviceAccess};
pub use dma::DmaRegion;
#[cfg(feature = "model")]
pub use inproc::{InprocBackend, SharedModel};
#[cfg(feature = "model")]
pub use shm::{ShmBackend, ShmPaths};
#[cfg(target_os = "linux")]
pub use vfio::{
    precheck, Checked, GroupMember, PciAddress, VfioBackend, VfioError, VfioRoots, PCI_COMMAND_MASTER,
    PCI_COMMAND_MEMORY,
};

/// Raw device commands, for the `*_for_test` backdoors of feature `testing`.
#[cfg(feature = "testing")]
pub use cmd::Cmd;
