//! Step 2 of a sync: load balancers that no longer exist leave the device, then orphans do.
//!
//! A deleted load balancer's entries are removed at once; its lb_id and IPs are held for the release grace period
//! (a manifest emptied or lost for a moment must not re-number its VIPs) and released by the allocation step once
//! it has passed.

use super::presence::Presence;
use super::{LbError, Reconciler, SyncReport};
use crate::api::ObjectKey;
use crate::manifest::LoadError;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

impl Reconciler {
    /// Forgets what is kept per load balancer that no longer exists (backoff, and for an incremental sync its
    /// status; a full sync replaces all statuses), and stops holding the allocations of those that are back.
    pub(super) fn forget_absent(&mut self, presence: &Presence<'_>, scope: Option<&BTreeSet<ObjectKey>>) {
        // A load balancer that is back keeps what was held for it.
        self.removed_at.retain(|k, _| !presence.contains(k));
        match scope {
            Some(scope) => {
                for k in scope.iter().filter(|k| !presence.contains(k)) {
                    self.failures.remove(k);
                    self.status.remove(k);
                }
            }
            None => self.failures.retain(|k, _| presence.contains(k)),
        }
    }

    /// Removes the load balancers that no longer exist from the device (an incremental sync looks only at its
    /// `scope`) and returns those whose allocations are due for release: held for the grace period, never
    /// released in the sync that removes them unless the grace is zero. One that fails to be removed stays
    /// programmed and is retried by the next sync.
    pub(super) fn remove_deleted(
        &mut self,
        presence: &Presence<'_>,
        scope: Option<&BTreeSet<ObjectKey>>,
        load_errors: &[LoadError],
        now: Instant,
        report: &mut SyncReport,
    ) -> Vec<ObjectKey> {
        let gone = self.gone(presence, scope);
        let gone = if self.deletions_blocked(load_errors, gone.len()) {
            Vec::new()
        } else {
            gone
        };
        let mut released = Vec::new();
        for k in gone {
            if !self.remove_one(&k, report) {
                continue;
            }
            self.failures.remove(&k);
            self.status.remove(&k);
            let since = *self.removed_at.entry(k.clone()).or_insert(now);
            if now.saturating_duration_since(since) >= self.release_grace {
                self.removed_at.remove(&k);
                released.push(k);
            } else if since == now {
                tracing::info!(lb = %k, grace = ?self.release_grace, "deleted; its lb_id and IPs are held for the grace period");
            }
        }
        if scope.is_some() {
            self.release_due_unscoped(now, &mut released);
        }
        if !released.is_empty() {
            tracing::info!(
                count = released.len(),
                "releasing the lb_ids and IPs of deleted load balancers"
            );
        }
        released
    }

    /// Load balancers that no longer exist but that the device or the allocator still holds.
    fn gone(&self, presence: &Presence<'_>, scope: Option<&BTreeSet<ObjectKey>>) -> Vec<ObjectKey> {
        match scope {
            Some(scope) => scope
                .iter()
                .filter(|k| {
                    !presence.contains(k)
                        && (self.programmed.contains_key(*k) || self.alloc.state().lbs.contains_key(*k))
                })
                .cloned()
                .collect(),
            None => self
                .programmed
                .keys()
                .chain(self.alloc.state().lbs.keys())
                .filter(|k| !presence.contains(k))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        }
    }

    /// A file that does not load and that this reconciler has never seen loaded (e.g. broken at start-up) may
    /// hold any of the `candidates` deletions: delete nothing until it loads.
    fn deletions_blocked(&self, load_errors: &[LoadError], candidates: usize) -> bool {
        let unknown_files: BTreeSet<&PathBuf> = load_errors
            .iter()
            .filter(|e| e.object.is_none() && !self.last_seen_files.contains(&e.file))
            .map(|e| &e.file)
            .collect();
        if unknown_files.is_empty() {
            return false;
        }
        if candidates > 0 {
            tracing::warn!(
                files = ?unknown_files,
                candidates,
                "not deleting load balancers while manifest files that never loaded are broken"
            );
        }
        true
    }

    /// Removes the deleted load balancer `k` from the device if it is programmed. Returns whether it is off the
    /// device (a failure is reported and retried by the next sync).
    fn remove_one(&mut self, k: &ObjectKey, report: &mut SyncReport) -> bool {
        let Some(id) = self.programmed.get(k).map(|s| s.lb_id) else {
            return true;
        };
        match self.dev_op(|d| d.remove(id)) {
            Ok(()) => {
                tracing::info!(lb = %k, lb_id = id, "removed");
                self.unset_programmed(k);
                report.removed += 1;
                true
            }
            Err(e) => {
                tracing::warn!(lb = %k, lb_id = id, error = %e, "removing a deleted load balancer failed; will retry");
                report.errors.push(LbError {
                    key: k.clone(),
                    reason: e.reason(),
                    message: format!("removing it from the device: {e}"),
                });
                false
            }
        }
    }

    /// Adds to `released` the held allocations due for release whose keys this (incremental) sync did not look at.
    fn release_due_unscoped(&mut self, now: Instant, released: &mut Vec<ObjectKey>) {
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

    /// Removes the device entries no allocation claims (from an earlier state file or another writer); one that
    /// fails stays an orphan and is retried by the next sync.
    pub(super) fn remove_orphans(&mut self, report: &mut SyncReport) {
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
    }
}
