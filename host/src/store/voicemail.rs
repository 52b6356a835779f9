//! Per-account voicemail settings.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::error::{Result, StoreError, is_foreign_key_violation, unique_violation};
use super::{Store, now, validate};

/// Voicemail settings of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoicemailSettings {
    /// The account's SIP login.
    pub login: String,
    /// Whether unanswered calls go to voicemail.
    pub enabled: bool,
    /// Path of a recorded greeting; `None` plays the default one.
    pub greeting: Option<String>,
    /// Whether new messages are also sent by e-mail.
    pub email_copy: bool,
}

impl Store {
    /// The account's voicemail settings, or `None` if there is no such
    /// account. An account without a settings row gets the defaults
    /// (enabled, no greeting, no e-mail copy).
    pub async fn voicemail_settings(&self, login: &str) -> Result<Option<VoicemailSettings>> {
        let row = sqlx::query(
            "SELECT v.enabled, v.greeting, v.email_copy FROM accounts a \
             LEFT JOIN voicemail_settings v ON v.login = a.login WHERE a.login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let enabled: Option<i64> = row.try_get("enabled")?;
        let email_copy: Option<i64> = row.try_get("email_copy")?;
        Ok(Some(VoicemailSettings {
            login: login.to_owned(),
            enabled: enabled.is_none_or(|v| v != 0),
            greeting: row.try_get("greeting")?,
            email_copy: email_copy.is_some_and(|v| v != 0),
        }))
    }

    /// Stores the settings, creating the row if needed. `NotFound` if the
    /// account does not exist.
    pub async fn set_voicemail_settings(&self, settings: &VoicemailSettings) -> Result<()> {
        validate::optional("greeting", settings.greeting.as_deref(), 512)?;
        // UPDATE then INSERT instead of an upsert: SQLite's ON CONFLICT and
        // MySQL's ON DUPLICATE KEY differ. sqlx asks MySQL for matched rather
        // than changed rows, so rewriting identical values still counts as 1.
        if self.update_voicemail(settings).await? {
            return Ok(());
        }
        let inserted = sqlx::query(
            "INSERT INTO voicemail_settings (login, enabled, greeting, email_copy, updated_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&settings.login)
        .bind(i64::from(settings.enabled))
        .bind(&settings.greeting)
        .bind(i64::from(settings.email_copy))
        .bind(now())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => Err(StoreError::NotFound(format!(
                "account {:?}",
                settings.login
            ))),
            // Someone created the row between our UPDATE and INSERT.
            Err(e) if unique_violation(&e).is_some() => {
                self.update_voicemail(settings).await.map(|_| ())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn update_voicemail(&self, s: &VoicemailSettings) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE voicemail_settings SET enabled = ?, greeting = ?, email_copy = ?, \
             updated_at = ? WHERE login = ?",
        )
        .bind(i64::from(s.enabled))
        .bind(&s.greeting)
        .bind(i64::from(s.email_copy))
        .bind(now())
        .bind(&s.login)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique};
    use super::super::{AccountTemplate, NewAccount};
    use super::*;

    #[tokio::test]
    async fn get_and_set() {
        let store = test_store().await;
        let login = unique("vm");
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw".into(),
                template: AccountTemplate::default(),
                ..NewAccount::default()
            })
            .await
            .unwrap();

        let initial = store.voicemail_settings(&login).await;
        let changed = VoicemailSettings {
            login: login.clone(),
            enabled: false,
            greeting: Some("/var/lib/softswitch/greetings/x.wav".into()),
            email_copy: true,
        };
        let set = store.set_voicemail_settings(&changed).await;
        // Same values again: must not be mistaken for a missing row.
        let set_again = store.set_voicemail_settings(&changed).await;
        let read = store.voicemail_settings(&login).await;
        let account = store.account_by_login(&login).await;
        // Row gone (written by an older version, say): defaults, and set
        // recreates it.
        sqlx::query("DELETE FROM voicemail_settings WHERE login = ?")
            .bind(&login)
            .execute(store.pool())
            .await
            .unwrap();
        let defaulted = store.voicemail_settings(&login).await;
        let recreated = store.set_voicemail_settings(&changed).await;
        let read_again = store.voicemail_settings(&login).await;
        let missing = store.voicemail_settings(&unique("none")).await;
        let set_missing = store
            .set_voicemail_settings(&VoicemailSettings {
                login: unique("none"),
                ..changed.clone()
            })
            .await;
        store.delete_account(&login).await.unwrap();

        let initial = initial.unwrap().unwrap();
        assert!(initial.enabled && !initial.email_copy && initial.greeting.is_none());
        set.unwrap();
        set_again.unwrap();
        assert_eq!(read.unwrap().unwrap(), changed);
        assert!(!account.unwrap().unwrap().voicemail_enabled);
        assert!(defaulted.unwrap().unwrap().enabled);
        recreated.unwrap();
        assert_eq!(read_again.unwrap().unwrap(), changed);
        assert!(missing.unwrap().is_none());
        assert!(matches!(set_missing, Err(StoreError::NotFound(_))));
    }
}
