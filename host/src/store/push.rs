//! Push tokens (per device instance) and the push outbox.
//!
//! A token is registered by the app through the client API or by the SIP
//! client in its REGISTER Contact (RFC 8599). The outbox holds one row per
//! notification and device, claimed with a conditional UPDATE and a lease
//! like the SMS queue, so several nodes can drain it and a node that dies
//! mid-send strands nothing.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use super::error::{Result, StoreError, is_foreign_key_violation};
use super::messages::last_insert_id;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// iOS PushKit: incoming calls only (each must report a CallKit call).
    Voip,
    /// Everything else (and calls, when the device has no VoIP token).
    Alert,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voip => "voip",
            Self::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "voip" => Some(Self::Voip),
            "alert" => Some(Self::Alert),
            _ => None,
        }
    }
}

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Api,
    /// RFC 8599 parameters of a REGISTER Contact.
    Register,
}

impl TokenSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Register => "register",
        }
    }
}

/// A device's push token as the app (or its SIP stack) gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPushToken {
    pub instance: String,
    pub provider: String,
    pub token: String,
    pub app: String,
    pub sandbox: bool,
    pub kind: TokenKind,
}

/// A stored push token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushToken {
    pub id: i64,
    pub login: String,
    pub instance: String,
    pub provider: String,
    pub token: String,
    pub app: String,
    pub sandbox: bool,
    pub kind: TokenKind,
    pub source: String,
    pub updated_at: i64,
}

const TOKEN_COLUMNS: &str =
    "id, login, instance, provider, token, app, sandbox, kind, source, updated_at";

fn token_from_row(row: &AnyRow) -> Result<PushToken> {
    let kind: String = row.try_get("kind")?;
    Ok(PushToken {
        id: row.try_get("id")?,
        login: row.try_get("login")?,
        instance: row.try_get("instance")?,
        provider: row.try_get("provider")?,
        token: row.try_get("token")?,
        app: row.try_get("app")?,
        sandbox: row.try_get::<i64, _>("sandbox")? != 0,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("push token kind {kind:?}")))?,
        source: row.try_get("source")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Longest token, instance and app id accepted (UnifiedPush endpoints are URLs).
pub const TOKEN_MAX: usize = 1024;
pub const INSTANCE_MAX: usize = 255;

fn validate(t: &NewPushToken) -> Result<()> {
    let bad = |what: &str| Err(StoreError::Invalid(what.to_string()));
    let printable = |s: &str| s.chars().all(|c| !c.is_control());
    if t.token.is_empty() || t.token.len() > TOKEN_MAX || !printable(&t.token) {
        return bad("push token: 1 to 1024 printable characters");
    }
    if t.instance.is_empty() || t.instance.len() > INSTANCE_MAX || !printable(&t.instance) {
        return bad("device instance: 1 to 255 printable characters");
    }
    if t.app.len() > 255 || !printable(&t.app) {
        return bad("app id: at most 255 printable characters");
    }
    if t.provider.is_empty() || t.provider.len() > 64 {
        return bad("push provider: 1 to 64 characters");
    }
    Ok(())
}

/// Where a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStatus {
    Queued,
    Sending,
    Delivered,
    Failed,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => Self::Queued,
            "sending" => Self::Sending,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            other => return Err(StoreError::Corrupt(format!("push status {other:?}"))),
        })
    }
}

/// One outbox row: a notification for one device token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEntry {
    pub id: i64,
    pub token_id: i64,
    pub login: String,
    pub provider: String,
    pub kind: String,
    /// JSON of the notification (see `crate::push::Notification`).
    pub notification: String,
    pub status: PushStatus,
    pub detail: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
}

const OUTBOX_COLUMNS: &str = "id, token_id, login, provider, kind, notification, status, detail, \
                              attempts, next_attempt_at, created_at";

fn entry_from_row(row: &AnyRow) -> Result<PushEntry> {
    let status: String = row.try_get("status")?;
    Ok(PushEntry {
        id: row.try_get("id")?,
        token_id: row.try_get("token_id")?,
        login: row.try_get("login")?,
        provider: row.try_get("provider")?,
        kind: row.try_get("kind")?,
        notification: row.try_get("notification")?,
        status: PushStatus::parse(&status)?,
        detail: row.try_get("detail")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
    })
}

use super::outbox::{Outbox, clip};

const PUSHES: Outbox = Outbox("push_outbox");

