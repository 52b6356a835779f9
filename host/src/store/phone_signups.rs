//! Phone sign-up requests (SPEC §3): one row per phone number and device,
//! with the code, the SMS and attempt allowances, and the account it led to.
//! An account adding a number to itself (`api::phone_add`) proves it with
//! the same rows, keyed also by its login (`for_login`; empty for a sign-up).
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
    /// The account adding the number to itself; empty for a sign-up.
    pub for_login: String,
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
        for_login: row.try_get("for_login")?,
    })
}

const COLUMNS: &str = "id, phone, udid, os, code, sms_left, attempts_left, last_sms_at, sms_id, \
     completed_login, call_status, for_login";

impl Store {
    /// The sign-up request of this phone and device, if any.
    pub async fn phone_signup(&self, phone: &str, udid: &str) -> Result<Option<PhoneSignup>> {
        self.phone_request(phone, udid, "").await
    }

    /// The request of this phone and device made for `for_login` (empty:
    /// the sign-up request), if any.
    pub async fn phone_request(
        &self,
        phone: &str,
        udid: &str,
        for_login: &str,
    ) -> Result<Option<PhoneSignup>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM phone_signups WHERE phone = ? AND udid = ? AND for_login = ?"
        ))
        .bind(phone)
        .bind(udid)
        .bind(for_login)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records a new request (for `for_login`, empty for a sign-up) whose
    /// first SMS is being sent at `now`. A concurrent request for the same
    /// device gives [`StoreError::Conflict`].
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_phone_signup(
        &self,
        phone: &str,
        udid: &str,
        for_login: &str,
        os: &str,
        code: &str,
        sms_left: i64,
        attempts_left: i64,
        now: i64,
    ) -> Result<PhoneSignup> {
        let done = sqlx::query(
            "INSERT INTO phone_signups (phone, udid, for_login, os, code, sms_left, attempts_left, \
             last_sms_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(phone)
        .bind(udid)
        .bind(for_login)
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
        self.phone_request(phone, udid, for_login)
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

    /// Makes `phone` the phone of `login`'s profile, if its phone is still
    /// `old` (what the caller read): false when it changed meanwhile (or
    /// there is no such profile). A number another account holds gives
    /// [`StoreError::Conflict`]`("phone")` (the unique index decides, so
    /// two accounts verifying one number at once cannot both get it).
    ///
    /// In the same transaction, the address books holding either number
    /// are recorded as changed (`contact_changes`; the old number's as a
    /// removal), so presence's buddy lists and authorisations follow on
    /// every node, as after an upload.
    pub async fn replace_account_phone(
        &self,
        login: &str,
        old: Option<&str>,
        phone: &str,
    ) -> Result<bool> {
        super::validate::phone(phone)?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE profiles SET phone = ? WHERE login = ? \
             AND (phone = ? OR (phone IS NULL AND ? IS NULL))",
        )
        .bind(phone)
        .bind(login)
        .bind(old)
        .bind(old)
        .execute(&mut *tx)
        .await;
        match done {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => return Ok(false),
            Err(e) if unique_violation(&e).is_some() => {
                return Err(StoreError::Conflict("phone".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let numbers = old.map(|o| (o, true)).into_iter().chain([(phone, false)]);
        for (number, removed) in numbers {
            let owners: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT owner FROM contacts WHERE number = ? AND owner <> ? ORDER BY owner",
            )
            .bind(number)
            .bind(login)
            .fetch_all(&mut *tx)
            .await?;
            for owner in owners {
                super::contacts::record_change(&mut tx, &owner, number, removed).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique, unique_digits};
    use crate::store::{NewAccount, StoreError};

    #[tokio::test]
    async fn allowances_are_spent_once() {
        let store = test_store().await;
        let phone = unique_digits(12);
        let udid = unique("dev");
        let s = store
            .insert_phone_signup(&phone, &udid, "", "android", "1234", 4, 3, 100)
            .await
            .unwrap();
        let dup = store
            .insert_phone_signup(&phone, &udid, "", "android", "9999", 4, 3, 100)
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

    #[tokio::test]
    async fn an_account_adding_a_number_has_its_own_request() {
        let store = test_store().await;
        let phone = unique_digits(12);
        let udid = unique("dev");
        let login = unique("pa");
        let signup = store
            .insert_phone_signup(&phone, &udid, "", "android", "1111", 4, 3, 100)
            .await
            .unwrap();
        let add = store
            .insert_phone_signup(&phone, &udid, &login, "", "2222", 4, 3, 100)
            .await
            .unwrap();
        assert_ne!(signup.id, add.id);
        assert_eq!(add.for_login, login);
        let read = |for_login: String| {
            let (store, phone, udid) = (&store, &phone, &udid);
            async move {
                store
                    .phone_request(phone, udid, &for_login)
                    .await
                    .unwrap()
                    .map(|r| r.code)
            }
        };
        assert_eq!(read(login.clone()).await.as_deref(), Some("2222"));
        assert_eq!(read(String::new()).await.as_deref(), Some("1111"));
        assert_eq!(read(unique("pb")).await, None, "another account's");
        assert_eq!(
            store.phone_signup(&phone, &udid).await.unwrap().unwrap().id,
            signup.id
        );
        sqlx::query("DELETE FROM phone_signups WHERE phone = ?")
            .bind(&phone)
            .execute(store.pool())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_phone_is_replaced_only_if_unchanged_and_free() {
        let store = test_store().await;
        let (a, b) = (unique("ra"), unique("rb"));
        let (p1, p2) = (unique_digits(12), unique_digits(12));
        for login in [&a, &b] {
            store
                .add_account(&NewAccount {
                    login: login.clone(),
                    sip_password: "pw".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let phone = |login: String| {
            let store = &store;
            async move { store.account_by_login(&login).await.unwrap().unwrap().phone }
        };
        // From no phone to p1; a stale read (no phone) changes nothing.
        assert!(store.replace_account_phone(&a, None, &p1).await.unwrap());
        assert!(!store.replace_account_phone(&a, None, &p2).await.unwrap());
        assert_eq!(phone(a.clone()).await.as_deref(), Some(p1.as_str()));
        // Another account cannot take p1.
        let taken = store.replace_account_phone(&b, None, &p1).await;
        assert!(matches!(taken, Err(StoreError::Conflict(ref w)) if w == "phone"));
        assert_eq!(phone(b.clone()).await, None);
        // Replaced: p1 is free again, and a book holding either number is
        // recorded as changed (p1 left it).
        let owner = unique("ro");
        store
            .add_account(&NewAccount {
                login: owner.clone(),
                sip_password: "pw".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        store.add_contact(&owner, "x", None, &p1).await.unwrap();
        store.add_contact(&owner, "y", None, &p2).await.unwrap();
        let before = store.last_contact_change_id().await.unwrap();
        assert!(
            store
                .replace_account_phone(&a, Some(&p1), &p2)
                .await
                .unwrap()
        );
        let changes: Vec<(String, bool)> = store
            .contact_changes_after(before, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.owner == owner)
            .map(|c| (c.number, c.removed))
            .collect();
        assert_eq!(changes, [(p1.clone(), true), (p2.clone(), false)]);
        store.delete_account(&owner).await.unwrap();
        assert!(store.replace_account_phone(&b, None, &p1).await.unwrap());
        assert_eq!(
            store.account_by_phone(&p1).await.unwrap().map(|x| x.login),
            Some(b.clone())
        );
        assert!(matches!(
            store.replace_account_phone(&a, Some(&p2), "+48").await,
            Err(StoreError::Invalid(_))
        ));
        assert!(
            !store
                .replace_account_phone("nobody-here", None, &unique_digits(12))
                .await
                .unwrap()
        );
        for login in [&a, &b] {
            store.delete_account(login).await.unwrap();
        }
    }
}
