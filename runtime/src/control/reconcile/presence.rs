//! Step 1 of a sync: which load balancers exist and which of them are valid.
//!
//! Documents that did not load stand in for their last good objects ([`restore_kept`]); then every load balancer
//! is classified ([`Presence::classify`]) as valid (programmed), invalid (keeps its last good state) or defined
//! twice (the first definition is programmed, the key is in error).

use crate::api::{DocumentId, ObjectKey, ObjectRef};
use crate::api::{LoadBalancer, Object};
use crate::manifest::{LoadError, Loaded};
use crate::validate::ValidationError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What [`restore_kept`] kept from before for documents that stopped loading.
#[derive(Debug, Default)]
pub(super) struct Kept {
    /// LoadBalancers that are present but invalid because a document naming them (or their file) did not load,
    /// with the load errors that say why.
    pub lbs: BTreeMap<ObjectKey, Vec<String>>,
    /// The LoadBalancer objects kept this way, by identity (they stay kept while their documents stay broken).
    pub objects: BTreeMap<ObjectRef, (PathBuf, Object)>,
}

/// Documents that did not load keep their last good object (`last`: the previous sync's objects and the ones
/// kept then): a named one by its name, an unnamed one (the YAML itself is broken) by every object its file held
/// before that is missing now. A LoadBalancer kept this way is present but invalid (its last good device state
/// stays); objects of other kinds are added to `objects` and used as they were.
pub(super) fn restore_kept<'a>(
    objects: &mut Loaded,
    load_errors: &[LoadError],
    last: impl Iterator<Item = &'a (PathBuf, Object)>,
) -> Kept {
    let mut kept = Kept::default();
    if load_errors.is_empty() {
        return kept;
    }
    let current: BTreeSet<ObjectRef> = objects.iter().map(|(_, o)| o.object_ref()).collect();
    let last: BTreeMap<ObjectRef, &(PathBuf, Object)> = last.map(|fo| (fo.1.object_ref(), fo)).collect();
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
            kept.lbs.entry(k).or_default().push(e.to_string());
        }
        for fo in lost {
            let id = fo.1.object_ref();
            if current.contains(&id) || !restored.insert(id.clone()) {
                continue;
            }
            match &fo.1 {
                Object::LoadBalancer(lb) => {
                    kept.lbs.entry(lb.metadata.key()).or_default().push(e.to_string());
                    kept.objects.insert(id, fo.clone());
                }
                _ => extra.push(fo.clone()),
            }
        }
    }
    objects.extend(extra);
    kept
}

/// The load balancers one sync looks at, classified.
#[derive(Debug)]
pub(super) struct Presence<'a> {
    /// Every load balancer that exists (loaded, or kept for a document that stopped loading), with its object
    /// when it is valid.
    pub present: BTreeMap<ObjectKey, Option<&'a LoadBalancer>>,
    /// The present load balancers that are not valid, with what is wrong (may be empty).
    pub invalid: BTreeMap<ObjectKey, Vec<String>>,
    /// Valid load balancers defined more than once, with the errors of the other definitions.
    pub duplicated: BTreeMap<ObjectKey, Vec<String>>,
    /// The valid objects of every kind, in input order.
    pub valid: Vec<&'a (PathBuf, Object)>,
}

impl<'a> Presence<'a> {
    /// Classifies `objects` given validation's verdicts (`mask`, `errors`) and the load balancers kept for
    /// documents that stopped loading (`kept_lbs`, present and invalid).
    pub fn classify(
        objects: &[&'a (PathBuf, Object)],
        mask: &[bool],
        errors: &[ValidationError],
        kept_lbs: &BTreeMap<ObjectKey, Vec<String>>,
    ) -> Presence<'a> {
        let valid: Vec<&'a (PathBuf, Object)> = objects
            .iter()
            .zip(mask)
            .filter(|(_, ok)| **ok)
            .map(|(o, _)| *o)
            .collect();
        let mut present: BTreeMap<ObjectKey, Option<&'a LoadBalancer>> = BTreeMap::new();
        for (_, o) in objects.iter().copied() {
            if let Object::LoadBalancer(lb) = o {
                present.insert(lb.metadata.key(), None);
            }
        }
        for k in kept_lbs.keys() {
            present.insert(k.clone(), None);
        }
        for (_, o) in valid.iter().copied() {
            if let Object::LoadBalancer(lb) = o {
                present.insert(lb.metadata.key(), Some(lb));
            }
        }
        let mut invalid: BTreeMap<ObjectKey, Vec<String>> = present
            .iter()
            .filter(|(_, lb)| lb.is_none())
            .map(|(k, _)| (k.clone(), Vec::new()))
            .collect();
        // A LoadBalancer defined twice: the first definition is the valid one and is programmed, but the key is
        // in error (status, logs, metrics) until one definition goes, as `validate` and `run --once` report it.
        let mut duplicated: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
        for e in errors {
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
        for (k, msgs) in kept_lbs {
            if let Some(v) = invalid.get_mut(k) {
                v.extend(msgs.iter().cloned());
            }
        }
        Presence {
            present,
            invalid,
            duplicated,
            valid,
        }
    }

    /// Whether the load balancer `k` exists (valid or not).
    pub fn contains(&self, k: &ObjectKey) -> bool {
        self.present.contains_key(k)
    }

    /// The valid load balancers, by key.
    pub fn valid_lbs(&self) -> impl Iterator<Item = &'a LoadBalancer> + '_ {
        self.present.values().flatten().copied()
    }
}
