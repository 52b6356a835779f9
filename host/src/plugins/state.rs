//! Per-store host state shared by every world: the (empty) WASI context, the
//! memory cap, and what the guest was granted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::directory::Directory;

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

/// Time one guest call spent waiting in host imports (a directory look-up
/// that went to the database). The deadline is for the guest's own work, so
/// this time is handed back to it, up to [`HostWait::MAX`] per call: a slow
/// database must not turn into "the guest timed out" under load.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostWait {
    /// Waited, not yet handed back.
    unclaimed: Duration,
    /// Handed back so far in this call.
    granted: Duration,
}

impl HostWait {
    /// Most waiting handed back in one call.
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn record(&mut self, waited: Duration) {
        self.unclaimed += waited;
    }

    /// Extra epoch ticks of `tick` each for the waiting not yet handed back
    /// (0 when there is none, or the per-call cap is used up).
    pub fn claim(&mut self, tick: Duration) -> u64 {
        let grant = self.unclaimed.min(Self::MAX.saturating_sub(self.granted));
        self.unclaimed = Duration::ZERO;
        self.granted += grant;
        (grant.as_micros() / tick.as_micros().max(1)) as u64
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

    /// The slice ended, `extra` ticks handed back: the next slice, or `None`
    /// when the budget is spent.
    pub fn next_slice(&mut self, extra: u64) -> Option<u64> {
        self.left += extra;
        if self.left == 0 {
            return None;
        }
        let slice = self.left.min(SLICE_TICKS);
        self.left -= slice;
        Some(slice)
    }
}

/// The epoch-deadline callback of every guest store, at the end of each
/// slice: the budget gets back the time spent in host imports, and the guest
/// yields to the runtime and goes on with the next slice (wasmtime sets its
/// deadline when it resumes, so time spent waiting to be resumed is not
/// counted); with the budget spent it is interrupted (a timeout).
pub(crate) fn on_deadline(
    mut ctx: StoreContextMut<'_, GuestState>,
) -> wasmtime::Result<UpdateDeadline> {
    let data = ctx.data_mut();
    let extra = data.host_wait.claim(super::engine::EPOCH_TICK);
    match data.budget.next_slice(extra) {
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
    pub guest: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
    pub directory: Arc<dyn Directory>,
    pub host_wait: HostWait,
    pub budget: Budget,
}

impl GuestState {
    pub fn new(
        guest: Arc<str>,
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
            guest,
            config,
            directory,
            host_wait: HostWait::default(),
            budget: Budget::default(),
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
    fn a_budget_is_handed_out_in_slices_plus_what_is_handed_back() {
        let (mut b, first) = Budget::new(5);
        assert_eq!(first, 2);
        assert_eq!(b.next_slice(0), Some(2));
        assert_eq!(b.next_slice(0), Some(1));
        assert_eq!(b.next_slice(0), None, "5 ticks spent");
        let (mut b, first) = Budget::new(1);
        assert_eq!(first, 1);
        assert_eq!(b.next_slice(3), Some(2), "3 ticks of host wait handed back");
        assert_eq!(b.next_slice(0), Some(1));
        assert_eq!(b.next_slice(0), None);
    }

    #[test]
    fn host_waits_are_handed_back_once_and_capped() {
        let tick = Duration::from_millis(1);
        let mut w = HostWait::default();
        assert_eq!(w.claim(tick), 0, "no waiting, no extension");
        w.record(Duration::from_millis(30));
        assert_eq!(w.claim(tick), 30);
        assert_eq!(w.claim(tick), 0, "the same wait is not handed back twice");
        w.record(Duration::from_secs(5));
        assert_eq!(w.claim(tick), 970, "at most HostWait::MAX per call");
        w.record(Duration::from_millis(10));
        assert_eq!(w.claim(tick), 0);
    }
}
