//! The etcd source (cluster mode, docs/cluster.md "Agents"): the objects under a prefix, as a [`Source`], plus the
//! controller's allocation records.
//!
//! A background thread (with its own current-thread tokio runtime) lists the prefix at one revision, then watches
//! from the next ([`ironlb_cluster::watch::follow`]). Each origin is an etcd key (e.g.
//! `/ironlb/networking.ironcore.dev/LoadBalancer/default/web`) holding one document: the stored JSON as a YAML
//! value, which the consumer loads as it loads a manifest file.
//!
//! - **Compaction, a lost watch or an outage**: the thread lists again (a *relist*, counted in
//!   [`EtcdHealth::relists`]) and the snapshot becomes what etcd holds now; keys deleted meanwhile disappear, as in
//!   any resync.
//! - **etcd unreachable**: the snapshot stays the last one read (so a consumer keeps its last good state), the
//!   outage is logged and reported by [`EtcdSource::health`], and the thread reconnects with [`BACKOFF`]. On return
//!   it relists.
//! - A stored value that is not an object ironlb reads is an origin error (its last good content stays).

use super::{FileError, Snapshot, Source, SourceError, SourceFile};
use crate::alloc::{AllocState, LbAlloc};
use crate::backoff::BACKOFF;
use ironlb_cluster::codec;
use ironlb_cluster::store::{Listing, Store};
use ironlb_cluster::watch::{follow, FollowEnd};
use ironlb_cluster::EtcdConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How the connection to etcd is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdHealth {
    /// The source has a current listing and a running watch.
    pub connected: bool,
    /// At least one listing arrived since start (before that the snapshot is empty and must not be acted on).
    pub listed: bool,
    /// Since when etcd has been unreachable (while not connected).
    pub down_since: Option<SystemTime>,
    /// The last error (while not connected).
    pub last_error: Option<String>,
    /// Times the connection was lost.
    pub outages: u64,
    /// Attempts to reach etcd that failed in a row (0 while connected); the next waits [`BACKOFF`]`.delay` of it.
    pub failures: u32,
    /// Times the source listed again after a compaction or a lost watch.
    pub relists: u64,
    /// The store revision the snapshot is at.
    pub revision: i64,
}

#[derive(Debug, Default)]
struct Inner {
    snapshot: Snapshot,
    /// Per key: the revision and the shared content (reused while the revision does not change).
    files: BTreeMap<String, (i64, Arc<SourceFile>)>,
    allocations: AllocState,
    health: EtcdHealth,
    stopping: bool,
}

type Shared = Arc<(Mutex<Inner>, Condvar)>;

/// The etcd source. Dropping it stops its thread.
pub struct EtcdSource {
    shared: Shared,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<JoinHandle<()>>,
    describe: String,
    /// The generation of the last snapshot taken.
    seen: u64,
}

impl std::fmt::Debug for EtcdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSource")
            .field("describe", &self.describe)
            .finish_non_exhaustive()
    }
}

