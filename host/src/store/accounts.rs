//! Accounts (SIP credentials, billing settings) with their client profile and
//! voicemail row, created and read together.

use std::fmt;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{Result, StoreError, unique_violation};
use super::{Store, now, validate};

/// Settings every new account starts with (SPEC §2); a configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountTemplate {
    /// Tariff name.
    pub tariff: String,
    /// ISO 4217 currency code of the balance.
    pub currency: String,
    /// Dialing-plan rule, e.g. `DP:int-> OR onnet`.
    pub dialplan_rule: String,
    /// Initial balance in millionths of the currency unit.
    pub balance_micro: i64,
    /// Optional plan name.
    pub plan: Option<String>,
}

impl Default for AccountTemplate {
    fn default() -> Self {
        Self {
            tariff: "default".into(),
            currency: "USD".into(),
            dialplan_rule: "DP:int-> OR onnet".into(),
            balance_micro: 0,
            plan: None,
        }
    }
}

/// Billing and routing settings to change on an existing account; `None`
/// leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    pub tariff: Option<String>,
    pub currency: Option<String>,
    pub dialplan_rule: Option<String>,
    /// `""` removes the plan.
    pub plan: Option<String>,
    /// Seconds the account's devices ring before the routing guest is asked
    /// again (reason `no-answer`): `Some(None)` goes back to the switch-wide
    /// `calls.no_answer_secs`, `Some(Some(0))` rings until the caller gives
    /// up, other values must lie in [`NO_ANSWER_SECS`].
    #[serde(default, deserialize_with = "present")]
    pub no_answer_secs: Option<Option<u32>>,
    /// Whether the account's calls are recorded, and how: `"mixed"` or
    /// `"stereo"`; `Some(None)` records nothing.
    #[serde(default, deserialize_with = "present")]
    pub recording: Option<Option<String>>,
}

/// Checks a recording layout setting: `mixed` (both directions in one
/// channel) or `stereo` (caller left, callee right).
pub fn validate_recording(layout: &str) -> Result<()> {
    layout
        .parse::<media::recording::Layout>()
        .map(|_| ())
        .map_err(StoreError::Invalid)
}

/// The per-account no-answer timeouts allowed besides 0 ("never"): under
/// 5 s a phone barely rings once; past 10 minutes nobody is still waiting.
pub const NO_ANSWER_SECS: std::ops::RangeInclusive<u32> = 5..=600;

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value:
/// serde folds the first two together otherwise.
pub fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Checks a per-account no-answer timeout (see [`AccountSettings`]).
pub fn validate_no_answer_secs(secs: u32) -> Result<()> {
    if secs == 0 || NO_ANSWER_SECS.contains(&secs) {
        return Ok(());
    }
    Err(StoreError::Invalid(format!(
        "no_answer_secs is {secs}: 0 (never) or {} to {} seconds",
        NO_ANSWER_SECS.start(),
        NO_ANSWER_SECS.end()
    )))
}

/// What [`Store::add_account`] needs. Passwords are given in clear; the store
/// encrypts the SIP password and hashes the access password.
#[derive(Clone, Default)]
pub struct NewAccount {
    /// SIP login: non-empty, at most 64 characters, no whitespace, `@` or `:`.
    pub login: String,
    /// SIP password, at most 128 characters.
    pub sip_password: String,
    /// Optional access (web/app) password.
    pub access_password: Option<String>,
    /// Phone number, E.164 without `+`.
    pub phone: Option<String>,
    /// Username (service ID); same character rules as the login.
    pub username: Option<String>,
    /// Display name used as caller ID.
    pub display_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Billing and routing settings.
    pub template: AccountTemplate,
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Passwords stay out of logs.
        f.debug_struct("NewAccount")
            .field("login", &self.login)
            .field("sip_password", &"<redacted>")
            .field(
                "access_password",
                &self.access_password.as_ref().map(|_| "<redacted>"),
            )
            .field("phone", &self.phone)
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("email", &self.email)
            .field("template", &self.template)
            .finish()
    }
}

