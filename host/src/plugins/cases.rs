//! Written cases for guests, and the runner that checks a guest against
//! them with the switch's own host code and limits (no switch, database or
//! network): `softswitch guest test`, and the canary a hot reload runs
//! when a guest's config names its cases (`cases` in `[guests.<name>]`,
//! `[sms.providers.<name>]` or `[push.providers.<name>]`).
//!
//! Routing guests: each `[[cases]]` entry is a routing question (caller,
//! number dialled, kind, reason) and the decision expected, written the way
//! `softswitch route` prints it (`to-user bob`, `to-gateway carrier-pl
//! 4860012345 (caller-id Alice <48600111222>)`, `reject 404 Not Found`,
//! `guest fails` for a case the guest must fail on). The guest sees the
//! directory and config values the file describes.
//!
//! SMS provider guests: `[[sends]]` (a message in, the HTTP request
//! expected out: method, URL, headers, pieces of the body), `[[responses]]`
//! (a vendor answer in, `accepted ID`, `rejected REASON` or `retry-after
//! SECS` expected) and `[[reports]]` (a delivery-report callback in,
//! `delivered ID`, `failed ID`, `pending ID` or `not a report` expected).
//!
//! Push provider guests: `[[pushes]]` (a notification for a device in, the
//! HTTP request expected out, or `refused REASON` for one the guest must
//! refuse) and `[[push_responses]]` (a service's answer in, `delivered
//! [ID]`, `token-invalid REASON`, `retry-after SECS` or `failed REASON`
//! expected). `[push]` names the keys the guest may sign with (`sign_keys`:
//! each gets a throwaway EC P-256 key, its name as `kid`) and the OAuth
//! tokens the switch would have fetched (`oauth_tokens`, by key name).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;
use serde::Deserialize;
use wasmtime::component::Component;

use super::push::{PushDevice, PushOutcome, PushProviderGuest, PushResponse};
use super::routing::{Kind, Reason, RouteRequest, RoutingGuest, Transport, describe};
use super::sms::{DeliveryState, HttpMessage, OutgoingSms, SendOutcome, SmsProviderGuest};
use super::{GuestFailure, PluginError, Plugins};
use crate::directory::{DirAccount, DirGateway, Directory, MemoryDirectory};
use crate::push::keys::PushKeys;
use crate::push::{Notification, NotificationKind};

/// Why cases could not be run (a failing case is not an error: see
/// [`Checked`]).
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a case file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("case {index} ({name}): {message}")]
    Case {
        index: usize,
        name: String,
        message: String,
    },
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// A case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// What `[guests.<name>.config]` would give the guest.
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    accounts: Vec<AccountEntry>,
    #[serde(default)]
    gateways: Vec<GatewayEntry>,
    #[serde(default)]
    cases: Vec<Case>,
    #[serde(default)]
    sends: Vec<SendCase>,
    #[serde(default)]
    responses: Vec<ResponseCase>,
    #[serde(default)]
    reports: Vec<ReportCase>,
    #[serde(default)]
    push: PushSetup,
    #[serde(default)]
    pushes: Vec<PushCase>,
    #[serde(default)]
    push_responses: Vec<PushResponseCase>,
}

/// `[push]`: the credentials a push guest's cases run with.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushSetup {
    /// Key names `sign-jwt` may use (each a throwaway EC P-256 key).
    #[serde(default)]
    sign_keys: Vec<String>,
    /// `oauth2-token`'s answers, by key name.
    #[serde(default)]
    oauth_tokens: BTreeMap<String, String>,
}

