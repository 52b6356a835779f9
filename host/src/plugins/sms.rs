//! The SMS provider extension point: world
//! `softswitch:sms-provider/provider@0.2.0`, and `@0.1.0` through a shim.
//!
//! A provider guest only translates: message → HTTP request, HTTP response →
//! outcome, callback request → delivery report. The host does the I/O
//! (`crate::sms`). Calls are rare (one or two per SMS), so every call gets a
//! fresh instance: no state survives between calls and a trap costs nothing
//! but that instance.
//!
//! Versions: the host speaks the newest WIT (0.2.0, `wit/sms-provider/0.2.0`)
//! and fills what it added (`message.encoding`). Which version a component
//! was built for is read from its type (a guest imports
//! `softswitch:sms-provider/types@<version>`); one built for 0.1.0 is
//! linked with the 0.1.0 bindings and served through [`v0_1`], which drops
//! the new field on the way in and converts the answers on the way out. Logs,
//! metrics and `guest check` name the version each guest targets.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::engine::Plugins;
use super::probation::VersionHealth;
use super::state::MemoryCap;
use super::{FailureKind, GuestFailure, PluginError};
use crate::sms::encoding::Encoding;

mod v0_1;

// Public (hidden) only so the fuzz targets can build the values a guest
// returns; nothing else should name the generated types. The newest
// version: what the host speaks.
#[doc(hidden)]
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../wit/sms-provider/0.2.0",
        exports: { default: async },
    });
}

use bindings::softswitch::sms_provider::types as wit;
use bindings::{Provider, ProviderPre};

/// The world, whatever the version: what a provider slot serves (its
/// guests may target different versions, each names its own:
/// [`SmsProviderGuest::world`]).
pub const WORLD: &str = "softswitch:sms-provider/provider";

/// What a component must implement to load as an SMS provider, for errors.
const EXPECTED: &str = "softswitch:sms-provider/provider@0.2.0 (or @0.1.0)";

/// The versions of the world the host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitVersion {
    /// 0.2.0, which the host speaks: `message` has `encoding`.
    V0_2,
    /// 0.1.0, served through the [`v0_1`] shim.
    V0_1,
}

impl WitVersion {
    /// The newest version, the one `guest new` writes.
    pub const NEWEST: WitVersion = WitVersion::V0_2;

    /// The world's full name at this version, for logs, metrics and errors.
    pub fn world(self) -> &'static str {
        match self {
            WitVersion::V0_2 => "softswitch:sms-provider/provider@0.2.0",
            WitVersion::V0_1 => "softswitch:sms-provider/provider@0.1.0",
        }
    }

    fn from_package_version(version: &str) -> Option<Self> {
        match version {
            "0.2.0" => Some(WitVersion::V0_2),
            "0.1.0" => Some(WitVersion::V0_1),
            _ => None,
        }
    }
}

/// The version of `softswitch:sms-provider` a component names in its
/// imports or exports (`softswitch:sms-provider/types@0.1.0`), if any.
fn named_version(plugins: &Plugins, component: &Component) -> Option<String> {
    let ty = component.component_type();
    let imports = ty.imports(&plugins.engine).map(|(name, _)| name);
    let exports = ty.exports(&plugins.engine).map(|(name, _)| name);
    imports.chain(exports).find_map(|name| {
        let (_, version) = name
            .strip_prefix("softswitch:sms-provider/")?
            .split_once('@')?;
        Some(version.to_owned())
    })
}

/// Largest HTTP body a guest may ask the host to send, or that the host hands
/// a guest: SMS APIs exchange a few hundred bytes.
pub const MAX_BODY: usize = 64 << 10;

/// One text message to send. Its coding is not a field: the host works it
/// out from the text ([`OutgoingSms::encoding`]), so it cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingSms {
    pub to: String,
    pub sender: String,
    pub text: String,
    pub reference: String,
}

impl OutgoingSms {
    /// The coding its text needs on the air (0.2.0's `message.encoding`).
    pub fn encoding(&self) -> Encoding {
        Encoding::of(&self.text)
    }

    /// The message as the host speaks it (the newest WIT).
    fn to_wit(&self) -> wit::Message {
        wit::Message {
            to: self.to.clone(),
            sender: self.sender.clone(),
            text: self.text.clone(),
            reference: self.reference.clone(),
            encoding: match self.encoding() {
                Encoding::Gsm7 => wit::Encoding::Gsm7,
                Encoding::Ucs2 => wit::Encoding::Ucs2,
            },
        }
    }
}

