//! The wasmtime engine and the compiled-component cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;
use super::state::GuestState;
use crate::metrics::Metrics;

/// One epoch tick. Deadlines are counted in ticks, so this is their resolution.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Fiber stack of an async guest call: wasmtime's default, above the 512 KiB
/// wasm stack limit it must exceed.
const ASYNC_STACK_SIZE: usize = 2 << 20;

/// Limits every guest call runs under.
#[derive(Debug, Clone)]
pub struct PluginsOptions {
    /// Where compiled components are cached across restarts.
    pub cache_dir: PathBuf,
    /// Linear-memory cap per instance, bytes.
    pub memory_limit_bytes: usize,
    /// Deadline of one guest call.
    pub deadline: Duration,
    /// Deadline of one call of an SMS or push provider guest.
    pub provider_deadline: Duration,
    /// Warm instances kept per guest (0: a fresh instance for every call).
    pub warm_instances: usize,
    /// Instances alive at once, every guest and world together, warm ones
    /// included: the size of the pooling allocator.
    pub max_instances: u32,
    /// Longest a call waits for an instance slot when all are in use.
    pub instance_wait: Duration,
}

impl PluginsOptions {
    pub fn from_config(config: &crate::config::Config, data_dir: &Path) -> Self {
        Self {
            cache_dir: config.cache_dir(data_dir),
            memory_limit_bytes: (config.plugins.memory_limit_mib as usize) << 20,
            deadline: Duration::from_millis(config.plugins.deadline_ms),
            provider_deadline: Duration::from_millis(config.plugins.provider_deadline_ms),
            warm_instances: config.plugins.warm_instances,
            max_instances: config.plugins.max_instances,
            instance_wait: Duration::from_millis(config.plugins.instance_wait_ms),
        }
    }
}

/// The engine, its linker for each world, and the options. Cheap to clone.
#[derive(Clone)]
pub struct Plugins {
    pub(crate) engine: Engine,
    pub(crate) routing_linker: Arc<Linker<GuestState>>,
    pub(crate) options: Arc<PluginsOptions>,
    pub(crate) metrics: Metrics,
    slots: Arc<InstanceSlots>,
}

/// Admission to the instance pool. The pooling allocator refuses an
/// instance outright when its slots are all taken ("maximum concurrent
/// limit"), and a routing call holds its instance while its directory
/// look-ups wait for the database, so a burst of calls on a slow database
/// used to fail for want of a slot. Every instance (warm ones included)
/// holds a permit for its lifetime instead, and a call that finds none free
/// waits for one, in arrival order, up to `instance_wait`.
struct InstanceSlots {
    permits: Arc<tokio::sync::Semaphore>,
    /// Calls waiting for a permit now: a warm instance given back while
    /// someone waits is dropped, so its slot goes to the waiter.
    waiting: AtomicUsize,
}

/// One instance's claim on a pool slot; released when dropped, which must
/// be after the instance's `Store` (declare it first, or as a later field).
pub(crate) struct InstanceSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    alive: prometheus::IntGauge,
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.alive.dec();
    }
}

/// No slot came free in time; the call fails with [`super::FailureKind::Overloaded`].
#[derive(Debug)]
pub(crate) struct NoSlot {
    pub waited: Duration,
    pub slots: u32,
}

impl std::fmt::Display for NoSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "all {} instance slots stayed in use for {} ms (plugins.max_instances, plugins.instance_wait_ms)",
            self.slots,
            self.waited.as_millis()
        )
    }
}

fn ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}

