//! Address-book uploads and discovery (SPEC §5, the seed's "RCS contacts
//! discovery"): an app sends its book in chunks under a token, says when it
//! is done, and polls the token for the entries that are service users.
//!
//! Applying an upload is one transaction: the stored book is replaced (a
//! full sync) or merged, every number that came or went is recorded in
//! `contact_changes` (presence's buddy lists follow), and the discovery
//! result is stored with the upload. Nothing is half-applied: a crash
//! leaves the upload `pending`, and it is applied again at the next start.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::contacts::{BATCH_ROWS, record_changes, values_marks};
use super::error::{Result, StoreError};
use super::{Store, now};

/// Most numbers one upload may carry (a large phone book has a few
/// thousand entries; this leaves room for several numbers each).
pub const UPLOAD_MAX_NUMBERS: i64 = 50_000;

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    /// Chunks may still come.
    Open,
    /// Done; the book is being applied and searched.
    Pending,
    /// Applied; the result is there.
    Done,
}

impl UploadStatus {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "open" => Self::Open,
            "pending" => Self::Pending,
            "done" => Self::Done,
            other => return Err(StoreError::Corrupt(format!("upload status {other:?}"))),
        })
    }
}

/// One number of an uploaded entry, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedNumber {
    pub contact_id: String,
    pub name: Option<String>,
    pub number: String,
}

/// An entry of the book that is a service user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    pub contact_id: String,
    pub login: String,
    pub phone: String,
}

/// An upload as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub status: UploadStatus,
    pub entries: i64,
    pub result: Option<Vec<Discovered>>,
}

