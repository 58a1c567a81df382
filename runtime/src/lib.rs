//! ironlb host runtime: turns IronCore LoadBalancer objects into device tables.
//!
//! Manifests ([`manifest`], [`api`]) are validated ([`validate`]; these three come from the `ironlb-api` crate),
//! turned into desired device state by the [`control`] modules ([`controller`], with durable allocations from
//! [`alloc`]), and kept on the device by the [`reconcile`]r; the [`daemon`] runs that against a watched [`source`]
//! and serves diagnostics ([`ops`]) and [`metrics`].
#![forbid(unsafe_code)]

pub use control::{alloc, controller, reconcile};
pub use daemon::metrics;
pub use ironlb_api::types as api;
pub use ironlb_api::{printable, validate};

pub mod backend;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod control;
pub mod daemon;
pub mod example;
mod fsmode;
pub mod host;
pub mod manifest;
pub mod ops;
pub mod source;
pub mod status;
pub mod store;