/// An account as read back: account columns plus the public identities from
/// its profile and whether voicemail is on. Holds no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// SIP login.
    pub login: String,
    /// False until activated (username sign-up) or when disabled.
    pub active: bool,
    /// Tariff name.
    pub tariff: String,
    /// Currency of the balance.
    pub currency: String,
    /// Dialing-plan rule.
    pub dialplan_rule: String,
    /// Balance in millionths of the currency unit.
    pub balance_micro: i64,
    /// Plan name.
    pub plan: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Phone number, E.164 without `+`.
    pub phone: Option<String>,
    /// Username (service ID).
    pub username: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Whether voicemail answers unanswered calls.
    pub voicemail_enabled: bool,
    /// Seconds the account's devices ring before the routing guest is asked
    /// again; `None` means the switch-wide `calls.no_answer_secs`, 0 never.
    pub no_answer_secs: Option<u32>,
    /// Its calls are recorded in this layout (`mixed`, `stereo`).
    pub recording: Option<String>,
}

/// The columns and joins an [`Account`] is read from, after `SELECT `.
macro_rules! account_from {
    () => {
        "a.login, a.active, a.tariff, a.currency, a.dialplan_rule, \
         a.balance_micro, a.plan, a.created_at, a.no_answer_secs, a.recording, \
         p.phone, p.username, p.display_name, p.email, \
         v.enabled AS voicemail_enabled \
         FROM accounts a \
         LEFT JOIN profiles p ON p.login = a.login \
         LEFT JOIN voicemail_settings v ON v.login = a.login"
    };
}

const ACCOUNT_SELECT: &str = concat!("SELECT ", account_from!());

/// The account and its encrypted SIP password in one read: what a digest
/// check followed by the caller's settings needs.
const ACCOUNT_AUTH_SELECT: &str = concat!(
    "SELECT a.sip_password_enc, ",
    account_from!(),
    " WHERE a.login = ?"
);

fn account_from_row(row: &AnyRow) -> Result<Account> {
    Ok(Account {
        login: row.try_get("login")?,
        active: row.try_get::<i64, _>("active")? != 0,
        tariff: row.try_get("tariff")?,
        currency: row.try_get("currency")?,
        dialplan_rule: row.try_get("dialplan_rule")?,
        balance_micro: row.try_get("balance_micro")?,
        plan: row.try_get("plan")?,
        created_at: row.try_get("created_at")?,
        phone: row.try_get("phone")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        // No row means the table default, which is on.
        voicemail_enabled: row
            .try_get::<Option<i64>, _>("voicemail_enabled")?
            .is_none_or(|v| v != 0),
        // Written through the store only, so within u32; anything else is
        // treated as unset rather than failing every read of the account.
        no_answer_secs: row
            .try_get::<Option<i64>, _>("no_answer_secs")?
            .and_then(|v| u32::try_from(v).ok()),
        recording: row.try_get("recording")?,
    })
}

fn validate_new(new: &NewAccount) -> Result<()> {
    validate::identifier("login", &new.login)?;
    validate::required(
        "SIP password",
        &new.sip_password,
        validate::SIP_PASSWORD_MAX,
    )?;
    if let Some(pw) = &new.access_password {
        validate::required("access password", pw, validate::ACCESS_PASSWORD_MAX)?;
    }
    if let Some(phone) = &new.phone {
        validate::phone(phone)?;
    }
    if let Some(username) = &new.username {
        validate::identifier("username", username)?;
    }
    validate::optional("display name", new.display_name.as_deref(), 255)?;
    if let Some(email) = &new.email {
        validate::required("e-mail", email, 254)?;
        if !email.contains('@') || email.chars().any(char::is_whitespace) {
            return Err(StoreError::Invalid(format!(
                "e-mail {email:?} is not an address"
            )));
        }
    }
    let t = &new.template;
    validate::required("tariff", &t.tariff, validate::NAME_MAX)?;
    validate::required("currency", &t.currency, 16)?;
    validate::required("dialplan rule", &t.dialplan_rule, 255)?;
    validate::optional("plan", t.plan.as_deref(), validate::NAME_MAX)?;
    Ok(())
}

/// Names the field a unique violation on account creation is about.
fn conflict_field(key: &str) -> &'static str {
    if key.contains("phone") {
        "phone"
    } else if key.contains("username") {
        "username"
    } else {
        // accounts.login, or a profiles/voicemail primary key, which is the
        // login as well.
        "login"
    }
}

