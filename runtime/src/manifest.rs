//! Loading IronCore manifests (issue 5 §2): YAML files with one or more documents (`---`), each dispatched on
//! `apiVersion` + `kind` into an [`Object`].
//!
//! Every problem becomes a [`LoadError`] naming the file, the document (1-based, counting non-empty documents),
//! the line when known, and the object (`Kind namespace/name`) when known. A bad document never hides the good
//! ones: loading always goes on with the next document and the next file.
//!
//! Documents are split at lines that start with `---` (or are `...`) so that line numbers stay exact; a `---` at
//! the start of a line inside a multi-line quoted scalar is therefore not supported.

use crate::api::{
    DocumentId, Kind, LoadBalancer, LoadBalancerRouting, Network, NetworkInterface, Object, ObjectKey, Prefix,
};
use crate::printable::printable;
use crate::source::{FileError, Snapshot, SourceFile};
use crate::store::FileChange;
use serde::de::DeserializeOwned;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loaded objects with the file each came from.
pub type Loaded = Vec<(PathBuf, Object)>;

/// A file, document or object that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub file: PathBuf,
    /// 1-based document index in the file, when the error is about a document.
    pub document: Option<usize>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// `Kind namespace/name` (or as much as is known), when known.
    pub object: Option<DocumentId>,
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
        if let Some(l) = self.line {
            write!(f, ", line {l}")?;
        }
        if let Some(o) = &self.object {
            write!(f, ": {}", printable(&o.to_string()))?;
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
            line: None,
            object: None,
            message: message.into(),
        }
    }
}

/// Loads `path`: a file, or every manifest file directly in a directory (sorted by name, not recursive): the
/// names [`crate::source::dir::is_manifest_name`] accepts, the same files the daemon's watcher reads.
pub fn load_dir(path: impl AsRef<Path>) -> (Loaded, Vec<LoadError>) {
    let path = path.as_ref();
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let io_err = |e: std::io::Error| LoadError::whole_file(path, e.to_string());
    if !path.is_dir() {
        return load_file(path);
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => return (objects, vec![io_err(e)]),
    };
    let mut files = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let p = entry.path();
                // The watcher's rule, so `validate`, `run --once` and the daemon read the same files. Special files
                // are passed on so that reading them reports what they are (a directory is skipped).
                if crate::source::dir::is_manifest_name(&p) && p.exists() && !p.is_dir() {
                    files.push(p);
                }
            }
            Err(e) => errors.push(io_err(e)),
        }
    }
    files.sort();
    for f in files {
        let (o, e) = load_file(&f);
        objects.extend(o);
        errors.extend(e);
    }
    (objects, errors)
}

/// Loads every file of a [`Snapshot`] (a source's last good content), in origin order.
pub fn load_snapshot(snap: &Snapshot) -> (Loaded, Vec<LoadError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (path, f) in &snap.files {
        let (o, e) = load_bytes(path, &f.bytes);
        objects.extend(o);
        errors.extend(e);
    }
    (objects, errors)
}

/// Loads a file's content (UTF-8 YAML) as if read from `path`.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> (Loaded, Vec<LoadError>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => load_str(path, text),
        Err(e) => (
            Vec::new(),
            vec![LoadError::whole_file(path, format!("not UTF-8: {e}"))],
        ),
    }
}

/// Turns source snapshots into the [`FileChange`]s since the previous snapshot, parsing only files whose content
/// changed (the daemon's path: a manifest edit re-parses one file, not the directory).
///
/// A file's load errors include its source error (the file does not parse as YAML; its last good content, if
/// any, is still loaded), so a broken file is a change too.
#[derive(Debug, Default)]
pub struct LoadCache {
    files: BTreeMap<PathBuf, CachedFile>,
}

#[derive(Debug)]
struct CachedFile {
    content: Option<Arc<SourceFile>>,
    source_error: Option<FileError>,
    /// The objects of `content`'s documents, one per document, when they all loaded.
    objects: Option<Loaded>,
}

