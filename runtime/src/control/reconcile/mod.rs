//! The reconciler (issue 5 §4): keeps the device equal to what the objects ask for.
//!
//! One [`Reconciler`] owns the [`Device`] and the durable [`Allocator`]. Each [`Reconciler::sync`] takes the
//! complete current set of objects (a source snapshot) and runs these steps, one module each:
//!
//! 1. `presence.rs`: validates them; a LoadBalancer that is invalid (or whose document does not even load) keeps
//!    whatever was programmed for it last (its *last good* state) and gets `Ready=False, reason InvalidSpec`;
//! 2. `delete.rs`: removes the load balancers that no longer exist: their VIP entries first, then their memory
//!    (the driver's `remove`), and only then (after the release grace) releases their lb_id and IPs; device
//!    entries that no allocation claims (orphans from an earlier state file or another writer) are removed too;
//! 3. `allocate.rs`: allocates lb_ids and IPs for the valid ones in one durable batch, *before* anything is
//!    programmed, so a crash at any later point restarts with the same allocations;
//! 4. `desired.rs`: computes the desired [`LbSpec`]s ([`crate::controller::desired_refs`]) and the errors known
//!    before programming; `drain.rs` keeps the targets that left as draining until their deadline (the policy is
//!    [`crate::control::drain`]);
//! 5. `apply.rs`: programs only the differences, as the pure planner ([`crate::control::plan`]) orders them: a
//!    VIP moving between load balancers is released before it is claimed, swap cycles are broken, and every
//!    update is hitless (the driver's shadow-set flips, docs/hw-spec.md §8); per-LB errors back off
//!    exponentially ([`crate::backoff::BACKOFF`]);
//! 6. `status.rs`: publishes a status per load balancer ([`LbStatus`]: `status.ips`, the routing, `Ready` and
//!    `TargetsResolved` conditions).
//!
//! An error in one load balancer never stops the others. On start ([`Reconciler::new`]) the device's tables are
//! adopted (no flush), so a restart sends nothing for load balancers that did not change. Device commands go
//! through `device.rs`, which fails fast while the device is down.

mod allocate;
mod apply;
mod delete;
mod desired;
mod device;
mod drain;
mod presence;
mod status;
mod types;

pub use types::{HostConfig, LbError, ProgressFn, ReconcileError, SyncReport};

