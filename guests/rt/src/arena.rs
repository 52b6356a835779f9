//! The guest's allocator: a bump arena for what one call allocates,
//! dlmalloc for the rest.
//!
//! A call into a guest allocates its arguments (the host writes them
//! through `cabi_realloc`), its working values and its result, and frees
//! them all by the time the host has read the result (post-return). A bump
//! pointer serves that in a few instructions where dlmalloc walks its bins;
//! when the arena's last live block is freed, the arena starts over. A
//! block that outlives its call (a guest's cache, a session's state) keeps
//! the arena from starting over until it is freed; meanwhile what does not
//! fit goes to dlmalloc, so such a guest loses the speed, never memory.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

/// Room for a routing decision's strings many times over; a larger request
/// (an SMS body, a push payload) spills to dlmalloc.
const SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Bytes([u8; SIZE]);

struct State {
    /// Offset of the first free byte.
    next: usize,
    /// Blocks handed out and not yet freed.
    live: usize,
}

/// The arena, and `S` for what does not fit in it (dlmalloc in a guest).
pub struct Arena<S> {
    bytes: UnsafeCell<Bytes>,
    state: UnsafeCell<State>,
    spill: S,
}

// SAFETY: a wasm32 guest has one thread; nothing shares the arena. (Natively
// only the unit tests below use one, each its own, from one thread.)
unsafe impl<S: Sync> Sync for Arena<S> {}

impl<S> Arena<S> {
    pub const fn new(spill: S) -> Self {
        Self {
            bytes: UnsafeCell::new(Bytes([0; SIZE])),
            state: UnsafeCell::new(State { next: 0, live: 0 }),
            spill,
        }
    }

    fn base(&self) -> usize {
        self.bytes.get() as usize
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        (self.base()..self.base() + SIZE).contains(&(ptr as usize))
    }

    /// # Safety
    ///
    /// No other reference to the state may be alive (one thread, and no
    /// method holds it across a call to another).
    #[allow(clippy::mut_from_ref)]
    unsafe fn state(&self) -> &mut State {
        // SAFETY: see above.
        unsafe { &mut *self.state.get() }
    }
}

unsafe impl<S: GlobalAlloc> GlobalAlloc for Arena<S> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: no other borrow of the state is alive.
        let state = unsafe { self.state() };
        let fits = (self.base() + state.next)
            .checked_next_multiple_of(layout.align())
            .and_then(|start| Some((start, start.checked_add(layout.size())?)))
            .filter(|&(_, end)| end <= self.base() + SIZE);
        if let Some((start, end)) = fits {
            state.next = end - self.base();
            state.live += 1;
            return start as *mut u8;
        }
        // SAFETY: the caller's layout contract is dlmalloc's.
        unsafe { self.spill.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.owns(ptr) {
            // SAFETY: not the arena's, so dlmalloc's.
            return unsafe { self.spill.dealloc(ptr, layout) };
        }
        // SAFETY: no other borrow of the state is alive.
        let state = unsafe { self.state() };
        state.live -= 1;
        if state.live == 0 {
            state.next = 0;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: not the arena's, so dlmalloc's.
            return unsafe { self.spill.realloc(ptr, layout, new_size) };
        }
        {
            // SAFETY: no other borrow of the state is alive; dropped below.
            let state = unsafe { self.state() };
            let at = ptr as usize - self.base();
            // The newest block grows or shrinks where it is.
            if at + layout.size() == state.next && new_size <= SIZE - at {
                state.next = at + new_size;
                return ptr;
            }
        }
        // SAFETY: same alignment, non-zero size (the caller's contract).
        let moved =
            unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !moved.is_null() {
            // SAFETY: both blocks are live and distinct.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::alloc::System;
    use std::boxed::Box;

    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn the_arena_starts_over_when_its_last_block_is_freed() {
        let arena = Box::new(Arena::new(System));
        unsafe {
            let a = arena.alloc(layout(100));
            let b = arena.alloc(layout(50));
            assert!(arena.owns(a) && arena.owns(b));
            assert_eq!(b as usize, a as usize + 104, "aligned to 8 after a");
            arena.dealloc(a, layout(100));
            // b is still live: no start over.
            assert_eq!(arena.alloc(layout(8)) as usize, b as usize + 56);
            arena.dealloc(b, layout(50));
            arena.dealloc(b.add(56), layout(8));
            assert_eq!(arena.alloc(layout(16)), a, "empty again: from the start");
        }
    }

    #[test]
    fn what_does_not_fit_spills_and_is_freed_there() {
        let arena = Box::new(Arena::new(System));
        unsafe {
            let kept = arena.alloc(layout(SIZE - 64));
            assert!(arena.owns(kept));
            let big = arena.alloc(layout(1024));
            assert!(!big.is_null() && !arena.owns(big));
            big.write_bytes(7, 1024);
            arena.dealloc(big, layout(1024));
            // The kept block still holds the arena: small blocks fit after it.
            let small = arena.alloc(layout(32));
            assert!(arena.owns(small));
            arena.dealloc(small, layout(32));
            arena.dealloc(kept, layout(SIZE - 64));
            // A size no memory holds goes to the spill allocator, which
            // refuses it (on wasm32 the arena's sums are checked for it).
            let huge = Layout::from_size_align(isize::MAX as usize - 64, 8).unwrap();
            assert!(arena.alloc(huge).is_null());
        }
    }

    #[test]
    fn the_newest_block_grows_in_place_and_others_move_with_their_bytes() {
        let arena = Box::new(Arena::new(System));
        unsafe {
            let a = arena.alloc(layout(8));
            a.copy_from_nonoverlapping(b"abcdefgh".as_ptr(), 8);
            assert_eq!(arena.realloc(a, layout(8), 64), a, "newest: in place");
            let b = arena.alloc(layout(8));
            let moved = arena.realloc(a, layout(64), 128);
            assert_ne!(moved, a);
            assert_eq!(core::slice::from_raw_parts(moved, 8), b"abcdefgh");
            let spilled = arena.realloc(moved, layout(128), 2 * SIZE);
            assert!(!arena.owns(spilled));
            assert_eq!(core::slice::from_raw_parts(spilled, 8), b"abcdefgh");
            arena.dealloc(spilled, layout(2 * SIZE));
            arena.dealloc(b, layout(8));
            assert_eq!(
                arena.alloc(layout(8)),
                a,
                "every block freed: from the start"
            );
        }
    }
}
