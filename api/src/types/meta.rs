//! Object metadata and references.

use super::ObjectKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The namespace of an object whose `metadata.namespace` is not set (as `kubectl apply` would place it).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The part of Kubernetes `ObjectMeta` ironlb reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Namespace; [`DEFAULT_NAMESPACE`] when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name (required; checked by validation).
    #[serde(default)]
    pub name: String,
    /// Unique id assigned by the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// The effective namespace.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// `namespace/name`.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(self.namespace(), self.name.clone())
    }
}

/// A reference to an object by name in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalObjectReference {
    /// Name of the referenced object.
    #[serde(default)]
    pub name: String,
}

/// A reference by name, and optionally uid, in the same namespace (upstream's `commonv1alpha1.LocalUIDReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalUidReference {
    /// Name of the referenced object.
    #[serde(default)]
    pub name: String,
    /// Its UID; when set, it must match the object's `metadata.uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl LocalUidReference {
    /// The reference by name only.
    pub fn by_name(&self) -> LocalObjectReference {
        LocalObjectReference {
            name: self.name.clone(),
        }
    }
}
