//! Reading one manifest file safely: only regular files, never more than [`MAX_MANIFEST_BYTES`].
//!
//! The watched directory may hold anything a local user can create there. A FIFO named `zz.yaml` would block a
//! plain `open()` forever (no writer), and a symlink `zz.yaml -> /dev/zero` would be read without bound. So every
//! read of a manifest — the startup scan, live watcher events, `validate`, `run --once` — goes through
//! [`read_manifest`]:
//!
//! * symlinks **are** followed (a mounted Kubernetes ConfigMap is a directory of links into `..data/`), but the
//!   file they lead to must be a regular file;
//! * the type is checked before opening (so opening a device node can have no side effect) and again on the
//!   opened descriptor (so a link swapped between the check and the `open` is still caught); the open itself is
//!   non-blocking, so even a FIFO swapped in at that instant cannot block it;
//! * the size is checked on the opened descriptor and the read is capped at the limit plus one byte, so a file
//!   that grows while it is read is refused too.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest manifest file read (16 MiB: about 40,000 LoadBalancers of typical size).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Why a manifest file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path (or what its symlink leads to) is not a regular file.
    #[error("not a regular file but a {kind}: only regular files (or symlinks to them) are read")]
    NotRegular {
        /// What it is.
        kind: FileKind,
    },
    /// The file is larger than [`MAX_MANIFEST_BYTES`].
    #[error("{size} bytes is over the limit of {limit} bytes for one manifest file")]
    TooLarge {
        /// Size seen (at least this much).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The operating system refused (including not found).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// True when the file does not exist (any more), or is a dangling symlink.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// True when the file was refused for what it is (type or size), not because reading it failed.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ReadError::NotRegular { .. } | ReadError::TooLarge { .. })
    }
}

/// The type of a file that is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A character device (such as `/dev/zero`).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
    /// Anything else.
    Other,
}

impl FileKind {
    fn of(m: &Metadata) -> Option<FileKind> {
        let t = m.file_type();
        Some(if t.is_file() {
            return None;
        } else if t.is_dir() {
            FileKind::Directory
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else if t.is_socket() {
            FileKind::Socket
        } else {
            FileKind::Other
        })
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "directory",
            FileKind::Fifo => "FIFO (named pipe)",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Socket => "socket",
            FileKind::Other => "special file",
        })
    }
}

fn check(m: &Metadata, limit: u64) -> Result<(), ReadError> {
    if let Some(kind) = FileKind::of(m) {
        return Err(ReadError::NotRegular { kind });
    }
    if m.len() > limit {
        return Err(ReadError::TooLarge { size: m.len(), limit });
    }
    Ok(())
}

/// Reads the manifest file at `path` (following symlinks) if it is a regular file of at most
/// [`MAX_MANIFEST_BYTES`]. See the module documentation.
pub fn read_manifest(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_limited(path, MAX_MANIFEST_BYTES)
}

/// [`read_manifest`] with another size limit.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    check(&std::fs::metadata(path)?, limit)?;
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    check(&m, limit)?;
    let mut bytes = Vec::with_capacity(m.len() as usize);
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_checked_on_size_and_on_what_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.yaml");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_limited(&p, 10).unwrap(), b"0123456789");
        let e = read_limited(&p, 9).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { size: 10, limit: 9 }), "{e}");
        assert!(e.is_refusal());
        assert!(read_limited(&d.path().join("none.yaml"), 10)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn devices_and_directories_are_refused() {
        for (p, kind) in [
            ("/dev/zero", FileKind::CharDevice),
            ("/dev/null", FileKind::CharDevice),
            ("/", FileKind::Directory),
        ] {
            match read_manifest(Path::new(p)) {
                Err(ReadError::NotRegular { kind: k }) => assert_eq!(k, kind, "{p}"),
                other => panic!("{p}: {other:?}"),
            }
        }
    }
}
