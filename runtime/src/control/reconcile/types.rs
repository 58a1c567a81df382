//! The reconciler's public types: the host settings it applies, what one sync reports, and the errors that stop a
//! whole sync.

use crate::alloc::AllocError;
use crate::api::ObjectKey;
use crate::status::Reason;
use ironlb_driver::DriverError;
use ironlb_hw::entry::PortKind;
use serde::Serialize;
use std::net::Ipv6Addr;
use std::time::Duration;

/// Host-side device settings the runtime owns: port roles and the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// `(port, role)` for every port to enable; other ports are left as they are.
    pub ports: Vec<(u32, PortKind)>,
    /// Outer IPv6 source address of encapsulated packets.
    pub underlay_src: Ipv6Addr,
    /// Underlay MTU (outer packet size limit).
    pub mtu: u32,
    /// Outer hop limit.
    pub hop_limit: u8,
}

impl HostConfig {
    /// Parses a `--port` value: `N=public`, `N=vni:V` or `N=underlay`.
    pub fn parse_port(s: &str) -> Result<(u32, PortKind), String> {
        let (n, role) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected N=public, N=vni:V or N=underlay"))?;
        let port: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: port number {n:?} is not a number"))?;
        let kind = match role.trim() {
            "public" => PortKind::Public,
            "underlay" => PortKind::Underlay,
            r => match r.strip_prefix("vni:").map(str::parse::<u32>) {
                Some(Ok(vni)) if vni <= crate::validate::MAX_VNI as u32 => PortKind::Network { vni },
                Some(_) => {
                    return Err(format!(
                        "{s:?}: VNI must be a number up to {}",
                        crate::validate::MAX_VNI
                    ))
                }
                None => return Err(format!("{s:?}: role {r:?} is not public, vni:V or underlay")),
            },
        };
        Ok((port, kind))
    }
}

/// A per-LB failure of one sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LbError {
    /// The load balancer.
    pub key: ObjectKey,
    /// Condition reason.
    pub reason: Reason,
    /// Detail.
    pub message: String,
}

/// What one [`super::Reconciler::sync`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Load balancers created on the device.
    pub created: usize,
    /// Load balancers updated on the device.
    pub updated: usize,
    /// Load balancers removed from the device (deleted objects and orphans).
    pub removed: usize,
    /// Load balancers already as desired.
    pub unchanged: usize,
    /// Device commands sent.
    pub commands: usize,
    /// Per-LB errors (the affected load balancers keep their last good state).
    pub errors: Vec<LbError>,
    /// Load balancers not retried yet because their backoff has not expired.
    pub deferred: usize,
    /// Wall time of the sync.
    #[serde(with = "duration_secs")]
    pub duration: Duration,
}

mod duration_secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Failures that stop a whole sync (nothing was programmed by it).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The allocator could not persist its state.
    #[error("allocation failed: {0}")]
    Alloc(#[from] AllocError),
    /// The device could not be set up or read.
    #[error("device: {0}")]
    Device(#[from] DriverError),
}

/// Called during long syncs with (done, total) device operations.
pub type ProgressFn = Box<dyn FnMut(u64, u64) + Send>;