use crate::alloc::Allocator;
use crate::api::{Object, ObjectKey, ObjectRef};
use crate::clock::SharedClock;
use crate::control::drain::{Drain, DRAIN_TIMEOUT};
use crate::manifest::{LoadError, Loaded};
use crate::status::{DeviceDown, LbStatus, Reason};
use crate::store::{FileChange, Store};
use crate::validate::{validate_parsed, validate_refs, Validated};
use ironlb_driver::{Device, LbSpec};
use ironlb_hw::entry::PortCfg;
use ironlb_hw::LbKey;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a deleted load balancer's lb_id and IPs stay allocated after its entries left the device (default of
/// [`Reconciler::set_release_grace`], `ironlb run --release-grace`). A load balancer that comes back within it (a
/// file restored, an edit that briefly lost it) gets the same lb_id and VIPs.
pub const RELEASE_GRACE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct Failure {
    attempts: u32,
    next_at: Instant,
    /// The spec whose programming failed (`None`: failed before a spec existed, e.g. allocation).
    spec: Option<LbSpec>,
    reason: Reason,
    message: String,
}

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
    /// How long a target that leaves drains ([`crate::control::drain`]).
    drain_timeout: Duration,
    /// The draining targets of each load balancer.
    drains: BTreeMap<ObjectKey, BTreeMap<Ipv6Addr, Drain>>,
    /// The NetworkInterface each serving target came from, as of the last sync of its load balancer.
    target_interfaces: BTreeMap<ObjectKey, BTreeMap<Ipv6Addr, ObjectKey>>,
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
            drain_timeout: DRAIN_TIMEOUT,
            drains: BTreeMap::new(),
            target_interfaces: BTreeMap::new(),
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

    /// Sets how long a target that leaves its load balancer drains (default [`DRAIN_TIMEOUT`]; zero cuts at once).
    pub fn set_drain_timeout(&mut self, timeout: Duration) {
        self.drain_timeout = timeout;
    }

    /// The draining targets of each load balancer.
    pub fn drains(&self) -> &BTreeMap<ObjectKey, BTreeMap<Ipv6Addr, Drain>> {
        &self.drains
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

    /// The allocator, to replace a cluster agent's given allocations ([`Allocator::set_given`]) before a
    /// [`Reconciler::resync`].
    pub fn allocator_mut(&mut self) -> &mut Allocator {
        &mut self.alloc
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

    /// When the earliest backed-off load balancer is due for a retry, held allocations are due for release, or a
    /// drain ends.
    pub fn next_retry(&self) -> Option<Instant> {
        let releases = self.removed_at.values().map(|at| *at + self.release_grace);
        let drains = crate::control::drain::next_deadline(self.drains.values().flat_map(BTreeMap::values));
        self.failures
            .values()
            .map(|f| f.next_at)
            .chain(releases)
            .chain(drains)
            .min()
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

        // Documents that did not load keep their last good objects (a LoadBalancer kept this way is present but
        // invalid: its last good device state stays).
        let kept = presence::restore_kept(
            &mut objects,
            load_errors,
            self.store.iter().chain(self.kept_objects.values()),
        );
        self.last_seen_files
            .extend(objects.iter().map(|(f, _)| f.clone()));
        let refs: Vec<&(PathBuf, Object)> = objects.iter().collect();
        let interfaces: BTreeSet<ObjectKey> = refs
            .iter()
            .filter_map(|(_, o)| match o {
                Object::NetworkInterface(n) => Some(n.metadata.key()),
                _ => None,
            })
            .collect();
        let result = self.sync_inner(&refs, None, &kept.lbs, now, &mut report, load_errors, &|k| {
            interfaces.contains(k)
        });
        // Remember this sync's objects, and the LoadBalancers kept from before (so they stay kept while broken).
        self.store = Store::from_loaded(objects, load_errors.to_vec());
        self.kept_objects = kept.objects;
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
        self.apply_touching(changes, BTreeSet::new())
    }

    /// [`Reconciler::apply`], reconciling the load balancers in `touched` as well, whatever the changes: those
    /// whose allocation changed outside the objects (a cluster agent's given allocations, which the controller
    /// writes apart from them). The same device state and status as a full sync.
    pub fn apply_touching(
        &mut self,
        changes: Vec<FileChange>,
        touched: BTreeSet<ObjectKey>,
    ) -> Result<SyncReport, ReconcileError> {
        if changes.is_empty() && touched.is_empty() {
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
            self.store.apply_incremental(changes, touched)
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
            &BTreeMap::new(),
            self.clock.now(),
            &mut report,
            &[],
            &|k| store.has_interface(k),
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

    /// One sync of `objects` (all of them, or for an incremental sync the ones the load balancers in `scope`
    /// depend on), step by step as the module documentation lists them. `interface_exists` says whether a
    /// NetworkInterface exists at all (in the whole set, not only in `objects`).
    #[allow(clippy::too_many_arguments)]
    fn sync_inner(
        &mut self,
        objects: &[&(PathBuf, Object)],
        scope: Option<&BTreeSet<ObjectKey>>,
        kept_lbs: &BTreeMap<ObjectKey, Vec<String>>,
        now: Instant,
        report: &mut SyncReport,
        load_errors: &[LoadError],
        interface_exists: &dyn Fn(&ObjectKey) -> bool,
    ) -> Result<(), ReconcileError> {
        let Validated {
            valid: mask,
            errors: verrs,
            parsed,
        } = validate_parsed(objects);
        // 1. Which load balancers exist, which are valid.
        let presence = presence::Presence::classify(objects, &mask, &verrs, kept_lbs);
        self.forget_absent(&presence, scope);
        // 2. Deletions: load balancers that no longer exist, then orphans.
        let released = self.remove_deleted(&presence, scope, load_errors, now, report);
        self.remove_orphans(report);
        // 3. Allocation, one durable batch, before anything is programmed.
        let allocated = self.allocate_all(&presence, &parsed, &released, scope)?;
        // 4. Desired specs, and the errors known before programming.
        let mut d = desired::desired(&presence, &parsed, &allocated);
        self.plan_drains(&mut d, &parsed.underlays, now, interface_exists);
        let issues = desired::issues_by_lb(&d);
        let mut errors = desired::object_errors(&presence, &allocated, &d, &issues);
        // 5. Program what changed (respecting backoff), then record every error.
        let changes = self.select_changes(&d.specs, now, &mut errors, report);
        self.program(&changes, now, &mut errors, report)?;
        self.record_errors(&errors, now, report);
        // 6. Status (of the load balancers this sync looked at; an incremental sync keeps the others').
        let outcome = status::Outcome {
            presence: &presence,
            desired: &d,
            allocated: &allocated,
            issues: &issues,
            errors: &errors,
        };
        self.publish_status(&outcome, scope);
        Ok(())
    }
}
