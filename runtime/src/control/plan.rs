//! The pure planner: which device operations, in which order, bring the load balancers that changed from what
//! the device holds to what is desired. No I/O and no clock: the same input gives the same op list, and the rules
//! are tested on exact op lists (the tests below). [`crate::reconcile`] executes the ops and records the results.
//!
//! The rules, in order:
//! 1. **lb_id migration**: a load balancer whose lb_id changed (the allocation state was replaced) has its old
//!    incarnation removed first;
//! 2. **release before claim**: every changed load balancer that keeps some of its VIPs first drops the ones it no
//!    longer wants ([`Op::DropVips`]), so they are free for others (one that keeps none cannot drop them all: a load
//!    balancer has at least one VIP; it releases them with its own update);
//! 3. **creations and updates** ([`Op::Apply`]) run in rounds: in each round every pending change runs unless one
//!    of its VIPs is held by another change still pending at the start of the round, which it then waits for;
//! 4. **swap cycles**: a round where every pending change waits (two load balancers swapping all their VIPs) removes
//!    the holder of the first waiting change's first VIP held by another ([`Op::Remove`]); it is re-created by its
//!    own [`Op::Apply`] in a later round.
//!
//! The plan assumes each op succeeds. When a [`Op::DropVips`] fails, the executor plans again from what the device
//! then holds, with that load balancer in `no_drop` (so its update waits for it as before, instead of failing on a
//! VIP it still holds).

use crate::api::ObjectKey;
use ironlb_driver::LbSpec;
use ironlb_hw::LbKey;
use std::collections::{BTreeMap, BTreeSet};

/// What the device holds: the programmed spec of each load balancer and the holder of each VIP.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Programmed spec per load balancer.
    pub specs: &'a BTreeMap<ObjectKey, LbSpec>,
    /// Which load balancer holds each VIP (the inverse of `specs`).
    pub vip_owner: &'a BTreeMap<LbKey, ObjectKey>,
}

/// Why a load balancer is removed by the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Its lb_id changed: the old incarnation goes before the new one is created.
    LbIdChanged,
    /// It holds a VIP another pending change wants while waiting for one of that change's VIPs: removed, and
    /// re-created by its own [`Op::Apply`] later in the plan.
    SwapCycle,
}

/// One device operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Remove the load balancer with this lb_id from the device.
    Remove {
        /// The load balancer.
        key: ObjectKey,
        /// The lb_id it has on the device.
        lb_id: u32,
        /// Why.
        reason: RemoveReason,
    },
    /// Program the current spec without the VIPs no longer wanted (`spec` is the shrunk spec).
    DropVips {
        /// The load balancer.
        key: ObjectKey,
        /// Its programmed spec with only the VIPs it keeps.
        spec: LbSpec,
    },
    /// Create or update (hitless) the load balancer to its desired spec.
    Apply {
        /// The load balancer.
        key: ObjectKey,
        /// The desired spec.
        spec: LbSpec,
    },
}

/// The ops that bring the load balancers in `changes` (desired specs that differ from the device's, in the order
/// given) from `observed` to desired. `no_drop`: load balancers whose [`Op::DropVips`] already failed in this sync
/// (none is planned for them again). See the module documentation for the rules.
pub fn plan(
    changes: &[(ObjectKey, LbSpec)],
    observed: Observed<'_>,
    no_drop: &BTreeSet<ObjectKey>,
) -> Vec<Op> {
    let mut sim = Sim {
        observed,
        specs: BTreeMap::new(),
        owner: BTreeMap::new(),
    };
    let mut ops = Vec::new();
    // 1. lb_id migration.
    for (k, spec) in changes {
        if let Some(old) = sim.spec(k) {
            if old.lb_id != spec.lb_id {
                ops.push(Op::Remove {
                    key: k.clone(),
                    lb_id: old.lb_id,
                    reason: RemoveReason::LbIdChanged,
                });
                sim.set(k, None);
            }
        }
    }
    // 2. Release before claim.
    for (k, spec) in changes {
        let Some(old) = sim.spec(k).filter(|_| !no_drop.contains(k)) else {
            continue;
        };
        let keep: BTreeSet<LbKey> = old.vips.intersection(&spec.vips).copied().collect();
        if keep.len() == old.vips.len() || keep.is_empty() {
            continue;
        }
        let shrunk = LbSpec {
            vips: keep,
            ..old.clone()
        };
        ops.push(Op::DropVips {
            key: k.clone(),
            spec: shrunk.clone(),
        });
        sim.set(k, Some(shrunk));
    }
    // 3. and 4. Rounds of creations and updates; a round without progress breaks a swap cycle.
    let mut pending: Vec<&(ObjectKey, LbSpec)> = changes.iter().collect();
    while !pending.is_empty() {
        let pending_keys: BTreeSet<&ObjectKey> = pending.iter().map(|(k, _)| k).collect();
        let mut waiting = Vec::new();
        let mut progressed = false;
        for change in std::mem::take(&mut pending) {
            let (k, spec) = change;
            let blocked = spec
                .vips
                .iter()
                .filter_map(|v| sim.owner_of(v))
                .any(|o| o != k && pending_keys.contains(o));
            if blocked {
                waiting.push(change);
                continue;
            }
            progressed = true;
            ops.push(Op::Apply {
                key: k.clone(),
                spec: spec.clone(),
            });
            sim.set(k, Some(spec.clone()));
        }
        if !progressed {
            let (k, spec) = waiting[0];
            let blocker = spec
                .vips
                .iter()
                .filter_map(|v| sim.owner_of(v))
                .find(|o| *o != k)
                .cloned()
                .expect("a waiting change is blocked by another load balancer");
            if let Some(old) = sim.spec(&blocker) {
                ops.push(Op::Remove {
                    key: blocker.clone(),
                    lb_id: old.lb_id,
                    reason: RemoveReason::SwapCycle,
                });
                sim.set(&blocker, None);
            }
        }
        pending = waiting;
    }
    ops
}

/// The device as the plan so far leaves it: `observed` overlaid with the specs of the load balancers the plan
/// changed (`None`: removed) and the owners of the VIPs they touched.
struct Sim<'a> {
    observed: Observed<'a>,
    specs: BTreeMap<ObjectKey, Option<LbSpec>>,
    owner: BTreeMap<LbKey, Option<ObjectKey>>,
}

impl Sim<'_> {
    fn spec(&self, k: &ObjectKey) -> Option<&LbSpec> {
        match self.specs.get(k) {
            Some(s) => s.as_ref(),
            None => self.observed.specs.get(k),
        }
    }

    fn owner_of(&self, v: &LbKey) -> Option<&ObjectKey> {
        match self.owner.get(v) {
            Some(o) => o.as_ref(),
            None => self.observed.vip_owner.get(v),
        }
    }

    /// The device holds `spec` for `k` (`None`: nothing).
    fn set(&mut self, k: &ObjectKey, spec: Option<LbSpec>) {
        if let Some(old) = self.spec(k).cloned() {
            for v in &old.vips {
                if self.owner_of(v) == Some(k) {
                    self.owner.insert(*v, None);
                }
            }
        }
        if let Some(s) = &spec {
            for v in &s.vips {
                self.owner.insert(*v, Some(k.clone()));
            }
        }
        self.specs.insert(k.clone(), spec);
    }
}

#[cfg(test)]
mod tests;
