//! `softswitch guest test FILE.wasm CASES.toml`: runs a guest against
//! written cases and checks its answers, without a running switch, a
//! database or a network. The component is compiled, linked and called by
//! the same host code the switch uses (the same limits: memory, deadline);
//! only its directory is the one the case file describes.
//!
//! Routing guests so far: each case is a routing question (caller, number
//! dialled, kind, reason) and the decision expected, written the way
//! `softswitch route` prints it (`to-user bob`, `to-gateway carrier-pl
//! 4860012345 (caller-id Alice <48600111222>)`, `reject 404 Not Found`,
//! `guest fails` for a case the guest must fail on).

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
use softswitch::plugins::{Plugins, PluginsOptions};

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
    cases: Vec<Case>,
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
    if file.cases.is_empty() {
        bail!("{} has no [[cases]]", args.cases.display());
    }
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
    let report = inspect::check(&plugins, &args.file).await?;
    if !report.world.contains("routing/router") {
        bail!(
            "{} implements {}: `guest test` runs routing guests so far",
            args.file.display(),
            report.world
        );
    }
    let guest = load(&plugins, &args.file, &file)?;
    let accounts: BTreeMap<&str, &AccountEntry> = file
        .accounts
        .iter()
        .map(|a| (a.login.as_str(), a))
        .collect();
    let mut failed = 0;
    for (i, case) in file.cases.iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("{} -> {}", case.from, case.to));
        let request =
            request(case, &accounts).with_context(|| format!("case {} ({name})", i + 1))?;
        let got = match guest.route(&request).await {
            Ok((decision, caller_id)) => describe(&decision, caller_id.as_ref()),
            Err(failure) => format!("guest fails ({}: {})", failure.kind, failure.detail),
        };
        let expected = case.expect.trim();
        let passed = if expected == "guest fails" {
            got.starts_with("guest fails")
        } else {
            got == expected
        };
        if passed {
            println!("ok    {name}: {got}");
        } else {
            failed += 1;
            println!("FAIL  {name}: expected {expected:?}, got {got:?}");
        }
    }
    let total = file.cases.len();
    println!("{total} cases, {} passed, {failed} failed", total - failed);
    if failed > 0 {
        bail!("{failed} of {total} cases failed");
    }
    Ok(())
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
    let name = path
        .file_stem()
        .map_or_else(|| "guest".to_owned(), |s| s.to_string_lossy().into_owned());
    Ok(RoutingGuest::new(
        plugins,
        &name,
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
