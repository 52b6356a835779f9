//! Presence across cluster nodes: each node's share of a user's presence
//! (what its own devices of the user say), written when it changes and read
//! by the other nodes (see `sip::presence::cluster`).

use sqlx::Row;

use super::error::Result;
use super::{Backend, Store};

/// The database's clock in Unix milliseconds, per dialect.
const SQLITE_NOW_MS: &str = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";
const MYSQL_NOW_MS: &str = "CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)";

/// What one node's devices of a user say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceShare {
    /// A device there is open.
    pub online: bool,
    /// The newest note its devices published, and when (Unix seconds).
    pub note: Option<String>,
    pub note_at: i64,
    /// A device there registered with push parameters.
    pub push: bool,
}

/// A share as stored: whose, from which node, changed when (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredShare {
    pub login: String,
    pub node: String,
    pub share: PresenceShare,
    pub updated_at: i64,
}

impl Store {
    /// Writes `node`'s share of `login`'s presence, stamped with the
    /// database's clock: the readers compare stamps of one clock, whatever
    /// the nodes' own clocks say.
    pub async fn put_presence_share(
        &self,
        login: &str,
        node: &str,
        share: &PresenceShare,
    ) -> Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "INSERT INTO presence_shares (login, node, online, note, note_at, push, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, {SQLITE_NOW_MS}) ON CONFLICT (login, node) DO UPDATE SET \
                 online = excluded.online, note = excluded.note, note_at = excluded.note_at, \
                 push = excluded.push, updated_at = excluded.updated_at"
            ),
            Backend::MySql => format!(
                "INSERT INTO presence_shares (login, node, online, note, note_at, push, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, {MYSQL_NOW_MS}) ON DUPLICATE KEY UPDATE \
                 online = VALUES(online), note = VALUES(note), note_at = VALUES(note_at), \
                 push = VALUES(push), updated_at = VALUES(updated_at)"
            ),
        };
        sqlx::query(&sql)
            .bind(login)
            .bind(node)
            .bind(i64::from(share.online))
            .bind(&share.note)
            .bind(share.note_at)
            .bind(i64::from(share.push))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Empties every share `node` wrote (a node starting again: what it
    /// said before is void until its devices say it again).
    pub async fn clear_presence_shares(&self, node: &str) -> Result<()> {
        let now = match self.backend {
            Backend::Sqlite => SQLITE_NOW_MS,
            Backend::MySql => MYSQL_NOW_MS,
        };
        sqlx::query(&format!(
            "UPDATE presence_shares SET online = 0, note = NULL, note_at = 0, push = 0, \
             updated_at = {now} WHERE node = ? AND (online <> 0 OR push <> 0 OR note IS NOT NULL)"
        ))
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Shares changed at or after `since_ms` (all of them from 0), oldest
    /// change first.
    pub async fn presence_shares_since(&self, since_ms: i64) -> Result<Vec<StoredShare>> {
        let rows = sqlx::query(
            "SELECT login, node, online, note, note_at, push, updated_at FROM presence_shares \
             WHERE updated_at >= ? ORDER BY updated_at",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredShare {
                    login: r.try_get("login")?,
                    node: r.try_get("node")?,
                    share: PresenceShare {
                        online: r.try_get::<i64, _>("online")? != 0,
                        note: r.try_get("note")?,
                        note_at: r.try_get("note_at")?,
                        push: r.try_get::<i64, _>("push")? != 0,
                    },
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Forgets shares that say nothing (offline, no note, no push) and
    /// changed before `before_ms`: the other nodes have long read them.
    pub async fn purge_empty_presence_shares(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM presence_shares WHERE online = 0 AND push = 0 AND note IS NULL \
             AND updated_at < ?",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::test_store;
    use super::*;

    #[tokio::test]
    async fn a_share_is_rewritten_in_place_and_read_back_by_its_change_time() {
        let store = test_store().await;
        let login = format!("share-{}", std::process::id());
        let (a, b) = ("sip:127.0.0.1:5060", "sip:127.0.0.1:5070");
        let mine = |rows: Vec<StoredShare>| {
            rows.into_iter()
                .filter(|r| r.login == login)
                .collect::<Vec<_>>()
        };
        let online = PresenceShare {
            online: true,
            note: Some("Here".into()),
            note_at: 7,
            push: false,
        };
        store.put_presence_share(&login, a, &online).await.unwrap();
        store.put_presence_share(&login, b, &online).await.unwrap();
        let all = mine(store.presence_shares_since(0).await.unwrap());
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|r| r.share == online));
        let stamped = all.iter().map(|r| r.updated_at).max().unwrap();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((stamped - wall).abs() < 60_000, "{stamped} vs {wall}");

        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store.clear_presence_shares(a).await.unwrap();
        let recent = mine(store.presence_shares_since(stamped + 1).await.unwrap());
        assert_eq!(recent.len(), 1, "{recent:?}");
        assert_eq!(recent[0].node, a);
        assert_eq!(recent[0].share, PresenceShare::default());

        store.purge_empty_presence_shares(i64::MAX).await.unwrap();
        let left = mine(store.presence_shares_since(0).await.unwrap());
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].node, b);
        store.clear_presence_shares(b).await.unwrap();
        store.purge_empty_presence_shares(i64::MAX).await.unwrap();
    }
}
