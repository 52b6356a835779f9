//! Registrations (the location service): where each device of an account can
//! be reached. Written before the registrar answers 200, read back at start so
//! a restart loses no registration.

use std::collections::HashMap;

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::{mpsc, oneshot};

use super::error::{Result, StoreError};
use super::{Backend, Store, now};

/// One device binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub login: String,
    /// `<+sip.instance>;reg-id` when the device sent them (RFC 5626), else the
    /// Contact URI: what identifies "the same binding" across REGISTERs.
    pub binding_key: String,
    /// The Contact URI as the device sent it.
    pub contact: String,
    pub instance: Option<String>,
    pub reg_id: Option<i64>,
    pub call_id: String,
    pub cseq: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub transport: String,
    /// `ip:port` the REGISTER came from (the device's NAT mapping).
    pub source: String,
    /// `ip:port` of the listener it arrived on.
    pub local: String,
    /// SIP address of the switch node holding the flow.
    pub node: String,
    pub user_agent: Option<String>,
}

const COLUMNS: &str = "login, binding_key, contact, instance, reg_id, call_id, cseq, expires_at, \
                       transport, source, local, node, user_agent";

fn binding_from_row(row: &AnyRow) -> Result<Binding> {
    Ok(Binding {
        login: row.try_get("login")?,
        binding_key: row.try_get("binding_key")?,
        contact: row.try_get("contact")?,
        instance: row.try_get("instance")?,
        reg_id: row.try_get("reg_id")?,
        call_id: row.try_get("call_id")?,
        cseq: row.try_get("cseq")?,
        expires_at: row.try_get("expires_at")?,
        transport: row.try_get("transport")?,
        source: row.try_get("source")?,
        local: row.try_get("local")?,
        node: row.try_get("node")?,
        user_agent: row.try_get("user_agent")?,
    })
}

/// Binds one binding's values, in [`COLUMNS`] order plus `updated_at`.
fn bind_binding<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    b: &'q Binding,
    updated_at: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(&b.login)
        .bind(&b.binding_key)
        .bind(&b.contact)
        .bind(&b.instance)
        .bind(b.reg_id)
        .bind(&b.call_id)
        .bind(b.cseq)
        .bind(b.expires_at)
        .bind(&b.transport)
        .bind(&b.source)
        .bind(&b.local)
        .bind(&b.node)
        .bind(&b.user_agent)
        .bind(updated_at)
}

/// Inserts or replaces `rows` bindings in a single statement (the dialects
/// spell upserts differently; the columns are the same).
fn upsert_sql(backend: Backend, rows: usize) -> String {
    let on_conflict = match backend {
        Backend::Sqlite => {
            "ON CONFLICT (login, binding_key) DO UPDATE SET contact = excluded.contact, \
             instance = excluded.instance, reg_id = excluded.reg_id, call_id = excluded.call_id, \
             cseq = excluded.cseq, expires_at = excluded.expires_at, transport = excluded.transport, \
             source = excluded.source, local = excluded.local, node = excluded.node, \
             user_agent = excluded.user_agent, updated_at = excluded.updated_at"
        }
        Backend::MySql => {
            "ON DUPLICATE KEY UPDATE contact = VALUES(contact), instance = VALUES(instance), \
             reg_id = VALUES(reg_id), call_id = VALUES(call_id), cseq = VALUES(cseq), \
             expires_at = VALUES(expires_at), transport = VALUES(transport), source = VALUES(source), \
             local = VALUES(local), node = VALUES(node), user_agent = VALUES(user_agent), \
             updated_at = VALUES(updated_at)"
        }
    };
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let values = vec![row; rows.max(1)].join(", ");
    format!("INSERT INTO bindings ({COLUMNS}, updated_at) VALUES {values} {on_conflict}")
}

/// A binding to write and who waits for the outcome.
type PendingBinding = (Binding, oneshot::Sender<Result<()>>);

/// The queue of the task that writes single-binding registrations.
#[derive(Debug)]
pub(crate) struct BindingWriter(mpsc::UnboundedSender<PendingBinding>);

/// Most rows one statement carries (14 parameters each, far below SQLite's
/// and MySQL's limits).
const BINDING_BATCH: usize = 256;