/// argon2id with the crate's default (OWASP-recommended) cost. Runs on the
/// blocking pool: one hash takes tens of milliseconds of CPU.
async fn hash_password(password: String) -> Result<String> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| StoreError::Secret(crate::secrets::SecretError::Rng))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| StoreError::Invalid(format!("password salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Invalid(format!("cannot hash access password: {e}")))
    })
    .await
    .map_err(|e| StoreError::Invalid(format!("password hashing task failed: {e}")))?
}

async fn verify_password(hash: String, password: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| StoreError::Corrupt(format!("access password hash: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| StoreError::Invalid(format!("password check task failed: {e}")))?
}

impl Store {
    /// Creates an account with its profile and voicemail settings (enabled)
    /// in one transaction. A taken login, phone or username gives
    /// [`StoreError::Conflict`] naming it.
    pub async fn add_account(&self, new: &NewAccount) -> Result<Account> {
        validate_new(new)?;
        let sip_enc = self.secrets.try_encrypt(&new.sip_password)?;
        let access_hash = match &new.access_password {
            Some(pw) => Some(hash_password(pw.clone()).await?),
            None => None,
        };
        let created_at = now();
        let t = &new.template;

        // Inserts come first and conflicts are read from the constraint
        // errors: checking with SELECTs first would race with concurrent
        // sign-ups and, on SQLite, turn a read transaction into a writer,
        // which fails with SQLITE_BUSY instead of waiting.
        let result: Result<()> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO accounts (login, sip_password_enc, access_password_hash, active, \
                 tariff, currency, dialplan_rule, balance_micro, plan, created_at) \
                 VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&new.login)
            .bind(&sip_enc)
            .bind(&access_hash)
            .bind(&t.tariff)
            .bind(&t.currency)
            .bind(&t.dialplan_rule)
            .bind(t.balance_micro)
            .bind(&t.plan)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO profiles (login, phone, username, display_name, email) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&new.login)
            .bind(&new.phone)
            .bind(&new.username)
            .bind(&new.display_name)
            .bind(&new.email)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO voicemail_settings (login, enabled, email_copy, updated_at) \
                 VALUES (?, 1, 0, ?)",
            )
            .bind(&new.login)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
            if t.balance_micro != 0 {
                // The ledger invariant: an opening balance is a ledger row.
                sqlx::query(
                    "INSERT INTO ledger (login, kind, amount_micro, balance_after_micro, \
                     currency, reference, actor, created_at) \
                     VALUES (?, 'adjust', ?, ?, ?, 'opening balance', 'system', ?)",
                )
                .bind(&new.login)
                .bind(t.balance_micro)
                .bind(t.balance_micro)
                .bind(&t.currency)
                .bind(created_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;

        match result {
            Ok(()) => {}
            Err(StoreError::Db(e)) => {
                return Err(match unique_violation(&e) {
                    Some(key) => StoreError::Conflict(conflict_field(&key).into()),
                    None => StoreError::Db(e),
                });
            }
            Err(e) => return Err(e),
        }

        Ok(Account {
            login: new.login.clone(),
            active: true,
            tariff: t.tariff.clone(),
            currency: t.currency.clone(),
            dialplan_rule: t.dialplan_rule.clone(),
            balance_micro: t.balance_micro,
            plan: t.plan.clone(),
            created_at,
            phone: new.phone.clone(),
            username: new.username.clone(),
            display_name: new.display_name.clone(),
            email: new.email.clone(),
            voicemail_enabled: true,
            no_answer_secs: None,
            recording: None,
        })
    }

    async fn account_where(&self, condition: &str, value: &str) -> Result<Option<Account>> {
        let sql = format!("{ACCOUNT_SELECT} WHERE {condition} = ?");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    /// The account with this SIP login.
    pub async fn account_by_login(&self, login: &str) -> Result<Option<Account>> {
        self.account_where("a.login", login).await
    }

    /// The account whose profile has this phone number.
    pub async fn account_by_phone(&self, phone: &str) -> Result<Option<Account>> {
        self.account_where("p.phone", phone).await
    }

    /// The account whose profile has this username.
    pub async fn account_by_username(&self, username: &str) -> Result<Option<Account>> {
        self.account_where("p.username", username).await
    }

    /// Accounts in creation order, `limit` of them after skipping `offset`.
    pub async fn list_accounts(&self, limit: u32, offset: u32) -> Result<Vec<Account>> {
        let sql = format!("{ACCOUNT_SELECT} ORDER BY a.id LIMIT ? OFFSET ?");
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// Deletes the account; its profile and voicemail settings go with it.
    /// False if there was no such account.
    pub async fn delete_account(&self, login: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM accounts WHERE login = ?")
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The SIP password in clear, for digest authentication and the login
    /// API.
    pub async fn sip_password(&self, login: &str) -> Result<Option<String>> {
        let enc: Option<String> =
            sqlx::query_scalar("SELECT sip_password_enc FROM accounts WHERE login = ?")
                .bind(login)
                .fetch_optional(&self.pool)
                .await?;
        enc.map(|e| self.secrets.decrypt(&e).map_err(StoreError::from))
            .transpose()
    }

    /// The account with this SIP login and its SIP password, decrypted.
    pub async fn account_with_sip_password(
        &self,
        login: &str,
    ) -> Result<Option<(Account, String)>> {
        let row = self.sip_timed(
            sqlx::query(ACCOUNT_AUTH_SELECT)
                .bind(login)
                .fetch_optional(&self.hot),
        );
        let Some(row) = row.await? else {
            return Ok(None);
        };
        let enc: String = row.try_get("sip_password_enc")?;
        let password = self.secrets.decrypt(&enc)?;
        Ok(Some((account_from_row(&row)?, password)))
    }

    /// Replaces the SIP password. False if there is no such account.
    pub async fn set_sip_password(&self, login: &str, password: &str) -> Result<bool> {
        validate::required("SIP password", password, validate::SIP_PASSWORD_MAX)?;
        let enc = self.secrets.try_encrypt(password)?;
        let done = sqlx::query("UPDATE accounts SET sip_password_enc = ? WHERE login = ?")
            .bind(enc)
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether `password` is the account's access password. False when the
    /// account does not exist or has no access password.
    pub async fn verify_access_password(&self, login: &str, password: &str) -> Result<bool> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT access_password_hash FROM accounts WHERE login = ?")
                .bind(login)
                .fetch_optional(&self.pool)
                .await?;
        match hash.flatten() {
            Some(hash) => verify_password(hash, password.to_owned()).await,
            None => Ok(false),
        }
    }

    /// Sets (or with `None` removes) the access password. False if there is
    /// no such account.
    pub async fn set_access_password(&self, login: &str, password: Option<&str>) -> Result<bool> {
        let hash = match password {
            Some(pw) => {
                validate::required("access password", pw, validate::ACCESS_PASSWORD_MAX)?;
                Some(hash_password(pw.to_owned()).await?)
            }
            None => None,
        };
        let done = sqlx::query("UPDATE accounts SET access_password_hash = ? WHERE login = ?")
            .bind(hash)
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets the access password of an account that has none yet (one made
    /// by phone sign-up); false when it has one (or there is no account).
    /// Conditional, so two requests at once set it once.
    pub async fn set_first_access_password(&self, login: &str, password: &str) -> Result<bool> {
        validate::required("access password", password, validate::ACCESS_PASSWORD_MAX)?;
        let hash = hash_password(password.to_owned()).await?;
        let done = sqlx::query(
            "UPDATE accounts SET access_password_hash = ? WHERE login = ? AND access_password_hash IS NULL",
        )
        .bind(hash)
        .bind(login)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Changes the billing and routing settings given (`None` keeps one; a
    /// `plan` of `Some("")` removes the plan). False if there is no such
    /// account.
    pub async fn update_account_settings(
        &self,
        login: &str,
        settings: &AccountSettings,
    ) -> Result<bool> {
        if let Some(t) = &settings.tariff {
            validate::required("tariff", t, validate::NAME_MAX)?;
        }
        if let Some(c) = &settings.currency {
            validate::required("currency", c, 16)?;
        }
        if let Some(r) = &settings.dialplan_rule {
            validate::required("dialplan rule", r, 255)?;
        }
        if let Some(p) = &settings.plan {
            validate::optional("plan", Some(p.as_str()), validate::NAME_MAX)?;
        }
        if let Some(Some(secs)) = settings.no_answer_secs {
            validate_no_answer_secs(secs)?;
        }
        if let Some(Some(layout)) = &settings.recording {
            validate_recording(layout)?;
        }
        let plan = settings
            .plan
            .as_ref()
            .map(|p| (!p.is_empty()).then(|| p.clone()));
        // COALESCE keeps a column whose new value is NULL ("not given"); the
        // plan and the no-answer timeout, which may be set to NULL, get a
        // flag of their own.
        let done = sqlx::query(
            "UPDATE accounts SET tariff = COALESCE(?, tariff), currency = COALESCE(?, currency), \
             dialplan_rule = COALESCE(?, dialplan_rule), \
             plan = CASE WHEN ? = 1 THEN ? ELSE plan END, \
             no_answer_secs = CASE WHEN ? = 1 THEN ? ELSE no_answer_secs END, \
             recording = CASE WHEN ? = 1 THEN ? ELSE recording END WHERE login = ?",
        )
        .bind(&settings.tariff)
        .bind(&settings.currency)
        .bind(&settings.dialplan_rule)
        .bind(i64::from(plan.is_some()))
        .bind(plan.flatten())
        .bind(i64::from(settings.no_answer_secs.is_some()))
        .bind(settings.no_answer_secs.flatten().map(i64::from))
        .bind(i64::from(settings.recording.is_some()))
        .bind(settings.recording.clone().flatten())
        .bind(login)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets the balance (millionths of the currency unit) through an
    /// `adjust` ledger row of the difference (see [`super::billing`]).
    /// False if there is no such account.
    pub async fn set_balance(&self, login: &str, balance_micro: i64) -> Result<bool> {
        use super::billing::BillingError;
        match self
            .set_balance_recorded(login, balance_micro, Some("admin"), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(BillingError::NoAccount(_)) => Ok(false),
            Err(BillingError::Store(e)) => Err(e),
            Err(e) => Err(StoreError::Invalid(e.to_string())),
        }
    }

    /// Activates or deactivates the account. False if there is no such
    /// account.
    pub async fn set_account_active(&self, login: &str, active: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE accounts SET active = ? WHERE login = ?")
            .bind(i64::from(active))
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique, unique_digits};
    use super::*;

    fn new_account(login: &str) -> NewAccount {
        NewAccount {
            login: login.into(),
            sip_password: "sip-secret-1".into(),
            access_password: Some("web-secret-1".into()),
            phone: None,
            username: None,
            display_name: Some("Alice".into()),
            email: Some("alice@example.org".into()),
            template: AccountTemplate::default(),
        }
    }

    #[tokio::test]
    async fn add_get_list_delete() {
        let store = test_store().await;
        let login = unique("acct");
        let phone = unique_digits(12);
        let username = unique("user");
        let mut new = new_account(&login);
        new.phone = Some(phone.clone());
        new.username = Some(username.clone());
        new.template.balance_micro = 1_500_000;
        new.template.plan = Some("gold".into());

        let added = store.add_account(&new).await.unwrap();
        let by_login = store.account_by_login(&login).await.unwrap().unwrap();
        let by_phone = store.account_by_phone(&phone).await.unwrap().unwrap();
        let by_username = store.account_by_username(&username).await.unwrap().unwrap();
        let listed = store.list_accounts(100_000, 0).await.unwrap();
        let first = store.list_accounts(1, 0).await.unwrap();
        let past_end = store.list_accounts(10, u32::MAX).await.unwrap();
        let deleted = store.delete_account(&login).await.unwrap();
        let deleted_again = store.delete_account(&login).await.unwrap();
        let after = store.account_by_login(&login).await.unwrap();

        assert_eq!(added, by_login);
        assert_eq!(by_login, by_phone);
        assert_eq!(by_login, by_username);
        assert!(by_login.active && by_login.voicemail_enabled);
        assert_eq!(by_login.tariff, "default");
        assert_eq!(by_login.currency, "USD");
        assert_eq!(by_login.dialplan_rule, "DP:int-> OR onnet");
        assert_eq!(by_login.balance_micro, 1_500_000);
        assert_eq!(by_login.plan.as_deref(), Some("gold"));
        assert_eq!(by_login.display_name.as_deref(), Some("Alice"));
        assert_eq!(by_login.email.as_deref(), Some("alice@example.org"));
        assert!(by_login.created_at > 1_600_000_000);
        assert!(listed.contains(&by_login));
        assert_eq!(first.len(), 1);
        assert!(past_end.is_empty());
        assert!(deleted && !deleted_again);
        assert!(after.is_none());
        assert!(store.account_by_phone(&phone).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn settings_and_balance_change_what_is_given() {
        let store = test_store().await;
        let login = unique("set");
        let mut new = new_account(&login);
        new.template.plan = Some("gold".into());
        store.add_account(&new).await.unwrap();
        let changed = store
            .update_account_settings(
                &login,
                &AccountSettings {
                    tariff: Some("premium".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let after_tariff = store.account_by_login(&login).await.unwrap().unwrap();
        store
            .update_account_settings(
                &login,
                &AccountSettings {
                    plan: Some(String::new()),
                    currency: Some("EUR".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let balance = store.set_balance(&login, -2_500_000).await.unwrap();
        let after = store.account_by_login(&login).await.unwrap().unwrap();
        let unknown = store.set_balance(&unique("none"), 1).await.unwrap();
        let bad = store
            .update_account_settings(
                &login,
                &AccountSettings {
                    tariff: Some(String::new()),
                    ..Default::default()
                },
            )
            .await;
        store.delete_account(&login).await.unwrap();

        assert!(changed && balance && !unknown);
        assert_eq!(after_tariff.tariff, "premium");
        assert_eq!(after_tariff.plan.as_deref(), Some("gold"));
        assert_eq!(after_tariff.currency, "USD");
        assert_eq!(after.plan, None);
        assert_eq!(after.currency, "EUR");
        assert_eq!(after.tariff, "premium");
        assert_eq!(after.balance_micro, -2_500_000);
        assert!(matches!(bad, Err(StoreError::Invalid(_))));
    }

    #[tokio::test]
    async fn call_recording_is_switched_on_in_a_layout_and_off() {
        let store = test_store().await;
        let login = unique("rec");
        store.add_account(&new_account(&login)).await.unwrap();
        let set = |layout: Option<&str>| AccountSettings {
            recording: Some(layout.map(str::to_owned)),
            ..Default::default()
        };
        let fresh = store.account_by_login(&login).await.unwrap().unwrap();
        store
            .update_account_settings(&login, &set(Some("stereo")))
            .await
            .unwrap();
        let stereo = store.account_by_login(&login).await.unwrap().unwrap();
        let bad = store
            .update_account_settings(&login, &set(Some("surround")))
            .await;
        store
            .update_account_settings(&login, &set(None))
            .await
            .unwrap();
        let off = store.account_by_login(&login).await.unwrap().unwrap();
        store.delete_account(&login).await.unwrap();
        assert_eq!(fresh.recording, None);
        assert_eq!(stereo.recording.as_deref(), Some("stereo"));
        assert!(matches!(bad, Err(StoreError::Invalid(_))));
        assert_eq!(off.recording, None);
    }

    #[tokio::test]
    async fn the_no_answer_timeout_is_set_bounded_and_reset() {
        let store = test_store().await;
        let login = unique("noans");
        store.add_account(&new_account(&login)).await.unwrap();
        let set = |secs: Option<u32>| AccountSettings {
            no_answer_secs: Some(secs),
            ..Default::default()
        };
        let fresh = store.account_by_login(&login).await.unwrap().unwrap();
        store
            .update_account_settings(&login, &set(Some(12)))
            .await
            .unwrap();
        let twelve = store.account_by_login(&login).await.unwrap().unwrap();
        // Other settings leave it alone.
        store
            .update_account_settings(
                &login,
                &AccountSettings {
                    tariff: Some("premium".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let kept = store
            .account_with_sip_password(&login)
            .await
            .unwrap()
            .unwrap()
            .0;
        let too_short = store.update_account_settings(&login, &set(Some(4))).await;
        let too_long = store.update_account_settings(&login, &set(Some(601))).await;
        store
            .update_account_settings(&login, &set(Some(0)))
            .await
            .unwrap();
        let never = store.account_by_login(&login).await.unwrap().unwrap();
        store
            .update_account_settings(&login, &set(None))
            .await
            .unwrap();
        let reset = store.account_by_login(&login).await.unwrap().unwrap();
        store.delete_account(&login).await.unwrap();

        assert_eq!(fresh.no_answer_secs, None);
        assert_eq!(twelve.no_answer_secs, Some(12));
        assert_eq!(kept.no_answer_secs, Some(12));
        assert!(matches!(too_short, Err(StoreError::Invalid(_))));
        assert!(matches!(too_long, Err(StoreError::Invalid(_))));
        assert_eq!(never.no_answer_secs, Some(0));
        assert_eq!(reset.no_answer_secs, None);
        let parsed: AccountSettings = serde_json::from_str(r#"{"no_answer_secs": null}"#).unwrap();
        assert_eq!(parsed.no_answer_secs, Some(None));
        let absent: AccountSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.no_answer_secs, None);
    }

    #[tokio::test]
    async fn conflicts() {
        let store = test_store().await;
        let (a, b, c, d) = (unique("ca"), unique("cb"), unique("cc"), unique("cd"));
        let phone = unique_digits(13);
        let username = unique("cuser");
        let mut first = new_account(&a);
        first.phone = Some(phone.clone());
        first.username = Some(username.clone());
        store.add_account(&first).await.unwrap();

        let same_login = store.add_account(&new_account(&a)).await;
        let mut p = new_account(&b);
        p.phone = Some(phone.clone());
        let same_phone = store.add_account(&p).await;
        let mut u = new_account(&c);
        u.username = Some(username.clone());
        let same_username = store.add_account(&u).await;
        // Accounts without phone or username do not collide on NULL.
        let plain1 = store.add_account(&new_account(&d)).await;
        let plain2 = store.add_account(&new_account(&b)).await;
        // A failed insert must not leave a half-made account behind.
        let c_exists = store.account_by_login(&c).await.unwrap();

        for login in [&a, &b, &c, &d] {
            store.delete_account(login).await.unwrap();
        }
        assert!(matches!(same_login, Err(StoreError::Conflict(ref w)) if w == "login"));
        assert!(matches!(same_phone, Err(StoreError::Conflict(ref w)) if w == "phone"));
        assert!(matches!(same_username, Err(StoreError::Conflict(ref w)) if w == "username"));
        plain1.unwrap();
        plain2.unwrap();
        assert!(c_exists.is_none());
    }

    #[tokio::test]
    async fn invalid_input() {
        let store = test_store().await;
        for login in ["", "has space", "a@b", "a:b", &"x".repeat(65)] {
            let r = store.add_account(&new_account(login)).await;
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{login:?}");
        }
        let mut bad_phone = new_account(&unique("inv"));
        bad_phone.phone = Some("+48600".into());
        assert!(matches!(
            store.add_account(&bad_phone).await,
            Err(StoreError::Invalid(_))
        ));
        let mut no_pw = new_account(&unique("inv"));
        no_pw.sip_password.clear();
        assert!(matches!(
            store.add_account(&no_pw).await,
            Err(StoreError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn sip_password_encrypted_at_rest() {
        let store = test_store().await;
        let login = unique("enc");
        store.add_account(&new_account(&login)).await.unwrap();
        let raw: String =
            sqlx::query_scalar("SELECT sip_password_enc FROM accounts WHERE login = ?")
                .bind(&login)
                .fetch_one(store.pool())
                .await
                .unwrap();
        let clear = store.sip_password(&login).await.unwrap();
        let changed = store
            .set_sip_password(&login, "sip-secret-2")
            .await
            .unwrap();
        let clear2 = store.sip_password(&login).await.unwrap();
        let missing = store.sip_password(&unique("none")).await.unwrap();
        store.delete_account(&login).await.unwrap();

        assert!(!raw.contains("sip-secret-1"));
        assert!(raw.starts_with("v1:"));
        assert_eq!(clear.as_deref(), Some("sip-secret-1"));
        assert!(changed);
        assert_eq!(clear2.as_deref(), Some("sip-secret-2"));
        assert!(missing.is_none());
    }

    #[tokio::test]
    async fn account_and_sip_password_in_one_read() {
        let store = test_store().await;
        let login = unique("both");
        store.add_account(&new_account(&login)).await.unwrap();
        let (account, password) = store
            .account_with_sip_password(&login)
            .await
            .unwrap()
            .expect("the account exists");
        let alone = store.account_by_login(&login).await.unwrap();
        let missing = store
            .account_with_sip_password(&unique("none"))
            .await
            .unwrap();
        store.delete_account(&login).await.unwrap();

        assert_eq!(password, "sip-secret-1");
        assert_eq!(Some(account), alone, "the same account as the plain read");
        assert!(missing.is_none());
    }

    #[tokio::test]
    async fn access_password() {
        let store = test_store().await;
        let login = unique("acc");
        let no_pw_login = unique("acn");
        store.add_account(&new_account(&login)).await.unwrap();
        let mut no_pw = new_account(&no_pw_login);
        no_pw.access_password = None;
        store.add_account(&no_pw).await.unwrap();

        let raw: Option<String> =
            sqlx::query_scalar("SELECT access_password_hash FROM accounts WHERE login = ?")
                .bind(&login)
                .fetch_one(store.pool())
                .await
                .unwrap();
        let right = store
            .verify_access_password(&login, "web-secret-1")
            .await
            .unwrap();
        let wrong = store
            .verify_access_password(&login, "web-secret-2")
            .await
            .unwrap();
        let none_set = store
            .verify_access_password(&no_pw_login, "")
            .await
            .unwrap();
        let unknown = store
            .verify_access_password(&unique("nobody"), "web-secret-1")
            .await
            .unwrap();
        store
            .set_access_password(&no_pw_login, Some("later"))
            .await
            .unwrap();
        let set_later = store
            .verify_access_password(&no_pw_login, "later")
            .await
            .unwrap();
        store.delete_account(&login).await.unwrap();
        store.delete_account(&no_pw_login).await.unwrap();

        let raw = raw.unwrap();
        assert!(raw.starts_with("$argon2id$"), "{raw}");
        assert!(!raw.contains("web-secret-1"));
        assert!(right && !wrong && !none_set && !unknown && set_later);
    }

    #[tokio::test]
    async fn activation() {
        let store = test_store().await;
        let login = unique("act");
        store.add_account(&new_account(&login)).await.unwrap();
        let off = store.set_account_active(&login, false).await.unwrap();
        let inactive = store.account_by_login(&login).await.unwrap().unwrap();
        let missing = store
            .set_account_active(&unique("none"), true)
            .await
            .unwrap();
        store.delete_account(&login).await.unwrap();
        assert!(off && !inactive.active && !missing);
    }

    #[tokio::test]
    async fn cascade_delete() {
        let store = test_store().await;
        let login = unique("cas");
        let mut new = new_account(&login);
        new.phone = Some(unique_digits(14));
        store.add_account(&new).await.unwrap();
        let count = |table: &'static str| {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE login = ?");
            let login = login.clone();
            let pool = store.pool().clone();
            async move {
                sqlx::query_scalar::<_, i64>(&sql)
                    .bind(login)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let before = (count("profiles").await, count("voicemail_settings").await);
        store.delete_account(&login).await.unwrap();
        let after = (count("profiles").await, count("voicemail_settings").await);
        assert_eq!(before, (1, 1));
        assert_eq!(after, (0, 0));
    }

    #[test]
    fn template_from_toml_style_serde() {
        let t: AccountTemplate =
            serde_json::from_str(r#"{"tariff":"pro","balance_micro":5}"#).unwrap();
        assert_eq!(t.tariff, "pro");
        assert_eq!(t.currency, "USD");
        assert_eq!(t.balance_micro, 5);
        assert!(serde_json::from_str::<AccountTemplate>(r#"{"tarif":"x"}"#).is_err());
    }

    #[test]
    fn debug_hides_passwords() {
        let shown = format!("{:?}", new_account("x"));
        assert!(!shown.contains("sip-secret-1") && !shown.contains("web-secret-1"));
    }
}
