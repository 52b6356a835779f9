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
             disposition, code, end_reason, cost_micro FROM cdrs WHERE (caller = ? OR callee = ?) AND id < ? \
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

#[cfg(test)]
mod tests {
    use super::super::calls::{Cdr, Disposition};
    use super::super::messages::{MessageStatus, NewMessage};
    use super::super::testutil::{test_store, unique};

    #[tokio::test]
    async fn a_users_calls_and_one_conversation_newest_first_by_page() {
        let store = test_store().await;
        let (me, peer, other) = (unique("hme"), unique("hpe"), unique("hot"));
        for (i, (caller, callee)) in [(&me, &peer), (&peer, &me), (&other, &peer)]
            .into_iter()
            .enumerate()
        {
            store
                .insert_cdr(&Cdr {
                    call_id: unique("call"),
                    caller: caller.clone(),
                    callee: callee.clone(),
                    gateway: None,
                    started_at: 1_000 + i as i64,
                    answered_at: None,
                    ended_at: 2_000,
                    disposition: Disposition::NoAnswer,
                    code: 480,
                    end_reason: None,
                    cost_micro: None,
                })
                .await
                .unwrap();
        }
        let message = |sender: &str, recipient: &str, system: bool| NewMessage {
            sender: sender.into(),
            sender_name: None,
            recipient: recipient.into(),
            content_type: "text/plain".into(),
            body: b"hi".to_vec(),
            system,
        };
        for m in [
            message(&me, &peer, false),
            message(&peer, &me, false),
            message(&peer, &me, true),
            message(&other, &me, false),
        ] {
            store
                .insert_message(&m, MessageStatus::Deferred)
                .await
                .unwrap();
        }
        let calls = store.call_history(&me, None, 10).await.unwrap();
        let first = store.call_history(&me, None, 1).await.unwrap();
        let second = store.call_history(&me, Some(first[0].id), 1).await.unwrap();
        let talk = store.conversation(&me, &peer, None, 10).await.unwrap();
        let older = store
            .conversation(&me, &peer, Some(talk[0].id), 10)
            .await
            .unwrap();

        assert_eq!(calls.len(), 2, "only my calls");
        assert!(calls[0].id > calls[1].id, "newest first");
        assert_eq!((first[0].id, second[0].id), (calls[0].id, calls[1].id));
        assert_eq!(talk.len(), 2, "both ways, no system command, no one else");
        assert_eq!(talk[0].message.sender, peer);
        assert_eq!(older.len(), 1);
        assert_eq!(older[0].message.sender, me);
    }
}
