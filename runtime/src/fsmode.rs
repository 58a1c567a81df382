//! Files of the state directory, created with explicit modes whatever the umask (docs/operations.md §4).
//!
//! | what | mode | why |
//! |---|---|---|
//! | the state directory | `0750` | the daemon's group may read status; nobody else may even look inside |
//! | `alloc.json`, `status.json` | `0640` | readable by the daemon's group (monitoring), by nobody else |
//! | `ironlb.lock` | `0600` | `flock` needs only read access: a lock others can open is a lock others can hold, which stops the daemon from starting |
//! | the control socket | `0660`, group `--socket-group` | connecting needs write access; `status`/`dump` are for the daemon's user and that group |
//!
//! Every file is opened with `O_NOFOLLOW` (a symlink planted at its name is refused, not written through) and its
//! mode is set with `fchmod` after creation, so the process umask never widens nor narrows it.

use std::fs::{self, File, Permissions};
use std::io;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the state directory.
pub const STATE_DIR_MODE: u32 = 0o750;
/// Mode of `alloc.json` and `status.json` (and their temporary files).
pub const STATE_FILE_MODE: u32 = 0o640;
/// Mode of lock files.
pub const LOCK_MODE: u32 = 0o600;
/// Mode of the control socket.
pub const SOCKET_MODE: u32 = 0o660;

const FLAGS: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Creates (or truncates) `path` for writing with exactly `mode`.
pub fn create_file(path: &Path, mode: u32) -> io::Result<File> {
    let f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(FLAGS)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(mode))?;
    Ok(f)
}

/// Opens (creating it if needed) the lock file `path` with mode [`LOCK_MODE`]; an existing lock file of an older
/// version with a wider mode is narrowed.
pub fn open_lock(path: &Path) -> io::Result<File> {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_MODE)
        .custom_flags(FLAGS)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(LOCK_MODE))?;
    Ok(f)
}

/// Creates the directory `path` (and missing parents) with `mode`, set explicitly. An existing directory keeps its
/// mode (an operator may have chosen another); a warning says so when others can reach into it.
pub fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let have = m.permissions().mode() & 0o777;
            if have & 0o007 != 0 {
                tracing::warn!(
                    dir = %path.display(),
                    mode = format!("{have:04o}"),
                    "state directory is accessible to other users; ironlb creates it with 0750"
                );
            }
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(mode).create(path)?;
            fs::set_permissions(path, Permissions::from_mode(mode))
        }
        Err(e) => Err(e),
    }
}

/// A failed [`write_atomic`]: the file (the temporary file, the target or its directory) and the error.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    /// The path the failed operation was on.
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: io::Error,
}

/// The temporary file [`write_atomic`] writes before renaming it over `path`: `path` with `.tmp` appended.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Replaces `path` with `bytes` crash-safely, with exactly `mode`: writes [`tmp_path`], fsyncs it, renames it over
/// `path` and fsyncs the directory, so after a crash `path` holds either the old or the new content, and after a
/// return the new content survives a power loss. The only way ironlb writes a state file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    let tmp = tmp_path(path);
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError { path, source }
    };
    {
        let mut f = create_file(&tmp, mode).map_err(at(&tmp))?;
        f.write_all(bytes).map_err(at(&tmp))?;
        f.sync_all().map_err(at(&tmp))?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(at(path)(e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_with_the_mode_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.json");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new", STATE_FILE_MODE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            STATE_FILE_MODE
        );
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn a_failed_write_atomic_names_the_path_and_keeps_the_old_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("alloc.json");
        std::fs::write(&p, b"old").unwrap();
        // A directory at the temporary file's name: it cannot be created.
        std::fs::create_dir(tmp_path(&p)).unwrap();
        let e = write_atomic(&p, b"new", STATE_FILE_MODE).unwrap_err();
        assert_eq!(e.path, tmp_path(&p));
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
    }

    #[test]
    fn a_symlink_at_the_name_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.path().join("alloc.json.tmp");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_file(&link, STATE_FILE_MODE).is_err());
        assert!(open_lock(&link).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
