//! Prometheus / OpenMetrics metrics of the ironlb daemon and the HTTP endpoint that serves them.
//!
//! [`Metrics`] owns a [`prometheus_client`] registry. The controller feeds it as it works
//! ([`Metrics::observe_reconcile`], [`Metrics::reconcile_error`], [`Metrics::set_lb_states`]); the
//! device-side figures are not stored here at all but read at scrape time through the closure given to
//! [`Metrics::new`], which returns one [`DeviceStats`] per scrape. [`Metrics::serve`] exposes everything
//! over HTTP (`ironlb run --metrics 127.0.0.1:PORT`):
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | 200, the OpenMetrics text exposition, `Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8`; 500 with a message if the device statistics could not be read (the stats closure panicked) |
//! | `GET /healthz` | 200, `ok` (the endpoint is up; says nothing about the device) |
//! | other paths | 404 |
//! | other methods on the two paths above | 405 with `Allow: GET, HEAD` (`HEAD` is answered like `GET`, without a body) |
//!
//! # Metrics
//!
//! Names are as they appear in the exposition; counters carry the `_total` suffix, the histogram the
//! usual `_bucket`/`_sum`/`_count` series. Packet and byte counters are cumulative device counters: they
//! only go back to zero when the device (or the model) is reset, which Prometheus' `rate()` treats as
//! a counter reset.
//!
//! Controller metrics (kept in this process):
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `ironlb_reconcile_duration_seconds` | histogram | — | wall time of one reconcile pass; buckets 10 µs … 10 s in 1-2.5-5 steps |
//! | `ironlb_reconciles_total` | counter | — | reconcile passes completed (each [`Metrics::observe_reconcile`]) |
//! | `ironlb_reconcile_errors_total` | counter | `namespace`, `name`, `reason` | LoadBalancer reconciles that failed, by object and condition reason (`TableFull`, `PoolExhausted`, `InvalidSpec`, …); a series appears with its first error and goes when the LoadBalancer is deleted |
//! | `ironlb_load_balancers` | gauge | `state` = `ready` \| `failed` | LoadBalancers whose last reconcile succeeded / failed; both series are always present |
//! | `ironlb_manifest_load_errors` | gauge | — | manifest files that do not parse or cannot be read, and documents that do not load (unknown kind, bad field): each keeps what it held at its last good state, and is listed by `ironlb status` and in `status.json` |
//! | `ironlb_device_up` | gauge | — | 1 while the device answers, 0 from a command timeout until a probe succeeds (device figures are then not read) |
//! | `ironlb_device_down_total` | counter | — | times the device was marked down |
//! | `ironlb_manifest_files_refused` | gauge | — | manifest files currently refused for their type (FIFO, socket, device) or size (`crate::source::read`); each is also a source error in `status.json` |
//!
//! Device metrics (read from the device at every scrape):
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `ironlb_lb_packets_total` | counter | `namespace`, `name`, `lb_id` | packets forwarded for a programmed load balancer (`lb_id` is its device id) |
//! | `ironlb_lb_bytes_total` | counter | `namespace`, `name`, `lb_id` | bytes of those packets (as received, before encapsulation) |
//! | `ironlb_target_packets_total` | counter | `namespace`, `name`, `target` | packets sent to one target of a load balancer; `target` is its underlay IPv6 address |
//! | `ironlb_target_bytes_total` | counter | `namespace`, `name`, `target` | bytes of those packets |
//! | `ironlb_drops_total` | counter | `reason` | packets dropped by the pipeline, by drop reason (e.g. `no_lb_match`) |
//! | `ironlb_flow_events_total` | counter | `event` | flow-table events (contract v1.2): `learned`, `hits`, `aged`, `overflow` (flows not pinned, set full), `flushed`, `relearned` (pinned target removed) |
//! | `ironlb_table_entries` | gauge | `table` | entries in use in a device table (`flow`: pinned flows) |
//! | `ironlb_table_capacity` | gauge | `table` | entries a device table can hold |
//!
//! The device families are always described (`# HELP`/`# TYPE`), even when they have no series, e.g.
//! `ironlb_lb_packets_total` before the first load balancer is programmed. The stats closure must not
//! return two entries with the same label set (for instance the same target twice for one load
//! balancer): OpenMetrics forbids duplicate series and Prometheus rejects the whole scrape.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Instant;
//! use ironlb_runtime::metrics::{DeviceStats, Metrics};
//!
//! let metrics = Arc::new(Metrics::new(DeviceStats::default));
//! let _server = metrics.serve("127.0.0.1:9464".parse().unwrap())?; // serves until dropped
//! let started = Instant::now();
//! // ... reconcile ...
//! metrics.observe_reconcile(started.elapsed());
//! metrics.set_lb_states(3, 0);
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::reconcile::SyncReport;
use crate::status::LbStatus;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of a `GET /metrics` answer.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of `ironlb_reconcile_duration_seconds`: 10 µs … 10 s in 1-2.5-5 steps.
const RECONCILE_BUCKETS: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One scrape's worth of device-side figures, produced by the daemon at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// One entry per programmed load balancer.
    pub lbs: Vec<LbStats>,
    /// One entry per (load balancer, target).
    pub targets: Vec<TargetStats>,
    /// Drop reason name (e.g. `"no_lb_match"`) and the packets dropped for it.
    pub drops: Vec<(&'static str, u64)>,
    /// Occupancy of each device table.
    pub tables: Vec<TableUse>,
    /// Flow-table events (`learned`, `hits`, `aged`, `overflow`, `flushed`, `relearned`) and their counts; empty
    /// when the device has no flow table.
    pub flows: Vec<(&'static str, u64)>,
}

/// Traffic of one programmed load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbStats {
    /// Namespace of the LoadBalancer object.
    pub namespace: String,
    /// Name of the LoadBalancer object.
    pub name: String,
    /// The load balancer's id on the device.
    pub lb_id: u32,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
}

