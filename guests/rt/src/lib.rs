//! The little a guest needs once it drops std: an allocator (see `arena`), a panic handler,
//! the canonical ABI's `cabi_realloc` and the C string functions.
//!
//! Why drop std: on wasm32-wasip2, std's panic and allocation-failure paths
//! print to stderr, so every std guest imports `wasi:cli/*` and `wasi:io/*`
//! and the host must build a WASI context for each instance. A guest built on
//! this crate imports only its own world: it has no I/O at all, and the host
//! may instantiate it without WASI.
//!
//! Use it from a guest crate root:
//!
//! ```text
//! #![cfg_attr(target_arch = "wasm32", no_std)]
//! extern crate alloc;
//! use softswitch_guest_rt as _;
//! ```
//!
//! Natively (unit tests, clippy) it is empty and the guest keeps std.
#![no_std]
// Only the allocator and `cabi_realloc` below need it.
#![deny(unsafe_code)]

#[cfg(target_arch = "wasm32")]
extern crate alloc;

// Natively only its unit tests use it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[allow(unsafe_code)]
mod arena;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOC: arena::Arena<dlmalloc::GlobalDlmalloc> = arena::Arena::new(dlmalloc::GlobalDlmalloc);

// std normally brings wasi-libc, whose string functions (`memcmp` and
// friends, which rustc emits calls to) import nothing; without std the
// guest links them itself from the toolchain's self-contained wasi-libc.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
#[link(name = "c")]
unsafe extern "C" {}

/// A panic is a trap: the host discards the instance and falls back, so
/// there is no one to tell the message to and nothing to unwind.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocator export. On wasm32-wasip2 std provides it and
/// wit-bindgen leaves it to std, so a guest without std must bring its own.
/// Same contract and code as wit-bindgen's own for targets without std.
///
/// # Safety
///
/// Called only by the host's canonical ABI lowering (and wit-bindgen's
/// generated code), which passes a power-of-two `align`, and `old_ptr` with
/// `old_len` only as previously returned by this function.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};

    // SAFETY: the caller upholds the contract above.
    let ptr = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable();
    }
    ptr
}
