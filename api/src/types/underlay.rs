//! `ironlb.dev/v1alpha1` `NodeUnderlay`: ironlb's own kind, the underlay address of a node (a host serving
//! network interfaces), for interfaces that do not carry `status.underlayAddress` (upstream's never do).
//!
//! A NetworkInterface whose `spec.providerID` is `ironcore-net://<namespace>/<name>/<node>/<uid>` is served by
//! the node `<node>`; the NodeUnderlay named `<node>` gives that node's IPv6 underlay address. Cluster-scoped, as
//! nodes are: `metadata.namespace` is not allowed. docs/api.md, "Underlay addresses".

use super::meta::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The underlay address of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUnderlay {
    /// Metadata; `name` is the node's name as it appears in interfaces' `spec.providerID`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: NodeUnderlaySpec,
}

/// `NodeUnderlay.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeUnderlaySpec {
    /// The node's IPv6 underlay address (required; checked by validation as `status.underlayAddress` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_address: Option<String>,
}
