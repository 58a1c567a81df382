//! The ironlb device model: a bit-exact software implementation of docs/hw-spec.md.
//!
//! [`device::Device`] is the device (registers, mailbox, DMA ring, table memory, counters); the packet pipeline
//! computes verdicts from the device's table memory only.
#![deny(unsafe_code)] // allowed only in mem.rs, the shared mappings (docs/architecture.md)

pub mod config;
pub mod device;
pub mod mem;
#[cfg(feature = "pcap")]
pub mod pcap;
pub mod pipeline;
#[cfg(feature = "serve")]
pub mod ports;
#[cfg(feature = "serve")]
pub mod serve;
pub mod tables;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config::DeviceConfig;
pub use device::Device;
pub use pipeline::{Trace, Verdict};
