//! The fields ironlb knows, per kind: the seeds' schema (IEP-3, IEP-8), ironlb's extensions and upstream
//! IronCore's (`networking.ironcore.dev/v1alpha1`, `ipam.ironcore.dev/v1alpha1`, Kubernetes `ObjectMeta`), and the
//! check that a document holds no other field (issue 16).
//!
//! serde ignores fields its types do not name, so a typo (`matchLabel:` for `matchLabels:`) would be dropped
//! silently and could fail open. [`unknown_fields`] walks the parsed document against this schema before it is
//! converted and reports every field that is in none of the schemas, with a "did you mean" hint for a near miss.
//! Whether an unknown field is an error (the default, as kubectl's strict field validation) or a warning
//! (`--lenient`) is the loader's choice ([`crate::load::LoadOptions`]).
//!
//! Each field is marked [`Use::Read`] (ironlb reads it) or [`Use::Unused`] (upstream defines it and ironlb accepts
//! it without reading it); docs/api.md lists the unused ones, and api/tests/unused_fields_doc.rs keeps that list
//! equal to this file.

use crate::types::Kind;
use serde_norway::Value;
use std::fmt;

/// Whether ironlb reads a known field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// ironlb reads the field.
    Read,
    /// An upstream field ironlb accepts and does not read.
    Unused,
}

