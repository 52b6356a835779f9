//! Avatars (SPEC §2, §5): one resized picture per account, with its
//! last-update time mirrored into the profile, where the presence documents
//! read it.

use sqlx::Row;

use super::Store;
use super::error::{Result, StoreError};

/// A stored avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar {
    /// `image/jpeg` or `image/png`.
    pub content_type: String,
    pub image: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Store {
    /// Replaces the avatar of `login` and stamps the profile with
    /// `avatar.updated_at`, in one transaction. [`StoreError::NotFound`] when
    /// there is no such account.
    pub async fn set_avatar(&self, login: &str, avatar: &Avatar) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let stamped = sqlx::query("UPDATE profiles SET avatar_updated_at = ? WHERE login = ?")
            .bind(avatar.updated_at)
            .bind(login)
            .execute(&mut *tx)
            .await?;
        if stamped.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("account {login:?}")));
        }
        // Delete then insert: one statement that works on both SQLite and
        // MySQL (their upsert syntaxes differ).
        sqlx::query("DELETE FROM avatars WHERE login = ?")
            .bind(login)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO avatars (login, content_type, image, width, height, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(login)
        .bind(&avatar.content_type)
        .bind(&avatar.image)
        .bind(i64::from(avatar.width))
        .bind(i64::from(avatar.height))
        .bind(avatar.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The avatar of `login`, if it has one.
    pub async fn avatar(&self, login: &str) -> Result<Option<Avatar>> {
        let row = sqlx::query(
            "SELECT content_type, image, width, height, updated_at FROM avatars WHERE login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let dim = |name: &str| -> Result<u32> {
            let v: i64 = row.try_get(name)?;
            u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("avatar {name} {v}")))
        };
        Ok(Some(Avatar {
            content_type: row.try_get("content_type")?,
            image: row.try_get("image")?,
            width: dim("width")?,
            height: dim("height")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }

    /// Removes the avatar of `login`; the profile keeps a last-update time
    /// (`now`), so clients drop the picture they cached. False when there was
    /// no avatar.
    pub async fn delete_avatar(&self, login: &str, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM avatars WHERE login = ?")
            .bind(login)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE profiles SET avatar_updated_at = ? WHERE login = ?")
            .bind(now)
            .bind(login)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewAccount;
    use crate::store::testutil::{test_store, unique};

    #[tokio::test]
    async fn set_replace_read_delete_and_the_profile_stamp() {
        let store = test_store().await;
        let login = unique("av");
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let first = Avatar {
            content_type: "image/png".into(),
            image: vec![1, 2, 3],
            width: 10,
            height: 20,
            updated_at: 1_700_000_000,
        };
        store.set_avatar(&login, &first).await.unwrap();
        let second = Avatar {
            content_type: "image/jpeg".into(),
            image: vec![0xff; 70_000],
            updated_at: 1_700_000_100,
            ..first.clone()
        };
        store.set_avatar(&login, &second).await.unwrap();
        let read = store.avatar(&login).await.unwrap();
        let stamp = store.avatar_updated_at(&login).await.unwrap();
        let missing = store
            .set_avatar(&unique("nobody"), &first)
            .await
            .unwrap_err();
        let deleted = store.delete_avatar(&login, 1_700_000_200).await.unwrap();
        let again = store.delete_avatar(&login, 1_700_000_300).await.unwrap();
        let after = store.avatar(&login).await.unwrap();
        let stamp_after = store.avatar_updated_at(&login).await.unwrap();
        store.delete_account(&login).await.unwrap();

        assert_eq!(read, Some(second));
        assert_eq!(stamp, Some(1_700_000_100));
        assert!(matches!(missing, StoreError::NotFound(_)));
        assert!(deleted && !again);
        assert_eq!(after, None);
        assert_eq!(stamp_after, Some(1_700_000_200));
    }
}
