//! Step 6 of a sync: the status of every load balancer the sync looked at ([`LbStatus`]: `status.ips`, the
//! routing, the `Ready` and `TargetsResolved` conditions); an incremental sync keeps the others'.

use super::allocate::Allocated;
use super::desired::Errors;
use super::presence::Presence;
use super::Reconciler;
use crate::api::{LoadBalancerRouting, ObjectKey};
use crate::clock::rfc3339;
use crate::controller::Desired;
use crate::status::{Condition, ConditionStatus, ConditionType, LbStatus, Reason};
use ironlb_driver::LbSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What one sync knows about the load balancers it looked at, for their status.
pub(super) struct Outcome<'s, 'a> {
    pub presence: &'s Presence<'a>,
    pub desired: &'s Desired,
    pub allocated: &'s Allocated,
    /// The controller's issues per load balancer.
    pub issues: &'s BTreeMap<ObjectKey, Vec<String>>,
    pub errors: &'s Errors,
}

impl Reconciler {
    /// Publishes the status of the load balancers in `outcome` (all of them for a full sync, `scope` unset; an
    /// incremental sync keeps the others'). While the device is down, every status says so.
    pub(super) fn publish_status(&mut self, outcome: &Outcome<'_, '_>, scope: Option<&BTreeSet<ObjectKey>>) {
        let desired_by_key: BTreeMap<&ObjectKey, &LbSpec> =
            outcome.desired.specs.iter().map(|(k, s)| (k, s)).collect();
        let mut status = BTreeMap::new();
        for (k, lb) in &outcome.presence.present {
            let ips: Vec<IpAddr> = match desired_by_key.get(k) {
                Some(s) => s.vips.iter().map(|v| v.vip.to_ip()).collect(),
                None => outcome.allocated.ips.get(k).cloned().unwrap_or_default(),
            };
            let s = self.lb_status(k, lb.is_some(), ips, outcome);
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
    }

    /// The status of `k` (`valid`: it has a valid object) after this sync.
    fn lb_status(&self, k: &ObjectKey, valid: bool, ips: Vec<IpAddr>, outcome: &Outcome<'_, '_>) -> LbStatus {
        let programmed = self.programmed.get(k);
        let (ready, reason, message) = match outcome.errors.get(k) {
            Some((r, m)) => (ConditionStatus::False, *r, m.clone()),
            None => (
                ConditionStatus::True,
                Reason::Programmed,
                "programmed on the device".to_string(),
            ),
        };
        let (tr, treason, tmsg) = match outcome.issues.get(k) {
            Some(v) if valid => (ConditionStatus::False, Reason::DestinationsSkipped, v.join("; ")),
            _ => (ConditionStatus::True, Reason::Resolved, String::new()),
        };
        LbStatus {
            namespace: k.namespace.clone(),
            name: k.name.clone(),
            ips,
            lb_id: outcome
                .allocated
                .lb_ids
                .get(k)
                .copied()
                .or(programmed.map(|p| p.lb_id)),
            destinations: outcome
                .desired
                .routings
                .get(k)
                .map(|r| r.destinations.clone())
                .unwrap_or_default(),
            programmed_targets: programmed
                .map(|p| p.targets.iter().copied().collect())
                .unwrap_or_default(),
            serving_last_good: outcome.errors.contains_key(k) && programmed.is_some(),
            conditions: vec![
                self.condition(k, ConditionType::Ready, ready, reason, message),
                self.condition(k, ConditionType::TargetsResolved, tr, treason, tmsg),
            ],
        }
    }

    /// A condition of `k`, keeping its last transition time when its status and reason did not change.
    fn condition(
        &self,
        k: &ObjectKey,
        kind: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: String,
    ) -> Condition {
        let since = self
            .status
            .get(k)
            .and_then(|p| p.condition(kind))
            .filter(|c| c.status == status && c.reason == reason)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| rfc3339(self.clock.wall()));
        Condition {
            kind,
            status,
            reason,
            message,
            last_transition_time: since,
        }
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
}
