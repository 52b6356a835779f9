//! Per-store host state shared by every world: the (empty) WASI context, the
//! memory cap, and what the guest was granted.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
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

/// Data of one guest `Store`.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: MemoryCap,
    pub guest: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
    pub directory: Arc<dyn Directory>,
}

impl GuestState {
    pub fn new(
        guest: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        directory: Arc<dyn Directory>,
        max_memory_bytes: usize,
    ) -> Self {
        // Guests built with Rust's std import WASI; they get a context that grants
        // nothing: no files, no environment, no arguments, no sockets, and stdio
        // goes nowhere. Clocks and randomness remain (harmless, and useful to a
        // time-of-day router).
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: MemoryCap {
                max_bytes: max_memory_bytes,
                hit: false,
            },
            guest,
            config,
            directory,
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