/// The shape under a field.
#[derive(Debug, Clone, Copy)]
pub enum Node {
    /// A scalar (its type is checked when the document is converted).
    Leaf,
    /// Anything; not walked (labels, annotations, managedFields, ...).
    Opaque,
    /// A mapping with these fields.
    Map(&'static [Field]),
    /// A sequence of this.
    List(&'static Node),
    /// An IP in a status: a scalar, `{ip: ...}`, or IEP-3's unquoted `2001::` (which YAML reads as the one-key
    /// mapping `{"2001:": null}`).
    StatusIp,
}

/// One known field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its name as written.
    pub name: &'static str,
    /// Whether ironlb reads it.
    pub used: Use,
    /// What it holds.
    pub node: Node,
}

const fn read(name: &'static str, node: Node) -> Field {
    Field {
        name,
        used: Use::Read,
        node,
    }
}

const fn unused(name: &'static str, node: Node) -> Field {
    Field {
        name,
        used: Use::Unused,
        node,
    }
}

use Node::{Leaf, List, Map, Opaque, StatusIp};

/// Kubernetes `ObjectMeta`.
const META: &[Field] = &[
    read("name", Leaf),
    read("namespace", Leaf),
    read("uid", Leaf),
    read("labels", Opaque),
    unused("annotations", Opaque),
    unused("generateName", Leaf),
    unused("resourceVersion", Leaf),
    unused("generation", Leaf),
    unused("creationTimestamp", Leaf),
    unused("deletionTimestamp", Leaf),
    unused("deletionGracePeriodSeconds", Leaf),
    unused("finalizers", Opaque),
    unused("ownerReferences", Opaque),
    unused("managedFields", Opaque),
    unused("selfLink", Leaf),
];

/// `corev1.LocalObjectReference`.
const LOCAL_REF: &[Field] = &[read("name", Leaf)];

/// `commonv1alpha1.LocalUIDReference`.
const LOCAL_UID_REF: &[Field] = &[read("name", Leaf), read("uid", Leaf)];

/// `metav1.LabelSelector`.
const SELECTOR: &[Field] = &[
    read("matchLabels", Opaque),
    read("matchExpressions", List(&Map(REQUIREMENT))),
];

const REQUIREMENT: &[Field] = &[read("key", Leaf), read("operator", Leaf), read("values", Opaque)];

/// `ipam.PrefixSpec` inside a `prefixTemplate`, plus the seeds' `prefixRef`.
const TEMPLATE_SPEC: &[Field] = &[
    read("prefixRef", Map(LOCAL_REF)),
    read("parentRef", Map(LOCAL_REF)),
    read("ipFamily", Leaf),
    read("prefix", Leaf),
    read("prefixLength", Leaf),
    unused("parentSelector", Map(SELECTOR)),
];

const PREFIX_TEMPLATE: &[Field] = &[unused("metadata", Map(META)), read("spec", Map(TEMPLATE_SPEC))];

const EPHEMERAL: &[Field] = &[read("prefixTemplate", Map(PREFIX_TEMPLATE))];

/// An IP source: the seeds' `ip:`, upstream's `value:`, or `ephemeral:`.
const IP_SOURCE: &[Field] = &[
    read("ip", Leaf),
    read("value", Leaf),
    read("ephemeral", Map(EPHEMERAL)),
];

/// A port: the seeds' `portEnd` or upstream's `endPort`.
const PORT: &[Field] = &[
    read("protocol", Leaf),
    read("port", Leaf),
    read("portEnd", Leaf),
    read("endPort", Leaf),
];

const LB_SPEC: &[Field] = &[
    read("type", Leaf),
    read("ipFamilies", Opaque),
    read("ips", List(&Map(IP_SOURCE))),
    read("ports", List(&Map(PORT))),
    read("networkRef", Map(LOCAL_REF)),
    read("networkInterfaceSelector", Map(SELECTOR)),
];

/// An IP in a status, written as a mapping.
const STATUS_IP: &[Field] = &[read("ip", Leaf)];

const IP_STATUS: &[Field] = &[read("ips", List(&StatusIp))];

const LB: &[Field] = &[read("spec", Map(LB_SPEC)), read("status", Map(IP_STATUS))];

const TARGET_REF: &[Field] = &[read("uid", Leaf), read("name", Leaf), read("providerID", Leaf)];

const DESTINATION: &[Field] = &[
    read("name", Leaf),
    read("uid", Leaf),
    read("ip", Leaf),
    read("targetRef", Map(TARGET_REF)),
];

const ROUTING: &[Field] = &[
    read("networkRef", Map(LOCAL_UID_REF)),
    read("destinations", List(&Map(DESTINATION))),
];

const NETWORK_SPEC: &[Field] = &[
    read("vni", Leaf),
    read("providerID", Leaf),
    unused("peerings", Opaque),
    unused("incomingPeerings", Opaque),
];

const NETWORK_STATUS: &[Field] = &[unused("state", Leaf), unused("peerings", Opaque)];

const NETWORK: &[Field] = &[
    read("spec", Map(NETWORK_SPEC)),
    unused("status", Map(NETWORK_STATUS)),
];

const NIC_SPEC: &[Field] = &[
    read("networkRef", Map(LOCAL_REF)),
    read("ips", List(&Map(IP_SOURCE))),
    read("providerID", Leaf),
    unused("machineRef", Map(LOCAL_UID_REF)),
    unused("ipFamilies", Opaque),
    unused("prefixes", Opaque),
    unused("virtualIP", Opaque),
    unused("attributes", Opaque),
];

const NIC_STATUS: &[Field] = &[
    read("state", Leaf),
    read("ips", List(&StatusIp)),
    read("underlayAddress", Leaf),
    unused("lastStateTransitionTime", Leaf),
    unused("prefixes", Opaque),
    unused("virtualIP", Leaf),
];

const NIC: &[Field] = &[read("spec", Map(NIC_SPEC)), read("status", Map(NIC_STATUS))];

const PREFIX_SPEC: &[Field] = &[
    read("prefix", Leaf),
    read("ipFamily", Leaf),
    read("prefixLength", Leaf),
    read("parentRef", Map(LOCAL_REF)),
    read("parentSelector", Map(SELECTOR)),
];

const PREFIX_STATUS: &[Field] = &[
    unused("phase", Leaf),
    unused("lastPhaseTransitionTime", Leaf),
    unused("used", Opaque),
];

const PREFIX: &[Field] = &[
    read("spec", Map(PREFIX_SPEC)),
    unused("status", Map(PREFIX_STATUS)),
];

const NODE_UNDERLAY_SPEC: &[Field] = &[read("underlayAddress", Leaf)];

const NODE_UNDERLAY: &[Field] = &[read("spec", Map(NODE_UNDERLAY_SPEC))];

/// The fields every object has: type meta and `metadata`.
const TOP: &[Field] = &[
    read("apiVersion", Leaf),
    read("kind", Leaf),
    read("metadata", Map(META)),
];

/// The top-level fields of a kind besides [`TOP`]'s.
fn kind_fields(kind: Kind) -> &'static [Field] {
    match kind {
        Kind::LoadBalancer => LB,
        Kind::LoadBalancerRouting => ROUTING,
        Kind::Network => NETWORK,
        Kind::NetworkInterface => NIC,
        Kind::Prefix => PREFIX,
        Kind::NodeUnderlay => NODE_UNDERLAY,
    }
}

