//! ironlb host runtime: turns IronCore LoadBalancer objects into device tables.
//!
//! Manifests ([`manifest`], [`api`]; both from the `ironlb-api` crate, as is [`validate`]) are validated, turned into desired device state
//! ([`controller`]) with durable allocations ([`alloc`]), and kept on the device by the [`reconcile`]r; the
//! [`daemon`] runs that against a watched [`source`] and serves diagnostics ([`ops`]) and [`metrics`].
#![forbid(unsafe_code)]

pub use ironlb_api::types as api;
pub use ironlb_api::{printable, validate};

pub mod alloc;
pub mod backend;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod example;
pub mod fsmode;
pub mod manifest;
pub mod metrics;
pub mod ops;
pub mod reconcile;
pub mod source;
pub mod status;
pub mod store;
