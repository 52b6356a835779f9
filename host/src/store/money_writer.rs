//! The writer of call reservations and settlements: one task that applies
//! whatever reservations and settlements are waiting in one transaction
//! (group commit), like the writers of bindings, messages and call records.
//!
//! A prepaid call costs two money transactions (its reservation at set-up,
//! its settlement with the call record at the end). Each on its own
//! connection, they queued for SQLite's single writer lock (busy waits under
//! load: 750 charged calls/s against 2,500 uncharged) and paid a begin and
//! a commit each. Here they share one commit per burst, and a burst's
//! settlements share their statements too. The writer takes a connection
//! of the shared pool, not the SIP path's own ([`Store::hot`]): there it
//! held up the credential reads of new calls (2,500 charged calls/s on
//! the hot connection, 3,000 on its own).
//!
//! **An operation that fails for a reason of its own (too little money, a
//! reservation settled already, a plan's seconds taken) writes nothing**,
//! so it cannot spoil its neighbours in the batch: each checks before it
//! writes, or undoes its one earlier write. A database error fails the
//! batch's transaction as a whole (nothing of it stays); then each
//! operation is tried again alone, in a transaction of its own, so one bad
//! operation fails only itself.

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::billing::{BillingError, LedgerEntry, LedgerKind, check_settling, clip, use_plan};
use super::calls::{Cdr, bind_cdr, insert_cdrs_sql};
use super::error::{Result as StoreResult, StoreError};
use super::{Backend, Store, now};
use crate::billing::plans::{PlanHold, PlanUse};

type Result<T, E = BillingError> = std::result::Result<T, E>;

/// Most operations one transaction carries: bounds how long one batch holds
/// the database's write lock (SQLite) and the statements' sizes.
const MONEY_BATCH: usize = 64;

/// The queue of the money writer task.
#[derive(Debug)]
pub(crate) struct MoneyWriter(mpsc::UnboundedSender<Pending>);

/// A reservation to make (see [`Store::reserve_call`]).
#[derive(Debug, Clone)]
pub(crate) struct NewReservation {
    pub login: String,
    pub amount_micro: i64,
    pub plan: Option<PlanHold>,
    pub reference: Option<String>,
    pub expires_at: i64,
}

/// A reservation to end (see [`Store::settle_reservation`]).
#[derive(Debug, Clone)]
pub(crate) struct Settling {
    pub id: i64,
    pub login: String,
    pub kind: LedgerKind,
    pub cost_micro: i64,
    pub reference: Option<String>,
    pub actor: Option<String>,
    pub reserved_micro: i64,
    pub plan: Option<PlanUse>,
    pub cdr: Option<Cdr>,
}

#[derive(Debug)]
enum Pending {
    Reserve(NewReservation, oneshot::Sender<Result<i64>>),
    Settle(Box<Settling>, oneshot::Sender<Result<Option<LedgerEntry>>>),
}

/// What an operation gave, before it is handed to its caller.
enum Outcome {
    Reserved(i64),
    Settled(Option<LedgerEntry>),
}

impl Pending {
    fn answer(self, outcome: Result<Outcome>) {
        match self {
            Pending::Reserve(_, done) => {
                let _ = done.send(outcome.and_then(|o| match o {
                    Outcome::Reserved(id) => Ok(id),
                    Outcome::Settled(_) => Err(mixed_up()),
                }));
            }
            Pending::Settle(_, done) => {
                let _ = done.send(outcome.and_then(|o| match o {
                    Outcome::Settled(entry) => Ok(entry),
                    Outcome::Reserved(_) => Err(mixed_up()),
                }));
            }
        }
    }
}

fn mixed_up() -> BillingError {
    BillingError::Store(StoreError::Corrupt("money writer outcome mixed up".into()))
}

fn is_database_error(e: &BillingError) -> bool {
    matches!(e, BillingError::Store(_))
}

