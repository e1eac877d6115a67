//! The VM's memory allocator: blocks up to 4 KiB come from free lists, one
//! per size class; larger ones, and the chunks the classes carve, from the
//! system allocator (wasi-libc's dlmalloc).
//!
//! Why: a request makes about a hundred small allocations (JSON values,
//! strings, header and body buffers, the host's copies of what it hands the
//! module). A free-list pop or push is a few instructions; dlmalloc's bins
//! cost far more, and natively they were about a third of the filter's own
//! instructions (`make bench-instructions` shows the difference in Envoy).
//!
//! The cost: a class never hands its blocks back to the system, so the VM
//! keeps, per class, the most blocks it ever had in use at once (bounded by
//! the request limits, like the VM's memory before), and a block wastes at
//! most a third of itself (classes step by 1.5x or 1.33x).
//!
//! A proxy-wasm VM runs one thread, which is what makes the unsynchronised
//! free lists sound as the global allocator; natively (tests) an instance
//! is only ever used from the thread that made it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Block sizes; every power of two among them is also its blocks' alignment.
const CLASSES: [usize; 16] = [
    16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096,
];
const LARGEST: usize = 4096;
/// Classes carve their blocks from chunks this big, aligned to `LARGEST`,
/// so a block at a multiple of its size from a chunk's start is aligned to
/// the largest power of two dividing that size.
const CHUNK: usize = 32 * 1024;
/// Below this alignment any class will do: every class size is a multiple.
const PLAIN_ALIGN: usize = 16;

/// The class of each size for `PLAIN_ALIGN` or less, by `size.div_ceil(16)`.
// Evaluated at compile time: an index out of bounds fails the build.
#[allow(clippy::indexing_slicing)]
const PLAIN: [u8; LARGEST / 16 + 1] = {
    let mut table = [0u8; LARGEST / 16 + 1];
    let (mut units, mut class) = (0, 0);
    while units < table.len() {
        while CLASSES[class] < units * 16 {
            class += 1;
        }
        table[units] = class as u8;
        units += 1;
    }
    table
};

#[derive(Clone, Copy)]
struct Class {
    /// Freed blocks, each holding the address of the next.
    free: *mut u8,
    /// The unused rest of the class's newest chunk.
    next: *mut u8,
    end: *mut u8,
}

pub struct SizeClasses {
    classes: UnsafeCell<[Class; CLASSES.len()]>,
}

// SAFETY: a wasm32 proxy-wasm VM is single-threaded, so the free lists are
// never touched by two threads at once.
#[cfg(target_arch = "wasm32")]
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> SizeClasses {
        let empty = Class {
            free: ptr::null_mut(),
            next: ptr::null_mut(),
            end: ptr::null_mut(),
        };
        SizeClasses {
            classes: UnsafeCell::new([empty; CLASSES.len()]),
        }
    }
}

/// The class that serves `layout`, `None` for the system allocator.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(1);
    if size > LARGEST {
        return None;
    }
    if layout.align() <= PLAIN_ALIGN {
        return PLAIN.get(size.div_ceil(16)).map(|&c| usize::from(c));
    }
    // Rare (SIMD types, page-aligned buffers): the first power of two that
    // holds the size and is the alignment or more.
    let want = size.max(layout.align());
    CLASSES
        .iter()
        .position(|&c| c.is_power_of_two() && c >= want)
}

fn class_size(class: usize) -> usize {
    CLASSES.get(class).copied().unwrap_or(LARGEST)
}

