//! A user joined (SPEC §5, the seed's "New RCS contact"): every address
//! book holding their number is told, with a `contacts-add` system command
//! (never pushed) and a "user joined" text sent on the new user's behalf
//! (pushed like any text); a user leaving sends `contacts-del`. The
//! messages are stored deferred, in one transaction, before anyone is told:
//! owners that are offline get them when a device registers.

use sqlx::Row;

use super::error::Result;
use super::messages::{MessageStatus, NewMessage, StoredMessage};
use super::{Store, now};

/// Content type of system commands (SPEC §5).
pub const SYSTEM_COMMAND_TYPE: &str = "application/vnd.softswitch.command+json";

/// The text of the "user joined" message.
pub const JOINED_TEXT: &str = "I joined. Call or text me here for free.";

/// The body of a `contacts-add` / `contacts-del` command: the entry's id
/// on the owner's handset, the number, the login, the new user's OS (the
/// seed's `id`, `n`, `l`, `os`).
pub fn contacts_command(
    command: &str,
    contact_id: &str,
    number: &str,
    login: &str,
    os: &str,
) -> Vec<u8> {
    serde_json::json!({
        "command": command,
        "id": contact_id,
        "n": number,
        "l": login,
        "os": os,
    })
    .to_string()
    .into_bytes()
}

impl Store {
    /// The address-book entries (owner, contact id) holding `number`,
    /// `login`'s own excepted.
    async fn entries_holding(&self, number: &str, login: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT owner, contact_id FROM contacts WHERE number = ? AND owner <> ? ORDER BY owner, contact_id",
        )
        .bind(number)
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("owner")?, r.try_get("contact_id")?)))
            .collect()
    }

    /// Stores, deferred, what `login` joining with `phone` tells the owners
    /// of the books holding it: per entry a `contacts-add` command, and per
    /// owner one "user joined" text from `login`. The stored messages.
    pub async fn announce_join(
        &self,
        login: &str,
        name: Option<&str>,
        phone: &str,
        os: &str,
    ) -> Result<Vec<StoredMessage>> {
        let entries = self.entries_holding(phone, login).await?;
        let mut messages = Vec::new();
        let mut last_owner: Option<&str> = None;
        for (owner, contact_id) in &entries {
            messages.push(NewMessage {
                sender: login.to_string(),
                sender_name: name.map(str::to_string),
                recipient: owner.clone(),
                content_type: SYSTEM_COMMAND_TYPE.into(),
                body: contacts_command("contacts-add", contact_id, phone, login, os),
                system: true,
            });
            if last_owner != Some(owner.as_str()) {
                messages.push(NewMessage {
                    sender: login.to_string(),
                    sender_name: name.map(str::to_string),
                    recipient: owner.clone(),
                    content_type: "text/plain".into(),
                    body: JOINED_TEXT.as_bytes().to_vec(),
                    system: false,
                });
                last_owner = Some(owner);
            }
        }
        self.store_deferred(messages).await
    }

    /// Stores, deferred, a `contacts-del` command for every entry holding
    /// `phone` (`login` is leaving). The stored messages.
    pub async fn announce_leave(&self, login: &str, phone: &str) -> Result<Vec<StoredMessage>> {
        let entries = self.entries_holding(phone, login).await?;
        let messages = entries
            .iter()
            .map(|(owner, contact_id)| NewMessage {
                sender: login.to_string(),
                sender_name: None,
                recipient: owner.clone(),
                content_type: SYSTEM_COMMAND_TYPE.into(),
                body: contacts_command("contacts-del", contact_id, phone, login, ""),
                system: true,
            })
            .collect();
        self.store_deferred(messages).await
    }

    /// Deletes an account, first telling the books holding its phone
    /// (`contacts-del`); false when there was no such account.
    pub async fn remove_account(&self, login: &str) -> Result<bool> {
        if let Some(phone) = self.phone_of(login).await? {
            self.announce_leave(login, &phone).await?;
        }
        self.delete_account(login).await
    }

    async fn store_deferred(&self, messages: Vec<NewMessage>) -> Result<Vec<StoredMessage>> {
        let mut tx = self.pool.begin().await?;
        let t = now();
        let mut stored = Vec::with_capacity(messages.len());
        for m in messages {
            let done = sqlx::query(
                "INSERT INTO messages (sender, sender_name, recipient, content_type, body, status, \
                 is_system, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&m.sender)
            .bind(&m.sender_name)
            .bind(&m.recipient)
            .bind(&m.content_type)
            .bind(&m.body)
            .bind(MessageStatus::Deferred.as_str())
            .bind(i64::from(m.system))
            .bind(t)
            .bind(t)
            .execute(&mut *tx)
            .await?;
            let id = super::messages::last_insert_id(&mut tx, &done).await?;
            stored.push(StoredMessage {
                id,
                message: m,
                status: MessageStatus::Deferred,
                created_at: t,
            });
        }
        tx.commit().await?;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::super::accounts::NewAccount;
    use super::super::testutil::{test_store, unique, unique_digits};
    use super::*;

    #[tokio::test]
    async fn the_books_holding_a_new_number_get_a_command_per_entry_and_one_text() {
        let store = test_store().await;
        let (owner, other, new) = (unique("jo"), unique("jt"), unique("jn"));
        let phone = unique_digits(11);
        for login in [&owner, &other, &new] {
            store
                .add_account(&NewAccount {
                    login: login.clone(),
                    sip_password: "pw".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        store
            .add_contact(&owner, "home", Some("Dora"), &phone)
            .await
            .unwrap();
        store
            .add_contact(&owner, "work", None, &phone)
            .await
            .unwrap();
        store
            .add_contact(&other, "x", None, &unique_digits(11))
            .await
            .unwrap();
        let joined = store
            .announce_join(&new, Some("Dora D."), &phone, "ios")
            .await
            .unwrap();
        let left = store.announce_leave(&new, &phone).await.unwrap();
        let deferred = store.deferred_messages(&owner, 100).await.unwrap();
        for login in [&owner, &other, &new] {
            store.delete_account(login).await.unwrap();
        }
        let bodies: Vec<String> = joined
            .iter()
            .map(|m| String::from_utf8_lossy(&m.message.body).into_owned())
            .collect();
        assert_eq!(joined.len(), 3, "{bodies:?}");
        assert!(
            joined
                .iter()
                .all(|m| m.message.recipient == owner && m.message.sender == new)
        );
        assert!(
            bodies[0].contains("\"command\":\"contacts-add\"")
                && bodies[0].contains("\"id\":\"home\"")
        );
        assert_eq!(bodies[1], JOINED_TEXT);
        assert!(bodies[2].contains("\"id\":\"work\"") && bodies[2].contains("\"os\":\"ios\""));
        assert_eq!(left.len(), 2);
        assert!(left.iter().all(|m| m.message.system));
        assert_eq!(deferred.len(), 5, "stored deferred");
    }
}
