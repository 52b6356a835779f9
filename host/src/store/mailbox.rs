//! Voicemail boxes: messages with their audio, and greetings.
//!
//! Every read and change names the owner: a message id alone opens nothing,
//! so a guest, a client or a bug cannot reach another user's message by
//! guessing ids. The audio is in the database (see
//! `migrations/sqlite/0009_voicemail_audio.sql` for why).

use sqlx::Row;

use super::Store;
use super::error::{Result, StoreError, is_foreign_key_violation};

/// One message in a box, without its audio.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Voicemail {
    pub id: i64,
    /// Login or number of who left it.
    pub caller: String,
    pub caller_name: Option<String>,
    pub duration_ms: i64,
    pub heard: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A message left in a box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVoicemail<'a> {
    pub login: &'a str,
    pub caller: &'a str,
    pub caller_name: Option<&'a str>,
    pub duration_ms: i64,
    pub wav: &'a [u8],
    /// Also mail it there (voicemail to e-mail), from an outbox row
    /// written in the same transaction.
    pub email_to: Option<&'a str>,
}

/// A voicemail e-mail due to be sent, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEmail {
    pub id: i64,
    pub attempts: i64,
    pub address: String,
    pub login: String,
    pub message: Voicemail,
    pub wav: Vec<u8>,
}

