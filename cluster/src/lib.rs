//! ironlb's cluster mode (issue 17, docs/cluster.md): IronCore API objects kept in etcd, one source of truth for a
//! fleet of hosts.
//!
//! - [`layout`]: where each object lives (`PREFIX<group>/<Kind>/<namespace>/<name>`);
//! - [`codec`]: objects as the JSON values stored there;
//! - [`alloc`]: the controller's allocation records, which agents program as given;
//! - [`controller`]: allocation in etcd transactions (claim keys: nothing handed out twice) and leader election
//!   with lease fencing;
//! - [`routing`]: the routings the controller writes from selectors (owned, labelled; others left alone);
//! - [`watch`]: following the store: list at a revision, watch from the next, relist after a compaction;
//! - [`settings`]: endpoints, TLS files and the prefix, from flags and the configuration file;
//! - [`store`]: list, get and transactional writes with optimistic concurrency (resourceVersion = `mod_revision`);
//! - [`write`](mod@write): what `apply` and `delete` write, validated as `ironlb validate` does before anything is written;
//! - [`client`]: the same operations for synchronous callers (the CLI);
//! - [`testing`]: a real etcd-server on loopback for tests.
//!
//! It depends on `ironlb-api` only (no device crates), so the gRPC stack stays out of the API and driver crates.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod client;
pub mod codec;
pub mod controller;
pub mod layout;
pub mod routing;
pub mod settings;
pub mod store;
pub mod testing;
pub mod watch;
pub mod write;

pub use client::Client;
pub use layout::Layout;
pub use settings::{EtcdConfig, EtcdSettings};
pub use store::{Store, StoreError};
