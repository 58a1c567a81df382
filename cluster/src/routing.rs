//! The controller's routing step (docs/cluster.md "Controller"): for every valid LoadBalancer with a
//! `networkInterfaceSelector`, the `LoadBalancerRouting` the selector gives ([`ironlb_api::routing::routing_for`], through an [`InterfaceIndex`]:
//! its namespace's and network's `Available` NetworkInterfaces whose labels match), written to etcd, as IronCore's
//! own controller writes it. Agents follow a routing when there is one, so every host routes to the same
//! interfaces, whenever each saw the interfaces change.
//!
//! The routings the controller writes carry the label [`OWNER_LABEL`]` = `[`OWNER_CONTROLLER`]. A routing without
//! it (one applied from a cluster export, say) is the cluster's decision and is never touched. An owned routing is
//! rewritten when the selector's result changes, and deleted when its LoadBalancer is gone or has no selector any
//! more. Every write is fenced by the leader's lease and conditional on the routing's revision as read; the writes
//! of a round go in as few transactions as etcd takes ([`commit_parts`]).

use crate::controller::{commit_parts, Checked, Fence, Part};
use crate::store::{Listing, Store, StoreError};
use etcd_client::{Compare, CompareOp};
use ironlb_api::routing::InterfaceIndex;
use ironlb_api::types::LoadBalancerRouting;
use ironlb_api::{Kind, Object, ObjectKey};

/// The label that marks a routing the controller wrote.
pub const OWNER_LABEL: &str = "ironlb.dev/routing-owner";
/// [`OWNER_LABEL`]'s value.
pub const OWNER_CONTROLLER: &str = "controller";

/// Whether `o` is a routing the controller wrote (derived state: `apply` does not refuse a change that makes it
/// stale, and deleting its LoadBalancer deletes it).
pub fn controller_owned(o: &Object) -> bool {
    matches!(o, Object::LoadBalancerRouting(r)
        if r.metadata.labels.get(OWNER_LABEL).map(String::as_str) == Some(OWNER_CONTROLLER))
}

/// What one routing round wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingRound {
    /// Routings created or rewritten.
    pub written: Vec<ObjectKey>,
    /// Owned routings deleted (their LoadBalancer is gone or has no selector).
    pub deleted: Vec<ObjectKey>,
    /// Transactions that lost a race or a lease (planned again next round).
    pub conflicts: usize,
    /// The store's revision after the round's last write (0: it wrote nothing).
    pub revision: i64,
}

/// The change one LoadBalancer's routing needs.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// Write this routing; `revision` of the owned one it replaces (`None`: create).
    Put(Box<LoadBalancerRouting>, Option<i64>),
    /// Delete the owned routing at this revision.
    Delete(i64),
}

/// What the routings should be, given the store as `listing` holds it and `checked` validated it: one [`Change`]
/// per routing to write or delete, by LoadBalancer key. Pure.
fn plan(listing: &Listing, checked: &Checked) -> Vec<(ObjectKey, Change)> {
    let interfaces = InterfaceIndex::new(checked.objects().filter_map(|(o, ok)| match o {
        Object::NetworkInterface(n) if ok => Some(n),
        _ => None,
    }));
    let mut changes = Vec::new();
    for (o, _) in checked.objects() {
        let Object::LoadBalancer(lb) = o else { continue };
        let key = lb.metadata.key();
        if !checked.parsed().load_balancers.contains_key(&key) {
            // Invalid (perhaps for a moment): its routing stays as it is.
            continue;
        }
        let stored = listing.objects.get(&key.clone().of(Kind::LoadBalancerRouting));
        let owned = stored.filter(|s| controller_owned(&s.object));
        match (interfaces.routing_for(lb), stored, owned) {
            (Some(mut want), None, _) => {
                want.metadata
                    .labels
                    .insert(OWNER_LABEL.into(), OWNER_CONTROLLER.into());
                changes.push((key, Change::Put(Box::new(want), None)));
            }
            (Some(mut want), Some(_), Some(s)) => {
                let Object::LoadBalancerRouting(have) = &s.object else {
                    unreachable!("owned: a routing")
                };
                if have.network_ref != want.network_ref || have.destinations != want.destinations {
                    want.metadata
                        .labels
                        .insert(OWNER_LABEL.into(), OWNER_CONTROLLER.into());
                    changes.push((key, Change::Put(Box::new(want), Some(s.revision))));
                }
            }
            (None, _, Some(s)) => changes.push((key, Change::Delete(s.revision))),
            // Given by someone else (the cluster decided), or nothing to do.
            _ => {}
        }
    }
    // Owned routings whose LoadBalancer is gone.
    for (r, s) in &listing.objects {
        if r.kind == Kind::LoadBalancerRouting
            && controller_owned(&s.object)
            && !listing
                .objects
                .contains_key(&r.key.clone().of(Kind::LoadBalancer))
        {
            changes.push((r.key.clone(), Change::Delete(s.revision)));
        }
    }
    changes
}

/// One round: lists the store and writes the routings that changed, in as few fenced transactions as etcd takes.
pub async fn routing_round(store: &Store, fence: Option<&Fence>) -> Result<RoutingRound, StoreError> {
    let listing = store.list(None).await?;
    routing_listed(store, &listing, &Checked::new(&listing), fence).await
}

