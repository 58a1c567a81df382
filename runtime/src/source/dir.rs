//! [`DirSource`]: manifests from a local directory, watched with `notify` (inotify on Linux).
//!
//! * Reads `*.yaml` / `*.yml` directly in the directory (non-recursive). Dotfiles (`.foo.yaml`,
//!   Kubernetes ConfigMap `..data` links) and editor temporaries (`*~`, `.#*`, `*.swp`, …) are ignored.
//!   Symlinks are followed, so a mounted ConfigMap (whose entries are links into `..data/`) works and
//!   its atomic `..data` swap is seen. Only regular files up to [`super::read::MAX_MANIFEST_BYTES`] are read,
//!   on the startup scan and on every event alike ([`super::read`]): a FIFO, socket or device with a manifest
//!   name (or a link to one) is never opened for reading past its type check, and gets a [`FileError`] saying
//!   what it is; a directory with a manifest name is ignored.
//! * A change is reported once the directory has been quiet for the debounce window (default
//!   [`DEFAULT_DEBOUNCE`]); a continuous stream of events is cut after [`MAX_DEBOUNCE_FACTOR`]
//!   windows so it cannot starve the consumer: the files that settled are taken then, while a file that
//!   had an event within the last window is not read until it has been quiet for a whole window of its
//!   own. A file written in place (truncated, then written) passes through empty and truncated states;
//!   those are never taken as its content unless the file stays that way for a whole window, so an
//!   in-place edit cannot delete the objects of its file. The files the events name are then re-read (parsed
//!   ahead as the events arrive, inside the window), or the whole (flat) directory when an event names something
//!   that is not a manifest file (a ConfigMap's `..data` swap, an editor's temporary), names nothing,
//!   or is a watcher error such as a queue overflow: so renames, atomic replaces and overflows all
//!   come out right, and an edit of one file in a large directory reads one file.
//! * Every `---` document of a file must parse as YAML. A file that fails keeps its last good
//!   documents in the snapshot and gets a [`FileError`] with the parser's line/column; a file that was
//!   never valid is absent from `files` but still reported. A deleted file disappears.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::Deserialize;

use super::{FileError, Snapshot, Source, SourceError, SourceFile};
pub use ironlb_api::read::is_manifest_name;
use ironlb_api::read::{read_manifest, FileKind, ReadError};

/// Default quiet period before a burst of events is treated as settled.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// A burst is cut after this many debounce windows even if events keep arriving.
pub const MAX_DEBOUNCE_FACTOR: u32 = 10;

/// Per-file state: the last good content and the current error, either of which may be absent.
#[derive(Debug, Default)]
struct FileSlot {
    good: Option<Arc<SourceFile>>,
    error: Option<FileError>,
    /// The bytes seen at the last scan (good or bad), to skip re-parsing unchanged files.
    last_bytes: Option<Vec<u8>>,
    /// The file was refused for its type or size ([`ReadError::is_refusal`]).
    refused: bool,
}

