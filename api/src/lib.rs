//! IronCore LoadBalancer API objects as ironlb reads them, with no device dependency:
//!
//! - [`types`]: the serde types of the objects (`networking.ironcore.dev/v1alpha1`, `ipam.ironcore.dev/v1alpha1`)
//!   and their typed identities ([`ObjectKey`], [`ObjectRef`]);
//! - [`load`]: YAML manifests → objects, with a [`load::LoadError`] per document that does not load (file,
//!   document, line, object); [`read`] reads one manifest file safely;
//! - [`validate`]: every rule ironlb needs before programming a device, one error per problem naming file, object
//!   and field;
//! - [`defaults`]: upstream's defaulting applied on load (port protocol, ipFamilies, a Network's VNI from its
//!   providerID);
//! - [`schema`]: the fields ironlb knows (seeds' and upstream's), so that no unknown field is ignored silently;
//! - [`routing`]: the `LoadBalancerRouting` a selector gives;
//! - [`printable`]: escaping of manifest text for messages.
//!
//! Loading and validation are separate steps: a source of objects other than files (a cluster store) produces
//! [`types::Object`]s and validates them the same way.
#![forbid(unsafe_code)]

pub mod defaults;
pub mod load;
pub mod printable;
pub mod read;
pub mod routing;
pub mod schema;
pub mod types;
pub mod validate;

pub use types::{DocumentId, Kind, Object, ObjectKey, ObjectRef};
