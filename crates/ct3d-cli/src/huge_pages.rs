//! The process's allocator: the system allocator, plus transparent huge pages for large
//! blocks on Linux.
//!
//! A training step allocates and frees several hundred megabytes of activations and gradients
//! (the first convolution's output alone is 250 MB per batch of two). With 4 KiB pages every
//! such buffer costs tens of thousands of page faults, each zeroing a page in the kernel: about
//! a tenth of a CPU training step was spent there (`perf`). Asking the kernel to back large
//! blocks with 2 MiB pages (`madvise(MADV_HUGEPAGE)`, honoured in the default `madvise` mode of
//! transparent huge pages) cuts the step by ≈ 10 %. This is what glibc's
//! `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` does, without needing the environment variable; on
//! other systems it is the plain system allocator.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are advised to use huge pages.
const LARGE_BLOCK: usize = 4 << 20;

/// The system allocator with huge-page advice for large blocks.
pub struct HugePageAllocator;

#[cfg(target_os = "linux")]
fn advise(ptr: *mut u8, size: usize) {
    const HUGE_PAGE: usize = 2 << 20;
    if ptr.is_null() || size < LARGE_BLOCK {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: [start, end) lies inside the block just allocated; MADV_HUGEPAGE changes only
        // how the kernel backs it, never its contents. A failure (e.g. THP disabled) is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: *mut u8, _: usize) {}

// SAFETY: every call is forwarded to `System` with the same arguments; `advise` only adds a
// hint about pages inside blocks `System` returned.
unsafe impl GlobalAlloc for HugePageAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let ptr = unsafe { System.alloc(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        advise(new, new_size);
        new
    }
}
