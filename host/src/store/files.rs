//! Shared files (SPEC §7): a row per file, its recipients, and its bytes in
//! chunks appended while the upload streams in (see
//! `migrations/sqlite/0016_files.sql` for why they are in the database).
//!
//! A file is downloadable once its upload completed, by its sender and its
//! recipients only; a recipient's first whole download is recorded, and the
//! last one deletes the file.

use sqlx::Row;

use super::Store;
use super::error::{Result, StoreError};

/// A file as its readers see it, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedFile {
    pub id: String,
    pub sender: String,
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Bytes.
    pub size: i64,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
}

/// A file whose upload starts.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub id: &'a str,
    pub sender: &'a str,
    pub content_type: &'a str,
    pub name: Option<&'a str>,
    /// Logins; each must be an account.
    pub recipients: &'a [String],
    pub created_at: i64,
    pub expires_at: i64,
}

/// What a login may do with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAccess {
    /// No such (complete) file.
    Missing,
    /// The file exists; the login is neither its sender nor a recipient.
    Forbidden,
    /// The sender (downloads do not count).
    Sender(SharedFile),
    /// A recipient.
    Recipient(SharedFile),
}

/// What [`Store::sweep_files`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Complete files past their expiry (never downloaded by everyone).
    pub expired: u64,
    /// Uploads that never completed (their node stopped, or the client went
    /// away and the delete failed).
    pub abandoned: u64,
}

