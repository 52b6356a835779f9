//! Call recordings: one row per recorded call, the accounts that may see
//! it, and its audio in chunks appended while the call goes on (see
//! `migrations/sqlite/0010_call_recording.sql` for why).
//!
//! Reads and deletes name the owner (`Some(login)`) or are the admin's
//! (`None`): an id alone opens nothing for a client.

use sqlx::Row;

use super::Store;
use super::error::Result;
use super::messages::last_insert_id;

/// A recording as listed, without its audio.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallRecording {
    pub id: i64,
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub gateway: Option<String>,
    /// `mixed` (one channel) or `stereo` (caller left, callee right).
    pub layout: String,
    /// Unix milliseconds.
    pub started_at: i64,
    /// `None` while the call goes on, or when its node stopped during it
    /// (the audio up to the last stored chunk is there).
    pub ended_at: Option<i64>,
    /// Audio stored so far.
    pub duration_ms: i64,
}

impl CallRecording {
    pub fn channels(&self) -> u16 {
        if self.layout == "stereo" { 2 } else { 1 }
    }
}

/// A call whose recording starts.
#[derive(Debug, Clone)]
pub struct NewRecording<'a> {
    pub call_id: &'a str,
    pub caller: &'a str,
    pub callee: &'a str,
    pub gateway: Option<&'a str>,
    pub layout: &'a str,
    pub started_at: i64,
    /// Accounts that may list and download it.
    pub owners: &'a [String],
}

const COLUMNS: &str = "r.id, r.call_id, r.caller, r.callee, r.gateway, r.layout, r.started_at, \
                       r.ended_at, r.samples";

fn recording(r: &sqlx::any::AnyRow) -> Result<CallRecording> {
    let samples: i64 = r.try_get("samples")?;
    Ok(CallRecording {
        id: r.try_get("id")?,
        call_id: r.try_get("call_id")?,
        caller: r.try_get("caller")?,
        callee: r.try_get("callee")?,
        gateway: r.try_get("gateway")?,
        layout: r.try_get("layout")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        // 8 kHz: 8 samples per millisecond.
        duration_ms: samples / 8,
    })
}

