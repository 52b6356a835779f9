//! Per-store host state shared by every world: the (empty) WASI context, the
//! memory cap, and what the guest was granted.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::directory::{Answer, Directory, Lookup};

/// Enforces the memory cap and remembers that it was hit, so a guest that
/// aborts after a failed allocation is reported as "memory", not "trap".
pub(crate) struct MemoryCap {
    pub max_bytes: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k is far beyond any real guest.
        Ok(desired <= 100_000)
    }
}

/// Epoch ticks a guest runs before it yields its thread. A call runs on one
/// of the runtime's worker threads (two on a two-core machine): a guest
/// spinning to its 50 ms deadline in one go would hold every request queued
/// behind it on that thread for as long. In 2 ms slices it holds them at most
/// that long; a decision takes microseconds, so only a stuck or slow guest
/// ever reaches the end of a slice.
pub(crate) const SLICE_TICKS: u64 = 2;

/// A call's deadline, handed out in slices: ticks of the guest's own work
/// left after the current slice.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    left: u64,
}

impl Budget {
    /// A budget of `ticks`; returns it and the first slice to set as the
    /// store's epoch deadline.
    pub fn new(ticks: u64) -> (Self, u64) {
        let slice = ticks.clamp(1, SLICE_TICKS);
        (
            Self {
                left: ticks.saturating_sub(slice),
            },
            slice,
        )
    }

    /// The slice ended: the next slice, or `None` when the budget is spent.
    pub fn next_slice(&mut self) -> Option<u64> {
        if self.left == 0 {
            return None;
        }
        let slice = self.left.min(SLICE_TICKS);
        self.left -= slice;
        Some(slice)
    }
}

/// The epoch-deadline callback of every guest store, at the end of each
/// slice. A call made on the caller's thread ([`GuestState::on_thread`])
/// cannot yield: it is interrupted and its owner makes it again on a fiber.
/// Otherwise the guest yields to the runtime and goes on with the next slice
/// (wasmtime sets its deadline when it resumes, so time spent waiting to be
/// resumed is not counted); with the budget spent it is interrupted (a
/// timeout).
pub(crate) fn on_deadline(
    mut ctx: StoreContextMut<'_, GuestState>,
) -> wasmtime::Result<UpdateDeadline> {
    let data = ctx.data_mut();
    if data.on_thread {
        data.left_thread = true;
        return Err(wasmtime::Trap::Interrupt.into());
    }
    match data.budget.next_slice() {
        None => Err(wasmtime::Trap::Interrupt.into()),
        // tokio's own yield, as wasmtime recommends: the task goes behind the
        // others and behind the timer and I/O drivers, which a plain wake would
        // poll only every 61 polls of the spinning task.
        Some(slice) => Ok(UpdateDeadline::YieldCustom(
            slice,
            Box::pin(tokio::task::yield_now()),
        )),
    }
}

/// The WASI context of every guest store. Guests built with Rust's std
/// import WASI; they get a context that grants nothing: no files, no
/// environment, no arguments, no sockets, and stdio goes nowhere. Clocks and
/// randomness remain (harmless, and useful to a time-of-day router).
pub(crate) fn wasi_granting_nothing() -> WasiCtx {
    WasiCtxBuilder::new()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Data of one guest `Store`.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: MemoryCap,
    pub config: Arc<BTreeMap<String, String>>,
    pub directory: Arc<dyn Directory>,
    /// Answers fetched for this decision after an earlier try missed them.
    pub fetched: Vec<(Lookup, Answer)>,
    /// Look-ups this try could not answer without waiting: its decision is
    /// thrown away, they are fetched, and the decision is made again.
    pub misses: Vec<Lookup>,
    /// The guest's log lines of this try, written once the try stands.
    pub logs: Vec<(tracing::Level, String)>,
    pub budget: Budget,
    /// The call runs on the caller's thread, not on a fiber: it may not
    /// yield, and is interrupted at the end of its first slice.
    pub on_thread: bool,
    /// It was, for that reason.
    pub left_thread: bool,
}

impl GuestState {
    pub fn new(
        config: Arc<BTreeMap<String, String>>,
        directory: Arc<dyn Directory>,
        max_memory_bytes: usize,
    ) -> Self {
        Self {
            wasi: wasi_granting_nothing(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                max_bytes: max_memory_bytes,
                hit: false,
            },
            config,
            directory,
            fetched: Vec::new(),
            misses: Vec::new(),
            logs: Vec::new(),
            budget: Budget::default(),
            on_thread: false,
            left_thread: false,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_handed_out_in_slices() {
        let (mut b, first) = Budget::new(5);
        assert_eq!(first, 2);
        assert_eq!(b.next_slice(), Some(2));
        assert_eq!(b.next_slice(), Some(1));
        assert_eq!(b.next_slice(), None, "5 ticks spent");
        let (mut b, first) = Budget::new(1);
        assert_eq!(first, 1);
        assert_eq!(b.next_slice(), None);
    }
}