impl LoadCache {
    /// What changed in `snap` since the previous call (everything on the first call).
    pub fn changes(&mut self, snap: &Snapshot) -> Vec<FileChange> {
        let mut errors: BTreeMap<&PathBuf, &FileError> = BTreeMap::new();
        for e in &snap.errors {
            errors.insert(&e.path, e);
        }
        let paths: BTreeSet<&PathBuf> = snap.files.keys().chain(errors.keys().copied()).collect();
        let mut out = Vec::new();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !paths.contains(p))
            .cloned()
            .collect();
        for p in gone {
            self.files.remove(&p);
            out.push(FileChange {
                path: p,
                content: None,
            });
        }
        for path in paths {
            let content = snap.files.get(path);
            let source_error = errors.get(path).copied();
            let same = self.files.get(path).is_some_and(|c| {
                let same_content = match (&c.content, content) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.bytes == b.bytes,
                    (None, None) => true,
                    _ => false,
                };
                same_content && c.source_error.as_ref() == source_error
            });
            if same {
                continue;
            }
            let previous = self
                .files
                .get(path)
                .and_then(|c| Some((c.content.as_ref()?, c.objects.as_ref()?)));
            let parsed = content.and_then(|f| load_parsed(path, f, previous));
            let (objects, mut errs) = match (content, &parsed) {
                (Some(_), Some(objects)) => (objects.clone(), Vec::new()),
                (Some(f), None) => load_bytes(path, &f.bytes),
                (None, _) => (Vec::new(), Vec::new()),
            };
            // A file that does not parse (and has no last good content) must protect what it may hold.
            errs.extend(source_error.map(|e| LoadError {
                line: e.line,
                ..LoadError::whole_file(&e.path, e.message.clone())
            }));
            self.files.insert(
                path.clone(),
                CachedFile {
                    content: content.cloned(),
                    source_error: source_error.cloned(),
                    objects: parsed,
                },
            );
            out.push(FileChange {
                path: path.clone(),
                content: Some((objects, errs)),
            });
        }
        out
    }
}

/// Loads one file.
pub fn load_file(path: impl AsRef<Path>) -> (Loaded, Vec<LoadError>) {
    let path = path.as_ref();
    match crate::source::read::read_manifest(path) {
        Ok(bytes) => load_bytes(path, &bytes),
        Err(e) => (Vec::new(), vec![LoadError::whole_file(path, e.to_string())]),
    }
}

