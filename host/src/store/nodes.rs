//! Switch nodes sharing the database (cluster mode): each node's row with
//! its last heartbeat, so every node knows which others are alive.

use sqlx::Row;

use super::error::Result;
use super::{Backend, Store};

/// One node as its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// `sip:HOST:PORT`, as bindings name the node that holds them.
    pub node: String,
    pub name: String,
    pub started_at: i64,
    /// Unix milliseconds of the last heartbeat.
    pub seen_at: i64,
}

impl Store {
    /// Writes this node's heartbeat (creating its row on the first one).
    pub async fn node_heartbeat(
        &self,
        node: &str,
        name: &str,
        started_at: i64,
        now_ms: i64,
    ) -> Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO nodes (node, name, started_at, seen_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (node) DO UPDATE SET name = excluded.name, \
                 started_at = excluded.started_at, seen_at = excluded.seen_at"
            }
            Backend::MySql => {
                "INSERT INTO nodes (node, name, started_at, seen_at) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE name = VALUES(name), \
                 started_at = VALUES(started_at), seen_at = VALUES(seen_at)"
            }
        };
        sqlx::query(sql)
            .bind(node)
            .bind(name)
            .bind(started_at)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every node whose last heartbeat is at or after `since_ms`.
    pub async fn nodes_seen_since(&self, since_ms: i64) -> Result<Vec<NodeRow>> {
        let rows = sqlx::query(
            "SELECT node, name, started_at, seen_at FROM nodes WHERE seen_at >= ? ORDER BY node",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NodeRow {
                    node: row.try_get("node")?,
                    name: row.try_get("name")?,
                    started_at: row.try_get("started_at")?,
                    seen_at: row.try_get("seen_at")?,
                })
            })
            .collect()
    }

    /// Every node row, dead ones included (the admin view).
    pub async fn nodes(&self) -> Result<Vec<NodeRow>> {
        self.nodes_seen_since(i64::MIN).await
    }

    /// Removes this node's row: a graceful stop tells the others at once
    /// that it is gone, instead of after `dead_after`.
    pub async fn leave_cluster(&self, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE node = ?")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::test_store;

    #[tokio::test]
    async fn heartbeats_refresh_one_row_and_old_ones_fall_out_of_the_live_list() {
        let store = test_store().await;
        let node = format!("sip:127.0.0.1:{}", 10_000 + std::process::id() % 50_000);
        store.node_heartbeat(&node, "a", 1, 1_000).await.unwrap();
        store.node_heartbeat(&node, "a", 1, 5_000).await.unwrap();
        let mine = |rows: Vec<super::NodeRow>| {
            rows.into_iter()
                .filter(|r| r.node == node)
                .collect::<Vec<_>>()
        };
        let live = mine(store.nodes_seen_since(4_000).await.unwrap());
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].seen_at, 5_000);
        assert!(mine(store.nodes_seen_since(6_000).await.unwrap()).is_empty());
        store.leave_cluster(&node).await.unwrap();
        assert!(mine(store.nodes().await.unwrap()).is_empty());
    }
}
