//! The routing extension point: world `softswitch:routing/router@0.1.0`.
//!
//! [`RoutingGuest`] is one loaded version of a routing guest with its warm
//! instances; [`Router`] is what the switch calls: it picks the current
//! version, applies the limits, validates the decision and turns any failure
//! into the configured fallback.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::engine::Plugins;
use super::probation::VersionHealth;
use super::state::GuestState;
use super::{FailureKind, GuestFailure, PluginError};
use crate::directory::{Answer, DirAccount, DirGateway, Directory, DirectoryError, Lookup};

// Public (hidden) only so the fuzz targets can build the values a guest
// returns; nothing else should name the generated types.
#[doc(hidden)]
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "router",
        path: "../wit/routing/0.1.0",
        // The imports never wait (see `RoutingGuest::call`), so a decision
        // can run on the caller's thread; the export is also called async,
        // on a fiber, for a guest too slow for that.
        imports: { default: trappable },
        exports: { default: async },
    });
}

use bindings::softswitch::routing::{
    config as wit_config, directory as wit_dir, log as wit_log, types as wit,
};
pub(crate) use bindings::{Router as RouterBindings, RouterPre};

/// The world's full name, for logs, metrics and `guest check`.
pub const WORLD: &str = "softswitch:routing/router@0.1.0";

pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    RouterBindings::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)
}

// ---------------------------------------------------------------------------
// Host side of the imports.

fn to_wit_account(a: DirAccount) -> wit_dir::Account {
    wit_dir::Account {
        login: a.login,
        phone: a.phone,
        username: a.username,
        display_name: a.display_name,
        voicemail_enabled: a.voicemail_enabled,
    }
}

fn to_wit_gateway(g: DirGateway) -> wit_dir::Gateway {
    wit_dir::Gateway {
        name: g.name,
        prefix: g.prefix,
    }
}

impl GuestState {
    /// A look-up answered without waiting: fetched earlier for this
    /// decision, or at hand in the directory. Anything else is a miss: the
    /// guest gets a placeholder and this try's decision will not stand.
    fn look_up(&mut self, lookup: Lookup) -> wasmtime::Result<Answer> {
        if let Some((_, answer)) = self.fetched.iter().find(|(l, _)| *l == lookup) {
            return Ok(answer.clone());
        }
        match self.directory.peek(&lookup) {
            Some(answer) => Ok(answer?),
            None => {
                let placeholder = lookup.placeholder();
                if !self.misses.contains(&lookup) {
                    self.misses.push(lookup);
                }
                Ok(placeholder)
            }
        }
    }

    fn account(&mut self, lookup: Lookup) -> wasmtime::Result<Option<wit_dir::Account>> {
        Ok(match self.look_up(lookup)? {
            Answer::Account(a) => a.map(to_wit_account),
            _ => None,
        })
    }
}

impl wit_dir::Host for GuestState {
    fn account_by_login(&mut self, login: String) -> wasmtime::Result<Option<wit_dir::Account>> {
        self.account(Lookup::AccountByLogin(login))
    }
    fn account_by_phone(&mut self, phone: String) -> wasmtime::Result<Option<wit_dir::Account>> {
        self.account(Lookup::AccountByPhone(phone))
    }
    fn account_by_username(
        &mut self,
        username: String,
    ) -> wasmtime::Result<Option<wit_dir::Account>> {
        self.account(Lookup::AccountByUsername(username))
    }
    fn is_registered(&mut self, login: String) -> wasmtime::Result<bool> {
        Ok(matches!(
            self.look_up(Lookup::Registered(login))?,
            Answer::Registered(true)
        ))
    }
    fn gateway_for(&mut self, number: String) -> wasmtime::Result<Option<wit_dir::Gateway>> {
        Ok(match self.look_up(Lookup::GatewayFor(number))? {
            Answer::Gateway(g) => g.map(to_wit_gateway),
            _ => None,
        })
    }
}

impl wit_log::Host for GuestState {
    fn log(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        // Guests are untrusted: cap what one line may put in the host's log.
        let mut message = message;
        if message.len() > 1024 {
            let mut end = 1024;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        // Held until the try stands: a try made again must not log twice.
        let level = match level {
            wit_log::Level::Trace => tracing::Level::TRACE,
            wit_log::Level::Debug => tracing::Level::DEBUG,
            wit_log::Level::Info => tracing::Level::INFO,
            wit_log::Level::Warn => tracing::Level::WARN,
            wit_log::Level::Error => tracing::Level::ERROR,
        };
        if self.logs.len() < MAX_LOG_LINES {
            self.logs.push((level, message));
        }
        Ok(())
    }
}

impl wit_config::Host for GuestState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.get(&key).cloned())
    }
}

