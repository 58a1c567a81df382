//! Memory regions the model shares with a driver: the BAR0 register file and the host-memory (DMA) window.
//!
//! Both are mmaps: anonymous for the in-process model, files under /dev/shm for a model in its own process
//! (`ironlb-sim serve`). Either side may write at any time, so no `&`/`&mut` reference into the memory is ever
//! created: access is by volatile reads/writes through the raw pointer, bounds-checked first. This module is the
//! only place in the model with `unsafe` (the crate denies it elsewhere).
#![allow(unsafe_code)]

use memmap2::{MmapMut, MmapOptions, MmapRaw};
use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

/// Opens a device file (a BAR or host-memory file) read-write for mapping, refusing one another user controls.
///
/// With `create`, a new file is created exclusively (`O_EXCL`) with mode 0600. Any file used that was not created
/// here must be a regular file owned by this process's effective user with no group or other permission bits:
/// files under /dev/shm at a predictable name may have been made by someone else (who could then rewrite the
/// device's registers, or hold its lock). The open never follows a symlink at `path` and never blocks (a FIFO
/// planted there is refused). Errors say which file and why.
pub fn open_private(path: &Path, create: bool) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if create {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(flags)
            .open(path)
        {
            Ok(f) => {
                f.set_permissions(Permissions::from_mode(0o600))?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: {why}; refusing to use it (remove it and start the model again)",
                path.display()
            ),
        )
    };
    // Checked before opening for writing (no side effect on a device node), and again on the descriptor.
    let check = |m: &std::fs::Metadata| -> io::Result<()> {
        if !m.file_type().is_file() {
            return Err(refuse("not a regular file".into()));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if m.uid() != me {
            return Err(refuse(format!(
                "owned by uid {}, not by this process's uid {me}",
                m.uid()
            )));
        }
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(refuse(format!(
                "mode {mode:04o} gives other users access (device files must be 0600)"
            )));
        }
        Ok(())
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(refuse("a symlink".into())),
        Ok(m) => check(&m)?,
        Err(e) => return Err(e),
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)?;
    check(&f.metadata()?)?;
    Ok(f)
}

struct Inner {
    ptr: NonNull<u8>,
    len: usize,
    /// Raw mapping: it hands out pointers only, so no Rust reference into the shared memory can exist.
    _map: MmapRaw,
}

// SAFETY: the mapping is owned by `Inner` and lives as long as it; all access goes through volatile operations on
// the raw pointer, which are sound to perform from any thread (races are resolved by the contract's doorbell
// protocol, exactly as with real device memory).
unsafe impl Send for Inner {}
// SAFETY: see `Send`; `Inner` has no interior state besides the mapped bytes.
unsafe impl Sync for Inner {}

/// A shared, mapped memory region. Cloning shares the same memory.
#[derive(Clone)]
pub struct Region {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").field("len", &self.inner.len).finish()
    }
}

impl Region {
    /// Anonymous zeroed memory of `len` bytes (the in-process model).
    pub fn anon(len: usize) -> std::io::Result<Region> {
        Ok(Region::from_map(MmapMut::map_anon(len)?.into()))
    }

