//! The reconciler (issue 5 §4): keeps the device equal to what the objects ask for.
//!
//! One [`Reconciler`] owns the [`Device`] and the durable [`Allocator`]. Each [`Reconciler::sync`] takes the
//! complete current set of objects (a source snapshot) and:
//!
//! 1. validates them; a LoadBalancer that is invalid (or whose document does not even load) keeps whatever was
//!    programmed for it last (its *last good* state) and gets `Ready=False, reason InvalidSpec`;
//! 2. removes the load balancers that no longer exist: their VIP entries first, then their memory (the driver's
//!    `remove`), and only then releases their lb_id and IPs; device entries that no allocation claims (orphans
//!    from an earlier state file or another writer) are removed too;
//! 3. allocates lb_ids and IPs for the valid ones in one durable batch, *before* anything is programmed, so a
//!    crash at any later point restarts with the same allocations;
//! 4. computes the desired [`LbSpec`]s ([`crate::controller::desired`]) and programs only the differences,
//!    ordered so that a VIP moving between load balancers is released before it is claimed: first every changed
//!    load balancer drops the VIPs it no longer wants, then updates and creations run, each creation or update
//!    whose new VIPs are still held by another pending change waiting for it. Every update is hitless (the
//!    driver's shadow-set flips, docs/hw-spec.md §8);
//! 5. records per-LB errors with exponential backoff and publishes a status per load balancer
//!    ([`LbStatus`]: `status.ips`, the routing, `Ready` and `TargetsResolved` conditions).
//!
//! An error in one load balancer never stops the others. On start ([`Reconciler::new`]) the device's tables are
//! adopted (no flush), so a restart sends nothing for load balancers that did not change.

use crate::alloc::{AllocError, Allocator};
use crate::api::{DocumentId, ObjectKey, ObjectRef};
use crate::api::{LoadBalancer, LoadBalancerRouting, Object};
use crate::backoff::BACKOFF;
use crate::clock::{rfc3339, SharedClock};
use crate::control::plan::{plan, Observed, Op, RemoveReason};
use crate::controller::desired_refs;
use crate::manifest::{LoadError, Loaded};
use crate::status::{Condition, ConditionStatus, ConditionType, DeviceDown, LbStatus, Reason};
use crate::store::{FileChange, Store};
use crate::validate::{validate_parsed, validate_refs, LbParsed, Validated, VipDomain};
use ipnet::IpNet;
use ironlb_driver::{Device, DriverError, LbSpec};
use ironlb_hw::entry::{PortCfg, PortKind};
use ironlb_hw::LbKey;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a deleted load balancer's lb_id and IPs stay allocated after its entries left the device (default of
/// [`Reconciler::set_release_grace`], `ironlb run --release-grace`). A load balancer that comes back within it (a
/// file restored, an edit that briefly lost it) gets the same lb_id and VIPs.
pub const RELEASE_GRACE: Duration = Duration::from_secs(600);

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

/// What one [`Reconciler::sync`] did.
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

#[derive(Debug, Clone)]
struct Failure {
    attempts: u32,
    next_at: Instant,
    /// The spec whose programming failed (`None`: failed before a spec existed, e.g. allocation).
    spec: Option<LbSpec>,
    reason: Reason,
    message: String,
}

/// Called during long syncs with (done, total) device operations.
pub type ProgressFn = Box<dyn FnMut(u64, u64) + Send>;

/// Keeps the device equal to the desired state. See the module documentation.
pub struct Reconciler {
    dev: Device,
    alloc: Allocator,
    /// What the device holds per load balancer (adopted or applied by us).
    programmed: BTreeMap<ObjectKey, LbSpec>,
    /// Device lb_ids no load balancer claims (removed by the next sync).
    orphans: BTreeSet<u32>,
    failures: BTreeMap<ObjectKey, Failure>,
    status: BTreeMap<ObjectKey, LbStatus>,
    progress: Option<ProgressFn>,
    /// Every object and load error of the last sync, by file, with the indexes of incremental syncs (and to
    /// stand in for documents that stop loading).
    store: Store,
    /// Which programmed load balancer holds each VIP (the inverse of `programmed`).
    vip_owner: BTreeMap<LbKey, ObjectKey>,
    /// LoadBalancers kept from before because their documents stopped loading, by `Kind namespace/name`.
    kept_objects: BTreeMap<ObjectRef, (PathBuf, Object)>,
    /// Files that loaded at least once.
    last_seen_files: BTreeSet<PathBuf>,
    /// Deleted load balancers whose allocations are still held, with when their deletion was first seen.
    removed_at: BTreeMap<ObjectKey, Instant>,
    release_grace: Duration,
    clock: SharedClock,
    /// Set when a device command timed out: no device operation is attempted until [`Reconciler::probe_device`]
    /// sees the device answer again (fail fast instead of one timeout per load balancer).
    device_down: Option<DeviceDown>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("programmed", &self.programmed.len())
            .field("orphans", &self.orphans)
            .field("failures", &self.failures.len())
            .finish_non_exhaustive()
    }
}

