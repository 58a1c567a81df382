//! [`DirSource`]: manifests from a local directory, watched with `notify` (inotify on Linux).
//!
//! * Reads `*.yaml` / `*.yml` directly in the directory (non-recursive). Dotfiles (`.foo.yaml`,
//!   Kubernetes ConfigMap `..data` links) and editor temporaries (`*~`, `.#*`, `*.swp`, …) are ignored.
//!   Symlinks are followed, so a mounted ConfigMap (whose entries are links into `..data/`) works and
//!   its atomic `..data` swap is seen.
//! * Any relevant watcher event triggers a full rescan of the directory once the directory has been
//!   quiet for the debounce window (default [`DEFAULT_DEBOUNCE`]); a continuous stream of events is
//!   cut after [`MAX_DEBOUNCE_FACTOR`] windows so it cannot starve the consumer. Rescanning the whole
//!   (small, flat) directory rather than interpreting individual events makes renames, atomic
//!   replaces and event-queue overflows all come out right.
//! * Every `---` document of a file must parse as YAML. A file that fails keeps its last good
//!   documents in the snapshot and gets a [`FileError`] with the parser's line/column; a file that was
//!   never valid is absent from `files` but still reported. A deleted file disappears.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::Deserialize;

use super::{FileError, Snapshot, Source, SourceError, SourceFile};

/// Default quiet period before a burst of events is treated as settled.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// A burst is cut after this many debounce windows even if events keep arriving.
pub const MAX_DEBOUNCE_FACTOR: u32 = 10;

/// Per-file state: the last good content and the current error, either of which may be absent.
#[derive(Debug, Default)]
struct FileSlot {
    good: Option<SourceFile>,
    error: Option<FileError>,
    /// The bytes seen at the last scan (good or bad), to skip re-parsing unchanged files.
    last_bytes: Option<Vec<u8>>,
}

/// A [`Source`] backed by a directory of YAML manifest files. See the [module docs](self).
pub struct DirSource {
    dir: PathBuf,
    debounce: Duration,
    events: Receiver<notify::Result<notify::Event>>,
    // Kept alive for the lifetime of the source; dropping it stops the watch.
    _watcher: RecommendedWatcher,
    slots: BTreeMap<PathBuf, FileSlot>,
    current: Snapshot,
}

impl std::fmt::Debug for DirSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirSource")
            .field("dir", &self.dir)
            .field("debounce", &self.debounce)
            .field("generation", &self.current.generation)
            .finish_non_exhaustive()
    }
}