impl Store {
    /// Opens an upload for `owner`; `replace`: the upload is the whole book.
    pub async fn open_contact_upload(&self, owner: &str, token: &str, replace: bool) -> Result<()> {
        let now = now();
        let done = sqlx::query(
            "INSERT INTO contact_uploads (token, owner, replace_book, status, entries, created_at, \
             updated_at) VALUES (?, ?, ?, 'open', 0, ?, ?)",
        )
        .bind(token)
        .bind(owner)
        .bind(i64::from(replace))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) if super::error::is_foreign_key_violation(&e) => {
                Err(StoreError::NotFound(format!("account {owner:?}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The upload `token` of `owner` (another owner's is not found).
    pub async fn contact_upload(&self, owner: &str, token: &str) -> Result<Option<Upload>> {
        let row = sqlx::query(
            "SELECT status, entries, result FROM contact_uploads WHERE token = ? AND owner = ?",
        )
        .bind(token)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let status = UploadStatus::parse(&row.try_get::<String, _>("status")?)?;
        let result: Option<Vec<u8>> = row.try_get("result")?;
        let result = result
            .map(|r| serde_json::from_slice(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("upload result: {e}")))?;
        Ok(Some(Upload {
            status,
            entries: row.try_get("entries")?,
            result,
        }))
    }

    /// Adds a chunk to an open upload of `owner`; the numbers received so
    /// far. `NotFound` for no such open upload, `Invalid` past the limit.
    pub async fn add_upload_chunk(
        &self,
        owner: &str,
        token: &str,
        numbers: &[UploadedNumber],
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let grown = sqlx::query(
            "UPDATE contact_uploads SET entries = entries + ?, updated_at = ? \
             WHERE token = ? AND owner = ? AND status = 'open' AND entries + ? <= ?",
        )
        .bind(numbers.len() as i64)
        .bind(now())
        .bind(token)
        .bind(owner)
        .bind(numbers.len() as i64)
        .bind(UPLOAD_MAX_NUMBERS)
        .execute(&mut *tx)
        .await?;
        if grown.rows_affected() != 1 {
            let open: Option<i64> = sqlx::query_scalar(
                "SELECT entries FROM contact_uploads WHERE token = ? AND owner = ? AND status = 'open'",
            )
            .bind(token)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
            return Err(match open {
                Some(_) => StoreError::Invalid(format!(
                    "an upload carries at most {UPLOAD_MAX_NUMBERS} numbers"
                )),
                None => StoreError::NotFound("open upload".into()),
            });
        }
        // In the chunk's order: the staged rows' ids keep it.
        for batch in numbers.chunks(BATCH_ROWS) {
            let sql = format!(
                "INSERT INTO contact_upload_entries (token, contact_id, name, number) VALUES {}",
                values_marks(batch.len(), 4)
            );
            let mut q = sqlx::query(&sql);
            for n in batch {
                q = q
                    .bind(token)
                    .bind(&n.contact_id)
                    .bind(&n.name)
                    .bind(&n.number);
            }
            q.execute(&mut *tx).await?;
        }
        let total: i64 = sqlx::query_scalar("SELECT entries FROM contact_uploads WHERE token = ?")
            .bind(token)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(total)
    }

    /// Closes an open upload of `owner`: from now on it is `pending`
    /// until [`Store::apply_contact_upload`]. False when there is no such
    /// open upload.
    pub async fn close_contact_upload(&self, owner: &str, token: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE contact_uploads SET status = 'pending', updated_at = ? \
             WHERE token = ? AND owner = ? AND status = 'open'",
        )
        .bind(now())
        .bind(token)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uploads closed but not applied (a crash in between): to apply at start.
    pub async fn pending_contact_uploads(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT token FROM contact_uploads WHERE status = 'pending'")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Applies a pending upload to its owner's book and runs discovery, in
    /// one transaction; the service users found. A no-op (`None`) for an
    /// upload that is not pending.
    pub async fn apply_contact_upload(&self, token: &str) -> Result<Option<Vec<Discovered>>> {
        let mut tx = self.pool.begin().await?;
        // A write first: on SQLite it takes the write lock (waiting its
        // turn) before anything is read, so the reads below see the latest
        // commits; a transaction that read first and wrote after another
        // connection's commit would fail at once with "database is locked"
        // (its snapshot is stale), which the busy timeout does not cover.
        // (Its row count is not the test: MySQL counts changed rows only.)
        sqlx::query(
            "UPDATE contact_uploads SET updated_at = updated_at \
             WHERE token = ? AND status = 'pending'",
        )
        .bind(token)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT owner, replace_book FROM contact_uploads WHERE token = ? AND status = 'pending'",
        )
        .bind(token)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
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
        .collect::<Result<_>>()?;
        // The last copy of an (entry, number) pair wins, as a later chunk
        // corrects an earlier one.
        let mut wanted: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
        for n in &staged {
            wanted.insert((n.contact_id.clone(), n.number.clone()), n.name.clone());
        }
        // (id, contact id, number, name); the id is what the batched
        // UPDATE and DELETE below find a row by, (owner, contact id,
        // number) being unique.
        let stored: Vec<(i64, String, String, Option<String>)> =
            sqlx::query("SELECT id, contact_id, number, name FROM contacts WHERE owner = ?")
                .bind(&owner)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get("id")?,
                        r.try_get("contact_id")?,
                        r.try_get("number")?,
                        r.try_get("name")?,
                    ))
                })
                .collect::<Result<_>>()?;
        let before: BTreeSet<&str> = stored.iter().map(|s| s.2.as_str()).collect();
        let now = now();
        let mut renamed: Vec<(i64, &Option<String>)> = Vec::new();
        let mut removed_ids: Vec<i64> = Vec::new();
        for (id, contact_id, number, name) in &stored {
            match wanted.get(&(contact_id.clone(), number.clone())) {
                Some(new_name) if new_name != name => renamed.push((*id, new_name)),
                Some(_) => {}
                None if replace => removed_ids.push(*id),
                None => {}
            }
        }
        for batch in renamed.chunks(BATCH_ROWS) {
            let sql = format!(
                "UPDATE contacts SET name = CASE id {} END WHERE owner = ? AND id IN ({})",
                vec!["WHEN ? THEN ?"; batch.len()].join(" "),
                vec!["?"; batch.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (id, name) in batch {
                q = q.bind(*id).bind(*name);
            }
            q = q.bind(&owner);
            for (id, _) in batch {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        for batch in removed_ids.chunks(BATCH_ROWS) {
            let sql = format!(
                "DELETE FROM contacts WHERE owner = ? AND id IN ({})",
                vec!["?"; batch.len()].join(", ")
            );
            let mut q = sqlx::query(&sql).bind(&owner);
            for id in batch {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        let stored_pairs: BTreeSet<(&str, &str)> = stored
            .iter()
            .map(|(_, c, n, _)| (c.as_str(), n.as_str()))
            .collect();
        let new: Vec<(&(String, String), &Option<String>)> = wanted
            .iter()
            .filter(|((c, n), _)| !stored_pairs.contains(&(c.as_str(), n.as_str())))
            .collect();
        for batch in new.chunks(BATCH_ROWS) {
            let sql = format!(
                "INSERT INTO contacts (owner, contact_id, name, number, created_at) VALUES {}",
                values_marks(batch.len(), 5)
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
        let after: BTreeSet<String> =
            sqlx::query_scalar("SELECT number FROM contacts WHERE owner = ?")
                .bind(&owner)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        // Numbers that came, then numbers that went, as one run of rows.
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
        record_changes(&mut tx, &owner, &changes).await?;
        let found = discover(&mut tx, &owner, &wanted).await?;
        let result = serde_json::to_vec(&found).expect("discovered entries serialise");
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
        tx.commit().await?;
        Ok(Some(found))
    }

    /// Forgets uploads older than `before` (Unix seconds).
    pub async fn purge_contact_uploads(&self, before: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM contact_uploads WHERE updated_at < ?")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

/// The uploaded numbers that belong to service users (by profile phone, or
/// by login in generic mode), the owner excluded; one query per 500 numbers.
async fn discover(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    owner: &str,
    wanted: &BTreeMap<(String, String), Option<String>>,
) -> Result<Vec<Discovered>> {
    let numbers: Vec<&str> = wanted
        .keys()
        .map(|(_, n)| n.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut users: BTreeMap<String, String> = BTreeMap::new();
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
        for r in q.fetch_all(&mut **tx).await? {
            let login: String = r.try_get("login")?;
            if login != owner {
                users.insert(r.try_get("number")?, login);
            }
        }
    }
    Ok(wanted
        .keys()
        .filter_map(|(contact_id, number)| {
            users.get(number).map(|login| Discovered {
                contact_id: contact_id.clone(),
                login: login.clone(),
                phone: number.clone(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::accounts::NewAccount;
    use super::super::testutil::{test_store, unique, unique_digits};
    use super::*;

    fn n(contact_id: &str, name: &str, number: &str) -> UploadedNumber {
        UploadedNumber {
            contact_id: contact_id.into(),
            name: Some(name.into()),
            number: number.into(),
        }
    }

    #[tokio::test]
    async fn an_upload_replaces_the_book_and_finds_the_users_in_it() {
        let store = test_store().await;
        let (owner, friend) = (unique("cuo"), unique("cuf"));
        let (friend_phone, stranger, old) =
            (unique_digits(11), unique_digits(11), unique_digits(11));
        for (login, phone) in [(&owner, None), (&friend, Some(friend_phone.clone()))] {
            store
                .add_account(&NewAccount {
                    login: login.clone(),
                    sip_password: "pw".into(),
                    phone,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        store.add_contact(&owner, "old", None, &old).await.unwrap();
        let token = unique("tok");
        store
            .open_contact_upload(&owner, &token, true)
            .await
            .unwrap();
        let first = store
            .add_upload_chunk(&owner, &token, &[n("c1", "Friend", &friend_phone)])
            .await
            .unwrap();
        let second = store
            .add_upload_chunk(
                &owner,
                &token,
                &[n("c2", "Stranger", &stranger), n("c3", "Self?", &owner)],
            )
            .await
            .unwrap();
        let others = store.add_upload_chunk(&friend, &token, &[]).await;
        let open = store.contact_upload(&owner, &token).await.unwrap().unwrap();
        assert!(store.close_contact_upload(&owner, &token).await.unwrap());
        assert!(!store.close_contact_upload(&owner, &token).await.unwrap());
        let late = store
            .add_upload_chunk(&owner, &token, &[n("c4", "x", &stranger)])
            .await;
        let pending = store.pending_contact_uploads().await.unwrap();
        let found = store.apply_contact_upload(&token).await.unwrap().unwrap();
        let again = store.apply_contact_upload(&token).await.unwrap();
        let done = store.contact_upload(&owner, &token).await.unwrap().unwrap();
        let book = store.list_contacts(&owner).await.unwrap();
        let not_friends = store.contact_upload(&friend, &token).await.unwrap();
        for login in [&owner, &friend] {
            store.delete_account(login).await.unwrap();
        }

        assert_eq!((first, second), (1, 3));
        assert!(matches!(others, Err(StoreError::NotFound(_))), "{others:?}");
        assert_eq!((open.status, open.entries), (UploadStatus::Open, 3));
        assert!(matches!(late, Err(StoreError::NotFound(_))), "{late:?}");
        assert!(pending.contains(&token));
        let expected = vec![Discovered {
            contact_id: "c1".into(),
            login: friend.clone(),
            phone: friend_phone.clone(),
        }];
        assert_eq!(found, expected);
        assert_eq!(again, None, "applied once");
        assert_eq!(
            (done.status, done.result),
            (UploadStatus::Done, Some(expected))
        );
        let numbers: BTreeSet<&str> = book.iter().map(|c| c.number.as_str()).collect();
        assert_eq!(
            numbers,
            BTreeSet::from([friend_phone.as_str(), stranger.as_str(), owner.as_str()]),
            "the old entry went with the full sync"
        );
        assert_eq!(not_friends, None);
    }

    /// `owner`'s book as `list_contacts` gives it: contact id -> (name, number).
    async fn book_of(store: &Store, owner: &str) -> BTreeMap<String, (Option<String>, String)> {
        store
            .list_contacts(owner)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.contact_id, (c.name, c.number)))
            .collect()
    }

    /// `owner`'s changes after the one with id `after`, in id order.
    async fn changes_of(store: &Store, owner: &str, after: i64) -> Vec<(String, bool)> {
        let all = store.contact_changes_after(after, 1_000_000).await.unwrap();
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        all.into_iter()
            .filter(|c| c.owner == owner)
            .map(|c| (c.number, c.removed))
            .collect()
    }

    async fn id_of(store: &Store, owner: &str, contact_id: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM contacts WHERE owner = ? AND contact_id = ?")
            .bind(owner)
            .bind(contact_id)
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    /// A book of several batches: every row, rename, removal and change
    /// record is written, in order, as one statement per row would.
    #[tokio::test]
    async fn a_book_larger_than_a_batch_is_written_whole() {
        let store = test_store().await;
        let (owner, friend) = (unique("cub"), unique("cbf"));
        let friend_phone = unique_digits(11);
        for (login, phone) in [(&owner, None), (&friend, Some(friend_phone.clone()))] {
            store
                .add_account(&NewAccount {
                    login: login.clone(),
                    sip_password: "pw".into(),
                    phone,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let base = unique_digits(8);
        let number = |j: usize| {
            if j == 5 {
                friend_phone.clone()
            } else {
                format!("{base}{j:04}")
            }
        };
        let entry = |j: usize, name: &str| n(&format!("c{j:04}"), name, &number(j));
        // First sync, 1,200 entries: a chunk of 1,000 (entries 0..999, the
        // last a second copy of entry 0, which wins) and one of 201.
        let mut first: Vec<UploadedNumber> = (0..999).map(|j| entry(j, "Old")).collect();
        first.push(entry(0, "Last copy"));
        let second: Vec<UploadedNumber> = (999..1200).map(|j| entry(j, "Old")).collect();
        let token = unique("tok");
        store
            .open_contact_upload(&owner, &token, true)
            .await
            .unwrap();
        assert_eq!(
            store
                .add_upload_chunk(&owner, &token, &first)
                .await
                .unwrap(),
            1000
        );
        assert_eq!(
            store
                .add_upload_chunk(&owner, &token, &second)
                .await
                .unwrap(),
            1201
        );
        assert!(store.close_contact_upload(&owner, &token).await.unwrap());
        let mark = store.last_contact_change_id().await.unwrap();
        let found = store.apply_contact_upload(&token).await.unwrap().unwrap();
        let stored = book_of(&store, &owner).await;
        let recorded = changes_of(&store, &owner, mark).await;
        let kept_id = id_of(&store, &owner, "c0001").await;

        let mut expected: BTreeMap<String, (Option<String>, String)> = (0..1200)
            .map(|j| (format!("c{j:04}"), (Some("Old".to_string()), number(j))))
            .collect();
        expected.get_mut("c0000").unwrap().0 = Some("Last copy".into());
        assert_eq!(stored, expected);
        let mut numbers: Vec<String> = (0..1200).map(number).collect();
        numbers.sort();
        let added: Vec<(String, bool)> = numbers.iter().map(|n| (n.clone(), false)).collect();
        assert_eq!(
            recorded, added,
            "one change per number, in the numbers' order"
        );
        assert_eq!(
            found,
            vec![Discovered {
                contact_id: "c0005".into(),
                login: friend.clone(),
                phone: friend_phone.clone(),
            }]
        );

        // Full sync again: 0..599 renamed (0 to no name), 600..649 as they
        // were, 650..1199 dropped, 2000..2599 new.
        let mut book2: Vec<UploadedNumber> = (0..600)
            .map(|j| entry(j, &format!("Renamed {j}")))
            .collect();
        book2[0].name = None;
        book2.extend((600..650).map(|j| entry(j, "Old")));
        book2.extend((2000..2600).map(|j| entry(j, "New")));
        let token = unique("tok");
        store
            .open_contact_upload(&owner, &token, true)
            .await
            .unwrap();
        store
            .add_upload_chunk(&owner, &token, &book2)
            .await
            .unwrap();
        assert!(store.close_contact_upload(&owner, &token).await.unwrap());
        let mark = store.last_contact_change_id().await.unwrap();
        let found = store.apply_contact_upload(&token).await.unwrap().unwrap();
        let stored = book_of(&store, &owner).await;
        let recorded = changes_of(&store, &owner, mark).await;
        let renamed_id = id_of(&store, &owner, "c0001").await;

        let expected: BTreeMap<String, (Option<String>, String)> = book2
            .iter()
            .map(|e| (e.contact_id.clone(), (e.name.clone(), e.number.clone())))
            .collect();
        assert_eq!(stored.len(), 1250);
        assert_eq!(stored, expected);
        assert_eq!(renamed_id, kept_id, "a rename updates the row in place");
        let mut came: Vec<String> = (2000..2600).map(number).collect();
        came.sort();
        let mut went: Vec<String> = (650..1200).map(number).collect();
        went.sort();
        let mut want: Vec<(String, bool)> = came.into_iter().map(|n| (n, false)).collect();
        want.extend(went.into_iter().map(|n| (n, true)));
        assert_eq!(recorded, want, "the new numbers, then the dropped ones");
        assert_eq!(found.len(), 1, "{found:?}");

        // A merge: nothing dropped, one rename, one new entry.
        let token = unique("tok");
        store
            .open_contact_upload(&owner, &token, false)
            .await
            .unwrap();
        store
            .add_upload_chunk(
                &owner,
                &token,
                &[entry(600, "Merged"), entry(3000, "Merged new")],
            )
            .await
            .unwrap();
        assert!(store.close_contact_upload(&owner, &token).await.unwrap());
        let mark = store.last_contact_change_id().await.unwrap();
        store.apply_contact_upload(&token).await.unwrap().unwrap();
        let stored = book_of(&store, &owner).await;
        let recorded = changes_of(&store, &owner, mark).await;
        for login in [&owner, &friend] {
            store.delete_account(login).await.unwrap();
        }

        let mut expected = expected;
        expected.insert("c0600".into(), (Some("Merged".into()), number(600)));
        expected.insert("c3000".into(), (Some("Merged new".into()), number(3000)));
        assert_eq!(stored, expected);
        assert_eq!(recorded, vec![(number(3000), false)]);
    }
}
