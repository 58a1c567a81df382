//! `ironlb run`: the daemon. Watches a manifest source, keeps the device reconciled, publishes status, answers
//! diagnostics on a local control socket and serves Prometheus metrics.
//!
//! Files in the state directory (`--state-dir`):
//! - `alloc.json`: the durable allocations (lb_ids, public and Prefix IPs; [`crate::alloc`]);
//! - `status.json`: every LoadBalancer's status after the last sync ([`StatusFile`]), replaced atomically;
//! - `ironlb.sock`: the control socket (default; `--socket`), one JSON request per connection ([`Request`]);
//! - `ironlb.lock`: held (flock) while a daemon runs, so two daemons never share a state directory.
//!
//! Modes are explicit whatever the umask ([`crate::fsmode`]): directory 0750, files 0640, lock 0600, socket 0660
//! (group `--socket-group`). A socket path where another daemon answers is refused, never unlinked.
//!
//! The daemon never flushes the device: on exit the data plane keeps forwarding with what was programmed, and the
//! next start adopts it.

use crate::alloc::{Allocator, Pools};
use crate::api::ObjectKey;
use crate::backend::BackendSpec;
use crate::backoff::BACKOFF;
use crate::clock::{rfc3339, SharedClock};
use crate::manifest::{LoadCache, LoadOptions};
use crate::metrics::{DeviceStats, Metrics, MetricsServer};
use crate::ops::{self, Format, OpError, View};
use crate::reconcile::{HostConfig, ReconcileError, Reconciler, SyncReport};
use crate::source::{DirSource, Source};
use crate::status::{Condition, ConditionStatus, ConditionType, DeviceDown, LbStatus, Reason};
use ironlb_driver::SharedModel;
use ironlb_sim::DeviceConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// A manifest directory programmed once into an in-process model ([`program_dir`]).
pub struct Programmed {
    /// The reconciler, owning the device.
    pub rec: Reconciler,
    /// The model.
    pub model: SharedModel,
    /// What the sync did.
    pub report: SyncReport,
    /// Documents that did not load.
    pub load_errors: Vec<crate::manifest::LoadError>,
    /// Unknown fields accepted under [`LoadOptions::LENIENT`].
    pub load_warnings: Vec<crate::manifest::LoadError>,
    _state: tempfile::TempDir,
}

/// Programs the manifests in `dir` into a new in-process model through the reconciler (as the daemon would),
/// with allocations in a temporary state directory. Used by `replay`, `trace`, `dump` and `stats --manifests`.
pub fn program_dir(
    dir: &Path,
    pools: Pools,
    host: &HostConfig,
    load: LoadOptions,
) -> Result<Programmed, DaemonError> {
    let state = tempfile::tempdir().map_err(io_err(Path::new("temporary state directory")))?;
    let opened = BackendSpec::Inproc
        .open(&DeviceConfig::default())
        .map_err(|source| DaemonError::Device {
            backend: "inproc".into(),
            source,
        })?;
    let model = opened.model.expect("inproc has a model");
    let cap = opened.device.caps().lb_ids;
    let alloc = Allocator::open(&state.path().join("alloc.json"), pools, cap)?;
    let mut rec = Reconciler::new(opened.device, alloc, host)?;
    let loaded = crate::manifest::load_dir_with(dir, load);
    let (objects, load_errors) = (loaded.objects, loaded.errors);
    let report = rec.sync(&objects, &load_errors)?;
    Ok(Programmed {
        rec,
        model,
        report,
        load_errors,
        load_warnings: loaded.warnings,
        _state: state,
    })
}

