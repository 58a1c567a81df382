//! Step 4 of a sync: the desired [`ironlb_driver::LbSpec`]s of the allocated load balancers
//! ([`crate::controller::desired_refs`]), and the errors known before anything is programmed (invalid, defined
//! twice, allocation failed, no VIPs).

use super::allocate::Allocated;
use super::presence::Presence;
use crate::api::{Object, ObjectKey};
use crate::controller::{desired_refs, Desired};
use crate::status::Reason;
use crate::validate::Parsed;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Why a load balancer is not as desired after this sync (its `Ready=False` reason and message), by key.
pub(super) type Errors = BTreeMap<ObjectKey, (Reason, String)>;

/// The desired specs of the valid load balancers whose allocation succeeded.
pub(super) fn desired(presence: &Presence<'_>, parsed: &Parsed, allocated: &Allocated) -> Desired {
    let usable: Vec<&(PathBuf, Object)> = presence
        .valid
        .iter()
        .copied()
        .filter(|(_, o)| match o {
            Object::LoadBalancer(lb) => !allocated.failed.contains_key(&lb.metadata.key()),
            _ => true,
        })
        .collect();
    desired_refs(&usable, parsed, &allocated.lb_ids, &allocated.ips)
}

/// The controller's issues (skipped load balancers or targets), joined per load balancer.
pub(super) fn issues_by_lb(d: &Desired) -> BTreeMap<ObjectKey, Vec<String>> {
    let mut issues: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
    for (k, i) in &d.issues {
        issues.entry(k.clone()).or_default().push(i.message.clone());
    }
    issues
}

/// The errors of load balancers that cannot be programmed as asked, known before any device operation: invalid,
/// allocation failed, defined twice (in that order of precedence, the last wins), and valid ones that got no
/// desired spec (no VIPs, with the controller's `issues` as message).
pub(super) fn object_errors(
    presence: &Presence<'_>,
    allocated: &Allocated,
    d: &Desired,
    issues: &BTreeMap<ObjectKey, Vec<String>>,
) -> Errors {
    let mut errors = Errors::new();
    for (k, msgs) in &presence.invalid {
        let msg = if msgs.is_empty() {
            "the object is invalid".to_string()
        } else {
            msgs.join("; ")
        };
        errors.insert(k.clone(), (Reason::InvalidSpec, msg));
    }
    for (k, e) in &allocated.failed {
        errors.insert(k.clone(), (Reason::of_alloc(e), e.to_string()));
    }
    for (k, msgs) in &presence.duplicated {
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
    for lb in presence.valid_lbs() {
        let k = lb.metadata.key();
        if !desired_keys.contains(&k) && !errors.contains_key(&k) {
            let msg = issues.get(&k).map(|v| v.join("; ")).unwrap_or_default();
            errors.insert(k, (Reason::NoVips, msg));
        }
    }
    errors
}
