//! Loading IronCore manifests (issue 5 §2): YAML files with one or more documents (`---`), each dispatched on
//! `apiVersion` + `kind` into an [`Object`].
//!
//! Every problem becomes a [`LoadError`] naming the file, the document (1-based, counting non-empty documents),
//! the line when known, and the object (`Kind namespace/name`) when known. A bad document never hides the good
//! ones: loading always goes on with the next document and the next file.
//!
//! Documents are split at lines that start with `---` (or are `...`) so that line numbers stay exact; a `---` at
//! the start of a line inside a multi-line quoted scalar is therefore not supported.

use crate::printable::printable;
use crate::read::{is_manifest_name, read_manifest};
use crate::schema;
use crate::types::{
    DocumentId, Kind, LoadBalancer, LoadBalancerRouting, Network, NetworkInterface, NodeUnderlay, Object,
    ObjectKey, Prefix,
};
use serde::de::DeserializeOwned;
use serde_norway::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// Loaded objects with the file each came from.
pub type Loaded = Vec<(PathBuf, Object)>;

/// What a field no schema knows does to its object (issue 16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownFields {
    /// The object does not load: an error per unknown field (the default, as kubectl's strict field validation).
    #[default]
    Reject,
    /// The object loads; each unknown field is a warning (`--lenient`).
    Warn,
}

/// How to load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// What an unknown field does.
    pub unknown_fields: UnknownFields,
}

impl LoadOptions {
    /// Unknown fields are warnings.
    pub const LENIENT: LoadOptions = LoadOptions {
        unknown_fields: UnknownFields::Warn,
    };
}

/// The outcome of loading: the objects, the errors (each one an object or document that did not load), and the
/// warnings (unknown fields under [`UnknownFields::Warn`]; their objects loaded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Loaded objects.
    pub objects: Loaded,
    /// What did not load.
    pub errors: Vec<LoadError>,
    /// What loaded with a warning.
    pub warnings: Vec<LoadError>,
}

impl Report {
    fn extend(&mut self, other: Report) {
        self.objects.extend(other.objects);
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }

    fn error(e: LoadError) -> Report {
        Report {
            errors: vec![e],
            ..Report::default()
        }
    }

    /// Objects and errors (what strict loading, which has no warnings, returns).
    pub fn into_pair(self) -> (Loaded, Vec<LoadError>) {
        (self.objects, self.errors)
    }
}

/// A file, document or object that could not be loaded (or, as a warning, loaded with a field ironlb ignores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub file: PathBuf,
    /// 1-based document index in the file, when the error is about a document.
    pub document: Option<usize>,
    /// 0-based index in the `items` of a `kind: List` document, when the error is about one of its items.
    pub item: Option<usize>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// `Kind namespace/name` (or as much as is known), when known.
    pub object: Option<DocumentId>,
    /// The field path in the object (e.g. `spec.ports[0].endport`), when the error is about one field.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and messages come from the manifest: escaped, so they cannot forge output lines.
        write!(f, "{}", printable(&self.file.to_string_lossy()))?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(i) = self.item {
            write!(f, ", items[{i}]")?;
        }
        if let Some(l) = self.line {
            write!(f, ", line {l}")?;
        }
        if let Some(o) = &self.object {
            write!(f, ": {}", printable(&o.to_string()))?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {}", printable(field))?;
        }
        write!(f, ": {}", printable(&self.message))
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    /// A problem with a whole file (it cannot be read or decoded), not with one of its documents.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> LoadError {
        LoadError {
            file: file.to_path_buf(),
            document: None,
            item: None,
            line: None,
            object: None,
            field: None,
            message: message.into(),
        }
    }
}

/// Loads `path`: a file, or every manifest file directly in a directory (sorted by name, not recursive): the
/// names [`is_manifest_name`] accepts, the same files the daemon's watcher reads. Unknown fields are errors.
pub fn load_dir(path: impl AsRef<Path>) -> (Loaded, Vec<LoadError>) {
    load_dir_with(path, LoadOptions::default()).into_pair()
}

/// [`load_dir`] with options.
pub fn load_dir_with(path: impl AsRef<Path>, opts: LoadOptions) -> Report {
    let path = path.as_ref();
    let mut report = Report::default();
    let io_err = |e: std::io::Error| LoadError::whole_file(path, e.to_string());
    if !path.is_dir() {
        return load_file_with(path, opts);
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => return Report::error(io_err(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let p = entry.path();
                // The watcher's rule, so `validate`, `run --once` and the daemon read the same files. Special files
                // are passed on so that reading them reports what they are (a directory is skipped).
                if is_manifest_name(&p) && p.exists() && !p.is_dir() {
                    files.push(p);
                }
            }
            Err(e) => report.errors.push(io_err(e)),
        }
    }
    files.sort();
    for f in files {
        report.extend(load_file_with(&f, opts));
    }
    report
}