/// `format`: a notification for a device, and the request expected (the
/// first, when the guest makes several) or the refusal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushCase {
    name: Option<String>,
    kind: NotificationKind,
    #[serde(default)]
    from: String,
    #[serde(default)]
    from_display_name: String,
    from_book_name: Option<String>,
    #[serde(default = "default_timestamp")]
    timestamp: i64,
    call_id: Option<String>,
    #[serde(default)]
    excerpt: String,
    #[serde(default)]
    badge: u32,
    #[serde(default = "default_notification_id")]
    id: String,
    token: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    sandbox: bool,
    #[serde(default)]
    voip: bool,
    #[serde(default = "default_push_login")]
    login: String,
    /// `refused REASON` (the start of it is enough): the guest must refuse.
    expect: Option<String>,
    /// How many requests the guest makes (one by default).
    expect_requests: Option<usize>,
    expect_method: Option<String>,
    expect_url: Option<String>,
    #[serde(default)]
    expect_headers: BTreeMap<String, String>,
    /// Each header must start with this value (a signed token's scheme).
    #[serde(default)]
    expect_header_prefixes: BTreeMap<String, String>,
    #[serde(default)]
    expect_body_contains: Vec<String>,
}

fn default_timestamp() -> i64 {
    1_700_000_000
}

fn default_notification_id() -> String {
    "n-1".into()
}

fn default_push_login() -> String {
    "bob".into()
}

/// `parse-response`: a push service's answer and the outcome expected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushResponseCase {
    name: Option<String>,
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    expect: String,
}

/// `build-send`: a message and the request expected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendCase {
    name: Option<String>,
    to: String,
    #[serde(default)]
    sender: String,
    text: String,
    #[serde(default = "default_reference")]
    reference: String,
    expect_method: Option<String>,
    expect_url: Option<String>,
    /// Each must be present with this value (names in any case).
    #[serde(default)]
    expect_headers: BTreeMap<String, String>,
    /// Each must appear in the body.
    #[serde(default)]
    expect_body_contains: Vec<String>,
}

fn default_reference() -> String {
    "1".into()
}

/// `parse-send-response`: a vendor answer and the outcome expected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseCase {
    name: Option<String>,
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    expect: String,
}

/// `parse-delivery-report`: a callback and what it reports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportCase {
    name: Option<String>,
    #[serde(default = "default_method")]
    method: String,
    /// Path and query, as the switch passes it.
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    expect: String,
}

fn default_method() -> String {
    "POST".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEntry {
    login: String,
    phone: Option<String>,
    username: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    voicemail: bool,
    /// Has a registered device.
    #[serde(default)]
    registered: bool,
    /// The account's dialing-plan rule (the account template's by default).
    dialplan_rule: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayEntry {
    name: String,
    prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Shown in the report (default: `from -> to`).
    name: Option<String>,
    /// The caller's login (an account above, or any login).
    from: String,
    /// What was dialled.
    to: String,
    /// `call` (default) or `message`.
    kind: Option<String>,
    /// `initial` (default), `no-answer`, `busy`, `declined`, `unavailable`.
    reason: Option<String>,
    /// Overrides the caller's rule.
    dialplan_rule: Option<String>,
    /// The decision, as `softswitch route` prints it, or `guest fails`.
    expect: String,
}

/// The rule an account gets when the case file names none: the default
/// account template's.
const DEFAULT_RULE: &str = "DP:int-> OR onnet";

impl CaseFile {
    /// Reads and parses a case file.
    pub fn load(path: &Path) -> Result<Self, CasesError> {
        let text = std::fs::read_to_string(path).map_err(|source| CasesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| CasesError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_owned(),
        })
    }

    /// Has routing questions.
    pub fn has_routing(&self) -> bool {
        !self.cases.is_empty()
    }

    /// Has SMS provider cases.
    pub fn has_sms(&self) -> bool {
        !(self.sends.is_empty() && self.responses.is_empty() && self.reports.is_empty())
    }

    /// Has push provider cases.
    pub fn has_push(&self) -> bool {
        !(self.pushes.is_empty() && self.push_responses.is_empty())
    }
}

/// One case's result: what the guest gave, and why that is wrong if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub name: String,
    pub got: String,
    /// None when the case passed.
    pub failure: Option<String>,
}

impl Checked {
    /// `got` against one expected line.
    fn against(name: String, got: String, expected: &str) -> Self {
        let expected = expected.trim();
        let passed = if expected == "guest fails" {
            got.starts_with("guest fails")
        } else {
            got == expected
        };
        let failure = (!passed).then(|| format!("expected {expected:?}, got {got:?}"));
        Checked { name, got, failure }
    }
}