impl EtcdSource {
    /// Starts following the store `cfg` names. Returns at once; [`EtcdSource::wait_listed`] waits for the first
    /// listing.
    pub fn start(cfg: EtcdConfig) -> Result<EtcdSource, SourceError> {
        let shared: Shared = Arc::default();
        let stop = Arc::new(tokio::sync::Notify::new());
        let describe = format!("etcd:{}{}", cfg.endpoints.join(","), cfg.layout.prefix());
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("ironlb-etcd".into())
                .spawn(move || run(cfg, shared, stop))
                .map_err(|source| SourceError::ReadDir {
                    path: PathBuf::from("etcd"),
                    source,
                })?
        };
        Ok(EtcdSource {
            shared,
            stop,
            thread: Some(thread),
            describe,
            seen: u64::MAX,
        })
    }

    /// How the connection is doing.
    pub fn health(&self) -> EtcdHealth {
        self.shared.0.lock().expect("etcd source lock").health.clone()
    }

    /// Waits up to `timeout` until the snapshot is at store revision `revision` or later (it has seen every write
    /// up to it); whether it is.
    pub fn wait_revision(&self, revision: i64, timeout: Duration) -> bool {
        let (lock, cv) = &*self.shared;
        let g = lock.lock().expect("etcd source lock");
        let (g, _) = cv
            .wait_timeout_while(g, timeout, |i| i.health.revision < revision)
            .expect("etcd source lock");
        g.health.revision >= revision
    }

    /// The snapshot and the controller's allocations, from one listing.
    pub fn snapshot_with_allocations(&mut self) -> (Snapshot, AllocState) {
        let g = self.shared.0.lock().expect("etcd source lock");
        self.seen = g.snapshot.generation;
        (g.snapshot.clone(), g.allocations.clone())
    }

    /// Waits up to `timeout` for the first listing; whether it arrived.
    pub fn wait_listed(&self, timeout: Duration) -> bool {
        let (lock, cv) = &*self.shared;
        let g = lock.lock().expect("etcd source lock");
        let (g, _) = cv
            .wait_timeout_while(g, timeout, |i| !i.health.listed)
            .expect("etcd source lock");
        g.health.listed
    }
}