impl wit::Host for GuestState {}

// ---------------------------------------------------------------------------
// Host-side request and decision types (the SIP layer never sees WIT types).

/// What is being routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Call,
    Message,
}

/// Transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
    Internal,
}

/// Why the switch asks (first attempt, or a call that was not answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Initial,
    NoAnswer,
    Busy,
    Declined,
    Unavailable,
}

/// One routing question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    pub kind: Kind,
    pub caller_login: String,
    pub caller_display_name: Option<String>,
    pub authenticated: bool,
    pub target: String,
    pub transport: Transport,
    pub source_address: String,
    pub dialplan_rule: String,
    pub reason: Reason,
}

/// Where a call or message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum RouteDecision {
    ToUser { login: String },
    ToGateway { gateway: String, number: String },
    ToService { name: String, args: Vec<String> },
    Reject { code: u16, reason: String },
}

/// Caller presentation toward the callee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallerId {
    pub display_name: Option<String>,
    pub user: Option<String>,
}

/// A decision in one line, as `softswitch route` prints it and `softswitch
/// guest test` cases expect it: `to-user bob`, `to-gateway carrier 4812
/// (caller-id Alice <48600111222>)`, `to-service voicemail-playback alice
/// 230`, `reject 404 Not Found`.
pub fn describe(decision: &RouteDecision, caller_id: Option<&CallerId>) -> String {
    let mut line = match decision {
        RouteDecision::ToUser { login } => format!("to-user {login}"),
        RouteDecision::ToGateway { gateway, number } => format!("to-gateway {gateway} {number}"),
        RouteDecision::ToService { name, args } => format!("to-service {name} {}", args.join(" "))
            .trim_end()
            .to_string(),
        RouteDecision::Reject { code, reason } => format!("reject {code} {reason}"),
    };
    if let Some(cid) = caller_id {
        line.push_str(&format!(
            " (caller-id {} <{}>)",
            cid.display_name.as_deref().unwrap_or("-"),
            cid.user.as_deref().unwrap_or("-")
        ));
    }
    line
}

/// A decision with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Routed {
    #[serde(flatten)]
    pub decision: RouteDecision,
    pub caller_id: Option<CallerId>,
    /// Guest that decided.
    pub guest: String,
    /// Set when the guest failed and this is the fallback decision.
    pub fallback: Option<&'static str>,
}

fn to_wit_request(r: &RouteRequest) -> wit::RouteRequest {
    wit::RouteRequest {
        kind: match r.kind {
            Kind::Call => wit::Kind::Call,
            Kind::Message => wit::Kind::Message,
        },
        caller: wit::Caller {
            login: r.caller_login.clone(),
            display_name: r.caller_display_name.clone(),
            authenticated: r.authenticated,
        },
        target: r.target.clone(),
        source: wit::Source {
            transport: match r.transport {
                Transport::Udp => wit::Transport::Udp,
                Transport::Tcp => wit::Transport::Tcp,
                Transport::Tls => wit::Transport::Tls,
                Transport::Ws => wit::Transport::Ws,
                Transport::Wss => wit::Transport::Wss,
                Transport::Internal => wit::Transport::Internal,
            },
            address: r.source_address.clone(),
        },
        dialplan_rule: r.dialplan_rule.clone(),
        reason: match r.reason {
            Reason::Initial => wit::Reason::Initial,
            Reason::NoAnswer => wit::Reason::NoAnswer,
            Reason::Busy => wit::Reason::Busy,
            Reason::Declined => wit::Reason::Declined,
            Reason::Unavailable => wit::Reason::Unavailable,
        },
    }
}

/// Tries of one decision: each may find look-ups missing and fetch them
/// (the caller, then the callee or the gateway, ...).
const MAX_TRIES: usize = 5;

/// Log lines one decision may write.
const MAX_LOG_LINES: usize = 32;

/// How a failed look-up fails the decision.
fn directory_failure(e: &DirectoryError) -> FailureKind {
    match e {
        DirectoryError::Denied(_) => FailureKind::Denied,
        DirectoryError::Unavailable(_) => FailureKind::Directory,
    }
}

