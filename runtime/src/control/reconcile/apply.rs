//! Step 5 of a sync: program the differences. The load balancers whose desired spec differs from what the device
//! holds (and whose backoff has expired) are planned by [`crate::control::plan`] (lb_id migrations, VIPs released
//! before they are claimed, swap cycles broken) and the ops executed here; every failure is recorded with
//! exponential backoff ([`crate::backoff::BACKOFF`]) and keeps the load balancer's last good state.

use super::desired::Errors;
use super::device::DevFail;
use super::{Failure, LbError, ReconcileError, Reconciler, SyncReport};
use crate::api::ObjectKey;
use crate::backoff::BACKOFF;
use crate::control::plan::{plan, Observed, Op, RemoveReason};
use crate::status::Reason;
use ironlb_driver::LbSpec;
use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

impl Reconciler {
    /// The desired specs that need device operations: not what the device holds (or marked dirty), and not backed
    /// off with the same spec. Unchanged ones clear their failure; deferred ones keep their error in `errors`.
    pub(super) fn select_changes(
        &mut self,
        specs: &[(ObjectKey, LbSpec)],
        now: Instant,
        errors: &mut Errors,
        report: &mut SyncReport,
    ) -> Vec<(ObjectKey, LbSpec)> {
        let mut changes = Vec::new();
        for (k, spec) in specs {
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
        changes
    }

    /// Plans `changes` against what the device holds and executes the ops in order; a failed VIP drop plans the
    /// rest again from what the device then holds. Per-LB failures go to `errors`; a swap-cycle removal that fails
    /// while the device is up stops the sync.
    pub(super) fn program(
        &mut self,
        changes: &[(ObjectKey, LbSpec)],
        now: Instant,
        errors: &mut Errors,
        report: &mut SyncReport,
    ) -> Result<(), ReconcileError> {
        let total = changes.len() as u64;
        let mut done = 0u64;
        let mut no_drop: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut attempted: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut ops: VecDeque<Op> = plan(changes, self.observed(), &no_drop).into();
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
                    self.execute_apply(key, spec, now, errors, report);
                    if !down {
                        done += 1;
                        if let Some(p) = self.progress.as_mut() {
                            p(done, total);
                        }
                    }
                }
            }
        }
        Ok(())
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
        errors: &mut Errors,
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
                let message = match reason {
                    Reason::VipInUse => self.vip_holders(&k, &spec).unwrap_or_else(|| e.to_string()),
                    _ => e.to_string(),
                };
                tracing::warn!(lb = %k, %reason, error = %message, "programming failed; keeping the last good state");
                self.fail(&k, Some(spec), reason, message.clone(), now);
                errors.insert(k, (reason, message));
            }
        }
    }

    /// Which other load balancers hold the VIPs of `spec` (the message of a `VipInUse` failure), if any.
    fn vip_holders(&self, k: &ObjectKey, spec: &LbSpec) -> Option<String> {
        let held: Vec<String> = spec
            .vips
            .iter()
            .filter_map(|v| self.vip_owner.get(v).filter(|o| *o != k).map(|o| (v, o)))
            .map(|(v, o)| format!("VIP {} is held by LoadBalancer {}", v.vip, o))
            .collect();
        (!held.is_empty()).then(|| held.join("; "))
    }

    /// Records the sync's per-LB `errors` in the report. Errors that came with no device attempt (invalid,
    /// allocation) also back off, longer each time they are still there when due (a failure recorded by this
    /// sync's device attempt is not due yet).
    pub(super) fn record_errors(&mut self, errors: &Errors, now: Instant, report: &mut SyncReport) {
        for (k, (reason, message)) in errors {
            if self.failures.get(k).is_none_or(|f| now >= f.next_at) {
                self.fail(k, None, *reason, message.clone(), now);
            }
        }
        for (k, (reason, message)) in errors {
            report.errors.push(LbError {
                key: k.clone(),
                reason: *reason,
                message: message.clone(),
            });
        }
    }

    /// Records one more failure of `k` and when it is due for a retry.
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