/// A [`Source`] backed by a directory of YAML manifest files. See the [module docs](self).
pub struct DirSource {
    dir: PathBuf,
    debounce: Duration,
    events: Receiver<notify::Result<notify::Event>>,
    // Kept alive for the lifetime of the source; dropping it stops the watch.
    _watcher: RecommendedWatcher,
    slots: BTreeMap<PathBuf, FileSlot>,
    /// Files read and parsed while a debounce window runs, by path: used by the rescan at the end of the window
    /// when the file still has those bytes (the window's intermediate states are never reported).
    prefetched: BTreeMap<PathBuf, Parsed>,
    /// Files still changing when a burst was cut (they had an event within the last window): not read yet, they
    /// start the next burst.
    unsettled: BTreeMap<PathBuf, Instant>,
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
            prefetched: BTreeMap::new(),
            unsettled: BTreeMap::new(),
            current: Snapshot::default(),
        };
        src.rescan(&Touched::All)?;
        src.current.generation = 0;
        Ok(src)
    }

    /// Re-read the whole directory now, whatever the watcher reported (a reload: `systemctl reload ironlb`, or a
    /// file system whose changes inotify does not see, such as NFS). Returns whether the snapshot changed.
    pub fn rescan_all(&mut self) -> Result<bool, SourceError> {
        self.rescan(&Touched::All)
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Manifest files currently refused for their type (a FIFO, a device, a socket) or their size (over
    /// [`super::read::MAX_MANIFEST_BYTES`]); each also has a [`FileError`] in the snapshot.
    pub fn refused(&self) -> Vec<PathBuf> {
        self.slots
            .iter()
            .filter(|(_, s)| s.refused)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Receive the next relevant event, noting what it touched, or time out / fail.
    fn recv_relevant(&self, timeout: Duration, touched: &mut Touched) -> Result<bool, SourceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) if relevant(&ev) => {
                    touched.add(&self.dir, &ev, Instant::now());
                    return Ok(true);
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Ok(false),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(SourceError::WatcherGone(self.dir.clone()))
                }
            }
        }
    }

    /// The manifest files directly in the directory.
    fn list(&self) -> Result<Vec<PathBuf>, SourceError> {
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
            if is_manifest_name(&path) {
                present.push(path);
            }
        }
        Ok(present)
    }

    /// Reads and parses the files `touched` names whose bytes are new (for [`DirSource::rescan`]).
    fn prefetch(&mut self, touched: &Touched) {
        let Touched::Files(paths) = touched else { return };
        for path in paths.keys() {
            let Ok(bytes) = read_manifest(path) else { continue };
            let known = self.prefetched.get(path).is_some_and(|(b, _)| *b == bytes)
                || self.slots.get(path).and_then(|s| s.last_bytes.as_ref()) == Some(&bytes);
            if !known {
                let docs = parse_documents(&bytes);
                self.prefetched.insert(path.clone(), (bytes, docs));
            }
        }
    }

    /// Re-read what `touched` names (or the whole directory); returns whether the snapshot changed (and bumps
    /// the generation if so).
    fn rescan(&mut self, touched: &Touched) -> Result<bool, SourceError> {
        let paths: Vec<PathBuf> = match touched {
            Touched::Files(p) => p.keys().cloned().collect(),
            Touched::All => {
                let present = self.list()?;
                let listed: BTreeSet<&PathBuf> = present.iter().collect();
                let gone: Vec<PathBuf> = self
                    .slots
                    .keys()
                    .filter(|p| !listed.contains(p))
                    .cloned()
                    .collect();
                gone.into_iter().chain(present.iter().cloned()).collect()
            }
        };
        let mut changed = false;
        for path in paths {
            // Symlinks are followed; only regular files up to the size limit are read (super::read).
            let read = read_manifest(&path);
            let absent = match &read {
                Err(e) if e.is_not_found() => true,
                Err(ReadError::NotRegular {
                    kind: FileKind::Directory,
                }) => true,
                _ => false,
            };
            if absent {
                changed |= self
                    .slots
                    .remove(&path)
                    .is_some_and(|s| s.good.is_some() || s.error.is_some());
                continue;
            }
            let slot = self.slots.entry(path.clone()).or_default();
            let before = (slot.good.clone(), slot.error.clone());
            slot.refused = false;
            match read {
                Ok(bytes) => {
                    if slot.last_bytes.as_deref() == Some(&bytes[..]) {
                        continue;
                    }
                    let parsed = match self.prefetched.remove(&path) {
                        Some((b, docs)) if b == bytes => docs,
                        _ => parse_documents(&bytes),
                    };
                    match parsed {
                        Ok(documents) => {
                            slot.error = None;
                            if slot.good.as_ref().is_none_or(|g| g.bytes != bytes) {
                                slot.good = Some(Arc::new(SourceFile {
                                    bytes: bytes.clone(),
                                    documents,
                                }));
                            }
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
                // A special file or one over the size limit (refused, never opened or read past the limit), or a
                // read error: the last good content stays, with the error.
                Err(e) => {
                    if e.is_refusal() {
                        tracing::warn!(file = %path.display(), error = %e, "manifest file refused");
                    }
                    slot.refused = e.is_refusal();
                    slot.error = Some(FileError {
                        path: path.clone(),
                        line: None,
                        column: None,
                        message: e.to_string(),
                    });
                    slot.last_bytes = None;
                }
            }
            let same_good = match (&before.0, &slot.good) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            changed |= !same_good || before.1 != slot.error;
        }
        // Slots for files that vanished before ever being read successfully carry nothing.
        self.slots.retain(|_, s| s.good.is_some() || s.error.is_some());
        if !changed {
            return Ok(false);
        }
        self.current = Snapshot {
            generation: self.current.generation + 1,
            files: self
                .slots
                .iter()
                .filter_map(|(p, s)| s.good.clone().map(|g| (p.clone(), g)))
                .collect(),
            errors: self.slots.values().filter_map(|s| s.error.clone()).collect(),
        };
        Ok(true)
    }
}

/// A file's bytes and their documents (or the parse error).
type Parsed = (Vec<u8>, Result<Vec<serde_norway::Value>, serde_norway::Error>);

/// What a burst of watcher events touched: some manifest files (with the time of each one's last event), or
/// possibly anything.
#[derive(Debug)]
enum Touched {
    Files(BTreeMap<PathBuf, Instant>),
    All,
}

impl Touched {
    /// Notes `ev`, seen at `now`: the manifest files it names, or everything when it names anything else or
    /// nothing.
    fn add(&mut self, dir: &Path, ev: &notify::Result<notify::Event>, now: Instant) {
        let Touched::Files(set) = self else { return };
        let names: Option<Vec<PathBuf>> = match ev {
            Ok(ev) if !ev.paths.is_empty() => ev
                .paths
                .iter()
                .map(|p| {
                    let name = p.file_name()?;
                    (p.parent() == Some(dir) && is_manifest_name(p)).then(|| dir.join(name))
                })
                .collect(),
            _ => None,
        };
        match names {
            Some(n) => set.extend(n.into_iter().map(|p| (p, now))),
            None => *self = Touched::All,
        }
    }

    /// Splits off the files whose last event is less than `window` old (still being written: in-place edits
    /// pass through empty and truncated states). `All` cannot tell files apart and keeps everything.
    fn split_unsettled(&mut self, window: Duration) -> BTreeMap<PathBuf, Instant> {
        let Touched::Files(set) = self else {
            return BTreeMap::new();
        };
        let (settled, unsettled) = std::mem::take(set)
            .into_iter()
            .partition(|(_, at)| at.elapsed() >= window);
        *set = settled;
        unsettled
    }

    fn is_empty(&self) -> bool {
        matches!(self, Touched::Files(s) if s.is_empty())
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
            // Files still changing when the last burst was cut start this one, without waiting for a new event.
            let mut touched = Touched::Files(std::mem::take(&mut self.unsettled));
            if touched.is_empty() && !self.recv_relevant(left, &mut touched)? {
                return Ok(false);
            }
            // Debounce: wait for a quiet window, but not forever. The files the burst touched are read and parsed
            // while the window runs (again after each event), so the parse overlaps the wait instead of
            // following it; the rescan at the end uses a parse only when the file still has those bytes, so the
            // window's intermediate states (a truncated file, half a write) never become the content.
            let burst_start = Instant::now();
            let mut last_event = match &touched {
                Touched::Files(f) => f.values().max().copied().unwrap_or(burst_start),
                Touched::All => burst_start,
            };
            let max = self.debounce * MAX_DEBOUNCE_FACTOR;
            let mut cut = false;
            loop {
                // Events already queued belong to now, not to after the parse: take them first, so that the
                // parse does not stretch the window.
                while self.recv_relevant(Duration::ZERO, &mut touched)? {
                    last_event = Instant::now();
                }
                self.prefetch(&touched);
                let quiet = last_event.elapsed();
                if quiet >= self.debounce {
                    break;
                }
                if burst_start.elapsed() >= max {
                    cut = true;
                    break;
                }
                if self.recv_relevant(self.debounce - quiet, &mut touched)? {
                    last_event = Instant::now();
                }
            }
            // A burst cut while events keep coming: a file written to within the last window is mid-write (an
            // in-place edit truncates it first), so it is not read now; it waits for its own quiet window while
            // the files that settled are taken.
            if cut {
                self.unsettled = touched.split_unsettled(self.debounce);
            }
            let changed = self.rescan(&touched);
            self.prefetched.clear();
            if changed? {
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
