//! Voicemail to e-mail (SPEC §9): each message whose owner asked for it is
//! mailed with the recording as an MP3 attachment, and the caller, time and
//! duration in the text.
//!
//! The deposit writes an outbox row in its own transaction; this worker
//! claims due rows, sends, and deletes a row only once the SMTP server took
//! the message. A failure (server down, refused) moves the row on with a
//! growing delay, capped, forever: an outage delays e-mails, it never loses
//! them. The template is `email.voicemail_template` (placeholders
//! `[USER_NAME]`, `[CALLER]`, `[CALLER_NAME]`, `[TIME]`, `[DURATION]`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::email::{Attachment, Mailer, Template};
use super::mp3;
use crate::store::Store;
use crate::store::mailbox::DueEmail;

/// The built-in voicemail e-mail.
pub const DEFAULT_VOICEMAIL_TEMPLATE: &str = "Subject: New voicemail from [CALLER_NAME]\n\
Content-Type: text/plain\n\
\n\
Hello [USER_NAME],\n\
\n\
[CALLER_NAME] ([CALLER]) left you a voicemail of [DURATION] on [TIME] (UTC).\n\
The recording is attached (MP3).\n";

/// Rows claimed per round.
const BATCH: i64 = 16;
/// How long a claimed row is kept from other nodes while it is sent (the
/// SMTP timeout is 15 s).
const LEASE_SECS: i64 = 120;
/// Retry delays: 10 s doubling up to an hour.
const RETRY_FIRST_SECS: i64 = 10;
const RETRY_MAX_SECS: i64 = 3600;
/// A look at the outbox even without a wake-up (another node's deposits,
/// retries coming due).
const POLL: Duration = Duration::from_secs(5);

/// `m:ss` for a duration in ms.
fn duration_text(ms: i64) -> String {
    let secs = (ms + 500) / 1000;
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// The delay before attempt `attempts + 1`.
fn retry_after(attempts: i64) -> i64 {
    let shift = attempts.clamp(0, 20) as u32;
    RETRY_FIRST_SECS
        .saturating_mul(1 << shift)
        .min(RETRY_MAX_SECS)
}

/// Sends one e-mail: the MP3 is made here (LAME is CPU work, off the
/// reactor).
async fn send(mailer: &Mailer, template: &Template, due: &DueEmail) -> Result<(), String> {
    let wav = due.wav.clone();
    let mp3 = tokio::task::spawn_blocking(move || {
        let samples =
            media::wav::read(&wav).map_err(|e| format!("stored audio unreadable: {e}"))?;
        mp3::encode(&samples, media::codec::SAMPLE_RATE).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let m = &due.message;
    let caller_name = m.caller_name.clone().unwrap_or_else(|| m.caller.clone());
    let values = [
        ("USER_NAME", due.login.as_str()),
        ("CALLER", m.caller.as_str()),
        ("CALLER_NAME", caller_name.as_str()),
        ("TIME", &crate::utc::format_minutes(m.created_at)),
        ("DURATION", &duration_text(m.duration_ms)),
    ];
    let attachment = Attachment {
        file_name: format!("voicemail-{}.mp3", m.id),
        content_type: "audio/mpeg".into(),
        bytes: mp3,
    };
    mailer
        .send_with(&due.address, template, &values, Some(&attachment))
        .await
        .map_err(|e| e.to_string())
}

/// Runs the worker until the process ends.
pub fn spawn(
    store: Store,
    mailer: Arc<Mailer>,
    template: Template,
    wake: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = crate::store::now_secs();
            let due = match store.claim_voicemail_emails(now, LEASE_SECS, BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "voicemail e-mail outbox unreadable");
                    Vec::new()
                }
            };
            let full = due.len() as i64 == BATCH;
            for d in &due {
                let result = if mailer.enabled() {
                    send(&mailer, &template, d).await
                } else {
                    Err("no SMTP server configured (email.smtp_host)".into())
                };
                let recorded = match &result {
                    Ok(()) => {
                        tracing::info!(
                            mailbox = d.login,
                            message = d.message.id,
                            "voicemail e-mailed"
                        );
                        store.voicemail_email_sent(d.id).await
                    }
                    Err(e) => {
                        let delay = retry_after(d.attempts);
                        tracing::warn!(mailbox = d.login, message = d.message.id, error = %e, retry_in_secs = delay, "voicemail e-mail failed");
                        store
                            .voicemail_email_failed(d.id, crate::store::now_secs() + delay, e)
                            .await
                    }
                };
                if let Err(e) = recorded {
                    tracing::error!(error = %e, "voicemail e-mail outcome not recorded (it is retried after its lease)");
                }
            }
            if !full {
                let _ = tokio::time::timeout(POLL, wake.notified()).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_retries_read_right() {
        assert_eq!(duration_text(4200), "0:04");
        assert_eq!(duration_text(61_500), "1:02");
        assert_eq!(retry_after(0), 10);
        assert_eq!(retry_after(1), 20);
        assert_eq!(retry_after(10), 3600);
        assert_eq!(retry_after(1000), 3600);
        assert!(Template::parse(DEFAULT_VOICEMAIL_TEMPLATE, "v").is_ok());
    }
}