impl DirSource {
    /// Watch `dir` with the [default debounce](DEFAULT_DEBOUNCE) and load its manifests.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, SourceError> {
        Self::with_debounce(dir, DEFAULT_DEBOUNCE)
    }

    /// Watch `dir` with a custom debounce window and load its manifests.
    ///
    /// The watch is established *before* the initial scan, so no change can fall in between.
    pub fn with_debounce(dir: impl Into<PathBuf>, debounce: Duration) -> Result<Self, SourceError> {
        let dir = dir.into();
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx).map_err(|source| SourceError::Watch {
            path: dir.clone(),
            source,
        })?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|source| SourceError::Watch {
                path: dir.clone(),
                source,
            })?;
        let mut src = DirSource {
            dir,
            debounce,
            events,
            _watcher: watcher,
            slots: BTreeMap::new(),
            current: Snapshot::default(),
        };
        src.rescan()?;
        src.current.generation = 0;
        Ok(src)
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Receive the next relevant event, or time out / fail.
    fn recv_relevant(&self, timeout: Duration) -> Result<bool, SourceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) if relevant(&ev) => return Ok(true),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Ok(false),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(SourceError::WatcherGone(self.dir.clone()))
                }
            }
        }
    }

    /// Re-read the directory; returns whether the snapshot changed (and bumps the generation if so).
    fn rescan(&mut self) -> Result<bool, SourceError> {
        let listing = std::fs::read_dir(&self.dir).map_err(|source| SourceError::ReadDir {
            path: self.dir.clone(),
            source,
        })?;
        let mut present: Vec<PathBuf> = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|source| SourceError::ReadDir {
                path: self.dir.clone(),
                source,
            })?;
            let path = entry.path();
            if !is_manifest_name(&path) {
                continue;
            }
            // Follow symlinks; skip directories and dangling links.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => present.push(path),
                _ => {}
            }
        }

        self.slots.retain(|p, _| present.contains(p));
        for path in present {
            let slot = self.slots.entry(path.clone()).or_default();
            match std::fs::read(&path) {
                Ok(bytes) => {
                    if slot.last_bytes.as_deref() == Some(&bytes[..]) {
                        continue;
                    }
                    match parse_documents(&bytes) {
                        Ok(documents) => {
                            slot.error = None;
                            slot.good = Some(SourceFile {
                                bytes: bytes.clone(),
                                documents,
                            });
                        }
                        Err(e) => {
                            let loc = e.location();
                            slot.error = Some(FileError {
                                path: path.clone(),
                                line: loc.as_ref().map(|l| l.line()),
                                column: loc.as_ref().map(|l| l.column()),
                                message: e.to_string(),
                            });
                        }
                    }
                    slot.last_bytes = Some(bytes);
                }
                // Removed between listing and reading: the next event's rescan drops it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    slot.error = Some(FileError {
                        path: path.clone(),
                        line: None,
                        column: None,
                        message: e.to_string(),
                    });
                    slot.last_bytes = None;
                }
            }
        }
        // Slots for files that vanished before ever being read successfully carry nothing.
        self.slots.retain(|_, s| s.good.is_some() || s.error.is_some());

        let files: BTreeMap<PathBuf, SourceFile> = self
            .slots
            .iter()
            .filter_map(|(p, s)| s.good.clone().map(|g| (p.clone(), g)))
            .collect();
        let errors: Vec<FileError> = self.slots.values().filter_map(|s| s.error.clone()).collect();
        if files == self.current.files && errors == self.current.errors {
            return Ok(false);
        }
        self.current = Snapshot {
            generation: self.current.generation + 1,
            files,
            errors,
        };
        Ok(true)
    }
}

impl Source for DirSource {
    fn snapshot(&mut self) -> Result<Snapshot, SourceError> {
        Ok(self.current.clone())
    }

    fn wait_change(&mut self, timeout: Duration) -> Result<bool, SourceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.recv_relevant(left)? {
                return Ok(false);
            }
            // Debounce: wait for a quiet window, but not forever.
            let burst_start = Instant::now();
            let max = self.debounce * MAX_DEBOUNCE_FACTOR;
            while burst_start.elapsed() < max && self.recv_relevant(self.debounce)? {}
            if self.rescan()? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }
}

/// Whether a watcher event can change the snapshot. Access events (our own reads open the files)
/// cannot; watcher errors (e.g. queue overflow) might have hidden anything, so they count.
fn relevant(ev: &notify::Result<notify::Event>) -> bool {
    match ev {
        Ok(ev) => !matches!(ev.kind, EventKind::Access(_)),
        Err(_) => true,
    }
}

/// `*.yaml` / `*.yml` (any case), not a dotfile, not an editor temporary.
pub fn is_manifest_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// Parse every `---` document; empty documents are dropped.
fn parse_documents(bytes: &[u8]) -> Result<Vec<serde_norway::Value>, serde_norway::Error> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_slice(bytes) {
        let v = serde_norway::Value::deserialize(de)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names() {
        for ok in ["a.yaml", "b.yml", "C.YAML", "lb-1.v2.yaml"] {
            assert!(is_manifest_name(Path::new(ok)), "{ok}");
        }
        for no in [
            ".a.yaml",
            ".#a.yaml",
            "a.yaml~",
            "a.yaml.swp",
            ".a.yaml.swp",
            "#a.yaml#",
            "a.json",
            "..data",
            "a.yaml.tmp",
            "yaml",
        ] {
            assert!(!is_manifest_name(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn documents_and_errors() {
        let docs = parse_documents(b"a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert!(parse_documents(b"").unwrap().is_empty());
        let e = parse_documents(b"a: 1\n---\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.location().is_some());
    }
}
