//! Shared helpers for integration and end-to-end tests.
//!
//! * [`fixtures`]: the golden fixture table of the packet pipeline (docs/testing.md "Golden fixtures"), the device
//!   configuration it assumes (programmed through the driver), and [`fixtures::run_fixtures`], the one generic
//!   tester that runs every case against any driver backend.
#![forbid(unsafe_code)]

pub mod fixtures;
