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
//!
//! IVR guests: each `[[calls]]` entry is a call to a service (its facts:
//! service, arguments, caller) with the caller's side as a script (`press
//! 1#`, `wait`, `speak 3000`, `hang up`, see [`crate::ivr::line`]); the
//! run's transcript (what it played, gathered, recorded, stored) is
//! compared line by line with `expect`, and how the run ended with
//! `expect_outcome` (`completed` by default). Mailboxes live in an
//! in-memory SQLite database made for each call from `[[accounts]]` and
//! `[[voicemails]]`; prompts come from the switch's prompt folder (`[ivr]
//! prompts`, relative to the case file, or `guest test --prompts`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;
use serde::Deserialize;
use wasmtime::component::Component;

use super::capabilities::MailboxScope;
use super::ivr::{IvrGuest, RunOutcome};
use super::push::{PushDevice, PushOutcome, PushProviderGuest, PushResponse};
use super::routing::{Kind, Reason, RouteRequest, RoutingGuest, Transport, describe};
use super::sms::{DeliveryState, HttpMessage, OutgoingSms, SendOutcome, SmsProviderGuest};
use super::{GuestFailure, PluginError, Plugins};
use crate::directory::{DirAccount, DirGateway, Directory, MemoryDirectory};
use crate::ivr::IvrConfig;
use crate::ivr::line::{Line, ScriptedLine, parse_script};
use crate::ivr::prompts::{FALLBACK_LANGUAGE, Prompts};
use crate::ivr::session::{CallFacts, Control, Hooks, Session};
use crate::push::keys::PushKeys;
use crate::push::{Notification, NotificationKind};
use crate::secrets::Secrets;
use crate::store::Store;
use crate::store::accounts::{AccountTemplate, NewAccount};
use crate::store::mailbox::NewVoicemail;

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
    #[error(
        "no prompts folder at {0} (it needs {FALLBACK_LANGUAGE}/): name one with [ivr] prompts or --prompts"
    )]
    NoPrompts(PathBuf),
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
    #[serde(default)]
    ivr: IvrSetup,
    #[serde(default)]
    voicemails: Vec<VoicemailEntry>,
    #[serde(default)]
    calls: Vec<CallCase>,
    /// The folder of the case file (relative paths in it start there).
    #[serde(skip)]
    base: PathBuf,
    /// The prompts folder the runner was told to use.
    #[serde(skip)]
    prompts_override: Option<PathBuf>,
    /// The mailboxes the guest's capabilities leave it (the canary's).
    #[serde(skip)]
    mailboxes_override: Option<MailboxScope>,
}

/// `[ivr]`: what an IVR guest's calls run with.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IvrSetup {
    /// The prompts folder, relative to the case file (default: `prompts`
    /// in the current folder).
    prompts: Option<PathBuf>,
    /// The calls' language when a call names none (default `en`).
    language: Option<String>,
    /// The guest's `capabilities.mailboxes` (default `call`).
    mailboxes: Option<MailboxScope>,
}

/// A message already in a mailbox when a call starts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoicemailEntry {
    owner: String,
    #[serde(default = "default_voicemail_caller")]
    caller: String,
    caller_name: Option<String>,
    #[serde(default = "default_voicemail_ms")]
    duration_ms: u32,
    #[serde(default)]
    heard: bool,
}

fn default_voicemail_caller() -> String {
    "48600111222".into()
}

fn default_voicemail_ms() -> u32 {
    2000
}

/// A call to an IVR service and the run expected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallCase {
    name: Option<String>,
    /// The service the routing guest named (`voicemail-deposit` ...).
    service: String,
    #[serde(default)]
    args: Vec<String>,
    /// The caller's login when the switch authenticated it (its own
    /// mailbox is granted); empty for a caller from outside.
    #[serde(default)]
    caller: String,
    /// The number or name presented (default: the caller's login).
    caller_id: Option<String>,
    caller_display_name: Option<String>,
    #[serde(default)]
    callee: String,
    language: Option<String>,
    /// The caller's side, one step a line.
    #[serde(default)]
    script: Vec<String>,
    /// The transcript, line by line.
    expect: Vec<String>,
    /// `completed` (default), `error TEXT` or `guest fails`.
    expect_outcome: Option<String>,
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
        let mut file: Self = toml::from_str(&text).map_err(|e| CasesError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_owned(),
        })?;
        file.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(file)
    }

    /// IVR calls run with the prompts of `dir` (the switch's own, or
    /// `guest test --prompts`) whatever the file says.
    pub fn use_prompts(&mut self, dir: impl Into<PathBuf>) {
        self.prompts_override = Some(dir.into());
    }

    /// IVR calls open only the mailboxes `scope` leaves (the guest's
    /// capabilities in the switch) whatever the file says.
    pub fn use_mailboxes(&mut self, scope: MailboxScope) {
        self.mailboxes_override = Some(scope);
    }

    /// Has IVR calls.
    pub fn has_ivr(&self) -> bool {
        !self.calls.is_empty()
    }

    fn prompts_dir(&self) -> PathBuf {
        match (&self.prompts_override, &self.ivr.prompts) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => self.base.join(dir),
            (None, None) => PathBuf::from("prompts"),
        }
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