/// Runs the routing questions of `file` against `component` (the guest at
/// `path`, named `name`), with the directory and config values of the file.
pub async fn routing(
    plugins: &Plugins,
    name: &str,
    path: &Path,
    component: &Component,
    file: &CaseFile,
) -> Result<Vec<Checked>, CasesError> {
    let guest = load(plugins, name, path, component, file)?;
    let accounts: BTreeMap<&str, &AccountEntry> = file
        .accounts
        .iter()
        .map(|a| (a.login.as_str(), a))
        .collect();
    let mut results = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("{} -> {}", case.from, case.to));
        let request = request(case, &accounts).map_err(|message| CasesError::Case {
            index: i + 1,
            name: name.clone(),
            message,
        })?;
        let got = match guest.route(&request).await {
            Ok((decision, caller_id)) => describe(&decision, caller_id.as_ref()),
            Err(failure) => fails(&failure),
        };
        results.push(Checked::against(name, got, &case.expect));
    }
    Ok(results)
}

fn fails(failure: &GuestFailure) -> String {
    format!("guest fails ({}: {})", failure.kind, failure.detail)
}

/// Runs the SMS provider cases of `file` against the guest at `path`,
/// with the config values of the file.
/// Runs the SMS cases of `file` against `component` (the guest at `path`,
/// named `name`), with the config values of the file.
pub async fn sms(
    plugins: &Plugins,
    name: &str,
    path: &Path,
    component: &Component,
    file: &CaseFile,
) -> Result<Vec<Checked>, CasesError> {
    let guest = SmsProviderGuest::link(plugins, name, path, component, file.config.clone())?;
    let mut results = Vec::new();
    for case in &file.sends {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("send to {}", case.to));
        let sms = OutgoingSms {
            to: case.to.clone(),
            sender: case.sender.clone(),
            text: case.text.clone(),
            reference: case.reference.clone(),
        };
        let checked = match guest.build_send(&sms, &[]).await {
            Ok(request) => check_request(
                name,
                (
                    &request.method,
                    &request.url,
                    &request.headers,
                    &request.body,
                ),
                &Expected {
                    method: case.expect_method.as_deref(),
                    url: case.expect_url.as_deref(),
                    headers: &case.expect_headers,
                    header_prefixes: None,
                    body_contains: &case.expect_body_contains,
                },
            ),
            Err(failure) => Checked {
                name,
                got: fails(&failure),
                failure: Some(fails(&failure)),
            },
        };
        results.push(checked);
    }
    for case in &file.responses {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("answer {}", case.status));
        let response = HttpMessage {
            status: case.status,
            headers: case.headers.clone().into_iter().collect(),
            body: case.body.clone().into_bytes(),
            ..HttpMessage::default()
        };
        let got = match guest.parse_send_response(&response).await {
            Ok(SendOutcome::Accepted { provider_id }) => format!("accepted {provider_id}"),
            Ok(SendOutcome::Rejected { reason }) => format!("rejected {reason}"),
            Ok(SendOutcome::RetryAfter { secs }) => format!("retry-after {secs}"),
            Err(failure) => fails(&failure),
        };
        results.push(Checked::against(name, got, &case.expect));
    }
    for case in &file.reports {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("report {}", case.url));
        let request = HttpMessage {
            method: case.method.clone(),
            url: case.url.clone(),
            headers: case.headers.clone().into_iter().collect(),
            body: case.body.clone().into_bytes(),
            ..HttpMessage::default()
        };
        let got = match guest.parse_delivery_report(&request).await {
            Ok(Ok(report)) => {
                let state = match report.state {
                    DeliveryState::Delivered => "delivered",
                    DeliveryState::Failed => "failed",
                    DeliveryState::Pending => "pending",
                };
                format!("{state} {}", report.provider_id)
            }
            Ok(Err(_)) => "not a report".to_owned(),
            Err(failure) => fails(&failure),
        };
        results.push(Checked::against(name, got, &case.expect));
    }
    Ok(results)
}

/// What a case expects of a request a guest built.
struct Expected<'a> {
    method: Option<&'a str>,
    url: Option<&'a str>,
    headers: &'a BTreeMap<String, String>,
    header_prefixes: Option<&'a BTreeMap<String, String>>,
    body_contains: &'a [String],
}

