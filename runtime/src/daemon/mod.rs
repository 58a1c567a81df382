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

pub mod metrics;

mod config;
mod control;
mod oneshot;
mod run;
mod scrape;
pub(crate) use scrape::reconciler_stats;
mod state;

pub use config::{
    default_state_dir, DaemonConfig, DaemonError, DEFAULT_HOP_LIMIT, DEFAULT_MTU, DEFAULT_PORTS,
    DEFAULT_PUBLIC_POOLS, DEFAULT_UNDERLAY_SRC,
};
pub use control::{diagnose, request, Answer, ControlServer, Published, Request, Response, Shared};
pub use oneshot::{program_dir, Programmed};
pub use run::{HEALTH_INTERVAL, RESYNC};
pub use state::StatusFile;

use crate::alloc::Allocator;
use crate::clock::{rfc3339, SharedClock};
use crate::manifest::LoadCache;
use crate::reconcile::{Reconciler, SyncReport};
use crate::source::{DirSource, Source};
use crate::status::{Condition, ConditionStatus, ConditionType, LbStatus, Reason};
use config::io_err;
use metrics::{Metrics, MetricsServer};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    control: ControlServer,
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
            state::check_allocations_not_lost(&cfg.state_dir, &opened.device, &alloc)?;
        }
        let mut rec = Reconciler::new(opened.device, alloc, &cfg.host)?;
        rec.set_release_grace(cfg.release_grace);
        rec.set_drain_timeout(cfg.drain_timeout);
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
        let published = Arc::new(Mutex::new(Published::default()));
        let control =
            ControlServer::start(&socket_path, cfg.socket_group, shared.clone(), published.clone())?;

        let (metrics, metrics_server) = match cfg.metrics {
            None => (None, None),
            Some(addr) => {
                let weak = Arc::downgrade(&shared);
                let m = Arc::new(Metrics::new(move || scrape::device_stats(&weak)));
                let server = m.serve(addr).map_err(|source| DaemonError::Io {
                    path: PathBuf::from(format!("--metrics {addr}")),
                    source,
                })?;
                tracing::info!(addr = %server.local_addr(), "serving metrics");
                (Some(m), Some(server))
            }
        };
        let load = cfg.load;
        Ok(Daemon {
            cfg,
            shared,
            published,
            source,
            probe_failures: 0,
            next_probe: None,
            _lock: lock,
            control,
            metrics,
            _metrics_server: metrics_server,
            last_generation: None,
            last_status: None,
            cache: LoadCache::new(load),
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
        self.control.path()
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
        let wall = self.clock.wall();
        let mut sh = self.shared.lock().expect("daemon state lock");
        let sh = &mut *sh;
        let Some(condition) = restore_after_reset(&mut sh.rec, &mut sh.device_resets, wall) else {
            return false;
        };
        let restored = condition.status == ConditionStatus::True;
        sh.device_conditions = vec![condition];
        if let (true, Some(m)) = (restored, &self.metrics) {
            m.device_reset();
        }
        // status.json is rewritten by the next sync.
        self.last_status = None;
        restored
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
                source_state: Vec::new(),
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
            m.set_files_refused(self.source.refused().len() as u64);
            m.record_sync(&report, &statuses, load_errors.len(), device_down.is_none());
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
            source_state: Vec::new(),
            load_errors: load_errors.iter().map(|e| e.to_string()).collect(),
            load_balancers: statuses,
            device_down,
            device_conditions,
        };
        if self.last_status.as_ref() != Some(&status) {
            status.write(&self.cfg.state_dir)?;
            self.last_status = Some(status);
        }
        Ok(report)
    }
}

/// Looks for a device reset that ironlb did not cause (docs/hw-spec.md §3.4: GENERATION, or on a v1.0 device its
/// effects) and answers one by re-programming every load balancer: logs it, counts it in `resets` and returns the
/// `DeviceRestored` condition that names it (as of `wall`). A re-programming that does not finish (the device reset
/// again, or stopped answering) is logged and returned as `DeviceRestored=False` (`RestoreFailed`); the driver keeps
/// what it still owes the device, and the next check (a second later) tries again. `None` when there was no reset,
/// the device is down (its probe finds out when it answers again) or it cannot be read (logged, and left to the
/// sync's own handling). Shared by the daemon and the cluster agent.
pub(crate) fn restore_after_reset(
    rec: &mut Reconciler,
    resets: &mut u64,
    wall: std::time::SystemTime,
) -> Option<Condition> {
    if rec.device_down().is_some() {
        return None;
    }
    let seen = match rec.device().check_reset() {
        Ok(None) => return None,
        Ok(Some(seen)) => seen,
        Err(e) => {
            tracing::error!(error = %e, "device health check failed");
            return None;
        }
    };
    match rec.device().restore() {
        Ok(report) => {
            tracing::warn!(
                evidence = %seen,
                load_balancers = report.load_balancers,
                commands = report.commands,
                "device reset detected (not caused by ironlb); re-programmed every load balancer"
            );
            *resets += 1;
            Some(Condition {
                kind: ConditionType::DeviceRestored,
                status: ConditionStatus::True,
                reason: Reason::DeviceReset,
                message: format!(
                    "reset #{resets} detected: {seen}; {} load balancers re-programmed",
                    report.load_balancers
                ),
                last_transition_time: rfc3339(wall),
            })
        }
        Err(e) => {
            tracing::error!(evidence = %seen, error = %e, "device reset detected (not caused by ironlb); re-programming it did not finish, tried again in a second");
            Some(Condition {
                kind: ConditionType::DeviceRestored,
                status: ConditionStatus::False,
                reason: Reason::RestoreFailed,
                message: format!(
                    "reset detected: {seen}; re-programming did not finish: {e} (tried again every second)"
                ),
                last_transition_time: rfc3339(wall),
            })
        }
    }
}
