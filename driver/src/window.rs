//! Mapped memory windows (a BAR, a DMA buffer): the one type through which the driver touches mapped memory.
//!
//! This and the VFIO syscall module are the places in the driver with `unsafe` (plus the model backends that wrap
//! the model's mappings in a window). No `&` or `&mut` reference into mapped memory is ever created: the memory may
//! change under us (the device writes it), so all access is `read_volatile`/`write_volatile` through a raw
//! pointer, bounds-checked first.
#![allow(unsafe_code)]

use std::any::Any;
use std::ptr::NonNull;

/// A mapped memory window (a BAR or a DMA buffer): base pointer and length, accessed only by volatile copies.
pub struct MappedWindow {
    ptr: NonNull<u8>,
    len: usize,
    /// Keeps the mapping alive (an mmap, a shared model buffer, ...).
    _owner: Box<dyn Any + Send>,
}

// SAFETY: the window is plain memory reached only through volatile accesses; the owner that keeps the mapping
// alive is itself `Send`, and nothing here is tied to a thread.
unsafe impl Send for MappedWindow {}

impl std::fmt::Debug for MappedWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedWindow")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

impl MappedWindow {
    /// Wrap a mapping.
    ///
    /// # Safety
    /// `ptr` must point to `len` bytes that stay mapped, readable and writable for as long as `owner` lives, and
    /// the caller must not create Rust references into that memory.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize, owner: Box<dyn Any + Send>) -> Self {
        MappedWindow {
            ptr,
            len,
            _owner: owner,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, size: usize, align: usize) {
        assert!(
            offset.is_multiple_of(align) && offset.checked_add(size).is_some_and(|end| end <= self.len),
            "access of {size} bytes at {offset:#x} outside window of {:#x} bytes (or misaligned)",
            self.len
        );
    }

    /// Volatile 32-bit read at `offset`. Panics when out of bounds or misaligned (a driver bug, not a device state).
    pub fn read32(&self, offset: usize) -> u32 {
        self.check(offset, 4, 4);
        // SAFETY: bounds and alignment checked above; the mapping is live while `self` is (constructor contract).
        let v = unsafe { self.ptr.as_ptr().add(offset).cast::<u32>().read_volatile() };
        u32::from_le(v)
    }

    /// Volatile 32-bit write at `offset`. Panics when out of bounds or misaligned.
    pub fn write32(&self, offset: usize, value: u32) {
        self.check(offset, 4, 4);
        // SAFETY: bounds and alignment checked above; the mapping is live and writable (constructor contract).
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<u32>()
                .write_volatile(value.to_le())
        }
    }

    /// Copy bytes out of the window (volatile 8-byte reads where aligned, then single bytes).
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len(), 1);
        let mut i = 0;
        while i < out.len() {
            let p = offset + i;
            if p.is_multiple_of(8) && out.len() - i >= 8 {
                // SAFETY: p + 8 <= offset + out.len() <= len (checked above) and p is 8-aligned; mapping live.
                let v = unsafe { self.ptr.as_ptr().add(p).cast::<u64>().read_volatile() };
                out[i..i + 8].copy_from_slice(&v.to_ne_bytes());
                i += 8;
            } else {
                // SAFETY: p < offset + out.len() <= len, checked above; mapping live.
                out[i] = unsafe { self.ptr.as_ptr().add(p).read_volatile() };
                i += 1;
            }
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    }

    /// Copy bytes into the window (volatile 8-byte writes where aligned, then single bytes).
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len(), 1);
        let mut i = 0;
        while i < data.len() {
            let p = offset + i;
            if p.is_multiple_of(8) && data.len() - i >= 8 {
                let v = u64::from_ne_bytes(data[i..i + 8].try_into().expect("8 bytes"));
                // SAFETY: p + 8 <= offset + data.len() <= len (checked above) and p is 8-aligned; mapping writable.
                unsafe { self.ptr.as_ptr().add(p).cast::<u64>().write_volatile(v) };
                i += 8;
            } else {
                // SAFETY: p < offset + data.len() <= len, checked above; mapping writable.
                unsafe { self.ptr.as_ptr().add(p).write_volatile(data[i]) };
                i += 1;
            }
        }
    }
}