fn voicemail(r: &sqlx::any::AnyRow) -> Result<Voicemail> {
    Ok(Voicemail {
        id: r.try_get("id")?,
        caller: r.try_get("caller")?,
        caller_name: r.try_get("caller_name")?,
        duration_ms: r.try_get("duration_ms")?,
        heard: r.try_get::<i64, _>("heard")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a message and its audio in one transaction; its id.
    /// `NotFound` when the box's account does not exist.
    pub async fn deposit_voicemail(&self, v: &NewVoicemail<'_>) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO voicemail_messages \
             (login, caller, caller_name, duration_ms, recording, heard, created_at) \
             VALUES (?, ?, ?, ?, 'db', 0, ?)",
        )
        .bind(v.login)
        .bind(v.caller)
        .bind(v.caller_name)
        .bind(v.duration_ms)
        .bind(super::now())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound(format!("account {:?}", v.login))
            } else {
                e.into()
            }
        })?;
        let id = match done.last_insert_id() {
            Some(id) => id,
            // SQLite through `Any` does not report it: ask the same connection.
            None => {
                sqlx::query_scalar("SELECT last_insert_rowid()")
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        sqlx::query("INSERT INTO voicemail_audio (message_id, wav) VALUES (?, ?)")
            .bind(id)
            .bind(v.wav)
            .execute(&mut *tx)
            .await?;
        if let Some(address) = v.email_to {
            let now = super::now();
            sqlx::query(
                "INSERT INTO voicemail_email_outbox (message_id, address, next_at, created_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(id)
            .bind(address)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Claims up to `limit` voicemail e-mails due at `now`: each claimed row
    /// is moved to `now + lease` first (conditionally, so two nodes never
    /// claim the same row), then returned with its message and audio.
    pub async fn claim_voicemail_emails(
        &self,
        now: i64,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<DueEmail>> {
        let due: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, next_at FROM voicemail_email_outbox WHERE next_at <= ? \
             ORDER BY next_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for (id, next_at) in due {
            let claimed = sqlx::query(
                "UPDATE voicemail_email_outbox SET next_at = ? WHERE id = ? AND next_at = ?",
            )
            .bind(now + lease)
            .bind(id)
            .bind(next_at)
            .execute(&self.pool)
            .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            let row = sqlx::query(
                "SELECT o.id AS oid, o.attempts, o.address, m.login, m.id, m.caller, \
                 m.caller_name, m.duration_ms, m.heard, m.created_at, a.wav \
                 FROM voicemail_email_outbox o \
                 JOIN voicemail_messages m ON m.id = o.message_id \
                 JOIN voicemail_audio a ON a.message_id = m.id WHERE o.id = ?",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                out.push(DueEmail {
                    id: r.try_get("oid")?,
                    attempts: r.try_get("attempts")?,
                    address: r.try_get("address")?,
                    login: r.try_get("login")?,
                    message: voicemail(&r)?,
                    wav: r.try_get("wav")?,
                });
            }
        }
        Ok(out)
    }

    /// The e-mail went: its outbox row goes.
    pub async fn voicemail_email_sent(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM voicemail_email_outbox WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The e-mail failed: tried again at `next_at`.
    pub async fn voicemail_email_failed(&self, id: i64, next_at: i64, error: &str) -> Result<()> {
        let error: String = error.chars().take(1000).collect();
        sqlx::query(
            "UPDATE voicemail_email_outbox SET attempts = attempts + 1, next_at = ?, \
             last_error = ? WHERE id = ?",
        )
        .bind(next_at)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Voicemail e-mails not sent yet.
    pub async fn voicemail_emails_pending(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM voicemail_email_outbox")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// A box's messages: new first, then heard, oldest first within each.
    /// `limit`/`offset` page through it.
    pub async fn voicemails(&self, login: &str, limit: i64, offset: i64) -> Result<Vec<Voicemail>> {
        let rows = sqlx::query(
            "SELECT id, caller, caller_name, duration_ms, heard, created_at \
             FROM voicemail_messages WHERE login = ? \
             ORDER BY heard, created_at, id LIMIT ? OFFSET ?",
        )
        .bind(login)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(voicemail).collect()
    }

    /// One message of `login`'s box.
    pub async fn voicemail(&self, login: &str, id: i64) -> Result<Option<Voicemail>> {
        let row = sqlx::query(
            "SELECT id, caller, caller_name, duration_ms, heard, created_at \
             FROM voicemail_messages WHERE login = ? AND id = ?",
        )
        .bind(login)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(voicemail).transpose()
    }

    /// The audio (WAV) of one message of `login`'s box.
    pub async fn voicemail_audio(&self, login: &str, id: i64) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT a.wav FROM voicemail_audio a \
             JOIN voicemail_messages m ON m.id = a.message_id \
             WHERE m.login = ? AND m.id = ?",
        )
        .bind(login)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks one message of `login`'s box heard or new; false when there is
    /// no such message in that box.
    pub async fn set_voicemail_heard(&self, login: &str, id: i64, heard: bool) -> Result<bool> {
        let done =
            sqlx::query("UPDATE voicemail_messages SET heard = ? WHERE login = ? AND id = ?")
                .bind(i64::from(heard))
                .bind(login)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes one message of `login`'s box (its audio goes with it); false
    /// when there is no such message in that box.
    pub async fn delete_voicemail(&self, login: &str, id: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // The audio first: MySQL's cascade would do it, but SQLite enforces
        // foreign keys only per connection and this must not depend on it.
        sqlx::query(
            "DELETE FROM voicemail_audio WHERE message_id IN \
             (SELECT id FROM voicemail_messages WHERE login = ? AND id = ?)",
        )
        .bind(login)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM voicemail_messages WHERE login = ? AND id = ?")
            .bind(login)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// `login`'s own greeting (WAV), if it recorded one.
    pub async fn greeting(&self, login: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT wav FROM voicemail_greetings WHERE login = ?")
                .bind(login)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Replaces `login`'s greeting. `NotFound` when there is no such account.
    pub async fn set_greeting(&self, login: &str, duration_ms: i64, wav: &[u8]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Delete then insert: the upsert syntaxes of the two dialects differ.
        sqlx::query("DELETE FROM voicemail_greetings WHERE login = ?")
            .bind(login)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO voicemail_greetings (login, duration_ms, wav, updated_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(login)
        .bind(duration_ms)
        .bind(wav)
        .bind(super::now())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound(format!("account {login:?}"))
            } else {
                e.into()
            }
        })?;
        tx.commit().await?;
        Ok(())
    }

    /// Back to the default greeting; false when there was none.
    pub async fn clear_greeting(&self, login: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM voicemail_greetings WHERE login = ?")
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique};
    use super::super::{AccountTemplate, NewAccount};
    use super::*;

    async fn account(store: &Store, prefix: &str) -> String {
        let login = unique(prefix);
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw".into(),
                template: AccountTemplate::default(),
                ..NewAccount::default()
            })
            .await
            .unwrap();
        login
    }

    fn new<'a>(login: &'a str, wav: &'a [u8]) -> NewVoicemail<'a> {
        NewVoicemail {
            login,
            caller: "48600111222",
            caller_name: Some("Alice"),
            duration_ms: 4200,
            wav,
            email_to: None,
        }
    }

    #[tokio::test]
    async fn a_deposit_keeps_its_audio_and_only_the_owner_reaches_it() {
        let store = test_store().await;
        let bob = account(&store, "vmbob").await;
        let eve = account(&store, "vmeve").await;
        let first = store
            .deposit_voicemail(&new(&bob, b"RIFF-one"))
            .await
            .unwrap();
        let second = store
            .deposit_voicemail(&new(&bob, b"RIFF-two"))
            .await
            .unwrap();
        assert_ne!(first, second);

        assert_eq!(
            store
                .voicemail_audio(&bob, second)
                .await
                .unwrap()
                .as_deref(),
            Some(&b"RIFF-two"[..])
        );
        let listed = store.voicemails(&bob, 10, 0).await.unwrap();
        assert_eq!(
            listed.iter().map(|v| v.id).collect::<Vec<_>>(),
            [first, second]
        );
        assert_eq!(listed[0].caller_name.as_deref(), Some("Alice"));
        assert_eq!(listed[0].duration_ms, 4200);
        assert_eq!(store.voicemails(&bob, 1, 1).await.unwrap()[0].id, second);

        // Another user's id opens nothing and changes nothing.
        assert_eq!(store.voicemail_audio(&eve, first).await.unwrap(), None);
        assert_eq!(store.voicemail(&eve, first).await.unwrap(), None);
        assert!(!store.set_voicemail_heard(&eve, first, true).await.unwrap());
        assert!(!store.delete_voicemail(&eve, first).await.unwrap());

        // Heard messages go after the new ones, and counts follow (MWI).
        assert!(store.set_voicemail_heard(&bob, first, true).await.unwrap());
        let listed = store.voicemails(&bob, 10, 0).await.unwrap();
        assert_eq!(
            listed.iter().map(|v| (v.id, v.heard)).collect::<Vec<_>>(),
            [(second, false), (first, true)]
        );
        let counts = store.mailbox_counts(&bob).await.unwrap();
        assert_eq!((counts.new, counts.old), (1, 1));

        assert!(store.delete_voicemail(&bob, first).await.unwrap());
        assert!(!store.delete_voicemail(&bob, first).await.unwrap());
        assert_eq!(store.voicemail_audio(&bob, first).await.unwrap(), None);
        let orphans: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM voicemail_audio WHERE message_id = ?")
                .bind(first)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(orphans, 0, "the audio goes with its message");
    }

    #[tokio::test]
    async fn a_deposit_for_an_unknown_account_is_refused_whole() {
        let store = test_store().await;
        let ghost = unique("vmghost");
        let r = store.deposit_voicemail(&new(&ghost, b"RIFF")).await;
        assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
        let audio: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM voicemail_audio a LEFT JOIN voicemail_messages m \
             ON m.id = a.message_id WHERE m.id IS NULL",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(audio, 0);
    }

    #[tokio::test]
    async fn greetings_are_set_replaced_and_cleared() {
        let store = test_store().await;
        let alice = account(&store, "vmgreet").await;
        assert_eq!(store.greeting(&alice).await.unwrap(), None);
        store.set_greeting(&alice, 2000, b"one").await.unwrap();
        store.set_greeting(&alice, 3000, b"two").await.unwrap();
        assert_eq!(
            store.greeting(&alice).await.unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert!(store.clear_greeting(&alice).await.unwrap());
        assert!(!store.clear_greeting(&alice).await.unwrap());
        assert_eq!(store.greeting(&alice).await.unwrap(), None);
        let r = store.set_greeting(&unique("nobody"), 1, b"x").await;
        assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    }
}
