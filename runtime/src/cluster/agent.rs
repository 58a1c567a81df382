//! The agent (cluster mode, docs/cluster.md "Agents"): one per host, it follows the objects and the controller's
//! allocation records in etcd ([`EtcdSource`]) and reconciles its own device with them.
//!
//! It never allocates: its allocator is [`Allocator::given`], holding the controller's records, so every host
//! programs the same lb_ids, VIPs and targets — byte-identical tables. A LoadBalancer without a record yet is not
//! programmed (status reason `NotAllocated`) until the controller writes one.
//!
//! Nothing is done to the device before the first listing: an agent that starts while etcd is away adopts the
//! device's tables and leaves them as they are. While etcd is unreachable the device keeps its last good state;
//! the outage is logged, kept in [`EtcdHealth`], written to `STATE_DIR/status.json` (so `ironlb status
//! --state-dir DIR` shows it) and, with [`Agent::serve_metrics`], in `ironlb_etcd_up` and
//! `ironlb_etcd_outages_total` beside the daemon's metrics. The agent programs its device on its own thread, so the
//! device figures a scrape shows are the ones its thread read last: after each sync, and every second while it waits
//! (at most about a second old).
//!
//! With [`Agent::serve_control`] it answers `ironlb status`, `dump`, `stats` and `trace` on a control socket as
//! `ironlb run` does: `status` from what the last sync published (with the etcd outage), the others from the device,
//! which the socket's thread shares with the agent's ([`Core`]; busy rather than waiting without bound for a long
//! sync). Before the first listing they show the device's tables as the agent found them.

use crate::alloc::{AllocState, Allocator};
use crate::backend::{BackendSpec, OpenError};
use crate::daemon::metrics::{DeviceStats, Metrics, MetricsServer};
use crate::daemon::{Answer, ControlServer, DaemonError, Published, Request, StatusFile};
use crate::manifest::LoadCache;
use crate::ops::{self, Format, OpError, View};
use crate::reconcile::{HostConfig, ReconcileError, Reconciler, SyncReport};
use crate::source::{EtcdHealth, EtcdSource, Source, SourceError};
use ironlb_api::ObjectKey;
use ironlb_cluster::EtcdConfig;
use ironlb_driver::{Device, SharedModel};
use ironlb_sim::DeviceConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an agent needs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The store.
    pub etcd: EtcdConfig,
    /// The device.
    pub backend: BackendSpec,
    /// The model's configuration (inproc).
    pub device_config: DeviceConfig,
    /// Ports and underlay.
    pub host: HostConfig,
    /// Where `status.json` is written (none: not written).
    pub state_dir: Option<PathBuf>,
    /// The control socket to serve (none: not served).
    pub control: Option<ControlSocket>,
}

/// Where the agent serves `ironlb status`, `dump`, `stats` and `trace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSocket {
    /// The socket's path (`ironlb agent`: `--socket`, by default `STATE_DIR/ironlb.sock`).
    pub path: PathBuf,
    /// The group that owns it (mode 0660), when not the agent's own.
    pub group: Option<u32>,
}

