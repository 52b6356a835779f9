//! `softswitch`: the command line of the programmable softswitch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

mod billing_cli;
mod guest_new;
mod guest_test;
mod presence_cli;
mod push_cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a stopping switch waits for the requests under way to be
/// answered (a ringing call's INVITE may take all of it).
const STOP_GRACE: Duration = Duration::from_secs(5);

use presence_cli::{ContactCommand, PresenceCommand, VoicemailCommand};
use softswitch::admin::{self, AdminParts, AdminState};
use softswitch::app::{App, redact_url};
use softswitch::config::DEFAULT_TOML;
use softswitch::plugins::inspect;
use softswitch::plugins::routing::{self, Kind, Reason, RouteRequest, Routed, Transport};
use softswitch::store::accounts::{AccountSettings, NewAccount};
use softswitch::store::dialplan::DialplanEntry;
use softswitch::store::gateways::{Gateway, Transport as GatewayTransport};

#[derive(Parser)]
#[command(name = "softswitch", version, about = "Programmable RCS softswitch")]
struct Cli {
    /// Configuration file (TOML); every key has a default.
    #[arg(long, global = true, env = "SOFTSWITCH_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, keys, guest cache); overrides `data_dir` in the file.
    #[arg(long, global = true, env = "SOFTSWITCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the switch.
    Run,
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create or upgrade the database schema.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage gateways (carriers) for OFFNET numbers.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Manage the local dialing plan (prefix → SIP server).
    #[command(subcommand)]
    Dialplan(DialplanCommand),
    /// The switch nodes on this database (cluster mode).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Inspect the message store.
    #[command(subcommand)]
    Message(MessageCommand),
    /// Manage numbers (DIDs) carriers deliver to accounts.
    #[command(subcommand)]
    Did(DidCommand),
    /// Inspect call records.
    #[command(subcommand)]
    Cdr(CdrCommand),
    /// Ask the routing guest where a call or message goes.
    Route(RouteArgs),
    /// Inspect guests, or start a new one.
    #[command(subcommand)]
    Guest(GuestCommand),
    /// Manage users' address books (buddy lists are built from them).
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Manage voice messages (MWI counts follow them).
    #[command(subcommand)]
    Voicemail(VoicemailCommand),
    /// Inspect stored presence state.
    #[command(subcommand)]
    Presence(PresenceCommand),
    /// Users' push tokens, test pushes and the push outbox.
    #[command(subcommand)]
    Push(push_cli::PushCommand),
    /// Tariffs: import from CSV, list, delete rates.
    #[command(subcommand)]
    Tariff(billing_cli::TariffCommand),
    /// Balances: show, top up, the ledger.
    #[command(subcommand)]
    Balance(billing_cli::BalanceCommand),
    /// Voucher (recharge PIN) batches.
    #[command(subcommand)]
    Voucher(billing_cli::VoucherCommand),
    /// Exchange rates: list, set, delete.
    #[command(subcommand)]
    Fx(billing_cli::FxCommand),
    /// The plan catalogue: list, create or replace, delete.
    #[command(subcommand)]
    Plan(billing_cli::PlanCommand),
    /// The numbers for sale: import from CSV, list, remove.
    #[command(subcommand, name = "did-pool")]
    DidPool(billing_cli::DidPoolCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default and a comment.
    Default,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account (from the account template) and its profile.
    Add {
        login: String,
        /// SIP password (stored encrypted).
        #[arg(long)]
        password: String,
        /// Phone number, E.164 without `+`.
        #[arg(long)]
        phone: Option<String>,
        /// Username (service ID).
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Access (web/app) password, stored as an argon2 hash.
        #[arg(long)]
        access_password: Option<String>,
    },
    /// Create accounts in bulk from a file of `login;sip_password` lines (the
    /// SIPp injection-file format: a SEQUENTIAL/RANDOM first line and extra
    /// fields are ignored). Existing logins are skipped.
    Import { file: PathBuf },
    /// List accounts.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show one account (never its passwords).
    Show { login: String },
    /// Change an account's settings; only the options given change.
    Set {
        login: String,
        /// Seconds its devices ring before the routing guest is asked again
        /// (reason no-answer): 0 rings until the caller gives up, else 5 to
        /// 600; `default` goes back to calls.no_answer_secs.
        #[arg(long, value_name = "SECS|default", value_parser = parse_no_answer)]
        no_answer_secs: Option<NoAnswer>,
        #[arg(long)]
        tariff: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        dialplan_rule: Option<String>,
        /// Plan name; "" removes it.
        #[arg(long)]
        plan: Option<String>,
        /// Whether unanswered, busy, declined and offline calls go to
        /// voicemail (on by default).
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        voicemail: Option<bool>,
        /// Whether new voicemails are also e-mailed (MP3) to the account's
        /// e-mail address (off by default).
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        voicemail_email: Option<bool>,
        /// Record the account's calls: both directions `mixed` in one
        /// channel, or `stereo` (caller left, callee right); `off` stops.
        #[arg(long, value_name = "mixed|stereo|off")]
        recording: Option<String>,
    },
    /// Delete an account and its profile.
    Del { login: String },
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}

/// `--no-answer-secs`: seconds, or `None` for the switch-wide default.
#[derive(Clone, Copy, Debug)]
struct NoAnswer(Option<u32>);

fn parse_no_answer(s: &str) -> Result<NoAnswer, String> {
    if s.eq_ignore_ascii_case("default") {
        return Ok(NoAnswer(None));
    }
    let secs: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is neither a number of seconds nor \"default\""))?;
    // The same bounds the store and the admin API apply.
    softswitch::store::accounts::validate_no_answer_secs(secs).map_err(|e| e.to_string())?;
    Ok(NoAnswer(Some(secs)))
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Add a gateway serving numbers that start with PREFIX.
    Add {
        name: String,
        #[arg(long)]
        prefix: String,
        /// HOST:PORT of the carrier's SIP server.
        #[arg(long)]
        address: String,
        #[arg(long, default_value = "udp")]
        transport: String,
        /// Record every call through it: both directions `mixed` in one
        /// channel, or `stereo` (caller left, callee right).
        #[arg(long, value_name = "mixed|stereo")]
        recording: Option<String>,
    },
    /// Change a gateway's settings.
    Set {
        name: String,
        /// Record its calls (`mixed`, `stereo`) or not (`off`).
        #[arg(long, value_name = "mixed|stereo|off")]
        recording: String,
    },
    /// List gateways.
    List,
    /// Delete a gateway.
    Del { name: String },
}