/// Loads YAML text as if read from `file` (used in errors).
pub fn load_str(file: impl AsRef<Path>, text: &str) -> (Loaded, Vec<LoadError>) {
    let file = file.as_ref();
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (index, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        match load_document(&doc) {
            Ok(o) => objects.push((file.to_path_buf(), o)),
            Err((line, object, message)) => errors.push(LoadError {
                file: file.to_path_buf(),
                document: Some(index + 1),
                line: line.map(|l| l + first_line - 1),
                object,
                message,
            }),
        }
    }
    (objects, errors)
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

type DocError = (Option<usize>, Option<DocumentId>, String);

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

fn load_document(doc: &str) -> Result<Object, DocError> {
    let value: Value = serde_norway::from_str(doc).map_err(|e| {
        let (line, msg) = yaml_error(&e);
        (line, None, format!("invalid YAML: {msg}"))
    })?;
    object_from_value(&value, Some(doc))
}

/// The object a parsed document describes. `doc`, its text, is parsed again only when the tree does not fit the
/// kind's schema, to give the error's line; without it the error has no line.
fn object_from_value(value: &Value, doc: Option<&str>) -> Result<Object, DocError> {
    if !value.is_mapping() {
        return Err((None, None, "expected a mapping with apiVersion and kind".into()));
    }
    let api_version = str_field(value, &["apiVersion"]);
    let kind = str_field(value, &["kind"]);
    let name = str_field(value, &["metadata", "name"]);
    let namespace = str_field(value, &["metadata", "namespace"]).unwrap_or(crate::api::DEFAULT_NAMESPACE);
    let object = kind.map(|k| DocumentId::new(k, name.map(|n| ObjectKey::new(namespace, n))));
    let (Some(api_version), Some(kind_str)) = (api_version, kind) else {
        let missing = if api_version.is_none() {
            "apiVersion"
        } else {
            "kind"
        };
        return Err((None, object, format!("missing {missing}")));
    };
    let Some(kind) = Kind::from_type_meta(api_version, kind_str) else {
        return Err((
            None,
            object,
            format!("unsupported apiVersion/kind {api_version}/{kind_str}"),
        ));
    };
    fn parse<T: DeserializeOwned>(
        value: &Value,
        doc: Option<&str>,
        object: &Option<DocumentId>,
    ) -> Result<T, DocError> {
        T::deserialize(value).or_else(|e| {
            let (line, msg) = match doc {
                Some(doc) => match serde_norway::from_str::<T>(doc) {
                    Ok(t) => return Ok(t),
                    Err(e) => yaml_error(&e),
                },
                None => yaml_error(&e),
            };
            Err((line, object.clone(), msg))
        })
    }
    Ok(match kind {
        Kind::LoadBalancer => Object::LoadBalancer(parse::<LoadBalancer>(value, doc, &object)?),
        Kind::LoadBalancerRouting => {
            Object::LoadBalancerRouting(parse::<LoadBalancerRouting>(value, doc, &object)?)
        }
        Kind::Network => Object::Network(parse::<Network>(value, doc, &object)?),
        Kind::NetworkInterface => Object::NetworkInterface(parse::<NetworkInterface>(value, doc, &object)?),
        Kind::Prefix => Object::Prefix(parse::<Prefix>(value, doc, &object)?),
    })
}

/// True when two parsed documents are the same tree with their mapping keys in the same order. Walks both in order
/// (no hashing, unlike `Value`'s equality); a mapping written in another order counts as different, which only
/// costs a conversion.
fn same_tree(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| same_tree(ka, kb) && same_tree(va, vb))
        }
        (Value::Sequence(x), Value::Sequence(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_tree(p, q))
        }
        _ => a == b,
    }
}

/// A source file's objects from the documents the source already parsed (no second YAML parse), reusing the
/// object of a document equal to the one at the same place in `previous` (content and its objects); `None` when a
/// document does not load, so that the caller loads the text for errors with document numbers and lines.
fn load_parsed(path: &Path, f: &SourceFile, previous: Option<(&Arc<SourceFile>, &Loaded)>) -> Option<Loaded> {
    f.documents
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let same = previous.and_then(|(c, o)| {
                c.documents
                    .get(i)
                    .is_some_and(|p| same_tree(p, v))
                    .then(|| o.get(i))
                    .flatten()
            });
            match same {
                Some(o) => Some(o.clone()),
                None => object_from_value(v, None).ok().map(|o| (path.to_path_buf(), o)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_tree_is_equality_in_order() {
        let v = |t: &str| serde_norway::from_str::<Value>(t).unwrap();
        let a = v("{a: 1, b: [x, {c: true}], d: null}");
        assert!(same_tree(&a, &v("{a: 1, b: [x, {c: true}], d: null}")));
        assert!(!same_tree(&a, &v("{a: 1, b: [x, {c: false}], d: null}")));
        assert!(!same_tree(&a, &v("{a: 1, b: [x], d: null}")));
        assert!(!same_tree(&a, &v("{a: 2, b: [x, {c: true}], d: null}")));
        assert!(!same_tree(&a, &v("{a: 1, b: [x, {c: true}]}")));
        // Another key order is equal as a Value, but counts as different here (a conversion, not an error).
        let reordered = v("{b: [x, {c: true}], a: 1, d: null}");
        assert_eq!(a, reordered);
        assert!(!same_tree(&a, &reordered));
    }

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
