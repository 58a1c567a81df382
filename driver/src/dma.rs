//! Host memory the device reaches by DMA, and mapped register windows.
//!
//! This is one of the two places in the driver with `unsafe` (the other is the VFIO syscall module). No `&` or
//! `&mut` reference into mapped memory is ever created: the memory may change under us (the device writes it), so
//! all access is `read_volatile`/`write_volatile` through a raw pointer, bounds-checked first.

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
        f.debug_struct("MappedWindow").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

impl MappedWindow {
    /// Wrap a mapping.
    ///
    /// # Safety
    /// `ptr` must point to `len` bytes that stay mapped, readable and writable for as long as `owner` lives, and
    /// the caller must not create Rust references into that memory.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize, owner: Box<dyn Any + Send>) -> Self {
        MappedWindow { ptr, len, _owner: owner }
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
            offset % align == 0 && offset.checked_add(size).is_some_and(|end| end <= self.len),
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
        unsafe { self.ptr.as_ptr().add(offset).cast::<u32>().write_volatile(value.to_le()) }
    }

    /// Copy bytes out of the window with volatile byte reads.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len(), 1);
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `offset + i < offset + out.len() <= len`, checked above; mapping live.
            *b = unsafe { self.ptr.as_ptr().add(offset + i).read_volatile() };
        }
    }

    /// Copy bytes into the window with volatile byte writes.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len(), 1);
        for (i, b) in data.iter().enumerate() {
            // SAFETY: `offset + i < offset + data.len() <= len`, checked above; mapping live and writable.
            unsafe { self.ptr.as_ptr().add(offset + i).write_volatile(*b) }
        }
    }
}

/// A DMA buffer: a mapped window plus the IOVA the device uses for its first byte.
#[derive(Debug)]
pub struct DmaRegion {
    window: MappedWindow,
    iova: u64,
}

impl DmaRegion {
    /// Pair a window with its IOVA.
    pub fn new(window: MappedWindow, iova: u64) -> Self {
        DmaRegion { window, iova }
    }
    /// The device-side address of byte 0.
    pub fn iova(&self) -> u64 {
        self.iova
    }
    /// The mapped memory.
    pub fn window(&self) -> &MappedWindow {
        &self.window
    }
}
