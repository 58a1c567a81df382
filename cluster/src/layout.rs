//! Where objects live in etcd (docs/cluster.md "Key layout").
//!
//! Every object is one key, `PREFIX<group>/<Kind>/<namespace>/<name>`, e.g.
//! `/ironlb/networking.ironcore.dev/LoadBalancer/default/web`, whose value is the object as JSON (see
//! [`crate::codec`]). Its resourceVersion is the key's etcd `mod_revision`. The prefix (default [`DEFAULT_PREFIX`])
//! lets several fleets, or tests, share one etcd. Keys under `PREFIX` whose second part is not an API group
//! (`PREFIX<something>/...` without a `.`) are ironlb's own records (allocations, the controller's election), never
//! objects.

use ironlb_api::{Kind, ObjectKey, ObjectRef};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/ironlb/";

/// A key prefix that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key prefix {prefix:?}: {reason}")]
pub struct PrefixError {
    /// The prefix as given.
    pub prefix: String,
    /// Why it is refused.
    pub reason: &'static str,
}

/// The key layout under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

impl Layout {
    /// The layout under `prefix`, which must start and end with `/` (so that one fleet's keys are never a prefix
    /// of another's: `/a/` and `/ab/` are disjoint, `/a` and `/ab` are not).
    pub fn new(prefix: &str) -> Result<Layout, PrefixError> {
        let bad = |reason| PrefixError {
            prefix: prefix.to_string(),
            reason,
        };
        if !prefix.starts_with('/') || !prefix.ends_with('/') {
            return Err(bad("must start and end with '/' (e.g. /ironlb/)"));
        }
        if prefix.chars().any(|c| c.is_control()) {
            return Err(bad("must not contain control characters"));
        }
        Ok(Layout {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The API group of a kind (`networking.ironcore.dev`), the apiVersion without its version.
    pub fn group(kind: Kind) -> &'static str {
        let v = kind.api_version();
        v.split_once('/').map_or(v, |(g, _)| g)
    }

    /// The key of one object.
    pub fn object_key(&self, r: &ObjectRef) -> String {
        format!(
            "{}{}/{}/{}/{}",
            self.prefix,
            Self::group(r.kind),
            r.kind.as_str(),
            r.key.namespace,
            r.key.name
        )
    }

    /// The prefix of every object of `kind` (in every namespace).
    pub fn kind_prefix(&self, kind: Kind) -> String {
        format!("{}{}/{}/", self.prefix, Self::group(kind), kind.as_str())
    }

    /// The prefix of every object of `kind` in `namespace`.
    pub fn namespace_prefix(&self, kind: Kind, namespace: &str) -> String {
        format!("{}{namespace}/", self.kind_prefix(kind))
    }

    /// The prefix of ironlb's own records named `area` (e.g. `allocations`): `PREFIX_ironlb/<area>/`. The
    /// leading `_` keeps them apart from API groups, which are DNS names.
    pub fn record_prefix(&self, area: &str) -> String {
        format!("{}_ironlb/{area}/", self.prefix)
    }

    /// The key of a LoadBalancer's allocation record ([`crate::alloc`]).
    pub fn allocation_key(&self, lb: &ObjectKey) -> String {
        format!(
            "{}{}/{}",
            self.record_prefix(crate::alloc::AREA),
            lb.namespace,
            lb.name
        )
    }

    /// The LoadBalancer whose allocation record `key` is, if it is one.
    pub fn parse_allocation_key(&self, key: &str) -> Option<ObjectKey> {
        let rest = key.strip_prefix(&self.record_prefix(crate::alloc::AREA))?;
        let (namespace, name) = rest.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| ObjectKey::new(namespace, name))
    }

    /// The object a key names, if it is an object key of this layout.
    pub fn parse_key(&self, key: &str) -> Option<ObjectRef> {
        let rest = key.strip_prefix(&self.prefix)?;
        let mut parts = rest.split('/');
        let (group, kind, namespace, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || namespace.is_empty() || name.is_empty() {
            return None;
        }
        let kind = Kind::from_name(kind).filter(|k| Self::group(*k) == group)?;
        Some(ObjectRef {
            kind,
            key: ObjectKey::new(namespace, name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let l = Layout::default();
        for kind in Kind::ALL {
            let r = ObjectRef::new(kind, "default", "web.a");
            let k = l.object_key(&r);
            assert!(k.starts_with(&l.kind_prefix(kind)), "{k}");
            assert!(k.starts_with(&l.namespace_prefix(kind, "default")), "{k}");
            assert_eq!(l.parse_key(&k), Some(r));
        }
        assert_eq!(
            l.object_key(&ObjectRef::new(Kind::LoadBalancer, "default", "web")),
            "/ironlb/networking.ironcore.dev/LoadBalancer/default/web"
        );
        assert_eq!(
            l.object_key(&ObjectRef::new(Kind::Prefix, "ns", "p")),
            "/ironlb/ipam.ironcore.dev/Prefix/ns/p"
        );
    }

    #[test]
    fn foreign_keys_are_not_objects() {
        let l = Layout::new("/fleet-a/").unwrap();
        for k in [
            "/ironlb/networking.ironcore.dev/LoadBalancer/default/web",
            "/fleet-a/networking.ironcore.dev/LoadBalancer/default",
            "/fleet-a/networking.ironcore.dev/LoadBalancer/default/web/x",
            "/fleet-a/ipam.ironcore.dev/LoadBalancer/default/web",
            "/fleet-a/networking.ironcore.dev/Bogus/default/web",
            "/fleet-a/_ironlb/allocations/x/y",
            "/fleet-a/networking.ironcore.dev/LoadBalancer//web",
        ] {
            assert_eq!(l.parse_key(k), None, "{k}");
        }
        assert!(l.record_prefix("allocations").starts_with("/fleet-a/_ironlb/"));
        let lb = ObjectKey::new("default", "web");
        let k = l.allocation_key(&lb);
        assert_eq!(k, "/fleet-a/_ironlb/allocations/default/web");
        assert_eq!(l.parse_allocation_key(&k), Some(lb));
        assert_eq!(l.parse_key(&k), None);
        assert_eq!(
            l.parse_allocation_key("/fleet-a/_ironlb/allocations/default/web/x"),
            None
        );
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(Layout::new("/a/").is_ok());
        for p in ["", "a/", "/a", "/a\n/"] {
            assert!(Layout::new(p).is_err(), "{p:?}");
        }
    }
}