/// A field of a document that no schema knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// Its path in the object, e.g. `spec.ports[0].endport`.
    pub path: String,
    /// The known field it is probably a misspelling of.
    pub suggestion: Option<&'static str>,
}

impl fmt::Display for UnknownField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown field {}", self.path)?;
        if let Some(s) = self.suggestion {
            write!(f, " (did you mean {s}?)")?;
        }
        Ok(())
    }
}

/// Every field of `doc`, an object of `kind`, that is in none of the known schemas, in document order.
pub fn unknown_fields(kind: Kind, doc: &Value) -> Vec<UnknownField> {
    let mut out = Vec::new();
    if let Value::Mapping(m) = doc {
        for (k, v) in m {
            let name = key_name(k);
            let known = find(TOP, &name).or_else(|| find(kind_fields(kind), &name));
            match known {
                Some(f) => walk(f.node, v, &name, &mut out),
                None => out.push(unknown(&name, name.clone(), &[TOP, kind_fields(kind)])),
            }
        }
    }
    out
}

/// The known fields of a `kind: List` document.
const LIST: &[Field] = &[
    read("apiVersion", Leaf),
    read("kind", Leaf),
    unused("metadata", Opaque),
    read("items", Opaque),
];

/// The unknown top-level fields of a `kind: List` document (its items are checked as objects).
pub fn unknown_list_fields(doc: &Value) -> Vec<UnknownField> {
    let mut out = Vec::new();
    if let Value::Mapping(m) = doc {
        for k in m.keys() {
            let name = key_name(k);
            if find(LIST, &name).is_none() {
                out.push(unknown(&name, name.clone(), &[LIST]));
            }
        }
    }
    out
}

fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| format!("{other:?}")),
    }
}

