//! The IVR extension point: world `softswitch:ivr/scenario@0.1.0`.
//!
//! A run is one call flow: `run(facts)` on a fresh instance whose imports
//! suspend the guest (wasmtime async) until the media engine is done. The
//! limits differ from the routing guest's, because a run lasts as long as
//! the call:
//!
//! - **CPU between two imports** (`ivr.step_budget_ms`): the epoch callback
//!   measures how long the guest has been running since it last came back
//!   from an import and interrupts it past the budget; meanwhile it yields to
//!   the runtime every few ticks, so a looping guest never holds a worker
//!   thread.
//! - **Memory**: the same per-instance cap as every guest.
//! - **The call's end**: the caller hangs up, every import returns
//!   `hung-up`; a guest that ignores it and keeps calling is interrupted by
//!   the step budget (each import then returns at once), and the run's task
//!   is dropped by its owner anyway (`crate::ivr`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::engine::{EPOCH_TICK, Plugins};
use super::probation::VersionHealth;
use super::state::MemoryCap;
use super::{FailureKind, GuestFailure, PluginError};
use crate::ivr::session::{
    Audio, GatherEnd, GatherOptions, IvrError, MailboxGrant, RecordEnd, RecordRequest, Session,
};

mod bindings {
    wasmtime::component::bindgen!({
        world: "scenario",
        path: "../wit/ivr/0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "softswitch:ivr/voicemail.mailbox": crate::ivr::session::MailboxGrant },
    });
}

use bindings::softswitch::ivr::{
    call as wit_call, config as wit_config, log as wit_log, types as wit, voicemail as wit_vm,
};
use bindings::{Scenario, ScenarioPre};

/// The world's full name, for logs, metrics and `guest check`.
pub const WORLD: &str = "softswitch:ivr/scenario@0.1.0";

/// Epoch ticks between two looks at a running guest: it yields to the
/// runtime this often, and overruns are caught within this much.
const CHECK_TICKS: u64 = 10;

/// Store data of one run.
pub struct IvrState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
    guest: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    pub session: Session,
    /// When the guest last got control back (None while in an import).
    running_since: Option<Instant>,
    step_budget: Duration,
    /// Set when the step budget ran out, to tell a timeout from a trap.
    overran: bool,
}

impl WasiView for IvrState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl IvrState {
    /// An import's result for the guest; a scripted call's transcript
    /// notes the errors (a hang-up shows already).
    fn reply<T>(&mut self, r: Result<T, IvrError>) -> WitResult<T> {
        if let Err(e) = &r
            && *e != IvrError::HungUp
        {
            self.session.note(|| format!("  {e}"));
        }
        Ok(r.map_err(wit_error))
    }

    /// Runs an import: the time in it is not the guest's.
    async fn host<T>(&mut self, f: impl AsyncFnOnce(&mut Session) -> T) -> T {
        self.running_since = None;
        let out = f(&mut self.session).await;
        self.running_since = Some(Instant::now());
        out
    }
}

fn on_epoch(mut ctx: StoreContextMut<'_, IvrState>) -> wasmtime::Result<UpdateDeadline> {
    let state = ctx.data_mut();
    if let Some(since) = state.running_since
        && since.elapsed() > state.step_budget
    {
        state.overran = true;
        return Err(wasmtime::Trap::Interrupt.into());
    }
    Ok(UpdateDeadline::Yield(CHECK_TICKS))
}

fn wit_error(e: IvrError) -> wit::IvrError {
    match e {
        IvrError::HungUp => wit::IvrError::HungUp,
        IvrError::NotFound(m) => wit::IvrError::NotFound(m),
        IvrError::Forbidden(m) => wit::IvrError::Forbidden(m),
        IvrError::Invalid(m) => wit::IvrError::Invalid(m),
        IvrError::Other(m) => wit::IvrError::Other(m),
    }
}

fn host_error(e: wit::IvrError) -> IvrError {
    match e {
        wit::IvrError::HungUp => IvrError::HungUp,
        wit::IvrError::NotFound(m) => IvrError::NotFound(m),
        wit::IvrError::Forbidden(m) => IvrError::Forbidden(m),
        wit::IvrError::Invalid(m) => IvrError::Invalid(m),
        wit::IvrError::Other(m) => IvrError::Other(m),
    }
}

type WitResult<T> = wasmtime::Result<Result<T, wit::IvrError>>;