// SAFETY (the whole impl): blocks are handed out once until freed; a
// freed block's first bytes hold the free-list link, which fits because
// the smallest class is 16 bytes. `GlobalAlloc` guarantees `dealloc` and
// `realloc` get the layout the block was allocated with, so they find the
// same class. The methods are not inlined: inlined into every allocation
// site they made the module 16% bigger to save under 1% of a request.
unsafe impl GlobalAlloc for SizeClasses {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return unsafe { System.alloc(layout) };
        };
        let classes = unsafe { &mut *self.classes.get() };
        let Some(c) = classes.get_mut(class) else {
            return ptr::null_mut();
        };
        if !c.free.is_null() {
            let block = c.free;
            c.free = unsafe { block.cast::<*mut u8>().read() };
            return block;
        }
        let size = class_size(class);
        if (c.end as usize).saturating_sub(c.next as usize) < size {
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, LARGEST)) };
            if chunk.is_null() {
                return chunk;
            }
            c.next = chunk;
            c.end = unsafe { chunk.add(CHUNK) };
        }
        let block = c.next;
        c.next = unsafe { block.add(size) };
        block
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return unsafe { System.dealloc(block, layout) };
        };
        let classes = unsafe { &mut *self.classes.get() };
        if let Some(c) = classes.get_mut(class) {
            unsafe { block.cast::<*mut u8>().write(c.free) };
            c.free = block;
        }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_of(layout).is_none() {
            return unsafe { System.alloc_zeroed(layout) };
        }
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` makes a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            (Some(old), Some(new)) if old == new => block,
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    let keep = layout.size().min(new_size);
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, keep);
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_small_layout_gets_a_class_that_holds_and_aligns_it() {
        for align in (0..=12).map(|s| 1usize << s) {
            for size in 0..=LARGEST + 1 {
                let layout = Layout::from_size_align(size, align).unwrap();
                match class_of(layout) {
                    Some(class) => {
                        let c = CLASSES[class];
                        assert!(c >= size.max(1), "{size}/{align} in {c}");
                        // A block's alignment: the largest power of two
                        // dividing its size (chunks are LARGEST-aligned).
                        assert!(1 << c.trailing_zeros() >= align, "{size}/{align} in {c}");
                        // And the smallest class that does.
                        if align <= PLAIN_ALIGN && class > 0 {
                            assert!(
                                CLASSES[class - 1] < size,
                                "{size} could use a smaller class"
                            );
                        }
                    }
                    None => assert!(size > LARGEST || align > LARGEST, "{size}/{align}"),
                }
            }
        }
    }

    /// A small deterministic generator, so a failure repeats.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, below: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % below as u64) as usize
        }
    }

    #[test]
    fn blocks_never_overlap_and_keep_their_bytes_through_realloc() {
        let heap = SizeClasses::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // (pointer, layout, fill byte)
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let check = |p: *mut u8, l: Layout, fill: u8| {
            assert_eq!(p as usize % l.align(), 0, "misaligned {l:?}");
            let bytes = unsafe { std::slice::from_raw_parts(p, l.size()) };
            assert!(
                bytes.iter().all(|&b| b == fill),
                "block of {l:?} was overwritten"
            );
        };
        for step in 0..200_000u32 {
            let fill = (step % 251) as u8;
            match rng.next(4) {
                0 | 1 => {
                    let size = match rng.next(10) {
                        0 => rng.next(20_000),
                        _ => rng.next(600),
                    };
                    let max_shift = if rng.next(20) == 0 { 8 } else { 4 };
                    let align = 1 << rng.next(max_shift);
                    let layout = Layout::from_size_align(size, align).unwrap();
                    let p = unsafe {
                        if rng.next(2) == 0 {
                            heap.alloc(layout)
                        } else {
                            heap.alloc_zeroed(layout)
                        }
                    };
                    assert!(!p.is_null());
                    unsafe { p.write_bytes(fill, size) };
                    live.push((p, layout, fill));
                }
                2 if !live.is_empty() => {
                    let (p, l, f) = live.swap_remove(rng.next(live.len()));
                    check(p, l, f);
                    unsafe { heap.dealloc(p, l) };
                }
                3 if !live.is_empty() => {
                    let at = rng.next(live.len());
                    let (p, l, f) = live[at];
                    let new_size = match rng.next(8) {
                        0 => rng.next(20_000),
                        _ => rng.next(600),
                    };
                    let q = unsafe { heap.realloc(p, l, new_size) };
                    assert!(!q.is_null());
                    let nl = Layout::from_size_align(new_size, l.align()).unwrap();
                    let kept = Layout::from_size_align(l.size().min(new_size), l.align()).unwrap();
                    check(q, kept, f);
                    unsafe { q.write_bytes(fill, new_size) };
                    live[at] = (q, nl, fill);
                }
                _ => {}
            }
            if step % 10_000 == 0 {
                for &(p, l, f) in &live {
                    check(p, l, f);
                }
            }
        }
        for (p, l, f) in live {
            check(p, l, f);
            unsafe { heap.dealloc(p, l) };
        }
    }

    #[test]
    fn a_freed_block_is_reused_by_its_class() {
        let heap = SizeClasses::new();
        let layout = Layout::from_size_align(40, 8).unwrap();
        unsafe {
            let a = heap.alloc(layout);
            heap.dealloc(a, layout);
            assert_eq!(heap.alloc(layout), a);
            // A size in the same class grows in place.
            assert_eq!(heap.realloc(a, layout, 48), a);
        }
    }
}
