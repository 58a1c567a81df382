//! Step 4 (continued): the drain policy ([`crate::control::drain`]) over the desired specs. Fills each spec's
//! `draining` from what the device holds, starts and ends drains (their deadlines are the reconciler's state; a
//! drain's end is a `next_retry`), and records which NetworkInterface each serving target came from, so a target
//! that leaves later can be traced to its interface.

use super::Reconciler;
use crate::api::ObjectKey;
use crate::clock::rfc3339;
use crate::control::drain::{self, Event, Policy};
use crate::controller::Desired;
use crate::status::DrainingTarget;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Instant;

impl Reconciler {
    /// Applies the drain policy to every desired spec of `d` (`underlays`: validation's underlay address per
    /// NetworkInterface; `interface_exists`: whether an interface exists at all).
    pub(super) fn plan_drains(
        &mut self,
        d: &mut Desired,
        underlays: &BTreeMap<ObjectKey, Ipv6Addr>,
        now: Instant,
        interface_exists: &dyn Fn(&ObjectKey) -> bool,
    ) {
        let policy = Policy {
            now,
            wall: self.clock.wall(),
            timeout: self.drain_timeout,
            max_targets: self.dev.caps().max_targets_per_lb as usize,
        };
        for (k, spec) in &mut d.specs {
            let known = self.target_interfaces.get(k);
            let interface_of = |a: &Ipv6Addr| match known.and_then(|m| m.get(a)) {
                // Recorded by the last sync: unless that interface has another underlay address now (nothing
                // answers on the old one).
                Some(n) => underlays.get(n).is_none_or(|u| u == a).then(|| n.clone()),
                // Not recorded (adopted after a restart): the interface of the namespace with that address.
                None => underlays
                    .iter()
                    .find(|(n, u)| *u == a && n.namespace == k.namespace)
                    .map(|(n, _)| n.clone()),
            };
            let drains = self.drains.entry(k.clone()).or_default();
            let events = drain::decide(
                spec,
                self.programmed.get(k),
                drains,
                interface_of,
                interface_exists,
                policy,
            );
            if drains.is_empty() {
                self.drains.remove(k);
            }
            for e in events {
                log(k, &e);
            }
            let interfaces = d.target_interfaces.remove(k).unwrap_or_default();
            self.target_interfaces.insert(k.clone(), interfaces);
        }
    }

    /// The status rows of `k`'s draining targets.
    pub(super) fn draining_status(&self, k: &ObjectKey) -> Vec<DrainingTarget> {
        self.drains
            .get(k)
            .into_iter()
            .flatten()
            .map(|(a, d)| DrainingTarget {
                address: *a,
                network_interface: d.interface.as_ref().map(|i| i.name.clone()),
                deadline: rfc3339(d.deadline_wall),
            })
            .collect()
    }
}

fn log(k: &ObjectKey, e: &Event) {
    match e {
        Event::Started(a, d) => tracing::info!(
            lb = %k,
            target = %a,
            deadline = %rfc3339(d.deadline_wall),
            "target left: draining (its pinned flows stay, no new flows)"
        ),
        Event::Cut(a, why) => {
            tracing::info!(lb = %k, target = %a, why = why.as_str(), "target cut: removed, its flows flushed")
        }
        Event::Resumed(a) => tracing::info!(lb = %k, target = %a, "draining target wanted again: serving"),
    }
}
