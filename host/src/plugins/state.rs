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

/// The epoch-deadline callback of every guest store: the deadline moves by
/// the time spent in host imports since it was set; otherwise the guest is
/// interrupted (classified as a timeout).
pub(crate) fn on_deadline(
    mut ctx: StoreContextMut<'_, GuestState>,
) -> wasmtime::Result<UpdateDeadline> {
    match ctx.data_mut().host_wait.claim(super::engine::EPOCH_TICK) {
        0 => Err(wasmtime::Trap::Interrupt.into()),
        ticks => Ok(UpdateDeadline::Continue(ticks)),
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
