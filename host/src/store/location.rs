//! Registrations (the location service): where each device of an account can
//! be reached. Written before the registrar answers 200, read back at start so
//! a restart loses no registration.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::Result;
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

/// The upsert of [`Store::upsert_sql`] with one binding's values bound.
fn upsert_query<'q>(
    sql: &'q str,
    b: &'q Binding,
    updated_at: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(&b.login)
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
        let sql = self.upsert_sql();
        if let ([b], false, []) = (upserts, remove_all, removals) {
            upsert_query(&sql, b, now()).execute(&self.pool).await?;
            return Ok(());
        }
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
            upsert_query(&sql, b, updated_at).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Inserts or replaces one binding in a single statement (the dialects
    /// spell upserts differently; the columns are the same).
    fn upsert_sql(&self) -> String {
        let on_conflict = match self.backend {
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
        format!(
            "INSERT INTO bindings ({COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {on_conflict}"
        )
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
