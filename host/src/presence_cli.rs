//! `softswitch contact …`, `voicemail …` and `presence …`: address books,
//! voice messages (until the client API and the voicemail IVR write them)
//! and a look at the stored presence state.

use anyhow::{Context, bail};
use clap::Subcommand;

use softswitch::app::App;
use softswitch::store::answering::RuleAction;
use softswitch::store::contacts::{country_code_of, normalize_number};

#[derive(Subcommand)]
pub enum ContactCommand {
    /// Add NUMBER to OWNER_LOGIN's address book (normalised to E.164 with
    /// the owner's country code, SPEC §4).
    Add {
        owner_login: String,
        number: String,
        /// Name in the address book.
        #[arg(long)]
        name: Option<String>,
        /// The entry's id on the handset (default: the normalised number).
        #[arg(long)]
        id: Option<String>,
    },
    /// Add many numbers to OWNER_LOGIN's address book from a file of
    /// `number[;name[;id]]` lines (numbers already there are skipped).
    Import {
        owner_login: String,
        file: std::path::PathBuf,
    },
    /// OWNER_LOGIN's address book, with the service user behind each number.
    List { owner_login: String },
    /// Remove NUMBER from OWNER_LOGIN's address book.
    Del { owner_login: String, number: String },
}

#[derive(Subcommand)]
pub enum VoicemailCommand {
    /// Store a voice message for LOGIN (MWI watchers are notified).
    Add {
        login: String,
        /// Caller's login or number.
        #[arg(long = "from")]
        caller: String,
        #[arg(long, default_value_t = 0)]
        duration_ms: i64,
    },
    /// Mark a voice message heard (or, with --unheard, new again).
    Heard {
        id: i64,
        #[arg(long)]
        unheard: bool,
    },
    /// LOGIN's voice messages, newest first.
    List { login: String },
    /// Write the audio of LOGIN's message ID to FILE (WAV, 8 kHz mono).
    Export {
        login: String,
        id: i64,
        file: std::path::PathBuf,
    },
    /// LOGIN's answering rule for calls from CALLER (a login or number, or
    /// a prefix ending in *): ring (then voicemail), ring-only (never
    /// voicemail), voicemail (nothing rings), reject (603). Replaces the
    /// rule for that caller.
    Rule {
        login: String,
        caller: String,
        #[arg(value_name = "ring|ring-only|voicemail|reject")]
        action: String,
        /// A greeting for these callers (WAV, 8 kHz mono 16-bit).
        #[arg(long)]
        greeting: Option<std::path::PathBuf>,
    },
    /// LOGIN's answering rules.
    Rules { login: String },
    /// Delete LOGIN's answering rule ID.
    Unrule { login: String, id: i64 },
}

#[derive(Subcommand)]
pub enum PresenceCommand {
    /// Stored subscriptions (watcher, event, resource, expiry).
    Subscriptions,
}

/// The calling code used to normalise `owner`'s numbers: that of the
/// owner's phone, or the configured default.
async fn country_code(app: &App, owner: &str) -> anyhow::Result<String> {
    if app.store.account_by_login(owner).await?.is_none() {
        bail!("no account {owner:?}");
    }
    let phone = app.store.phone_of(owner).await?;
    Ok(phone
        .as_deref()
        .and_then(country_code_of)
        .or_else(|| country_code_of(owner))
        .unwrap_or(&app.config.presence.default_country_code)
        .to_string())
}

pub async fn contact(app: App, cmd: ContactCommand) -> anyhow::Result<()> {
    match cmd {
        ContactCommand::Add {
            owner_login,
            number,
            name,
            id,
        } => {
            let cc = country_code(&app, &owner_login).await?;
            let Some(normalized) = normalize_number(&number, &cc) else {
                bail!("{number:?} is not a phone number");
            };
            let id = id.unwrap_or_else(|| normalized.clone());
            app.store
                .add_contact(&owner_login, &id, name.as_deref(), &normalized)
                .await
                .with_context(|| {
                    format!("cannot add {normalized} to {owner_login}'s address book")
                })?;
            println!("contact {id} {normalized} added to {owner_login}");
        }
        ContactCommand::Import { owner_login, file } => {
            let cc = country_code(&app, &owner_login).await?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (mut added, mut skipped) = (0u64, 0u64);
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut fields = line.split(';').map(str::trim);
                let number = fields.next().unwrap_or("");
                let name = fields.next().filter(|s| !s.is_empty());
                let Some(normalized) = normalize_number(number, &cc) else {
                    bail!(
                        "{}:{}: {number:?} is not a phone number",
                        file.display(),
                        n + 1
                    );
                };
                let id = fields
                    .next()
                    .filter(|s| !s.is_empty())
                    .map_or_else(|| normalized.clone(), str::to_string);
                match app
                    .store
                    .add_contact(&owner_login, &id, name, &normalized)
                    .await
                {
                    Ok(()) => added += 1,
                    Err(softswitch::store::StoreError::Conflict(_)) => skipped += 1,
                    Err(e) => {
                        return Err(e).with_context(|| format!("{}:{}", file.display(), n + 1));
                    }
                }
            }
            println!("{added} contacts added to {owner_login}, {skipped} already there");
        }
        ContactCommand::List { owner_login } => {
            for c in app.store.list_contacts(&owner_login).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    c.contact_id,
                    c.number,
                    c.name.as_deref().unwrap_or("-"),
                    match &c.login {
                        Some(l) => format!("user {l}"),
                        None => "not a user".into(),
                    }
                );
            }
        }
        ContactCommand::Del {
            owner_login,
            number,
        } => {
            let cc = country_code(&app, &owner_login).await?;
            let Some(normalized) = normalize_number(&number, &cc) else {
                bail!("{number:?} is not a phone number");
            };
            if app.store.del_contact(&owner_login, &normalized).await? == 0 {
                bail!("{owner_login} has no contact {normalized}");
            }
            println!("contact {normalized} removed from {owner_login}");
        }
    }
    Ok(())
}

