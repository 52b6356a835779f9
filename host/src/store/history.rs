//! A user's history (the seed's "offline history": after a push the app
//! fetches what happened): their calls from the call records, and the
//! messages of one conversation, newest first, a page at a time.

use super::Store;
use super::calls::StoredCdr;
use super::error::Result;
use super::messages::StoredMessage;

impl Store {
    /// `login`'s calls (as caller or callee), newest first, older than
    /// record `before` when given.
    pub async fn call_history(
        &self,
        login: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredCdr>> {
        let rows = sqlx::query(
            "SELECT id, call_id, caller, callee, gateway, started_at, answered_at, ended_at, \
             disposition, code, end_reason FROM cdrs WHERE (caller = ? OR callee = ?) AND id < ? \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(login)
        .bind(login)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::calls::cdr_from_row).collect()
    }

    /// The messages between `login` and `peer` (system commands left out),
    /// newest first, older than message `before` when given.
    pub async fn conversation(
        &self,
        login: &str,
        peer: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredMessage>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM messages WHERE ((sender = ? AND recipient = ?) OR (sender = ? AND recipient = ?)) \
             AND is_system = 0 AND id < ? ORDER BY id DESC LIMIT ?",
            super::messages::COLUMNS
        ))
        .bind(login)
        .bind(peer)
        .bind(peer)
        .bind(login)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::messages::message_from_row).collect()
    }
}