/// The outcomes of a batch (one operation or many) in one transaction, or
/// the database error that undid it.
async fn apply_together(
    pool: &AnyPool,
    begin: &'static str,
    batch: &[Pending],
) -> Result<Vec<Result<Outcome>>> {
    let mut tx = pool.begin_with(begin).await?;
    let mut outcomes: Vec<Option<Result<Outcome>>> = batch.iter().map(|_| None).collect();
    // Settlements first, together: they only free money, so the
    // reservations after them see at least as much as before.
    let (settling, indices): (Vec<&Settling>, Vec<usize>) = batch
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Pending::Settle(s, _) => Some((&**s, i)),
            Pending::Reserve(..) => None,
        })
        .unzip();
    if !settling.is_empty() {
        for (i, settled) in indices
            .into_iter()
            .zip(settle_together(&mut tx, &settling).await?)
        {
            outcomes[i] = Some(settled.map(Outcome::Settled));
        }
    }
    // Reservations: each account's money held by its own conditional
    // update, then the rows of those that got it written together.
    let mut held = Vec::new();
    for (i, op) in batch.iter().enumerate() {
        let Pending::Reserve(r, _) = op else { continue };
        match hold_in(&mut tx, r).await {
            Ok(()) => held.push((i, r)),
            Err(e) if is_database_error(&e) => return Err(e),
            Err(e) => outcomes[i] = Some(Err(e)),
        }
    }
    if !held.is_empty() {
        let rows: Vec<&NewReservation> = held.iter().map(|(_, r)| *r).collect();
        let ids = insert_reservations(&mut tx, &rows).await?;
        for ((i, _), id) in held.into_iter().zip(ids) {
            outcomes[i] = Some(Ok(Outcome::Reserved(id)));
        }
    }
    tx.commit().await?;
    Ok(outcomes.into_iter().flatten().collect())
}

async fn run_money_writer(
    pool: AnyPool,
    backend: Backend,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    // On SQLite the write lock is taken at the start: a batch reads the
    // reservations before it deletes them, and a deferred transaction that
    // reads first fails (SQLITE_BUSY, no wait) if another connection
    // committed meanwhile.
    let begin = backend.begin_write();
    while let Some(batch) = super::next_batch(&mut queue, MONEY_BATCH).await {
        if batch.len() > 1
            && let Ok(outcomes) = apply_together(&pool, begin, &batch).await
        {
            for (op, outcome) in batch.into_iter().zip(outcomes) {
                op.answer(outcome);
            }
            continue;
        }
        for op in batch {
            let outcome = match apply_together(&pool, begin, std::slice::from_ref(&op)).await {
                Ok(mut outcomes) => outcomes.pop().unwrap_or_else(|| Err(mixed_up())),
                Err(e) => Err(e),
            };
            op.answer(outcome);
        }
    }
}

/// The money (and plan seconds) of reservation `r` held on its account, its
/// row not yet written. Writes nothing when it fails.
async fn hold_in(conn: &mut AnyConnection, r: &NewReservation) -> Result<()> {
    if r.amount_micro < 0 {
        return Err(BillingError::Invalid("a negative reservation".into()));
    }
    if let Some(hold) = r.plan {
        let taken = sqlx::query(
            "UPDATE account_plans SET reserved_secs = reserved_secs + ? \
             WHERE id = ? AND login = ? AND status = 'active' \
             AND seconds_left - reserved_secs >= ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(i64::from(hold.secs))
        .bind(hold.account_plan_id)
        .bind(&r.login)
        .bind(i64::from(hold.secs))
        .bind(now())
        .execute(&mut *conn)
        .await?;
        if taken.rows_affected() == 0 {
            return Err(BillingError::PlanTaken);
        }
    }
    let done = sqlx::query(
        "UPDATE accounts SET reserved_micro = reserved_micro + ? \
         WHERE login = ? AND balance_micro - reserved_micro >= ?",
    )
    .bind(r.amount_micro)
    .bind(&r.login)
    .bind(r.amount_micro)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        // Undo the plan's hold: the batch this runs in goes on.
        if let Some(hold) = r.plan {
            sqlx::query("UPDATE account_plans SET reserved_secs = reserved_secs - ? WHERE id = ?")
                .bind(i64::from(hold.secs))
                .bind(hold.account_plan_id)
                .execute(&mut *conn)
                .await?;
        }
        let available: Option<i64> = sqlx::query_scalar(
            "SELECT balance_micro - reserved_micro FROM accounts WHERE login = ?",
        )
        .bind(&r.login)
        .fetch_optional(&mut *conn)
        .await?;
        return Err(match available {
            Some(available_micro) => BillingError::InsufficientFunds { available_micro },
            None => BillingError::NoAccount(r.login.clone()),
        });
    }
    Ok(())
}