/// Full resync period even when nothing changed (repairs drift, retries backed-off load balancers).
pub const RESYNC: Duration = Duration::from_secs(30);

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
    /// How long a deleted LoadBalancer's lb_id and IPs are held ([`Reconciler::set_release_grace`]).
    pub release_grace: Duration,
    /// Start even though the allocation state does not claim load balancers the device holds (`alloc.json` lost):
    /// they are removed and re-created with new lb_ids and VIPs. Without it such a start is refused
    /// ([`DaemonError::AllocationsLost`]).
    pub remove_unclaimed: bool,
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
    #[error("{} is the control socket of a running daemon (another ironlb daemon uses it; pass another --socket)", path.display())]
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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The content of `STATE_DIR/status.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusFile {
    /// Source generation the status was computed from.
    pub generation: u64,
    /// Manifest files that do not parse (served from their last good content).
    pub source_errors: Vec<String>,
    /// Documents that did not load.
    pub load_errors: Vec<String>,
    /// One per LoadBalancer.
    pub load_balancers: Vec<LbStatus>,
    /// Set while the device does not answer (a command timed out; probed with backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_down: Option<DeviceDown>,
    /// The device's own condition: `DeviceRestored` after a reset the daemon did not cause (docs/hw-spec.md §3.4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_conditions: Vec<Condition>,
}

impl StatusFile {
    /// Reads `STATE_DIR/status.json`.
    pub fn read(state_dir: &Path) -> Result<StatusFile, String> {
        let p = state_dir.join("status.json");
        let bytes = fs::read(&p)
            .map_err(|e| format!("{}: {e} (has the daemon run with this --state-dir?)", p.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// The statuses by key.
    pub fn by_key(&self) -> BTreeMap<ObjectKey, LbStatus> {
        self.load_balancers
            .iter()
            .map(|s| (ObjectKey::new(s.namespace.clone(), s.name.clone()), s.clone()))
            .collect()
    }
}

/// A request on the control socket (one JSON line; the answer is one JSON line, [`Response`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Load balancer statuses.
    Status {
        /// Output format.
        format: Format,
    },
    /// Decoded tables.
    Dump {
        /// Which table.
        table: String,
        /// Output format.
        format: Format,
        /// Filters of `--table flows`.
        #[serde(default)]
        flows: ops::FlowFilter,
    },
    /// Counters.
    Stats {
        /// Output format.
        format: Format,
    },
    /// A packet trace.
    Trace {
        /// `public` or `vni:N`.
        ingress: String,
        /// Packet description.
        packet: String,
        /// Output format.
        format: Format,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Rendered output, when the request succeeded.
    pub output: Option<String>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// True when the error is about the request (exit code 2).
    #[serde(default)]
    pub bad_input: bool,
}

/// What the last sync published: answered on the control socket without waiting for the reconciler, so `status`
/// answers at once even while a sync or a device probe runs.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Statuses by key.
    pub statuses: BTreeMap<ObjectKey, LbStatus>,
    /// Set while the device is down.
    pub device_down: Option<DeviceDown>,
    /// The device's own conditions (`DeviceRestored` after a reset).
    pub device_conditions: Vec<Condition>,
    /// Manifest files and documents that do not load, rendered (listed below the LoadBalancers).
    pub load_errors: Vec<String>,
}

impl Published {
    /// The `status` answer.
    pub fn render(&self, format: Format) -> String {
        let mut body = ops::status_with_errors(&self.statuses, &self.load_errors, format);
        if format == Format::Table {
            for c in &self.device_conditions {
                body.push_str(&format!(
                    "device: {} {} since {}: {}\n",
                    c.kind, c.reason, c.last_transition_time, c.message
                ));
            }
        }
        match (&self.device_down, format) {
            (Some(d), Format::Table) => format!(
                "device: DOWN since {} ({} failed probes): {}; retrying with backoff\n{body}",
                d.since,
                d.failed_probes,
                crate::printable::printable(&d.error)
            ),
            _ => body,
        }
    }
}

/// How long a diagnostics request (`dump`, `stats`, `trace`) waits for the reconciler before answering busy.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// What the daemon's threads share.
pub struct Shared {
    /// The reconciler (owns the device).
    pub rec: Reconciler,
    /// The in-process model, for `inproc`.
    pub model: Option<SharedModel>,
    /// Device resets detected (and answered by a restore) since the daemon started.
    pub device_resets: u64,
    /// `DeviceRestored` once a reset was detected: when, how, and what was re-programmed.
    pub device_conditions: Vec<Condition>,
}

/// How often the daemon looks for a device reset between syncs (a few register reads).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

impl Shared {
    /// `namespace/name` by lb_id, for what the device holds.
    pub fn names(&self) -> BTreeMap<u32, String> {
        self.rec.names()
    }

    /// Answers one control request.
    pub fn handle(&mut self, req: &Request) -> Result<String, OpError> {
        let names = self.names();
        let model = self.model.clone();
        let view = View {
            dev: self.rec.device(),
            model: model.as_ref(),
            names: &names,
        };
        match req {
            Request::Status { format } => {
                let errors: Vec<String> = self.rec.load_errors().iter().map(ToString::to_string).collect();
                let mut out = ops::status_with_errors(self.rec.status(), &errors, *format);
                if *format == Format::Table {
                    for c in &self.device_conditions {
                        out.push_str(&format!(
                            "device: {} {} since {}: {}\n",
                            c.kind, c.reason, c.last_transition_time, c.message
                        ));
                    }
                }
                Ok(out)
            }
            Request::Dump { table, format, flows } => ops::dump(view, table, *format, flows),
            Request::Stats { format } => ops::stats(view, *format),
            Request::Trace {
                ingress,
                packet,
                format,
            } => ops::trace(view, ingress, packet, *format),
        }
    }
}

/// Sends `req` to the daemon at `socket` and returns its output.
pub fn request(socket: &Path, req: &Request) -> Result<String, OpError> {
    let fail = |m: String| OpError::Failed(format!("control socket {}: {m}", socket.display()));
    let mut s = UnixStream::connect(socket).map_err(|e| {
        fail(format!(
            "{e} (is `ironlb run` running with this --state-dir / --socket?)"
        ))
    })?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| fail(e.to_string()))?;
    let mut line = serde_json::to_string(req).expect("request serializes");
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| fail(e.to_string()))?;
    let r: Response = serde_json::from_str(&answer).map_err(|e| fail(format!("bad answer: {e}")))?;
    match (r.output, r.error) {
        (Some(o), None) => Ok(o),
        (_, Some(e)) if r.bad_input => Err(crate::cli::BadInput(e).into()),
        (_, Some(e)) => Err(OpError::Failed(e)),
        (None, None) => Err(fail("empty answer".into())),
    }
}

/// Binds the control socket at `path` with mode [`crate::fsmode::SOCKET_MODE`] (and `group`), without ever
/// removing the socket of a live daemon: a socket that accepts a connection is refused; a stale one (nobody
/// listening) is replaced. The socket is bound under a temporary name, given its mode and group, then renamed into
/// place, so it is never reachable with the umask's mode. Returns the listener and the socket's inode.
fn bind_control(path: &Path, group: Option<u32>) -> Result<(UnixListener, (u64, u64)), DaemonError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(DaemonError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(_) => {
            return Err(DaemonError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io_err(&tmp))?;
    let placed = (|| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(crate::fsmode::SOCKET_MODE))?;
        if let Some(gid) = group {
            nix::unistd::chown(&tmp, None, Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(std::io::Error::from)?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    let m = fs::symlink_metadata(path).map_err(io_err(path))?;
    Ok((listener, (m.dev(), m.ino())))
}

/// How often the control thread looks at its stop flag while no client connects.
const CONTROL_POLL: Duration = Duration::from_millis(100);

fn serve_control(
    listener: UnixListener,
    shared: Arc<Mutex<Shared>>,
    published: Arc<Mutex<Published>>,
    stop: Arc<AtomicBool>,
) {
    use std::os::fd::AsFd;
    // Waits are bounded (poll with a timeout), so stopping needs no connection: it works even when the socket file
    // was removed.
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!(error = %e, "control socket: cannot make it non-blocking; not serving");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [nix::poll::PollFd::new(
            listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::from(CONTROL_POLL.as_millis() as u16),
        ) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "control socket: poll failed; not serving");
                return;
            }
        }
        let conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => continue,
        };
        if conn.set_nonblocking(false).is_err() {
            continue;
        }
        let (shared, published) = (shared.clone(), published.clone());
        std::thread::spawn(move || answer_control(conn, &shared, &published));
    }
}

/// Answers one request: `status` from what was published; the others from the device, refused at once while it is
/// down, and answered busy rather than waiting without bound for a long sync.
fn answer_request(
    req: &Request,
    shared: &Mutex<Shared>,
    published: &Mutex<Published>,
) -> Result<String, OpError> {
    let p = published.lock().expect("published lock");
    if let Request::Status { format } = req {
        return Ok(p.render(*format));
    }
    if let Some(d) = &p.device_down {
        return Err(OpError::Failed(format!(
            "the device is down since {} ({}); only `status` is served until it answers again",
            d.since, d.error
        )));
    }
    drop(p);
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        match shared.try_lock() {
            Ok(mut sh) => return sh.handle(req),
            Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner().handle(req),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(OpError::Failed(format!(
                    "the daemon is busy (a sync or a device probe has run for over {BUSY_WAIT:?}); try again"
                )))
            }
        }
    }
}

fn answer_control(conn: UnixStream, shared: &Mutex<Shared>, published: &Mutex<Published>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let mut reader = BufReader::new(&conn);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let resp = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response {
            output: None,
            error: Some(format!("bad request: {e}")),
            bad_input: true,
        },
        Ok(req) => match answer_request(&req, shared, published) {
            Ok(o) => Response {
                output: Some(o),
                error: None,
                bad_input: false,
            },
            Err(e) => Response {
                output: None,
                error: Some(e.to_string()),
                bad_input: matches!(e, OpError::BadInput(_)),
            },
        },
    };
    let mut out = serde_json::to_string(&resp).expect("response serializes");
    out.push('\n');
    let _ = (&conn).write_all(out.as_bytes());
}

/// A running daemon.
pub struct Daemon {
    cfg: DaemonConfig,
    shared: Arc<Mutex<Shared>>,
    published: Arc<Mutex<Published>>,
    source: DirSource,
    /// Failed probes of a down device (the next waits [`BACKOFF`]`.delay` of it).
    probe_failures: u32,
    next_probe: Option<Instant>,
    _lock: File,
    socket_path: PathBuf,
    /// (device, inode) of the socket we bound: only that file is removed on exit.
    socket_id: (u64, u64),
    control: Option<JoinHandle<()>>,
    control_stop: Arc<AtomicBool>,
    metrics: Option<Arc<Metrics>>,
    _metrics_server: Option<MetricsServer>,
    last_generation: Option<u64>,
    last_status: Option<StatusFile>,
    cache: LoadCache,
    clock: SharedClock,
    /// Set by SIGHUP (`systemctl reload`): re-read the manifest directory now ([`Daemon::set_reload_flag`]).
    reload: Arc<AtomicBool>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Locks the state directory, opens the device (adopting its tables), the allocator and the manifest source,
    /// and starts the control socket and the metrics server. Nothing is programmed until [`Daemon::sync`].
    pub fn start(cfg: DaemonConfig) -> Result<Daemon, DaemonError> {
        Daemon::start_with_clock(cfg, crate::clock::system())
    }

    /// [`Daemon::start`] with `clock` as the time of the daemon and its reconciler (backoff, probes, the periodic
    /// resync, release grace, transition times); tests pass a [`crate::clock::ManualClock`].
    pub fn start_with_clock(cfg: DaemonConfig, clock: SharedClock) -> Result<Daemon, DaemonError> {
        crate::fsmode::ensure_dir(&cfg.state_dir, crate::fsmode::STATE_DIR_MODE)
            .map_err(io_err(&cfg.state_dir))?;
        let lock_path = cfg.state_dir.join("ironlb.lock");
        let lock = crate::fsmode::open_lock(&lock_path).map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(DaemonError::Locked { path: lock_path }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let opened = cfg
            .backend
            .open(&cfg.device_config)
            .map_err(|source| DaemonError::Device {
                backend: cfg.backend.to_string(),
                source,
            })?;
        let cap = opened.device.caps().lb_ids;
        let alloc = Allocator::open(&cfg.state_dir.join("alloc.json"), cfg.pools.clone(), cap)?;
        if !cfg.remove_unclaimed {
            check_allocations_not_lost(&cfg.state_dir, &opened.device, &alloc)?;
        }
        let mut rec = Reconciler::new(opened.device, alloc, &cfg.host)?;
        rec.set_release_grace(cfg.release_grace);
        rec.set_clock(clock.clone());
        let source = DirSource::with_debounce(&cfg.manifests, cfg.debounce)?;
        let shared = Arc::new(Mutex::new(Shared {
            rec,
            model: opened.model,
            device_resets: 0,
            device_conditions: Vec::new(),
        }));

        let socket_path = cfg
            .socket
            .clone()
            .unwrap_or_else(|| cfg.state_dir.join("ironlb.sock"));
        let (listener, socket_id) = bind_control(&socket_path, cfg.socket_group)?;
        let published = Arc::new(Mutex::new(Published::default()));
        let control_stop = Arc::new(AtomicBool::new(false));
        let control = {
            let (shared, published, stop) = (shared.clone(), published.clone(), control_stop.clone());
            std::thread::Builder::new()
                .name("ironlb-control".into())
                .spawn(move || serve_control(listener, shared, published, stop))
                .map_err(io_err(&socket_path))?
        };

        let (metrics, metrics_server) = match cfg.metrics {
            None => (None, None),
            Some(addr) => {
                let weak = Arc::downgrade(&shared);
                let m = Arc::new(Metrics::new(move || device_stats(&weak)));
                let server = m.serve(addr).map_err(|source| DaemonError::Io {
                    path: PathBuf::from(format!("--metrics {addr}")),
                    source,
                })?;
                tracing::info!(addr = %server.local_addr(), "serving metrics");
                (Some(m), Some(server))
            }
        };
        Ok(Daemon {
            cfg,
            shared,
            published,
            source,
            probe_failures: 0,
            next_probe: None,
            _lock: lock,
            socket_path,
            socket_id,
            control: Some(control),
            control_stop,
            metrics,
            _metrics_server: metrics_server,
            last_generation: None,
            last_status: None,
            cache: LoadCache::default(),
            clock,
            reload: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A flag that, once set (by a SIGHUP handler: `systemctl reload ironlb`), makes [`Daemon::run`] re-read the
    /// manifest directory and sync at once, without a restart; it is cleared when taken.
    pub fn set_reload_flag(&mut self, flag: Arc<AtomicBool>) {
        self.reload = flag;
    }

    /// The shared state (reconciler, model).
    pub fn shared(&self) -> Arc<Mutex<Shared>> {
        self.shared.clone()
    }

    /// The control socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The bound metrics address, when serving.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self._metrics_server.as_ref().map(|s| s.local_addr())
    }

    /// Sets the reconciler's progress reporter.
    pub fn set_progress(&self, f: Option<crate::reconcile::ProgressFn>) {
        self.shared.lock().expect("daemon state lock").rec.set_progress(f);
    }

    /// Look for a device reset the daemon did not cause (docs/hw-spec.md §3.4: GENERATION, or on a v1.0 device
    /// its effects) and answer one by re-programming everything: log line, `ironlb_device_resets_total`, and the
    /// `DeviceRestored` condition in `ironlb status` and status.json. Returns true when it restored. A device that
    /// cannot be read is logged and left to the sync's own error handling.
    pub fn check_device(&mut self) -> bool {
        let mut sh = self.shared.lock().expect("daemon state lock");
        if sh.rec.device_down().is_some() {
            // Not answering: the probe (with backoff) finds out when it does again.
            return false;
        }
        match sh.rec.device().check_and_restore() {
            Ok(None) => false,
            Ok(Some((seen, report))) => {
                tracing::warn!(
                    evidence = %seen,
                    load_balancers = report.load_balancers,
                    commands = report.commands,
                    "device reset detected (not caused by this daemon); re-programmed every load balancer"
                );
                sh.device_resets += 1;
                let message = format!(
                    "reset #{} detected: {seen}; {} load balancers re-programmed",
                    sh.device_resets, report.load_balancers
                );
                sh.device_conditions = vec![Condition {
                    kind: ConditionType::DeviceRestored,
                    status: ConditionStatus::True,
                    reason: Reason::DeviceReset,
                    message,
                    last_transition_time: rfc3339(self.clock.wall()),
                }];
                if let Some(m) = &self.metrics {
                    m.device_reset();
                }
                // status.json is rewritten by the next sync.
                self.last_status = None;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "device health check failed");
                false
            }
        }
    }

    /// One reconcile of the source's current snapshot; writes `status.json` when it changed.
    pub fn sync(&mut self) -> Result<SyncReport, DaemonError> {
        self.check_device();
        let snap = self.source.snapshot()?;
        for e in &snap.errors {
            tracing::warn!(error = %e, "manifest file does not parse; serving its last good content");
        }
        // Only files that changed are parsed and, when that is all they touch, only the load balancers they
        // affect are reconciled; without a change (a due retry, the periodic resync) everything is.
        let changes = self.cache.changes(&snap);
        for c in &changes {
            for e in c.content.iter().flat_map(|(_, e)| e) {
                tracing::warn!(error = %e, "manifest document does not load");
            }
        }
        let (report, statuses, load_errors, device_down, device_conditions) = {
            let mut sh = self.shared.lock().expect("daemon state lock");
            let was_down = sh.rec.device_down().is_some();
            let report = if changes.is_empty() {
                sh.rec.resync()?
            } else {
                sh.rec.apply(changes)?
            };
            let device_down = sh.rec.device_down().cloned();
            if !was_down && device_down.is_some() {
                if let Some(m) = &self.metrics {
                    m.device_went_down();
                }
            }
            *self.published.lock().expect("published lock") = Published {
                statuses: sh.rec.status().clone(),
                device_down: device_down.clone(),
                device_conditions: sh.device_conditions.clone(),
                load_errors: sh.rec.load_errors().iter().map(ToString::to_string).collect(),
            };
            let statuses: Vec<LbStatus> = sh.rec.status().values().cloned().collect();
            (
                report,
                statuses,
                sh.rec.load_errors(),
                device_down,
                sh.device_conditions.clone(),
            )
        };
        for e in &report.errors {
            tracing::warn!(lb = %e.key, reason = %e.reason, error = %e.message, "load balancer not programmed as desired");
        }
        if let Some(m) = &self.metrics {
            m.set_device_up(device_down.is_none());
            m.set_files_refused(self.source.refused().len() as u64);
            m.set_load_errors(load_errors.len() as u64);
            m.observe_reconcile(report.duration);
            for e in &report.errors {
                m.reconcile_error(&e.key.namespace, &e.key.name, e.reason.as_str());
            }
            let failed = statuses.iter().filter(|s| !s.ready()).count() as u64;
            m.set_lb_states(statuses.len() as u64 - failed, failed);
            m.forget_deleted(
                &statuses
                    .iter()
                    .map(|s| (s.namespace.clone(), s.name.clone()))
                    .collect(),
            );
        }
        if report.created + report.updated + report.removed > 0
            || self.last_generation != Some(snap.generation)
        {
            tracing::info!(
                generation = snap.generation,
                created = report.created,
                updated = report.updated,
                removed = report.removed,
                unchanged = report.unchanged,
                errors = report.errors.len(),
                commands = report.commands,
                ms = report.duration.as_secs_f64() * 1e3,
                "synced"
            );
        }
        self.last_generation = Some(snap.generation);
        let status = StatusFile {
            generation: snap.generation,
            source_errors: snap.errors.iter().map(|e| e.to_string()).collect(),
            load_errors: load_errors.iter().map(|e| e.to_string()).collect(),
            load_balancers: statuses,
            device_down,
            device_conditions,
        };
        if self.last_status.as_ref() != Some(&status) {
            let p = self.cfg.state_dir.join("status.json");
            let json = serde_json::to_vec_pretty(&status).expect("status serializes");
            crate::fsmode::write_atomic(&p, &json, crate::fsmode::STATE_FILE_MODE)
                .map_err(|e| io_err(&e.path)(e.source))?;
            self.last_status = Some(status);
        }
        Ok(report)
    }

    /// While the device is down, when the probe is due: probe it (at most one command timeout); when it answers, run
    /// a full resync at once (the load balancers it could not program are due) and forget the backoff.
    fn probe_if_down(&mut self) {
        if self.next_probe.is_none_or(|at| self.clock.now() < at) {
            return;
        }
        let mut sh = self.shared.lock().expect("daemon state lock");
        if sh.rec.probe_device() {
            self.probe_failures = 0;
            self.next_probe = None;
            if let Some(m) = &self.metrics {
                m.set_device_up(true);
            }
            if let Err(e) = sh.rec.resync() {
                tracing::error!(error = %e, "resync after the device came back failed");
            }
        } else {
            tracing::warn!(error = %sh.rec.device_down().map_or("", |d| d.error.as_str()), retry_in = ?BACKOFF.delay(self.probe_failures), "the device still does not answer");
        }
    }

    /// The time of the next device probe while the device is down ([`BACKOFF`]), `None` while it is up.
    fn schedule_probe(&mut self) -> Option<Instant> {
        let down = self
            .shared
            .lock()
            .expect("daemon state lock")
            .rec
            .device_down()
            .is_some();
        if !down {
            self.probe_failures = 0;
            self.next_probe = None;
            return None;
        }
        let now = self.clock.now();
        if self.next_probe.is_none_or(|at| now >= at) {
            self.probe_failures += 1;
            self.next_probe = Some(now + BACKOFF.delay(self.probe_failures));
        }
        self.next_probe
    }

    /// Runs until `stop` is set: sync, then wait for a manifest change, a due retry or the periodic resync. While the
    /// device is down, it is probed with backoff; syncs still run (without device commands), `status` is answered.
    /// A stop is seen within one command timeout (a probe or the one command that finds the device down).
    ///
    /// Under systemd (`Type=notify`, `NOTIFY_SOCKET` set) it reports `READY=1` once the first sync is done (and again
    /// after each reload), `RELOADING=1` when a reload is taken and `STOPPING=1` on the way out; elsewhere these are
    /// no-ops.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DaemonError> {
        tracing::info!(
            backend = %self.cfg.backend,
            manifests = %self.cfg.manifests.display(),
            state_dir = %self.cfg.state_dir.display(),
            socket = %self.socket_path.display(),
            "ironlb daemon started"
        );
        let mut failures = 0u32;
        let mut announce_ready = true;
        while !stop.load(Ordering::Relaxed) {
            self.probe_if_down();
            let synced = self.sync();
            if announce_ready {
                announce_ready = false;
                let status = match &synced {
                    Ok(r) => format!(
                        "synced: {} load balancers programmed, {} errors",
                        r.created + r.updated + r.unchanged,
                        r.errors.len()
                    ),
                    Err(e) => format!("first sync failed, retrying: {e}"),
                };
                notify_systemd(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&status),
                ]);
            }
            let deadline = match synced {
                Ok(_) => {
                    failures = 0;
                    let next_retry = self.shared.lock().expect("daemon state lock").rec.next_retry();
                    let deadline = self.clock.now() + RESYNC;
                    let deadline = next_retry.map_or(deadline, |r| r.min(deadline));
                    self.schedule_probe().map_or(deadline, |p| p.min(deadline))
                }
                // A sync that failed as a whole (allocator state not writable, device gone): nothing was
                // programmed by it; the device keeps its state. Retry with backoff instead of exiting.
                Err(e) => {
                    failures += 1;
                    let retry_in = BACKOFF.delay(failures);
                    tracing::error!(error = %e, ?retry_in, "sync failed");
                    self.clock.now() + retry_in
                }
            };
            let mut health_due = self.clock.now() + HEALTH_INTERVAL;
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if self.reload.swap(false, Ordering::Relaxed) {
                    tracing::info!(manifests = %self.cfg.manifests.display(), "reload: re-reading the manifest directory");
                    notify_systemd(&[sd_notify::NotifyState::Reloading]);
                    self.source.rescan_all()?;
                    announce_ready = true;
                    break;
                }
                let now = self.clock.now();
                if now >= health_due {
                    health_due = now + HEALTH_INTERVAL;
                    if self.check_device() {
                        break;
                    }
                }
                // The source is looked at even when the deadline has passed: a change is never starved by retries.
                let left = deadline.saturating_duration_since(self.clock.now());
                if self.source.wait_change(left.min(Duration::from_millis(250)))? || left.is_zero() {
                    break;
                }
            }
        }
        tracing::info!("ironlb daemon stopping; the device keeps its tables");
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        Ok(())
    }
}

/// Tells systemd (when it started us with `NOTIFY_SOCKET`) about a state change. A failure is logged, never fatal:
/// the daemon serves whether or not its supervisor hears it.
fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "could not notify systemd (NOTIFY_SOCKET)");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.control_stop.store(true, Ordering::Relaxed);
        // The control thread sees the flag within CONTROL_POLL.
        if let Some(h) = self.control.take() {
            let _ = h.join();
        }
        // Only our own socket: another daemon may have been given the same path since.
        if fs::symlink_metadata(&self.socket_path).is_ok_and(|m| (m.dev(), m.ino()) == self.socket_id) {
            let _ = fs::remove_file(&self.socket_path);
        }
    }
}

/// Refuses a start that would re-number live load balancers because their allocations were lost: the device holds
/// load balancers no allocation claims, and either the allocation state is empty (`alloc.json` deleted, or valid
/// but empty) or `status.json` names them as LoadBalancers of ours (an older `alloc.json` put back). Unclaimed
/// load balancers with neither sign (another writer's leftovers) are still removed as orphans.
fn check_allocations_not_lost(
    state_dir: &Path,
    dev: &ironlb_driver::Device,
    alloc: &Allocator,
) -> Result<(), DaemonError> {
    let claimed: std::collections::BTreeSet<u32> =
        alloc.state().lbs.values().filter_map(|a| a.lb_id).collect();
    let unclaimed: std::collections::BTreeSet<u32> = dev
        .programmed()
        .map(|s| s.lb_id)
        .filter(|id| !claimed.contains(id))
        .collect();
    if unclaimed.is_empty() {
        return Ok(());
    }
    let evidence = if alloc.state().lbs.is_empty() {
        "the allocation state is empty".to_string()
    } else {
        let named = StatusFile::read(state_dir)
            .map(|s| {
                s.load_balancers
                    .iter()
                    .filter(|l| l.lb_id.is_some_and(|id| unclaimed.contains(&id)))
                    .count()
            })
            .unwrap_or(0);
        if named == 0 {
            return Ok(());
        }
        format!("status.json names {named} of them as LoadBalancers")
    };
    Err(DaemonError::AllocationsLost {
        path: alloc.path().to_path_buf(),
        unclaimed: unclaimed.len(),
        evidence,
    })
}

/// Scrape-time device figures for the metrics endpoint.
fn device_stats(shared: &std::sync::Weak<Mutex<Shared>>) -> DeviceStats {
    let Some(shared) = shared.upgrade() else {
        return DeviceStats::default();
    };
    let mut sh = shared.lock().expect("daemon state lock");
    if sh.rec.device_down().is_some() {
        // Reading counters would wait for a command timeout per read: the scrape shows `ironlb_device_up 0`.
        return DeviceStats::default();
    }
    let keys: BTreeMap<u32, ObjectKey> = sh
        .rec
        .programmed()
        .iter()
        .map(|(k, s)| (s.lb_id, k.clone()))
        .collect();
    let names = sh.rec.names();
    let stats = match ops::collect_stats(sh.rec.device(), &names) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reading device counters for metrics failed");
            return DeviceStats::default();
        }
    };
    let mut out = DeviceStats::default();
    for lb in &stats.lbs {
        // An LB no object claims (an orphan about to be removed) still gets distinct labels.
        let ObjectKey { namespace: ns, name } = keys
            .get(&lb.lb_id)
            .cloned()
            .unwrap_or_else(|| ObjectKey::new("", format!("orphan-lb-{}", lb.lb_id)));
        out.lbs.push(crate::metrics::LbStats {
            namespace: ns.clone(),
            name: name.clone(),
            lb_id: lb.lb_id,
            packets: lb.packets,
            bytes: lb.bytes,
        });
        for t in &lb.targets {
            out.targets.push(crate::metrics::TargetStats {
                namespace: ns.clone(),
                name: name.clone(),
                target: t.target,
                packets: t.packets,
                bytes: t.bytes,
            });
        }
    }
    out.drops = ironlb_hw::DropReason::ALL
        .iter()
        .map(|r| (r.name(), stats.drops.get(r.name()).copied().unwrap_or(0)))
        .collect();
    out.flows = stats
        .flows
        .map(|f| f.named().map(|(c, n)| (c.name(), n)).to_vec())
        .unwrap_or_default();
    out.tables = stats
        .tables
        .iter()
        .map(|t| crate::metrics::TableUse {
            table: match t.table.as_str() {
                "lb" => "lb",
                "range" => "range",
                "target" => "target",
                "flow" => "flow",
                _ => "bucket",
            },
            used: t.used,
            capacity: t.capacity,
        })
        .collect();
    out
}
