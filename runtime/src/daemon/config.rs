//! What `ironlb run` is given ([`DaemonConfig`], with the defaults of its flags) and how it fails
//! ([`DaemonError`]).

use crate::alloc::Pools;
use crate::backend::BackendSpec;
use crate::manifest::LoadOptions;
use crate::reconcile::{HostConfig, ReconcileError};
use ironlb_sim::DeviceConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `--public-pool`: documentation prefixes (RFC 5737, RFC 3849), matching `examples/`. Set real pools
/// in production.
pub const DEFAULT_PUBLIC_POOLS: &str = "203.0.113.0/24,2001:db8:ff::/64";
/// Default `--port` roles, matching `examples/` (docs/sim.md "example configuration").
pub const DEFAULT_PORTS: &str = "0=public,1=vni:100,2=vni:200,3=underlay";
/// Default `--underlay-src`.
pub const DEFAULT_UNDERLAY_SRC: &str = "fd00:ffff::1";
/// Default `--mtu`.
pub const DEFAULT_MTU: u32 = 9000;
/// Default `--hop-limit`.
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// The default state directory: `$IRONLB_STATE_DIR` is read by the CLI; here `$XDG_STATE_HOME/ironlb`, else
/// `$HOME/.local/state/ironlb`, else `/var/lib/ironlb` (the systemd unit passes `--state-dir /var/lib/ironlb`).
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("ironlb");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".local/state/ironlb");
    }
    PathBuf::from("/var/lib/ironlb")
}

/// Everything `ironlb run` needs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Manifest directory.
    pub manifests: PathBuf,
    /// State directory (allocations, status, socket, lock).
    pub state_dir: PathBuf,
    /// The device.
    pub backend: BackendSpec,
    /// Model sizing for `inproc`.
    pub device_config: DeviceConfig,
    /// Public address pools.
    pub pools: Pools,
    /// Ports and underlay.
    pub host: HostConfig,
    /// Control socket path (default `STATE_DIR/ironlb.sock`).
    pub socket: Option<PathBuf>,
    /// Group owning the control socket (mode 0660), when not the daemon's own.
    pub socket_group: Option<u32>,
    /// Metrics listen address.
    pub metrics: Option<SocketAddr>,
    /// Debounce window of the manifest watcher.
    pub debounce: Duration,
    /// How long a deleted LoadBalancer's lb_id and IPs are held ([`crate::reconcile::Reconciler::set_release_grace`]).
    pub release_grace: Duration,
    /// How long a target that leaves drains ([`crate::reconcile::Reconciler::set_drain_timeout`]).
    pub drain_timeout: Duration,
    /// Start even though the allocation state does not claim load balancers the device holds (`alloc.json` lost):
    /// they are removed and re-created with new lb_ids and VIPs. Without it such a start is refused
    /// ([`DaemonError::AllocationsLost`]).
    pub remove_unclaimed: bool,
    /// How manifests load: strict (the default; an unknown field keeps its object out) or lenient (`--lenient`:
    /// unknown fields are logged warnings and the object loads without them).
    pub load: LoadOptions,
}

/// Daemon start-up and run failures.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A file or directory of the state directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon answers on the control socket path.
    #[error("{} is the control socket of a running ironlb daemon or agent (it answers there; pass another --socket or --state-dir)", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the control socket path.
    #[error("{}: exists and is not a socket (refusing to replace it)", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another daemon holds the state directory.
    #[error("{} is locked: another ironlb daemon uses this state directory", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// Opening the device failed.
    #[error("opening device {backend}: {source}")]
    Device {
        /// The backend.
        backend: String,
        /// The error.
        #[source]
        source: crate::backend::OpenError,
    },
    /// The allocator state could not be opened.
    #[error(transparent)]
    Alloc(#[from] crate::alloc::AllocError),
    /// The device holds load balancers the allocation state does not claim although they were ours: starting would
    /// re-create them with new lb_ids and VIPs.
    #[error(
        "{} does not claim {unclaimed} load balancers the device holds ({evidence}); starting would remove them and \
         re-create them with new lb_ids and VIPs. Restore {} from a backup (status.json in the same directory lists \
         every LoadBalancer's lb_id and IPs), or start with --remove-unclaimed to accept new VIPs \
         (docs/operations.md \"Lost allocation state\")",
        path.display(),
        path.display()
    )]
    AllocationsLost {
        /// The allocation state file.
        path: PathBuf,
        /// How many device load balancers no allocation claims.
        unclaimed: usize,
        /// Why they are taken to be ours: the state is empty, or status.json names them.
        evidence: String,
    },
    /// A sync failed as a whole.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// The manifest source failed.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.to_path_buf(),
        source,
    }
}