fn audio(a: wit::Audio) -> Audio {
    match a {
        wit::Audio::Prompt(p) => Audio::Prompt(p),
        wit::Audio::Recording(id) => Audio::Recording(id),
        wit::Audio::Beep => Audio::Beep,
        wit::Audio::Silence(ms) => Audio::Silence(ms),
    }
}

fn key(k: Option<char>) -> Option<String> {
    k.map(String::from)
}

impl wit::Host for IvrState {}

impl wit_call::Host for IvrState {
    async fn answer(&mut self) -> WitResult<()> {
        let r = self.host(async |s| s.answer().await).await;
        self.reply(r)
    }

    async fn hangup(&mut self, cause: u16) -> wasmtime::Result<()> {
        self.session.hangup(cause);
        Ok(())
    }

    async fn play(
        &mut self,
        items: Vec<wit::Audio>,
        loops: u32,
        interrupt_keys: String,
    ) -> WitResult<Option<String>> {
        let items: Vec<Audio> = items.into_iter().map(audio).collect();
        let r = self
            .host(async |s| s.play(&items, loops, &interrupt_keys).await)
            .await;
        self.reply(r.map(key))
    }

    async fn say_digits(
        &mut self,
        digits: String,
        interrupt_keys: String,
    ) -> WitResult<Option<String>> {
        let r = self
            .host(async |s| s.say_digits(&digits, &interrupt_keys).await)
            .await;
        self.reply(r.map(key))
    }

    async fn say_number(&mut self, n: u32, interrupt_keys: String) -> WitResult<Option<String>> {
        let r = self
            .host(async |s| s.say_number(n, &interrupt_keys).await)
            .await;
        self.reply(r.map(key))
    }

    async fn gather(&mut self, o: wit::GatherOptions) -> WitResult<wit::Gathered> {
        let options = GatherOptions {
            prompt: o.prompt.into_iter().map(audio).collect(),
            min_digits: o.min_digits,
            max_digits: o.max_digits,
            finish_key: o.finish_key.and_then(|k| k.chars().next()),
            timeout: Duration::from_millis(o.timeout_ms.into()),
            inter_digit_timeout: Duration::from_millis(o.inter_digit_timeout_ms.into()),
        };
        let r = self.host(async |s| s.gather(&options).await).await;
        self.reply(r.map(|(digits, end)| wit::Gathered {
            digits,
            end: match end {
                GatherEnd::MaxDigits => wit::GatherEnd::MaxDigits,
                GatherEnd::FinishKey => wit::GatherEnd::FinishKey,
                GatherEnd::Timeout => wit::GatherEnd::Timeout,
            },
        }))
    }

    async fn record(&mut self, o: wit::RecordOptions) -> WitResult<wit::Recording> {
        let request = RecordRequest {
            max_seconds: o.max_seconds,
            silence_timeout: o
                .silence_timeout_ms
                .map(|ms| Duration::from_millis(ms.into())),
            finish_keys: o.finish_keys,
            beep: o.beep,
        };
        let r = self.host(async |s| s.record(&request).await).await;
        self.reply(r.map(|rec| wit::Recording {
            id: rec.id,
            duration_ms: rec.duration_ms,
            end: match rec.end {
                RecordEnd::MaxDuration => wit::RecordEnd::MaxDuration,
                RecordEnd::Silence => wit::RecordEnd::Silence,
                RecordEnd::FinishKey => wit::RecordEnd::FinishKey,
                RecordEnd::HungUp => wit::RecordEnd::HungUp,
            },
        }))
    }

    async fn pause(&mut self, ms: u32) -> WitResult<()> {
        let r = self.host(async |s| s.pause(ms).await).await;
        self.reply(r)
    }
}

impl wit_vm::Host for IvrState {}

impl IvrState {
    fn grant(&self, mailbox: &Resource<MailboxGrant>) -> wasmtime::Result<MailboxGrant> {
        Ok(self.table.get(mailbox)?.clone())
    }
}

impl wit_vm::HostMailbox for IvrState {
    async fn open(&mut self, login: String) -> WitResult<Resource<MailboxGrant>> {
        match self.session.open_mailbox(&login) {
            Ok(grant) => Ok(Ok(self.table.push(grant)?)),
            Err(e) => self.reply(Err(e)),
        }
    }

