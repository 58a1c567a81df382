//! Where manifests come from: the [`Source`] abstraction and its implementations.
//!
//! A source yields [`Snapshot`]s of *raw* manifest documents keyed by their origin (a file path for
//! [`DirSource`], an object key for a future etcd or Kubernetes source). It deliberately knows nothing
//! about the typed manifest API: documents are plain [`serde_norway::Value`]s, and turning them into
//! LoadBalancer objects is the consumer's job.
//!
//! Contract shared by every source:
//!
//! * **Last good content.** When an origin's content becomes unparseable, the snapshot keeps that
//!   origin's previous good documents and reports the problem in [`Snapshot::errors`]; a broken edit
//!   never removes objects from the data plane. An origin that was *deleted* disappears.
//! * **Change notification.** [`Source::wait_change`] blocks (bounded) until the snapshot has changed
//!   and returns `true`; the caller then takes a fresh [`Source::snapshot`]. Bursts of underlying events
//!   (an editor save, a `write tmp + rename`) are debounced into one change.
//!
//! Typical controller loop:
//!
//! ```no_run
//! use ironlb_runtime::source::{DirSource, Source};
//! use std::time::Duration;
//!
//! let mut src = DirSource::new("/etc/ironlb/manifests")?;
//! loop {
//!     let snap = src.snapshot()?;
//!     for e in &snap.errors {
//!         eprintln!("manifest error: {e}");
//!     }
//!     // ... reconcile snap.files ...
//!     while !src.wait_change(Duration::from_secs(30))? {}
//! }
//! # #[allow(unreachable_code)]
//! # Ok::<(), ironlb_runtime::source::SourceError>(())
//! ```

use crate::printable::printable;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub mod dir;
pub mod etcd;
/// Reading one manifest file safely (`ironlb_api::read`).
pub use ironlb_api::read;

pub use dir::DirSource;
pub use etcd::{EtcdHealth, EtcdSource};

/// A provider of manifest snapshots (a directory today; etcd / Kubernetes later).
pub trait Source {
    /// The current settled state: every origin's last good documents plus the current errors.
    ///
    /// Cheap and non-blocking; it does not itself look for new changes (that is
    /// [`wait_change`](Source::wait_change)'s job), so two calls without an intervening `wait_change`
    /// return the same snapshot.
    fn snapshot(&mut self) -> Result<Snapshot, SourceError>;

    /// Wait up to roughly `timeout` for the snapshot to change.
    ///
    /// Returns `Ok(true)` as soon as a (debounced) change made the snapshot differ from the previous
    /// one — new, modified or removed documents, or a changed error set — and `Ok(false)` when the
    /// timeout passed without one. Underlying events that do not alter the snapshot (a `touch`, a
    /// rewrite with identical bytes, a non-manifest file) are absorbed and do not return `true`.
    /// Implementations may overrun `timeout` by up to one debounce window.
    fn wait_change(&mut self, timeout: Duration) -> Result<bool, SourceError>;

    /// A short human-readable description for logs, e.g. `dir:/etc/ironlb/manifests`.
    fn describe(&self) -> String;
}

/// A point-in-time view of all manifest documents of a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Incremented every time the source's content changes (starts at 0 for the initial load).
    pub generation: u64,
    /// Last good content per origin, ordered by origin (deterministic iteration order).
    /// Shared, so a snapshot is cheap to take; a file whose content changed gets a new `Arc`.
    pub files: BTreeMap<PathBuf, Arc<SourceFile>>,
    /// Current problems, ordered by origin. An origin listed here that also appears in `files` is
    /// being served from its last good content.
    pub errors: Vec<FileError>,
}

impl Snapshot {
    /// All documents of all origins, in origin order then document order.
    pub fn documents(&self) -> impl Iterator<Item = (&PathBuf, &serde_norway::Value)> {
        self.files
            .iter()
            .flat_map(|(p, f)| f.documents.iter().map(move |d| (p, d)))
    }
}

/// The last good content of one origin.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    /// The raw bytes the documents were parsed from.
    pub bytes: Vec<u8>,
    /// Every non-empty YAML document (`---`-separated) in order. Empty documents (e.g. a trailing
    /// `---`) are dropped.
    pub documents: Vec<serde_norway::Value>,
}

/// A problem with one origin: unparseable YAML or an I/O error reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The origin (file path).
    pub path: PathBuf,
    /// 1-based line of the error, when known.
    pub line: Option<usize>,
    /// 1-based column of the error, when known.
    pub column: Option<usize>,
    /// The parser's or the OS's message.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", printable(&self.path.to_string_lossy()))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", printable(&self.message))
    }
}

/// A failure of the source as a whole (as opposed to one bad origin, which is a [`FileError`]).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The manifest directory could not be listed.
    #[error("cannot read manifest directory {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file-system watcher could not be set up.
    #[error("cannot watch manifest directory {path}: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher error.
        #[source]
        source: notify::Error,
    },
    /// The watcher stopped delivering events.
    #[error("manifest directory watcher for {0} stopped")]
    WatcherGone(PathBuf),
}
