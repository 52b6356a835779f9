//! Phone sign-up requests (SPEC §3): one row per phone number and device,
//! with the code, the SMS and attempt allowances, and the account it led to.
//!
//! The rules (what to do with a request) live in `api::phone_signup`; this
//! module only reads and writes rows. Updates are conditional on the values
//! the caller read, so two concurrent requests for one device cannot both
//! spend the same allowance.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use super::error::{Result, StoreError, unique_violation};

/// A stored sign-up request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneSignup {
    pub id: i64,
    /// E.164 without `+`.
    pub phone: String,
    pub udid: String,
    pub os: String,
    pub code: String,
    pub sms_left: i64,
    pub attempts_left: i64,
    /// Unix seconds of the newest code SMS.
    pub last_sms_at: i64,
    /// The newest code SMS (`sms_messages.id`).
    pub sms_id: Option<i64>,
    /// The account the device signed up to, once the right code was given.
    pub completed_login: Option<String>,
    /// The newest "call me" call (`pending`, `answered`, `failed`), when
    /// the newest code went by voice call rather than SMS.
    pub call_status: Option<String>,
}

fn from_row(row: &AnyRow) -> Result<PhoneSignup> {
    Ok(PhoneSignup {
        id: row.try_get("id")?,
        phone: row.try_get("phone")?,
        udid: row.try_get("udid")?,
        os: row.try_get("os")?,
        code: row.try_get("code")?,
        sms_left: row.try_get("sms_left")?,
        attempts_left: row.try_get("attempts_left")?,
        last_sms_at: row.try_get("last_sms_at")?,
        sms_id: row.try_get("sms_id")?,
        completed_login: row.try_get("completed_login")?,
        call_status: row.try_get("call_status")?,
    })
}

const COLUMNS: &str = "id, phone, udid, os, code, sms_left, attempts_left, last_sms_at, sms_id, \
     completed_login, call_status";

impl Store {
    /// The request of this phone and device, if any.
    pub async fn phone_signup(&self, phone: &str, udid: &str) -> Result<Option<PhoneSignup>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM phone_signups WHERE phone = ? AND udid = ?"
        ))
        .bind(phone)
        .bind(udid)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records a new request whose first SMS is being sent at `now`. A
    /// concurrent request for the same device gives [`StoreError::Conflict`].
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_phone_signup(
        &self,
        phone: &str,
        udid: &str,
        os: &str,
        code: &str,
        sms_left: i64,
        attempts_left: i64,
        now: i64,
    ) -> Result<PhoneSignup> {
        let done = sqlx::query(
            "INSERT INTO phone_signups (phone, udid, os, code, sms_left, attempts_left, last_sms_at, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(phone)
        .bind(udid)
        .bind(os)
        .bind(code)
        .bind(sms_left)
        .bind(attempts_left)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => {}
            Err(e) if unique_violation(&e).is_some() => {
                return Err(StoreError::Conflict("phone sign-up".into()));
            }
            Err(e) => return Err(e.into()),
        }
        self.phone_signup(phone, udid)
            .await?
            .ok_or_else(|| StoreError::NotFound("phone sign-up just inserted".into()))
    }

    /// Spends one SMS of the allowance, if `sms_left` is still what the
    /// caller read; false when another request got there first.
    pub async fn spend_signup_sms(&self, s: &PhoneSignup, os: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE phone_signups SET sms_left = sms_left - 1, last_sms_at = ?, os = ?, updated_at = ? \
             WHERE id = ? AND sms_left = ? AND sms_left > 0",
        )
        .bind(now)
        .bind(os)
        .bind(now)
        .bind(s.id)
        .bind(s.sms_left)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the state of the newest "call me" call of the request (its
    /// delivery status from then on).
    pub async fn set_signup_call(&self, id: i64, status: &str) -> Result<()> {
        sqlx::query("UPDATE phone_signups SET call_status = ?, sms_id = NULL WHERE id = ?")
            .bind(status)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Links the request to the SMS carrying its code.
    pub async fn set_signup_sms(&self, id: i64, sms_id: i64) -> Result<()> {
        sqlx::query("UPDATE phone_signups SET sms_id = ?, call_status = NULL WHERE id = ?")
            .bind(sms_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Spends one attempt, if `attempts_left` is still what the caller read.
    pub async fn spend_signup_attempt(&self, s: &PhoneSignup, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE phone_signups SET attempts_left = attempts_left - 1, updated_at = ? \
             WHERE id = ? AND attempts_left = ? AND attempts_left > 0",
        )
        .bind(now)
        .bind(s.id)
        .bind(s.attempts_left)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the account the device signed up to.
    pub async fn complete_phone_signup(&self, id: i64, login: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE phone_signups SET completed_login = ?, updated_at = ? WHERE id = ?")
            .bind(login)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique, unique_digits};

    #[tokio::test]
    async fn allowances_are_spent_once() {
        let store = test_store().await;
        let phone = unique_digits(12);
        let udid = unique("dev");
        let s = store
            .insert_phone_signup(&phone, &udid, "android", "1234", 4, 3, 100)
            .await
            .unwrap();
        let dup = store
            .insert_phone_signup(&phone, &udid, "android", "9999", 4, 3, 100)
            .await;
        assert!(matches!(dup, Err(crate::store::StoreError::Conflict(_))));
        assert!(store.spend_signup_sms(&s, "ios", 200).await.unwrap());
        // A second spend based on the same (now stale) read loses the race.
        assert!(!store.spend_signup_sms(&s, "ios", 200).await.unwrap());
        assert!(store.spend_signup_attempt(&s, 201).await.unwrap());
        assert!(!store.spend_signup_attempt(&s, 201).await.unwrap());
        store
            .complete_phone_signup(s.id, &phone, 300)
            .await
            .unwrap();
        let after = store.phone_signup(&phone, &udid).await.unwrap().unwrap();
        assert_eq!(
            (
                after.sms_left,
                after.attempts_left,
                after.last_sms_at,
                after.os.as_str()
            ),
            (3, 2, 200, "ios")
        );
        assert_eq!(after.completed_login.as_deref(), Some(phone.as_str()));
        sqlx::query("DELETE FROM phone_signups WHERE id = ?")
            .bind(s.id)
            .execute(store.pool())
            .await
            .unwrap();
    }
}