/// A device operation that failed, or was not attempted because the device is down.
#[derive(Debug, thiserror::Error)]
enum DevFail {
    #[error("not attempted: the device is down ({0})")]
    Down(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

impl DevFail {
    fn reason(&self) -> Reason {
        match self {
            DevFail::Down(_) => Reason::DeviceDown,
            DevFail::Driver(e) => Reason::of_driver(e),
        }
    }
}

impl Reconciler {
    /// Takes over `dev` (already opened, so its tables are adopted) and `alloc`, and applies `host` (ports,
    /// underlay) before enabling the pipeline. Load balancers found on the device are matched to objects through
    /// the allocator's lb_ids; unclaimed ones become orphans that the first sync removes.
    pub fn new(mut dev: Device, alloc: Allocator, host: &HostConfig) -> Result<Reconciler, ReconcileError> {
        for &(port, kind) in &host.ports {
            dev.set_port(port, PortCfg { enabled: true, kind })?;
        }
        dev.set_underlay(host.underlay_src, host.mtu, host.hop_limit);
        // Pinned flows (contract v1.2, docs/hw-spec.md §11): on whenever the device has a flow table. Enabling it
        // again after a daemon restart keeps the flows the table holds (adoption flushes nothing).
        if dev.has_flow_table() {
            dev.set_flow_table(&ironlb_driver::FlowConfig::default())?;
        } else {
            tracing::info!(
                minor = dev.caps().minor,
                "the device has no flow table (contract < 1.2): established flows are not pinned"
            );
        }
        dev.set_enabled(true);
        let rewritten = dev.rewrite_foreign_arrays()?;
        if !rewritten.is_empty() {
            tracing::info!(lb_ids = ?rewritten, "rewrote adopted load balancers whose bucket array was of another scheme or size (or whose update was interrupted)");
        }
        let by_id: BTreeMap<u32, ObjectKey> = alloc
            .state()
            .lbs
            .iter()
            .filter_map(|(k, a)| a.lb_id.map(|id| (id, k.clone())))
            .collect();
        let adopted: Vec<LbSpec> = dev.programmed().cloned().collect();
        let mut rec = Reconciler {
            dev,
            alloc,
            programmed: BTreeMap::new(),
            orphans: BTreeSet::new(),
            failures: BTreeMap::new(),
            status: BTreeMap::new(),
            progress: None,
            store: Store::default(),
            vip_owner: BTreeMap::new(),
            kept_objects: BTreeMap::new(),
            last_seen_files: BTreeSet::new(),
            removed_at: BTreeMap::new(),
            release_grace: RELEASE_GRACE,
            clock: crate::clock::system(),
            device_down: None,
        };
        for spec in adopted {
            match by_id.get(&spec.lb_id) {
                Some(k) => rec.set_programmed(k.clone(), spec),
                None => {
                    rec.orphans.insert(spec.lb_id);
                }
            }
        }
        tracing::info!(
            adopted = rec.programmed.len(),
            orphans = rec.orphans.len(),
            "adopted the device's load balancers"
        );
        Ok(rec)
    }

    /// Runs one device operation, unless the device is down. A timeout marks the device down, so the rest of the
    /// sync (and every later one, until [`Reconciler::probe_device`] succeeds) fails fast instead of waiting for
    /// one timeout per load balancer.
    fn dev_op<T>(&mut self, f: impl FnOnce(&mut Device) -> Result<T, DriverError>) -> Result<T, DevFail> {
        if let Some(d) = &self.device_down {
            return Err(DevFail::Down(d.error.clone()));
        }
        f(&mut self.dev).map_err(|e| {
            if matches!(e, DriverError::Timeout { .. }) {
                tracing::error!(error = %e, "device command timed out: the device is down; no further commands until it answers again");
                self.device_down = Some(DeviceDown {
                    since: rfc3339(self.clock.wall()),
                    error: e.to_string(),
                    failed_probes: 0,
                });
            }
            DevFail::Driver(e)
        })
    }

    /// `Some` while the device is down (a command timed out and no probe has succeeded since).
    pub fn device_down(&self) -> Option<&DeviceDown> {
        self.device_down.as_ref()
    }

    /// While the device is down: resynchronises the command paths and sends one read; when it answers, the device
    /// is up again and the load balancers that failed because it was down are due at once (the caller runs a full
    /// [`Reconciler::resync`]). Returns whether the device is up. Takes at most one command timeout.
    pub fn probe_device(&mut self) -> bool {
        let Some(down) = self.device_down.as_mut() else {
            return true;
        };
        let r = self
            .dev
            .recover_commands()
            .and_then(|()| self.dev.read_entries(ironlb_hw::regs::TableId::Lb, 0, 1));
        match r {
            Ok(_) => {
                tracing::info!(down_since = %down.since, "the device answers again");
                self.device_down = None;
                self.failures.retain(|_, f| f.reason != Reason::DeviceDown);
                true
            }
            Err(e) => {
                down.failed_probes += 1;
                down.error = e.to_string();
                false
            }
        }
    }

    /// Records that the device holds `spec` for `k` (and which VIPs it owns).
    fn set_programmed(&mut self, k: ObjectKey, spec: LbSpec) {
        self.unset_programmed(&k);
        for v in &spec.vips {
            self.vip_owner.insert(*v, k.clone());
        }
        self.programmed.insert(k, spec);
    }

    /// Records that the device no longer holds `k`.
    fn unset_programmed(&mut self, k: &ObjectKey) -> Option<LbSpec> {
        let old = self.programmed.remove(k)?;
        for v in &old.vips {
            if self.vip_owner.get(v) == Some(k) {
                self.vip_owner.remove(v);
            }
        }
        Some(old)
    }

    /// How long a deleted load balancer's allocations are held before they are released (default
    /// [`RELEASE_GRACE`]). Its device entries are removed at once; only the lb_id and IPs wait, so that a load
    /// balancer that reappears (a manifest briefly emptied or lost) keeps its VIPs. Zero releases in the sync that
    /// removes it.
    pub fn set_release_grace(&mut self, grace: Duration) {
        self.release_grace = grace;
    }

    /// Replaces the clock used for backoff, the release grace period and condition transition times (tests step a
    /// [`crate::clock::ManualClock`] instead of sleeping).
    pub fn set_clock(&mut self, clock: SharedClock) {
        self.clock = clock;
    }

    /// Deleted load balancers whose allocations are held, with when each will be released.
    pub fn held_allocations(&self) -> BTreeMap<ObjectKey, Instant> {
        self.removed_at
            .iter()
            .map(|(k, at)| (k.clone(), *at + self.release_grace))
            .collect()
    }

    /// Reports progress of long syncs (used for the CLI's progress bar).
    pub fn set_progress(&mut self, f: Option<ProgressFn>) {
        self.progress = f;
    }

    /// The device.
    pub fn device(&mut self) -> &mut Device {
        &mut self.dev
    }

    /// The allocator.
    pub fn allocator(&self) -> &Allocator {
        &self.alloc
    }

    /// The status of every load balancer seen by the last sync, by key.
    pub fn status(&self) -> &BTreeMap<ObjectKey, LbStatus> {
        &self.status
    }

    /// What the device holds, per load balancer.
    pub fn programmed(&self) -> &BTreeMap<ObjectKey, LbSpec> {
        &self.programmed
    }

    /// `namespace/name` of every load balancer the device holds, by lb_id (escaped for printing, see
    /// [`crate::printable`]).
    pub fn names(&self) -> BTreeMap<u32, String> {
        self.programmed
            .iter()
            .map(|(k, s)| (s.lb_id, crate::printable::printable(&k.to_string()).into_owned()))
            .collect()
    }

    /// When the earliest backed-off load balancer is due for a retry, or held allocations are due for release.
    pub fn next_retry(&self) -> Option<Instant> {
        let releases = self.removed_at.values().map(|at| *at + self.release_grace);
        self.failures.values().map(|f| f.next_at).chain(releases).min()
    }

    /// Brings the device to the state `objects` ask for. `load_errors` are documents that did not load; a
    /// LoadBalancer named by one is treated as present but invalid (it keeps its last good state instead of
    /// being deleted). See the module documentation for the steps.
    pub fn sync(
        &mut self,
        objects: &Loaded,
        load_errors: &[LoadError],
    ) -> Result<SyncReport, ReconcileError> {
        self.sync_owned(objects.clone(), load_errors)
    }

    /// [`Reconciler::sync`] taking the objects by value (no copy: the reconciler keeps them to stand in for
    /// documents that stop loading).
    pub fn sync_owned(
        &mut self,
        mut objects: Loaded,
        load_errors: &[LoadError],
    ) -> Result<SyncReport, ReconcileError> {
        let started = Instant::now();
        let now = self.clock.now();
        let mut report = SyncReport::default();

        // Documents that did not load keep their last good object: a named one by its name, an unnamed one (the
        // YAML itself is broken) by every object its file held before that is missing now. A LoadBalancer kept
        // this way is present but invalid (its last good device state stays); other kinds are used as they were.
        let mut kept_lbs: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
        let mut kept_objects: BTreeMap<ObjectRef, (PathBuf, Object)> = BTreeMap::new();
        if !load_errors.is_empty() {
            let current: BTreeSet<ObjectRef> = objects.iter().map(|(_, o)| o.object_ref()).collect();
            let last: BTreeMap<ObjectRef, &(PathBuf, Object)> = self
                .store
                .iter()
                .chain(self.kept_objects.values())
                .map(|fo| (fo.1.object_ref(), fo))
                .collect();
            let mut restored = BTreeSet::new();
            let mut extra = Vec::new();
            for e in load_errors {
                let lost: Vec<&(PathBuf, Object)> = match &e.object {
                    Some(DocumentId::Object(id)) => last.get(id).copied().into_iter().collect(),
                    // A partly known identity (no name, or a kind ironlb does not read) names no kept object.
                    Some(DocumentId::Partial { .. }) => Vec::new(),
                    None => last.values().copied().filter(|(f, _)| *f == e.file).collect(),
                };
                if let Some(k) = e
                    .object
                    .as_ref()
                    .and_then(DocumentId::object)
                    .and_then(ObjectRef::load_balancer)
                    .cloned()
                {
                    kept_lbs.entry(k).or_default().push(e.to_string());
                }
                for fo in lost {
                    let id = fo.1.object_ref();
                    if current.contains(&id) || !restored.insert(id.clone()) {
                        continue;
                    }
                    match &fo.1 {
                        Object::LoadBalancer(lb) => {
                            kept_lbs.entry(key_of(lb)).or_default().push(e.to_string());
                            kept_objects.insert(id, fo.clone());
                        }
                        _ => extra.push(fo.clone()),
                    }
                }
            }
            objects.extend(extra);
        }
        self.last_seen_files
            .extend(objects.iter().map(|(f, _)| f.clone()));
        let refs: Vec<&(PathBuf, Object)> = objects.iter().collect();
        let result = self.sync_inner(&refs, None, kept_lbs, now, &mut report, load_errors);
        // Remember this sync's objects, and the LoadBalancers kept from before (so they stay kept while broken).
        self.store = Store::from_loaded(objects, load_errors.to_vec());
        self.kept_objects = kept_objects;
        result.map(|()| {
            report.duration = started.elapsed();
            report
        })
    }

    /// Applies changed manifest files and brings the device to the state they ask for. When only
    /// NetworkInterfaces, LoadBalancerRoutings and LoadBalancers changed, and no file has load errors, this
    /// reconciles only the load balancers the changes affect (found through the store's indexes) and reads only
    /// the objects those depend on: the cost follows the size of the change, not of the whole set. Otherwise it
    /// runs the full [`Reconciler::sync`] over every file with the changes applied. Both give the same device
    /// state and status (tested against each other).
    pub fn apply(&mut self, changes: Vec<FileChange>) -> Result<SyncReport, ReconcileError> {
        if changes.is_empty() {
            return Ok(SyncReport::default());
        }
        let started = Instant::now();
        let loaded: Vec<PathBuf> = changes
            .iter()
            .filter(|c| {
                c.content
                    .as_ref()
                    .is_some_and(|(o, e)| !o.is_empty() && e.is_empty())
            })
            .map(|c| c.path.clone())
            .collect();
        // LoadBalancers kept from documents that stopped loading need the full sync's restoring.
        let incremental = if self.kept_objects.is_empty() {
            self.store.apply_incremental(changes)
        } else {
            Err(changes)
        };
        let (scope, positions) = match incremental {
            Ok(s) => s,
            Err(changes) => {
                let (objects, errors) = self.store.with_changes(&changes);
                return self.sync_owned(objects, &errors);
            }
        };
        if !self.store.incremental_ok() {
            // The changes defined an object twice: the full sync reports it.
            let objects: Loaded = self.store.iter().cloned().collect();
            return self.sync_owned(objects, &[]);
        }
        let mut report = SyncReport::default();
        let store = std::mem::take(&mut self.store);
        let subset = store.objects_at(&positions);
        self.last_seen_files.extend(loaded);
        let result = self.sync_inner(
            &subset,
            Some(&scope),
            BTreeMap::new(),
            self.clock.now(),
            &mut report,
            &[],
        );
        self.store = store;
        result.map(|()| {
            report.duration = started.elapsed();
            report
        })
    }

    /// A full sync of the objects the last sync or [`Reconciler::apply`] left (retries backed-off load
    /// balancers, repairs drift).
    pub fn resync(&mut self) -> Result<SyncReport, ReconcileError> {
        let (objects, errors) = self.store.with_changes(&[]);
        self.sync_owned(objects, &errors)
    }

    /// Every validation error of the objects the reconciler holds (validates them all: O(objects); for `run
    /// --once` and diagnostics, not for every sync).
    pub fn validation_errors(&self) -> Vec<crate::validate::ValidationError> {
        let objects: Vec<&(PathBuf, Object)> = self.store.iter().collect();
        validate_refs(&objects).1
    }

    /// The load errors of the files the reconciler holds.
    pub fn load_errors(&self) -> Vec<LoadError> {
        self.store.errors().cloned().collect()
    }

    fn sync_inner(
        &mut self,
        objects: &[&(PathBuf, Object)],
        scope: Option<&BTreeSet<ObjectKey>>,
        kept_lbs: BTreeMap<ObjectKey, Vec<String>>,
        now: Instant,
        report: &mut SyncReport,
        load_errors: &[LoadError],
    ) -> Result<(), ReconcileError> {
        let Validated {
            valid: mask,
            errors: verrs,
            parsed,
        } = validate_parsed(objects);
        let valid: Vec<&(PathBuf, Object)> = objects
            .iter()
            .zip(&mask)
            .filter(|(_, ok)| **ok)
            .map(|(o, _)| *o)
            .collect();

        // Which load balancers exist, which are valid.
        let mut present: BTreeMap<ObjectKey, Option<&LoadBalancer>> = BTreeMap::new();
        for (_, o) in objects.iter().copied() {
            if let Object::LoadBalancer(lb) = o {
                present.insert(key_of(lb), None);
            }
        }
        for k in kept_lbs.keys() {
            present.insert(k.clone(), None);
        }
        let mut invalid: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
        for (_, o) in valid.iter().copied() {
            if let Object::LoadBalancer(lb) = o {
                present.insert(key_of(lb), Some(lb));
            }
        }
        for (k, lb) in &present {
            if lb.is_none() {
                invalid.insert(k.clone(), Vec::new());
            }
        }
        // A LoadBalancer defined twice: the first definition is the valid one and is programmed, but the key is
        // in error (status, logs, metrics) until one definition goes, as `validate` and `run --once` report it.
        let mut duplicated: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
        for e in &verrs {
            if let Some(k) = e.object.load_balancer().cloned() {
                let msg = format!("{}: {}: {}", e.file.display(), e.field, e.message);
                if let Some(v) = invalid.get_mut(&k) {
                    v.push(msg);
                } else if present.get(&k).is_some_and(Option::is_some) {
                    // An invalid object with the key of a valid LoadBalancer is a second definition of it.
                    duplicated.entry(k).or_default().push(msg);
                }
            }
        }
        for (k, msgs) in &kept_lbs {
            if let Some(v) = invalid.get_mut(k) {
                v.extend(msgs.iter().cloned());
            }
        }

        // A load balancer that is back keeps what was held for it.
        self.removed_at.retain(|k, _| !present.contains_key(k));
        // Backoff state of load balancers that no longer exist is dropped.
        match scope {
            Some(scope) => {
                for k in scope.iter().filter(|k| !present.contains_key(*k)) {
                    self.failures.remove(k);
                    self.status.remove(k);
                }
            }
            None => self.failures.retain(|k, _| present.contains_key(k)),
        }

        // 2. Deletions: load balancers that no longer exist, then orphans.
        let gone: Vec<ObjectKey> = match scope {
            Some(scope) => scope
                .iter()
                .filter(|k| {
                    !present.contains_key(*k)
                        && (self.programmed.contains_key(*k) || self.alloc.state().lbs.contains_key(*k))
                })
                .cloned()
                .collect(),
            None => self
                .programmed
                .keys()
                .chain(self.alloc.state().lbs.keys())
                .filter(|k| !present.contains_key(*k))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        // A file that does not load and that this reconciler has never seen loaded (e.g. broken at start-up) may
        // hold any of them: delete nothing until it loads.
        let unknown_files: BTreeSet<&PathBuf> = load_errors
            .iter()
            .filter(|e| e.object.is_none() && !self.last_seen_files.contains(&e.file))
            .map(|e| &e.file)
            .collect();
        let gone = if unknown_files.is_empty() {
            gone
        } else {
            if !gone.is_empty() {
                tracing::warn!(
                    files = ?unknown_files,
                    candidates = gone.len(),
                    "not deleting load balancers while manifest files that never loaded are broken"
                );
            }
            Vec::new()
        };
        let mut released = Vec::new();
        for k in gone {
            if let Some(spec) = self.programmed.get(&k) {
                let id = spec.lb_id;
                match self.dev_op(|d| d.remove(id)) {
                    Ok(()) => {
                        tracing::info!(lb = %k, lb_id = id, "removed");
                        self.unset_programmed(&k);
                        report.removed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(lb = %k, lb_id = id, error = %e, "removing a deleted load balancer failed; will retry");
                        report.errors.push(LbError {
                            key: k.clone(),
                            reason: e.reason(),
                            message: format!("removing it from the device: {e}"),
                        });
                        continue;
                    }
                }
            }
            self.failures.remove(&k);
            self.status.remove(&k);
            // Its allocations are held for the grace period (never released in the sync that removes it, unless
            // the grace is zero): a manifest emptied or lost for a moment must not re-number its VIPs.
            let since = *self.removed_at.entry(k.clone()).or_insert(now);
            if now.saturating_duration_since(since) >= self.release_grace {
                self.removed_at.remove(&k);
                released.push(k);
            } else if since == now {
                tracing::info!(lb = %k, grace = ?self.release_grace, "deleted; its lb_id and IPs are held for the grace period");
            }
        }
        // Held allocations due for release whose keys this (incremental) sync did not look at.
        if scope.is_some() {
            let due: Vec<ObjectKey> = self
                .removed_at
                .iter()
                .filter(|(k, at)| {
                    now.saturating_duration_since(**at) >= self.release_grace && !released.contains(k)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in due {
                self.removed_at.remove(&k);
                released.push(k);
            }
        }
        if !released.is_empty() {
            tracing::info!(
                count = released.len(),
                "releasing the lb_ids and IPs of deleted load balancers"
            );
        }
        for id in std::mem::take(&mut self.orphans) {
            match self.dev_op(|d| d.remove(id)) {
                Ok(()) => {
                    tracing::info!(lb_id = id, "removed an orphan load balancer no object claims");
                    report.removed += 1;
                }
                Err(e) => {
                    tracing::warn!(lb_id = id, error = %e, "removing an orphan failed; will retry");
                    self.orphans.insert(id);
                }
            }
        }

        // 3. Allocation, one durable batch, before anything is programmed.
        let valid_lbs: Vec<&LoadBalancer> = present.values().flatten().copied().collect();
        let alloc_failed = self.alloc.batch(|a| {
            for k in &released {
                a.release(k)?;
            }
            let mut failed: BTreeMap<ObjectKey, AllocError> = BTreeMap::new();
            for lb in &valid_lbs {
                let key = key_of(lb);
                let Some(p) = parsed.load_balancers.get(&key) else {
                    continue;
                };
                if let Err(e) = allocate(a, &key, p, &parsed.prefixes) {
                    if matches!(e, AllocError::Io { .. } | AllocError::Corrupt { .. }) {
                        return Err(e);
                    }
                    failed.insert(key, e);
                }
            }
            Ok(failed)
        });
        let alloc_failed = match alloc_failed {
            Ok(Ok(f)) => f,
            Ok(Err(e)) | Err(e) => return Err(ReconcileError::Alloc(e)),
        };

        // 4. Desired specs for the load balancers that were allocated.
        let (lb_ids, allocated) = match scope {
            Some(scope) => self.alloc.snapshot_for(scope),
            None => self.alloc.snapshot(),
        };
        let usable: Vec<&(PathBuf, Object)> = valid
            .iter()
            .copied()
            .filter(|(_, o)| match o {
                Object::LoadBalancer(lb) => !alloc_failed.contains_key(&key_of(lb)),
                _ => true,
            })
            .collect();
        let d = desired_refs(&usable, &parsed, &lb_ids, &allocated);
        let mut lb_issues: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
        for (k, i) in &d.issues {
            lb_issues.entry(k.clone()).or_default().push(i.message.clone());
        }
        let mut errors: BTreeMap<ObjectKey, (Reason, String)> = BTreeMap::new();
        for (k, msgs) in &invalid {
            let msg = if msgs.is_empty() {
                "the object is invalid".to_string()
            } else {
                msgs.join("; ")
            };
            errors.insert(k.clone(), (Reason::InvalidSpec, msg));
        }
        for (k, e) in &alloc_failed {
            errors.insert(k.clone(), (Reason::of_alloc(e), e.to_string()));
        }
        for (k, msgs) in &duplicated {
            errors.insert(
                k.clone(),
                (
                    Reason::InvalidSpec,
                    format!(
                        "defined more than once; the first definition is programmed: {}",
                        msgs.join("; ")
                    ),
                ),
            );
        }
        let desired_keys: BTreeSet<&ObjectKey> = d.specs.iter().map(|(k, _)| k).collect();
        for lb in &valid_lbs {
            let k = key_of(lb);
            if !desired_keys.contains(&k) && !errors.contains_key(&k) {
                let msg = lb_issues.get(&k).map(|v| v.join("; ")).unwrap_or_default();
                errors.insert(k, (Reason::NoVips, msg));
            }
        }

        // Plan: what changes, respecting backoff.
        let mut changes: Vec<(ObjectKey, LbSpec)> = Vec::new();
        for (k, spec) in &d.specs {
            let current = self.programmed.get(k);
            let dirty = self.dev.lb_state(spec.lb_id).is_some_and(|s| s.dirty);
            if current == Some(spec) && !dirty {
                self.failures.remove(k);
                report.unchanged += 1;
                continue;
            }
            if let Some(f) = self.failures.get(k) {
                if f.spec.as_ref() == Some(spec) && now < f.next_at {
                    report.deferred += 1;
                    errors.insert(k.clone(), (f.reason, f.message.clone()));
                    continue;
                }
            }
            changes.push((k.clone(), spec.clone()));
        }
        let total = changes.len() as u64;
        let mut done = 0u64;

        // Program the changes as planned (crate::control::plan: lb_id migrations, VIPs released before they are
        // claimed, swap cycles broken); a failed VIP drop plans the rest again from what the device then holds.
        let mut no_drop: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut attempted: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut ops: VecDeque<Op> = plan(&changes, self.observed(), &no_drop).into();
        while let Some(op) = ops.pop_front() {
            match op {
                Op::Remove {
                    key,
                    lb_id,
                    reason: RemoveReason::LbIdChanged,
                } => {
                    if self.dev_op(|d| d.remove(lb_id)).is_ok() {
                        self.unset_programmed(&key);
                    }
                }
                Op::Remove {
                    key,
                    lb_id,
                    reason: RemoveReason::SwapCycle,
                } => {
                    tracing::warn!(lb = %key, "VIP swap cycle: removing it before re-creating it");
                    match self.dev_op(|d| d.remove(lb_id)) {
                        Ok(()) => {
                            self.unset_programmed(&key);
                        }
                        Err(DevFail::Driver(e)) if self.device_down.is_none() => return Err(e.into()),
                        // Down: the remaining ones fail fast with DeviceDown.
                        Err(_) => {}
                    }
                }
                Op::DropVips { key, spec } => match self.dev_op(|d| d.apply(&spec)) {
                    Ok(r) => {
                        report.commands += r.commands;
                        self.set_programmed(key, spec);
                    }
                    Err(e) => {
                        tracing::warn!(lb = %key, error = %e, "dropping VIPs failed");
                        no_drop.insert(key);
                        let rest: Vec<(ObjectKey, LbSpec)> = changes
                            .iter()
                            .filter(|(k, _)| !attempted.contains(k))
                            .cloned()
                            .collect();
                        ops = plan(&rest, self.observed(), &no_drop).into();
                    }
                },
                Op::Apply { key, spec } => {
                    attempted.insert(key.clone());
                    let down = self.device_down.is_some();
                    self.execute_apply(key, spec, now, &mut errors, report);
                    if !down {
                        done += 1;
                        if let Some(p) = self.progress.as_mut() {
                            p(done, total);
                        }
                    }
                }
            }
        }

        // Errors that came with no device attempt (invalid, allocation) also back off, longer each time they are
        // still there when due (a failure recorded by this sync's device attempt is not due yet).
        for (k, (reason, message)) in &errors {
            if self.failures.get(k).is_none_or(|f| now >= f.next_at) {
                self.fail(k, None, *reason, message.clone(), now);
            }
        }
        for (k, (reason, message)) in &errors {
            report.errors.push(LbError {
                key: k.clone(),
                reason: *reason,
                message: message.clone(),
            });
        }

        // 5. Status (of the load balancers this sync looked at; an incremental sync keeps the others').
        let desired_by_key: BTreeMap<&ObjectKey, &LbSpec> = d.specs.iter().map(|(k, s)| (k, s)).collect();
        let mut status = BTreeMap::new();
        for k in present.keys() {
            let lb = present[k];
            let programmed = self.programmed.get(k);
            let ips: Vec<IpAddr> = match desired_by_key.get(k) {
                Some(s) => s.vips.iter().map(|v| v.vip.to_ip()).collect(),
                None => allocated.get(k).cloned().unwrap_or_default(),
            };
            let (ready, reason, message) = match errors.get(k) {
                Some((r, m)) => (ConditionStatus::False, *r, m.clone()),
                None => (
                    ConditionStatus::True,
                    Reason::Programmed,
                    "programmed on the device".to_string(),
                ),
            };
            let issues = lb_issues.get(k);
            let (tr, treason, tmsg) = match issues {
                Some(v) if lb.is_some() => {
                    (ConditionStatus::False, Reason::DestinationsSkipped, v.join("; "))
                }
                _ => (ConditionStatus::True, Reason::Resolved, String::new()),
            };
            let prev = self.status.get(k);
            let cond = |kind: ConditionType, st: ConditionStatus, reason: Reason, message: String| {
                let since = prev
                    .and_then(|p| p.condition(kind))
                    .filter(|c| c.status == st && c.reason == reason)
                    .map(|c| c.last_transition_time.clone())
                    .unwrap_or_else(|| rfc3339(self.clock.wall()));
                Condition {
                    kind,
                    status: st,
                    reason,
                    message,
                    last_transition_time: since,
                }
            };
            let s = LbStatus {
                namespace: k.namespace.clone(),
                name: k.name.clone(),
                ips,
                lb_id: lb_ids.get(k).copied().or(programmed.map(|p| p.lb_id)),
                destinations: d
                    .routings
                    .get(k)
                    .map(|r| r.destinations.clone())
                    .unwrap_or_default(),
                programmed_targets: programmed
                    .map(|p| p.targets.iter().copied().collect())
                    .unwrap_or_default(),
                serving_last_good: errors.contains_key(k) && programmed.is_some(),
                conditions: vec![
                    cond(ConditionType::Ready, ready, reason, message),
                    cond(ConditionType::TargetsResolved, tr, treason, tmsg),
                ],
            };
            status.insert(k.clone(), s);
        }
        match scope {
            Some(_) => self.status.extend(status),
            None => self.status = status,
        }
        if let Some(d) = &self.device_down {
            // Nothing the device holds can be confirmed while it does not answer.
            let message = format!("the device is down since {}: {}", d.since, d.error);
            let now = rfc3339(self.clock.wall());
            for st in self.status.values_mut() {
                st.mark_device_down(&message, &now);
            }
        }
        Ok(())
    }

    /// The routings in use (computed or given), as `LoadBalancerRouting` objects, from the last sync.
    pub fn routings(&self) -> Vec<LoadBalancerRouting> {
        self.status
            .values()
            .map(|s| LoadBalancerRouting {
                metadata: crate::api::ObjectMeta {
                    namespace: Some(s.namespace.clone()),
                    name: s.name.clone(),
                    uid: None,
                    labels: BTreeMap::new(),
                },
                network_ref: None,
                destinations: s.destinations.clone(),
            })
            .collect()
    }

    /// What the device holds, for the planner.
    fn observed(&self) -> Observed<'_> {
        Observed {
            specs: &self.programmed,
            vip_owner: &self.vip_owner,
        }
    }

    /// Creates or updates one load balancer and records the result (a failure keeps its last good state and backs
    /// off). While the device is down it is not attempted (fail fast, no timeout each).
    fn execute_apply(
        &mut self,
        k: ObjectKey,
        spec: LbSpec,
        now: Instant,
        errors: &mut BTreeMap<ObjectKey, (Reason, String)>,
        report: &mut SyncReport,
    ) {
        if let Some(down) = self.device_down.as_ref().map(|d| d.error.clone()) {
            let message = format!("not programmed: the device is down ({down})");
            if self
                .failures
                .get(&k)
                .is_none_or(|f| f.reason != Reason::DeviceDown)
            {
                self.fail(&k, Some(spec), Reason::DeviceDown, message.clone(), now);
            }
            errors.insert(k, (Reason::DeviceDown, message));
            return;
        }
        let existed = self.programmed.contains_key(&k);
        match self.dev_op(|d| d.apply(&spec)) {
            Ok(r) => {
                report.commands += r.commands;
                if existed {
                    report.updated += 1;
                } else {
                    report.created += 1;
                }
                tracing::debug!(lb = %k, lb_id = spec.lb_id, created = !existed, commands = r.commands, "programmed");
                self.failures.remove(&k);
                self.set_programmed(k, spec);
            }
            Err(e) => {
                let reason = e.reason();
                let mut message = e.to_string();
                if reason == Reason::VipInUse {
                    let held: Vec<String> = spec
                        .vips
                        .iter()
                        .filter_map(|v| self.vip_owner.get(v).filter(|o| **o != k).map(|o| (v, o)))
                        .map(|(v, o)| format!("VIP {} is held by LoadBalancer {}", v.vip, o))
                        .collect();
                    if !held.is_empty() {
                        message = held.join("; ");
                    }
                }
                tracing::warn!(lb = %k, %reason, error = %message, "programming failed; keeping the last good state");
                self.fail(&k, Some(spec), reason, message.clone(), now);
                errors.insert(k, (reason, message));
            }
        }
    }

    fn fail(&mut self, k: &ObjectKey, spec: Option<LbSpec>, reason: Reason, message: String, now: Instant) {
        let attempts = self.failures.get(k).map_or(0, |f| f.attempts) + 1;
        let delay = BACKOFF.delay(attempts);
        self.failures.insert(
            k.clone(),
            Failure {
                attempts,
                next_at: now + delay,
                spec,
                reason,
                message,
            },
        );
    }
}

fn key_of(lb: &LoadBalancer) -> ObjectKey {
    lb.metadata.key()
}

/// Allocates what `lb` needs: its lb_id, and public IPs (Public) or Prefix IPs (Internal); releases what it no
/// longer needs.
fn allocate(
    a: &mut Allocator,
    key: &ObjectKey,
    lb: &LbParsed,
    prefixes: &BTreeMap<ObjectKey, IpNet>,
) -> Result<(), AllocError> {
    a.lb_id(key)?;
    // status.ips records an earlier allocation (another host, a lost state file): honour it when still free.
    let recorded = &lb.status_ips;
    match lb.domain {
        VipDomain::Public => {
            a.public_ips_preferring(key, &lb.families, recorded)?;
            a.retain_prefix_ips(key, &BTreeSet::new())?;
        }
        VipDomain::Vni(_) => {
            a.public_ips(key, &[])?;
            let mut live = BTreeSet::new();
            for pk in &lb.prefixes {
                if let Some(net) = prefixes.get(pk) {
                    // A cluster's IPAM decision first, then the recorded allocation.
                    let preferred: Vec<IpAddr> = lb.filled_ips.iter().chain(recorded).copied().collect();
                    a.prefix_ip_preferring(key, pk, *net, &preferred)?;
                }
                live.insert(pk.clone());
            }
            a.retain_prefix_ips(key, &live)?;
        }
    }
    Ok(())
}
