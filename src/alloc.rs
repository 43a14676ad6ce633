//! The global allocator of the `mlp` binary: the system's, with every block of 512 bytes or more on a
//! 64-byte boundary, and a count of each thread's allocations for the test that the training loop
//! makes none (per thread, since the test harness itself allocates when a test runs long).
//!
//! Why: the weight matrices are read in 64-byte vectors, and a vector that straddles two cache lines
//! costs two loads. glibc places large blocks 16 bytes past a page boundary, so every AVX-512 load of
//! a weight row would straddle two lines.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Blocks this large or larger are cache-line aligned.
const ALIGN_FROM: usize = 512;
const CACHE_LINE: usize = 64;

thread_local! {
    /// Blocks this thread has allocated or grown (a const-initialised cell: reading it allocates not).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// How many blocks this thread has allocated or grown so far.
pub fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn count_one() {
    // During a thread's teardown its cell may be gone; such allocations are not the loop's.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

pub struct CacheAligned;

impl CacheAligned {
    /// The layout actually asked of the system: a function of the size, so that `dealloc` finds the
    /// same one `alloc` used.
    fn layout(layout: Layout) -> Layout {
        if layout.size() >= ALIGN_FROM && layout.align() < CACHE_LINE {
            Layout::from_size_align(layout.size(), CACHE_LINE).unwrap_or(layout)
        } else {
            layout
        }
    }
}

// SAFETY: every call forwards to `System` with the layout `CacheAligned::layout` derives from the
// caller's, which has the same size and an alignment at least as strict, and `dealloc` derives the
// same layout from the same caller layout. `realloc` is the trait's default (alloc, copy, dealloc).
unsafe impl GlobalAlloc for CacheAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as the impl's; the layout has a non-zero size as the caller's does.
        unsafe { System.alloc(Self::layout(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(Self::layout(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this same derived layout.
        unsafe { System.dealloc(ptr, Self::layout(layout)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_cache_aligned_and_small_ones_keep_their_layout() {
        let big = CacheAligned::layout(Layout::from_size_align(4096, 4).unwrap());
        assert_eq!((big.size(), big.align()), (4096, 64));
        let small = Layout::from_size_align(100, 8).unwrap();
        assert_eq!(CacheAligned::layout(small), small);
        let stricter = Layout::from_size_align(4096, 128).unwrap();
        assert_eq!(CacheAligned::layout(stricter), stricter);
    }
}