/// A reservation row's columns but its id and creation time: alike rows
/// are interchangeable.
type ReservationKey = (String, i64, Option<String>, i64, Option<i64>, i64);

fn reservation_key(r: &NewReservation) -> ReservationKey {
    (
        r.login.clone(),
        r.amount_micro,
        r.reference.as_deref().map(|s| clip(s, 255)),
        r.expires_at,
        r.plan.map(|h| h.account_plan_id),
        r.plan.map_or(0, |h| i64::from(h.secs)),
    )
}

fn bind_reservation<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    r: &NewReservation,
    created_at: i64,
) -> Query<'q, Any, AnyArguments<'q>> {
    let (login, amount, reference, expires_at, plan_id, plan_secs) = reservation_key(r);
    query
        .bind(login)
        .bind(amount)
        .bind(reference)
        .bind(created_at)
        .bind(expires_at)
        .bind(plan_id)
        .bind(plan_secs)
}

/// Writes the rows of reservations held by [`hold_in`]; their ids, in
/// order. On SQLite one statement returns them all; rows that are alike in
/// every column may get each other's ids, which changes nothing since
/// either settles the same way. On MySQL one statement each (the driver
/// reports each id with its result).
async fn insert_reservations(
    conn: &mut AnyConnection,
    rows: &[&NewReservation],
) -> StoreResult<Vec<i64>> {
    const INSERT: &str = "INSERT INTO balance_reservations (login, amount_micro, reference, \
                          created_at, expires_at, account_plan_id, plan_secs) VALUES ";
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";
    let created_at = now();
    if super::messages::returning_id(conn).is_empty() {
        let sql = format!("{INSERT}{ROW}");
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let done = bind_reservation(sqlx::query(&sql), r, created_at)
                .execute(&mut *conn)
                .await?;
            ids.push(super::messages::last_insert_id(conn, &done).await?);
        }
        return Ok(ids);
    }
    let sql = format!(
        "{INSERT}{} RETURNING id, login, amount_micro, reference, expires_at, \
         account_plan_id, plan_secs",
        vec![ROW; rows.len()].join(", ")
    );
    let mut query = sqlx::query(&sql);
    for r in rows {
        query = bind_reservation(query, r, created_at);
    }
    let mut ids: HashMap<ReservationKey, Vec<i64>> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        let key: ReservationKey = (
            row.try_get("login")?,
            row.try_get("amount_micro")?,
            row.try_get("reference")?,
            row.try_get("expires_at")?,
            row.try_get("account_plan_id")?,
            row.try_get("plan_secs")?,
        );
        ids.entry(key).or_default().push(row.try_get("id")?);
    }
    rows.iter()
        .map(|r| {
            ids.get_mut(&reservation_key(r))
                .and_then(Vec::pop)
                .ok_or_else(|| StoreError::Corrupt("a reservation's id was not returned".into()))
        })
        .collect()
}

