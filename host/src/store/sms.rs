//! The SMS queue: every text the switch sends through a provider guest
//! (sign-up codes, OFFNET messages), with retries and delivery state.
//!
//! Rows are claimed with a conditional UPDATE (status and due time as read),
//! so several nodes can drain one shared queue without sending twice; a
//! claim is a lease that expires, so a node that dies mid-send does not
//! strand its rows.

use std::fmt;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use super::billing::{LedgerKind, Movement};
use super::error::{Result, StoreError};
use super::messages::last_insert_id;

/// Where an SMS stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsStatus {
    /// Waiting to be sent (first time or retry).
    Queued,
    /// Claimed by a node, which is talking to the vendor.
    Sending,
    /// Accepted by the vendor; no final delivery report yet.
    Sent,
    /// The vendor reported delivery to the handset.
    Delivered,
    /// Refused, undeliverable, or out of attempts.
    Failed,
}

impl SmsStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => Self::Queued,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            other => return Err(StoreError::Corrupt(format!("SMS status {other:?}"))),
        })
    }
}

impl fmt::Display for SmsStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an SMS is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsPurpose {
    /// A sign-up verification code (SPEC §3).
    SignupCode,
    /// An OFFNET text message (SPEC §7).
    Offnet,
}

impl SmsPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignupCode => "signup-code",
            Self::Offnet => "offnet",
        }
    }
}

/// A queued or sent SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    pub id: i64,
    pub provider: String,
    pub number: String,
    pub sender: String,
    pub body: String,
    pub purpose: String,
    pub status: SmsStatus,
    pub provider_id: Option<String>,
    pub detail: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

fn from_row(row: &AnyRow) -> Result<SmsMessage> {
    let status: String = row.try_get("status")?;
    Ok(SmsMessage {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        number: row.try_get("number")?,
        sender: row.try_get("sender")?,
        body: row.try_get("body")?,
        purpose: row.try_get("purpose")?,
        status: SmsStatus::parse(&status)?,
        provider_id: row.try_get("provider_id")?,
        detail: row.try_get("detail")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
    })
}

const COLUMNS: &str = "id, provider, number, sender, body, purpose, status, provider_id, detail, \
                       attempts, next_attempt_at";

use super::outbox::{Outbox, clip};

const SMS: Outbox = Outbox("sms_messages");