/// Loads a file's content (UTF-8 YAML) as if read from `path`. Unknown fields are errors.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> (Loaded, Vec<LoadError>) {
    load_bytes_with(path, bytes, LoadOptions::default()).into_pair()
}

/// [`load_bytes`] with options.
pub fn load_bytes_with(path: &Path, bytes: &[u8], opts: LoadOptions) -> Report {
    match std::str::from_utf8(bytes) {
        Ok(text) => load_str_with(path, text, opts),
        Err(e) => Report::error(LoadError::whole_file(path, format!("not UTF-8: {e}"))),
    }
}

/// Loads one file. Unknown fields are errors.
pub fn load_file(path: impl AsRef<Path>) -> (Loaded, Vec<LoadError>) {
    load_file_with(path, LoadOptions::default()).into_pair()
}

/// [`load_file`] with options.
pub fn load_file_with(path: impl AsRef<Path>, opts: LoadOptions) -> Report {
    let path = path.as_ref();
    match read_manifest(path) {
        Ok(bytes) => load_bytes_with(path, &bytes, opts),
        Err(e) => Report::error(LoadError::whole_file(path, e.to_string())),
    }
}

/// Loads YAML text as if read from `file` (used in errors). Unknown fields are errors.
pub fn load_str(file: impl AsRef<Path>, text: &str) -> (Loaded, Vec<LoadError>) {
    load_str_with(file, text, LoadOptions::default()).into_pair()
}

/// [`load_str`] with options.
pub fn load_str_with(file: impl AsRef<Path>, text: &str, opts: LoadOptions) -> Report {
    let file = file.as_ref();
    let mut report = Report::default();
    for (index, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        let out = load_document(&doc, opts);
        let located = |e: DocError| LoadError {
            file: file.to_path_buf(),
            document: Some(index + 1),
            item: e.item,
            line: e.line.map(|l| l + first_line - 1),
            object: e.object,
            field: e.field,
            message: e.message,
        };
        report
            .objects
            .extend(out.objects.into_iter().map(|o| (file.to_path_buf(), o)));
        report.errors.extend(out.errors.into_iter().map(located));
        report.warnings.extend(out.warnings.into_iter().map(located));
    }
    report
}

/// The lines of `text` as the YAML parser counts them, each with its line break (empty for the last line without
/// one): a break is `\r\n`, `\r`, `\n`, NEL, LS or PS (YAML 1.1 §4.1.4, what serde_norway's scanner implements).
/// Splitting only at `\n`, error lines of a file with other breaks pointed past its end, and a document whose lines
/// end in `\r` was one line: dropped as a comment when it started with `#`.
fn yaml_lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, after) = match rest.find(['\r', '\n', '\u{85}', '\u{2028}', '\u{2029}']) {
            None => (rest, ""),
            Some(i) => (&rest[..i], &rest[i..]),
        };
        let brk = if after.starts_with("\r\n") {
            2
        } else {
            after.chars().next().map_or(0, char::len_utf8)
        };
        rest = &after[brk..];
        Some((line, &after[..brk]))
    })
}

/// Splits into non-empty documents, each with its 1-based first line in the file. Document text keeps the file's
/// line breaks.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut flush = |current: &mut String, start: usize| {
        let empty = yaml_lines(current).all(|(l, _)| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || t.starts_with('%')
        });
        if !empty {
            docs.push((start, std::mem::take(current)));
        }
        current.clear();
    };
    for (i, (line, brk)) in yaml_lines(text).enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") || t.starts_with("---\t") || t == "..." {
            flush(&mut current, start);
            start = i + 2;
            // Content after `--- ` on the same line (e.g. `--- {a: 1}`) starts the document.
            if let Some(rest) = t
                .strip_prefix("---")
                .map(str::trim)
                .filter(|r| !r.is_empty() && !r.starts_with('#'))
            {
                start = i + 1;
                current.push_str(rest);
                current.push('\n');
            }
        } else {
            current.push_str(line);
            current.push_str(if brk.is_empty() { "\n" } else { brk });
        }
    }
    flush(&mut current, start);
    docs
}

/// A problem in one document, before it is placed in its file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct DocError {
    line: Option<usize>,
    item: Option<usize>,
    object: Option<DocumentId>,
    field: Option<String>,
    message: String,
}

impl DocError {
    fn new(line: Option<usize>, object: Option<DocumentId>, message: impl Into<String>) -> DocError {
        DocError {
            line,
            object,
            message: message.into(),
            ..DocError::default()
        }
    }
}

/// What one document holds: its objects (several for a `kind: List`), errors and warnings.
#[derive(Debug, Default)]
struct DocOutcome {
    objects: Vec<Object>,
    errors: Vec<DocError>,
    warnings: Vec<DocError>,
}

