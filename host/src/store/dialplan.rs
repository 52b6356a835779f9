//! The local dialing plan (SPEC §6): prefix → SIP server. Clients pick their
//! home server by longest prefix of their login and route each call or
//! message by longest prefix of the target; it is also how users are split
//! across switch nodes.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{Result, StoreError, unique_violation};
use super::{Store, prefix_placeholders, prefixes_of, validate};

/// One dialing-plan entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DialplanEntry {
    /// ASCII letters and digits, at most 32, unique; empty is the default.
    pub prefix: String,
    /// FQDN of the SIP server, optionally with `:port`.
    pub server: String,
}

fn entry_from_row(row: &AnyRow) -> Result<DialplanEntry> {
    Ok(DialplanEntry {
        prefix: row.try_get("prefix")?,
        server: row.try_get("server")?,
    })
}

impl Store {
    /// Adds an entry; a taken prefix gives `Conflict("dialplan prefix")`.
    pub async fn add_dialplan(&self, entry: &DialplanEntry) -> Result<()> {
        validate::prefix(&entry.prefix)?;
        validate::server("dialplan server", &entry.server)?;
        let result = sqlx::query("INSERT INTO dialplan (prefix, server) VALUES (?, ?)")
            .bind(&entry.prefix)
            .bind(&entry.server)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if unique_violation(&e).is_some() => {
                Err(StoreError::Conflict("dialplan prefix".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The whole plan, by prefix (this is what clients download).
    pub async fn list_dialplan(&self) -> Result<Vec<DialplanEntry>> {
        let rows = sqlx::query("SELECT prefix, server FROM dialplan ORDER BY prefix")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Removes the entry for `prefix`. False if there was none.
    pub async fn delete_dialplan(&self, prefix: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM dialplan WHERE prefix = ?")
            .bind(prefix)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The entry with the longest prefix of `number`, or `None`.
    pub async fn server_for(&self, number: &str) -> Result<Option<DialplanEntry>> {
        let sql = format!(
            "SELECT prefix, server FROM dialplan WHERE prefix IN ({})",
            prefix_placeholders()
        );
        let mut query = sqlx::query(&sql);
        for p in prefixes_of(number) {
            query = query.bind(p);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut best: Option<DialplanEntry> = None;
        for row in &rows {
            let entry = entry_from_row(row)?;
            if best
                .as_ref()
                .is_none_or(|b| entry.prefix.len() > b.prefix.len())
            {
                best = Some(entry);
            }
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique_digits};
    use super::*;

    fn entry(prefix: &str, server: &str) -> DialplanEntry {
        DialplanEntry {
            prefix: prefix.into(),
            server: server.into(),
        }
    }

    #[tokio::test]
    async fn longest_prefix() {
        let store = test_store().await;
        let base = unique_digits(12);
        let (p4, p7) = (&base[..4], &base[..7]);
        // Letters are allowed too, e.g. per-service prefixes.
        let letters = format!("svc{}", &base[..6]);
        store
            .add_dialplan(&entry(p4, "a.example.net"))
            .await
            .unwrap();
        store
            .add_dialplan(&entry(p7, "b.example.net:5061"))
            .await
            .unwrap();
        store
            .add_dialplan(&entry(&letters, "c.example.net"))
            .await
            .unwrap();

        let long = store.server_for(&base).await;
        // Leaves `base` right after p4, so p7 cannot match.
        let next = if base.as_bytes()[4] == b'1' { '2' } else { '1' };
        let short = store.server_for(&format!("{p4}{next}00")).await;
        let by_letters = store.server_for(&format!("{letters}1")).await;
        let listed = store.list_dialplan().await;
        let dup = store.add_dialplan(&entry(p4, "d.example.net")).await;
        let bad = store.add_dialplan(&entry("12", "not a host")).await;
        for p in [p4, p7, letters.as_str()] {
            store.delete_dialplan(p).await.unwrap();
        }
        let gone = store.server_for(&base).await;
        let deleted_again = store.delete_dialplan(p4).await.unwrap();

        assert_eq!(long.unwrap().unwrap().server, "b.example.net:5061");
        assert_eq!(short.unwrap().unwrap().server, "a.example.net");
        assert_eq!(by_letters.unwrap().unwrap().server, "c.example.net");
        let listed = listed.unwrap();
        assert!(listed.contains(&entry(p4, "a.example.net")));
        assert!(listed.contains(&entry(p7, "b.example.net:5061")));
        assert!(matches!(dup, Err(StoreError::Conflict(ref w)) if w == "dialplan prefix"));
        assert!(matches!(bad, Err(StoreError::Invalid(_))));
        // Only a default entry (empty prefix) from elsewhere could match now.
        assert!(gone.unwrap().is_none_or(|e| e.prefix.is_empty()));
        assert!(!deleted_again);
    }
}