/// An HTTP exchange half, in host types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpMessage {
    /// Method (requests only).
    pub method: String,
    /// Absolute URL (outgoing) or path and query (callbacks).
    pub url: String,
    /// Status (responses only).
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the vendor said about a send request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Accepted { provider_id: String },
    Rejected { reason: String },
    RetryAfter { secs: u32 },
}

/// Delivery state at the handset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Delivered,
    Failed,
    Pending,
}

/// A parsed delivery report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub provider_id: String,
    pub state: DeliveryState,
    pub detail: Option<String>,
}

/// Store data of one provider call: a WASI context that grants nothing (for
/// guests built with std) and the memory cap.
struct ProviderState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
}

impl WasiView for ProviderState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A linked component, at the version it was built for.
enum Pre {
    Current(ProviderPre<ProviderState>),
    V0_1(v0_1::ProviderPre<ProviderState>),
}

/// One instance of a guest. Its methods take and give the host's (newest)
/// types whatever the guest's version: the shim converts for an older one.
enum Bindings {
    Current(Provider),
    V0_1(v0_1::Provider),
}

type Config<'a> = &'a [(String, String)];

impl Bindings {
    async fn build_send(
        &self,
        store: &mut Store<ProviderState>,
        message: &wit::Message,
        config: Config<'_>,
    ) -> wasmtime::Result<Result<wit::HttpRequest, wit::Error>> {
        match self {
            Bindings::Current(p) => p.call_build_send(store, message, config).await,
            Bindings::V0_1(p) => p
                .call_build_send(store, &v0_1::message(message), config)
                .await
                .map(v0_1::built_request),
        }
    }

    async fn parse_send_response(
        &self,
        store: &mut Store<ProviderState>,
        response: &wit::HttpResponse,
        config: Config<'_>,
    ) -> wasmtime::Result<wit::SendResult> {
        match self {
            Bindings::Current(p) => p.call_parse_send_response(store, response, config).await,
            Bindings::V0_1(p) => p
                .call_parse_send_response(store, &v0_1::http_response(response), config)
                .await
                .map(v0_1::send_result),
        }
    }

    async fn parse_delivery_report(
        &self,
        store: &mut Store<ProviderState>,
        request: &wit::HttpRequest,
        config: Config<'_>,
    ) -> wasmtime::Result<Result<wit::Report, wit::Error>> {
        match self {
            Bindings::Current(p) => p.call_parse_delivery_report(store, request, config).await,
            Bindings::V0_1(p) => p
                .call_parse_delivery_report(store, &v0_1::http_request(request), config)
                .await
                .map(v0_1::report),
        }
    }
}

/// A compiled, linked provider guest.
pub struct SmsProviderGuest {
    name: Arc<str>,
    plugins: Plugins,
    pre: Pre,
    config: Vec<(String, String)>,
    health: VersionHealth,
}

fn header_pairs(h: Vec<wit::Header>) -> Vec<(String, String)> {
    h.into_iter().map(|h| (h.name, h.value)).collect()
}

