//! The push provider extension point: world `softswitch:push-provider/provider@0.1.0`.
//!
//! A push guest translates a notification for one device into HTTP
//! request(s) and reads the service's answers; the host does the I/O
//! (`crate::push`). The guest's one way out is the `credentials` import,
//! which signs with a key the guest names but never sees. Every call gets a
//! fresh instance, like the SMS providers. Time spent in an import (an OAuth
//! token fetch) is not the guest's: the CPU budget counts only the time the
//! guest itself runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::engine::Plugins;
use super::probation::VersionHealth;
use super::state::MemoryCap;
use super::{FailureKind, GuestFailure, PluginError};
use crate::push::keys::PushKeys;
use crate::push::{Notification, NotificationKind};

// Public (hidden) only so the fuzz targets can build the values a guest
// returns; nothing else should name the generated types.
#[doc(hidden)]
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../wit/push-provider/0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use bindings::softswitch::push_provider::{credentials as wit_cred, types as wit};
use bindings::{Provider, ProviderPre};

/// The world's full name, for logs and errors.
pub const WORLD: &str = "softswitch:push-provider/provider@0.1.0";

/// Largest body a guest may ask the host to send (APNs takes 4 KiB, FCM
/// 4 KiB of data; a webhook a little more), or that the host hands a guest.
pub const MAX_BODY: usize = 16 << 10;
/// Most requests one `format` may return.
pub const MAX_REQUESTS: usize = 4;
/// Longest lifetime a guest may ask for a cached JWT.
const MAX_JWT_AGE: Duration = Duration::from_secs(3000);

/// An HTTP request a guest built, in host types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A service's answer, in host types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the service said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered { id: Option<String> },
    TokenInvalid { reason: String },
    RetryAfter { secs: u32 },
    Failed { reason: String },
}

/// The device a notification goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDevice {
    pub token: String,
    pub app: String,
    pub sandbox: bool,
    pub voip: bool,
    pub login: String,
}

/// Store data of one call: a WASI context that grants nothing, the memory
/// cap, the keys the credentials import signs with, and the CPU clock.
pub struct PushState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
    keys: Arc<PushKeys>,
    running_since: Option<Instant>,
    budget: Duration,
    overran: bool,
}

impl WasiView for PushState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for PushState {}

impl wit_cred::Host for PushState {
    async fn sign_jwt(
        &mut self,
        key: String,
        claims: String,
        max_age_secs: u32,
    ) -> wasmtime::Result<Result<String, String>> {
        self.running_since = None;
        let age = Duration::from_secs(u64::from(max_age_secs)).min(MAX_JWT_AGE);
        let out = self.keys.sign_jwt(&key, &claims, age);
        self.running_since = Some(Instant::now());
        Ok(out)
    }

    async fn oauth2_token(
        &mut self,
        key: String,
        scope: String,
    ) -> wasmtime::Result<Result<String, String>> {
        self.running_since = None;
        let out = self.keys.oauth2_token(&key, &scope).await;
        self.running_since = Some(Instant::now());
        Ok(out)
    }
}

fn on_epoch(mut ctx: StoreContextMut<'_, PushState>) -> wasmtime::Result<UpdateDeadline> {
    let state = ctx.data_mut();
    if let Some(since) = state.running_since
        && since.elapsed() > state.budget
    {
        state.overran = true;
        return Err(wasmtime::Trap::Interrupt.into());
    }
    Ok(UpdateDeadline::Yield(1))
}

/// A compiled, linked push guest.
pub struct PushProviderGuest {
    name: Arc<str>,
    plugins: Plugins,
    pre: ProviderPre<PushState>,
    config: Vec<(String, String)>,
    keys: Arc<PushKeys>,
    health: VersionHealth,
}

