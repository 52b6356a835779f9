//! Call state that outlives a call: the DID table (numbers carriers deliver
//! to the switch) and call records.

use std::fmt;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::error::{Result, StoreError, unique_violation};
use super::{Store, now, validate};

type PendingCdr = (Cdr, oneshot::Sender<Result<()>>);

/// The queue of the task that writes call records in batches.
#[derive(Debug)]
pub(crate) struct CdrWriter(mpsc::UnboundedSender<PendingCdr>);

/// Most rows one statement carries (11 parameters each).
const CDR_BATCH: usize = 256;

pub(super) fn insert_cdrs_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO cdrs (call_id, caller, callee, gateway, started_at, answered_at, ended_at, \
         duration, disposition, code, end_reason, cost_micro) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql
}

pub(super) fn bind_cdr<'q>(
    q: Query<'q, Any, AnyArguments<'q>>,
    cdr: &Cdr,
) -> Query<'q, Any, AnyArguments<'q>> {
    let short = |s: &str| s.chars().take(validate::NAME_MAX).collect::<String>();
    q.bind(cdr.call_id.chars().take(CALL_ID_MAX).collect::<String>())
        .bind(short(&cdr.caller))
        .bind(short(&cdr.callee))
        .bind(cdr.gateway.as_deref().map(short))
        .bind(cdr.started_at)
        .bind(cdr.answered_at)
        .bind(cdr.ended_at)
        .bind(cdr.duration_secs())
        .bind(cdr.disposition.as_str())
        .bind(i64::from(cdr.code))
        .bind(cdr.end_reason.clone())
        .bind(cdr.cost_micro)
}

async fn run_cdr_writer(pool: AnyPool, mut queue: mpsc::UnboundedReceiver<PendingCdr>) {
    while let Some(batch) = super::next_batch(&mut queue, CDR_BATCH).await {
        let sql = insert_cdrs_sql(batch.len());
        let mut q = sqlx::query(&sql);
        for (cdr, _) in &batch {
            q = bind_cdr(q, cdr);
        }
        match q.execute(&pool).await {
            Ok(_) => {
                for (_, done) in batch {
                    let _ = done.send(Ok(()));
                }
            }
            // One bad row must not fail its neighbours: retry them one by one.
            Err(_) => {
                let one = insert_cdrs_sql(1);
                for (cdr, done) in batch {
                    let result = bind_cdr(sqlx::query(&one), &cdr)
                        .execute(&pool)
                        .await
                        .map(|_| ())
                        .map_err(StoreError::from);
                    let _ = done.send(result);
                }
            }
        }
    }
}

/// How a call ended, as billing and support read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Answered,
    Busy,
    NoAnswer,
    Cancelled,
    Failed,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "answered" => Self::Answered,
            "busy" => Self::Busy,
            "no-answer" => Self::NoAnswer,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            other => return Err(StoreError::Corrupt(format!("call disposition {other:?}"))),
        })
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call record. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub gateway: Option<String>,
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: i64,
    pub disposition: Disposition,
    /// The final status the caller got (200 for an answered call).
    pub code: u16,
    pub end_reason: Option<String>,
    /// What the call cost the caller (micro units of its currency), when
    /// it was charged (prepaid OFFNET calls); written with the debit.
    pub cost_micro: Option<i64>,
}

impl Cdr {
    /// Whole seconds from answer to end, rounded to the nearest second.
    pub fn duration_secs(&self) -> i64 {
        self.answered_at
            .map_or(0, |a| ((self.ended_at - a).max(0) + 500) / 1000)
    }
}

/// A stored call record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCdr {
    pub id: i64,
    pub cdr: Cdr,
}

pub(super) fn cdr_from_row(row: &AnyRow) -> Result<StoredCdr> {
    let disposition: String = row.try_get("disposition")?;
    let code: i64 = row.try_get("code")?;
    Ok(StoredCdr {
        id: row.try_get("id")?,
        cdr: Cdr {
            call_id: row.try_get("call_id")?,
            caller: row.try_get("caller")?,
            callee: row.try_get("callee")?,
            gateway: row.try_get("gateway")?,
            started_at: row.try_get("started_at")?,
            answered_at: row.try_get("answered_at")?,
            ended_at: row.try_get("ended_at")?,
            disposition: Disposition::parse(&disposition)?,
            code: u16::try_from(code)
                .map_err(|_| StoreError::Corrupt(format!("call status {code}")))?,
            end_reason: row.try_get("end_reason")?,
            cost_micro: row.try_get("cost_micro")?,
        },
    })
}

/// A number routed to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Did {
    pub number: String,
    pub login: String,
}

/// Longest Call-ID kept (the column's size).
const CALL_ID_MAX: usize = 255;