/// Runs the IVR calls of `file` against `component` (the guest at
/// `path`, named `name`): each on a scripted caller, with mailboxes in a
/// database of its own.
pub async fn ivr(
    plugins: &Plugins,
    name: &str,
    path: &Path,
    component: &Component,
    file: &CaseFile,
) -> Result<Vec<Checked>, CasesError> {
    let prompts_dir = file.prompts_dir();
    if !prompts_dir.join(FALLBACK_LANGUAGE).is_dir() {
        return Err(CasesError::NoPrompts(prompts_dir));
    }
    let prompts = Arc::new(Prompts::new(prompts_dir));
    let guest = IvrGuest::link(
        plugins,
        name,
        path,
        component,
        file.config.clone(),
        IvrConfig::default().step_budget(),
    )?;
    let mut results = Vec::new();
    for (index, case) in file.calls.iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("{} call {}", case.service, index + 1));
        let fail = |message: String| CasesError::Case {
            index: index + 1,
            name: name.clone(),
            message,
        };
        let steps = parse_script(&case.script).map_err(|e| fail(e.to_string()))?;
        let store = ivr_store(file).await.map_err(fail)?;
        let facts = CallFacts {
            service: case.service.clone(),
            args: case.args.clone(),
            caller_login: case.caller.clone(),
            caller_id: case
                .caller_id
                .clone()
                .unwrap_or_else(|| case.caller.clone()),
            caller_display_name: case.caller_display_name.clone(),
            callee: case.callee.clone(),
            language: case
                .language
                .clone()
                .or_else(|| file.ivr.language.clone())
                .unwrap_or_else(|| FALLBACK_LANGUAGE.into()),
            call_id: format!("case-{}", index + 1),
        };
        let scope = file
            .mailboxes_override
            .or(file.ivr.mailboxes)
            .unwrap_or_default();
        let grants = scope.filter(crate::ivr::grants(&store, &facts).await);
        let (control, mut asked) = tokio::sync::mpsc::unbounded_channel();
        // The SIP side of a scripted call: answering always works.
        tokio::spawn(async move {
            while let Some(c) = asked.recv().await {
                if let Control::Answer(ok) = c {
                    let _ = ok.send(true);
                }
            }
        });
        let session = Session::new(
            facts,
            Line::Scripted(ScriptedLine::new(steps)),
            control,
            prompts.clone(),
            store.clone(),
            grants,
            false,
            Hooks::default(),
        );
        let (got, transcript) = match tokio::time::timeout(CALL_LIMIT, guest.run(session)).await {
            Ok((outcome, session)) => {
                let got = match outcome {
                    RunOutcome::Completed => "completed".to_owned(),
                    RunOutcome::GuestError(e) => format!("error {e}"),
                    RunOutcome::Failed(f) => fails(&f),
                };
                (got, session.transcript().to_vec())
            }
            Err(_) => (
                format!("guest fails: still running after {CALL_LIMIT:?}"),
                Vec::new(),
            ),
        };
        store.close().await;
        let mut checked = Checked::against(
            name,
            got,
            case.expect_outcome.as_deref().unwrap_or("completed"),
        );
        if let Some(diff) = transcript_difference(&case.expect, &transcript) {
            checked.failure = Some(match checked.failure {
                Some(outcome) => format!("{outcome}; {diff}"),
                None => diff,
            });
        }
        checked.got = format!("{} ({} lines)", checked.got, transcript.len());
        results.push(checked);
    }
    Ok(results)
}

/// Longest a scripted call may take (its time is not simulated: a run
/// that takes this long is stuck).
const CALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An in-memory database with the file's accounts and voicemails.
async fn ivr_store(file: &CaseFile) -> Result<Store, String> {
    let secrets = Arc::new(Secrets::generate().map_err(|e| e.to_string())?);
    let store = Store::open("sqlite::memory:", secrets)
        .await
        .map_err(|e| e.to_string())?;
    for a in &file.accounts {
        store
            .add_account(&NewAccount {
                login: a.login.clone(),
                sip_password: "case-password".into(),
                access_password: None,
                phone: a.phone.clone(),
                username: a.username.clone(),
                display_name: a.display_name.clone(),
                email: None,
                template: AccountTemplate::default(),
            })
            .await
            .map_err(|e| format!("account {}: {e}", a.login))?;
    }
    for v in &file.voicemails {
        let samples = media::tone::sine(
            440.0,
            6000,
            std::time::Duration::from_millis(v.duration_ms.into()),
        );
        let wav = media::wav::write(&samples).map_err(|e| e.to_string())?;
        let id = store
            .deposit_voicemail(&NewVoicemail {
                login: &v.owner,
                caller: &v.caller,
                caller_name: v.caller_name.as_deref(),
                duration_ms: v.duration_ms.into(),
                wav: &wav,
                email_to: None,
            })
            .await
            .map_err(|e| format!("voicemail for {}: {e}", v.owner))?;
        if v.heard {
            store
                .set_voicemail_heard(&v.owner, id, true)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(store)
}

/// Where a transcript departs from the one expected, if it does.
fn transcript_difference(expected: &[String], got: &[String]) -> Option<String> {
    let at = expected
        .iter()
        .map(|l| l.trim())
        .zip(got.iter().map(|l| l.trim()))
        .position(|(e, g)| e != g)
        .or((expected.len() != got.len()).then(|| expected.len().min(got.len())))?;
    let line = |lines: &[String]| {
        lines
            .get(at)
            .map_or_else(|| "(nothing)".to_owned(), |l| format!("{:?}", l.trim()))
    };
    let whole: Vec<String> = got.iter().map(|l| format!("\n        {l}")).collect();
    Some(format!(
        "transcript line {}: expected {}, got {}; the run's transcript:{}",
        at + 1,
        line(expected),
        line(got),
        whole.concat()
    ))
}

/// The worlds cases exist for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseWorld {
    Routing,
    Sms,
    Push,
    Ivr,
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
        CaseWorld::Ivr => ivr(plugins, name, path, component, file).await,
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