/// Why one document, already parsed as YAML, is not an object ironlb reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// The object, as much as is known.
    pub object: Option<DocumentId>,
    /// What is wrong.
    pub message: String,
}

/// The object a document already parsed as YAML describes (a source that parses documents itself, such as the
/// directory watcher, loads them without a second YAML parse). Strict: an unknown field is an error. A `kind: List`
/// document is an error here too (it holds several objects). The error has no line: load the document's text with
/// [`load_str`] for one, and for a List's objects.
pub fn parse_document(value: &Value) -> Result<Object, DocumentError> {
    if is_list(value) {
        return Err(DocumentError {
            object: None,
            message: "a List holds several objects: load its text".into(),
        });
    }
    let mut warnings = Vec::new();
    object_from_value(value, None, LoadOptions::default(), &mut warnings).map_err(|mut e| {
        let e = e.remove(0);
        DocumentError {
            object: e.object,
            message: match e.field {
                Some(f) => format!("{f}: {}", e.message),
                None => e.message,
            },
        }
    })
}

fn yaml_error(e: &serde_norway::Error) -> (Option<usize>, String) {
    let line = e.location().map(|l| l.line());
    let mut msg = e.to_string();
    // Drop serde_norway's " at line L column C" (relative to the document): the line is reported separately.
    while let Some(i) = msg.find(" at line ") {
        let rest = &msg[i..];
        let end = rest
            .find(" column ")
            .map(|c| c + " column ".len() + rest[c + 8..].chars().take_while(char::is_ascii_digit).count())
            .unwrap_or(rest.len());
        msg.replace_range(i..i + end, "");
    }
    (line, msg)
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str()
}

/// A `kind: List` (what `kubectl get -o yaml` prints) or a typed list (`LoadBalancerList`, what the API returns).
fn is_list(value: &Value) -> bool {
    match (str_field(value, &["apiVersion"]), str_field(value, &["kind"])) {
        (Some("v1"), Some("List")) => true,
        (Some(v), Some(k)) => k
            .strip_suffix("List")
            .and_then(|k| Kind::from_type_meta(v, k))
            .is_some(),
        _ => false,
    }
}

fn load_document(doc: &str, opts: LoadOptions) -> DocOutcome {
    let mut out = DocOutcome::default();
    let value: Value = match serde_norway::from_str(doc) {
        Ok(v) => v,
        Err(e) => {
            let (line, msg) = yaml_error(&e);
            out.errors
                .push(DocError::new(line, None, format!("invalid YAML: {msg}")));
            return out;
        }
    };
    if !is_list(&value) {
        match object_from_value(&value, Some(doc), opts, &mut out.warnings) {
            Ok(o) => out.objects.push(o),
            Err(e) => out.errors.extend(e),
        }
        return out;
    }
    let unknown = schema::unknown_list_fields(&value)
        .into_iter()
        .map(|u| unknown_field_error(doc, None, u));
    match opts.unknown_fields {
        UnknownFields::Reject => out.errors.extend(unknown),
        UnknownFields::Warn => out.warnings.extend(unknown),
    }
    let items = match value.get("items") {
        None | Some(Value::Null) => return out,
        Some(Value::Sequence(items)) => items,
        Some(_) => {
            out.errors.push(DocError {
                field: Some("items".into()),
                ..DocError::new(None, None, "expected a sequence of objects")
            });
            return out;
        }
    };
    for (j, item) in items.iter().enumerate() {
        let mut warnings = Vec::new();
        // No text per item: an item's conversion error has no line (its unknown fields may).
        let r = object_from_value(item, None, opts, &mut warnings);
        let at_item = |e: DocError| DocError { item: Some(j), ..e };
        out.warnings.extend(warnings.into_iter().map(at_item));
        match r {
            Ok(o) => out.objects.push(o),
            Err(e) => out.errors.extend(e.into_iter().map(at_item)),
        }
    }
    out
}

/// The line of `doc` (1-based) where the field named last in `path` is written, when exactly one line of `doc` is
/// a mapping entry of that name; otherwise unknown.
fn field_line(doc: &str, path: &str) -> Option<usize> {
    let name = path.rsplit(['.', ']']).next().filter(|n| !n.is_empty())?;
    let mut found = None;
    for (i, (line, _)) in yaml_lines(doc).enumerate() {
        let t = line.trim_start().trim_start_matches("- ").trim_start();
        let t = t.trim_start_matches(['{', ' ']);
        let hit = t
            .strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
            || line.contains(&format!("{{{name}:"))
            || line.contains(&format!(", {name}:"));
        if hit {
            if found.is_some() {
                return None;
            }
            found = Some(i + 1);
        }
    }
    found
}