/// A request a guest built (method, URL, headers, body), against what the
/// case expects of it.
fn check_request(
    name: String,
    (method, url, headers, body): (&str, &str, &[(String, String)], &[u8]),
    expected: &Expected<'_>,
) -> Checked {
    let got = format!("{method} {url} ({} bytes)", body.len());
    let body = String::from_utf8_lossy(body);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut wrong = Vec::new();
    if let Some(want) = expected.method
        && want != method
    {
        wrong.push(format!("method {method:?}, not {want:?}"));
    }
    if let Some(want) = expected.url
        && want != url
    {
        wrong.push(format!("URL {url:?}, not {want:?}"));
    }
    for (name, value) in expected.headers {
        let found = header(name);
        if found != Some(value.as_str()) {
            wrong.push(format!("header {name} {found:?}, not {value:?}"));
        }
    }
    for (name, prefix) in expected.header_prefixes.into_iter().flatten() {
        let found = header(name);
        if !found.is_some_and(|v| v.starts_with(prefix.as_str())) {
            wrong.push(format!("header {name} {found:?}, not starting {prefix:?}"));
        }
    }
    for piece in expected.body_contains {
        if !body.contains(piece.as_str()) {
            wrong.push(format!("no {piece:?} in the body {body:?}"));
        }
    }
    let failure = (!wrong.is_empty()).then(|| wrong.join("; "));
    Checked { name, got, failure }
}

/// Runs the push provider cases of `file` against the guest at `path`,
/// with the config values and credentials of the file.
/// Runs the push cases of `file` against `component` (the guest at `path`,
/// named `name`), with the config values and keys of the file.
pub async fn push(
    plugins: &Plugins,
    name: &str,
    path: &Path,
    component: &Component,
    file: &CaseFile,
) -> Result<Vec<Checked>, CasesError> {
    let keys = PushKeys::for_guest_test(&file.push.sign_keys, file.push.oauth_tokens.clone())
        .map_err(|e| CasesError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let guest = PushProviderGuest::link(
        plugins,
        name,
        path,
        component,
        file.config.clone(),
        Arc::new(keys),
    )?;
    let mut results = Vec::new();
    for case in &file.pushes {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("{} to {}", case.kind.as_str(), case.token));
        let notification = Notification {
            kind: case.kind,
            from_login: case.from.clone(),
            from_display_name: case.from_display_name.clone(),
            from_book_name: case.from_book_name.clone(),
            timestamp: case.timestamp,
            call_id: case.call_id.clone(),
            excerpt: case.excerpt.clone(),
            badge: case.badge,
            id: case.id.clone(),
        };
        let device = PushDevice {
            token: case.token.clone(),
            app: case.app.clone(),
            sandbox: case.sandbox,
            voip: case.voip,
            login: case.login.clone(),
        };
        let checked = match guest.format(&notification, &device).await {
            Ok(Ok(requests)) if case.expect.is_none() => {
                let first = &requests[0];
                let mut checked = check_request(
                    name,
                    (&first.method, &first.url, &first.headers, &first.body),
                    &Expected {
                        method: case.expect_method.as_deref(),
                        url: case.expect_url.as_deref(),
                        headers: &case.expect_headers,
                        header_prefixes: Some(&case.expect_header_prefixes),
                        body_contains: &case.expect_body_contains,
                    },
                );
                let want = case.expect_requests.unwrap_or(1);
                if requests.len() != want {
                    let count = format!("{} requests, not {want}", requests.len());
                    checked.failure = Some(match checked.failure {
                        Some(other) => format!("{count}; {other}"),
                        None => count,
                    });
                }
                checked
            }
            Ok(Ok(requests)) => {
                let got = format!(
                    "{} {} (made a request)",
                    requests[0].method, requests[0].url
                );
                Checked::against(name, got, case.expect.as_deref().unwrap_or_default())
            }
            Ok(Err(reason)) => {
                let got = format!("refused {reason}");
                let failure = match &case.expect {
                    Some(want) if got.starts_with(want.trim()) => None,
                    Some(want) => Some(format!("expected {want:?}, got {got:?}")),
                    None => Some(format!("expected a request, got {got:?}")),
                };
                Checked { name, got, failure }
            }
            Err(failure) => Checked::against(
                name,
                fails(&failure),
                case.expect.as_deref().unwrap_or("a request"),
            ),
        };
        results.push(checked);
    }
    for case in &file.push_responses {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("answer {}", case.status));
        let response = PushResponse {
            status: case.status,
            headers: case.headers.clone().into_iter().collect(),
            body: case.body.clone().into_bytes(),
        };
        let got = match guest.parse_response(&response).await {
            Ok(PushOutcome::Delivered { id: None }) => "delivered".to_owned(),
            Ok(PushOutcome::Delivered { id: Some(id) }) => format!("delivered {id}"),
            Ok(PushOutcome::TokenInvalid { reason }) => format!("token-invalid {reason}"),
            Ok(PushOutcome::RetryAfter { secs }) => format!("retry-after {secs}"),
            Ok(PushOutcome::Failed { reason }) => format!("failed {reason}"),
            Err(failure) => fails(&failure),
        };
        results.push(Checked::against(name, got, &case.expect));
    }
    Ok(results)
}