impl Drop for EtcdSource {
    fn drop(&mut self) {
        self.shared.0.lock().expect("etcd source lock").stopping = true;
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Source for EtcdSource {
    fn snapshot(&mut self) -> Result<Snapshot, SourceError> {
        let g = self.shared.0.lock().expect("etcd source lock");
        self.seen = g.snapshot.generation;
        Ok(g.snapshot.clone())
    }

    fn wait_change(&mut self, timeout: Duration) -> Result<bool, SourceError> {
        let (lock, cv) = &*self.shared;
        let g = lock.lock().expect("etcd source lock");
        let seen = self.seen;
        let (g, _) = cv
            .wait_timeout_while(g, timeout, |i| i.snapshot.generation == seen)
            .expect("etcd source lock");
        Ok(g.snapshot.generation != seen)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// The allocation records as the allocator's state.
fn alloc_state(listing: &Listing) -> AllocState {
    AllocState {
        lbs: listing
            .allocations
            .iter()
            .map(|(k, (a, _))| {
                (
                    k.clone(),
                    LbAlloc {
                        lb_id: Some(a.lb_id),
                        public_ips: a.public_ips.clone(),
                        prefix_ips: a.prefix_ips.clone(),
                    },
                )
            })
            .collect(),
        cursors: BTreeMap::new(),
    }
}

/// Publishes `listing` as the new snapshot (a new generation only when something changed).
fn publish(shared: &Shared, layout: &ironlb_cluster::Layout, listing: &Listing) {
    let (lock, cv) = &**shared;
    let mut g = lock.lock().expect("etcd source lock");
    let mut files = BTreeMap::new();
    for (r, stored) in &listing.objects {
        let key = layout.object_key(r);
        let content = match g.files.get(&key) {
            Some((rev, f)) if *rev == stored.revision => f.clone(),
            _ => Arc::new(SourceFile {
                bytes: codec::encode(&stored.object),
                documents: vec![codec::to_yaml_value(&codec::to_json(&stored.object))],
            }),
        };
        files.insert(key, (stored.revision, content));
    }
    let errors: Vec<FileError> = listing
        .undecodable
        .iter()
        .map(|u| FileError {
            path: PathBuf::from(&u.key),
            line: None,
            column: None,
            message: u.error.to_string(),
        })
        .collect();
    let snap_files: BTreeMap<PathBuf, Arc<SourceFile>> = files
        .iter()
        .map(|(k, (_, f))| (PathBuf::from(k), f.clone()))
        .collect();
    let allocations = alloc_state(listing);
    let changed =
        snap_files != g.snapshot.files || errors != g.snapshot.errors || allocations != g.allocations;
    g.files = files;
    if g.health.revision != listing.revision {
        g.health.revision = listing.revision;
        cv.notify_all();
    }
    let first = !g.health.listed;
    g.health.listed = true;
    if changed || first {
        let generation = g.snapshot.generation.wrapping_add(1);
        g.snapshot = Snapshot {
            generation,
            files: snap_files,
            errors,
        };
        g.allocations = allocations;
        cv.notify_all();
    }
}

fn set_connected(shared: &Shared, endpoints: &str) {
    let (lock, cv) = &**shared;
    let mut g = lock.lock().expect("etcd source lock");
    if !g.health.connected {
        if let Some(since) = g.health.down_since {
            let down = SystemTime::now().duration_since(since).unwrap_or_default();
            tracing::info!(etcd = %endpoints, ?down, "etcd reachable again; resynced");
        }
        g.health.connected = true;
        g.health.down_since = None;
        g.health.last_error = None;
        g.health.failures = 0;
        cv.notify_all();
    }
}

/// Records a failed attempt; returns how long to wait before the next ([`BACKOFF`] of the failures in a row).
fn set_down(shared: &Shared, endpoints: &str, error: &str) -> Duration {
    let (lock, cv) = &**shared;
    let mut g = lock.lock().expect("etcd source lock");
    if g.health.connected || g.health.down_since.is_none() {
        g.health.outages += u64::from(g.health.connected);
        g.health.down_since = Some(SystemTime::now());
    }
    g.health.connected = false;
    g.health.last_error = Some(error.to_string());
    g.health.failures = g.health.failures.saturating_add(1);
    let retry_in = BACKOFF.delay(g.health.failures);
    tracing::warn!(etcd = %endpoints, %error, ?retry_in, "etcd unreachable; the device keeps its last good state");
    cv.notify_all();
    retry_in
}

/// The source's thread: connect, follow, relist after a compaction, back off while etcd is away.
fn run(cfg: EtcdConfig, shared: Shared, stop: Arc<tokio::sync::Notify>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let endpoints = cfg.endpoints.join(",");
    let mut store: Option<Store> = None;
    let mut relist = false;
    loop {
        if shared.0.lock().expect("etcd source lock").stopping {
            return;
        }
        let result = rt.block_on(async {
            let s = match &store {
                Some(s) => s.clone(),
                None => {
                    let s = Store::connect(&cfg).await?;
                    store = Some(s.clone());
                    s
                }
            };
            let layout = s.layout().clone();
            let on_change = |l: &Listing| {
                if std::mem::take(&mut relist) {
                    shared.0.lock().expect("etcd source lock").health.relists += 1;
                }
                set_connected(&shared, &endpoints);
                publish(&shared, &layout, l);
            };
            // Always a fresh listing: after a compaction, and after an outage (whatever etcd did meanwhile, the
            // listing is its state now; resuming the old watch would be cheaper but is not needed for correctness).
            tokio::select! {
                r = follow(&s, None, on_change) => r.map(Some),
                _ = stop.notified() => Ok(None),
            }
        });
        let retry_in = match result {
            Ok(None) => return,
            Ok(Some(FollowEnd::Compacted { compact_revision })) => {
                relist = true;
                tracing::info!(etcd = %endpoints, compact_revision, "etcd compacted past the watch; listing again");
                continue;
            }
            Ok(Some(FollowEnd::Lost(why))) => {
                store = None;
                relist = true;
                set_down(&shared, &endpoints, &why)
            }
            Err(e) => {
                store = None;
                relist = shared.0.lock().expect("etcd source lock").health.listed;
                set_down(&shared, &endpoints, &e.to_string())
            }
        };
        let deadline = Instant::now() + retry_in;
        let stopped = rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => false,
                _ = stop.notified() => true,
            }
        });
        if stopped {
            return;
        }
    }
}
