//! Target `manifest`: arbitrary bytes as a manifest file, through loading (YAML documents → typed objects,
//! runtime/src/manifest.rs) and validation (runtime/src/validate.rs), the path every file the daemon watches takes.
//!
//! What every input must satisfy:
//! * no panic: each document becomes an object or a [`LoadError`], each object is valid or gets a
//!   [`ValidationError`];
//! * every error names where it is: this file, a 1-based document and a line inside the file when given, the
//!   object for a validation error, and a non-empty message;
//! * validation is stable: the objects found valid, validated again on their own, are all valid (a valid object
//!   never depended on one that was rejected).

use ironlb_runtime::manifest::{load_bytes, LoadError};
use ironlb_runtime::validate::{validate, ValidationError};
use std::path::Path;

/// The file name errors are reported against.
pub const FILE: &str = "fuzz.yaml";

/// The harness (see the module documentation).
pub fn run(data: &[u8]) {
    let file = Path::new(FILE);
    let (objects, load_errors) = load_bytes(file, data);
    // The parser reports the end of input on the line after the last one (after the last break, or a forced new
    // line when the file does not end with one).
    let lines = yaml_line_breaks(data) + 2;
    for e in &load_errors {
        check_load_error(e, file, lines);
    }
    let (valid, errors) = validate(&objects);
    assert!(valid.len() <= objects.len(), "validation invented objects");
    for e in &errors {
        check_validation_error(e, file);
    }
    assert!(
        valid.len() == objects.len() || !errors.is_empty(),
        "objects rejected without an error"
    );
    let (again, errors) = validate(&valid);
    assert_eq!(
        again.len(),
        valid.len(),
        "valid objects rejected when validated again: {errors:?}"
    );
    assert!(
        errors.is_empty(),
        "valid objects have errors when validated again: {errors:?}"
    );
}

/// Line breaks as YAML 1.1 counts them (what the parser's error locations count): `\r\n` (one), `\r`, `\n`, and
/// in UTF-8 text NEL, LS and PS.
fn yaml_line_breaks(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0; // not UTF-8: one whole-file error without a line
    };
    let breaks = text
        .matches(['\r', '\n', '\u{85}', '\u{2028}', '\u{2029}'])
        .count();
    breaks - text.matches("\r\n").count()
}

fn check_load_error(e: &LoadError, file: &Path, lines: usize) {
    assert_eq!(e.file, file, "load error names another file");
    assert!(!e.message.is_empty(), "load error without a message");
    if let Some(d) = e.document {
        assert!(d >= 1, "document numbers are 1-based: {e}");
    }
    if let Some(l) = e.line {
        assert!(
            (1..=lines).contains(&l),
            "line {l} outside the file's {lines} lines: {e}"
        );
    }
    assert!(!e.to_string().is_empty());
}

fn check_validation_error(e: &ValidationError, file: &Path) {
    assert_eq!(e.file, file, "validation error names another file");
    // The object is a typed `ObjectRef`: always present.
    assert!(!e.message.is_empty(), "validation error without a message: {e}");
}