impl Store {
    /// Queues an SMS, due at once; returns its id.
    pub async fn queue_sms_message(
        &self,
        provider: &str,
        number: &str,
        sender: &str,
        body: &str,
        purpose: SmsPurpose,
        now: i64,
    ) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        let done = sqlx::query(
            "INSERT INTO sms_messages (provider, number, sender, body, purpose, status, attempts, \
             next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
        )
        .bind(provider)
        .bind(number)
        .bind(sender)
        .bind(body)
        .bind(purpose.as_str())
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        last_insert_id(&mut conn, &done).await
    }

    /// One SMS by id.
    pub async fn sms_message(&self, id: i64) -> Result<Option<SmsMessage>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sms_messages WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// SMS due at `now`: queued ones and claims whose lease ran out, oldest first.
    pub async fn due_sms(&self, now: i64, limit: u32) -> Result<Vec<SmsMessage>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sms_messages WHERE status IN ('queued', 'sending') \
             AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Claims `m` (as read) until `lease_until`, counting one attempt; false
    /// when another node claimed it first.
    pub async fn claim_sms(&self, m: &SmsMessage, lease_until: i64, now: i64) -> Result<bool> {
        SMS.claim(
            self,
            m.id,
            m.status.as_str(),
            m.next_attempt_at,
            lease_until,
            now,
        )
        .await
    }

    /// The vendor accepted the SMS under `provider_id`.
    pub async fn sms_accepted(&self, id: i64, provider_id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE sms_messages SET status = 'sent', provider_id = ?, detail = NULL, updated_at = ? \
             WHERE id = ? AND status = 'sending'",
        )
        .bind(provider_id)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts the SMS back in the queue, due at `at`, with why.
    pub async fn sms_retry(&self, id: i64, at: i64, detail: &str, now: i64) -> Result<()> {
        SMS.retry(self, id, at, detail, now).await
    }

    /// Gives up on the SMS, with why. A charged OFFNET message the vendor
    /// never took is refunded (an `sms` ledger row crediting the sender) in
    /// the same transaction, so it is refunded exactly once.
    pub async fn sms_failed(&self, id: i64, detail: &str, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sms_messages SET status = 'failed', detail = ?, updated_at = ? \
             WHERE id = ? AND status = 'sending'",
        )
        .bind(clip(detail))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            let row = sqlx::query(
                "SELECT sender, charge_micro FROM sms_messages WHERE id = ? AND purpose = 'offnet'",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                let sender: String = row.try_get("sender")?;
                let charge: i64 = row.try_get("charge_micro")?;
                if charge > 0 {
                    let reference = format!("refund: SMS {id} not sent");
                    let refund = Movement {
                        login: &sender,
                        kind: LedgerKind::Sms,
                        amount_micro: charge,
                        reference: Some(&reference),
                        actor: Some("system"),
                    };
                    super::billing::refund_on(&mut tx, &refund).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Applies a delivery report. A final state (delivered, failed) replaces
    /// `sent` only, so a late "pending" never undoes a final one. Returns the
    /// SMS the report was about, if the switch sent it.
    pub async fn sms_report(
        &self,
        provider: &str,
        provider_id: &str,
        status: SmsStatus,
        detail: Option<&str>,
        now: i64,
    ) -> Result<Option<SmsMessage>> {
        // Look the message up first: its provider id and `sent` status are
        // recorded together, so once it is found the update below applies.
        // (Updating first could race with the recording of the acceptance.)
        if self
            .sms_by_provider_id(provider, provider_id)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let detail = detail.map(clip);
        match status {
            SmsStatus::Delivered | SmsStatus::Failed => {
                sqlx::query(
                    "UPDATE sms_messages SET status = ?, detail = COALESCE(?, detail), updated_at = ? \
                     WHERE provider = ? AND provider_id = ? AND status = 'sent'",
                )
                .bind(status.as_str())
                .bind(detail)
                .bind(now)
                .bind(provider)
                .bind(provider_id)
                .execute(&self.pool)
                .await?;
            }
            _ if detail.is_some() => {
                sqlx::query(
                    "UPDATE sms_messages SET detail = ?, updated_at = ? \
                     WHERE provider = ? AND provider_id = ? AND status = 'sent'",
                )
                .bind(detail)
                .bind(now)
                .bind(provider)
                .bind(provider_id)
                .execute(&self.pool)
                .await?;
            }
            _ => {}
        }
        self.sms_by_provider_id(provider, provider_id).await
    }

    async fn sms_by_provider_id(
        &self,
        provider: &str,
        provider_id: &str,
    ) -> Result<Option<SmsMessage>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sms_messages WHERE provider = ? AND provider_id = ?"
        ))
        .bind(provider)
        .bind(provider_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Moves up to `limit` OFFNET messages from the SIP core's `sms_outbox`
    /// into the SMS queue for `provider`; returns how many moved. Each move
    /// is one transaction, conditional on the row still being queued, so
    /// nodes draining together never move a row twice.
    pub async fn hand_over_offnet_sms(
        &self,
        provider: &str,
        limit: u32,
        now: i64,
    ) -> Result<usize> {
        let mut moved = 0;
        for entry in self.sms_outbox(limit).await? {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE sms_outbox SET status = 'handed-over', updated_at = ? WHERE id = ? AND status = 'queued'",
            )
            .bind(now)
            .bind(entry.id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                continue;
            }
            sqlx::query(
                "INSERT INTO sms_messages (provider, number, sender, body, purpose, status, attempts, \
                 charge_micro, next_attempt_at, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, 'offnet', 'queued', 0, ?, ?, ?, ?)",
            )
            .bind(provider)
            .bind(&entry.number)
            .bind(&entry.sender)
            .bind(String::from_utf8_lossy(&entry.body).into_owned())
            .bind(entry.charge_micro)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            moved += 1;
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::{test_store, unique, unique_digits};

    #[tokio::test]
    async fn queue_claim_accept_report() {
        let store = test_store().await;
        let provider = unique("prov");
        let number = unique_digits(11);
        let id = store
            .queue_sms_message(
                &provider,
                &number,
                "Switch",
                "Code 1234",
                SmsPurpose::SignupCode,
                1000,
            )
            .await
            .unwrap();
        let due = store.due_sms(1000, 10_000).await.unwrap();
        let m = due.iter().find(|m| m.id == id).unwrap().clone();
        assert!(store.claim_sms(&m, 1030, 1000).await.unwrap());
        assert!(
            !store.claim_sms(&m, 1030, 1000).await.unwrap(),
            "claimed once"
        );
        store.sms_retry(id, 1005, "HTTP 503", 1000).await.unwrap();
        let m = store.sms_message(id).await.unwrap().unwrap();
        assert_eq!(
            (m.status, m.attempts, m.next_attempt_at),
            (SmsStatus::Queued, 1, 1005)
        );
        assert!(store.claim_sms(&m, 1035, 1005).await.unwrap());
        let pid = unique("pid");
        store.sms_accepted(id, &pid, 1006).await.unwrap();
        let pending = store
            .sms_report(&provider, &pid, SmsStatus::Sent, Some("buffered"), 1007)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pending.status, SmsStatus::Sent);
        let done = store
            .sms_report(&provider, &pid, SmsStatus::Delivered, None, 1008)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.status, SmsStatus::Delivered);
        let late = store
            .sms_report(&provider, &pid, SmsStatus::Failed, Some("late"), 1009)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(late.status, SmsStatus::Delivered, "final states stay");
        assert!(
            store
                .sms_report(&provider, "nope", SmsStatus::Delivered, None, 1)
                .await
                .unwrap()
                .is_none()
        );
        sqlx::query("DELETE FROM sms_messages WHERE id = ?")
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn offnet_messages_are_handed_over_once() {
        // A private SQLite file even when the suite runs on MariaDB: the
        // hand-over drains the whole shared outbox, other tests' rows too.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let secrets = std::sync::Arc::new(crate::secrets::Secrets::generate().unwrap());
        let store = crate::store::Store::open(&url, secrets).await.unwrap();
        let provider = unique("offnet");
        let number = unique_digits(11);
        let out = store
            .queue_sms(&crate::store::messages::OffnetSms {
                sender: "alice",
                number: &number,
                gateway: "carrier",
                body: b"hello",
            })
            .await
            .unwrap();
        let moved = store
            .hand_over_offnet_sms(&provider, 100_000, 50)
            .await
            .unwrap();
        let again = store
            .hand_over_offnet_sms(&provider, 100_000, 51)
            .await
            .unwrap();
        assert!(moved >= 1);
        assert_eq!(again, 0);
        let rows = sqlx::query("SELECT id FROM sms_messages WHERE provider = ? AND number = ?")
            .bind(&provider)
            .bind(&number)
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        sqlx::query("DELETE FROM sms_messages WHERE provider = ?")
            .bind(&provider)
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("DELETE FROM sms_outbox WHERE id = ?")
            .bind(out)
            .execute(store.pool())
            .await
            .unwrap();
    }
}