fn log_line(guest: &str, level: tracing::Level, message: &str) {
    match level {
        tracing::Level::TRACE => tracing::trace!(guest, "{message}"),
        tracing::Level::DEBUG => tracing::debug!(guest, "{message}"),
        tracing::Level::INFO => tracing::info!(guest, "{message}"),
        tracing::Level::WARN => tracing::warn!(guest, "{message}"),
        tracing::Level::ERROR => tracing::error!(guest, "{message}"),
    }
}

/// Longest string a guest may put in a decision field; SIP user parts and
/// reason phrases beyond this are a guest bug, not a routing choice.
const MAX_FIELD: usize = 256;

fn field_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FIELD && !s.chars().any(|c| c.is_control())
}

/// A gateway number or caller-id user: it is written as the user part of
/// `sip:{user}@host` in the outbound INVITE (Request-URI, To, From), so it
/// must be an RFC 3261 §25.1 `user` (unreserved, `%` escapes, `&=+$,/`).
/// `;` and `?` are refused too, though RFC 3261 allows them: rsip 0.4 (and
/// so this switch, on the way back) cannot parse a URI with them there.
/// Found by fuzzing: `"` or a space made an INVITE nobody could parse.
fn uri_user_ok(s: &str) -> bool {
    let b = s.as_bytes();
    field_ok(s)
        && b.iter().enumerate().all(|(i, &c)| match c {
            b'%' => b
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
            c => c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,/".contains(&c),
        })
}

/// Validates what the guest returned; `Err` names what is wrong. Public
/// (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn from_wit_result(r: wit::RouteResult) -> Result<(RouteDecision, Option<CallerId>), String> {
    let decision = match r.decision {
        wit::Decision::ToUser(login) if field_ok(&login) => RouteDecision::ToUser { login },
        wit::Decision::ToUser(_) => return Err("to-user with an empty or malformed login".into()),
        wit::Decision::ToGateway(g) if field_ok(&g.gateway) && uri_user_ok(&g.number) => {
            RouteDecision::ToGateway {
                gateway: g.gateway,
                number: g.number,
            }
        }
        wit::Decision::ToGateway(_) => {
            return Err("to-gateway with an empty or malformed gateway or number".into());
        }
        wit::Decision::ToService(s)
            if field_ok(&s.name)
                && s.args.len() <= 16
                && s.args.iter().all(|a| a.len() <= MAX_FIELD) =>
        {
            RouteDecision::ToService {
                name: s.name,
                args: s.args,
            }
        }
        wit::Decision::ToService(_) => {
            return Err("to-service with a malformed name or arguments".into());
        }
        wit::Decision::Reject(r)
            if (400..=699).contains(&r.code) && r.reason.len() <= MAX_FIELD =>
        {
            RouteDecision::Reject {
                code: r.code,
                reason: if r.reason.is_empty() {
                    "Rejected".into()
                } else {
                    r.reason
                },
            }
        }
        wit::Decision::Reject(r) => {
            return Err(format!("reject with SIP code {} (must be 400-699)", r.code));
        }
    };
    let caller_id = match r.caller_id {
        None => None,
        Some(c) => {
            let ok = |v: &Option<String>| v.as_deref().is_none_or(field_ok);
            if !ok(&c.display_name) || !c.user.as_deref().is_none_or(uri_user_ok) {
                return Err("caller-id with an empty or malformed field".into());
            }
            Some(CallerId {
                display_name: c.display_name,
                user: c.user,
            })
        }
    };
    Ok((decision, caller_id))
}

// ---------------------------------------------------------------------------
// One loaded version of a routing guest.

struct Warm {
    store: Store<GuestState>,
    bindings: RouterBindings,
    // Last: released after the store (and its instance) is gone.
    _slot: super::engine::InstanceSlot,
}

/// A compiled, linked routing guest with its pool of warm instances.
pub struct RoutingGuest {
    name: Arc<str>,
    plugins: Plugins,
    pre: RouterPre<GuestState>,
    config: Arc<BTreeMap<String, String>>,
    directory: Arc<dyn Directory>,
    warm: Mutex<Vec<Warm>>,
    health: VersionHealth,
    /// Its decisions run on the calling thread: it imports nothing but the
    /// world's own (synchronous) interfaces. A guest that imports WASI (Rust
    /// with std, Python, JavaScript) needs its asynchronous host functions,
    /// so it always runs on a fiber.
    on_thread: bool,
}