/// Why the agent failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The device could not be opened.
    #[error("device {backend}: {source}")]
    Device {
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The reconciler failed as a whole.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// The metrics endpoint could not be served.
    #[error("--metrics {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The control socket could not be served.
    #[error(transparent)]
    Control(DaemonError),
    /// Writing status.json failed.
    #[error("{}: {source}", path.display())]
    Status {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The device, before and after the first listing.
enum Holder {
    /// Opened (tables adopted); nothing listed yet, so nothing may change on it.
    Waiting(Option<Box<Device>>),
    /// Reconciled.
    Running(Box<Reconciler>),
}

/// What the agent's thread shares with its control socket: the device, its reconciler once listed, and the model.
struct Core {
    holder: Holder,
    model: Option<SharedModel>,
}

impl Core {
    fn device(&mut self) -> &mut Device {
        match &mut self.holder {
            Holder::Running(r) => r.device(),
            Holder::Waiting(d) => d.as_mut().expect("a waiting agent holds its device"),
        }
    }

    fn reconciler(&mut self) -> Option<&mut Reconciler> {
        match &mut self.holder {
            Holder::Running(r) => Some(r),
            Holder::Waiting(_) => None,
        }
    }
}

impl Answer for Core {
    /// `dump`, `stats` or `trace` of the device; load balancers are named once the agent reconciles them.
    fn answer(&mut self, req: &Request) -> Result<String, OpError> {
        let names = self.reconciler().map(|r| r.names()).unwrap_or_default();
        let model = self.model.clone();
        let view = View {
            dev: self.device(),
            model: model.as_ref(),
            names: &names,
            copy: false,
        };
        crate::daemon::diagnose(view, req)
    }
}

/// The load balancers whose given allocation differs between `old` and `new` (given, changed or taken away).
fn touched(old: &AllocState, new: &AllocState) -> BTreeSet<ObjectKey> {
    let differs = |a: &AllocState, b: &AllocState| {
        a.lbs
            .iter()
            .filter(|(k, v)| b.lbs.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    differs(old, new).into_iter().chain(differs(new, old)).collect()
}

/// One host's agent.
pub struct Agent {
    source: EtcdSource,
    core: Arc<Mutex<Core>>,
    host: HostConfig,
    cache: LoadCache,
    given: AllocState,
    state_dir: Option<PathBuf>,
    last_status: Option<StatusFile>,
    metrics: Option<AgentMetrics>,
    drain_timeout: Duration,
    /// Device resets found and repaired, and the condition naming the last ([`Agent::check_device`]).
    device_resets: u64,
    device_conditions: Vec<crate::status::Condition>,
    /// What `status` on the control socket answers (kept current while [`Agent::serve_control`] serves).
    published: Arc<Mutex<Published>>,
    control: Option<ControlServer>,
}

/// The agent's metrics endpoint: the registry, its server, and the device figures of the last sync.
struct AgentMetrics {
    metrics: Arc<Metrics>,
    server: MetricsServer,
    device: Arc<Mutex<DeviceStats>>,
    read_at: Option<Instant>,
}

/// How often the device figures behind the metrics are read again (after a sync).
const DEVICE_STATS_EVERY: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Opens the device (adopting its tables), serves the control socket when one is configured (refused when
    /// another daemon or agent answers there) and starts following etcd. Nothing is programmed yet.
    pub fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let opened = cfg
            .backend
            .open(&cfg.device_config)
            .map_err(|source| AgentError::Device {
                backend: cfg.backend.to_string(),
                source,
            })?;
        let source = EtcdSource::start(cfg.etcd)?;
        let mut agent = Agent {
            source,
            core: Arc::new(Mutex::new(Core {
                holder: Holder::Waiting(Some(Box::new(opened.device))),
                model: opened.model,
            })),
            host: cfg.host,
            cache: LoadCache::default(),
            given: AllocState::default(),
            state_dir: cfg.state_dir,
            last_status: None,
            metrics: None,
            drain_timeout: crate::control::drain::DRAIN_TIMEOUT,
            device_resets: 0,
            device_conditions: Vec::new(),
            published: Arc::default(),
            control: None,
        };
        if let Some(dir) = &agent.state_dir {
            crate::fsmode::ensure_dir(dir, crate::fsmode::STATE_DIR_MODE).map_err(|source| {
                AgentError::Status {
                    path: dir.clone(),
                    source,
                }
            })?;
        }
        if let Some(c) = &cfg.control {
            agent.serve_control(&c.path, c.group)?;
        }
        Ok(agent)
    }

    /// The device and its reconciler, locked against the control socket's thread.
    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        // A panic while a request held the lock leaves the device as the driver left it: usable.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves the control socket at `path` (mode 0660, owned by `group` when given) for `ironlb status`, `dump`,
    /// `stats` and `trace`.
    fn serve_control(&mut self, path: &Path, group: Option<u32>) -> Result<(), AgentError> {
        let server = ControlServer::start(path, group, self.core.clone(), self.published.clone())
            .map_err(AgentError::Control)?;
        tracing::info!(socket = %path.display(), "serving the control socket");
        self.control = Some(server);
        self.last_status = None;
        self.write_status()
    }

    /// The control socket's path, when serving one.
    pub fn socket_path(&self) -> Option<&Path> {
        self.control.as_ref().map(ControlServer::path)
    }

    /// How long a target that leaves drains before it is removed (`--drain-timeout`; docs/operations.md
    /// "Draining targets"), from the next sync on.
    pub fn set_drain_timeout(&mut self, timeout: Duration) {
        self.drain_timeout = timeout;
        if let Some(rec) = self.core().reconciler() {
            rec.set_drain_timeout(timeout);
        }
    }

    /// Serves Prometheus metrics on `addr` (the daemon's, plus `ironlb_etcd_*`); returns the bound address.
    pub fn serve_metrics(&mut self, addr: SocketAddr) -> Result<SocketAddr, AgentError> {
        let device = Arc::new(Mutex::new(DeviceStats::default()));
        let read = device.clone();
        let metrics = Arc::new(Metrics::with_etcd(move || {
            read.lock().expect("device stats lock").clone()
        }));
        let server = metrics
            .serve(addr)
            .map_err(|source| AgentError::Metrics { addr, source })?;
        let bound = server.local_addr();
        tracing::info!(addr = %bound, "serving metrics");
        self.metrics = Some(AgentMetrics {
            metrics,
            server,
            device,
            read_at: None,
        });
        self.record_metrics(None);
        Ok(bound)
    }

    /// The bound metrics address, when serving.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.server.local_addr())
    }

    /// Updates the metrics after a sync (`None`: nothing reconciled, before the first listing).
    fn record_metrics(&mut self, report: Option<&SyncReport>) {
        let Some(m) = &mut self.metrics else {
            return;
        };
        let h = self.source.health();
        m.metrics.set_etcd(h.connected, h.outages, h.relists);
        let Some(report) = report else {
            return;
        };
        {
            let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
            let Some(rec) = core.reconciler() else {
                return;
            };
            let statuses: Vec<_> = rec.status().values().cloned().collect();
            m.metrics.record_sync(
                report,
                &statuses,
                rec.load_errors().len(),
                rec.device_down().is_none(),
            );
        }
        self.refresh_device_stats();
    }

    /// Reads the device figures behind the metrics again when the last read is [`DEVICE_STATS_EVERY`] old (after a
    /// sync, and while waiting for one: an idle agent's counters stay as fresh as a busy one's).
    fn refresh_device_stats(&mut self) {
        let Some(m) = &mut self.metrics else {
            return;
        };
        if m.read_at.is_none_or(|t| t.elapsed() >= DEVICE_STATS_EVERY) {
            let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
            let Some(rec) = core.reconciler() else {
                return;
            };
            *m.device.lock().expect("device stats lock") = crate::daemon::reconciler_stats(rec);
            m.read_at = Some(Instant::now());
        }
    }

    /// What of the connection's health status.json and the metrics show.
    fn health_seen(&self) -> (bool, bool, u64, u64) {
        let h = self.source.health();
        (h.connected, h.listed, h.outages, h.relists)
    }

    /// How the connection to etcd is doing.
    pub fn health(&self) -> EtcdHealth {
        self.source.health()
    }

    /// Waits up to `timeout` for the source's first listing.
    pub fn wait_listed(&self, timeout: Duration) -> bool {
        self.source.wait_listed(timeout)
    }

    /// Waits up to `timeout` until the source has seen every store write up to `revision`.
    pub fn wait_revision(&self, revision: i64, timeout: Duration) -> bool {
        self.source.wait_revision(revision, timeout)
    }

    /// What the device holds, per load balancer (the driver's specs: lb_id, VIPs, ports, targets, hashing), in
    /// lb_id order: equal on hosts that hold the same configuration, whatever their history (unlike raw table
    /// bytes, whose memory placement and shadow-set generation reflect the order changes arrived in).
    pub fn programmed(&mut self) -> Vec<ironlb_driver::LbSpec> {
        let mut core = self.core();
        let mut v: Vec<_> = core.device().programmed().cloned().collect();
        v.sort_by_key(|s| s.lb_id);
        v
    }

    /// The in-process model behind the device (backend `inproc`), to send packets through it as the host's traffic
    /// would; `None` for other backends.
    pub fn model(&self) -> Option<SharedModel> {
        self.core().model.clone()
    }

    /// Waits up to `timeout` for a change of the source.
    pub fn wait_change(&mut self, timeout: Duration) -> Result<bool, AgentError> {
        Ok(self.source.wait_change(timeout)?)
    }

    /// One reconcile of what the source holds now. `None` before the first listing (the device is left alone).
    pub fn sync(&mut self) -> Result<Option<SyncReport>, AgentError> {
        if !self.source.health().listed {
            self.record_metrics(None);
            self.write_status()?;
            return Ok(None);
        }
        let (snap, given) = self.source.snapshot_with_allocations();
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        if let Holder::Waiting(dev) = &mut core.holder {
            let dev = dev.take().expect("a waiting agent holds its device");
            let mut alloc = Allocator::given(dev.caps().lb_ids);
            alloc.set_given(given.clone());
            self.given = given.clone();
            let mut rec = Reconciler::new(*dev, alloc, &self.host)?;
            rec.set_drain_timeout(self.drain_timeout);
            core.holder = Holder::Running(Box::new(rec));
        }
        let Some(rec) = core.reconciler() else {
            unreachable!("set above")
        };
        let changes = self.cache.changes(&snap);
        for e in &snap.errors {
            tracing::warn!(error = %e, "stored value is not an object ironlb reads; serving its last good content");
        }
        let report = if given != self.given {
            // New allocations: the load balancers whose record changed are reconciled with the objects' changes
            // (incrementally, as those alone would be).
            let touched = touched(&self.given, &given);
            rec.allocator_mut().set_given(given.clone());
            self.given = given;
            rec.apply_touching(changes, touched)?
        } else if changes.is_empty() {
            rec.resync()?
        } else {
            rec.apply(changes)?
        };
        drop(core);
        for e in &report.errors {
            tracing::info!(lb = %e.key, reason = %e.reason, error = %e.message, "load balancer not programmed as desired");
        }
        self.record_metrics(Some(&report));
        self.write_status()?;
        Ok(Some(report))
    }

    /// Waits until the next sync is due, as `ironlb run` does: a change of the store (reconciles what it touches),
    /// a due retry, the periodic full resync ([`crate::daemon::RESYNC`]) or a device reset found (and repaired:
    /// [`Agent::check_device`], every second); before the first listing, a second. An outage starting or ending
    /// shows in status.json and the metrics at once, without a sync, and the device figures behind the metrics are
    /// read again every second. Returns early when `stop` is set (within 250 ms).
    pub fn wait_due(&mut self, stop: &AtomicBool) -> Result<(), AgentError> {
        let now = Instant::now();
        let deadline = match self.with_reconciler(|r| r.next_retry()) {
            Some(retry) => {
                let resync = now + crate::daemon::RESYNC;
                retry.map_or(resync, |at| at.min(resync))
            }
            None => now + Duration::from_secs(1),
        };
        let mut health = self.health_seen();
        let mut device_due = now + crate::daemon::HEALTH_INTERVAL;
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.source.wait_change(left.min(Duration::from_millis(250)))? || left.is_zero() {
                break;
            }
            if self.health_seen() != health {
                health = self.health_seen();
                self.record_metrics(None);
                if let Err(e) = self.write_status() {
                    tracing::error!(error = %e, "writing status.json failed");
                }
            }
            if Instant::now() >= device_due {
                device_due = Instant::now() + crate::daemon::HEALTH_INTERVAL;
                if self.check_device() {
                    break;
                }
            }
            self.refresh_device_stats();
        }
        Ok(())
    }

    /// Looks for a device reset that ironlb did not cause and, on one, re-programs every load balancer and reports
    /// it as `ironlb run` does (log line, `ironlb_device_resets_total`, the `DeviceRestored` condition in
    /// status.json); whether it restored one. [`Agent::wait_due`] looks every second.
    pub fn check_device(&mut self) -> bool {
        let wall = std::time::SystemTime::now();
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rec) = core.reconciler() else {
            return false;
        };
        let Some(c) = crate::daemon::restore_after_reset(rec, &mut self.device_resets, wall) else {
            return false;
        };
        drop(core);
        let restored = c.status == crate::status::ConditionStatus::True;
        self.device_conditions = vec![c];
        if let (true, Some(m)) = (restored, &self.metrics) {
            m.metrics.device_reset();
        }
        restored
    }

    /// `f` of the reconciler, once running (`None` before the first listing).
    pub fn with_reconciler<R>(&self, f: impl FnOnce(&mut Reconciler) -> R) -> Option<R> {
        self.core().reconciler().map(f)
    }

    /// The device's tables (`ironlb dump -o json`'s text, without names: equal on every host that holds the same
    /// configuration).
    pub fn dump_json(&mut self) -> Result<String, OpError> {
        let mut core = self.core();
        let model = core.model.clone();
        ops::dump(
            View {
                dev: core.device(),
                model: model.as_ref(),
                names: &BTreeMap::new(),
                copy: false,
            },
            "all",
            Format::Json,
            &ops::FlowFilter::default(),
        )
    }

    /// The source's state as `ironlb status` shows it, when it is not simply serving: etcd unreachable (since when,
    /// why) or not reached yet, and no listing yet.
    fn source_state(&self, listed: bool) -> Vec<String> {
        let h = self.source.health();
        let mut lines = Vec::new();
        if !h.connected {
            lines.push(match h.down_since {
                Some(since) => format!(
                    "{}: unreachable since {}: {}; the device keeps its last good state",
                    self.source.describe(),
                    crate::clock::rfc3339(since),
                    h.last_error.as_deref().unwrap_or("no answer")
                ),
                None => format!("{}: connecting", self.source.describe()),
            });
        }
        if !listed {
            lines.push("waiting for the first listing from etcd; the device is left as it is".into());
        }
        lines
    }

    /// What `ironlb status` shows: the load balancers' statuses, the source's state, the device's.
    fn status_now(&self) -> StatusFile {
        let mut core = self.core();
        let listed = core.reconciler().is_some();
        let (generation, load_errors, load_balancers, device_down) = match core.reconciler() {
            Some(r) => (
                self.source.health().revision as u64,
                r.load_errors().iter().map(ToString::to_string).collect(),
                r.status().values().cloned().collect(),
                r.device_down().cloned(),
            ),
            None => (0, Vec::new(), Vec::new(), None),
        };
        drop(core);
        StatusFile {
            generation,
            source_errors: Vec::new(),
            source_state: self.source_state(listed),
            load_errors,
            load_balancers,
            device_down,
            device_conditions: self.device_conditions.clone(),
        }
    }

    /// Publishes the status to the control socket and writes it to `STATE_DIR/status.json`, when it changed.
    fn write_status(&mut self) -> Result<(), AgentError> {
        if self.state_dir.is_none() && self.control.is_none() {
            return Ok(());
        }
        let status = self.status_now();
        if self.last_status.as_ref() == Some(&status) {
            return Ok(());
        }
        if self.control.is_some() {
            *self.published.lock().unwrap_or_else(|e| e.into_inner()) = status.clone().published();
        }
        if let Some(dir) = &self.state_dir {
            let json = serde_json::to_vec_pretty(&status).expect("status serializes");
            crate::fsmode::write_atomic(&dir.join("status.json"), &json, crate::fsmode::STATE_FILE_MODE)
                .map_err(|e| AgentError::Status {
                    path: e.path,
                    source: e.source,
                })?;
        }
        self.last_status = Some(status);
        Ok(())
    }

    /// Runs until `stop` is set: sync, then [`Agent::wait_due`].
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), AgentError> {
        tracing::info!(source = %self.source.describe(), "ironlb agent started");
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.sync() {
                tracing::error!(error = %e, "sync failed; retrying");
            }
            self.wait_due(stop)?;
        }
        tracing::info!("ironlb agent stopping; the device keeps its tables");
        Ok(())
    }
}
