//! ironlb host runtime: turns IronCore LoadBalancer objects into device tables.
//!
//! Manifests ([`manifest`], [`api`]) are validated ([`validate`]), turned into desired device state
//! ([`controller`]) with durable allocations ([`alloc`]), and kept on the device by the [`reconcile`]r; the
//! [`daemon`] runs that against a watched [`source`] and serves diagnostics ([`ops`]) and [`metrics`].
#![forbid(unsafe_code)]

pub mod alloc;
pub mod api;
pub mod backend;
pub mod cli;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod example;
pub mod fsmode;
pub mod host;
pub mod manifest;
pub mod metrics;
pub mod ops;
pub mod printable;
pub mod reconcile;
pub mod source;
pub mod store;
pub mod validate;