impl Store {
    /// Creates a recording's row and its owners; its id.
    pub async fn start_recording(&self, new: &NewRecording<'_>) -> Result<i64> {
        super::accounts::validate_recording(new.layout)?;
        let mut conn = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO call_recordings \
             (call_id, caller, callee, gateway, layout, started_at, samples) \
             VALUES (?, ?, ?, ?, ?, ?, 0)",
        )
        .bind(new.call_id)
        .bind(new.caller)
        .bind(new.callee)
        .bind(new.gateway)
        .bind(new.layout)
        .bind(new.started_at)
        .execute(&mut *conn)
        .await?;
        let id = last_insert_id(&mut conn, &done).await?;
        for login in new.owners {
            sqlx::query("INSERT INTO call_recording_owners (recording_id, login) VALUES (?, ?)")
                .bind(id)
                .bind(login)
                .execute(&mut *conn)
                .await?;
        }
        conn.commit().await?;
        Ok(id)
    }

    /// Appends chunk `seq` (16-bit little-endian PCM, channels interleaved)
    /// holding `samples` samples per channel.
    pub async fn append_recording(
        &self,
        id: i64,
        seq: i64,
        pcm: &[u8],
        samples: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO call_recording_chunks (recording_id, seq, pcm) VALUES (?, ?, ?)")
            .bind(id)
            .bind(seq)
            .bind(pcm)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE call_recordings SET samples = samples + ? WHERE id = ?")
            .bind(samples)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The call is over.
    pub async fn end_recording(&self, id: i64, ended_at: i64) -> Result<()> {
        sqlx::query("UPDATE call_recordings SET ended_at = ? WHERE id = ?")
            .bind(ended_at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Recordings newest first, older than `before` (an id) when given: an
    /// owner's (`Some(login)`) or, for the admin, everyone's (`None`).
    pub async fn recordings(
        &self,
        owner: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CallRecording>> {
        let before = before.unwrap_or(i64::MAX);
        let rows = match owner {
            Some(login) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM call_recordings r \
                     JOIN call_recording_owners o ON o.recording_id = r.id \
                     WHERE o.login = ? AND r.id < ? ORDER BY r.id DESC LIMIT ?"
                ))
                .bind(login)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM call_recordings r \
                     WHERE r.id < ? ORDER BY r.id DESC LIMIT ?"
                ))
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(recording).collect()
    }

    /// One recording, if it exists and `owner` (or the admin, `None`) may
    /// see it.
    pub async fn recording(&self, id: i64, owner: Option<&str>) -> Result<Option<CallRecording>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM call_recordings r WHERE r.id = ? AND \
             (? IS NULL OR EXISTS (SELECT 1 FROM call_recording_owners o \
              WHERE o.recording_id = r.id AND o.login = ?))"
        ))
        .bind(id)
        .bind(owner)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recording).transpose()
    }

    /// The audio of a recording (see [`Self::append_recording`]), all
    /// chunks in order; check who asks with [`Self::recording`] first.
    pub async fn recording_pcm(&self, id: i64) -> Result<Vec<u8>> {
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT pcm FROM call_recording_chunks WHERE recording_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(chunks.concat())
    }

    /// Deletes a recording with its audio: for an owner, only their access
    /// goes (the other party keeps theirs) and the recording with the last
    /// owner; for the admin (`None`), the recording. False if there was
    /// nothing the asker could delete.
    pub async fn delete_recording(&self, id: i64, owner: Option<&str>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if let Some(login) = owner {
            let gone = sqlx::query(
                "DELETE FROM call_recording_owners WHERE recording_id = ? AND login = ?",
            )
            .bind(id)
            .bind(login)
            .execute(&mut *tx)
            .await?;
            if gone.rows_affected() == 0 {
                return Ok(false);
            }
            let left: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM call_recording_owners WHERE recording_id = ?",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if left > 0 {
                tx.commit().await?;
                return Ok(true);
            }
        }
        // Chunks and owners go with the row (ON DELETE CASCADE); said
        // explicitly too, for SQLite connections without foreign keys.
        for sql in [
            "DELETE FROM call_recording_chunks WHERE recording_id = ?",
            "DELETE FROM call_recording_owners WHERE recording_id = ?",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM call_recordings WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::accounts::NewAccount;
    use super::super::testutil::{test_store, unique};
    use super::*;

    async fn account(store: &Store, login: &str) {
        store
            .add_account(&NewAccount {
                login: login.into(),
                sip_password: "pw".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn chunks_add_up_and_only_owners_and_the_admin_see_a_recording() {
        let store = test_store().await;
        let (alice, bob, eve) = (unique("ra"), unique("rb"), unique("re"));
        for login in [&alice, &bob, &eve] {
            account(&store, login).await;
        }
        let owners = vec![alice.clone(), bob.clone()];
        let id = store
            .start_recording(&NewRecording {
                call_id: "c1@test",
                caller: &alice,
                callee: &bob,
                gateway: None,
                layout: "stereo",
                started_at: 1_000,
                owners: &owners,
            })
            .await
            .unwrap();
        store
            .append_recording(id, 0, &[1, 0, 2, 0], 1)
            .await
            .unwrap();
        store
            .append_recording(id, 1, &[3, 0, 4, 0, 5, 0, 6, 0], 16)
            .await
            .unwrap();
        let live = store.recording(id, Some(&alice)).await.unwrap().unwrap();
        store.end_recording(id, 9_000).await.unwrap();
        let ended = store.recording(id, None).await.unwrap().unwrap();
        let pcm = store.recording_pcm(id).await.unwrap();
        let for_eve = store.recording(id, Some(&eve)).await.unwrap();
        let eve_list = store.recordings(Some(&eve), None, 10).await.unwrap();
        let bob_list = store.recordings(Some(&bob), None, 10).await.unwrap();
        let older = store.recordings(Some(&bob), Some(id), 10).await.unwrap();
        let eve_delete = store.delete_recording(id, Some(&eve)).await.unwrap();
        let alice_delete = store.delete_recording(id, Some(&alice)).await.unwrap();
        let bob_still = store.recording(id, Some(&bob)).await.unwrap();
        let alice_after = store.recording(id, Some(&alice)).await.unwrap();
        let bob_delete = store.delete_recording(id, Some(&bob)).await.unwrap();
        let gone = store.recording(id, None).await.unwrap();
        let pcm_after = store.recording_pcm(id).await.unwrap();
        for login in [&alice, &bob, &eve] {
            store.delete_account(login).await.unwrap();
        }

        assert_eq!(live.ended_at, None);
        assert_eq!(
            (ended.ended_at, ended.duration_ms, ended.channels()),
            (Some(9_000), 2, 2)
        );
        assert_eq!(pcm, [1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0]);
        assert_eq!(for_eve, None);
        assert!(eve_list.is_empty());
        assert_eq!(bob_list.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
        assert!(older.is_empty());
        assert!(!eve_delete);
        assert!(alice_delete);
        assert!(bob_still.is_some(), "the other party keeps it");
        assert_eq!(alice_after, None);
        assert!(bob_delete);
        assert_eq!(gone, None);
        assert!(pcm_after.is_empty());
    }
}
