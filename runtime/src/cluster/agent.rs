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
//! `ironlb_etcd_outages_total` beside the daemon's metrics. The agent owns its device on its own thread, so the
//! device figures a scrape shows are the ones its thread read last: after each sync, and every second while it waits
//! (at most about a second old).

use crate::alloc::{AllocState, Allocator};
use crate::backend::{BackendSpec, OpenError};
use crate::daemon::metrics::{DeviceStats, Metrics, MetricsServer};
use crate::daemon::StatusFile;
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
use std::path::PathBuf;
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
    holder: Holder,
    model: Option<SharedModel>,
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
    /// Opens the device (adopting its tables) and starts following etcd. Nothing is programmed yet.
    pub fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let opened = cfg
            .backend
            .open(&cfg.device_config)
            .map_err(|source| AgentError::Device {
                backend: cfg.backend.to_string(),
                source,
            })?;
        let source = EtcdSource::start(cfg.etcd)?;
        Ok(Agent {
            source,
            holder: Holder::Waiting(Some(Box::new(opened.device))),
            model: opened.model,
            host: cfg.host,
            cache: LoadCache::default(),
            given: AllocState::default(),
            state_dir: cfg.state_dir,
            last_status: None,
            metrics: None,
            drain_timeout: crate::control::drain::DRAIN_TIMEOUT,
            device_resets: 0,
            device_conditions: Vec::new(),
        })
    }

    /// How long a target that leaves drains before it is removed (`--drain-timeout`; docs/operations.md
    /// "Draining targets"), from the next sync on.
    pub fn set_drain_timeout(&mut self, timeout: Duration) {
        self.drain_timeout = timeout;
        if let Holder::Running(rec) = &mut self.holder {
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
        let (Some(report), Holder::Running(rec)) = (report, &mut self.holder) else {
            return;
        };
        let statuses: Vec<_> = rec.status().values().cloned().collect();
        m.metrics.record_sync(
            report,
            &statuses,
            rec.load_errors().len(),
            rec.device_down().is_none(),
        );
        self.refresh_device_stats();
    }

    /// Reads the device figures behind the metrics again when the last read is [`DEVICE_STATS_EVERY`] old (after a
    /// sync, and while waiting for one: an idle agent's counters stay as fresh as a busy one's).
    fn refresh_device_stats(&mut self) {
        let (Some(m), Holder::Running(rec)) = (&mut self.metrics, &mut self.holder) else {
            return;
        };
        if m.read_at.is_none_or(|t| t.elapsed() >= DEVICE_STATS_EVERY) {
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
        let dev = match &mut self.holder {
            Holder::Running(r) => r.device(),
            Holder::Waiting(d) => d.as_mut().expect("a waiting agent holds its device"),
        };
        let mut v: Vec<_> = dev.programmed().cloned().collect();
        v.sort_by_key(|s| s.lb_id);
        v
    }

    /// The in-process model behind the device (backend `inproc`), to send packets through it as the host's traffic
    /// would; `None` for other backends.
    pub fn model(&self) -> Option<SharedModel> {
        self.model.clone()
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
        if let Holder::Waiting(dev) = &mut self.holder {
            let dev = dev.take().expect("a waiting agent holds its device");
            let mut alloc = Allocator::given(dev.caps().lb_ids);
            alloc.set_given(given.clone());
            self.given = given.clone();
            let mut rec = Reconciler::new(*dev, alloc, &self.host)?;
            rec.set_drain_timeout(self.drain_timeout);
            self.holder = Holder::Running(Box::new(rec));
        }
        let Holder::Running(rec) = &mut self.holder else {
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
        let deadline = match self.reconciler() {
            Some(r) => {
                let resync = now + crate::daemon::RESYNC;
                r.next_retry().map_or(resync, |at| at.min(resync))
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
        let Holder::Running(rec) = &mut self.holder else {
            return false;
        };
        let wall = std::time::SystemTime::now();
        let Some(c) = crate::daemon::restore_after_reset(rec, &mut self.device_resets, wall) else {
            return false;
        };
        let restored = c.status == crate::status::ConditionStatus::True;
        self.device_conditions = vec![c];
        if let (true, Some(m)) = (restored, &self.metrics) {
            m.metrics.device_reset();
        }
        restored
    }

    /// The reconciler, once running.
    pub fn reconciler(&mut self) -> Option<&mut Reconciler> {
        match &mut self.holder {
            Holder::Running(r) => Some(r),
            Holder::Waiting(_) => None,
        }
    }

    /// The device's tables (`ironlb dump -o json`'s text).
    pub fn dump_json(&mut self) -> Result<String, OpError> {
        let names = BTreeMap::new();
        let dev = match &mut self.holder {
            Holder::Running(r) => r.device(),
            Holder::Waiting(d) => d.as_mut().expect("a waiting agent holds its device"),
        };
        ops::dump(
            View {
                dev,
                model: self.model.as_ref(),
                names: &names,
                copy: false,
            },
            "all",
            Format::Json,
            &ops::FlowFilter::default(),
        )
    }

    /// The etcd outage, as the line `ironlb status` shows.
    fn outage_line(&self) -> Option<String> {
        let h = self.source.health();
        if h.connected {
            return None;
        }
        let since = h.down_since.map(crate::clock::rfc3339).unwrap_or_default();
        Some(format!(
            "{}: unreachable since {since}: {}; the device keeps its last good state",
            self.source.describe(),
            h.last_error.as_deref().unwrap_or("not connected yet")
        ))
    }

    fn write_status(&mut self) -> Result<(), AgentError> {
        let Some(dir) = self.state_dir.clone() else {
            return Ok(());
        };
        let mut source_errors: Vec<String> = self.outage_line().into_iter().collect();
        let (generation, load_errors, load_balancers) = match &self.holder {
            Holder::Running(r) => {
                let snap_generation = self.source.health().revision as u64;
                (
                    snap_generation,
                    r.load_errors().iter().map(ToString::to_string).collect(),
                    r.status().values().cloned().collect(),
                )
            }
            Holder::Waiting(_) => (0, Vec::new(), Vec::new()),
        };
        if let Holder::Waiting(_) = self.holder {
            source_errors.push("waiting for the first listing from etcd; the device is left as it is".into());
        }
        let status = StatusFile {
            generation,
            source_errors,
            load_errors,
            load_balancers,
            device_down: None,
            device_conditions: self.device_conditions.clone(),
        };
        if self.last_status.as_ref() == Some(&status) {
            return Ok(());
        }
        crate::fsmode::ensure_dir(&dir, crate::fsmode::STATE_DIR_MODE).map_err(|source| {
            AgentError::Status {
                path: dir.clone(),
                source,
            }
        })?;
        let p = dir.join("status.json");
        let json = serde_json::to_vec_pretty(&status).expect("status serializes");
        crate::fsmode::write_atomic(&p, &json, crate::fsmode::STATE_FILE_MODE).map_err(|e| {
            AgentError::Status {
                path: e.path,
                source: e.source,
            }
        })?;
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
