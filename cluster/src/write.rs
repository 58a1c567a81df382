//! What `ironlb apply` and `ironlb delete` write, planned from a [`Listing`] without touching etcd (docs/cluster.md
//! "Writing objects").
//!
//! A plan is refused — nothing is written — when any object is invalid in the store as it would be after the
//! writes: the applied objects are validated together with every stored object (references, duplicate VIPs and
//! names are checked across both, with the applied objects after the stored ones, so of two conflicting objects
//! the applied one is refused), and a problem that the store did not have before is a refusal. The same rules and
//! messages as `ironlb validate`.
//!
//! An applied object whose `status` is empty keeps the stored object's status (status is written by the controller
//! and the hosts; a manifest without one does not erase it). An applied object that carries
//! `metadata.resourceVersion` is written only if the stored object is at that revision.

use crate::store::{Conflict, Expect, Listing, Write};
use ironlb_api::validate::{validate_mask, ValidationError};
use ironlb_api::{Object, ObjectRef};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

/// An object to apply, with the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The file (for messages).
    pub file: PathBuf,
    /// The object.
    pub object: Object,
    /// `metadata.resourceVersion` as written in the file: the revision the stored object must have.
    pub resource_version: Option<i64>,
}

impl Incoming {
    /// Loaded objects to write without a pinned revision (`metadata.resourceVersion` not given).
    pub fn unpinned(loaded: impl IntoIterator<Item = (PathBuf, Object)>) -> Vec<Incoming> {
        loaded
            .into_iter()
            .map(|(file, object)| Incoming {
                file,
                object,
                resource_version: None,
            })
            .collect()
    }
}

/// What a plan does to one object (what the CLI prints, as kubectl does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Created.
    Created,
    /// Replaced.
    Configured,
    /// Already as applied: not written.
    Unchanged,
    /// Deleted.
    Deleted,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Deleted => "deleted",
        })
    }
}

/// The writes of one apply or delete, and what each object's outcome will be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The writes, in input order.
    pub writes: Vec<Write>,
    /// Every object named, in input order.
    pub outcomes: Vec<(ObjectRef, Outcome)>,
}

/// Why a plan writes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Objects would be invalid (bad input).
    #[error("{} problem(s), nothing written:\n{}", .0.len(), lines(.0))]
    Invalid(Vec<ValidationError>),
    /// Deleting would leave stored objects invalid (bad input): delete them too, or fix them first.
    #[error("deleting would leave {} problem(s), nothing deleted:\n{}", .0.len(), lines(.0))]
    WouldBreak(Vec<ValidationError>),
    /// The same object twice in the input (bad input).
    #[error("{object} is given twice ({} and {}), nothing written", first.display(), second.display())]
    Duplicate {
        /// The object.
        object: ObjectRef,
        /// Where first.
        first: PathBuf,
        /// Where again.
        second: PathBuf,
    },
    /// A resourceVersion in the input is not the stored one.
    #[error("conflict, nothing written: {}", lines(.0))]
    Conflict(Vec<Conflict>),
    /// Objects to delete do not exist.
    #[error("not found, nothing deleted: {}", lines(.0))]
    NotFound(Vec<ObjectRef>),
}