fn shared_file(r: &sqlx::any::AnyRow) -> Result<SharedFile> {
    Ok(SharedFile {
        id: r.try_get("id")?,
        sender: r.try_get("sender")?,
        content_type: r.try_get("content_type")?,
        name: r.try_get("name")?,
        size: r.try_get("size")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Store {
    /// Creates a file's row (not yet downloadable) and its recipients.
    /// A recipient that is no account is [`StoreError::NotFound`] naming it.
    pub async fn open_file(&self, new: &NewFile<'_>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for login in new.recipients {
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM accounts WHERE login = ?")
                .bind(login)
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                return Err(StoreError::NotFound(format!("account {login:?}")));
            }
        }
        sqlx::query(
            "INSERT INTO shared_files \
             (id, sender, content_type, name, size, complete, created_at, expires_at) \
             VALUES (?, ?, ?, ?, 0, 0, ?, ?)",
        )
        .bind(new.id)
        .bind(new.sender)
        .bind(new.content_type)
        .bind(new.name)
        .bind(new.created_at)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await?;
        for login in new.recipients {
            sqlx::query("INSERT INTO shared_file_recipients (file_id, login) VALUES (?, ?)")
                .bind(new.id)
                .bind(login)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends chunk `seq` of an upload under way.
    pub async fn append_file_chunk(&self, id: &str, seq: i64, data: &[u8]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO shared_file_chunks (file_id, seq, data) VALUES (?, ?, ?)")
            .bind(id)
            .bind(seq)
            .bind(data)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE shared_files SET size = size + ? WHERE id = ? AND complete = 0")
            .bind(data.len() as i64)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The upload is whole: the file becomes downloadable.
    pub async fn complete_file(&self, id: &str) -> Result<Option<SharedFile>> {
        sqlx::query("UPDATE shared_files SET complete = 1 WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.complete_file_row(id).await
    }

    async fn complete_file_row(&self, id: &str) -> Result<Option<SharedFile>> {
        let row = sqlx::query(
            "SELECT id, sender, content_type, name, size, created_at, expires_at \
             FROM shared_files WHERE id = ? AND complete = 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(shared_file).transpose()
    }

    /// Deletes a file, its recipients and its bytes; false if there was none.
    pub async fn delete_file(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let gone = delete_file_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// The logins a file was sent to, in order.
    pub async fn file_recipients(&self, id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT login FROM shared_file_recipients WHERE file_id = ? ORDER BY login",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// What `login` may do with file `id`.
    pub async fn file_access(&self, id: &str, login: &str) -> Result<FileAccess> {
        let Some(file) = self.complete_file_row(id).await? else {
            return Ok(FileAccess::Missing);
        };
        if file.sender == login {
            return Ok(FileAccess::Sender(file));
        }
        let recipient: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM shared_file_recipients WHERE file_id = ? AND login = ?",
        )
        .bind(id)
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match recipient {
            Some(_) => FileAccess::Recipient(file),
            None => FileAccess::Forbidden,
        })
    }

    /// Chunk `seq` of file `id` (`None` past the last, or once deleted).
    pub async fn file_chunk(&self, id: &str, seq: i64) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT data FROM shared_file_chunks WHERE file_id = ? AND seq = ?")
                .bind(id)
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records `login`'s whole download of file `id`; once every recipient
    /// has one the file is deleted (true).
    pub async fn file_downloaded(&self, id: &str, login: &str, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE shared_file_recipients SET downloaded_at = ? \
             WHERE file_id = ? AND login = ? AND downloaded_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(login)
        .execute(&mut *tx)
        .await?;
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM shared_file_recipients \
             WHERE file_id = ? AND downloaded_at IS NULL",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let deleted = waiting == 0 && delete_file_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Deletes complete files that expired by `now` and uploads begun
    /// before `abandoned_before` that never completed.
    pub async fn sweep_files(&self, now: i64, abandoned_before: i64) -> Result<Swept> {
        let rows = sqlx::query(
            "SELECT id, complete FROM shared_files \
             WHERE (complete = 1 AND expires_at <= ?) OR (complete = 0 AND created_at < ?)",
        )
        .bind(now)
        .bind(abandoned_before)
        .fetch_all(&self.pool)
        .await?;
        let mut swept = Swept::default();
        for row in rows {
            let id: String = row.try_get("id")?;
            let complete: i64 = row.try_get("complete")?;
            // One file per transaction: a 96 MB delete does not hold the
            // database for the others.
            if self.delete_file(&id).await? {
                if complete == 1 {
                    swept.expired += 1;
                } else {
                    swept.abandoned += 1;
                }
            }
        }
        Ok(swept)
    }
}

async fn delete_file_in(tx: &mut sqlx::AnyConnection, id: &str) -> Result<bool> {
    // Children first: the cascade would do it on both backends, but SQLite
    // only with its foreign keys on, and this way no backend depends on it.
    for table in ["shared_file_chunks", "shared_file_recipients"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE file_id = ?"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let done = sqlx::query("DELETE FROM shared_files WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::super::accounts::NewAccount;
    use super::super::testutil::{test_store, unique};
    use super::*;

    /// Unique logins for `names` (the MySQL test database is shared).
    async fn accounts<const N: usize>(store: &Store, names: [&str; N]) -> [String; N] {
        let logins = names.map(unique);
        for login in &logins {
            store
                .add_account(&NewAccount {
                    login: login.clone(),
                    sip_password: "pw".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        logins
    }

    /// Uploads `parts` from `sender` to `recipients`; the file's id.
    async fn upload(
        store: &Store,
        sender: &str,
        recipients: &[String],
        parts: &[&[u8]],
        (created_at, expires_at): (i64, i64),
    ) -> String {
        let id = unique("f");
        store
            .open_file(&NewFile {
                id: &id,
                sender,
                content_type: "image/png",
                name: Some("cat.png"),
                recipients,
                created_at,
                expires_at,
            })
            .await
            .unwrap();
        for (seq, part) in parts.iter().enumerate() {
            store
                .append_file_chunk(&id, seq as i64, part)
                .await
                .unwrap();
        }
        id
    }

    /// Times no sweep of the other test reaches.
    const NOW: (i64, i64) = (i64::MAX / 4, i64::MAX / 2);

    #[tokio::test]
    async fn a_file_is_read_by_its_people_and_gone_after_every_recipient_downloaded() {
        let store = test_store().await;
        let [alice, bob, carol, dave] = accounts(&store, ["alice", "bob", "carol", "dave"]).await;
        let to = [bob.clone(), carol.clone()];
        let id = upload(&store, &alice, &to, &[b"abc", b"de"], NOW).await;
        // Not downloadable before the upload completes.
        assert_eq!(
            store.file_access(&id, &bob).await.unwrap(),
            FileAccess::Missing
        );
        let file = store.complete_file(&id).await.unwrap().unwrap();
        assert_eq!(file.size, 5);
        assert_eq!(file.name.as_deref(), Some("cat.png"));
        assert!(matches!(
            store.file_access(&id, &alice).await.unwrap(),
            FileAccess::Sender(_)
        ));
        assert!(matches!(
            store.file_access(&id, &bob).await.unwrap(),
            FileAccess::Recipient(_)
        ));
        assert_eq!(
            store.file_access(&id, &dave).await.unwrap(),
            FileAccess::Forbidden
        );
        let mut sorted = to.to_vec();
        sorted.sort();
        assert_eq!(store.file_recipients(&id).await.unwrap(), sorted);
        assert_eq!(
            store.file_chunk(&id, 1).await.unwrap().as_deref(),
            Some(&b"de"[..])
        );
        assert_eq!(store.file_chunk(&id, 2).await.unwrap(), None);
        assert!(!store.file_downloaded(&id, &bob, 2_000).await.unwrap());
        // A second download by the same recipient changes nothing.
        assert!(!store.file_downloaded(&id, &bob, 2_001).await.unwrap());
        assert!(store.file_downloaded(&id, &carol, 2_002).await.unwrap());
        assert_eq!(
            store.file_access(&id, &alice).await.unwrap(),
            FileAccess::Missing
        );
        assert_eq!(store.file_chunk(&id, 0).await.unwrap(), None);
        assert!(store.file_recipients(&id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn unknown_recipients_leave_nothing_and_the_sweep_takes_old_files() {
        let store = test_store().await;
        let [alice, bob] = accounts(&store, ["alice", "bob"]).await;
        let id = unique("f");
        let recipients = vec![bob.clone(), unique("nobody")];
        let refused = store
            .open_file(&NewFile {
                id: &id,
                sender: &alice,
                content_type: "image/png",
                name: None,
                recipients: &recipients,
                created_at: 1_000,
                expires_at: 5_000,
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::NotFound(_))),
            "{refused:?}"
        );
        assert!(store.file_recipients(&id).await.unwrap().is_empty());
        // A complete file that expires at 5,000, an upload begun at 1,000
        // that never completed, and a young complete file.
        let to = [bob.clone()];
        let done = upload(&store, &alice, &to, &[b"x"], (1_000, 5_000)).await;
        store.complete_file(&done).await.unwrap();
        let half = upload(&store, &alice, &to, &[b"y"], (1_000, 5_000)).await;
        let young = upload(&store, &alice, &to, &[b"z"], (4_000, 9_000)).await;
        store.complete_file(&young).await.unwrap();
        store.sweep_files(4_999, 1_000).await.unwrap();
        for id in [&done, &half, &young] {
            assert!(store.file_chunk(id, 0).await.unwrap().is_some(), "{id}");
        }
        let swept = store.sweep_files(5_000, 1_001).await.unwrap();
        assert!(swept.expired >= 1 && swept.abandoned >= 1, "{swept:?}");
        for id in [&done, &half] {
            assert_eq!(store.file_chunk(id, 0).await.unwrap(), None, "{id}");
            assert!(store.file_recipients(id).await.unwrap().is_empty());
        }
        assert!(matches!(
            store.file_access(&young, &bob).await.unwrap(),
            FileAccess::Recipient(_)
        ));
    }
}
