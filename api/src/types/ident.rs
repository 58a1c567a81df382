//! Typed identities of API objects: [`Kind`], [`ObjectKey`] (`namespace/name`) and [`ObjectRef`] (`Kind
//! namespace/name`). Every map, error and status in ironlb is keyed by these, never by strings parsed back.

use serde::{Deserialize, Serialize};
use std::fmt;

/// API group/version of the networking types.
pub const NETWORKING_V1ALPHA1: &str = "networking.ironcore.dev/v1alpha1";
/// API group/version of the IPAM types.
pub const IPAM_V1ALPHA1: &str = "ipam.ironcore.dev/v1alpha1";
/// API group/version of ironlb's own kinds (`NodeUnderlay`).
pub const IRONLB_V1ALPHA1: &str = "ironlb.dev/v1alpha1";

/// The kinds ironlb reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `networking.ironcore.dev/v1alpha1` `LoadBalancer`.
    LoadBalancer,
    /// `networking.ironcore.dev/v1alpha1` `LoadBalancerRouting`.
    LoadBalancerRouting,
    /// `networking.ironcore.dev/v1alpha1` `Network`.
    Network,
    /// `networking.ironcore.dev/v1alpha1` `NetworkInterface`.
    NetworkInterface,
    /// `ipam.ironcore.dev/v1alpha1` `Prefix`.
    Prefix,
    /// `ironlb.dev/v1alpha1` `NodeUnderlay` (ironlb's own).
    NodeUnderlay,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::LoadBalancer,
        Kind::LoadBalancerRouting,
        Kind::Network,
        Kind::NetworkInterface,
        Kind::Prefix,
        Kind::NodeUnderlay,
    ];

    /// The kind for an apiVersion and kind, if ironlb reads it.
    pub fn from_type_meta(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::from_name(kind).filter(|k| k.api_version() == api_version)
    }

    /// The kind named `kind` (as written in `kind:`), whatever its apiVersion.
    pub fn from_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LoadBalancer => "LoadBalancer",
            Kind::LoadBalancerRouting => "LoadBalancerRouting",
            Kind::Network => "Network",
            Kind::NetworkInterface => "NetworkInterface",
            Kind::Prefix => "Prefix",
            Kind::NodeUnderlay => "NodeUnderlay",
        }
    }

    /// The kind's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Prefix => IPAM_V1ALPHA1,
            Kind::NodeUnderlay => IRONLB_V1ALPHA1,
            _ => NETWORKING_V1ALPHA1,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object's `namespace/name` (the identity within one kind). Ordered by namespace, then name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Effective namespace (never empty for a loaded object: [`super::DEFAULT_NAMESPACE`] when not set).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of the object named `name` in this key's namespace (a reference by name from this object).
    pub fn sibling(&self, name: impl Into<String>) -> ObjectKey {
        ObjectKey::new(self.namespace.clone(), name)
    }

    /// This key as an object of `kind`.
    pub fn of(self, kind: Kind) -> ObjectRef {
        ObjectRef { kind, key: self }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A typed reference to one object: `Kind namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The kind.
    pub kind: Kind,
    /// Namespace and name.
    pub key: ObjectKey,
}

impl ObjectRef {
    /// `kind namespace/name`.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> ObjectRef {
        ObjectRef {
            kind,
            key: ObjectKey::new(namespace, name),
        }
    }

    /// The key of a LoadBalancer, `None` for other kinds.
    pub fn load_balancer(&self) -> Option<&ObjectKey> {
        (self.kind == Kind::LoadBalancer).then_some(&self.key)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.key)
    }
}

/// What is known of a document's identity when it does not load: a full [`ObjectRef`] when its kind is one ironlb
/// reads and it has a name, else the kind as written and the key when named.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocumentId {
    /// A kind ironlb reads, with namespace and name.
    Object(ObjectRef),
    /// Only part is known: the `kind:` as written, and `namespace/name` when the document has a name.
    Partial {
        /// `kind:` as written.
        kind: String,
        /// `namespace/name`, when `metadata.name` is set.
        key: Option<ObjectKey>,
    },
}

impl DocumentId {
    /// The identity of a document with `kind:` `kind` and, when named, `key`.
    pub fn new(kind: &str, key: Option<ObjectKey>) -> DocumentId {
        match (Kind::from_name(kind), key) {
            (Some(k), Some(key)) => DocumentId::Object(ObjectRef { kind: k, key }),
            (_, key) => DocumentId::Partial {
                kind: kind.to_string(),
                key,
            },
        }
    }

    /// The object, when fully known.
    pub fn object(&self) -> Option<&ObjectRef> {
        match self {
            DocumentId::Object(r) => Some(r),
            DocumentId::Partial { .. } => None,
        }
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocumentId::Object(r) => r.fmt(f),
            DocumentId::Partial { kind, key: Some(k) } => write!(f, "{kind} {k}"),
            DocumentId::Partial { kind, key: None } => f.write_str(kind),
        }
    }
}

impl From<ObjectRef> for DocumentId {
    fn from(r: ObjectRef) -> DocumentId {
        DocumentId::Object(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_written_before() {
        let r = ObjectRef::new(Kind::LoadBalancer, "default", "web");
        assert_eq!(r.to_string(), "LoadBalancer default/web");
        assert_eq!(r.key.to_string(), "default/web");
        assert_eq!(DocumentId::new("Foo", None).to_string(), "Foo");
        assert_eq!(
            DocumentId::new("Foo", Some(ObjectKey::new("a", "b"))).to_string(),
            "Foo a/b"
        );
        assert_eq!(
            DocumentId::new("Prefix", Some(ObjectKey::new("a", "b"))),
            DocumentId::Object(ObjectRef::new(Kind::Prefix, "a", "b"))
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_type_meta(k.api_version(), k.as_str()), Some(k));
            assert_eq!(Kind::from_name(k.as_str()), Some(k));
        }
        assert_eq!(Kind::from_type_meta(IPAM_V1ALPHA1, "LoadBalancer"), None);
    }

    #[test]
    fn keys_order_by_namespace_then_name() {
        let mut v = vec![
            ObjectKey::new("b", "a"),
            ObjectKey::new("a", "z"),
            ObjectKey::new("a", "b"),
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                ObjectKey::new("a", "b"),
                ObjectKey::new("a", "z"),
                ObjectKey::new("b", "a")
            ]
        );
    }
}