impl Plugins {
    pub fn new(options: PluginsOptions, metrics: Metrics) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Epoch interruption rather than fuel: a load and compare at loop heads
        // (~10 % on a decision) against ~15 % for fuel, and a deadline in time is
        // what a SIP transaction cares about.
        config.epoch_interruption(true);
        // The pooling allocator makes instantiation a few µs (slots are reused and
        // memory is reset with madvise), which lets a trapped instance be thrown
        // away and replaced without a measurable cost.
        //
        // Sized from `plugins.max_instances`, with the semaphore in
        // [`InstanceSlots`] keeping the instances alive within it. Core
        // instances are only counted (their state is allocated as needed), so
        // their bound is the per-component one times the slots. Memories,
        // tables and stacks are real pools: a memory slot reserves about 4 GiB
        // of address space (no memory until used), a table slot a few hundred
        // KiB, a
        // stack 2 MiB. Our guests have one memory and one or two tables each;
        // twice the slots lets a component with a second memory (an old WASI
        // adapter) still fit. A call needs one stack while it runs.
        let slots = options.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(16))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(2))
            .total_stacks(slots)
            .max_memories_per_component(4)
            .max_core_instances_per_component(16)
            .max_memory_size(options.memory_limit_bytes)
            // Fresh instances: reuse a slot's first pages instead of faulting
            // them in again after every instance.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config.async_stack_size(ASYNC_STACK_SIZE);
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        super::routing::add_to_linker(&mut linker)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        let slots = Arc::new(InstanceSlots {
            permits: Arc::new(tokio::sync::Semaphore::new(slots as usize)),
            waiting: AtomicUsize::new(0),
        });
        Ok(Self {
            engine,
            routing_linker: Arc::new(linker),
            options: Arc::new(options),
            metrics,
            slots,
        })
    }

    /// A slot for one new instance of a guest of `world`: at once when one is
    /// free, otherwise after waiting (counted) up to `instance_wait`.
    pub(crate) async fn instance_slot(&self, world: &str) -> Result<InstanceSlot, NoSlot> {
        let slot = |permit| {
            self.metrics.guest_instances.inc();
            InstanceSlot {
                _permit: permit,
                alive: self.metrics.guest_instances.clone(),
            }
        };
        if let Ok(permit) = self.slots.permits.clone().try_acquire_owned() {
            return Ok(slot(permit));
        }
        self.metrics
            .guest_instance_waits
            .with_label_values(&[world])
            .inc();
        self.slots.waiting.fetch_add(1, Ordering::SeqCst);
        let acquired = tokio::time::timeout(
            self.options.instance_wait,
            self.slots.permits.clone().acquire_owned(),
        )
        .await;
        self.slots.waiting.fetch_sub(1, Ordering::SeqCst);
        match acquired {
            Ok(Ok(permit)) => Ok(slot(permit)),
            // Timed out (the semaphore is never closed).
            _ => Err(NoSlot {
                waited: self.options.instance_wait,
                slots: self.options.max_instances,
            }),
        }
    }

    /// Whether calls are waiting for a slot: a warm instance should then be
    /// dropped rather than kept, so that its slot goes to one of them.
    pub(crate) fn slot_wanted(&self) -> bool {
        self.slots.waiting.load(Ordering::SeqCst) > 0
    }

    /// Epoch ticks for one call's deadline.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        ticks(self.options.deadline)
    }

    /// Epoch ticks for one provider call's deadline.
    pub(crate) fn provider_deadline_ticks(&self) -> u64 {
        ticks(self.options.provider_deadline)
    }

    /// Compiles a component, or loads it from the cache when these exact bytes
    /// were compiled before. Compilation takes 0.1–0.3 s per guest, so a restart
    /// with many guests would otherwise be slow. An entry written by another
    /// wasmtime version or configuration is refused by wasmtime's header check,
    /// recompiled and overwritten.
    pub fn compile(&self, path: &Path, bytes: &[u8]) -> Result<Component, PluginError> {
        let hash = sha256_hex(bytes);
        let cached = self.options.cache_dir.join(format!("{hash}.cwasm"));
        if cached.is_file() {
            match deserialize_cached(&self.engine, &cached) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %cached.display(), error = %e, "ignoring unusable compiled-guest cache entry")
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| PluginError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}").replace('\n', " "),
        })?;
        if let Err(e) = write_cache(&cached, &component) {
            // The cache is an optimisation: a read-only data dir must not stop the switch.
            tracing::warn!(path = %cached.display(), error = %e, "cannot write compiled-guest cache");
        }
        Ok(component)
    }
}

impl Plugins {
    /// Reads and compiles the component at `path` off the reactor (a
    /// compile takes a tenth of a second or more).
    pub(crate) async fn compile_file(&self, path: &Path) -> Result<Component, PluginError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| PluginError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        self.compile_off_reactor(path, bytes).await
    }

    /// Compiles `bytes` (the component read from `path`) on a blocking thread.
    pub(crate) async fn compile_off_reactor(
        &self,
        path: &Path,
        bytes: Vec<u8>,
    ) -> Result<Component, PluginError> {
        let compiler = self.clone();
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || compiler.compile(&owned, &bytes))
            .await
            .map_err(|e| PluginError::Engine(e.to_string()))?
    }
}

#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file is one this host wrote (atomic rename into its own cache
    // directory, named by the SHA-256 of the source component); wasmtime checks
    // the header against the engine's configuration and version before use.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_cache(path: &Path, component: &Component) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = tempfile_in(dir)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    let n: u64 = rand::random();
    Ok(dir.join(format!(".tmp-{n:016x}")))
}

/// Hex SHA-256 of a guest file: its version identity in logs and `/guests`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Advances the engine's epoch every tick for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch ticker: guest deadlines will not fire");
    }
}