impl RoutingGuest {
    /// Links `component` against the routing world; refuses a component of another world.
    pub fn new(
        plugins: &Plugins,
        name: &str,
        path: &std::path::Path,
        component: &Component,
        config: BTreeMap<String, String>,
        directory: Arc<dyn Directory>,
    ) -> Result<Self, PluginError> {
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            path: path.to_path_buf(),
            expected: WORLD,
            message: format!("{e:#}").replace('\n', " "),
        };
        let instance_pre = plugins
            .routing_linker
            .instantiate_pre(component)
            .map_err(wrong_world)?;
        let pre = RouterPre::new(instance_pre).map_err(wrong_world)?;
        let on_thread = !component
            .component_type()
            .imports(&plugins.engine)
            .any(|(name, _)| name.starts_with("wasi:"));
        Ok(Self {
            name: name.into(),
            plugins: plugins.clone(),
            pre,
            config: Arc::new(config),
            directory,
            warm: Mutex::new(Vec::new()),
            health: VersionHealth::default(),
            on_thread,
        })
    }

    /// Calls and failures of this version, for its probation.
    pub fn health(&self) -> &VersionHealth {
        &self.health
    }

    fn failure(&self, kind: FailureKind, detail: impl Into<String>) -> GuestFailure {
        self.health.failed(kind);
        GuestFailure {
            guest: self.name.to_string(),
            world: WORLD,
            kind,
            detail: detail.into(),
        }
    }

    async fn instantiate(&self) -> Result<Warm, GuestFailure> {
        let slot = self
            .plugins
            .instance_slot(WORLD)
            .await
            .map_err(|e| self.failure(FailureKind::Overloaded, e.to_string()))?;
        let state = GuestState::new(
            self.config.clone(),
            self.directory.clone(),
            self.plugins.options.memory_limit_bytes,
        );
        let mut store = Store::new(&self.plugins.engine, state);
        store.limiter(|s| &mut s.limits);
        // Instantiation runs guest start-up code: it gets the same deadline as a call.
        let (budget, slice) = super::state::Budget::new(self.plugins.deadline_ticks());
        store.data_mut().budget = budget;
        store.set_epoch_deadline(slice);
        store.epoch_deadline_callback(super::state::on_deadline);
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.failure(FailureKind::Instantiate, format!("{e:#}")))?;
        Ok(Warm {
            store,
            bindings,
            _slot: slot,
        })
    }

    fn take_warm(&self) -> Option<Warm> {
        self.warm.lock().ok().and_then(|mut w| w.pop())
    }

    fn give_back(&self, warm: Warm) {
        // With calls waiting for a slot, this one's slot goes to them.
        if self.plugins.slot_wanted() {
            return;
        }
        if let Ok(mut pool) = self.warm.lock()
            && pool.len() < self.plugins.options.warm_instances
        {
            pool.push(warm);
        }
    }

    /// One routing decision under the limits; the raw, unvalidated result.
    ///
    /// The guest runs on the caller's thread, without a fiber (when it
    /// imports no WASI: see [`RoutingGuest::on_thread`]), and its
    /// directory look-ups never wait: what is not at hand (a cache miss)
    /// gets a placeholder and is noted. When a try missed something, its
    /// decision is thrown away with its instance (which may have kept the
    /// placeholder), the look-ups are fetched, and the decision is made again
    /// with the answers, at most [`MAX_TRIES`] times. A guest still running
    /// at the end of its first slice is stopped and called again on a fiber,
    /// where it yields to the runtime between slices.
    async fn call(&self, request: &wit::RouteRequest) -> Result<wit::RouteResult, GuestFailure> {
        let mut fetched = Vec::new();
        for _ in 0..MAX_TRIES {
            let mut warm = match self.take_warm() {
                Some(w) => w,
                None => self.instantiate().await?,
            };
            let answers = std::mem::take(&mut fetched);
            let slice = self.prepare(&mut warm.store, answers, self.on_thread);
            warm.store.set_epoch_deadline(slice);
            let mut outcome = if self.on_thread {
                warm.bindings
                    .func_route()
                    .call(&mut warm.store, (request,))
                    .map(|(result,)| result)
            } else {
                warm.bindings.call_route(&mut warm.store, request).await
            };
            if outcome.is_err() && warm.store.data().left_thread {
                let fetched = std::mem::take(&mut warm.store.data_mut().fetched);
                // Its slot first: the new instance may need it.
                drop(warm);
                warm = self.instantiate().await?;
                let slice = self.prepare(&mut warm.store, fetched, false);
                warm.store.set_epoch_deadline(slice);
                outcome = warm.bindings.call_route(&mut warm.store, request).await;
            }
            let state = warm.store.data_mut();
            if state.misses.is_empty() || outcome.is_err() {
                for (level, message) in state.logs.drain(..) {
                    log_line(&self.name, level, &message);
                }
            }
            let result = match outcome {
                Ok(result) => result,
                // The instance is dropped here: after a trap its state is undefined.
                Err(e) => return Err(self.classify(e, &warm.store)),
            };
            if state.misses.is_empty() {
                self.give_back(warm);
                return Ok(result);
            }
            let misses = std::mem::take(&mut state.misses);
            fetched = std::mem::take(&mut state.fetched);
            // Its slot is free while the database answers.
            drop(warm);
            for lookup in misses {
                let answer = self
                    .directory
                    .fetch(&lookup)
                    .await
                    .map_err(|e| self.failure(directory_failure(&e), e.to_string()))?;
                fetched.push((lookup, answer));
            }
        }
        Err(self.failure(
            FailureKind::Directory,
            format!("still missing look-ups after {MAX_TRIES} tries"),
        ))
    }

    /// Readies a warm instance's state for a try; the first slice.
    fn prepare(
        &self,
        store: &mut Store<GuestState>,
        fetched: Vec<(Lookup, Answer)>,
        on_thread: bool,
    ) -> u64 {
        let (budget, slice) = super::state::Budget::new(self.plugins.deadline_ticks());
        let state = store.data_mut();
        state.limits.hit = false;
        state.budget = budget;
        state.fetched = fetched;
        state.misses.clear();
        state.logs.clear();
        state.on_thread = on_thread;
        state.left_thread = false;
        slice
    }

    fn classify(&self, e: wasmtime::Error, store: &Store<GuestState>) -> GuestFailure {
        let kind = if store.data().limits.hit {
            FailureKind::Memory
        } else if let Some(d) = e.downcast_ref::<DirectoryError>() {
            directory_failure(d)
        } else if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            FailureKind::Timeout
        } else {
            FailureKind::Trap
        };
        self.failure(kind, format!("{e:#}").replace('\n', " "))
    }

    /// Calls the guest and validates its decision.
    pub async fn route(
        &self,
        request: &RouteRequest,
    ) -> Result<(RouteDecision, Option<CallerId>), GuestFailure> {
        self.health.call();
        let raw = self.call(&to_wit_request(request)).await?;
        from_wit_result(raw).map_err(|why| self.failure(FailureKind::InvalidResult, why))
    }

    /// Guest name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fixed request the guest must answer without failing before it is put in
    /// service. Its directory is empty, so the answer does not depend on data.
    pub(crate) async fn smoke(&self) -> Result<(), GuestFailure> {
        let empty = self.directory.empty();
        let probe = Self {
            name: self.name.clone(),
            plugins: self.plugins.clone(),
            pre: self.pre.clone(),
            config: self.config.clone(),
            directory: empty,
            warm: Mutex::new(Vec::new()),
            health: VersionHealth::default(),
            on_thread: self.on_thread,
        };
        let request = RouteRequest {
            kind: Kind::Call,
            caller_login: "smoke-test".into(),
            caller_display_name: None,
            authenticated: true,
            target: "4800000000".into(),
            transport: Transport::Internal,
            source_address: "127.0.0.1:0".into(),
            dialplan_rule: "DP:int-> OR onnet".into(),
            reason: Reason::Initial,
        };
        probe.route(&request).await.map(|_| ())
    }
}

