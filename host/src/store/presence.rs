//! Presence state that must survive a restart: RFC 3903 publications (one
//! per device document), RFC 6665 subscriptions the switch notifies, and the
//! voice messages MWI counts.

use sqlx::Row;

use super::error::Result;
use super::{Store, now};

/// One device's published document, reduced to what the composed document
/// needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub etag: String,
    pub login: String,
    /// PIDF basic status: true for `open`.
    pub open: bool,
    pub note: Option<String>,
    pub expires_at: i64,
    pub updated_at: i64,
    /// The flow the device last published over (`udp`/`tcp`/`tls` and the
    /// peer's address): the document lives while the device is reachable
    /// there. `None` for rows stored before flows were recorded.
    pub transport: Option<String>,
    pub source: Option<String>,
}

/// A subscription dialog as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    pub event: String,
    pub watcher: String,
    pub resource: String,
    pub is_list: bool,
    pub resource_uri: String,
    pub call_id: String,
    pub local_tag: String,
    pub remote: String,
    pub remote_tag: String,
    pub target: String,
    pub event_id: Option<String>,
    pub cseq_floor: i64,
    pub transport: String,
    pub source: String,
    pub local: String,
    pub expires_at: i64,
}

/// A stored voice message (the voicemail IVR writes these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceMessage {
    pub id: i64,
    pub login: String,
    pub caller: String,
    pub heard: bool,
    pub duration_ms: i64,
    pub created_at: i64,
}

/// New and old (heard) voice messages of a mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    pub new: i64,
    pub old: i64,
}

const SUB_COLUMNS: &str = "event, watcher, resource, is_list, resource_uri, call_id, local_tag, \
    remote, remote_tag, target, event_id, cseq_floor, transport, source, local, expires_at";