async fn run_binding_writer(
    pool: AnyPool,
    backend: Backend,
    mut queue: mpsc::UnboundedReceiver<PendingBinding>,
) {
    while let Some(mut batch) = super::next_batch(&mut queue, BINDING_BATCH).await {
        let updated_at = now();
        let outcome = {
            // One row per binding: a later REGISTER of the same binding in
            // the batch wins (the statement may not touch a row twice).
            let mut latest: HashMap<(&str, &str), &Binding> = HashMap::new();
            for (b, _) in &batch {
                latest.insert((&b.login, &b.binding_key), b);
            }
            let rows: Vec<&Binding> = latest.into_values().collect();
            let sql = upsert_sql(backend, rows.len());
            let mut q = sqlx::query(&sql);
            for b in &rows {
                q = bind_binding(q, b, updated_at);
            }
            q.execute(&pool).await.map(|_| ())
        };
        match outcome {
            Ok(()) => {
                for (_, done) in batch {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, done)) = batch.pop() {
                    let _ = done.send(Err(e.into()));
                }
            }
            // One bad row must not fail its neighbours: retry them one by one.
            Err(_) => {
                let one = upsert_sql(backend, 1);
                for (b, done) in batch {
                    let result = bind_binding(sqlx::query(&one), &b, updated_at)
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

impl Store {
    /// Applies one REGISTER atomically: `remove_all` (Contact: *) first, then
    /// the removals (expires=0), then the upserts.
    pub async fn apply_registration(
        &self,
        login: &str,
        remove_all: bool,
        removals: &[String],
        upserts: &[Binding],
    ) -> Result<()> {
        // The common REGISTER (one device refreshing its binding) is one
        // upsert statement: one round trip to the database instead of four
        // (BEGIN, UPDATE, INSERT, COMMIT), which is what bounds the rate.
        if let ([b], false, []) = (upserts, remove_all, removals) {
            return self.write_binding(b.clone()).await;
        }
        let sql = upsert_sql(self.backend, 1);
        let mut tx = self.pool.begin().await?;
        if remove_all {
            sqlx::query("DELETE FROM bindings WHERE login = ?")
                .bind(login)
                .execute(&mut *tx)
                .await?;
        }
        for key in removals {
            sqlx::query("DELETE FROM bindings WHERE login = ? AND binding_key = ?")
                .bind(login)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        let updated_at = now();
        for b in upserts {
            bind_binding(sqlx::query(&sql), b, updated_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One binding written with whatever other single-binding REGISTERs are
    /// waiting at the same moment, in one statement: under load the database
    /// sees one round trip per batch instead of one per REGISTER. Returns
    /// once the row is stored.
    async fn write_binding(&self, binding: Binding) -> Result<()> {
        let writer = self.binding_writer.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_binding_writer(self.hot.clone(), self.backend, rx));
            BindingWriter(tx)
        });
        let (done, result) = oneshot::channel();
        let gone = || StoreError::Busy("the binding writer stopped".into());
        writer.0.send((binding, done)).map_err(|_| gone())?;
        self.sip_timed(result).await.map_err(|_| gone())?
    }

    /// Every binding that has not expired at `now` (unix seconds), for the
    /// registrar's cache at start.
    pub async fn live_bindings(&self, now: i64) -> Result<Vec<Binding>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM bindings WHERE expires_at > ? ORDER BY id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(binding_from_row).collect()
    }

    /// Bindings of one login that have not expired at `now`.
    pub async fn bindings_of(&self, login: &str, now: i64) -> Result<Vec<Binding>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM bindings WHERE login = ? AND expires_at > ? ORDER BY id"
        ))
        .bind(login)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(binding_from_row).collect()
    }

    /// Deletes bindings expired at `now`; returns how many.
    pub async fn purge_expired_bindings(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM bindings WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::accounts::NewAccount;
    use crate::store::testutil::{test_store, unique};

    fn binding(login: &str, key: &str, expires_at: i64) -> Binding {
        Binding {
            login: login.into(),
            binding_key: key.into(),
            contact: format!("sip:{login}@192.0.2.1:5060"),
            instance: None,
            reg_id: None,
            call_id: "c1".into(),
            cseq: 1,
            expires_at,
            transport: "udp".into(),
            source: "192.0.2.1:5060".into(),
            local: "127.0.0.1:5060".into(),
            node: "sip:127.0.0.1:5060".into(),
            user_agent: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_registrations_are_written_together_and_all_land() {
        let t = test_store().await;
        let store = t.store.clone();
        let login = unique("batch");
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let now = now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..60 {
            let (store, login) = (store.clone(), login.clone());
            // Keys repeat: several REGISTERs of one binding may share a batch.
            // Far in the future: on a shared MySQL database another test
            // purges whatever expires within minutes.
            let b = binding(&login, &format!("k{}", i % 40), now + 100_000 + i);
            tasks.spawn(async move { store.apply_registration(&login, false, &[], &[b]).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let stored = store.bindings_of(&login, now).await.unwrap();
        assert_eq!(stored.len(), 40);
        // A row that cannot be written fails alone: this account does not exist.
        let orphan = binding(&unique("ghost"), "x", now + 100);
        let good = binding(&login, "k0", now + 500);
        let (bad, ok) = tokio::join!(
            store.apply_registration(&orphan.login, false, &[], std::slice::from_ref(&orphan)),
            store.apply_registration(&login, false, &[], std::slice::from_ref(&good)),
        );
        assert!(bad.is_err());
        ok.unwrap();
        store.delete_account(&login).await.unwrap();
    }

    #[tokio::test]
    async fn registrations_upsert_remove_and_expire() {
        let t = test_store().await;
        let store = &t.store;
        let login = unique("loc");
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let now = now();
        let a = binding(&login, "a", now + 100);
        let b = binding(&login, "b", now + 100);
        store
            .apply_registration(&login, false, &[], &[a.clone(), b])
            .await
            .unwrap();
        let mut refreshed = a.clone();
        refreshed.cseq = 2;
        refreshed.expires_at = now + 200;
        store
            .apply_registration(&login, false, &[], &[refreshed.clone()])
            .await
            .unwrap();
        let live = store.bindings_of(&login, now).await.unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(live[0], refreshed);

        store
            .apply_registration(&login, false, &["b".into()], &[])
            .await
            .unwrap();
        assert_eq!(store.bindings_of(&login, now).await.unwrap().len(), 1);
        // Expired bindings are not live and are purged.
        assert!(
            store
                .bindings_of(&login, now + 300)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.purge_expired_bindings(now + 300).await.unwrap() >= 1);
        store
            .apply_registration(&login, false, &[], &[binding(&login, "c", now + 50)])
            .await
            .unwrap();
        store
            .apply_registration(&login, true, &[], &[])
            .await
            .unwrap();
        assert!(store.bindings_of(&login, now).await.unwrap().is_empty());
        assert!(store.delete_account(&login).await.unwrap());
    }
}
