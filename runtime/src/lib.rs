//! ironlb host runtime: turns IronCore LoadBalancer objects into device tables.
//!
//! So far: the built-in example configuration ([`example`]) that the `ironlb replay --example` main job programs
//! through the driver. The manifest loader, controller and reconciler follow (issue: runtime).
#![forbid(unsafe_code)]

pub mod alloc;
pub mod api;
pub mod cli;
pub mod controller;
pub mod example;
pub mod manifest;
pub mod source;
pub mod validate;