pub async fn voicemail(app: App, cmd: VoicemailCommand) -> anyhow::Result<()> {
    match cmd {
        VoicemailCommand::Add {
            login,
            caller,
            duration_ms,
        } => {
            let id = app
                .store
                .add_voice_message(&login, &caller, duration_ms)
                .await
                .with_context(|| format!("cannot store a voice message for {login:?}"))?;
            println!("voice message {id} stored for {login}");
        }
        VoicemailCommand::Heard { id, unheard } => {
            match app.store.set_voice_message_heard(id, !unheard).await? {
                Some(login) => println!(
                    "voice message {id} of {login} marked {}",
                    if unheard { "new" } else { "heard" }
                ),
                None => bail!("no voice message {id}"),
            }
        }
        VoicemailCommand::Rule {
            login,
            caller,
            action,
            greeting,
        } => {
            let action: RuleAction = serde_json::from_value(serde_json::Value::String(
                action.clone(),
            ))
            .map_err(|_| anyhow::anyhow!("{action:?}: ring, ring-only, voicemail or reject"))?;
            let wav = match &greeting {
                Some(path) => {
                    let samples = media::wav::read_file(path)
                        .with_context(|| format!("greeting {}", path.display()))?;
                    Some(media::wav::write(&samples)?)
                }
                None => None,
            };
            let id = app
                .store
                .set_answering_rule(&login, &caller, action)
                .await?;
            if let Some(wav) = &wav {
                app.store.set_rule_greeting(&login, id, Some(wav)).await?;
            }
            println!(
                "rule {id} of {login}: calls from {caller} {}",
                action.as_str()
            );
        }
        VoicemailCommand::Rules { login } => {
            for r in app.store.answering_rules(&login).await? {
                println!(
                    "{}	{}	{}{}",
                    r.id,
                    r.caller,
                    r.action.as_str(),
                    if r.greeting { "	greeting" } else { "" }
                );
            }
        }
        VoicemailCommand::Unrule { login, id } => {
            if !app.store.delete_answering_rule(&login, id).await? {
                bail!("{login} has no answering rule {id}");
            }
            println!("rule {id} of {login} deleted");
        }
        VoicemailCommand::Export { login, id, file } => {
            let Some(wav) = app.store.voicemail_audio(&login, id).await? else {
                bail!("{login} has no voice message {id} with audio");
            };
            std::fs::write(&file, &wav)
                .with_context(|| format!("cannot write {}", file.display()))?;
            println!(
                "voice message {id} of {login} written to {}",
                file.display()
            );
        }
        VoicemailCommand::List { login } => {
            let counts = app.store.mailbox_counts(&login).await?;
            println!("{login}: {} new, {} heard", counts.new, counts.old);
            for m in app.store.voice_messages(&login).await? {
                println!(
                    "{}\t{}\tfrom {}\t{} ms\tat {}",
                    m.id,
                    if m.heard { "heard" } else { "new" },
                    m.caller,
                    m.duration_ms,
                    m.created_at
                );
            }
        }
    }
    Ok(())
}

pub async fn presence(app: App, cmd: PresenceCommand) -> anyhow::Result<()> {
    match cmd {
        PresenceCommand::Subscriptions => {
            let now = softswitch::store::now_secs();
            for s in app.store.subscriptions().await? {
                println!(
                    "{}\t{}\t{}{}\texpires in {} s\tvia {} {}",
                    s.watcher,
                    s.event,
                    s.resource,
                    if s.is_list { " (buddy list)" } else { "" },
                    s.expires_at - now,
                    s.transport,
                    s.source
                );
            }
        }
    }
    Ok(())
}
