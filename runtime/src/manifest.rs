//! Loading the manifests of a [`Snapshot`] (the directory source's last good content) into [`FileChange`]s for the
//! reconciler. Loading itself (documents → typed objects, [`LoadError`]s naming file, document, line and object) is
//! `ironlb_api::load`, re-exported here.

pub use ironlb_api::load::{
    load_bytes, load_bytes_with, load_dir, load_dir_with, load_file, load_file_with, load_str, load_str_with,
    parse_document, DocumentError, LoadError, LoadOptions, Loaded, Report, UnknownFields,
};

use crate::source::{FileError, Snapshot, SourceFile};
use crate::store::FileChange;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Turns source snapshots into the [`FileChange`]s since the previous snapshot, parsing only files whose content
/// changed (the daemon's path: a manifest edit re-parses one file, not the directory).
///
/// A file's load errors include its source error (the file does not parse as YAML; its last good content, if
/// any, is still loaded), so a broken file is a change too. Under [`LoadOptions::LENIENT`] unknown fields are
/// logged as warnings when their file's content changes, and their objects load without them.
#[derive(Debug, Default)]
pub struct LoadCache {
    files: BTreeMap<PathBuf, CachedFile>,
    opts: LoadOptions,
}

#[derive(Debug)]
struct CachedFile {
    content: Option<Arc<SourceFile>>,
    source_error: Option<FileError>,
    /// The objects of `content`'s documents, one per document, when they all loaded.
    objects: Option<Loaded>,
}

impl LoadCache {
    /// A cache that loads with `opts`.
    pub fn new(opts: LoadOptions) -> LoadCache {
        LoadCache {
            files: BTreeMap::new(),
            opts,
        }
    }

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
                (Some(f), None) => self.load_text(path, &f.bytes),
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

    /// A file's text loaded with this cache's options; warnings (lenient unknown fields) go to the log.
    fn load_text(&self, path: &Path, bytes: &[u8]) -> (Loaded, Vec<LoadError>) {
        let report = load_bytes_with(path, bytes, self.opts);
        for w in &report.warnings {
            tracing::warn!(warning = %w, "manifest field ignored (lenient)");
        }
        report.into_pair()
    }
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
                None => parse_document(v).ok().map(|o| (path.to_path_buf(), o)),
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
}