impl Store {
    fn money_writer(&self, op: Pending) -> Result<()> {
        let writer = self.money_writer.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_money_writer(self.pool.clone(), self.backend, rx));
            MoneyWriter(tx)
        });
        writer.0.send(op).map_err(|_| writer_gone())
    }

    pub(super) async fn write_reservation(&self, r: NewReservation) -> Result<i64> {
        let (done, result) = oneshot::channel();
        self.money_writer(Pending::Reserve(r, done))?;
        result.await.map_err(|_| writer_gone())?
    }

    pub(super) async fn write_settlement(&self, s: Settling) -> Result<Option<LedgerEntry>> {
        let (done, result) = oneshot::channel();
        self.money_writer(Pending::Settle(Box::new(s), done))?;
        result.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> BillingError {
    BillingError::Store(StoreError::Busy("the money writer stopped".into()))
}

/// `?, ?, …` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Settles `ops` in `conn`'s transaction with a few statements for all of
/// them instead of five each: the reservations read and deleted together,
/// one update of the accounts, one insert of the ledger rows and one of the
/// call records. The outer error is a database error (the caller then
/// undoes everything).
async fn settle_together(
    conn: &mut AnyConnection,
    ops: &[&Settling],
) -> Result<Vec<Result<Option<LedgerEntry>>>> {
    let mut outcomes: Vec<Result<Option<LedgerEntry>>> = ops
        .iter()
        .map(|s| check_settling(s.cost_micro, s.reserved_micro, s.plan).map(|()| None))
        .collect();

    // Which reservations exist as the caller describes them (a reservation
    // ends once, with the plan seconds it holds).
    let ids: Vec<i64> = ops.iter().map(|s| s.id).collect();
    let sql = format!(
        "SELECT id, login, amount_micro, plan_secs FROM balance_reservations WHERE id IN ({})",
        placeholders(ids.len())
    );
    let mut query = sqlx::query_as::<_, (i64, String, i64, i64)>(&sql);
    for id in &ids {
        query = query.bind(id);
    }
    let found: HashMap<i64, (String, i64, i64)> = query
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, login, amount, plan_secs)| (id, (login, amount, plan_secs)))
        .collect();
    let mut ending = HashSet::new();
    for (s, outcome) in ops.iter().zip(&mut outcomes) {
        if outcome.is_err() {
            continue;
        }
        let plan_secs = s.plan.map_or(0, |p| i64::from(p.hold.secs));
        let matches = found.get(&s.id).is_some_and(|(login, amount, secs)| {
            *login == s.login && *amount == s.reserved_micro && *secs == plan_secs
        });
        // A second settlement of one reservation in the batch finds it gone.
        if !matches || !ending.insert(s.id) {
            *outcome = Err(BillingError::UnknownReservation);
        }
    }
    let settled: Vec<usize> = (0..ops.len()).filter(|&i| outcomes[i].is_ok()).collect();
    if settled.is_empty() {
        return Ok(outcomes);
    }
    let sql = format!(
        "DELETE FROM balance_reservations WHERE id IN ({})",
        placeholders(settled.len())
    );
    let mut query = sqlx::query(&sql);
    for &i in &settled {
        query = query.bind(ops[i].id);
    }
    let deleted = query.execute(&mut *conn).await?.rows_affected();
    if deleted != settled.len() as u64 {
        // Another writer (a node releasing expired reservations) got there
        // between the read and the delete: let each try alone.
        return Err(BillingError::Store(StoreError::Busy(
            "reservations changed under a settlement batch".into(),
        )));
    }
    for &i in &settled {
        if let Some(p) = ops[i].plan {
            use_plan(conn, p).await?;
        }
    }

    // One update of every account: its costs and freed reservations summed.
    let mut per_login: Vec<(&str, i64, i64)> = Vec::new();
    for &i in &settled {
        let s = ops[i];
        match per_login.iter_mut().find(|(l, _, _)| *l == s.login) {
            Some((_, cost, reserved)) => {
                *cost += s.cost_micro;
                *reserved += s.reserved_micro;
            }
            None => per_login.push((&s.login, s.cost_micro, s.reserved_micro)),
        }
    }
    let cases = vec!["WHEN ? THEN ?"; per_login.len()].join(" ");
    let sql = format!(
        "UPDATE accounts SET balance_micro = balance_micro - CASE login {cases} ELSE 0 END, \
         reserved_micro = reserved_micro - CASE login {cases} ELSE 0 END WHERE login IN ({})",
        placeholders(per_login.len())
    );
    let mut query = sqlx::query(&sql);
    for (login, cost, _) in &per_login {
        query = query.bind(*login).bind(*cost);
    }
    for (login, _, reserved) in &per_login {
        query = query.bind(*login).bind(*reserved);
    }
    for (login, _, _) in &per_login {
        query = query.bind(*login);
    }
    query.execute(&mut *conn).await?;

    // The ledger rows, each with the balance it left: an account's last
    // charge left its balance now, each earlier one that plus the later
    // charges.
    let charged: Vec<usize> = settled
        .iter()
        .copied()
        .filter(|&i| ops[i].cost_micro > 0)
        .collect();
    if !charged.is_empty() {
        let logins: Vec<&str> = per_login
            .iter()
            .filter(|(_, cost, _)| *cost > 0)
            .map(|(l, _, _)| *l)
            .collect();
        let sql = format!(
            "SELECT login, balance_micro, currency FROM accounts WHERE login IN ({})",
            placeholders(logins.len())
        );
        let mut query = sqlx::query_as::<_, (String, i64, String)>(&sql);
        for login in &logins {
            query = query.bind(*login);
        }
        let mut balance: HashMap<String, (i64, String)> = query
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(login, micro, currency)| (login, (micro, currency)))
            .collect();
        let created_at = now();
        let mut entries = vec![None; ops.len()];
        for &i in charged.iter().rev() {
            let s = ops[i];
            let (after, currency) = balance.get_mut(&s.login).ok_or_else(|| {
                BillingError::Store(StoreError::Corrupt(format!("account {} vanished", s.login)))
            })?;
            entries[i] = Some(LedgerEntry {
                id: 0,
                login: s.login.clone(),
                kind: s.kind.as_str().to_owned(),
                amount_micro: -s.cost_micro,
                balance_after_micro: *after,
                currency: currency.clone(),
                reference: s.reference.as_deref().map(|r| clip(r, 255)),
                actor: s.actor.as_deref().map(|a| clip(a, 64)),
                created_at,
            });
            *after += s.cost_micro;
        }
        insert_ledger_rows(conn, &mut entries).await?;
        for (outcome, entry) in outcomes.iter_mut().zip(entries) {
            if let (Ok(slot), Some(entry)) = (outcome, entry) {
                *slot = Some(entry);
            }
        }
    }

    let cdrs: Vec<&Cdr> = settled
        .iter()
        .filter_map(|&i| ops[i].cdr.as_ref())
        .collect();
    if !cdrs.is_empty() {
        let sql = insert_cdrs_sql(cdrs.len());
        let mut query = sqlx::query(&sql);
        for cdr in cdrs {
            query = bind_cdr(query, cdr);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(outcomes)
}

/// Inserts the ledger rows of `entries` and sets their ids: on SQLite in
/// one statement that returns them, on MySQL one statement each (the driver
/// reports each id with its result; Galera's id steps rule out counting).
async fn insert_ledger_rows(
    conn: &mut AnyConnection,
    entries: &mut [Option<LedgerEntry>],
) -> Result<()> {
    const INSERT: &str = "INSERT INTO ledger (login, kind, amount_micro, balance_after_micro, \
                          currency, reference, actor, created_at) VALUES ";
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";
    if super::messages::returning_id(conn).is_empty() {
        let sql = format!("{INSERT}{ROW}");
        for e in entries.iter_mut().flatten() {
            let done = bind_entry(sqlx::query(&sql), e).execute(&mut *conn).await?;
            e.id = super::messages::last_insert_id(conn, &done).await?;
        }
        return Ok(());
    }
    let rows = entries.iter().flatten().count();
    let sql = format!(
        "{INSERT}{} RETURNING id, login, balance_after_micro",
        vec![ROW; rows].join(", ")
    );
    let mut query = sqlx::query(&sql);
    for e in entries.iter().flatten() {
        query = bind_entry(query, e);
    }
    // An account's rows differ in the balance they left (each charge is
    // positive), so login and balance name one row.
    let mut ids = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        let key: (String, i64) = (row.try_get("login")?, row.try_get("balance_after_micro")?);
        ids.insert(key, row.try_get::<i64, _>("id")?);
    }
    for e in entries.iter_mut().flatten() {
        e.id = *ids
            .get(&(e.login.clone(), e.balance_after_micro))
            .ok_or_else(|| StoreError::Corrupt("a ledger row's id was not returned".into()))?;
    }
    Ok(())
}

