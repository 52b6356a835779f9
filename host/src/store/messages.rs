//! The message store: every MESSAGE the switch accepted, with its delivery
//! status, and the outbox of OFFNET messages for the SMS provider.

use std::fmt;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::error::{Result, StoreError};
use super::{Store, now};

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// Waiting for a device of the recipient.
    Deferred,
    /// A device answered 2xx.
    Delivered,
    /// Every device refused it.
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "deferred" => Ok(Self::Deferred),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt(format!("message status {other:?}"))),
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub sender: String,
    pub sender_name: Option<String>,
    pub recipient: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// System command (SPEC 5): deferred like any other, never pushed.
    pub system: bool,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: i64,
    pub message: NewMessage,
    pub status: MessageStatus,
    pub created_at: i64,
}

pub(super) fn message_from_row(row: &AnyRow) -> Result<StoredMessage> {
    let status: String = row.try_get("status")?;
    let system: i64 = row.try_get("is_system")?;
    Ok(StoredMessage {
        id: row.try_get("id")?,
        message: NewMessage {
            sender: row.try_get("sender")?,
            sender_name: row.try_get("sender_name")?,
            recipient: row.try_get("recipient")?,
            content_type: row.try_get("content_type")?,
            body: row.try_get("body")?,
            system: system != 0,
        },
        status: MessageStatus::parse(&status)?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) const COLUMNS: &str =
    "id, sender, sender_name, recipient, content_type, body, status, is_system, created_at";

/// An OFFNET message waiting for the SMS provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsOutboxEntry {
    pub id: i64,
    pub sender: String,
    pub number: String,
    pub gateway: String,
    pub body: Vec<u8>,
    pub status: String,
    /// What the sender paid for it (refunded if the vendor never takes it).
    pub charge_micro: i64,
}

/// An OFFNET message from a user for the SMS provider.
#[derive(Debug, Clone, Copy)]
pub struct OffnetSms<'a> {
    /// The sender's login.
    pub sender: &'a str,
    /// E.164 digits.
    pub number: &'a str,
    /// The gateway the routing chose.
    pub gateway: &'a str,
    pub body: &'a [u8],
}

/// Writes an OFFNET message into `sms_outbox` on `conn`; its id.
pub(super) async fn insert_outbox(
    conn: &mut AnyConnection,
    sms: &OffnetSms<'_>,
    charge_micro: i64,
) -> Result<i64> {
    let t = now();
    let done = sqlx::query(
        "INSERT INTO sms_outbox (sender, number, gateway, body, status, attempts, charge_micro, \
         created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
    )
    .bind(sms.sender)
    .bind(sms.number)
    .bind(sms.gateway)
    .bind(sms.body)
    .bind(charge_micro)
    .bind(t)
    .bind(t)
    .execute(&mut *conn)
    .await?;
    last_insert_id(conn, &done).await
}

/// A write for the message writer task, with where its outcome goes.
enum WriteOp {
    Insert(NewMessage, MessageStatus, oneshot::Sender<Result<i64>>),
    Status(i64, MessageStatus, oneshot::Sender<Result<bool>>),
}

/// The queue of the task that writes messages and their statuses.
#[derive(Debug)]
pub(crate) struct MessageWriter(mpsc::UnboundedSender<WriteOp>);

impl fmt::Debug for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteOp::Insert(m, s, _) => write!(f, "Insert({} -> {}, {s})", m.sender, m.recipient),
            WriteOp::Status(id, s, _) => write!(f, "Status({id}, {s})"),
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Busy("the message writer stopped".into())
}

/// Most writes one transaction carries.
const MESSAGE_BATCH: usize = 256;

enum Written {
    Id(i64),
    Updated(bool),
}

fn reply(op: WriteOp, outcome: Result<Written>) {
    match (op, outcome) {
        (WriteOp::Insert(.., done), Ok(Written::Id(id))) => {
            let _ = done.send(Ok(id));
        }
        (WriteOp::Status(.., done), Ok(Written::Updated(found))) => {
            let _ = done.send(Ok(found));
        }
        (WriteOp::Insert(.., done), Err(e)) => {
            let _ = done.send(Err(e));
        }
        (WriteOp::Status(.., done), Err(e)) => {
            let _ = done.send(Err(e));
        }
        (WriteOp::Insert(.., done), Ok(_)) => {
            let _ = done.send(Err(StoreError::Corrupt("insert without an id".into())));
        }
        (WriteOp::Status(.., done), Ok(_)) => {
            let _ = done.send(Err(StoreError::Corrupt("update without a count".into())));
        }
    }
}

/// Rows one multi-row INSERT carries (9 parameters each).
const INSERT_ROWS: usize = 64;