fn lines<T: fmt::Display>(v: &[T]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// The "file" a stored object's problems are reported under (the object itself is named next to it).
pub const STORED_ORIGIN: &str = "etcd";

fn stored_origin(_: &ObjectRef) -> PathBuf {
    PathBuf::from(STORED_ORIGIN)
}

/// `object` with `stored`'s status when its own is empty (status belongs to the controller and the hosts).
fn keep_status(object: &mut Object, stored: &Object) {
    match (object, stored) {
        (Object::LoadBalancer(o), Object::LoadBalancer(s)) if o.status == Default::default() => {
            o.status = s.status.clone();
        }
        (Object::NetworkInterface(o), Object::NetworkInterface(s)) if o.status == Default::default() => {
            o.status = s.status.clone();
        }
        _ => {}
    }
}

/// The problems of `after` that `before` does not have (compared by object, field and message).
/// The problems `after` has that `before` did not, except on routings the controller owns: those are derived
/// state, which the controller's next round rewrites or deletes (a change to their LoadBalancer is not refused for
/// making them stale).
fn new_problems(before: &[(PathBuf, Object)], after: &[(PathBuf, Object)]) -> Vec<ValidationError> {
    type Problem = (ObjectRef, String, String);
    let key = |e: &ValidationError| -> Problem { (e.object.clone(), e.field.clone(), e.message.clone()) };
    let derived: BTreeSet<ObjectRef> = after
        .iter()
        .filter(|(_, o)| crate::routing::controller_owned(o))
        .map(|(_, o)| o.object_ref())
        .collect();
    let (_, old) = validate_mask(before);
    let old: BTreeSet<Problem> = old.iter().map(key).collect();
    let (_, now) = validate_mask(after);
    now.into_iter()
        .filter(|e| !old.contains(&key(e)) && !derived.contains(&e.object))
        .collect()
}

fn stored_objects(listing: &Listing, except: &BTreeSet<ObjectRef>) -> Vec<(PathBuf, Object)> {
    listing
        .objects
        .iter()
        .filter(|(r, _)| !except.contains(*r))
        .map(|(r, s)| (stored_origin(r), s.object.clone()))
        .collect()
}

/// Plans applying `incoming` onto the store as `listing` holds it.
pub fn plan_apply(listing: &Listing, incoming: Vec<Incoming>) -> Result<Plan, Refusal> {
    let mut seen: BTreeMap<ObjectRef, PathBuf> = BTreeMap::new();
    for i in &incoming {
        let r = i.object.object_ref();
        if let Some(first) = seen.insert(r.clone(), i.file.clone()) {
            return Err(Refusal::Duplicate {
                object: r,
                first,
                second: i.file.clone(),
            });
        }
    }
    let mut plan = Plan::default();
    let mut conflicts = Vec::new();
    let mut applied = Vec::with_capacity(incoming.len());
    for mut i in incoming {
        let r = i.object.object_ref();
        let stored = listing.objects.get(&r);
        if let Some(rv) = i.resource_version {
            let found = stored.map(|s| s.revision);
            if found != Some(rv) {
                conflicts.push(Conflict {
                    object: r.clone(),
                    expected: Expect::Revision(rv),
                    found,
                });
            }
        }
        let outcome = match stored {
            None => Outcome::Created,
            Some(s) => {
                keep_status(&mut i.object, &s.object);
                if i.object == s.object {
                    Outcome::Unchanged
                } else {
                    Outcome::Configured
                }
            }
        };
        if outcome != Outcome::Unchanged {
            plan.writes.push(Write::Put {
                object: Box::new(i.object.clone()),
                expect: stored.map_or(Expect::Absent, |s| Expect::Revision(s.revision)),
            });
        }
        plan.outcomes.push((r, outcome));
        applied.push((i.file, i.object));
    }
    if !conflicts.is_empty() {
        return Err(Refusal::Conflict(conflicts));
    }
    let before = stored_objects(listing, &BTreeSet::new());
    let mut after = stored_objects(listing, &seen.keys().cloned().collect());
    after.extend(applied);
    let problems = new_problems(&before, &after);
    if !problems.is_empty() {
        return Err(Refusal::Invalid(problems));
    }
    Ok(plan)
}

/// Plans deleting `refs`. A missing object is an error unless `ignore_missing`. Refused when an object left in the
/// store would become invalid (a LoadBalancer whose Network is deleted, say): delete both together. A deleted
/// LoadBalancer's routing goes with it when the controller owns it (as Kubernetes collects an owned object).
pub fn plan_delete(listing: &Listing, refs: Vec<ObjectRef>, ignore_missing: bool) -> Result<Plan, Refusal> {
    let owned_routings: Vec<ObjectRef> = refs
        .iter()
        .filter(|r| r.kind == ironlb_api::Kind::LoadBalancer)
        .map(|r| r.key.clone().of(ironlb_api::Kind::LoadBalancerRouting))
        .filter(|rr| {
            listing
                .objects
                .get(rr)
                .is_some_and(|s| crate::routing::controller_owned(&s.object))
        })
        .collect();
    let refs: Vec<ObjectRef> = refs.into_iter().chain(owned_routings).collect();
    let mut plan = Plan::default();
    let mut missing = Vec::new();
    let mut gone = BTreeSet::new();
    for r in refs {
        if !gone.insert(r.clone()) {
            continue;
        }
        match listing.objects.get(&r) {
            Some(s) => {
                plan.writes.push(Write::Delete {
                    object: r.clone(),
                    revision: s.revision,
                });
                plan.outcomes.push((r, Outcome::Deleted));
            }
            None => missing.push(r),
        }
    }
    if !missing.is_empty() && !ignore_missing {
        return Err(Refusal::NotFound(missing));
    }
    let before = stored_objects(listing, &BTreeSet::new());
    let after = stored_objects(listing, &gone);
    let problems = new_problems(&before, &after);
    if !problems.is_empty() {
        return Err(Refusal::WouldBreak(problems));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests;
