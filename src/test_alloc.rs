//! Test builds only: the system allocator, noting the largest single allocation each thread asks
//! for, so a test can prove a decoder never allocates what a corrupt header declares (the
//! allocation itself is the harm: the bytes need never be touched to count against a process).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct PeakTracking;

thread_local! {
    // `const` and a `Cell<usize>`: no lazy initialisation and no destructor, so the allocator may
    // touch it from any allocation, including those made while a thread starts or ends.
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
}

// SAFETY: every call is passed to `System` unchanged; only a thread-local number is kept besides.
unsafe impl GlobalAlloc for PeakTracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` and `layout` came from this allocator, which is `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: PeakTracking = PeakTracking;

/// Starts a new measurement on this thread.
pub fn reset_peak() {
    let _ = PEAK.try_with(|p| p.set(0));
}

/// The largest single allocation (bytes) this thread asked for since `reset_peak`.
pub fn peak() -> usize {
    PEAK.try_with(Cell::get).unwrap_or(0)
}
