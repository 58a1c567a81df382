//! ironlb driver: programs the device of docs/hw-spec.md through a mapped BAR.
//!
//! One [`access::DeviceAccess`] trait, several backends; all table logic sits above the trait.

pub mod access;
pub mod dma;
pub mod error;
