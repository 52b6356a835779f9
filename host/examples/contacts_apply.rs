//! For `bench/contacts.sh`: applying one address-book upload straight
//! through the store, without HTTP; and a copy of it timed per phase, with
//! the writes one row per statement (as the store did) or batched (as it
//! does now), to see what batching buys.
//!
//! ```text
//! contacts_apply URL DATA_DIR OWNER NUMBERS_FILE MODE
//! ```
//!
//! Opens an upload for `OWNER` (replace), adds the numbers of
//! `NUMBERS_FILE` (one normalised number a line, entry ids c00000...) in
//! chunks of 1,000 with the store's own functions, closes it, and applies it
//! with:
//! * `store`: `Store::apply_contact_upload` itself;
//! * `rows=R,discover=in|join`: a copy of it (same statements, same
//!   transaction, same results) whose INSERTs into `contacts` and
//!   `contact_changes` carry R rows each (R = 1: the store before its
//!   writes were batched; R = 500: the store's shape now), and
//!   whose discovery is either the store's IN lists of 500 numbers (`in`) or
//!   one join of the staged rows against `profiles.phone` and
//!   `accounts.login` (`join`). Timed per phase.
//!
//! Prints one JSON line: total and per-phase milliseconds, users found.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use softswitch::secrets::Secrets;
use softswitch::store::Store;
use softswitch::store::contact_uploads::{Discovered, UploadedNumber};
use sqlx::Row;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, data_dir, owner, numbers, mode] = args.as_slice() else {
        bail!("usage: contacts_apply URL DATA_DIR OWNER NUMBERS_FILE MODE");
    };
    let secrets = Secrets::load_or_create(&std::path::Path::new(data_dir).join("secret.key"))?;
    let store = Store::open(url, Arc::new(secrets)).await?;
    let numbers: Vec<UploadedNumber> = std::fs::read_to_string(numbers)?
        .lines()
        .enumerate()
        .map(|(j, n)| UploadedNumber {
            contact_id: format!("c{j:05}"),
            name: Some(format!("Contact {j:05}")),
            number: n.to_string(),
        })
        .collect();
    let token = format!("proto-{}-{}", owner, std::process::id());
    store.open_contact_upload(owner, &token, true).await?;
    let started = Instant::now();
    for chunk in numbers.chunks(1000) {
        store.add_upload_chunk(owner, &token, chunk).await?;
    }
    let upload_ms = ms(started);
    store.close_contact_upload(owner, &token).await?;

    let started = Instant::now();
    let mut phases = BTreeMap::new();
    let found = if mode == "store" {
        store
            .apply_contact_upload(&token)
            .await?
            .context("upload not pending")?
    } else {
        let mut rows = 1;
        let mut join = false;
        for kv in mode.split(',') {
            match kv.split_once('=') {
                Some(("rows", r)) => rows = r.parse()?,
                Some(("discover", "in")) => join = false,
                Some(("discover", "join")) => join = true,
                _ => bail!("mode: store, or rows=R,discover=in|join"),
            }
        }
        apply(&store, &token, rows, join, &mut phases).await?
    };
    let total_ms = ms(started);
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "upload_ms": upload_ms,
            "apply_ms": total_ms,
            "phases": phases,
            "users": found.len(),
        })
    );
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn lap(phases: &mut BTreeMap<&'static str, f64>, name: &'static str, since: &mut Instant) {
    *phases.entry(name).or_default() += ms(*since);
    *since = Instant::now();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `Store::apply_contact_upload` as it was before its writes were batched,
/// statement for statement, with `rows` rows per INSERT and the discovery
/// as IN lists or one join. (Its UPDATE and DELETE stay one row each: a
/// first sync, what this is run for, has none.)
async fn apply(
    store: &Store,
    token: &str,
    rows: usize,
    join: bool,
    phases: &mut BTreeMap<&'static str, f64>,
) -> anyhow::Result<Vec<Discovered>> {
    let mut t = Instant::now();
    let mut tx = store.pool().begin().await?;
    let row = sqlx::query(
        "SELECT owner, replace_book FROM contact_uploads WHERE token = ? AND status = 'pending'",
    )
    .bind(token)
    .fetch_one(&mut *tx)
    .await?;
    let owner: String = row.try_get("owner")?;
    let replace = row.try_get::<i64, _>("replace_book")? != 0;
    let staged: Vec<UploadedNumber> = sqlx::query(
        "SELECT contact_id, name, number FROM contact_upload_entries WHERE token = ? ORDER BY id",
    )
    .bind(token)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(UploadedNumber {
            contact_id: r.try_get("contact_id")?,
            name: r.try_get("name")?,
            number: r.try_get("number")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    lap(phases, "read_staged", &mut t);
    let mut wanted: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    for n in &staged {
        wanted.insert((n.contact_id.clone(), n.number.clone()), n.name.clone());
    }
    let stored: Vec<(String, String, Option<String>)> =
        sqlx::query("SELECT contact_id, number, name FROM contacts WHERE owner = ?")
            .bind(&owner)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("contact_id")?,
                    r.try_get("number")?,
                    r.try_get("name")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
    lap(phases, "read_stored", &mut t);
    let before: BTreeSet<&str> = stored.iter().map(|s| s.1.as_str()).collect();
    let now = now();
    let mut removed_pairs = Vec::new();
    for (contact_id, number, name) in &stored {
        let key = (contact_id.clone(), number.clone());
        match wanted.get(&key) {
            Some(new_name) if new_name != name => {
                sqlx::query(
                    "UPDATE contacts SET name = ? WHERE owner = ? AND contact_id = ? AND number = ?",
                )
                .bind(new_name)
                .bind(&owner)
                .bind(contact_id)
                .bind(number)
                .execute(&mut *tx)
                .await?;
            }
            Some(_) => {}
            None if replace => removed_pairs.push(key),
            None => {}
        }
    }
    for (contact_id, number) in &removed_pairs {
        sqlx::query("DELETE FROM contacts WHERE owner = ? AND contact_id = ? AND number = ?")
            .bind(&owner)
            .bind(contact_id)
            .bind(number)
            .execute(&mut *tx)
            .await?;
    }
    lap(phases, "update_delete", &mut t);
    let stored_pairs: BTreeSet<(String, String)> = stored
        .iter()
        .map(|(c, n, _)| (c.clone(), n.clone()))
        .collect();
    let new: Vec<(&(String, String), &Option<String>)> = wanted
        .iter()
        .filter(|(k, _)| !stored_pairs.contains(*k))
        .collect();
    for batch in new.chunks(rows) {
        let marks = vec!["(?, ?, ?, ?, ?)"; batch.len()].join(", ");
        let sql = format!(
            "INSERT INTO contacts (owner, contact_id, name, number, created_at) VALUES {marks}"
        );
        let mut q = sqlx::query(&sql);
        for ((contact_id, number), name) in batch {
            q = q
                .bind(&owner)
                .bind(contact_id)
                .bind(*name)
                .bind(number)
                .bind(now);
        }
        q.execute(&mut *tx).await?;
    }
    lap(phases, "insert_contacts", &mut t);
    let after: BTreeSet<String> = sqlx::query_scalar("SELECT number FROM contacts WHERE owner = ?")
        .bind(&owner)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    lap(phases, "read_after", &mut t);
    let changes: Vec<(&str, bool)> = after
        .iter()
        .filter(|n| !before.contains(n.as_str()))
        .map(|n| (n.as_str(), false))
        .chain(
            before
                .iter()
                .filter(|n| !after.contains(**n))
                .map(|n| (*n, true)),
        )
        .collect();
    for batch in changes.chunks(rows) {
        let marks = vec!["(?, ?, ?, ?)"; batch.len()].join(", ");
        let sql = format!(
            "INSERT INTO contact_changes (owner, number, removed, created_at) VALUES {marks}"
        );
        let mut q = sqlx::query(&sql);
        for (number, removed) in batch {
            q = q
                .bind(&owner)
                .bind(*number)
                .bind(i64::from(*removed))
                .bind(now);
        }
        q.execute(&mut *tx).await?;
    }
    lap(phases, "insert_changes", &mut t);
    let mut users: BTreeMap<String, String> = BTreeMap::new();
    if join {
        let rows = sqlx::query(
            "SELECT p.phone AS number, p.login AS login FROM contact_upload_entries e \
             JOIN profiles p ON p.phone = e.number WHERE e.token = ? \
             UNION SELECT a.login AS number, a.login AS login FROM contact_upload_entries e \
             JOIN accounts a ON a.login = e.number WHERE e.token = ?",
        )
        .bind(token)
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            let login: String = r.try_get("login")?;
            if login != owner {
                users.insert(r.try_get("number")?, login);
            }
        }
    } else {
        let numbers: Vec<&str> = wanted
            .keys()
            .map(|(_, n)| n.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in numbers.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT p.phone AS number, p.login AS login FROM profiles p WHERE p.phone IN ({marks}) \
                 UNION SELECT a.login AS number, a.login AS login FROM accounts a WHERE a.login IN ({marks})"
            );
            let mut q = sqlx::query(&sql);
            for n in chunk.iter().chain(chunk) {
                q = q.bind(*n);
            }
            for r in q.fetch_all(&mut *tx).await? {
                let login: String = r.try_get("login")?;
                if login != owner {
                    users.insert(r.try_get("number")?, login);
                }
            }
        }
    }
    let found: Vec<Discovered> = wanted
        .keys()
        .filter_map(|(contact_id, number)| {
            users.get(number).map(|login| Discovered {
                contact_id: contact_id.clone(),
                login: login.clone(),
                phone: number.clone(),
            })
        })
        .collect();
    lap(phases, "discover", &mut t);
    let result = serde_json::to_vec(&found)?;
    sqlx::query(
        "UPDATE contact_uploads SET status = 'done', result = ?, updated_at = ? WHERE token = ?",
    )
    .bind(result)
    .bind(now)
    .bind(token)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM contact_upload_entries WHERE token = ?")
        .bind(token)
        .execute(&mut *tx)
        .await?;
    lap(phases, "finish", &mut t);
    tx.commit().await?;
    lap(phases, "commit", &mut t);
    Ok(found)
}