fn find(fields: &'static [Field], name: &str) -> Option<&'static Field> {
    fields.iter().find(|f| f.name == name)
}

fn walk(node: Node, v: &Value, path: &str, out: &mut Vec<UnknownField>) {
    match (node, v) {
        (Map(fields), Value::Mapping(m)) => {
            for (k, v) in m {
                let name = key_name(k);
                let p = format!("{path}.{name}");
                match find(fields, &name) {
                    Some(f) => walk(f.node, v, &p, out),
                    None => out.push(unknown(&name, p, &[fields])),
                }
            }
        }
        (List(item), Value::Sequence(s)) => {
            for (j, v) in s.iter().enumerate() {
                walk(*item, v, &format!("{path}[{j}]"), out);
            }
        }
        (StatusIp, Value::Mapping(m)) => {
            let trailing_colons = m.len() == 1
                && m.iter()
                    .all(|(k, v)| v.is_null() && k.as_str().is_some_and(|k| k.ends_with(':')));
            if !trailing_colons {
                walk(Map(STATUS_IP), v, path, out);
            }
        }
        // Scalars, opaque values, and values of the wrong type (rejected when the document is converted).
        _ => {}
    }
}

fn unknown(name: &str, path: String, candidates: &[&'static [Field]]) -> UnknownField {
    UnknownField {
        path,
        suggestion: did_you_mean(name, candidates.iter().flat_map(|f| f.iter().map(|f| f.name))),
    }
}

/// The candidate `name` is most likely a misspelling of: the same name in another case, or the closest one within
/// a small edit distance (one edit for short names, two from 6 characters on).
pub fn did_you_mean(name: &str, candidates: impl IntoIterator<Item = &'static str>) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let max = if name.chars().count() >= 6 { 2 } else { 1 };
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Every field path of `kind` marked [`Use::Unused`], e.g. `spec.machineRef` (`metadata.*` fields once, under
/// `metadata`); what docs/api.md lists.
pub fn unused_fields(kind: Kind) -> Vec<String> {
    let mut out = Vec::new();
    collect_unused(TOP, "", &mut out);
    collect_unused(kind_fields(kind), "", &mut out);
    out
}

fn collect_unused(fields: &'static [Field], path: &str, out: &mut Vec<String>) {
    for f in fields {
        let p = if path.is_empty() {
            f.name.to_string()
        } else {
            format!("{path}.{}", f.name)
        };
        match f.used {
            Use::Unused => out.push(p),
            Use::Read => match f.node {
                Map(inner) => collect_unused(inner, &p, out),
                List(Map(inner)) => collect_unused(inner, &format!("{p}[]"), out),
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(t: &str) -> Value {
        serde_norway::from_str(t).unwrap()
    }

    #[test]
    fn near_misses_get_a_hint() {
        let doc = v("apiVersion: x\nkind: LoadBalancer\nmetadata: {name: a}\nspec:\n  prots: []\n  ports:\n  - {protocol: TCP, port: 1, endport: 2}\n  - {port: 1, portend: 2}\n  networkInterfaceSelector: {matchLabel: {a: b}}\n  bogus: 1\n");
        let u = unknown_fields(Kind::LoadBalancer, &doc);
        let got: Vec<(String, Option<&str>)> = u.into_iter().map(|u| (u.path, u.suggestion)).collect();
        assert_eq!(
            got,
            vec![
                ("spec.prots".to_string(), Some("ports")),
                ("spec.ports[0].endport".to_string(), Some("endPort")),
                ("spec.ports[1].portend".to_string(), Some("portEnd")),
                (
                    "spec.networkInterfaceSelector.matchLabel".to_string(),
                    Some("matchLabels")
                ),
                ("spec.bogus".to_string(), None),
            ]
        );
    }

    #[test]
    fn upstream_and_seed_fields_are_known() {
        let doc = v("apiVersion: x\nkind: NetworkInterface\nmetadata: {name: a, managedFields: [{x: 1}], resourceVersion: '1', ownerReferences: [{}], creationTimestamp: null}\nspec: {providerID: p, machineRef: {name: m, uid: u}, ipFamilies: [IPv4], ips: [{value: 10.0.0.1}, {ip: 10.0.0.2}]}\nstatus:\n  state: Available\n  ips:\n  - 10.0.0.1\n  - {ip: 10.0.0.2}\n  - 2001::\n  underlayAddress: 'fd00::1'\n");
        assert_eq!(unknown_fields(Kind::NetworkInterface, &doc), vec![]);
        let r = v("networkRef: {name: n, uid: u}\ndestinations: [{ip: 10.0.0.1, targetRef: {uid: u, name: a, providerID: p}}, {name: a, uid: u}]\n");
        assert_eq!(unknown_fields(Kind::LoadBalancerRouting, &r), vec![]);
        // A one-key mapping is an IEP-3 trailing-colon address only when its value is null.
        let bad = v("status: {ips: [{'2001:': 1}]}\n");
        assert_eq!(unknown_fields(Kind::LoadBalancer, &bad).len(), 1);
    }

    #[test]
    fn hints_need_a_close_match() {
        assert_eq!(did_you_mean("PORTS", ["ports"]), Some("ports"));
        assert_eq!(did_you_mean("xyz", ["ports", "type"]), None);
        assert_eq!(did_you_mean("typ", ["ports", "type"]), Some("type"));
    }
}