fn unknown_field_error(doc: &str, object: Option<DocumentId>, u: schema::UnknownField) -> DocError {
    let message = match u.suggestion {
        Some(s) => format!("unknown field (did you mean {s}?)"),
        None => "unknown field".to_string(),
    };
    DocError {
        line: field_line(doc, &u.path),
        item: None,
        object,
        field: Some(u.path),
        message,
    }
}

/// The object a parsed document describes. `doc`, its text, is parsed again only when the tree does not fit the
/// kind's schema, to give the error's line; without it the error has no line. Unknown fields are errors
/// (returned, one each) or warnings (pushed to `warnings`) as `opts` says.
fn object_from_value(
    value: &Value,
    doc: Option<&str>,
    opts: LoadOptions,
    warnings: &mut Vec<DocError>,
) -> Result<Object, Vec<DocError>> {
    if !value.is_mapping() {
        return Err(vec![DocError::new(
            None,
            None,
            "expected a mapping with apiVersion and kind",
        )]);
    }
    let api_version = str_field(value, &["apiVersion"]);
    let kind = str_field(value, &["kind"]);
    let name = str_field(value, &["metadata", "name"]);
    let namespace = str_field(value, &["metadata", "namespace"]).unwrap_or(crate::types::DEFAULT_NAMESPACE);
    let object = kind.map(|k| DocumentId::new(k, name.map(|n| ObjectKey::new(namespace, n))));
    let (Some(api_version), Some(kind_str)) = (api_version, kind) else {
        let missing = if api_version.is_none() {
            "apiVersion"
        } else {
            "kind"
        };
        return Err(vec![DocError::new(None, object, format!("missing {missing}"))]);
    };
    let Some(kind) = Kind::from_type_meta(api_version, kind_str) else {
        return Err(vec![DocError::new(
            None,
            object,
            format!("unsupported apiVersion/kind {api_version}/{kind_str}"),
        )]);
    };
    let unknown: Vec<DocError> = schema::unknown_fields(kind, value)
        .into_iter()
        .map(|u| unknown_field_error(doc.unwrap_or(""), object.clone(), u))
        .collect();
    if !unknown.is_empty() {
        match opts.unknown_fields {
            UnknownFields::Reject => return Err(unknown),
            UnknownFields::Warn => warnings.extend(unknown),
        }
    }
    fn parse<T: DeserializeOwned>(
        value: &Value,
        doc: Option<&str>,
        object: &Option<DocumentId>,
    ) -> Result<T, Vec<DocError>> {
        T::deserialize(value).or_else(|e| {
            let (line, msg) = match doc {
                Some(doc) => match serde_norway::from_str::<T>(doc) {
                    Ok(t) => return Ok(t),
                    Err(e) => yaml_error(&e),
                },
                None => yaml_error(&e),
            };
            Err(vec![DocError::new(line, object.clone(), msg)])
        })
    }
    let mut o = match kind {
        Kind::LoadBalancer => Object::LoadBalancer(parse::<LoadBalancer>(value, doc, &object)?),
        Kind::LoadBalancerRouting => {
            Object::LoadBalancerRouting(parse::<LoadBalancerRouting>(value, doc, &object)?)
        }
        Kind::Network => Object::Network(parse::<Network>(value, doc, &object)?),
        Kind::NetworkInterface => Object::NetworkInterface(parse::<NetworkInterface>(value, doc, &object)?),
        Kind::Prefix => Object::Prefix(parse::<Prefix>(value, doc, &object)?),
        Kind::NodeUnderlay => Object::NodeUnderlay(parse::<NodeUnderlay>(value, doc, &object)?),
    };
    crate::defaults::apply(&mut o);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_with_lines() {
        let d = split_documents("# c\n---\na: 1\n---\n\n---\nb: 2\n...\n");
        assert_eq!(d, vec![(3, "a: 1\n".to_string()), (7, "b: 2\n".to_string())]);
    }

    /// Found by the `manifest` fuzz target (fuzz/regressions/manifest/): lines end wherever the YAML parser says.
    #[test]
    fn splits_at_every_yaml_line_break() {
        let d = split_documents("# c\r---\r\na: 1\rb: [\u{85}2]\r---\u{2028}# only\u{2029}c: 3");
        assert_eq!(
            d,
            vec![
                (3, "a: 1\rb: [\u{85}2]\r".to_string()),
                (7, "# only\u{2029}c: 3\n".to_string())
            ]
        );
        // An error's line is the file's line, counted as the parser counts.
        let (_, errors) = load_str("f.yaml", "a: 1\r---\rb: 1\r  c: 2\rd: 3\r");
        let e = errors
            .iter()
            .find(|e| e.document == Some(2))
            .expect("an error in document 2");
        assert_eq!(e.line, Some(4), "{e}");
    }
}