impl Store {
    /// Writes a call record.
    /// Stores a call record, in one statement with whatever other records
    /// are waiting at that moment: a busy switch ends hundreds of calls a
    /// second, and one commit per call would have them queue for SQLite's
    /// single writer. Returns once the row is stored.
    pub async fn insert_cdr(&self, cdr: &Cdr) -> Result<()> {
        let writer = self.cdr_writer.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_cdr_writer(self.hot.clone(), rx));
            CdrWriter(tx)
        });
        let (done, result) = oneshot::channel();
        let gone = || StoreError::Busy("the call record writer stopped".into());
        writer.0.send((cdr.clone(), done)).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    /// The newest call records, optionally only those `login` made or received.
    pub async fn list_cdrs(&self, login: Option<&str>, limit: u32) -> Result<Vec<StoredCdr>> {
        const COLUMNS: &str = "id, call_id, caller, callee, gateway, started_at, answered_at, \
                               ended_at, disposition, code, end_reason, cost_micro";
        let rows = match login {
            Some(l) => sqlx::query(&format!(
                "SELECT {COLUMNS} FROM cdrs WHERE caller = ? OR callee = ? ORDER BY id DESC LIMIT ?"
            ))
            .bind(l)
            .bind(l)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM cdrs ORDER BY id DESC LIMIT ?"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(cdr_from_row).collect()
    }

    /// Routes a number (E.164 without `+`) to an account. A number already
    /// routed gives `Conflict("did")`; an unknown login `NotFound`.
    pub async fn add_did(&self, number: &str, login: &str) -> Result<()> {
        validate::phone(number)?;
        if self.account_by_login(login).await?.is_none() {
            return Err(StoreError::NotFound(format!("account {login}")));
        }
        let result = sqlx::query("INSERT INTO dids (number, login, created_at) VALUES (?, ?, ?)")
            .bind(number)
            .bind(login)
            .bind(now())
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if unique_violation(&e).is_some() => Err(StoreError::Conflict("did".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// The account a number rings, if any.
    pub async fn did_owner(&self, number: &str) -> Result<Option<String>> {
        let login = sqlx::query_scalar("SELECT login FROM dids WHERE number = ?")
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        Ok(login)
    }

    /// Every DID, by number.
    pub async fn list_dids(&self) -> Result<Vec<Did>> {
        let rows = sqlx::query("SELECT number, login FROM dids ORDER BY number")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Did {
                    number: r.try_get("number")?,
                    login: r.try_get("login")?,
                })
            })
            .collect()
    }

    /// Removes a DID. False if there was none.
    pub async fn delete_did(&self, number: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM dids WHERE number = ?")
            .bind(number)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewAccount;
    use crate::store::testutil::{test_store, unique, unique_digits};

    fn account(login: &str) -> NewAccount {
        NewAccount {
            login: login.into(),
            sip_password: "pw".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn dids_route_numbers_to_accounts() {
        let store = test_store().await;
        let login = unique("did");
        store.add_account(&account(&login)).await.unwrap();
        let number = unique_digits(12);
        store.add_did(&number, &login).await.unwrap();
        assert_eq!(store.did_owner(&number).await.unwrap(), Some(login.clone()));
        assert!(matches!(
            store.add_did(&number, &login).await,
            Err(StoreError::Conflict(w)) if w == "did"
        ));
        assert!(matches!(
            store.add_did("12ab", &login).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.add_did(&unique_digits(11), &unique("nobody")).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(
            store
                .list_dids()
                .await
                .unwrap()
                .iter()
                .any(|d| d.number == number && d.login == login)
        );
        assert!(store.delete_did(&number).await.unwrap());
        assert_eq!(store.did_owner(&number).await.unwrap(), None);
        store.delete_account(&login).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn call_records_ended_together_are_all_stored() {
        let store = test_store().await;
        let caller = unique("burst");
        let writes: Vec<_> = (0..300)
            .map(|i| {
                let store = store.clone();
                let cdr = Cdr {
                    call_id: format!("{caller}-{i}@host"),
                    caller: caller.clone(),
                    callee: "bob".into(),
                    gateway: None,
                    started_at: 1_000_000 + i,
                    answered_at: None,
                    ended_at: 1_000_500 + i,
                    disposition: Disposition::Busy,
                    code: 486,
                    end_reason: None,
                    cost_micro: None,
                };
                tokio::spawn(async move { store.insert_cdr(&cdr).await })
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        let stored = store.list_cdrs(Some(&caller), 1000).await.unwrap();
        assert_eq!(stored.len(), 300);
        for i in 0..300 {
            assert!(
                stored
                    .iter()
                    .any(|c| c.cdr.call_id == format!("{caller}-{i}@host"))
            );
        }
    }

    #[tokio::test]
    async fn call_records_round_trip() {
        let store = test_store().await;
        let caller = unique("cdr");
        let cdr = Cdr {
            call_id: format!("{caller}@host"),
            caller: caller.clone(),
            callee: "48600111222".into(),
            gateway: Some("carrier".into()),
            started_at: 1_000_000,
            answered_at: Some(1_002_000),
            ended_at: 1_063_600,
            disposition: Disposition::Answered,
            code: 200,
            end_reason: Some("caller".into()),
            cost_micro: Some(12_345),
        };
        assert_eq!(cdr.duration_secs(), 62);
        store.insert_cdr(&cdr).await.unwrap();
        let busy = Cdr {
            answered_at: None,
            disposition: Disposition::Busy,
            code: 486,
            end_reason: None,
            ..cdr.clone()
        };
        assert_eq!(busy.duration_secs(), 0);
        store.insert_cdr(&busy).await.unwrap();
        let listed = store.list_cdrs(Some(&caller), 10).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].cdr, busy);
        assert_eq!(listed[1].cdr, cdr);
    }
}
