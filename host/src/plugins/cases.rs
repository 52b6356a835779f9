//! Written cases for guests, and the runner that checks a guest against
//! them with the switch's own host code and limits (no switch, database or
//! network): `softswitch guest test`, and the canary a hot reload runs
//! when a guest's config names its cases (`[guests.<name>] cases`).
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

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;
use serde::Deserialize;
use wasmtime::component::Component;

use super::routing::{Kind, Reason, RouteRequest, RoutingGuest, Transport, describe};
use super::sms::{DeliveryState, HttpMessage, OutgoingSms, SendOutcome, SmsProviderGuest};
use super::{GuestFailure, PluginError, Plugins};
use crate::directory::{DirAccount, DirGateway, Directory, MemoryDirectory};

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
pub async fn sms(
    plugins: &Plugins,
    path: &Path,
    file: &CaseFile,
) -> Result<Vec<Checked>, CasesError> {
    let guest =
        SmsProviderGuest::load(plugins, &guest_name(path), path, file.config.clone()).await?;
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
            Ok(request) => check_request(name, &request, case),
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

/// A request a guest built, against what the case expects of it.
fn check_request(name: String, request: &HttpMessage, case: &SendCase) -> Checked {
    let got = format!(
        "{} {} ({} bytes)",
        request.method,
        request.url,
        request.body.len()
    );
    let body = String::from_utf8_lossy(&request.body);
    let mut wrong = Vec::new();
    if let Some(method) = &case.expect_method
        && *method != request.method
    {
        wrong.push(format!("method {:?}, not {method:?}", request.method));
    }
    if let Some(url) = &case.expect_url
        && *url != request.url
    {
        wrong.push(format!("URL {:?}, not {url:?}", request.url));
    }
    for (header, value) in &case.expect_headers {
        let found = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(header))
            .map(|(_, v)| v.as_str());
        if found != Some(value.as_str()) {
            wrong.push(format!("header {header} {found:?}, not {value:?}"));
        }
    }
    for piece in &case.expect_body_contains {
        if !body.contains(piece.as_str()) {
            wrong.push(format!("no {piece:?} in the body {body:?}"));
        }
    }
    let failure = (!wrong.is_empty()).then(|| wrong.join("; "));
    Checked { name, got, failure }
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
