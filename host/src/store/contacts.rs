//! Address books (SPEC §5): every user's contacts, one row per number, with
//! numbers normalised to E.164 without '+' (SPEC §4). Presence builds buddy
//! lists from here; the client API fills it (the CLI does until then).

use serde::Serialize;
use sqlx::Row;

use super::error::{Result, StoreError, is_foreign_key_violation, unique_violation};
use super::{Store, now, validate};

/// One number of one address-book entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub owner: String,
    /// The entry's id on the handset (the number itself when none was given).
    pub contact_id: String,
    pub name: Option<String>,
    /// E.164 without '+'.
    pub number: String,
    /// The service user with this number, if any.
    pub login: Option<String>,
}

/// An address-book entry that is a service user: a member of the owner's
/// buddy list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buddy {
    pub login: String,
    pub name: Option<String>,
    pub number: String,
    pub avatar_updated_at: Option<i64>,
}

/// One change of an address book, as `contact_changes` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactChange {
    pub id: i64,
    pub owner: String,
    /// E.164 without '+' (or a login in generic mode).
    pub number: String,
    /// True when the number left the book.
    pub removed: bool,
}

/// Records a change in the same transaction as the change itself, so that
/// no node misses one.
pub(super) async fn record_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    owner: &str,
    number: &str,
    removed: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO contact_changes (owner, number, removed, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(owner)
    .bind(number)
    .bind(i64::from(removed))
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rows per multi-row INSERT (or ids per `IN` list) when a store function
/// writes many rows at once: with at most 5 columns a row, 2,500 bound
/// parameters a statement, well under SQLite's 32,766 and MySQL's 65,535.
pub(super) const BATCH_ROWS: usize = 500;

/// `(?, ?, ...), (?, ?, ...), ...`: the VALUES of a multi-row INSERT of
/// `rows` rows of `columns` columns.
pub(super) fn values_marks(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row.as_str(); rows].join(", ")
}