/// A batch in one transaction.
async fn write_batch(pool: &AnyPool, batch: &[WriteOp]) -> Result<Vec<Written>> {
    let mut tx = pool.begin().await?;
    let written = write_ops(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(written)
}

/// Writes `ops` in few statements: consecutive inserts go as multi-row
/// INSERTs, consecutive status changes to the same status as one UPDATE. A
/// statement is a round trip to the database's worker, which made two
/// statements per MESSAGE a fifth of the switch's CPU.
async fn write_ops(conn: &mut AnyConnection, ops: &[WriteOp]) -> Result<Vec<Written>> {
    let mut out = Vec::with_capacity(ops.len());
    for run in ops.chunk_by(same_kind) {
        match &run[0] {
            WriteOp::Insert(..) => {
                for chunk in run.chunks(INSERT_ROWS) {
                    let ids = insert_rows(conn, chunk).await?;
                    out.extend(ids.into_iter().map(Written::Id));
                }
            }
            WriteOp::Status(_, status, _) => {
                let ids: Vec<i64> = run
                    .iter()
                    .filter_map(|op| match op {
                        WriteOp::Status(id, ..) => Some(*id),
                        WriteOp::Insert(..) => None,
                    })
                    .collect();
                let found = update_statuses(conn, &ids, *status).await?;
                out.extend(ids.iter().map(|id| Written::Updated(found.contains(id))));
            }
        }
    }
    Ok(out)
}

fn same_kind(a: &WriteOp, b: &WriteOp) -> bool {
    match (a, b) {
        (WriteOp::Insert(..), WriteOp::Insert(..)) => true,
        (WriteOp::Status(_, x, _), WriteOp::Status(_, y, _)) => x == y,
        _ => false,
    }
}

/// Inserts the messages of `ops` (all inserts) in one statement; their ids
/// in the same order. RETURNING (SQLite 3.35+, MariaDB 10.5+) hands them
/// back in the same round trip; through sqlx's Any driver SQLite reports no
/// last-insert id. Rows of one INSERT get increasing ids in row order
/// (SQLite's rowid, InnoDB's auto-increment), while RETURNING lists them in
/// no promised order: sorting restores the pairing.
async fn insert_rows(conn: &mut AnyConnection, ops: &[WriteOp]) -> Result<Vec<i64>> {
    let mut sql = String::from(
        "INSERT INTO messages (sender, sender_name, recipient, content_type, body, status, is_system, \
         created_at, updated_at) VALUES ",
    );
    for i in 0..ops.len() {
        sql.push_str(if i == 0 { "" } else { ", " });
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql.push_str(" RETURNING id");
    let t = now();
    let mut q = sqlx::query_scalar::<_, i64>(&sql);
    for op in ops {
        if let WriteOp::Insert(m, status, _) = op {
            q = q
                .bind(&m.sender)
                .bind(&m.sender_name)
                .bind(&m.recipient)
                .bind(&m.content_type)
                .bind(&m.body)
                .bind(status.as_str())
                .bind(i64::from(m.system))
                .bind(t)
                .bind(t);
        }
    }
    let mut ids = q.fetch_all(&mut *conn).await?;
    if ids.len() != ops.len() {
        return Err(StoreError::Corrupt(format!(
            "{} messages inserted, {} ids returned",
            ops.len(),
            ids.len()
        )));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Sets `status` on the messages `ids`; the ids that exist.
async fn update_statuses(
    conn: &mut AnyConnection,
    ids: &[i64],
    status: MessageStatus,
) -> Result<std::collections::HashSet<i64>> {
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!("UPDATE messages SET status = ?, updated_at = ? WHERE id IN ({marks})");
    let mut q = sqlx::query(&sql).bind(status.as_str()).bind(now());
    for id in ids {
        q = q.bind(*id);
    }
    let unique: std::collections::HashSet<i64> = ids.iter().copied().collect();
    let updated = q.execute(&mut *conn).await?.rows_affected();
    if updated == unique.len() as u64 {
        return Ok(unique);
    }
    // Some id is unknown: find out which (rare, so one query per id).
    let mut found = std::collections::HashSet::new();
    for id in unique {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        if n > 0 {
            found.insert(id);
        }
    }
    Ok(found)
}

async fn run_message_writer(pool: AnyPool, mut queue: mpsc::UnboundedReceiver<WriteOp>) {
    while let Some(batch) = super::next_batch(&mut queue, MESSAGE_BATCH).await {
        // A batch rolled back goes again one write at a time below: one bad
        // write must not fail its neighbours.
        if batch.len() > 1
            && let Ok(written) = write_batch(&pool, &batch).await
        {
            for (op, w) in batch.into_iter().zip(written) {
                reply(op, Ok(w));
            }
            continue;
        }
        for op in batch {
            let outcome = match pool.acquire().await {
                Ok(mut conn) => write_ops(&mut conn, std::slice::from_ref(&op))
                    .await
                    .and_then(|mut w| {
                        w.pop()
                            .ok_or_else(|| StoreError::Corrupt("a write went unanswered".into()))
                    }),
                Err(e) => Err(e.into()),
            };
            reply(op, outcome);
        }
    }
}

/// The id of the row the last INSERT on `conn` created. The MySQL driver
/// reports it with the result; through `Any`, SQLite does not, so ask the
/// same connection.
pub(crate) async fn last_insert_id(
    conn: &mut AnyConnection,
    done: &sqlx::any::AnyQueryResult,
) -> Result<i64> {
    if let Some(id) = done.last_insert_id() {
        return Ok(id);
    }
    let id: i64 = sqlx::query_scalar("SELECT last_insert_rowid()")
        .fetch_one(&mut *conn)
        .await?;
    Ok(id)
}

/// ` RETURNING id` where `conn` can return the id an INSERT made with the
/// INSERT itself (SQLite: one statement instead of two), else nothing (the
/// MySQL driver reports it with the result). Appended to an INSERT's SQL
/// for [`insert_id`].
pub(crate) fn returning_id(conn: &AnyConnection) -> &'static str {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        " RETURNING id"
    } else {
        ""
    }
}

/// Runs `insert` (SQL ending in [`returning_id`]) on `conn`; the new row's id.
pub(crate) async fn insert_id<'q>(
    conn: &mut AnyConnection,
    insert: Query<'q, Any, AnyArguments<'q>>,
) -> Result<i64> {
    if returning_id(conn).is_empty() {
        let done = insert.execute(&mut *conn).await?;
        return last_insert_id(conn, &done).await;
    }
    Ok(insert.fetch_one(&mut *conn).await?.try_get(0)?)
}

impl Store {
    /// Stores a message with its first status; returns its id. The caller
    /// answers the sender only after this returns. Written in one
    /// transaction with whatever other message writes wait at that moment
    /// (group commit): under load the database commits once per batch, not
    /// once per MESSAGE.
    pub async fn insert_message(&self, m: &NewMessage, status: MessageStatus) -> Result<i64> {
        let (done, result) = oneshot::channel();
        self.message_writer(WriteOp::Insert(m.clone(), status, done))?;
        self.sip_timed(result).await.map_err(|_| writer_gone())?
    }

    /// Records a delivery outcome (batched like [`Store::insert_message`]).
    pub async fn set_message_status(&self, id: i64, status: MessageStatus) -> Result<bool> {
        let (done, result) = oneshot::channel();
        self.message_writer(WriteOp::Status(id, status, done))?;
        result.await.map_err(|_| writer_gone())?
    }

    fn message_writer(&self, op: WriteOp) -> Result<()> {
        let writer = self.message_writer.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_message_writer(self.hot.clone(), rx));
            MessageWriter(tx)
        });
        writer.0.send(op).map_err(|_| writer_gone())
    }

    /// Deferred messages for a recipient, oldest first.
    pub async fn deferred_messages(
        &self,
        recipient: &str,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE recipient = ? AND status = 'deferred' ORDER BY id LIMIT ?"
        ))
        .bind(recipient)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// The newest messages, optionally only those to `recipient`.
    pub async fn list_messages(
        &self,
        recipient: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        let rows =
            match recipient {
                Some(r) => sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM messages WHERE recipient = ? ORDER BY id DESC LIMIT ?"
                ))
                .bind(r)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM messages ORDER BY id DESC LIMIT ?"
                    ))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        rows.iter().map(message_from_row).collect()
    }

    /// One message by id.
    pub async fn message(&self, id: i64) -> Result<Option<StoredMessage>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    /// Queues an OFFNET message for the SMS provider, uncharged; returns its
    /// id. (A charged one: [`Store::queue_charged_sms`].)
    pub async fn queue_sms(&self, sms: &OffnetSms<'_>) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        insert_outbox(&mut conn, sms, 0).await
    }

    /// The oldest queued SMS, up to `limit`.
    pub async fn sms_outbox(&self, limit: u32) -> Result<Vec<SmsOutboxEntry>> {
        let rows = sqlx::query(
            "SELECT id, sender, number, gateway, body, status, charge_micro FROM sms_outbox \
             WHERE status = 'queued' \
             ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SmsOutboxEntry {
                    id: row.try_get("id")?,
                    sender: row.try_get("sender")?,
                    number: row.try_get("number")?,
                    gateway: row.try_get("gateway")?,
                    body: row.try_get("body")?,
                    status: row.try_get("status")?,
                    charge_micro: row.try_get("charge_micro")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::{test_store, unique};

    /// A plain-text message from `s{i}` with `body`.
    fn text(i: usize, to: &str, body: String) -> NewMessage {
        NewMessage {
            sender: format!("s{i}"),
            sender_name: None,
            recipient: to.to_owned(),
            content_type: "text/plain".into(),
            body: body.into_bytes(),
            system: false,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_messages_get_their_own_ids_and_statuses() {
        let t = test_store().await;
        let to = unique("burst");
        let writes: Vec<_> = (0..200)
            .map(|i| {
                let store = t.store.clone();
                let m = text(i, &to, format!("body {i}"));
                tokio::spawn(async move {
                    let id = store.insert_message(&m, MessageStatus::Deferred).await?;
                    if i % 2 == 0 {
                        store
                            .set_message_status(id, MessageStatus::Delivered)
                            .await?;
                    }
                    Ok::<_, StoreError>((i, id))
                })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for w in writes {
            let (i, id) = w.await.unwrap().unwrap();
            assert!(ids.insert(id), "id {id} given twice");
            let stored = t.store.message(id).await.unwrap().unwrap();
            assert_eq!(stored.message.body, format!("body {i}").into_bytes());
            let expected = if i % 2 == 0 {
                MessageStatus::Delivered
            } else {
                MessageStatus::Deferred
            };
            assert_eq!(stored.status, expected, "message {i}");
        }
        assert!(
            !t.store
                .set_message_status(i64::MAX, MessageStatus::Failed)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn one_batch_pairs_each_insert_with_its_id_and_each_update_with_its_row() {
        let t = test_store().await;
        let to = unique("batch");
        let insert = |i: usize| {
            let m = text(i, &to, format!("batched {i}"));
            WriteOp::Insert(m, MessageStatus::Deferred, oneshot::channel().0)
        };
        let inserts: Vec<WriteOp> = (0..INSERT_ROWS + 3).map(insert).collect();
        let written = write_batch(t.store.pool(), &inserts).await.unwrap();
        let ids: Vec<i64> = written
            .iter()
            .map(|w| match w {
                Written::Id(id) => *id,
                Written::Updated(_) => panic!("an insert answered as an update"),
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let stored = t.store.message(*id).await.unwrap().unwrap();
            assert_eq!(stored.message.body, format!("batched {i}").into_bytes());
        }
        let status = |id: i64, s: MessageStatus| WriteOp::Status(id, s, oneshot::channel().0);
        let updates = vec![
            status(ids[0], MessageStatus::Delivered),
            status(i64::MAX, MessageStatus::Delivered),
            status(ids[2], MessageStatus::Delivered),
            status(ids[0], MessageStatus::Failed),
        ];
        let written = write_batch(t.store.pool(), &updates).await.unwrap();
        let found: Vec<bool> = written
            .iter()
            .map(|w| matches!(w, Written::Updated(true)))
            .collect();
        assert_eq!(found, [true, false, true, true]);
        let status_of = |id| {
            let store = t.store.clone();
            async move { store.message(id).await.unwrap().unwrap().status }
        };
        // Later writes to the same row win: the batch kept their order.
        assert_eq!(status_of(ids[0]).await, MessageStatus::Failed);
        assert_eq!(status_of(ids[2]).await, MessageStatus::Delivered);
        assert_eq!(status_of(ids[1]).await, MessageStatus::Deferred);
    }

    #[tokio::test]
    async fn messages_are_stored_deferred_oldest_first_and_updated() {
        let t = test_store().await;
        let store = &t.store;
        let to = unique("rcpt");
        let mut ids = Vec::new();
        for i in 0..3 {
            let m = NewMessage {
                sender: "alice".into(),
                sender_name: Some("Alice".into()),
                recipient: to.clone(),
                content_type: "text/plain".into(),
                body: format!("hello {i} \u{1F44B}").into_bytes(),
                system: i == 2,
            };
            ids.push(
                store
                    .insert_message(&m, MessageStatus::Deferred)
                    .await
                    .unwrap(),
            );
        }
        let deferred = store.deferred_messages(&to, 10).await.unwrap();
        assert_eq!(deferred.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
        assert_eq!(deferred[0].message.body, "hello 0 \u{1F44B}".as_bytes());
        assert!(deferred[2].message.system);
        assert!(
            store
                .set_message_status(ids[0], MessageStatus::Delivered)
                .await
                .unwrap()
        );
        let left = store.deferred_messages(&to, 10).await.unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(
            store.message(ids[0]).await.unwrap().unwrap().status,
            MessageStatus::Delivered
        );

        let sms = store
            .queue_sms(&OffnetSms {
                sender: "alice",
                number: "4860012345",
                gateway: "carrier",
                body: b"hi",
            })
            .await
            .unwrap();
        assert!(
            store
                .sms_outbox(1000)
                .await
                .unwrap()
                .iter()
                .any(|e| e.id == sms && e.body == b"hi")
        );
    }
}
