//! The filter's memory allocators: small blocks by size class, from free
//! lists; larger ones from the system allocator.
//!
//! Why: a request makes about a hundred small allocations (JSON values,
//! strings, header and body buffers, the host's copies of what it hands the
//! module). A free-list pop or push is a few instructions; the system
//! allocators cost far more. In the wasm VM, dlmalloc's bins were about a
//! third of the filter's own instructions; natively, Envoy's allocator took
//! about 270 instructions for an allocation and its free under callgrind
//! (27 ns in a tight loop).
//!
//! `vm` is the wasm VM's allocator (one thread), `threads` the native
//! module's (Envoy's threads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Block sizes; every power of two among them is also its blocks' alignment.
pub(super) const CLASSES: [usize; 16] = [
    16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096,
];
pub(super) const LARGEST: usize = 4096;
/// Below this alignment any class will do: every class size is a multiple.
pub(super) const PLAIN_ALIGN: usize = 16;

/// The class of each size for `PLAIN_ALIGN` or less, by `size.div_ceil(16)`.
// Evaluated at compile time: an index out of bounds fails the build.
#[allow(clippy::indexing_slicing)]
pub(super) const PLAIN: [u8; LARGEST / 16 + 1] = {
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

/// The class that serves `layout`, `None` for the system allocator.
pub(super) fn class_of(layout: Layout) -> Option<usize> {
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

pub(super) fn class_size(class: usize) -> usize {
    CLASSES.get(class).copied().unwrap_or(LARGEST)
}

/// `alloc_zeroed` for an allocator whose classes are `class`: the
/// system's (calloc) for the sizes it leaves to the system.
///
/// # Safety
/// As `GlobalAlloc::alloc_zeroed`.
unsafe fn alloc_zeroed_by(
    heap: &impl GlobalAlloc,
    class: fn(Layout) -> Option<usize>,
    layout: Layout,
) -> *mut u8 {
    if class(layout).is_none() {
        return unsafe { System.alloc_zeroed(layout) };
    }
    let block = unsafe { heap.alloc(layout) };
    if !block.is_null() {
        unsafe { block.write_bytes(0, layout.size()) };
    }
    block
}

/// `realloc` for an allocator whose classes are `class`: in place within a
/// class, the system's between two sizes it leaves to the system, else a
/// new block and a copy.
///
/// # Safety
/// As `GlobalAlloc::realloc`.
unsafe fn realloc_by(
    heap: &impl GlobalAlloc,
    class: fn(Layout) -> Option<usize>,
    block: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // SAFETY: the caller guarantees `new_size` makes a valid layout.
    let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    match (class(layout), class(new_layout)) {
        (Some(old), Some(new)) if old == new => block,
        (None, None) => unsafe { System.realloc(block, layout, new_size) },
        _ => {
            let moved = unsafe { heap.alloc(new_layout) };
            if !moved.is_null() {
                let keep = layout.size().min(new_size);
                unsafe {
                    ptr::copy_nonoverlapping(block, moved, keep);
                    heap.dealloc(block, layout);
                }
            }
            moved
        }
    }
}

#[cfg(any(test, feature = "dynamic-module"))]
pub mod threads;
#[cfg(feature = "wasm")]
pub mod vm;

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
}

/// What both allocators' tests put them through.
#[cfg(test)]
mod exercise {
    use std::alloc::{GlobalAlloc, Layout};

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

    /// Random allocations, frees and reallocations through `heap`, each
    /// block filled and checked: blocks never overlap and keep their bytes.
    pub fn exercise(heap: &impl GlobalAlloc) {
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
}
