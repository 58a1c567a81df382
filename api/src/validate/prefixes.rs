//! Validation of `ipam.Prefix` objects, and the addresses IPAM has already chosen (docs/api.md "Prefixes").
//!
//! A root Prefix has `spec.prefix`. A child Prefix names its parent (`spec.parentRef` or `spec.parentSelector`) and
//! a `spec.prefixLength`, and is pending until IPAM fills `spec.prefix`. IronCore creates one child per ephemeral
//! IP of a LoadBalancer or NetworkInterface, named `<owner>-<index>` (upstream's `LoadBalancerIPIPAMPrefixName`);
//! once allocated, its address is the cluster's decision for that IP, which ironlb follows.

use super::{addr, Ctx, Key, Ref};
use crate::types::ipam::parse_cidr;
use crate::types::{IpFamily, ObjectKey, Prefix};
use ipnet::IpNet;
use std::collections::BTreeMap;

/// A valid Prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PrefixState {
    /// Allocated: its CIDR.
    Allocated(IpNet),
    /// Waiting for IPAM: no `spec.prefix` yet, so no addresses.
    Pending,
}

/// Every Prefix by key (`None`: invalid), with the parent each one names in `spec.parentRef`.
#[derive(Debug, Default)]
pub(super) struct Prefixes {
    states: BTreeMap<Key, Option<PrefixState>>,
    parents: BTreeMap<Key, String>,
}

impl Prefixes {
    /// Records a checked Prefix; of two with one key, the first counts (the second is a duplicate).
    pub(super) fn insert(&mut self, p: &Prefix, state: Option<PrefixState>) {
        let key = p.metadata.key();
        if self.states.contains_key(&key) {
            return;
        }
        if let Some(parent) = &p.spec.parent_ref {
            self.parents.insert(key.clone(), parent.name.clone());
        }
        self.states.insert(key, state);
    }

    /// The Prefix `key` as a reference resolves it.
    pub(super) fn lookup(&self, key: &ObjectKey) -> Ref<PrefixState> {
        match self.states.get(key) {
            None => Ref::Missing,
            Some(None) => Ref::Invalid,
            Some(Some(s)) => Ref::Valid(*s),
        }
    }

    /// The child Prefix IronCore creates for ephemeral IP `index` of `owner` (`<owner>-<index>`, whose
    /// `spec.parentRef` is `parent`), and its CIDR when IPAM has allocated it. A Prefix of that name with another
    /// parent is not the child.
    pub(super) fn child(
        &self,
        owner: &ObjectKey,
        index: usize,
        parent: &ObjectKey,
    ) -> Option<(ObjectKey, IpNet)> {
        let key = owner.sibling(format!("{}-{index}", owner.name));
        if self.parents.get(&key) != Some(&parent.name) {
            return None;
        }
        match self.lookup(&key) {
            Ref::Valid(PrefixState::Allocated(net)) => Some((key, net)),
            _ => None,
        }
    }
}

/// Checks a Prefix: allocated (`spec.prefix`) or pending (`spec.prefixLength` and a parent, no `spec.prefix`).
pub(super) fn check_prefix(cx: &mut Ctx<'_>, i: usize, p: &Prefix) -> Option<PrefixState> {
    let s = &p.spec;
    let family = match &s.ip_family {
        Some(IpFamily::Unknown(f)) => {
            cx.err(
                i,
                "spec.ipFamily",
                format!("unknown IP family {f:?} (expected IPv4 or IPv6)"),
            );
            None
        }
        f => f.clone(),
    };
    if s.parent_ref.as_ref().is_some_and(|r| r.name.is_empty()) {
        cx.err(i, "spec.parentRef.name", "must not be empty");
    }
    let Some(text) = &s.prefix else {
        if s.prefix_length.is_none() || (s.parent_ref.is_none() && s.parent_selector.is_none()) {
            cx.err(
                i,
                "spec.prefix",
                "required (a Prefix IPAM has not allocated yet has spec.prefixLength and spec.parentRef or \
                 spec.parentSelector instead)",
            );
            return None;
        }
        let max = if family == Some(IpFamily::IPv4) { 32 } else { 128 };
        if let Some(l) = s.prefix_length.filter(|l| !(0..=max).contains(l)) {
            cx.err(i, "spec.prefixLength", format!("{l} out of range 0..={max}"));
            return None;
        }
        return Some(PrefixState::Pending);
    };
    let Some(net) = parse_cidr(text) else {
        cx.err(i, "spec.prefix", format!("invalid CIDR {text:?}"));
        return None;
    };
    if let Some(why) = addr::prefix_problem(net) {
        cx.err(i, "spec.prefix", why);
        return None;
    }
    if let Some(f) = family.filter(|f| *f != IpFamily::of(&net.addr())) {
        cx.err(i, "spec.ipFamily", format!("{f} does not match prefix {text}"));
    }
    if let Some(l) = s.prefix_length.filter(|l| *l != i64::from(net.prefix_len())) {
        cx.err(
            i,
            "spec.prefixLength",
            format!("{l} differs from spec.prefix {text}"),
        );
    }
    Some(PrefixState::Allocated(net))
}
