//! Shared helpers for integration and end-to-end tests.
//!
//! * [`fixtures`]: the golden fixture table of the packet pipeline (docs/testing.md "Golden fixtures"), the device
//!   configuration it assumes (programmed through the driver), and [`fixtures::run_fixtures`], the one generic
//!   tester that runs every case against any driver backend.
//! * [`e2e`]: the end-to-end harness (docs/testing.md "End to end"): namespaces, TUN ports, the underlay fabric,
//!   the daemon and real clients.
#![forbid(unsafe_code)]

pub mod e2e;
pub mod fixtures;