    async fn owner(&mut self, mailbox: Resource<MailboxGrant>) -> wasmtime::Result<String> {
        Ok(self.grant(&mailbox)?.owner)
    }

    async fn list(&mut self, mailbox: Resource<MailboxGrant>) -> WitResult<Vec<wit::Voicemail>> {
        let grant = self.grant(&mailbox)?;
        let r = self.host(async |s| s.list(&grant).await).await;
        self.reply(r.map(|list| {
            list.into_iter()
                .map(|m| wit::Voicemail {
                    id: m.id,
                    caller: m.caller,
                    caller_display_name: m.caller_display_name,
                    received_at: m.received_at,
                    duration_ms: m.duration_ms,
                    heard: m.heard,
                })
                .collect()
        }))
    }

    async fn play(
        &mut self,
        mailbox: Resource<MailboxGrant>,
        id: u64,
        interrupt_keys: String,
    ) -> WitResult<Option<String>> {
        let grant = self.grant(&mailbox)?;
        let r = self
            .host(async |s| s.play_message(&grant, id, &interrupt_keys).await)
            .await;
        self.reply(r.map(key))
    }

    async fn mark_heard(&mut self, mailbox: Resource<MailboxGrant>, id: u64) -> WitResult<()> {
        let grant = self.grant(&mailbox)?;
        let r = self.host(async |s| s.mark_heard(&grant, id).await).await;
        self.reply(r)
    }

    async fn delete(&mut self, mailbox: Resource<MailboxGrant>, id: u64) -> WitResult<()> {
        let grant = self.grant(&mailbox)?;
        let r = self.host(async |s| s.delete(&grant, id).await).await;
        self.reply(r)
    }

    async fn deposit(&mut self, mailbox: Resource<MailboxGrant>, recording: u64) -> WitResult<u64> {
        let grant = self.grant(&mailbox)?;
        let r = self
            .host(async |s| s.deposit(&grant, recording).await)
            .await;
        self.reply(r)
    }

    async fn play_greeting(
        &mut self,
        mailbox: Resource<MailboxGrant>,
        interrupt_keys: String,
    ) -> WitResult<Option<String>> {
        let grant = self.grant(&mailbox)?;
        let r = self
            .host(async |s| s.play_greeting(&grant, &interrupt_keys).await)
            .await;
        self.reply(r.map(key))
    }

    async fn save_greeting(
        &mut self,
        mailbox: Resource<MailboxGrant>,
        recording: u64,
    ) -> WitResult<()> {
        let grant = self.grant(&mailbox)?;
        let r = self
            .host(async |s| s.save_greeting(&grant, recording).await)
            .await;
        self.reply(r)
    }

    async fn clear_greeting(&mut self, mailbox: Resource<MailboxGrant>) -> WitResult<()> {
        let grant = self.grant(&mailbox)?;
        let r = self.host(async |s| s.clear_greeting(&grant).await).await;
        self.reply(r)
    }

    async fn drop(&mut self, mailbox: Resource<MailboxGrant>) -> wasmtime::Result<()> {
        self.table.delete(mailbox)?;
        Ok(())
    }
}

impl wit_log::Host for IvrState {
    async fn log(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        // Guests are untrusted: cap what one line may put in the host's log.
        let mut message = message;
        if message.len() > 1024 {
            let mut cut = 1024;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.session.note(|| format!("log {message}"));
        let guest = &*self.guest;
        let call_id = &self.session.facts.call_id;
        match level {
            wit_log::Level::Trace => tracing::trace!(guest, call_id, "{message}"),
            wit_log::Level::Debug => tracing::debug!(guest, call_id, "{message}"),
            wit_log::Level::Info => tracing::info!(guest, call_id, "{message}"),
            wit_log::Level::Warn => tracing::warn!(guest, call_id, "{message}"),
            wit_log::Level::Error => tracing::error!(guest, call_id, "{message}"),
        }
        Ok(())
    }
}

impl wit_config::Host for IvrState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.get(&key).cloned())
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    /// `run` returned `ok` (or `err(hung-up)`).
    Completed,
    /// `run` returned an error of its own.
    GuestError(IvrError),
    /// Trap, overrun, memory cap, instantiation failure.
    Failed(GuestFailure),
}

/// A compiled, linked IVR guest.
pub struct IvrGuest {
    name: Arc<str>,
    plugins: Plugins,
    pre: ScenarioPre<IvrState>,
    config: Arc<BTreeMap<String, String>>,
    step_budget: Duration,
    health: VersionHealth,
}