/// Traffic sent to one target of one load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStats {
    /// Namespace of the LoadBalancer object.
    pub namespace: String,
    /// Name of the LoadBalancer object.
    pub name: String,
    /// The target's underlay address.
    pub target: Ipv6Addr,
    /// Packets sent to the target.
    pub packets: u64,
    /// Bytes sent to the target.
    pub bytes: u64,
}

/// Occupancy of one device table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableUse {
    /// Table name (e.g. `"vip"`).
    pub table: &'static str,
    /// Entries in use.
    pub used: u64,
    /// Entries the table can hold.
    pub capacity: u64,
}

/// Why a scrape could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The device statistics closure panicked; the text is the panic message.
    #[error("reading the device statistics panicked: {0}")]
    StatsPanicked(String),
}

type StatsFn = dyn Fn() -> DeviceStats + Send + Sync;
type ErrorLabels = [(&'static str, String); 3];
type StateLabels = [(&'static str, &'static str); 1];

/// The daemon's metrics: a registry with the controller's own metrics plus a collector that reads
/// [`DeviceStats`] at every scrape. Share it as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    reconciles: Counter,
    reconcile_errors: Family<ErrorLabels, Counter>,
    /// The label sets of `reconcile_errors` by load balancer, to drop them when it is deleted.
    error_series: std::sync::Mutex<BTreeMap<(String, String), Vec<ErrorLabels>>>,
    load_balancers: Family<StateLabels, Gauge<u64, AtomicU64>>,
    files_refused: Gauge<u64, AtomicU64>,
    load_errors: Gauge<u64, AtomicU64>,
    device_up: Gauge<u64, AtomicU64>,
    device_down: Counter,
    device_resets: Counter,
    /// Cluster mode's agent: the connection to etcd ([`Metrics::with_etcd`]).
    etcd: Option<EtcdMetrics>,
}

/// `ironlb_etcd_*`: how an agent's connection to etcd is doing.
struct EtcdMetrics {
    up: Gauge<u64, AtomicU64>,
    outages: Counter,
    relists: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Build the registry. `stats` is called once per scrape (each [`encode`](Self::encode)) to read the
    /// device counters; it should be quick, since the scrape waits for it.
    pub fn new(stats: impl Fn() -> DeviceStats + Send + Sync + 'static) -> Self {
        let mut registry = Registry::default();

        let reconcile_duration = Histogram::new(RECONCILE_BUCKETS);
        registry.register_with_unit(
            "ironlb_reconcile_duration",
            "Wall time of one reconcile pass",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let reconciles = Counter::default();
        registry.register(
            "ironlb_reconciles",
            "Reconcile passes completed",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "ironlb_reconcile_errors",
            "Failed LoadBalancer reconciles by object and condition reason",
            reconcile_errors.clone(),
        );
        let load_balancers = Family::<StateLabels, Gauge<u64, AtomicU64>>::default();
        registry.register(
            "ironlb_load_balancers",
            "LoadBalancers by the state of their last reconcile",
            load_balancers.clone(),
        );
        // Both states exist from the start, so a dashboard never sees the family missing.
        load_balancers.get_or_create(&[("state", "ready")]).set(0);
        load_balancers.get_or_create(&[("state", "failed")]).set(0);

        let files_refused = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "ironlb_manifest_files_refused",
            "Manifest files refused for their type (not a regular file) or their size",
            files_refused.clone(),
        );

        let load_errors = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "ironlb_manifest_load_errors",
            "Manifest files and documents that do not load (served from their last good content)",
            load_errors.clone(),
        );

        let device_up = Gauge::<u64, AtomicU64>::default();
        device_up.set(1);
        registry.register(
            "ironlb_device_up",
            "1 while the device answers commands, 0 after a command timed out until it answers again",
            device_up.clone(),
        );
        let device_down = Counter::default();
        registry.register(
            "ironlb_device_down",
            "Times the device was marked down (a command timed out)",
            device_down.clone(),
        );
        let device_resets = Counter::default();
        registry.register(
            "ironlb_device_resets",
            "Device resets the daemon did not cause, detected and answered by re-programming every LoadBalancer",
            device_resets.clone(),
        );

        registry.register_collector(Box::new(DeviceCollector {
            stats: Box::new(stats),
        }));

        Self {
            registry,
            reconcile_duration,
            reconciles,
            reconcile_errors,
            error_series: Default::default(),
            load_balancers,
            files_refused,
            load_errors,
            device_up,
            device_down,
            device_resets,
            etcd: None,
        }
    }

    /// [`Metrics::new`] plus the agent's `ironlb_etcd_up`, `ironlb_etcd_outages_total` and
    /// `ironlb_etcd_relists_total` ([`Metrics::set_etcd`]).
    pub fn with_etcd(stats: impl Fn() -> DeviceStats + Send + Sync + 'static) -> Self {
        let mut m = Metrics::new(stats);
        let etcd = EtcdMetrics {
            up: Gauge::default(),
            outages: Counter::default(),
            relists: Counter::default(),
        };
        m.registry.register(
            "ironlb_etcd_up",
            "1 while the agent is connected to etcd, 0 during an outage (the device keeps its last good state)",
            etcd.up.clone(),
        );
        m.registry.register(
            "ironlb_etcd_outages",
            "Times the agent lost etcd",
            etcd.outages.clone(),
        );
        m.registry.register(
            "ironlb_etcd_relists",
            "Full listings after a compaction, a lost watch or an outage",
            etcd.relists.clone(),
        );
        m.etcd = Some(etcd);
        m
    }

    /// Sets the etcd metrics from the source's health: connected, and its outage and relist totals (the counters
    /// follow the totals; no-op without [`Metrics::with_etcd`]).
    pub fn set_etcd(&self, connected: bool, outages: u64, relists: u64) {
        let Some(e) = &self.etcd else {
            return;
        };
        e.up.set(u64::from(connected));
        e.outages.inc_by(outages.saturating_sub(e.outages.get()));
        e.relists.inc_by(relists.saturating_sub(e.relists.get()));
    }

    /// Records a completed sync: its duration, its per-LoadBalancer errors, the LoadBalancers by state (dropping
    /// the error series of deleted ones), the load errors and whether the device is up.
    pub fn record_sync(
        &self,
        report: &SyncReport,
        statuses: &[LbStatus],
        load_errors: usize,
        device_up: bool,
    ) {
        self.set_device_up(device_up);
        self.set_load_errors(load_errors as u64);
        self.observe_reconcile(report.duration);
        for e in &report.errors {
            self.reconcile_error(&e.key.namespace, &e.key.name, e.reason.as_str());
        }
        let failed = statuses.iter().filter(|s| !s.ready()).count() as u64;
        self.set_lb_states(statuses.len() as u64 - failed, failed);
        self.forget_deleted(
            &statuses
                .iter()
                .map(|s| (s.namespace.clone(), s.name.clone()))
                .collect(),
        );
    }

    /// Count one detected device reset (`ironlb_device_resets_total`).
    pub fn device_reset(&self) {
        self.device_resets.inc();
    }

    /// Record one completed reconcile pass that took `d` (`ironlb_reconcile_duration_seconds`,
    /// `ironlb_reconciles_total`).
    pub fn observe_reconcile(&self, d: Duration) {
        self.reconcile_duration.observe(d.as_secs_f64());
        self.reconciles.inc();
    }

    /// Count one failed reconcile of LoadBalancer `namespace`/`name` with condition reason `reason`
    /// (CamelCase, e.g. `TableFull`) in `ironlb_reconcile_errors_total`.
    pub fn reconcile_error(&self, namespace: &str, name: &str, reason: &str) {
        let labels = [
            ("namespace", namespace.to_owned()),
            ("name", name.to_owned()),
            ("reason", reason.to_owned()),
        ];
        self.reconcile_errors.get_or_create(&labels).inc();
        let mut series = self.error_series.lock().expect("metrics lock");
        let known = series.entry((namespace.to_owned(), name.to_owned())).or_default();
        if !known.contains(&labels) {
            known.push(labels);
        }
    }

    /// Drop the `ironlb_reconcile_errors_total` series of every load balancer not in `present` (`namespace`,
    /// `name`): a deleted object's series disappear instead of staying forever.
    pub fn forget_deleted(&self, present: &BTreeSet<(String, String)>) {
        let mut series = self.error_series.lock().expect("metrics lock");
        series.retain(|k, labels| {
            let keep = present.contains(k);
            if !keep {
                for l in labels.iter() {
                    self.reconcile_errors.remove(l);
                }
            }
            keep
        });
    }

    /// Set `ironlb_load_balancers{state="ready"}` and `{state="failed"}`.
    pub fn set_lb_states(&self, ready: u64, failed: u64) {
        self.load_balancers
            .get_or_create(&[("state", "ready")])
            .set(ready);
        self.load_balancers
            .get_or_create(&[("state", "failed")])
            .set(failed);
    }

    /// Set `ironlb_manifest_load_errors`.
    pub fn set_load_errors(&self, n: u64) {
        self.load_errors.set(n);
    }

    /// Set `ironlb_device_up`.
    pub fn set_device_up(&self, up: bool) {
        self.device_up.set(u64::from(up));
    }

    /// Count one transition to down in `ironlb_device_down_total` (and set `ironlb_device_up` to 0).
    pub fn device_went_down(&self) {
        self.device_down.inc();
        self.device_up.set(0);
    }

    /// Set `ironlb_manifest_files_refused`.
    pub fn set_files_refused(&self, n: u64) {
        self.files_refused.set(n);
    }

    /// The OpenMetrics text exposition of every metric, ending in `# EOF`. Calls the stats closure once.
    ///
    /// # Panics
    /// If the stats closure panics (the panic is passed on); [`try_encode`](Self::try_encode) catches it.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String cannot fail");
        out
    }

    /// Like [`encode`](Self::encode), but a panic of the stats closure becomes
    /// [`ScrapeError::StatsPanicked`] instead of unwinding into the caller. This is what the HTTP
    /// endpoint uses.
    pub fn try_encode(&self) -> Result<String, ScrapeError> {
        // Unwind safety: a panic can only interrupt the closure or the writing into the local `String`,
        // which is dropped; the registry's metrics use non-poisoning locks and are only read here.
        catch_unwind(AssertUnwindSafe(|| self.encode()))
            .map_err(|payload| ScrapeError::StatsPanicked(panic_message(payload.as_ref())))
    }

    /// Serve the metrics over HTTP on `addr` from a background thread, until the returned
    /// [`MetricsServer`] is dropped. See the [module docs](self) for the paths.
    ///
    /// # Errors
    /// Binding `addr` failed (in use, not a local address, no permission); the error keeps the OS
    /// error's kind and names the address.
    pub fn serve(self: &Arc<Self>, addr: SocketAddr) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for metrics on {addr}: {e}")))?;
        let local_addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| io::Error::other(format!("cannot start the metrics server on {local_addr}: {e}")))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, stop, metrics) = (Arc::clone(&server), Arc::clone(&stop), Arc::clone(self));
            std::thread::Builder::new()
                .name("ironlb-metrics".into())
                .spawn(move || serve_loop(&server, &stop, &metrics))?
        };
        tracing::debug!(addr = %local_addr, "metrics endpoint listening");
        Ok(MetricsServer {
            server,
            stop,
            local_addr,
            thread: Some(thread),
        })
    }
}