#[derive(Subcommand)]
enum DidCommand {
    /// Ring LOGIN's devices when a trusted gateway delivers a call to NUMBER.
    Add { number: String, login: String },
    /// List DIDs.
    List,
    /// Delete a DID.
    Del { number: String },
}

#[derive(Subcommand)]
enum CdrCommand {
    /// The newest call records (start time UTC, caller, callee, gateway,
    /// disposition, status, seconds, end reason).
    List {
        /// Only calls LOGIN made or received.
        #[arg(long)]
        login: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Every node that has run on this database: alive or dead (by
    /// `cluster.dead_after_ms`), its address, name and last heartbeat.
    List,
}

#[derive(Subcommand)]
enum DialplanCommand {
    /// Map numbers starting with PREFIX to SIP server SERVER.
    Add { prefix: String, server: String },
    /// List the local dialing plan.
    List,
    /// Delete the entry for PREFIX.
    Del { prefix: String },
}

#[derive(Subcommand)]
enum MessageCommand {
    /// The newest messages with their delivery status.
    List {
        /// Only messages to this login.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Args)]
struct RouteArgs {
    /// Caller's login.
    #[arg(long)]
    from: String,
    /// Number or name dialled.
    #[arg(long)]
    to: String,
    #[arg(long, value_enum, default_value_t = Kind::Call)]
    kind: Kind,
    /// Why the switch asks: a new request, or a call that was not answered.
    #[arg(long, value_enum, default_value_t = Reason::Initial)]
    reason: Reason,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum GuestCommand {
    /// Say which world a component implements, or why it is refused.
    Check { file: PathBuf },
    /// Write a standalone Cargo project for a new guest of WORLD.
    New(guest_new::NewArgs),
    /// Run a guest against written cases, without a switch (routing and SMS
    /// provider guests).
    Test(guest_test::TestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    if let Command::Config(ConfigCommand::Default) = cli.command {
        print!("{DEFAULT_TOML}");
        return Ok(());
    }
    if let Command::Guest(GuestCommand::New(args)) = &cli.command {
        return guest_new::run(args);
    }
    if let Command::Guest(GuestCommand::Test(args)) = &cli.command {
        return guest_test::run(args).await;
    }
    let app = App::open(cli.config.as_deref(), cli.data_dir.as_deref()).await?;
    match cli.command {
        Command::Config(_) | Command::Guest(GuestCommand::New(_) | GuestCommand::Test(_)) => {
            unreachable!("handled above")
        }
        Command::Run => run(app).await,
        Command::Migrate => {
            app.store.migrate().await?;
            println!(
                "database {} is up to date",
                redact_url(&app.config.database_url(&app.data_dir))
            );
            Ok(())
        }
        Command::Account(cmd) => account(app, cmd).await,
        Command::Gateway(cmd) => gateway(app, cmd).await,
        Command::Did(cmd) => did(app, cmd).await,
        Command::Cdr(CdrCommand::List { login, limit }) => {
            for c in app.store.list_cdrs(login.as_deref(), limit).await? {
                let c = c.cdr;
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    softswitch::utc::format_ms(c.started_at),
                    c.caller,
                    c.callee,
                    c.gateway.as_deref().unwrap_or("-"),
                    c.disposition,
                    c.code,
                    c.duration_secs(),
                    c.end_reason.as_deref().unwrap_or("-"),
                    c.cost_micro.map_or_else(
                        || "-".to_owned(),
                        |m| softswitch::billing::money::format_micro(m, 2)
                    ),
                );
            }
            Ok(())
        }
        Command::Dialplan(cmd) => dialplan(app, cmd).await,
        Command::Node(NodeCommand::List) => {
            let now_ms = i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis(),
            )?;
            let dead_after = i64::try_from(app.config.cluster.dead_after_ms)?;
            for n in app.store.nodes().await? {
                let state = if now_ms - n.seen_at <= dead_after {
                    "alive"
                } else {
                    "dead"
                };
                println!(
                    "{}\t{}\t{state}\tseen {} ms ago",
                    n.node,
                    n.name,
                    now_ms - n.seen_at
                );
            }
            Ok(())
        }
        Command::Route(args) => route(app, args).await,
        Command::Message(MessageCommand::List { to, limit }) => {
            for m in app.store.list_messages(to.as_deref(), limit).await? {
                let body = String::from_utf8_lossy(&m.message.body);
                let preview: String = body
                    .chars()
                    .take(40)
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                println!(
                    "{}\t{}\t{} -> {}\t{}\t{}",
                    m.id,
                    m.status,
                    m.message.sender,
                    m.message.recipient,
                    m.message.content_type,
                    preview
                );
            }
            Ok(())
        }
        Command::Contact(cmd) => presence_cli::contact(app, cmd).await,
        Command::Voicemail(cmd) => presence_cli::voicemail(app, cmd).await,
        Command::Presence(cmd) => presence_cli::presence(app, cmd).await,
        Command::Push(cmd) => push_cli::push(app, cmd).await,
        Command::Tariff(cmd) => billing_cli::tariff(app, cmd).await,
        Command::Balance(cmd) => billing_cli::balance(app, cmd).await,
        Command::Voucher(cmd) => billing_cli::voucher(app, cmd).await,
        Command::Fx(cmd) => billing_cli::fx(app, cmd).await,
        Command::Plan(cmd) => billing_cli::plan(app, cmd).await,
        Command::DidPool(cmd) => billing_cli::did_pool(app, cmd).await,
        Command::Guest(GuestCommand::Check { file }) => {
            let plugins = app.plugins()?;
            let report = inspect::check(&plugins, &file).await?;
            println!(
                "{} implements {} (sha256 {})",
                report.path, report.world, report.sha256
            );
            Ok(())
        }
    }
}

async fn run(app: App) -> anyhow::Result<()> {
    let media = &app.config.media;
    let needed = softswitch::limits::files_needed(media.port_min, media.port_max);
    match softswitch::limits::raise_open_files() {
        Ok(Some(open_files)) if open_files < needed => tracing::warn!(
            open_files,
            needed,
            "the open-files limit is below what the media port range can use: \
             raise the hard limit (LimitNOFILE= in the unit, or ulimit -Hn)"
        ),
        Ok(open_files) => tracing::debug!(?open_files, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let registrar = softswitch::sip::start::load_registrar(&app).await?;
    let registry = Arc::new(app.guests(Some(registrar.clone())).await?);
    let router = registry.router(&app.config)?;
    let sip = softswitch::sip::start::start(&app, router, registrar).await?;
    let push = softswitch::push::PushService::load(
        &app.config.push,
        &registry,
        app.store.clone(),
        app.metrics.clone(),
    )
    .await
    .context("cannot start push")?;
    let _push_worker = softswitch::push::worker::spawn(push.clone());
    sip.attach_push(push.clone());
    let ivr =
        softswitch::ivr::Ivr::new(app.config.ivr.clone(), registry.clone(), app.store.clone())
            .await;
    let weak = Arc::downgrade(&sip);
    ivr.on_mailbox_change(Arc::new(move |login: &str| {
        if let Some(server) = weak.upgrade() {
            let login = login.to_owned();
            tokio::spawn(async move {
                softswitch::sip::presence::Presence::mailbox_changed(&server, &login).await;
            });
        }
    }));
    let mailer = Arc::new(softswitch::notify::email::Mailer::new(&app.config.email)?);
    let voicemail_template = softswitch::notify::email::Template::load(
        &app.config.email.voicemail_template,
        softswitch::notify::voicemail_mail::DEFAULT_VOICEMAIL_TEMPLATE,
    )?;
    softswitch::notify::voicemail_mail::spawn(
        app.store.clone(),
        mailer,
        voicemail_template,
        ivr.email_queued(),
    );
    let push_for_voicemail = push.clone();
    ivr.on_voicemail_left(Arc::new(move |left: softswitch::ivr::VoicemailLeft| {
        let push = push_for_voicemail.clone();
        tokio::spawn(async move {
            let notification = softswitch::push::Notification {
                kind: softswitch::push::NotificationKind::Voicemail,
                from_login: left.caller,
                from_display_name: left.caller_name.unwrap_or_default(),
                from_book_name: None,
                timestamp: softswitch::store::now_secs(),
                call_id: None,
                excerpt: left.id.to_string(),
                badge: 0,
                id: format!("vm-{}", left.id),
            };
            push.notify_user(&left.owner, notification).await;
        });
    }));
    sip.attach_ivr(ivr);
    let _stun = softswitch::stun::start(&app.config.stun, app.metrics.clone()).await?;
    let _api =
        softswitch::api::start::start(&app, &registry, Some(sip.clone()), Some(push.clone()))
            .await?;
    let (token, token_file) = app.admin_token()?;
    if let Some(path) = token_file {
        tracing::info!(path = %path.display(), "admin bearer token is in this file");
    }
    let listener = tokio::net::TcpListener::bind(app.config.admin.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (admin.listen)",
                app.config.admin.listen
            )
        })?;
    tracing::info!(address = %listener.local_addr()?, "admin endpoint listening");
    let state = Arc::new(AdminState::new(
        AdminParts {
            registry: registry.clone(),
            metrics: app.metrics.clone(),
            store: app.store.clone(),
            template: app.config.account_template.clone(),
            billing: app.billing(),
        },
        app.config.admin.allow.clone(),
        &token,
    ));
    let admin_task = tokio::spawn(admin::serve(listener, state));
    if app.config.plugins.watch_interval_ms > 0 {
        registry.spawn_watch(Duration::from_millis(app.config.plugins.watch_interval_ms));
    }
    softswitch::tls::spawn_watch(softswitch::tls::WATCH_EVERY);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!(database = %redact_url(&app.config.database_url(&app.data_dir)), "softswitch running");
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading every guest and TLS certificate");
                registry.reload_all().await;
                softswitch::tls::reload_all(true);
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Graceful stop: no new requests (503 + Retry-After), the ones under
    // way answered (their writes are in the database before their 2xx),
    // then the database is closed.
    tracing::info!("stopping: new requests get 503, finishing those under way");
    sip.drain();
    if let Some(cluster) = sip.cluster() {
        cluster.leave(&app.store).await;
    }
    sip.wait_answered(STOP_GRACE).await;
    // Calls that ended meanwhile: their record and charge in the database
    // before it closes (else the record is lost and the reservation waits
    // for its grace to run out).
    sip.wait_records(STOP_GRACE).await;
    admin_task.abort();
    if let Some(media) = &sip.calls.settings.media {
        media.relay.shutdown();
    }
    app.store.close().await;
    tracing::info!("softswitch stopped");
    Ok(())
}

async fn account(app: App, cmd: AccountCommand) -> anyhow::Result<()> {
    match cmd {
        AccountCommand::Add {
            login,
            password,
            phone,
            username,
            display_name,
            email,
            access_password,
        } => {
            let account = app
                .store
                .add_account(&NewAccount {
                    login: login.clone(),
                    sip_password: password,
                    access_password,
                    phone,
                    username,
                    display_name,
                    email,
                    template: app.config.account_template.clone(),
                })
                .await
                .with_context(|| format!("cannot add account {login:?}"))?;
            println!("account {} added", account.login);
        }
        AccountCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (mut added, mut skipped) = (0u64, 0u64);
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty()
                    || line.starts_with('#')
                    || matches!(line, "SEQUENTIAL" | "RANDOM" | "USER")
                {
                    continue;
                }
                let mut fields = line.split(';');
                let (Some(login), Some(password)) = (fields.next(), fields.next()) else {
                    bail!("{}:{}: expected login;password", file.display(), n + 1);
                };
                let new = NewAccount {
                    login: login.trim().to_string(),
                    sip_password: password.trim().to_string(),
                    template: app.config.account_template.clone(),
                    ..Default::default()
                };
                match app.store.add_account(&new).await {
                    Ok(_) => added += 1,
                    Err(softswitch::store::StoreError::Conflict(_)) => skipped += 1,
                    Err(e) => {
                        return Err(e).with_context(|| format!("{}:{}", file.display(), n + 1));
                    }
                }
            }
            println!("{added} accounts added, {skipped} already present");
        }
        AccountCommand::List { limit, offset } => {
            for a in app.store.list_accounts(limit, offset).await? {
                println!(
                    "{}\tphone={}\tusername={}\tdisplay_name={}",
                    a.login,
                    a.phone.as_deref().unwrap_or("-"),
                    a.username.as_deref().unwrap_or("-"),
                    a.display_name.as_deref().unwrap_or("-"),
                );
            }
        }
        AccountCommand::Show { login } => {
            let Some(a) = app.store.account_by_login(&login).await? else {
                bail!("no account {login:?}");
            };
            let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            println!("login: {}", a.login);
            println!("active: {}", a.active);
            println!("phone: {}", opt(&a.phone));
            println!("username: {}", opt(&a.username));
            println!("display_name: {}", opt(&a.display_name));
            println!("email: {}", opt(&a.email));
            println!("tariff: {}", a.tariff);
            println!("currency: {}", a.currency);
            println!("dialplan_rule: {}", a.dialplan_rule);
            println!("balance: {}", format_balance(a.balance_micro));
            println!("plan: {}", opt(&a.plan));
            println!(
                "voicemail: {}",
                if a.voicemail_enabled { "on" } else { "off" }
            );
            println!(
                "no_answer_secs: {}",
                match a.no_answer_secs {
                    Some(secs) => secs.to_string(),
                    None => format!("default ({})", app.config.calls.no_answer_secs),
                }
            );
        }
        AccountCommand::Set {
            login,
            no_answer_secs,
            tariff,
            currency,
            dialplan_rule,
            plan,
            voicemail,
            voicemail_email,
            recording,
        } => {
            let settings = AccountSettings {
                tariff,
                currency,
                dialplan_rule,
                plan,
                no_answer_secs: no_answer_secs.map(|n| n.0),
                recording: recording.map(|r| (r != "off").then_some(r)),
            };
            if settings == AccountSettings::default()
                && voicemail.is_none()
                && voicemail_email.is_none()
            {
                bail!("nothing to change: give at least one option (see --help)");
            }
            if settings != AccountSettings::default() {
                let found = app
                    .store
                    .update_account_settings(&login, &settings)
                    .await
                    .with_context(|| format!("cannot change account {login:?}"))?;
                if !found {
                    bail!("no account {login:?}");
                }
            }
            if voicemail.is_some() || voicemail_email.is_some() {
                let Some(mut vm) = app.store.voicemail_settings(&login).await? else {
                    bail!("no account {login:?}");
                };
                vm.enabled = voicemail.unwrap_or(vm.enabled);
                vm.email_copy = voicemail_email.unwrap_or(vm.email_copy);
                app.store.set_voicemail_settings(&vm).await?;
            }
            println!("account {login} changed");
        }
        AccountCommand::Del { login } => {
            if !app.store.remove_account(&login).await? {
                bail!("no account {login:?}");
            }
            println!("account {login} deleted");
        }
    }
    Ok(())
}

fn format_balance(micro: i64) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let abs = micro.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

async fn gateway(app: App, cmd: GatewayCommand) -> anyhow::Result<()> {
    match cmd {
        GatewayCommand::Add {
            name,
            prefix,
            address,
            transport,
            recording,
        } => {
            let transport: GatewayTransport = transport.parse()?;
            app.store
                .add_gateway(&Gateway {
                    name: name.clone(),
                    prefix,
                    address,
                    transport,
                    recording,
                })
                .await
                .with_context(|| format!("cannot add gateway {name:?}"))?;
            println!("gateway {name} added");
        }
        GatewayCommand::Set { name, recording } => {
            let layout = (recording != "off").then_some(recording.as_str());
            if !app.store.set_gateway_recording(&name, layout).await? {
                bail!("no gateway {name:?}");
            }
            println!("gateway {name} recording {recording}");
        }
        GatewayCommand::List => {
            for g in app.store.list_gateways().await? {
                println!(
                    "{}\tprefix={}\taddress={}\ttransport={}\trecording={}",
                    g.name,
                    g.prefix,
                    g.address,
                    g.transport,
                    g.recording.as_deref().unwrap_or("off")
                );
            }
        }
        GatewayCommand::Del { name } => {
            if !app.store.delete_gateway(&name).await? {
                bail!("no gateway {name:?}");
            }
            println!("gateway {name} deleted");
        }
    }
    Ok(())
}

async fn did(app: App, cmd: DidCommand) -> anyhow::Result<()> {
    // Numbers are stored as E.164 digits without `+` (SPEC §4).
    let digits = |n: &str| -> String {
        n.chars()
            .filter(|c| !matches!(c, '+' | ' ' | '-'))
            .collect()
    };
    match cmd {
        DidCommand::Add { number, login } => {
            let number = digits(&number);
            app.store
                .add_did(&number, &login)
                .await
                .with_context(|| format!("cannot add DID {number:?}"))?;
            println!("DID {number} rings {login}");
        }
        DidCommand::List => {
            for d in app.store.list_dids().await? {
                println!("{}\t{}", d.number, d.login);
            }
        }
        DidCommand::Del { number } => {
            let number = digits(&number);
            if !app.store.delete_did(&number).await? {
                bail!("no DID {number:?}");
            }
            println!("DID {number} deleted");
        }
    }
    Ok(())
}

async fn dialplan(app: App, cmd: DialplanCommand) -> anyhow::Result<()> {
    match cmd {
        DialplanCommand::Add { prefix, server } => {
            app.store
                .add_dialplan(&DialplanEntry {
                    prefix: prefix.clone(),
                    server,
                })
                .await
                .with_context(|| format!("cannot add dialplan entry {prefix:?}"))?;
            println!("dialplan entry {prefix} added");
        }
        DialplanCommand::List => {
            for e in app.store.list_dialplan().await? {
                println!("{}\t{}", e.prefix, e.server);
            }
        }
        DialplanCommand::Del { prefix } => {
            if !app.store.delete_dialplan(&prefix).await? {
                bail!("no dialplan entry {prefix:?}");
            }
            println!("dialplan entry {prefix} deleted");
        }
    }
    Ok(())
}

async fn route(app: App, args: RouteArgs) -> anyhow::Result<()> {
    let Some(caller) = app.store.account_by_login(&args.from).await? else {
        bail!(
            "no account {:?} (--from names the caller's login)",
            args.from
        );
    };
    let registry = app.guests(None).await?;
    let router = registry.router(&app.config)?;
    let request = RouteRequest {
        kind: args.kind,
        caller_login: caller.login.clone(),
        caller_display_name: caller.display_name.clone(),
        authenticated: true,
        target: args.to,
        transport: Transport::Internal,
        source_address: "127.0.0.1:0".into(),
        dialplan_rule: caller.dialplan_rule.clone(),
        reason: args.reason,
    };
    let routed = router.route(&request).await;
    if args.json {
        println!("{}", serde_json::to_string(&routed)?);
    } else {
        println!("{}", describe(&routed));
    }
    Ok(())
}

fn describe(routed: &Routed) -> String {
    let mut line = routing::describe(&routed.decision, routed.caller_id.as_ref());
    if let Some(kind) = routed.fallback {
        line.push_str(&format!(
            " [fallback: guest {} failed: {kind}]",
            routed.guest
        ));
    }
    line
}