fn subscription(r: &sqlx::any::AnyRow) -> Result<StoredSubscription> {
    Ok(StoredSubscription {
        event: r.try_get("event")?,
        watcher: r.try_get("watcher")?,
        resource: r.try_get("resource")?,
        is_list: r.try_get::<i64, _>("is_list")? != 0,
        resource_uri: r.try_get("resource_uri")?,
        call_id: r.try_get("call_id")?,
        local_tag: r.try_get("local_tag")?,
        remote: r.try_get("remote")?,
        remote_tag: r.try_get("remote_tag")?,
        target: r.try_get("target")?,
        event_id: r.try_get("event_id")?,
        cseq_floor: r.try_get("cseq_floor")?,
        transport: r.try_get("transport")?,
        source: r.try_get("source")?,
        local: r.try_get("local")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Store {
    /// Inserts or replaces a publication (a modify or refresh changes the
    /// entity tag: the old row goes, the new one comes, in one transaction).
    pub async fn put_publication(&self, old_etag: Option<&str>, p: &Publication) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(old) = old_etag {
            sqlx::query("DELETE FROM presence_publications WHERE etag = ?")
                .bind(old)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO presence_publications \
             (etag, login, basic, note, expires_at, updated_at, transport, source) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&p.etag)
        .bind(&p.login)
        .bind(if p.open { "open" } else { "closed" })
        .bind(&p.note)
        .bind(p.expires_at)
        .bind(p.updated_at)
        .bind(&p.transport)
        .bind(&p.source)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a publication; whether it existed.
    pub async fn delete_publication(&self, etag: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM presence_publications WHERE etag = ?")
            .bind(etag)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Publications not yet expired at `now`.
    pub async fn live_publications(&self, now: i64) -> Result<Vec<Publication>> {
        let rows = sqlx::query(
            "SELECT etag, login, basic, note, expires_at, updated_at, transport, source \
             FROM presence_publications WHERE expires_at > ?",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Publication {
                    etag: r.try_get("etag")?,
                    login: r.try_get("login")?,
                    open: r.try_get::<String, _>("basic")? == "open",
                    note: r.try_get("note")?,
                    expires_at: r.try_get("expires_at")?,
                    updated_at: r.try_get("updated_at")?,
                    transport: r.try_get("transport")?,
                    source: r.try_get("source")?,
                })
            })
            .collect()
    }

    /// Removes `login`'s publications made over one flow (the device there
    /// is gone); how many.
    pub async fn delete_publications_of_flow(
        &self,
        login: &str,
        transport: &str,
        source: &str,
    ) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM presence_publications WHERE login = ? AND transport = ? AND source = ?",
        )
        .bind(login)
        .bind(transport)
        .bind(source)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes publications expired at `now`.
    pub async fn purge_expired_publications(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM presence_publications WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Stores a new subscription dialog.
    pub async fn insert_subscription(&self, s: &StoredSubscription) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO presence_subscriptions ({SUB_COLUMNS}, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&s.event)
        .bind(&s.watcher)
        .bind(&s.resource)
        .bind(i64::from(s.is_list))
        .bind(&s.resource_uri)
        .bind(&s.call_id)
        .bind(&s.local_tag)
        .bind(&s.remote)
        .bind(&s.remote_tag)
        .bind(&s.target)
        .bind(&s.event_id)
        .bind(s.cseq_floor)
        .bind(&s.transport)
        .bind(&s.source)
        .bind(&s.local)
        .bind(s.expires_at)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A refresh: new expiry, CSeq floor and flow; whether the dialog exists.
    pub async fn refresh_subscription(&self, s: &StoredSubscription) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE presence_subscriptions SET expires_at = ?, cseq_floor = ?, target = ?, \
             transport = ?, source = ?, local = ? WHERE call_id = ? AND local_tag = ?",
        )
        .bind(s.expires_at)
        .bind(s.cseq_floor)
        .bind(&s.target)
        .bind(&s.transport)
        .bind(&s.source)
        .bind(&s.local)
        .bind(&s.call_id)
        .bind(&s.local_tag)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Points a dialog's NOTIFYs at its watcher's new flow (the device
    /// reconnected and registered again).
    pub async fn move_subscription_flow(
        &self,
        call_id: &str,
        local_tag: &str,
        transport: &str,
        source: &str,
        local: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE presence_subscriptions SET transport = ?, source = ?, local = ? \
             WHERE call_id = ? AND local_tag = ?",
        )
        .bind(transport)
        .bind(source)
        .bind(local)
        .bind(call_id)
        .bind(local_tag)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Raises a dialog's CSeq floor.
    pub async fn set_subscription_cseq_floor(
        &self,
        call_id: &str,
        local_tag: &str,
        floor: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE presence_subscriptions SET cseq_floor = ? WHERE call_id = ? AND local_tag = ?",
        )
        .bind(floor)
        .bind(call_id)
        .bind(local_tag)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a subscription dialog.
    pub async fn delete_subscription(&self, call_id: &str, local_tag: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM presence_subscriptions WHERE call_id = ? AND local_tag = ?")
                .bind(call_id)
                .bind(local_tag)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every stored subscription (expired ones too: the switch still owes
    /// them a terminating NOTIFY).
    pub async fn subscriptions(&self) -> Result<Vec<StoredSubscription>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUB_COLUMNS} FROM presence_subscriptions ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription).collect()
    }

    /// Stores a voice message; its id.
    pub async fn add_voice_message(
        &self,
        login: &str,
        caller: &str,
        duration_ms: i64,
    ) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        let done = sqlx::query(
            "INSERT INTO voicemail_messages (login, caller, duration_ms, heard, created_at) \
             VALUES (?, ?, ?, 0, ?)",
        )
        .bind(login)
        .bind(caller)
        .bind(duration_ms)
        .bind(now())
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if super::error::is_foreign_key_violation(&e) {
                super::StoreError::NotFound(format!("account {login:?}"))
            } else {
                e.into()
            }
        })?;
        if let Some(id) = done.last_insert_id() {
            return Ok(id);
        }
        // SQLite through `Any` does not report it: ask the same connection.
        Ok(sqlx::query_scalar("SELECT last_insert_rowid()")
            .fetch_one(&mut *conn)
            .await?)
    }

    /// Marks a voice message heard (or unheard); its owner when it exists.
    pub async fn set_voice_message_heard(&self, id: i64, heard: bool) -> Result<Option<String>> {
        let done = sqlx::query("UPDATE voicemail_messages SET heard = ? WHERE id = ?")
            .bind(i64::from(heard))
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let login: Option<String> =
            sqlx::query_scalar("SELECT login FROM voicemail_messages WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(login)
    }

    /// A mailbox's messages, newest first.
    pub async fn voice_messages(&self, login: &str) -> Result<Vec<VoiceMessage>> {
        let rows = sqlx::query(
            "SELECT id, login, caller, heard, duration_ms, created_at FROM voicemail_messages \
             WHERE login = ? ORDER BY id DESC",
        )
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VoiceMessage {
                    id: r.try_get("id")?,
                    login: r.try_get("login")?,
                    caller: r.try_get("caller")?,
                    heard: r.try_get::<i64, _>("heard")? != 0,
                    duration_ms: r.try_get("duration_ms")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Counts of many mailboxes (those with no message are left out), in
    /// grouped queries of a bounded number of logins each.
    pub async fn mailbox_counts_of(
        &self,
        logins: &[String],
    ) -> Result<std::collections::HashMap<String, MailboxCounts>> {
        // Keeps each statement well under both backends' placeholder limits.
        const CHUNK: usize = 500;
        let mut out = std::collections::HashMap::new();
        for chunk in logins.chunks(CHUNK) {
            let sql = format!(
                "SELECT login, heard, COUNT(*) AS n FROM voicemail_messages \
                 WHERE login IN ({}) GROUP BY login, heard",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for l in chunk {
                q = q.bind(l);
            }
            for r in q.fetch_all(&self.pool).await? {
                let login: String = r.try_get("login")?;
                let heard: i64 = r.try_get("heard")?;
                let n: i64 = r.try_get("n")?;
                let c: &mut MailboxCounts = out.entry(login).or_default();
                if heard == 0 {
                    c.new += n;
                } else {
                    c.old += n;
                }
            }
        }
        Ok(out)
    }

    /// New and heard message counts of a mailbox.
    pub async fn mailbox_counts(&self, login: &str) -> Result<MailboxCounts> {
        let rows = sqlx::query(
            "SELECT heard, COUNT(*) AS n FROM voicemail_messages WHERE login = ? GROUP BY heard",
        )
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = MailboxCounts::default();
        for r in &rows {
            let heard: i64 = r.try_get("heard")?;
            let n: i64 = r.try_get("n")?;
            if heard == 0 {
                counts.new += n;
            } else {
                counts.old += n;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique};
    use super::*;
    use crate::store::NewAccount;

    async fn account(store: &Store) -> String {
        let login = unique("pp");
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw-secret-1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        login
    }

    #[tokio::test]
    async fn publications_replace_and_expire() {
        let store = test_store().await;
        let login = account(&store).await;
        let etag1 = unique("e");
        let mut p = Publication {
            etag: etag1.clone(),
            login: login.clone(),
            open: true,
            note: Some("Lunch".into()),
            expires_at: now() + 60,
            updated_at: now(),
            transport: Some("tls".into()),
            source: Some("127.0.0.1:40000".into()),
        };
        store.put_publication(None, &p).await.unwrap();
        p.etag = unique("e");
        p.open = false;
        store.put_publication(Some(&etag1), &p).await.unwrap();
        let mine: Vec<_> = store
            .live_publications(now())
            .await
            .unwrap()
            .into_iter()
            .filter(|x| x.login == login)
            .collect();
        assert_eq!(mine, vec![p.clone()]);
        assert!(
            store
                .live_publications(now() + 61)
                .await
                .unwrap()
                .iter()
                .all(|x| x.login != login)
        );
        assert!(store.delete_publication(&p.etag).await.unwrap());
        assert!(!store.delete_publication(&p.etag).await.unwrap());
        // A device's documents go with the flow it published over.
        store.put_publication(None, &p).await.unwrap();
        assert_eq!(
            store
                .delete_publications_of_flow(&login, "tls", "127.0.0.1:40001")
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .delete_publications_of_flow(&login, "tls", "127.0.0.1:40000")
                .await
                .unwrap(),
            1
        );
        store.delete_account(&login).await.unwrap();
    }

    #[tokio::test]
    async fn subscriptions_round_trip() {
        let store = test_store().await;
        let login = account(&store).await;
        let mut s = StoredSubscription {
            event: "presence".into(),
            watcher: login.clone(),
            resource: login.clone(),
            is_list: true,
            resource_uri: "sip:x-buddies@localhost".into(),
            call_id: unique("c"),
            local_tag: "lt".into(),
            remote: "<sip:x@localhost>;tag=rt".into(),
            remote_tag: "rt".into(),
            target: "sip:x@127.0.0.1:5070".into(),
            event_id: None,
            cseq_floor: 1,
            transport: "udp".into(),
            source: "127.0.0.1:5070".into(),
            local: "127.0.0.1:5060".into(),
            expires_at: now() + 600,
        };
        store.insert_subscription(&s).await.unwrap();
        s.expires_at += 100;
        s.cseq_floor = 500;
        assert!(store.refresh_subscription(&s).await.unwrap());
        let all = store.subscriptions().await.unwrap();
        assert!(all.contains(&s));
        assert!(store.delete_subscription(&s.call_id, "lt").await.unwrap());
        assert!(!store.refresh_subscription(&s).await.unwrap());
        store.delete_account(&login).await.unwrap();
    }

    #[tokio::test]
    async fn mailbox_counts_follow_the_table() {
        let store = test_store().await;
        let login = account(&store).await;
        assert_eq!(
            store.mailbox_counts(&login).await.unwrap(),
            MailboxCounts::default()
        );
        let a = store.add_voice_message(&login, "bob", 3000).await.unwrap();
        store
            .add_voice_message(&login, "carol", 1000)
            .await
            .unwrap();
        assert_eq!(
            store.mailbox_counts(&login).await.unwrap(),
            MailboxCounts { new: 2, old: 0 }
        );
        assert_eq!(
            store.set_voice_message_heard(a, true).await.unwrap(),
            Some(login.clone())
        );
        assert_eq!(
            store.mailbox_counts(&login).await.unwrap(),
            MailboxCounts { new: 1, old: 1 }
        );
        assert_eq!(store.voice_messages(&login).await.unwrap().len(), 2);
        let many = store
            .mailbox_counts_of(&[login.clone(), "nobody-here-x".into()])
            .await
            .unwrap();
        assert_eq!(many.len(), 1);
        assert_eq!(many[&login], MailboxCounts { new: 1, old: 1 });
        assert_eq!(
            store.set_voice_message_heard(i64::MAX, true).await.unwrap(),
            None
        );
        assert!(
            store
                .add_voice_message("no-such-login-x", "bob", 1)
                .await
                .is_err()
        );
        store.delete_account(&login).await.unwrap();
    }
}
