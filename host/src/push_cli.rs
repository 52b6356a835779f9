//! `softswitch push …`: users' push tokens, a test push to check a
//! provider's setup, and the outbox. A test push is queued in the database;
//! the running switch's worker sends it within `push.poll_interval_ms`.

use anyhow::bail;
use clap::Subcommand;

use softswitch::app::App;
use softswitch::push::{Notification, NotificationKind};
use softswitch::store::push::{NewPushToken, TokenKind, TokenSource};

#[derive(Subcommand)]
pub enum PushCommand {
    /// A user's push tokens (instance, provider, kind, source, app).
    Tokens { login: String },
    /// Register a device's token for a user (as the app does through the API).
    TokenAdd {
        login: String,
        /// The device's instance id (its +sip.instance, or any stable id).
        instance: String,
        /// A [push.providers] name.
        provider: String,
        token: String,
        /// Bundle id / topic (APNs) or project id (FCM).
        #[arg(long, default_value = "")]
        app: String,
        /// An iOS PushKit token (incoming calls only).
        #[arg(long)]
        voip: bool,
        /// APNs development environment.
        #[arg(long)]
        sandbox: bool,
    },
    /// Delete a device's tokens.
    TokenDel { login: String, instance: String },
    /// Queue a test push (a text message from "softswitch") to a user's devices.
    Test {
        login: String,
        #[arg(long, default_value = "Test push from the softswitch")]
        text: String,
        /// Push an incoming call instead (to VoIP tokens where there are some).
        #[arg(long)]
        call: bool,
    },
    /// A user's latest pushes (id, kind, provider, status, attempts, detail).
    Outbox {
        login: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn push(app: App, cmd: PushCommand) -> anyhow::Result<()> {
    let store = &app.store;
    match cmd {
        PushCommand::Tokens { login } => {
            for t in store.push_tokens(&login).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}{}",
                    t.instance,
                    t.provider,
                    t.kind.as_str(),
                    t.source,
                    t.app,
                    if t.sandbox { "\tsandbox" } else { "" }
                );
            }
        }
        PushCommand::TokenAdd {
            login,
            instance,
            provider,
            token,
            app: app_id,
            voip,
            sandbox,
        } => {
            if !app.config.push.providers.contains_key(&provider) {
                bail!("no push provider {provider:?} under [push.providers]");
            }
            let t = NewPushToken {
                instance,
                provider,
                token,
                app: app_id,
                sandbox,
                kind: if voip {
                    TokenKind::Voip
                } else {
                    TokenKind::Alert
                },
            };
            let stored = store
                .set_push_token(&login, &t, TokenSource::Api, softswitch::store::now_secs())
                .await?;
            println!(
                "{login}: {} token for {} via {}",
                stored.kind.as_str(),
                stored.instance,
                stored.provider
            );
        }
        PushCommand::TokenDel { login, instance } => {
            let n = store.delete_push_tokens(&login, &instance, None).await?;
            if n == 0 {
                bail!("{login} has no token for {instance:?}");
            }
            println!("{login}: {n} token(s) of {instance} deleted");
        }
        PushCommand::Test { login, text, call } => {
            let now = softswitch::store::now_secs();
            let kind = if call {
                NotificationKind::IncomingCall
            } else {
                NotificationKind::Text
            };
            let n = Notification {
                kind,
                from_login: "softswitch".into(),
                from_display_name: "Softswitch".into(),
                from_book_name: None,
                timestamp: now,
                call_id: call.then(|| format!("test-{now}")),
                excerpt: softswitch::push::excerpt(text.as_bytes()),
                badge: 0,
                id: format!("test-{now}"),
            };
            let tokens = store.push_tokens(&login).await?;
            let chosen = softswitch::push::choose_tokens(&tokens, kind);
            if chosen.is_empty() {
                bail!("{login} has no push token for a {} push", kind.as_str());
            }
            let ids = store
                .queue_pushes(&chosen, kind.as_str(), &serde_json::to_string(&n)?, now)
                .await?;
            println!(
                "{} push(es) queued for {login}: see `softswitch push outbox {login}`",
                ids.len()
            );
        }
        PushCommand::Outbox { login, limit } => {
            for p in store.recent_pushes(&login, limit).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{} attempt(s)\t{}",
                    p.id,
                    p.kind,
                    p.provider,
                    p.status.as_str(),
                    p.attempts,
                    p.detail.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