/// The worlds cases exist for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseWorld {
    Routing,
    Sms,
    Push,
}

/// Runs the cases of `world` in `file` against `component` (the guest at
/// `path`, named `name`).
pub async fn run_component(
    world: CaseWorld,
    plugins: &Plugins,
    name: &str,
    path: &Path,
    component: &Component,
    file: &CaseFile,
) -> Result<Vec<Checked>, CasesError> {
    match world {
        CaseWorld::Routing => routing(plugins, name, path, component, file).await,
        CaseWorld::Sms => sms(plugins, name, path, component, file).await,
        CaseWorld::Push => push(plugins, name, path, component, file).await,
    }
}

/// A guest's name from its file name.
pub fn guest_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "guest".to_owned(), |s| s.to_string_lossy().into_owned())
}

fn load(
    plugins: &Plugins,
    name: &str,
    path: &Path,
    component: &Component,
    file: &CaseFile,
) -> Result<RoutingGuest, PluginError> {
    let accounts = file
        .accounts
        .iter()
        .map(|a| DirAccount {
            login: a.login.clone(),
            phone: a.phone.clone(),
            username: a.username.clone(),
            display_name: a.display_name.clone(),
            voicemail_enabled: a.voicemail,
        })
        .collect();
    let registered: HashSet<String> = file
        .accounts
        .iter()
        .filter(|a| a.registered)
        .map(|a| a.login.clone())
        .collect();
    let gateways = file
        .gateways
        .iter()
        .map(|g| DirGateway {
            name: g.name.clone(),
            prefix: g.prefix.clone(),
        })
        .collect();
    let directory: Arc<dyn Directory> =
        Arc::new(MemoryDirectory::new(accounts, registered, gateways));
    RoutingGuest::new(
        plugins,
        name,
        path,
        component,
        file.config.clone(),
        directory,
    )
}

fn request(case: &Case, accounts: &BTreeMap<&str, &AccountEntry>) -> Result<RouteRequest, String> {
    let kind = case.kind.as_deref().unwrap_or("call");
    let reason = case.reason.as_deref().unwrap_or("initial");
    let caller = accounts.get(case.from.as_str());
    Ok(RouteRequest {
        kind: Kind::from_str(kind, true).map_err(|_| format!("kind {kind:?}: call or message"))?,
        caller_login: case.from.clone(),
        caller_display_name: caller.and_then(|a| a.display_name.clone()),
        authenticated: true,
        target: case.to.clone(),
        transport: Transport::Internal,
        source_address: "127.0.0.1:0".into(),
        dialplan_rule: case
            .dialplan_rule
            .as_deref()
            .or_else(|| caller.and_then(|a| a.dialplan_rule.as_deref()))
            .unwrap_or(DEFAULT_RULE)
            .to_owned(),
        reason: Reason::from_str(reason, true).map_err(|_| {
            format!("reason {reason:?}: initial, no-answer, busy, declined or unavailable")
        })?,
    })
}