/// A running metrics endpoint (see [`Metrics::serve`]). Dropping it stops the server thread and waits
/// for it; the port is released shortly after.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(addr = %self.local_addr, "metrics server thread panicked");
            }
        }
    }
}

/// Answer requests until [`MetricsServer`]'s drop sets `stop` and unblocks the server.
fn serve_loop(server: &tiny_http::Server, stop: &AtomicBool, metrics: &Metrics) {
    loop {
        match server.recv() {
            Ok(request) => handle(metrics, request),
            Err(_) if stop.load(Ordering::SeqCst) => return,
            Err(e) => {
                // An accept error (e.g. out of file descriptors): keep serving, but do not spin.
                tracing::warn!(error = %e, "metrics endpoint: accepting a connection failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn handle(metrics: &Metrics, request: tiny_http::Request) {
    use tiny_http::{Method, Response};

    let path = request.url().split('?').next().unwrap_or_default();
    let readable = matches!(request.method(), Method::Get | Method::Head);
    let response = match path {
        "/metrics" | "/healthz" if !readable => Response::from_string("method not allowed: use GET\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD")),
        "/metrics" => match metrics.try_encode() {
            Ok(body) => {
                Response::from_string(body).with_header(header("Content-Type", OPENMETRICS_CONTENT_TYPE))
            }
            Err(e) => {
                tracing::error!(error = %e, "metrics scrape failed");
                Response::from_string(format!("metrics unavailable: {e}\n")).with_status_code(500)
            }
        },
        "/healthz" => Response::from_string("ok"),
        _ => Response::from_string("not found: try /metrics or /healthz\n").with_status_code(404),
    };
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "metrics endpoint: writing a response failed");
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid ASCII")
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Emits the device families from one call of the stats closure.
struct DeviceCollector {
    stats: Box<StatsFn>,
}

impl fmt::Debug for DeviceCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCollector").finish_non_exhaustive()
    }
}

/// Whether a device family is a counter or a gauge.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Describe one family and write its series.
fn family<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, unit, kind): (&str, &str, Option<Unit>, Kind),
    series: impl IntoIterator<Item = (S, u64)>,
) -> fmt::Result {
    let metric_type = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    let mut metric = encoder.encode_descriptor(name, help, unit.as_ref(), metric_type)?;
    for (labels, value) in series {
        let sample = metric.encode_family(&labels)?;
        match kind {
            Kind::Counter => ConstCounter::new(value).encode(sample)?,
            Kind::Gauge => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

impl Collector for DeviceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let stats = (self.stats)();
        let enc = &mut encoder;

        let lb_labels = |lb: &LbStats| {
            [
                ("namespace", lb.namespace.clone()),
                ("name", lb.name.clone()),
                ("lb_id", lb.lb_id.to_string()),
            ]
        };
        family(
            enc,
            (
                "ironlb_lb_packets",
                "Packets forwarded per load balancer.",
                None,
                Kind::Counter,
            ),
            stats.lbs.iter().map(|lb| (lb_labels(lb), lb.packets)),
        )?;
        family(
            enc,
            (
                "ironlb_lb",
                "Bytes forwarded per load balancer.",
                Some(Unit::Bytes),
                Kind::Counter,
            ),
            stats.lbs.iter().map(|lb| (lb_labels(lb), lb.bytes)),
        )?;

        let target_labels = |t: &TargetStats| {
            [
                ("namespace", t.namespace.clone()),
                ("name", t.name.clone()),
                ("target", t.target.to_string()),
            ]
        };
        family(
            enc,
            (
                "ironlb_target_packets",
                "Packets sent per load balancer target.",
                None,
                Kind::Counter,
            ),
            stats.targets.iter().map(|t| (target_labels(t), t.packets)),
        )?;
        family(
            enc,
            (
                "ironlb_target",
                "Bytes sent per load balancer target.",
                Some(Unit::Bytes),
                Kind::Counter,
            ),
            stats.targets.iter().map(|t| (target_labels(t), t.bytes)),
        )?;

        family(
            enc,
            (
                "ironlb_drops",
                "Packets dropped by the device pipeline, by reason.",
                None,
                Kind::Counter,
            ),
            stats.drops.iter().map(|&(reason, n)| ([("reason", reason)], n)),
        )?;
        family(
            enc,
            (
                "ironlb_flow_events",
                "Flow-table events of the device (pinned flows), by event.",
                None,
                Kind::Counter,
            ),
            stats.flows.iter().map(|&(event, n)| ([("event", event)], n)),
        )?;

        family(
            enc,
            (
                "ironlb_table_entries",
                "Entries in use per device table.",
                None,
                Kind::Gauge,
            ),
            stats.tables.iter().map(|t| ([("table", t.table)], t.used)),
        )?;
        family(
            enc,
            (
                "ironlb_table_capacity",
                "Entries each device table can hold.",
                None,
                Kind::Gauge,
            ),
            stats.tables.iter().map(|t| ([("table", t.table)], t.capacity)),
        )?;
        Ok(())
    }
}