impl Store {
    /// Registers (or replaces) `login`'s token for one device instance and
    /// kind. The same provider token held by any other row (another
    /// account, or this device under another instance id) is removed first:
    /// a token reaches one app installation, which now belongs to `login`.
    pub async fn set_push_token(
        &self,
        login: &str,
        t: &NewPushToken,
        source: TokenSource,
        now: i64,
    ) -> Result<PushToken> {
        validate(t)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM push_tokens WHERE (provider = ? AND token = ?) \
             OR (login = ? AND instance = ? AND kind = ?)",
        )
        .bind(&t.provider)
        .bind(&t.token)
        .bind(login)
        .bind(&t.instance)
        .bind(t.kind.as_str())
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO push_tokens (login, instance, provider, token, app, sandbox, kind, source, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(login)
        .bind(&t.instance)
        .bind(&t.provider)
        .bind(&t.token)
        .bind(&t.app)
        .bind(i64::from(t.sandbox))
        .bind(t.kind.as_str())
        .bind(source.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        let done = match inserted {
            Ok(d) => d,
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::NotFound(format!("account {login}")));
            }
            Err(e) => return Err(e.into()),
        };
        let id = last_insert_id(&mut tx, &done).await?;
        tx.commit().await?;
        Ok(PushToken {
            id,
            login: login.to_string(),
            instance: t.instance.clone(),
            provider: t.provider.clone(),
            token: t.token.clone(),
            app: t.app.clone(),
            sandbox: t.sandbox,
            kind: t.kind,
            source: source.as_str().to_string(),
            updated_at: now,
        })
    }

    /// `login`'s tokens, oldest device first.
    pub async fn push_tokens(&self, login: &str) -> Result<Vec<PushToken>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM push_tokens WHERE login = ? ORDER BY instance, kind"
        ))
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// One token by id.
    pub async fn push_token(&self, id: i64) -> Result<Option<PushToken>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM push_tokens WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Deletes `login`'s tokens of one device (one kind, or all); returns
    /// how many went. Another account's device is never touched.
    pub async fn delete_push_tokens(
        &self,
        login: &str,
        instance: &str,
        kind: Option<TokenKind>,
    ) -> Result<u64> {
        let done = match kind {
            Some(k) => {
                sqlx::query("DELETE FROM push_tokens WHERE login = ? AND instance = ? AND kind = ?")
                    .bind(login)
                    .bind(instance)
                    .bind(k.as_str())
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM push_tokens WHERE login = ? AND instance = ?")
                    .bind(login)
                    .bind(instance)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    /// The push service said the token is dead: deletes it (and its queued pushes).
    pub async fn delete_push_token_by_id(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM push_tokens WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Queues one push per token in `tokens`, due at once, in one
    /// transaction; returns the ids.
    pub async fn queue_pushes(
        &self,
        tokens: &[PushToken],
        kind: &str,
        notification: &str,
        now: i64,
    ) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(tokens.len());
        for t in tokens {
            let done = sqlx::query(
                "INSERT INTO push_outbox (token_id, login, provider, kind, notification, status, \
                 attempts, next_attempt_at, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
            )
            .bind(t.id)
            .bind(&t.login)
            .bind(&t.provider)
            .bind(kind)
            .bind(notification)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match done {
                Ok(d) => ids.push(last_insert_id(&mut tx, &d).await?),
                // The token was deleted meanwhile: nothing to send to.
                Err(e) if is_foreign_key_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Pushes due at `now` (queued, or claims whose lease ran out), oldest first.
    pub async fn due_pushes(&self, now: i64, limit: u32) -> Result<Vec<PushEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM push_outbox WHERE status IN ('queued', 'sending') \
             AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// `login`'s latest pushes, newest first (for the API and tests).
    pub async fn recent_pushes(&self, login: &str, limit: u32) -> Result<Vec<PushEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM push_outbox WHERE login = ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(login)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Claims `p` (as read) until `lease_until`, counting one attempt;
    /// false when another node claimed it first.
    pub async fn claim_push(&self, p: &PushEntry, lease_until: i64, now: i64) -> Result<bool> {
        PUSHES
            .claim(
                self,
                p.id,
                p.status.as_str(),
                p.next_attempt_at,
                lease_until,
                now,
            )
            .await
    }

    /// Records the end of a push (delivered or failed), with the detail.
    pub async fn push_done(
        &self,
        id: i64,
        status: PushStatus,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE push_outbox SET status = ?, detail = ?, updated_at = ? \
             WHERE id = ? AND status = 'sending'",
        )
        .bind(status.as_str())
        .bind(detail.map(clip))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts the push back in the queue, due at `at`, with why.
    pub async fn push_retry(&self, id: i64, at: i64, detail: &str, now: i64) -> Result<()> {
        PUSHES.retry(self, id, at, detail, now).await
    }

    /// The name `owner` gave `caller` (a login) in their address book, when
    /// the caller's number (or login, in generic mode) is in it: what a
    /// push alert shows (SPEC §9).
    pub async fn book_name(&self, owner: &str, caller: &str) -> Result<Option<String>> {
        let name: Option<Option<String>> = sqlx::query_scalar(
            "SELECT c.name FROM contacts c LEFT JOIN profiles p ON p.phone = c.number \
             WHERE c.owner = ? AND (p.login = ? OR c.number = ?) AND c.name IS NOT NULL \
             ORDER BY c.contact_id LIMIT 1",
        )
        .bind(owner)
        .bind(caller)
        .bind(caller)
        .fetch_optional(&self.pool)
        .await?;
        Ok(name.flatten().filter(|n| !n.is_empty()))
    }

    /// Logins holding at least one push token (presence's "reachable by push").
    pub async fn logins_with_push_tokens(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT login FROM push_tokens")
            .fetch_all(&self.pool)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::accounts::NewAccount;
    use super::super::testutil::{test_store, unique};
    use super::*;

    fn token(instance: &str, token: &str, kind: TokenKind) -> NewPushToken {
        NewPushToken {
            instance: instance.into(),
            provider: "apns".into(),
            token: token.into(),
            app: "net.example.app".into(),
            sandbox: false,
            kind,
        }
    }

    #[tokio::test]
    async fn tokens_are_per_device_and_kind_and_move_with_the_app() {
        let store = test_store().await;
        let (alice, bob) = (unique("pta"), unique("ptb"));
        for login in [&alice, &bob] {
            store
                .add_account(&NewAccount {
                    login: login.clone(),
                    sip_password: "pw".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let (t1, t2, t3) = (unique("tok"), unique("tok"), unique("tok"));
        let voip = store
            .set_push_token(
                &alice,
                &token("dev1", &t1, TokenKind::Voip),
                TokenSource::Api,
                10,
            )
            .await
            .unwrap();
        store
            .set_push_token(
                &alice,
                &token("dev1", &t2, TokenKind::Alert),
                TokenSource::Api,
                10,
            )
            .await
            .unwrap();
        // The same device re-sends a changed alert token: replaced.
        store
            .set_push_token(
                &alice,
                &token("dev1", &t3, TokenKind::Alert),
                TokenSource::Register,
                11,
            )
            .await
            .unwrap();
        let mine = store.push_tokens(&alice).await.unwrap();
        // Bob signs in on alice's phone: the VoIP token is his now.
        store
            .set_push_token(
                &bob,
                &token("bobdev", &t1, TokenKind::Voip),
                TokenSource::Api,
                12,
            )
            .await
            .unwrap();
        let after = store.push_tokens(&alice).await.unwrap();
        let queued = store.queue_pushes(&mine, "text", "{}", 13).await.unwrap();
        let nobody = store
            .set_push_token(
                &unique("none"),
                &token("d", &unique("tok"), TokenKind::Alert),
                TokenSource::Api,
                13,
            )
            .await;
        let empty = store
            .set_push_token(
                &alice,
                &token("d", "", TokenKind::Alert),
                TokenSource::Api,
                13,
            )
            .await;
        let not_bobs = store.delete_push_tokens(&bob, "dev1", None).await.unwrap();
        let gone = store
            .delete_push_tokens(&alice, "dev1", None)
            .await
            .unwrap();
        for login in [&alice, &bob] {
            store.delete_account(login).await.unwrap();
        }

        assert_eq!(
            mine.iter()
                .map(|t| (t.token.as_str(), t.kind))
                .collect::<Vec<_>>(),
            [
                (t3.as_str(), TokenKind::Alert),
                (t1.as_str(), TokenKind::Voip)
            ]
        );
        assert!(!after.iter().any(|t| t.id == voip.id), "{after:?}");
        assert_eq!(queued.len(), 1, "the moved token's push is not queued");
        assert!(matches!(nobody, Err(StoreError::NotFound(_))), "{nobody:?}");
        assert!(matches!(empty, Err(StoreError::Invalid(_))), "{empty:?}");
        assert_eq!((not_bobs, gone), (0, 1));
    }

    #[tokio::test]
    async fn pushes_are_claimed_once_retried_and_finished() {
        let store = test_store().await;
        let login = unique("ptq");
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let t = store
            .set_push_token(
                &login,
                &token("dev", &unique("tok"), TokenKind::Alert),
                TokenSource::Api,
                10,
            )
            .await
            .unwrap();
        let ids = store
            .queue_pushes(std::slice::from_ref(&t), "text", "{\"k\":1}", 100)
            .await
            .unwrap();
        let p = store
            .due_pushes(100, 10_000)
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.id == ids[0])
            .unwrap();
        assert!(store.claim_push(&p, 130, 100).await.unwrap());
        assert!(!store.claim_push(&p, 130, 100).await.unwrap());
        store.push_retry(p.id, 105, "HTTP 503", 100).await.unwrap();
        let p = store.recent_pushes(&login, 1).await.unwrap().remove(0);
        assert_eq!(
            (p.status, p.attempts, p.next_attempt_at),
            (PushStatus::Queued, 1, 105)
        );
        assert!(store.claim_push(&p, 135, 105).await.unwrap());
        store
            .push_done(p.id, PushStatus::Delivered, Some("apns-id"), 106)
            .await
            .unwrap();
        let p = store.recent_pushes(&login, 1).await.unwrap().remove(0);
        // A dead token takes its queued pushes along.
        store.delete_push_token_by_id(t.id).await.unwrap();
        let left = store.recent_pushes(&login, 10).await.unwrap();
        store.delete_account(&login).await.unwrap();
        assert_eq!(
            (p.status, p.detail.as_deref()),
            (PushStatus::Delivered, Some("apns-id"))
        );
        assert!(left.is_empty());
    }
}