    /// Map a file of exactly `len` bytes, creating or sizing it when `create` is set. The file is opened with
    /// [`open_private`]: a new one gets mode 0600, an existing one must be this user's and private.
    pub fn file(path: &Path, len: usize, create: bool) -> std::io::Result<Region> {
        let f = open_private(path, create)?;
        let have = f.metadata()?.len();
        if have != len as u64 {
            if create && have == 0 {
                f.set_len(len as u64)?;
            } else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is {have} bytes, expected {len}", path.display()),
                ));
            }
        }
        Region::map_file(&f, len)
    }

    /// Map the first `len` bytes of an open file (shared, read-write).
    pub fn map_file(f: &File, len: usize) -> std::io::Result<Region> {
        // A raw mapping needs no `unsafe`: it gives out pointers only, and other processes writing the file
        // concurrently is exactly why this module never creates references into it (volatile access only).
        let map = MmapOptions::new().len(len).map_raw(f)?;
        Ok(Region::from_map(map))
    }

    fn from_map(map: MmapRaw) -> Region {
        let len = map.len();
        let ptr = NonNull::new(map.as_mut_ptr()).unwrap_or(NonNull::dangling());
        Region {
            inner: Arc::new(Inner { ptr, len, _map: map }),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// True for an empty region.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// The raw base pointer, for a driver backend that wraps the same memory in its own volatile window. The
    /// pointer stays valid while any clone of this region lives.
    pub fn raw_ptr(&self) -> NonNull<u8> {
        self.inner.ptr
    }

    fn check(&self, offset: usize, size: usize) -> bool {
        offset.checked_add(size).is_some_and(|end| end <= self.inner.len)
    }

    /// Volatile 32-bit little-endian read; `None` when out of bounds or misaligned.
    pub fn read32(&self, offset: usize) -> Option<u32> {
        if !offset.is_multiple_of(4) || !self.check(offset, 4) {
            return None;
        }
        // SAFETY: in bounds and 4-aligned (mmaps are page-aligned); mapping alive while `self` is.
        Some(u32::from_le(unsafe {
            self.inner.ptr.as_ptr().add(offset).cast::<u32>().read_volatile()
        }))
    }

    /// Volatile 32-bit little-endian write; `false` when out of bounds or misaligned.
    pub fn write32(&self, offset: usize, value: u32) -> bool {
        if !offset.is_multiple_of(4) || !self.check(offset, 4) {
            return false;
        }
        // SAFETY: in bounds and 4-aligned; mapping alive and writable while `self` is.
        unsafe {
            self.inner
                .ptr
                .as_ptr()
                .add(offset)
                .cast::<u32>()
                .write_volatile(value.to_le())
        };
        true
    }

    /// Volatile copy out; `false` when out of bounds.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> bool {
        if !self.check(offset, out.len()) {
            return false;
        }
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: offset + i < offset + out.len() <= len, checked above.
            *b = unsafe { self.inner.ptr.as_ptr().add(offset + i).read_volatile() };
        }
        true
    }

    /// Volatile copy in; `false` when out of bounds.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> bool {
        if !self.check(offset, data.len()) {
            return false;
        }
        for (i, b) in data.iter().enumerate() {
            // SAFETY: offset + i < offset + data.len() <= len, checked above.
            unsafe { self.inner.ptr.as_ptr().add(offset + i).write_volatile(*b) };
        }
        true
    }
}

/// Host memory as the device sees it: a region addressed by IOVA starting at `base`.
#[derive(Clone, Debug)]
pub struct HostMemory {
    /// The memory.
    pub region: Region,
    /// IOVA of byte 0.
    pub base: u64,
}

/// A DMA access outside the host's mapped window (an IOMMU fault on real hardware).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DMA fault: {len} bytes at IOVA {iova:#x} are not mapped")]
pub struct DmaFault {
    /// Faulting IOVA.
    pub iova: u64,
    /// Access length.
    pub len: usize,
}

impl HostMemory {
    fn offset(&self, iova: u64, len: usize) -> Result<usize, DmaFault> {
        iova.checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|o| o.checked_add(len).is_some_and(|e| e <= self.region.len()))
            .ok_or(DmaFault { iova, len })
    }
    /// DMA read.
    pub fn read(&self, iova: u64, out: &mut [u8]) -> Result<(), DmaFault> {
        let o = self.offset(iova, out.len())?;
        self.region.read_bytes(o, out);
        Ok(())
    }
    /// DMA write.
    pub fn write(&self, iova: u64, data: &[u8]) -> Result<(), DmaFault> {
        let o = self.offset(iova, data.len())?;
        self.region.write_bytes(o, data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_sharing() {
        let r = Region::anon(4096).unwrap();
        let r2 = r.clone();
        assert!(r.write32(8, 0xDEAD_BEEF));
        assert_eq!(r2.read32(8), Some(0xDEAD_BEEF));
        assert_eq!(r.read32(4096), None);
        assert_eq!(r.read32(2), None);
        assert!(!r.write_bytes(4090, &[0; 8]));
        let h = HostMemory {
            region: r,
            base: 0x1000,
        };
        assert!(h.write(0x1000 + 16, &[1, 2, 3]).is_ok());
        let mut b = [0u8; 3];
        h.read(0x1010, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert_eq!(h.read(0x0FFF, &mut b), Err(DmaFault { iova: 0xFFF, len: 3 }));
        assert!(h.write(0x1000 + 4094, &[0; 3]).is_err());
    }
}