/// [`record_change`] for many numbers at once, in this order (ids follow
/// it), [`BATCH_ROWS`] rows a statement.
pub(super) async fn record_changes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    owner: &str,
    changes: &[(&str, bool)],
) -> Result<()> {
    let now = now();
    for batch in changes.chunks(BATCH_ROWS) {
        let sql = format!(
            "INSERT INTO contact_changes (owner, number, removed, created_at) VALUES {}",
            values_marks(batch.len(), 4)
        );
        let mut q = sqlx::query(&sql);
        for (number, removed) in batch {
            q = q
                .bind(owner)
                .bind(*number)
                .bind(i64::from(*removed))
                .bind(now);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Two-digit ITU-T E.164 country calling codes; the rest are one digit (1, 7)
/// or three. Enough to find the country code at the start of a number.
const TWO_DIGIT_CODES: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// The country calling code an E.164 number (without '+') starts with.
pub fn country_code_of(e164: &str) -> Option<&str> {
    if e164.len() < 4 || !e164.bytes().all(|b| b.is_ascii_digit()) || e164.starts_with('0') {
        return None;
    }
    if e164.starts_with('1') || e164.starts_with('7') {
        return Some(&e164[..1]);
    }
    if TWO_DIGIT_CODES.contains(&&e164[..2]) {
        return Some(&e164[..2]);
    }
    Some(&e164[..3])
}

/// SPEC §4: `+` or `00` stripped, `011` stripped, a single leading `0`
/// replaced by the country code, no prefix → country code prepended.
/// Spaces, dashes, dots and brackets are dropped first, as handsets store
/// numbers formatted. `None` when what is left is not a plausible number.
pub fn normalize_number(raw: &str, country_code: &str) -> Option<String> {
    let trimmed = raw.trim();
    let plus = trimmed.starts_with('+');
    let digits: String = trimmed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '/' | '+'))
        .collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let e164 = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else if let Some(rest) = digits.strip_prefix("011") {
        rest.to_string()
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("{country_code}{rest}")
    } else {
        format!("{country_code}{digits}")
    };
    // E.164 allows at most 15 digits; a very short one is a typo or a service code.
    (4..=15).contains(&e164.len()).then_some(e164)
}

impl Store {
    /// Adds a number to `owner`'s address book (already normalised).
    /// `Conflict` if the entry already has it, `NotFound` if there is no
    /// such owner.
    pub async fn add_contact(
        &self,
        owner: &str,
        contact_id: &str,
        name: Option<&str>,
        number: &str,
    ) -> Result<()> {
        validate::optional("name", name, 255)?;
        if contact_id.is_empty() || contact_id.len() > 128 {
            return Err(StoreError::Invalid(
                "contact id must be 1 to 128 characters".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO contacts (owner, contact_id, name, number, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(owner)
        .bind(contact_id)
        .bind(name)
        .bind(number)
        .bind(now())
        .execute(&mut *tx)
        .await;
        match done {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::NotFound(format!("account {owner:?}")));
            }
            Err(e) if unique_violation(&e).is_some() => {
                return Err(StoreError::Conflict(format!(
                    "contact {contact_id:?} with number {number}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        record_change(&mut tx, owner, number, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a number from `owner`'s address book (from every entry that
    /// has it); the number of rows removed.
    pub async fn del_contact(&self, owner: &str, number: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM contacts WHERE owner = ? AND number = ?")
            .bind(owner)
            .bind(number)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            record_change(&mut tx, owner, number, true).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Address-book changes after the one with id `after`, oldest first, at
    /// most `limit`. Whoever serves subscriptions (any node) applies them.
    pub async fn contact_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ContactChange>> {
        let rows = sqlx::query(
            "SELECT id, owner, number, removed FROM contact_changes WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ContactChange {
                    id: r.try_get("id")?,
                    owner: r.try_get("owner")?,
                    number: r.try_get("number")?,
                    removed: r.try_get::<i64, _>("removed")? != 0,
                })
            })
            .collect()
    }

    /// The id of the newest address-book change (0 when there is none).
    pub async fn last_contact_change_id(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM contact_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// Forgets address-book changes older than `before` (Unix seconds):
    /// every node has applied them long since.
    pub async fn purge_contact_changes(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM contact_changes WHERE created_at < ?")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// `owner`'s address book, with the service user behind each number.
    pub async fn list_contacts(&self, owner: &str) -> Result<Vec<Contact>> {
        let rows = sqlx::query(
            "SELECT c.contact_id, c.name, c.number, COALESCE(p.login, a.login) AS login \
             FROM contacts c LEFT JOIN profiles p ON p.phone = c.number \
             LEFT JOIN accounts a ON a.login = c.number \
             WHERE c.owner = ? ORDER BY c.contact_id, c.number",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Contact {
                    owner: owner.to_string(),
                    contact_id: r.try_get("contact_id")?,
                    name: r.try_get("name")?,
                    number: r.try_get("number")?,
                    login: r.try_get("login")?,
                })
            })
            .collect()
    }

    /// `owner`'s buddy list: address-book numbers that belong to service
    /// users (by phone, or by login in generic mode), the owner excluded,
    /// one entry per user.
    pub async fn buddies(&self, owner: &str) -> Result<Vec<Buddy>> {
        let rows = sqlx::query(
            "SELECT COALESCE(p.login, a.login) AS login, c.name, c.number, \
             COALESCE(p.avatar_updated_at, pa.avatar_updated_at) AS avatar \
             FROM contacts c LEFT JOIN profiles p ON p.phone = c.number \
             LEFT JOIN accounts a ON a.login = c.number \
             LEFT JOIN profiles pa ON pa.login = a.login \
             WHERE c.owner = ? AND (p.login IS NOT NULL OR a.login IS NOT NULL) \
             ORDER BY c.contact_id, c.number",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Buddy> = Vec::with_capacity(rows.len());
        for r in &rows {
            let login: String = r.try_get("login")?;
            if login == owner || out.iter().any(|b| b.login == login) {
                continue;
            }
            out.push(Buddy {
                login,
                name: r.try_get("name")?,
                number: r.try_get("number")?,
                avatar_updated_at: r.try_get("avatar")?,
            });
        }
        Ok(out)
    }

    /// Whether `watcher` (by phone or login) is in `owner`'s address book:
    /// the default rule for who may watch `owner`'s presence.
    pub async fn has_in_address_book(&self, owner: &str, watcher: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS hit FROM contacts c WHERE c.owner = ? AND (c.number = ? OR c.number IN \
             (SELECT p.phone FROM profiles p WHERE p.login = ? AND p.phone IS NOT NULL)) LIMIT 1",
        )
        .bind(owner)
        .bind(watcher)
        .bind(watcher)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Accounts created after the one with id `after` (oldest first, at most
    /// `limit`): `(id, login)`. The newest id is where the next call starts.
    pub async fn accounts_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT id, login FROM accounts WHERE id > ? ORDER BY id LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("login")?)))
            .collect()
    }

    /// The highest account id (0 when there is none).
    pub async fn last_account_id(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM accounts")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// Owners of address books that hold one of these users (by phone or
    /// login): whose buddy lists they join.
    pub async fn owners_knowing(&self, logins: &[String]) -> Result<Vec<String>> {
        if logins.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; logins.len()].join(", ");
        let sql = format!(
            "SELECT DISTINCT c.owner FROM contacts c WHERE c.number IN ({marks}) \
             OR c.number IN (SELECT p.phone FROM profiles p WHERE p.login IN ({marks}) \
             AND p.phone IS NOT NULL)"
        );
        let mut q = sqlx::query(&sql);
        for l in logins.iter().chain(logins) {
            q = q.bind(l);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get("owner")?)).collect()
    }

    /// The phone of an account's profile, for normalising its contacts.
    pub async fn phone_of(&self, login: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT phone FROM profiles WHERE login = ?")
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("phone")?,
            None => None,
        })
    }

    /// Avatar last-update time of an account (Unix seconds), if any.
    pub async fn avatar_updated_at(&self, login: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT avatar_updated_at FROM profiles WHERE login = ?")
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("avatar_updated_at")?,
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique, unique_digits};
    use super::*;
    use crate::store::NewAccount;

    #[test]
    fn normalisation_follows_spec_4() {
        assert_eq!(
            normalize_number("0600345698", "48").as_deref(),
            Some("48600345698")
        );
        assert_eq!(
            normalize_number("600456789", "48").as_deref(),
            Some("48600456789")
        );
        assert_eq!(
            normalize_number("+44 20 7946 0958", "48").as_deref(),
            Some("442079460958")
        );
        assert_eq!(
            normalize_number("0044207946", "48").as_deref(),
            Some("44207946")
        );
        assert_eq!(
            normalize_number("01148600111222", "1").as_deref(),
            Some("48600111222")
        );
        assert_eq!(
            normalize_number("(600) 456-789", "48").as_deref(),
            Some("48600456789")
        );
        assert_eq!(normalize_number("abc", "48"), None);
        assert_eq!(normalize_number("", "48"), None);
        assert_eq!(normalize_number("1234567890123456789", "48"), None);
    }

    #[test]
    fn country_codes() {
        assert_eq!(country_code_of("48600111222"), Some("48"));
        assert_eq!(country_code_of("12125550100"), Some("1"));
        assert_eq!(country_code_of("380501234567"), Some("380"));
        assert_eq!(country_code_of("alice"), None);
    }

    async fn account(store: &Store, phone: Option<&str>) -> String {
        let login = unique("pc");
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw-secret-1".into(),
                phone: phone.map(str::to_string),
                ..Default::default()
            })
            .await
            .unwrap();
        login
    }

    #[tokio::test]
    async fn buddies_are_contacts_that_are_users() {
        let store = test_store().await;
        let bob_phone = unique_digits(11);
        let alice = account(&store, None).await;
        let bob = account(&store, Some(&bob_phone)).await;
        let carol = account(&store, None).await;
        store
            .add_contact(&alice, "1", Some("Bob"), &bob_phone)
            .await
            .unwrap();
        store
            .add_contact(&alice, "2", Some("Nobody"), "48999000111")
            .await
            .unwrap();
        // Generic-mode login used as the number.
        store.add_contact(&alice, "3", None, &carol).await.unwrap();
        let conflict = store.add_contact(&alice, "1", None, &bob_phone).await;
        assert!(matches!(conflict, Err(StoreError::Conflict(_))));
        let missing = store
            .add_contact("no-such-owner-x", "1", None, "123456")
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))));

        let buddies = store.buddies(&alice).await.unwrap();
        let logins: Vec<&str> = buddies.iter().map(|b| b.login.as_str()).collect();
        assert_eq!(logins, [bob.as_str(), carol.as_str()]);
        assert_eq!(buddies[0].name.as_deref(), Some("Bob"));
        assert_eq!(store.list_contacts(&alice).await.unwrap().len(), 3);

        assert!(!store.has_in_address_book(&bob, &alice).await.unwrap());
        store.add_contact(&bob, "9", None, &alice).await.unwrap();
        assert!(store.has_in_address_book(&bob, &alice).await.unwrap());
        assert!(store.has_in_address_book(&alice, &bob).await.unwrap());

        let known = store
            .owners_knowing(std::slice::from_ref(&bob))
            .await
            .unwrap();
        assert_eq!(known, vec![alice.clone()]);
        assert!(store.owners_knowing(&[]).await.unwrap().is_empty());
        let last = store.last_account_id().await.unwrap();
        let dave = account(&store, None).await;
        let newer = store.accounts_after(last, 100).await.unwrap();
        // Tests running beside this one on a shared MySQL database add
        // accounts too: dave is among the newer ones, and only newer ones.
        assert!(newer.iter().any(|a| a.1 == dave), "{newer:?}");
        assert!(newer.iter().all(|a| a.0 > last), "{newer:?}");
        store.delete_account(&dave).await.unwrap();

        let before = store.last_contact_change_id().await.unwrap();
        assert_eq!(store.del_contact(&alice, &bob_phone).await.unwrap(), 1);
        assert_eq!(store.del_contact(&alice, &bob_phone).await.unwrap(), 0);
        assert_eq!(store.buddies(&alice).await.unwrap().len(), 1);
        // The removal is recorded once, for the nodes serving subscriptions.
        let changes: Vec<ContactChange> = store
            .contact_changes_after(before, 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.owner == alice)
            .collect();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].removed && changes[0].number == bob_phone);
        for login in [alice, bob, carol] {
            store.delete_account(&login).await.unwrap();
        }
    }
}