// ---------------------------------------------------------------------------
// What the switch calls.

/// The fallback answer when the guest fails.
#[derive(Debug, Clone)]
pub struct Fallback {
    pub code: u16,
    pub reason: String,
}

/// Routes through the current version of the configured routing guest.
#[derive(Clone)]
pub struct Router {
    slot: Arc<super::hot::HotSlot<super::hot::RoutingWorld>>,
    fallback: Fallback,
    metrics: crate::metrics::Metrics,
    // Resolved once: a label look-up per decision costs a hash and allocations.
    calls: prometheus::IntCounter,
    seconds: prometheus::Histogram,
}

impl Router {
    pub(crate) fn new(
        slot: Arc<super::hot::HotSlot<super::hot::RoutingWorld>>,
        fallback: Fallback,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        let calls = metrics
            .guest_calls
            .with_label_values(&[slot.guest_name(), WORLD]);
        let seconds = metrics
            .decision_seconds
            .with_label_values(&[slot.guest_name()]);
        Self {
            slot,
            fallback,
            metrics,
            calls,
            seconds,
        }
    }

    /// Decides where a request goes. Never fails: a failing guest yields the fallback.
    pub async fn route(&self, request: &RouteRequest) -> Routed {
        let started = Instant::now();
        let name = self.slot.guest_name();
        self.calls.inc();
        // Holding this Arc keeps the version alive until the decision is made,
        // even if a reload swaps in a new one meanwhile.
        let outcome = self.slot.current().route(request).await;
        let routed = match outcome {
            Ok((decision, caller_id)) => {
                tracing::debug!(guest = name, kind = ?request.kind, caller = %request.caller_login, target = %request.target, reason = ?request.reason, ?decision, ?caller_id, "routed");
                Routed {
                    decision,
                    caller_id,
                    guest: name.to_string(),
                    fallback: None,
                }
            }
            Err(failure) => {
                tracing::warn!(guest = %failure.guest, world = failure.world, kind = %failure.kind, detail = %failure.detail, "routing guest failed; answering with the fallback");
                self.metrics
                    .guest_failures
                    .with_label_values(&[name, WORLD, failure.kind.as_str()])
                    .inc();
                Routed {
                    decision: RouteDecision::Reject {
                        code: self.fallback.code,
                        reason: self.fallback.reason.clone(),
                    },
                    caller_id: None,
                    guest: name.to_string(),
                    fallback: Some(failure.kind.as_str()),
                }
            }
        };
        self.seconds.observe(started.elapsed().as_secs_f64());
        routed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(decision: wit::Decision) -> wit::RouteResult {
        wit::RouteResult {
            decision,
            caller_id: None,
        }
    }

    #[test]
    fn reject_codes_outside_sip_failure_range_are_refused() {
        for code in [0, 200, 399, 700, 999] {
            let r = result(wit::Decision::Reject(wit::Rejection {
                code,
                reason: "x".into(),
            }));
            assert!(from_wit_result(r).is_err(), "{code}");
        }
        let ok = result(wit::Decision::Reject(wit::Rejection {
            code: 404,
            reason: String::new(),
        }));
        assert_eq!(
            from_wit_result(ok).unwrap().0,
            RouteDecision::Reject {
                code: 404,
                reason: "Rejected".into()
            }
        );
    }

    #[test]
    fn gateway_numbers_and_caller_id_users_must_be_uri_user_parts() {
        let to_gateway = |number: &str| {
            from_wit_result(result(wit::Decision::ToGateway(wit::GatewayTarget {
                gateway: "gw".into(),
                number: number.into(),
            })))
        };
        // Inputs the fuzz target guest_results found breaking the INVITE.
        for bad in ["\"", "1 2", "+49<30>", "12;user=phone", "a@b", "%4", "#31#"] {
            assert!(to_gateway(bad).is_err(), "{bad:?}");
        }
        for good in [
            "+4930123456",
            "*97",
            "%2331%23",
            "0049-30-1234",
            "alice.smith",
        ] {
            assert!(to_gateway(good).is_ok(), "{good:?}");
        }
        let with_user = |user: &str| {
            from_wit_result(wit::RouteResult {
                decision: wit::Decision::ToUser("bob".into()),
                caller_id: Some(wit::CallerId {
                    display_name: Some("Alice \"A\" Smith".into()),
                    user: Some(user.into()),
                }),
            })
        };
        assert!(with_user("+4930123456").is_ok());
        assert!(with_user("alice>;x").is_err());
    }

    #[test]
    fn empty_or_control_fields_are_refused() {
        assert!(from_wit_result(result(wit::Decision::ToUser(String::new()))).is_err());
        assert!(from_wit_result(result(wit::Decision::ToUser("a\r\nVia: x".into()))).is_err());
        assert!(
            from_wit_result(result(wit::Decision::ToGateway(wit::GatewayTarget {
                gateway: "gw".into(),
                number: "x".repeat(300),
            })))
            .is_err()
        );
    }

    #[test]
    fn decisions_serialise_with_the_variant_name() {
        let routed = Routed {
            decision: RouteDecision::ToGateway {
                gateway: "carrier".into(),
                number: "4812".into(),
            },
            caller_id: None,
            guest: "routing".into(),
            fallback: None,
        };
        let json = serde_json::to_value(&routed).unwrap();
        assert_eq!(json["decision"], "to-gateway");
        assert_eq!(json["gateway"], "carrier");
        assert_eq!(json["number"], "4812");
    }
}
