//! The system-call `unsafe` code: one anonymous memory mapping type and the zeroizing global
//! allocator. Each block wraps one operation and states why it is sound. (The crate's other
//! `unsafe` is the lean engine's SIMD kernels and thread team; SECURITY.md lists every site.)
//!
//! # Security
//! The allocator wipes every block before returning it to the system allocator, and `realloc`
//! copies into a new block then wipes and frees the old one, so no freed heap memory keeps
//! plaintext (weights, prompts, keys). The wipe is a `memset` followed by an optimisation
//! barrier (`black_box` + compiler fence) so it is not removed as a dead store before `free`.
#![allow(
    unsafe_code,
    reason = "this module is the audited home of the system-call unsafe code"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, compiler_fence};

use rustix::mm::{Advice, MapFlags, ProtFlags};

/// Overwrites `len` bytes at `ptr` with zeros in a way the optimiser keeps.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn wipe_raw(ptr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable.
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    std::hint::black_box(ptr);
    compiler_fence(Ordering::SeqCst);
}

/// Wipes a slice (fast `memset` that the optimiser cannot drop).
pub(crate) fn wipe(buf: &mut [u8]) {
    // SAFETY: a `&mut [u8]` is valid for writes of its whole length.
    unsafe { wipe_raw(buf.as_mut_ptr(), buf.len()) };
}

/// A global allocator that zeroes every block before freeing it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroizingAlloc;

// SAFETY: every method forwards to `System` with the same layouts; `dealloc` only adds a wipe of
// the block it is about to free, and `realloc` is alloc + copy + dealloc with valid layouts.
unsafe impl GlobalAlloc for ZeroizingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated with `layout`, so it is valid for `layout.size()` bytes.
        unsafe {
            wipe_raw(ptr, layout.size());
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, does not
        // overflow, so the new layout is valid; the copy stays within both blocks.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = System.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// Size from which a [`Mapping`] is faulted in on transparent huge pages (`MADV_HUGEPAGE`
/// while it is populated, then `MADV_NOHUGEPAGE`, the `nh` flag in smaps): the model's arena,
/// whose weights a generation step streams once per token. On 2 MiB pages a 96 MB stream
/// read 20 to 30 % faster here than on 4 KiB ones (fewer TLB misses; the hardware
/// prefetchers stop at 4 KiB boundaries), and generation was about 20 % faster.
pub(crate) const HUGE_PAGE_MIN: usize = 8 << 20;

/// A private anonymous mapping, pre-faulted, unmapped on drop (wiping is the owner's job).
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned exclusively by this value; access goes through
// `&self`/`&mut self` borrows, so the usual aliasing rules make sharing across threads sound.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only gives out shared `&[u8]`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` (> 0) bytes of zeroed, private, pre-faulted memory. A mapping of at least
    /// [`HUGE_PAGE_MIN`] asks for transparent huge pages first.
    pub(crate) fn new(len: usize) -> std::io::Result<Self> {
        if len == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses aliases nothing.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        let mut map = Self { ptr, len };
        let huge = len >= HUGE_PAGE_MIN;
        if huge {
            // Best effort: a kernel without transparent huge pages keeps small ones.
            let _ = map.advise(Advice::LinuxHugepage);
        }
        // Pre-fault (as MAP_POPULATE would, after the advice): Linux 5.14 or later in one
        // call, else one write per page.
        if map.advise(Advice::LinuxPopulateWrite).is_err() {
            // A plain store: the compiler cannot know the page already holds a zero.
            for b in map.as_mut_slice().iter_mut().step_by(4096) {
                *b = 0;
            }
        }
        if huge {
            // The pages now exist, huge where the kernel had them; from here on khugepaged
            // leaves the range alone (it would copy small pages into a huge one and free
            // the originals unwiped). The huge pages already there stay.
            let _ = map.advise(Advice::LinuxNoHugepage);
        }
        Ok(map)
    }

    fn advise(&self, advice: Advice) -> std::io::Result<()> {
        // SAFETY: the range is exactly our own mapping; advice does not invalidate it
        // (DONTDUMP, WIPEONFORK, HUGEPAGE, NOHUGEPAGE and POPULATE_WRITE, which faults the pages
        // in without changing them, all keep the contents).
        unsafe { rustix::mm::madvise(self.ptr.as_ptr().cast::<c_void>(), self.len, advice) }
            .map_err(Into::into)
    }

    /// Excludes the mapping from core dumps (`MADV_DONTDUMP`, the `dd` flag in smaps).
    pub(crate) fn dont_dump(&self) -> std::io::Result<()> {
        self.advise(Advice::LinuxDontDump)
    }

    /// Gives a forked child zeroes instead of a copy (`MADV_WIPEONFORK`, `wf` in smaps).
    pub(crate) fn wipe_on_fork(&self) -> std::io::Result<()> {
        self.advise(Advice::LinuxWipeOnFork)
    }

    /// Locks the mapping in RAM so it is never swapped (`mlock`).
    pub(crate) fn lock(&self) -> std::io::Result<()> {
        // SAFETY: the range is exactly our own live mapping.
        unsafe { rustix::mm::mlock(self.ptr.as_ptr().cast::<c_void>(), self.len) }
            .map_err(Into::into)
    }

    /// The mapped bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, mutably.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live mapping of `len` writable bytes, uniquely borrowed via `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and no borrow of it outlives `self`. munmap also unlocks.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
    }
}
