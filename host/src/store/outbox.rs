//! What the SMS queue and the push outbox share: rows claimed with a
//! conditional UPDATE and a lease (so several nodes drain one queue without
//! sending twice, and a node that dies mid-send strands nothing), put back
//! with a due time, and vendor details clipped to a column's size.

use super::Store;
use super::error::Result;

/// Longest detail text kept (vendor error texts can be long).
const DETAIL_MAX: usize = 1000;

/// `detail` cut to [`DETAIL_MAX`] bytes on a character boundary.
pub(super) fn clip(detail: &str) -> String {
    let mut end = detail.len().min(DETAIL_MAX);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_string()
}

/// A leased queue: its table (a constant of the store, never input).
#[derive(Clone, Copy)]
pub(super) struct Outbox(pub &'static str);

impl Outbox {
    /// Claims row `id` as read (`status`, `next_attempt_at`) until
    /// `lease_until`, counting one attempt; false when another node
    /// claimed it first.
    pub(super) async fn claim(
        self,
        store: &Store,
        id: i64,
        status: &str,
        next_attempt_at: i64,
        lease_until: i64,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET status = 'sending', attempts = attempts + 1, \
             next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = ? AND next_attempt_at = ?",
            self.0
        ))
        .bind(lease_until)
        .bind(now)
        .bind(id)
        .bind(status)
        .bind(next_attempt_at)
        .execute(&store.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a claimed row back in the queue, due at `at`, with why.
    pub(super) async fn retry(
        self,
        store: &Store,
        id: i64,
        at: i64,
        detail: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE {} SET status = 'queued', next_attempt_at = ?, detail = ?, updated_at = ? \
             WHERE id = ? AND status = 'sending'",
            self.0
        ))
        .bind(at)
        .bind(clip(detail))
        .bind(now)
        .bind(id)
        .execute(&store.pool)
        .await?;
        Ok(())
    }
}