impl IvrGuest {
    /// Compiles and links the guest at `path`; refuses a component of another world.
    pub async fn load(
        plugins: &Plugins,
        name: &str,
        path: &Path,
        config: BTreeMap<String, String>,
        step_budget: Duration,
    ) -> Result<Self, PluginError> {
        let component: Component = plugins.compile_file(path).await?;
        Self::link(plugins, name, path, &component, config, step_budget)
    }

    /// Links a compiled component; refuses one of another world.
    pub fn link(
        plugins: &Plugins,
        name: &str,
        path: &Path,
        component: &Component,
        config: BTreeMap<String, String>,
        step_budget: Duration,
    ) -> Result<Self, PluginError> {
        let mut linker: Linker<IvrState> = Linker::new(&plugins.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        Scenario::add_to_linker::<IvrState, HasSelf<IvrState>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            path: path.to_path_buf(),
            expected: WORLD,
            message: format!("{e:#}").replace('\n', " "),
        };
        let instance_pre = linker.instantiate_pre(component).map_err(wrong_world)?;
        let pre = ScenarioPre::new(instance_pre).map_err(wrong_world)?;
        Ok(Self {
            name: name.into(),
            plugins: plugins.clone(),
            pre,
            config: Arc::new(config),
            step_budget,
            health: VersionHealth::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls (flows run) and failures of this version, for its probation.
    pub fn health(&self) -> &VersionHealth {
        &self.health
    }

    fn failure(&self, kind: FailureKind, detail: impl Into<String>) -> GuestFailure {
        self.health.failed(kind);
        let failure = GuestFailure {
            guest: self.name.to_string(),
            world: WORLD,
            kind,
            detail: detail.into(),
        };
        self.plugins
            .metrics
            .guest_failures
            .with_label_values(&[&*self.name, WORLD, kind.as_str()])
            .inc();
        failure
    }

    /// Runs the flow on a fresh instance; the session comes back for the
    /// caller to close the media.
    pub async fn run(&self, session: Session) -> (RunOutcome, Session) {
        self.health.call();
        // Held until the store below is dropped (declared before it). A flow
        // holds its slot for the whole call.
        let _slot = match self.plugins.instance_slot(WORLD).await {
            Ok(slot) => slot,
            Err(e) => {
                let failure = self.failure(FailureKind::Overloaded, e.to_string());
                return (RunOutcome::Failed(failure), session);
            }
        };
        let facts = session.facts.clone();
        let state = IvrState {
            wasi: super::state::wasi_granting_nothing(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                max_bytes: self.plugins.options.memory_limit_bytes,
                hit: false,
            },
            guest: self.name.clone(),
            config: self.config.clone(),
            session,
            running_since: Some(Instant::now()),
            step_budget: self.step_budget,
            overran: false,
        };
        let mut store = Store::new(&self.plugins.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(CHECK_TICKS);
        store.epoch_deadline_callback(on_epoch);
        let outcome = match self.pre.instantiate_async(&mut store).await {
            Err(e) => RunOutcome::Failed(self.failure(FailureKind::Instantiate, format!("{e:#}"))),
            Ok(bindings) => {
                let wit_facts = wit::CallFacts {
                    service: facts.service,
                    args: facts.args,
                    caller_login: facts.caller_login,
                    caller_id: facts.caller_id,
                    caller_display_name: facts.caller_display_name,
                    callee: facts.callee,
                    language: facts.language,
                    call_id: facts.call_id,
                };
                match bindings.call_run(&mut store, &wit_facts).await {
                    Ok(Ok(())) | Ok(Err(wit::IvrError::HungUp)) => RunOutcome::Completed,
                    Ok(Err(e)) => RunOutcome::GuestError(host_error(e)),
                    Err(e) => {
                        let data = store.data();
                        let kind = if data.limits.hit {
                            FailureKind::Memory
                        } else if data.overran {
                            FailureKind::Timeout
                        } else {
                            FailureKind::Trap
                        };
                        RunOutcome::Failed(self.failure(kind, format!("{e:#}").replace('\n', " ")))
                    }
                }
            }
        };
        let state = store.into_data();
        (outcome, state.session)
    }
}

/// The epoch tick the budget is measured in, re-exported for the docs.
pub const TICK: Duration = EPOCH_TICK;
