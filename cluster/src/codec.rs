//! Objects as the JSON values stored in etcd (docs/cluster.md "Key layout").
//!
//! The value of an object key is the object as ironlb reads it — `apiVersion`, `kind`, `metadata`, and the kind's
//! fields — serialized from the typed object, so what is stored is exactly what was validated, with upstream's
//! defaults applied (as an API server stores defaulted objects). Fields ironlb does not read (annotations,
//! managedFields, ...) are not stored. `metadata.resourceVersion` is never stored: it is the key's `mod_revision`,
//! added when an object is shown ([`with_resource_version`]).

use ironlb_api::load::{parse_document, DocumentError};
use ironlb_api::{Kind, Object};
use serde_json::{Map, Value};

/// A stored value that is not an object ironlb reads.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON, but not an object ironlb reads (unknown kind, a field of the wrong type, an unknown field).
    #[error("{}{}", .0.object.as_ref().map(|o| format!("{o}: ")).unwrap_or_default(), .0.message)]
    Object(DocumentError),
}

/// The JSON value stored for `object`.
pub fn to_json(object: &Object) -> Value {
    let body = match object {
        Object::LoadBalancer(o) => serde_json::to_value(o),
        Object::LoadBalancerRouting(o) => serde_json::to_value(o),
        Object::Network(o) => serde_json::to_value(o),
        Object::NetworkInterface(o) => serde_json::to_value(o),
        Object::Prefix(o) => serde_json::to_value(o),
        Object::NodeUnderlay(o) => serde_json::to_value(o),
    }
    .expect("API types serialize to JSON");
    let kind = object.kind();
    let mut out = Map::new();
    out.insert("apiVersion".into(), kind.api_version().into());
    out.insert("kind".into(), kind.as_str().into());
    if let Value::Object(fields) = body {
        out.extend(fields);
    }
    Value::Object(out)
}

/// The bytes stored for `object`.
pub fn encode(object: &Object) -> Vec<u8> {
    serde_json::to_vec(&to_json(object)).expect("a JSON value serializes")
}

/// The object stored as `bytes`, checked as strictly as a manifest (an unknown field is an error).
pub fn decode(bytes: &[u8]) -> Result<Object, DecodeError> {
    // Straight from the JSON text to the value the manifest loader reads, with no `serde_json::Value` in between:
    // 12,000 decodes took 85–92 ms with that detour and take 65–79 ms without it (release build).
    let document: serde_norway::Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    parse_document(&document).map_err(DecodeError::Object)
}

/// A JSON value as the YAML value the manifest loader reads.
pub fn to_yaml_value(json: &Value) -> serde_norway::Value {
    serde_norway::to_value(json).expect("a JSON value is a YAML value")
}

/// `object`'s JSON with `metadata.resourceVersion` set to `revision` (what `ironlb get` shows).
pub fn with_resource_version(object: &Object, revision: i64) -> Value {
    let mut v = to_json(object);
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.insert("resourceVersion".into(), revision.to_string().into());
    }
    v
}

/// The `metadata.resourceVersion` written in a raw manifest document, if any: a string or a number of digits.
pub fn resource_version_of(document: &serde_norway::Value) -> Option<Result<i64, String>> {
    let v = document.get("metadata")?.get("resourceVersion")?;
    let parsed = match v {
        serde_norway::Value::String(s) => s.parse::<i64>().ok(),
        serde_norway::Value::Number(n) => n.as_i64(),
        _ => None,
    };
    Some(
        parsed
            .filter(|r| *r >= 0)
            .ok_or_else(|| format!("{v:?} is not a resourceVersion (a revision number)")),
    )
}

/// The kind a stored JSON value says it is (for a message about a value that does not decode).
pub fn kind_of(bytes: &[u8]) -> Option<Kind> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    Kind::from_type_meta(v.get("apiVersion")?.as_str()?, v.get("kind")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironlb_api::load::load_dir;

    fn examples() -> Vec<Object> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
        let (objects, errors) = load_dir(dir);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(objects.len() > 5);
        objects.into_iter().map(|(_, o)| o).collect()
    }

    #[test]
    fn every_example_round_trips() {
        for o in examples() {
            let bytes = encode(&o);
            assert_eq!(
                decode(&bytes).as_ref(),
                Ok(&o),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            assert_eq!(kind_of(&bytes), Some(o.kind()));
            // Encoding is deterministic: equal objects are equal bytes on every host.
            assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
        }
    }

    #[test]
    fn shown_objects_carry_their_revision() {
        let o = examples().remove(0);
        let v = with_resource_version(&o, 42);
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        let y = to_yaml_value(&v);
        assert_eq!(resource_version_of(&y), Some(Ok(42)));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(matches!(decode(b"{"), Err(DecodeError::Json(_))));
        let e = decode(br#"{"apiVersion":"networking.ironcore.dev/v1alpha1","kind":"Network","metadata":{"name":"n"},"spec":{"bogus":1}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("spec.bogus"), "{e}");
        let e = decode(br#"{"apiVersion":"v9","kind":"Network"}"#).unwrap_err();
        assert!(e.to_string().contains("unsupported"), "{e}");
    }
}