fn wit_headers(h: &[(String, String)]) -> Vec<wit::Header> {
    h.iter()
        .map(|(n, v)| wit::Header {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

fn wit_kind(k: NotificationKind) -> wit::NotificationKind {
    match k {
        NotificationKind::IncomingCall => wit::NotificationKind::IncomingCall,
        NotificationKind::MissedCall => wit::NotificationKind::MissedCall,
        NotificationKind::Text => wit::NotificationKind::Text,
        NotificationKind::Picture => wit::NotificationKind::Picture,
        NotificationKind::Video => wit::NotificationKind::Video,
        NotificationKind::Audio => wit::NotificationKind::Audio,
        NotificationKind::File => wit::NotificationKind::File,
        NotificationKind::Voicemail => wit::NotificationKind::Voicemail,
    }
}

impl PushProviderGuest {
    /// Compiles and links the guest at `path`; refuses a component of another world.
    pub async fn load(
        plugins: &Plugins,
        name: &str,
        path: &Path,
        config: BTreeMap<String, String>,
        keys: Arc<PushKeys>,
    ) -> Result<Self, PluginError> {
        let component: Component = plugins.compile_file(path).await?;
        Self::link(plugins, name, path, &component, config, keys)
    }

    /// Links a compiled component; refuses one of another world.
    pub fn link(
        plugins: &Plugins,
        name: &str,
        path: &Path,
        component: &Component,
        config: BTreeMap<String, String>,
        keys: Arc<PushKeys>,
    ) -> Result<Self, PluginError> {
        let mut linker: Linker<PushState> = Linker::new(&plugins.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        Provider::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            path: path.to_path_buf(),
            expected: WORLD,
            message: format!("{e:#}").replace('\n', " "),
        };
        let instance_pre = linker.instantiate_pre(component).map_err(wrong_world)?;
        let pre = ProviderPre::new(instance_pre).map_err(wrong_world)?;
        tracing::debug!(guest = name, world = WORLD, path = %path.display(), "push provider guest linked");
        Ok(Self {
            name: name.into(),
            plugins: plugins.clone(),
            pre,
            config: config.into_iter().collect(),
            keys,
            health: VersionHealth::default(),
        })
    }

    /// Guest name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls and failures of this version, for its probation.
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

    /// Runs `f` on a fresh instance under the memory cap and CPU budget.
    async fn with_instance<T>(
        &self,
        f: impl AsyncFnOnce(&Provider, &mut Store<PushState>) -> wasmtime::Result<T>,
    ) -> Result<T, GuestFailure> {
        self.health.call();
        // Held until the store below is dropped (declared before it).
        let _slot = self
            .plugins
            .instance_slot(WORLD)
            .await
            .map_err(|e| self.failure(FailureKind::Overloaded, e.to_string()))?;
        let state = PushState {
            wasi: super::state::wasi_granting_nothing(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                max_bytes: self.plugins.options.memory_limit_bytes,
                hit: false,
            },
            keys: self.keys.clone(),
            running_since: Some(Instant::now()),
            budget: self.plugins.options.provider_deadline,
            overran: false,
        };
        let mut store = Store::new(&self.plugins.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(on_epoch);
        let result = match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => f(&bindings, &mut store).await,
            Err(e) => {
                return Err(self.failure(FailureKind::Instantiate, format!("{e:#}")));
            }
        };
        result.map_err(|e| {
            let kind = if store.data().limits.hit {
                FailureKind::Memory
            } else if store.data().overran {
                FailureKind::Timeout
            } else {
                FailureKind::Trap
            };
            self.failure(kind, format!("{e:#}").replace('\n', " "))
        })
    }

    /// The request(s) that deliver `n` to `device`. `Ok(Err(_))` is the
    /// guest refusing (configuration, credentials): the reason.
    pub async fn format(
        &self,
        n: &Notification,
        device: &PushDevice,
    ) -> Result<Result<Vec<PushRequest>, String>, GuestFailure> {
        let notification = wit::Notification {
            kind: wit_kind(n.kind),
            from_login: n.from_login.clone(),
            from_display_name: n.from_display_name.clone(),
            from_book_name: n.from_book_name.clone(),
            timestamp: n.timestamp,
            call_id: n.call_id.clone(),
            excerpt: n.excerpt.clone(),
            badge: n.badge,
            id: n.id.clone(),
        };
        let wit_device = wit::Device {
            token: device.token.clone(),
            app: device.app.clone(),
            sandbox: device.sandbox,
            voip: device.voip,
            login: device.login.clone(),
        };
        let config = self.config.clone();
        let result = self
            .with_instance(async |b, store| {
                b.call_format(store, &notification, &wit_device, &config)
                    .await
            })
            .await?;
        match result {
            Ok(requests) => push_requests(requests)
                .map(Ok)
                .map_err(|e| self.failure(FailureKind::InvalidResult, e)),
            Err(e) => Ok(Err(error_text(e))),
        }
    }

    /// One call on a fresh instance, before a new version goes into service:
    /// any answer will do, a trap or a timeout will not.
    pub async fn smoke(&self) -> Result<(), GuestFailure> {
        let empty = PushResponse {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        };
        self.parse_response(&empty).await.map(|_| ())
    }

    /// Interprets the service's answer to one request.
    pub async fn parse_response(
        &self,
        response: &PushResponse,
    ) -> Result<PushOutcome, GuestFailure> {
        let wit_response = wit::HttpResponse {
            status: response.status,
            headers: wit_headers(&response.headers),
            body: response.body.clone(),
        };
        let config = self.config.clone();
        let result = self
            .with_instance(async |b, store| {
                b.call_parse_response(store, &wit_response, &config).await
            })
            .await?;
        push_outcome(result).map_err(|e| self.failure(FailureKind::InvalidResult, e))
    }
}

// ---------------------------------------------------------------------------
// What the host makes of a guest's results: plain functions, so the fuzz
// targets reach them without a guest.

fn error_text(e: wit::Error) -> String {
    match e {
        wit::Error::Config(k) => format!("configuration value {k:?} missing or invalid"),
        wit::Error::Invalid(m) => format!("invalid input: {m}"),
        wit::Error::Credentials(m) => format!("credentials: {m}"),
        wit::Error::Other(m) => m,
    }
}

/// The requests a guest's `format` returned; `Err` says why the host refuses them.
#[doc(hidden)]
pub fn push_requests(requests: Vec<wit::HttpRequest>) -> Result<Vec<PushRequest>, String> {
    if requests.is_empty() || requests.len() > MAX_REQUESTS {
        return Err(format!(
            "{} requests (1 to {MAX_REQUESTS} allowed)",
            requests.len()
        ));
    }
    requests
        .into_iter()
        .map(|r| {
            if r.body.len() > MAX_BODY {
                return Err("request body too large".to_string());
            }
            Ok(PushRequest {
                method: r.method,
                url: r.url,
                headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
                body: r.body,
            })
        })
        .collect()
}

/// The outcome a guest's `parse-response` returned; `Err` says why the host refuses it.
#[doc(hidden)]
pub fn push_outcome(result: wit::Outcome) -> Result<PushOutcome, &'static str> {
    Ok(match result {
        wit::Outcome::Delivered(id) => {
            if id.as_ref().is_some_and(|i| i.len() > 255) {
                return Err("delivered with an over-long id");
            }
            PushOutcome::Delivered { id }
        }
        wit::Outcome::TokenInvalid(reason) => PushOutcome::TokenInvalid { reason },
        wit::Outcome::RetryAfter(secs) => PushOutcome::RetryAfter { secs },
        wit::Outcome::Failed(reason) => PushOutcome::Failed { reason },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_out_of_bounds_are_refused() {
        assert!(push_requests(Vec::new()).is_err());
        let big = wit::HttpRequest {
            method: "POST".into(),
            url: "https://x/".into(),
            headers: Vec::new(),
            body: vec![0; MAX_BODY + 1],
        };
        assert!(push_requests(vec![big]).is_err());
        assert!(push_outcome(wit::Outcome::Delivered(Some("x".repeat(256)))).is_err());
        assert_eq!(
            push_outcome(wit::Outcome::RetryAfter(7)),
            Ok(PushOutcome::RetryAfter { secs: 7 })
        );
    }
}
