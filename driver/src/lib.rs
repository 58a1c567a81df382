//! ironlb driver: programs the device of docs/hw-spec.md through a mapped BAR.
//!
//! One [`access::DeviceAccess`] trait, three backends (`vfio`, `sim-shm`, `inproc`); all table logic — command
//! paths, cuckoo placement, range blocks, bucket arrays, read-back — sits above the trait in [`Device`].
#![deny(unsafe_code)] // allowed only in the modules that touch mapped memory or ioctls (docs/architecture.md)

pub mod access;
pub mod alloc;
pub mod caps;
pub mod cmd;
pub mod device;
pub mod dma;
pub mod error;
pub mod health;
#[cfg(feature = "model")]
pub mod inproc;
pub mod program;
pub mod readback;
#[cfg(feature = "model")]
pub mod shm;
pub mod tables;
#[cfg(feature = "testing")]
mod testing;
pub mod vfio;

pub use device::Device;
pub use error::{AccessError, DriverError};
pub use program::{ApplyReport, LbSpec};
pub use readback::Snapshot;