/// [`routing_round`] on a listing the caller already read and validated. Its writes are conditioned on each routing's revision
/// in `listing`, so a listing made stale meanwhile only costs a conflict.
pub async fn routing_listed(
    store: &Store,
    listing: &Listing,
    checked: &Checked,
    fence: Option<&Fence>,
) -> Result<RoutingRound, StoreError> {
    let mut round = RoutingRound::default();
    let changes = plan(listing, checked);
    let parts: Vec<Part> = changes
        .iter()
        .map(|(key, change)| {
            let etcd_key = store
                .layout()
                .object_key(&key.clone().of(Kind::LoadBalancerRouting));
            let mut part = Part::new();
            match change {
                Change::Put(routing, revision) => {
                    part.require(match revision {
                        None => Compare::create_revision(etcd_key.as_bytes(), CompareOp::Equal, 0),
                        Some(rev) => Compare::mod_revision(etcd_key.as_bytes(), CompareOp::Equal, *rev),
                    });
                    let value = crate::codec::encode(&Object::LoadBalancerRouting((**routing).clone()));
                    part.put(&etcd_key, value);
                }
                Change::Delete(rev) => {
                    part.require(Compare::mod_revision(etcd_key.as_bytes(), CompareOp::Equal, *rev));
                    part.delete(&etcd_key);
                }
            }
            part
        })
        .collect();
    let done = commit_parts(store, "routing", fence, &parts).await?;
    round.revision = done.revision;
    for ((key, change), ok) in changes.into_iter().zip(done.written) {
        match (ok, change) {
            (false, _) => round.conflicts += 1,
            (true, Change::Put(..)) => round.written.push(key),
            (true, Change::Delete(_)) => round.deleted.push(key),
        }
    }
    Ok(round)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Stored;

    fn listing(yaml: &str) -> Listing {
        let (objects, errors) = ironlb_api::load::load_str("t.yaml", yaml);
        assert!(errors.is_empty(), "{errors:?}");
        let mut l = Listing::default();
        for (i, (_, o)) in objects.into_iter().enumerate() {
            l.objects.insert(
                o.object_ref(),
                Stored {
                    object: o,
                    revision: 10 + i as i64,
                },
            );
        }
        l
    }

    const NET: &str =
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: n}\nspec: {vni: 7}\n";

    fn nic(name: &str, app: &str, state: &str) -> String {
        format!("---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: NetworkInterface\nmetadata: {{name: {name}, uid: u-{name}, labels: {{app: {app}}}}}\nspec: {{networkRef: {{name: n}}, ips: [{{ip: 10.0.0.{}}}]}}\nstatus: {{state: {state}, underlayAddress: 'fd00::{}'}}\n", name.len() + 10, name.len() + 10)
    }

    fn lb(selector: &str) -> String {
        format!("---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {{name: web}}\nspec:\n  type: Public\n  ipFamilies: [IPv4]\n  networkRef: {{name: n}}\n  ports: [{{protocol: TCP, port: 80}}]\n{selector}")
    }

    fn planned(l: &Listing) -> Vec<(ObjectKey, Change)> {
        plan(l, &Checked::new(l))
    }

    fn names(r: &LoadBalancerRouting) -> Vec<&str> {
        r.destinations.iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn a_selector_gives_an_owned_routing_of_the_available_matching_interfaces() {
        let l = listing(&format!(
            "{NET}{}{}{}{}",
            nic("a", "web", "Available"),
            nic("bb", "web", "Pending"),
            nic("ccc", "db", "Available"),
            lb("  networkInterfaceSelector: {matchLabels: {app: web}}\n")
        ));
        let p = plan(&l, &Checked::new(&l));
        assert_eq!(p.len(), 1, "{p:?}");
        let (key, Change::Put(r, None)) = &p[0] else {
            panic!("{p:?}")
        };
        assert_eq!(key, &ObjectKey::new("default", "web"));
        assert_eq!(names(r), ["a"]);
        assert_eq!(r.destinations[0].uid.as_deref(), Some("u-a"));
        assert!(controller_owned(&Object::LoadBalancerRouting((**r).clone())));
    }

    #[test]
    fn owned_routings_follow_the_selector_and_others_are_left_alone() {
        let owned = "---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancerRouting\nmetadata: {name: web, labels: {ironlb.dev/routing-owner: controller}}\nnetworkRef: {name: n}\ndestinations: [{name: a, uid: u-a}]\n";
        let given = owned.replace(", labels: {ironlb.dev/routing-owner: controller}", "");
        let sel = "  networkInterfaceSelector: {matchLabels: {app: web}}\n";
        let base = format!(
            "{NET}{}{}",
            nic("a", "web", "Available"),
            nic("bb", "web", "Available")
        );
        // Owned and stale (bb became Available): rewritten at the revision read.
        let p = planned(&listing(&format!("{base}{}{owned}", lb(sel))));
        assert!(
            matches!(&p[..], [(_, Change::Put(r, Some(_)))] if names(r) == ["a", "bb"]),
            "{p:?}"
        );
        // Given by someone else: never touched, even when the selector disagrees.
        assert_eq!(planned(&listing(&format!("{base}{}{given}", lb(sel)))), vec![]);
        // Owned, and the selector is gone: deleted.
        let p = planned(&listing(&format!("{base}{}{owned}", lb(""))));
        assert!(matches!(&p[..], [(_, Change::Delete(_))]), "{p:?}");
        // Owned, and its LoadBalancer is gone: deleted.
        let p = planned(&listing(&format!("{base}{owned}")));
        assert!(matches!(&p[..], [(_, Change::Delete(_))]), "{p:?}");
        // Up to date: nothing.
        let current = owned.replace(
            "[{name: a, uid: u-a}]",
            "[{name: a, uid: u-a}, {name: bb, uid: u-bb}]",
        );
        assert_eq!(planned(&listing(&format!("{base}{}{current}", lb(sel)))), vec![]);
    }
}
