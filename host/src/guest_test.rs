//! `softswitch guest test FILE.wasm CASES.toml`: runs a guest against
//! written cases and checks its answers, without a running switch, a
//! database or a network. The component is compiled, linked and called by
//! the same host code the switch uses (the same limits: memory, deadline);
//! only its directory is the one the case file describes.
//!
//! Routing guests: each `[[cases]]` entry is a routing question (caller,
//! number dialled, kind, reason) and the decision expected, written the way
//! `softswitch route` prints it (`to-user bob`, `to-gateway carrier-pl
//! 4860012345 (caller-id Alice <48600111222>)`, `reject 404 Not Found`,
//! `guest fails` for a case the guest must fail on).
//!
//! SMS provider guests: `[[sends]]` (a message in, the HTTP request
//! expected out: method, URL, headers, pieces of the body), `[[responses]]`
//! (a vendor answer in, `accepted ID`, `rejected REASON` or `retry-after
//! SECS` expected) and `[[reports]]` (a delivery-report callback in,
//! `delivered ID`, `failed ID`, `pending ID` or `not a report` expected).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde::Deserialize;
use softswitch::directory::{DirAccount, DirGateway, Directory, MemoryDirectory};
use softswitch::metrics::Metrics;
use softswitch::plugins::inspect;
use softswitch::plugins::routing::{Kind, Reason, RouteRequest, RoutingGuest, Transport, describe};
use softswitch::plugins::sms::{
    DeliveryState, HttpMessage, OutgoingSms, SendOutcome, SmsProviderGuest,
};
use softswitch::plugins::{GuestFailure, Plugins, PluginsOptions};

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The component to test.
    file: PathBuf,
    /// The cases (TOML; see the README, "Plugins").
    cases: PathBuf,
}

/// A case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
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

/// Runs the cases; prints one line per case and a summary. Fails when a
/// case does (or the files cannot be used).
pub async fn run(args: &TestArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.cases)
        .with_context(|| format!("cannot read {}", args.cases.display()))?;
    let file: CaseFile = toml::from_str(&text)
        .with_context(|| format!("{} is not a case file", args.cases.display()))?;
    // The switch's default limits ([plugins] memory_limit_mib, deadline_ms).
    let plugins = Plugins::new(
        PluginsOptions {
            cache_dir: std::env::temp_dir().join("softswitch-guest-test-cache"),
            memory_limit_bytes: 64 << 20,
            deadline: std::time::Duration::from_millis(50),
            warm_instances: 1,
        },
        Metrics::new(),
    )?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let exports = inspect::export_names(&plugins, &plugins.compile(&args.file, &bytes)?);
    let results = if exports.iter().any(|e| e == "route") {
        // The switch's own check first: it links and makes the smoke call.
        inspect::check(&plugins, &args.file).await?;
        if file.cases.is_empty() {
            bail!(
                "{} has no [[cases]] (routing questions)",
                args.cases.display()
            );
        }
        routing_cases(&plugins, &args.file, &file).await?
    } else if exports.iter().any(|e| e == "build-send") {
        if file.sends.is_empty() && file.responses.is_empty() && file.reports.is_empty() {
            bail!(
                "{} has no [[sends]], [[responses]] or [[reports]]",
                args.cases.display()
            );
        }
        sms_cases(&plugins, &args.file, &file).await?
    } else {
        bail!(
            "{} exports [{}]: `guest test` runs routing and SMS provider guests so far",
            args.file.display(),
            exports.join(", ")
        );
    };
    let mut failed = 0;
    for Checked { name, got, failure } in &results {
        match failure {
            None => println!("ok    {name}: {got}"),
            Some(why) => {
                failed += 1;
                println!("FAIL  {name}: {why}");
            }
        }
    }
    let total = results.len();
    println!("{total} cases, {} passed, {failed} failed", total - failed);
    if failed > 0 {
        bail!("{failed} of {total} cases failed");
    }
    Ok(())
}

/// One case's result: what the guest gave, and why that is wrong if it is.
struct Checked {
    name: String,
    got: String,
    failure: Option<String>,
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

async fn routing_cases(
    plugins: &Plugins,
    path: &Path,
    file: &CaseFile,
) -> anyhow::Result<Vec<Checked>> {
    let guest = load(plugins, path, file)?;
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
        let request =
            request(case, &accounts).with_context(|| format!("case {} ({name})", i + 1))?;
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

async fn sms_cases(
    plugins: &Plugins,
    path: &Path,
    file: &CaseFile,
) -> anyhow::Result<Vec<Checked>> {
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

fn guest_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "guest".to_owned(), |s| s.to_string_lossy().into_owned())
}

fn load(plugins: &Plugins, path: &Path, file: &CaseFile) -> anyhow::Result<RoutingGuest> {
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
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let component = plugins.compile(path, &bytes)?;
    Ok(RoutingGuest::new(
        plugins,
        &guest_name(path),
        path,
        &component,
        file.config.clone(),
        directory,
    )?)
}

fn request(case: &Case, accounts: &BTreeMap<&str, &AccountEntry>) -> anyhow::Result<RouteRequest> {
    let kind = case.kind.as_deref().unwrap_or("call");
    let reason = case.reason.as_deref().unwrap_or("initial");
    let caller = accounts.get(case.from.as_str());
    Ok(RouteRequest {
        kind: Kind::from_str(kind, true)
            .map_err(|_| anyhow::anyhow!("kind {kind:?}: call or message"))?,
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
            anyhow::anyhow!("reason {reason:?}: initial, no-answer, busy, declined or unavailable")
        })?,
    })
}