fn bind_entry<'q>(
    q: Query<'q, Any, AnyArguments<'q>>,
    e: &LedgerEntry,
) -> Query<'q, Any, AnyArguments<'q>> {
    q.bind(e.login.clone())
        .bind(e.kind.clone())
        .bind(e.amount_micro)
        .bind(e.balance_after_micro)
        .bind(e.currency.clone())
        .bind(e.reference.clone())
        .bind(e.actor.clone())
        .bind(e.created_at)
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;

    use super::*;
    use crate::billing::tariffs::parse_csv;
    use crate::store::billing::Movement;
    use crate::store::calls::Disposition;
    use crate::store::testutil::{checked_balance, money_account, test_store, unique};

    /// A tariff for the accounts (0.10 a minute to 48).
    async fn tariff(store: &Store) -> String {
        let name = unique("mw");
        let rows = parse_csv(
            &name,
            "prefix,currency,price_per_minute,connection_fee,increments\n48,EUR,0.10,0,1/1\n",
        )
        .unwrap();
        store.replace_tariff(&name, &rows).await.unwrap();
        name
    }

    fn record(call_id: &str, caller: &str) -> Cdr {
        Cdr {
            call_id: call_id.to_owned(),
            caller: caller.to_owned(),
            callee: "48600100200".into(),
            gateway: Some("carrier".into()),
            started_at: 1_000,
            answered_at: Some(2_000),
            ended_at: 62_000,
            disposition: Disposition::Answered,
            code: 200,
            end_reason: Some("bye".into()),
            cost_micro: None,
        }
    }

    /// Settlements sent together (on the test's one thread, every send
    /// happens before the writer runs, so they form one batch) end exactly
    /// as one by one would: each reservation once, bad ones refused without
    /// touching the others, each ledger row with the balance it left.
    #[tokio::test]
    async fn settlements_batched_together_end_each_reservation_once_and_keep_the_ledger() {
        let store = test_store().await;
        let name = tariff(&store).await;
        let logins: Vec<String> =
            join_all((0..3).map(|_| money_account(&store, "mw", &name, "EUR", 100_000_000))).await;
        let mut reservations = Vec::new();
        for i in 0..30 {
            let login = &logins[i % 3];
            let id = store
                .reserve(login, 1_000_000, Some("48"), i64::MAX)
                .await
                .unwrap();
            reservations.push((id, login.clone()));
        }
        let run = unique("mwcall");
        // Costs 0, 0.10, 0.20, 0.30, …; every other one with its record;
        // the first five settled twice; one with the wrong amount; one
        // costing more than it reserved.
        let mut wanted = Vec::new();
        for (i, (id, login)) in reservations.iter().enumerate() {
            let cost = (i as i64 % 4) * 100_000;
            let cdr = (i % 2 == 0).then(|| Cdr {
                cost_micro: Some(cost),
                ..record(&format!("{run}-{i}"), login)
            });
            let times = if i < 5 { 2 } else { 1 };
            for _ in 0..times {
                wanted.push((*id, login.clone(), cost, 1_000_000, cdr.clone()));
            }
        }
        let (wrong_amount, wrong_login) = reservations[29].clone();
        wanted.push((wrong_amount, wrong_login.clone(), 0, 999_999, None));
        let (too_dear, dear_login) = reservations[28].clone();
        wanted.retain(|w| w.0 != too_dear);
        wanted.push((too_dear, dear_login.clone(), 1_000_001, 1_000_000, None));
        let results = join_all(wanted.iter().map(|(id, login, cost, reserved, cdr)| async {
            let m = Movement {
                login,
                kind: LedgerKind::Call,
                amount_micro: *cost,
                reference: Some("batch"),
                actor: Some("system"),
            };
            store
                .settle_reservation(*id, &m, *reserved, None, cdr.as_ref())
                .await
        }))
        .await;

        let mut settled = HashSet::new();
        let mut entries = Vec::new();
        for (w, result) in wanted.iter().zip(results) {
            match result {
                Ok(entry) => {
                    assert!(settled.insert(w.0), "reservation {} settled twice", w.0);
                    assert_eq!(entry.is_some(), w.2 > 0, "a ledger row for a cost > 0 only");
                    entries.extend(entry);
                }
                Err(BillingError::UnknownReservation) => {
                    assert!(w.3 == 999_999 || settled.contains(&w.0), "{} refused", w.0);
                }
                Err(BillingError::Invalid(_)) => assert_eq!(w.0, too_dear),
                Err(e) => panic!("reservation {}: {e}", w.0),
            }
        }
        assert_eq!(settled.len(), 29, "all but the too dear one");

        // The ledger: the rows returned are the rows stored, each leaving
        // the balance before it less its cost.
        for login in &logins {
            let balance = checked_balance(&store, login).await;
            let ledger = store.ledger(login, None, 1_000).await.unwrap();
            let mine: Vec<&LedgerEntry> = entries.iter().filter(|e| &e.login == login).collect();
            for e in &mine {
                assert!(ledger.contains(e), "{e:?} is in the ledger");
            }
            let mut chronological = ledger.clone();
            chronological.sort_by_key(|e| e.id);
            for pair in chronological.windows(2) {
                assert_eq!(
                    pair[1].balance_after_micro,
                    pair[0].balance_after_micro + pair[1].amount_micro
                );
            }
            let charged: i64 = mine.iter().map(|e| -e.amount_micro).sum();
            assert_eq!(balance, 100_000_000 - charged);
            let held = store
                .account_money(login)
                .await
                .unwrap()
                .unwrap()
                .reserved_micro;
            let open = reservations
                .iter()
                .filter(|(id, l)| l == login && !settled.contains(id))
                .count() as i64;
            assert_eq!(
                held,
                open * 1_000_000,
                "{login}: only the unsettled stay held"
            );
        }
        let records = store.list_cdrs(None, 10_000).await.unwrap();
        let written = records
            .iter()
            .filter(|r| r.cdr.call_id.starts_with(&run))
            .count();
        assert_eq!(written, 14, "one record per settled call that carried one");
    }

    /// Reservations sent together: each account gives what it has and no
    /// more, alike reservations get distinct ids, and each id settles.
    #[tokio::test]
    async fn reservations_batched_together_never_overspend_and_get_their_own_ids() {
        let store = test_store().await;
        let name = tariff(&store).await;
        let rich = money_account(&store, "mwr", &name, "EUR", 100_000_000).await;
        let poor = money_account(&store, "mwr", &name, "EUR", 5_000_000).await;
        let asks: Vec<&String> = (0..24)
            .map(|i| if i % 2 == 0 { &rich } else { &poor })
            .collect();
        let results = join_all(
            asks.iter()
                .map(|login| store.reserve(login, 1_000_000, Some("48"), i64::MAX)),
        )
        .await;
        let mut ids = HashSet::new();
        let mut granted = HashMap::<&str, i64>::new();
        for (login, result) in asks.iter().zip(results) {
            match result {
                Ok(id) => {
                    assert!(ids.insert(id), "id {id} given twice");
                    *granted.entry(login.as_str()).or_default() += 1;
                }
                Err(BillingError::InsufficientFunds { available_micro }) => {
                    assert_eq!((login.as_str(), available_micro), (poor.as_str(), 0));
                }
                Err(e) => panic!("{login}: {e}"),
            }
        }
        assert_eq!(granted[rich.as_str()], 12);
        assert_eq!(
            granted[poor.as_str()],
            5,
            "5.00 holds five 1.00 reservations"
        );
        for login in [&rich, &poor] {
            let money = store.account_money(login).await.unwrap().unwrap();
            assert_eq!(money.reserved_micro, granted[login.as_str()] * 1_000_000);
        }
        // Every id is a reservation of its account, settled once.
        let mut settled = 0;
        for id in ids {
            for login in [&rich, &poor] {
                let m = Movement {
                    login,
                    kind: LedgerKind::Call,
                    amount_micro: 100_000,
                    reference: Some("r"),
                    actor: None,
                };
                if store
                    .settle_reservation(id, &m, 1_000_000, None, None)
                    .await
                    .is_ok()
                {
                    settled += 1;
                }
            }
        }
        assert_eq!(settled, 17);
        assert_eq!(checked_balance(&store, &poor).await, 4_500_000);
        assert_eq!(checked_balance(&store, &rich).await, 98_800_000);
    }
}