fn wit_headers(h: &[(String, String)]) -> Vec<wit::Header> {
    h.iter()
        .map(|(n, v)| wit::Header {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

fn error_text(e: wit::Error) -> String {
    match e {
        wit::Error::Config(k) => format!("configuration value {k:?} missing or invalid"),
        wit::Error::Invalid(m) => format!("invalid input: {m}"),
        wit::Error::Other(m) => m,
    }
}

impl SmsProviderGuest {
    /// Compiles and links the guest at `path`; refuses a component of another world.
    pub async fn load(
        plugins: &Plugins,
        name: &str,
        path: &Path,
        config: BTreeMap<String, String>,
    ) -> Result<Self, PluginError> {
        let component: Component = plugins.compile_file(path).await?;
        Self::link(plugins, name, path, &component, config)
    }

    /// Links a compiled component at the version it was built for; refuses
    /// one of another world or of a version the host does not serve.
    pub fn link(
        plugins: &Plugins,
        name: &str,
        path: &Path,
        component: &Component,
        config: BTreeMap<String, String>,
    ) -> Result<Self, PluginError> {
        let wrong_world = |message: String| PluginError::WrongWorld {
            path: path.to_path_buf(),
            expected: EXPECTED,
            message: message.replace('\n', " "),
        };
        // A component that names no version of the package is of another
        // world: linking it as the newest says what it lacks.
        let version = match named_version(plugins, component) {
            None => WitVersion::NEWEST,
            Some(v) => WitVersion::from_package_version(&v).ok_or_else(|| {
                wrong_world(format!(
                    "it is built for softswitch:sms-provider@{v}, a version this switch does not serve"
                ))
            })?,
        };
        let mut linker: Linker<ProviderState> = Linker::new(&plugins.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        let wrong_world = |e: wasmtime::Error| wrong_world(format!("{e:#}"));
        let instance_pre = linker.instantiate_pre(component).map_err(wrong_world)?;
        let pre = match version {
            WitVersion::V0_2 => Pre::Current(ProviderPre::new(instance_pre).map_err(wrong_world)?),
            WitVersion::V0_1 => {
                Pre::V0_1(v0_1::ProviderPre::new(instance_pre).map_err(wrong_world)?)
            }
        };
        if version == WitVersion::NEWEST {
            tracing::info!(guest = name, world = version.world(), path = %path.display(), "SMS provider guest linked");
        } else {
            tracing::info!(guest = name, world = version.world(), newest = WitVersion::NEWEST.world(), path = %path.display(), "SMS provider guest linked; built for an older WIT, served through its shim");
        }
        Ok(Self {
            name: name.into(),
            plugins: plugins.clone(),
            pre,
            config: config.into_iter().collect(),
            health: VersionHealth::default(),
        })
    }

    /// Guest name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version of the world the guest was built for.
    pub fn version(&self) -> WitVersion {
        match self.pre {
            Pre::Current(_) => WitVersion::V0_2,
            Pre::V0_1(_) => WitVersion::V0_1,
        }
    }

    /// The world at the guest's version
    /// (`softswitch:sms-provider/provider@0.1.0`), for logs and metrics.
    pub fn world(&self) -> &'static str {
        self.version().world()
    }

    /// One call on a fresh instance, before a new version goes into service:
    /// any answer will do, a trap or a timeout will not.
    pub async fn smoke(&self) -> Result<(), GuestFailure> {
        let empty = HttpMessage {
            status: 200,
            ..HttpMessage::default()
        };
        self.parse_send_response(&empty).await.map(|_| ())
    }

    /// Calls and failures of this version, for its probation.
    pub fn health(&self) -> &VersionHealth {
        &self.health
    }

    fn failure(&self, kind: FailureKind, detail: impl Into<String>) -> GuestFailure {
        self.health.failed(kind);
        GuestFailure {
            guest: self.name.to_string(),
            world: self.world(),
            kind,
            detail: detail.into(),
        }
    }

    /// Runs `f` on a fresh instance under the memory cap and deadline.
    async fn with_instance<T>(
        &self,
        f: impl AsyncFnOnce(&Bindings, &mut Store<ProviderState>) -> wasmtime::Result<T>,
    ) -> Result<T, GuestFailure> {
        self.health.call();
        let world = self.world();
        // Held until the store below is dropped (declared before it).
        let _slot = match self.plugins.instance_slot(world).await {
            Ok(slot) => slot,
            Err(e) => {
                let kind = FailureKind::Overloaded;
                self.plugins
                    .metrics
                    .guest_failures
                    .with_label_values(&[&*self.name, world, kind.as_str()])
                    .inc();
                return Err(self.failure(kind, e.to_string()));
            }
        };
        let state = ProviderState {
            wasi: super::state::wasi_granting_nothing(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                max_bytes: self.plugins.options.memory_limit_bytes,
                hit: false,
            },
        };
        let mut store = Store::new(&self.plugins.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.plugins.provider_deadline_ticks());
        store.epoch_deadline_trap();
        let instance = match &self.pre {
            Pre::Current(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Current),
            Pre::V0_1(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V0_1),
        };
        let result = match instance {
            Ok(bindings) => f(&bindings, &mut store).await,
            Err(e) => {
                return Err(self.failure(FailureKind::Instantiate, format!("{e:#}")));
            }
        };
        result.map_err(|e| {
            let kind = if store.data().limits.hit {
                FailureKind::Memory
            } else if matches!(
                e.downcast_ref::<wasmtime::Trap>(),
                Some(wasmtime::Trap::Interrupt)
            ) {
                FailureKind::Timeout
            } else {
                FailureKind::Trap
            };
            let failure = self.failure(kind, format!("{e:#}").replace('\n', " "));
            self.plugins
                .metrics
                .guest_failures
                .with_label_values(&[&*self.name, world, kind.as_str()])
                .inc();
            failure
        })
    }

    /// The request that sends `sms`; `extra` adds host-provided configuration
    /// values (the delivery-report callback URL). The host fills what the
    /// newest WIT added (the text's coding); a 0.1.0 guest never sees it.
    pub async fn build_send(
        &self,
        sms: &OutgoingSms,
        extra: &[(String, String)],
    ) -> Result<HttpMessage, GuestFailure> {
        let message = sms.to_wit();
        let mut config = self.config.clone();
        config.extend(extra.iter().cloned());
        let result = self
            .with_instance(async |b, store| b.build_send(store, &message, &config).await)
            .await?;
        send_request(result).map_err(|e| self.failure(FailureKind::InvalidResult, e))
    }

    /// Interprets the vendor's answer.
    pub async fn parse_send_response(
        &self,
        response: &HttpMessage,
    ) -> Result<SendOutcome, GuestFailure> {
        let wit_response = wit::HttpResponse {
            status: response.status,
            headers: wit_headers(&response.headers),
            body: response.body.clone(),
        };
        let config = self.config.clone();
        let result = self
            .with_instance(async |b, store| {
                b.parse_send_response(store, &wit_response, &config).await
            })
            .await?;
        send_outcome(result).map_err(|e| self.failure(FailureKind::InvalidResult, e))
    }

    /// Interprets a delivery-report callback. `Ok(Err(_))` is the guest
    /// saying the request is not a report it understands.
    pub async fn parse_delivery_report(
        &self,
        request: &HttpMessage,
    ) -> Result<Result<DeliveryReport, String>, GuestFailure> {
        let wit_request = wit::HttpRequest {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: wit_headers(&request.headers),
            body: request.body.clone(),
        };
        let config = self.config.clone();
        let result = self
            .with_instance(async |b, store| {
                b.parse_delivery_report(store, &wit_request, &config).await
            })
            .await?;
        Ok(delivery_report(result))
    }
}

// ---------------------------------------------------------------------------
// What the host makes of a provider's results: plain functions, so the fuzz
// targets (fuzz/fuzz_targets/guest_results.rs) reach them without a guest.

/// The HTTP request a guest's `build-send` returned; `Err` says why the
/// host refuses it.
#[doc(hidden)]
pub fn send_request(result: Result<wit::HttpRequest, wit::Error>) -> Result<HttpMessage, String> {
    let req = result.map_err(error_text)?;
    if req.body.len() > MAX_BODY {
        return Err("request body too large".into());
    }
    Ok(HttpMessage {
        method: req.method,
        url: req.url,
        status: 0,
        headers: header_pairs(req.headers),
        body: req.body,
    })
}

/// The outcome a guest's `parse-send-response` returned; `Err` says why
/// the host refuses it.
#[doc(hidden)]
pub fn send_outcome(result: wit::SendResult) -> Result<SendOutcome, &'static str> {
    Ok(match result {
        wit::SendResult::Accepted(id) if !id.is_empty() && id.len() <= 255 => {
            SendOutcome::Accepted { provider_id: id }
        }
        wit::SendResult::Accepted(_) => {
            return Err("accepted with an empty or over-long message id");
        }
        wit::SendResult::Rejected(reason) => SendOutcome::Rejected { reason },
        wit::SendResult::RetryAfter(secs) => SendOutcome::RetryAfter { secs },
    })
}

/// The report a guest's `parse-delivery-report` returned; `Err` is the
/// request not being a report the guest (or the host) accepts.
#[doc(hidden)]
pub fn delivery_report(result: Result<wit::Report, wit::Error>) -> Result<DeliveryReport, String> {
    match result {
        Ok(r) if !r.provider_id.is_empty() && r.provider_id.len() <= 255 => Ok(DeliveryReport {
            provider_id: r.provider_id,
            state: match r.state {
                wit::DeliveryState::Delivered => DeliveryState::Delivered,
                wit::DeliveryState::Failed => DeliveryState::Failed,
                wit::DeliveryState::Pending => DeliveryState::Pending,
            },
            detail: r.detail,
        }),
        Ok(_) => Err("report with an empty or over-long message id".into()),
        Err(e) => Err(error_text(e)),
    }
}
