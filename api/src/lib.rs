//! IronCore LoadBalancer API objects as ironlb reads them, with no device dependency:
//!
//! - [`types`]: the serde types of the objects (`networking.ironcore.dev/v1alpha1`, `ipam.ironcore.dev/v1alpha1`)
//!   and their typed identities ([`ObjectKey`], [`ObjectRef`]);
//! - [`load`]: YAML manifests → objects, with a [`load::LoadError`] per document that does not load (file,
//!   document, line, object); [`read`] reads one manifest file safely;
//! - [`validate`]: every rule ironlb needs before programming a device, one error per problem naming file, object
//!   and field;
//! - [`printable`]: escaping of manifest text for messages.
//!
//! Loading and validation are separate steps: a source of objects other than files (a cluster store) produces
//! [`types::Object`]s and validates them the same way.
#![forbid(unsafe_code)]

pub mod load;
pub mod printable;
pub mod read;
pub mod types;
pub mod validate;

pub use types::{DocumentId, Kind, Object, ObjectKey, ObjectRef};
