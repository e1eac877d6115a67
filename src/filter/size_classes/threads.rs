//! The native module's allocator. It runs on Envoy's threads, and a block
//! may be freed on another thread than the one that took it (reports and
//! spans are drained on the main thread). So each thread keeps its own
//! lists of whole system blocks (one allocation of the class's size each,
//! which any thread may reuse or free), at most `KEEP` per class up to
//! 1 KiB: beyond that a freed block goes back to the system, so what a
//! thread keeps stays bounded (about 450 KiB) whatever others hand it.

use super::{class_of, class_size, PLAIN_ALIGN};
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Classes a thread keeps freed blocks of: up to 1 KiB.
const KEPT_CLASSES: usize = 12;
/// Freed blocks a thread keeps per class.
const KEEP: u32 = 128;

/// The native module's allocator: per-thread free lists of system blocks.
pub struct ThreadCache;

#[derive(Clone, Copy)]
struct Kept {
    /// Freed blocks, each holding the address of the next.
    free: *mut u8,
    len: u32,
}

thread_local! {
    // No destructor: a thread's kept blocks stay with it when it ends
    // (Envoy's threads live as long as the process).
    static KEPT: std::cell::UnsafeCell<[Kept; KEPT_CLASSES]> = const {
        std::cell::UnsafeCell::new([Kept { free: ptr::null_mut(), len: 0 }; KEPT_CLASSES])
    };
}

/// The kept class of `layout`, `None` for the system allocator.
fn kept_class(layout: Layout) -> Option<usize> {
    if layout.align() > PLAIN_ALIGN {
        return None;
    }
    class_of(layout).filter(|&class| class < KEPT_CLASSES)
}

/// The system layout of a class's blocks.
fn block_layout(class: usize) -> Layout {
    // SAFETY: class sizes are non-zero multiples of 16.
    unsafe { Layout::from_size_align_unchecked(class_size(class), PLAIN_ALIGN) }
}

// SAFETY (the whole impl): every block of a kept class is a system
// allocation of `block_layout(class)`, whichever thread took it, so any
// thread may hand it out again or free it with that layout; a freed
// block's first bytes hold the list link (16 bytes at least). The lists
// are the running thread's own (thread-local), so no two threads touch one.
// `GlobalAlloc` passes `dealloc` and `realloc` the layout the block was
// allocated with, so they find the same class.
unsafe impl GlobalAlloc for ThreadCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = kept_class(layout) else {
            return unsafe { System.alloc(layout) };
        };
        let reused = KEPT
            .try_with(|kept| {
                let c = unsafe { &mut *kept.get() }.get_mut(class)?;
                let block = c.free;
                if block.is_null() {
                    return None;
                }
                c.free = unsafe { block.cast::<*mut u8>().read() };
                c.len -= 1;
                Some(block)
            })
            .ok()
            .flatten();
        reused.unwrap_or_else(|| unsafe { System.alloc(block_layout(class)) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { super::alloc_zeroed_by(self, kept_class, layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = kept_class(layout) else {
            return unsafe { System.dealloc(block, layout) };
        };
        let kept = KEPT
            .try_with(|kept| {
                let Some(c) = unsafe { &mut *kept.get() }.get_mut(class) else {
                    return false;
                };
                if c.len >= KEEP {
                    return false;
                }
                unsafe { block.cast::<*mut u8>().write(c.free) };
                c.free = block;
                c.len += 1;
                true
            })
            .unwrap_or(false);
        if !kept {
            unsafe { System.dealloc(block, block_layout(class)) };
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { super::realloc_by(self, kept_class, block, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn blocks_never_overlap_and_keep_their_bytes_through_realloc() {
        // On a thread of its own: fresh lists, whatever other tests did.
        thread::spawn(|| super::super::exercise::exercise(&ThreadCache))
            .join()
            .unwrap();
    }

    /// How many freed blocks of `class` this thread keeps.
    fn kept(class: usize) -> u32 {
        KEPT.with(|k| unsafe { &*k.get() }[class].len)
    }

    #[test]
    fn a_block_freed_on_another_thread_is_kept_and_reused_there() {
        let layout = Layout::from_size_align(40, 8).unwrap();
        let class = kept_class(layout).unwrap();
        let block = thread::spawn(move || unsafe { ThreadCache.alloc(layout) } as usize)
            .join()
            .unwrap();
        thread::spawn(move || unsafe {
            ThreadCache.dealloc(block as *mut u8, layout);
            assert_eq!(kept(class), 1);
            // Any layout of the class takes it, and it grows in place there.
            let again = ThreadCache.alloc(Layout::from_size_align(33, 16).unwrap());
            assert_eq!(again as usize, block);
            assert_eq!(kept(class), 0);
            assert_eq!(ThreadCache.realloc(again, layout, 48), again);
            ThreadCache.dealloc(again, Layout::from_size_align(48, 8).unwrap());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_keeps_at_most_keep_blocks_a_class_and_none_too_big() {
        thread::spawn(|| unsafe {
            let layout = Layout::from_size_align(100, 8).unwrap();
            let class = kept_class(layout).unwrap();
            let extra = 10;
            let blocks: Vec<*mut u8> = (0..KEEP + extra)
                .map(|_| ThreadCache.alloc(layout))
                .collect();
            for &b in &blocks {
                ThreadCache.dealloc(b, layout);
            }
            assert_eq!(kept(class), KEEP);
            // Past 1 KiB, or aligned past 16, the system allocator's alone.
            assert_eq!(kept_class(Layout::from_size_align(1025, 8).unwrap()), None);
            assert_eq!(kept_class(Layout::from_size_align(64, 32).unwrap()), None);
            let big = Layout::from_size_align(4000, 8).unwrap();
            let b = ThreadCache.alloc(big);
            ThreadCache.dealloc(b, big);
            assert!((0..KEPT_CLASSES).all(|c| c == class || kept(c) == 0));
            // The kept ones come back, the last kept first; the ones freed
            // past `KEEP` went back to the system.
            let again = ThreadCache.alloc(layout);
            assert_eq!(Some(&again), blocks.get(KEEP as usize - 1));
            ThreadCache.dealloc(again, layout);
        })
        .join()
        .unwrap();
    }
}
