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
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

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
