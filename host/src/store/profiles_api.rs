//! The client profile as the API shows and edits it (SPEC §2).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::Store;
use super::error::{Result, StoreError, unique_violation};

/// The profile fields of SPEC §2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub login: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub sex: Option<String>,
    pub birthday: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub time_zone: Option<String>,
    pub language: Option<String>,
    pub email: Option<String>,
    pub avatar_updated_at: Option<i64>,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub sex: Option<String>,
    pub birthday: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub time_zone: Option<String>,
    pub language: Option<String>,
    pub email: Option<String>,
    /// The service ID: settable once, never changed.
    pub username: Option<String>,
}

/// Columns an update may set, in the order of [`ProfileUpdate::values`].
const EDITABLE: [&str; 10] = [
    "display_name",
    "first_name",
    "last_name",
    "sex",
    "birthday",
    "city",
    "country",
    "time_zone",
    "language",
    "email",
];

impl ProfileUpdate {
    fn values(&self) -> [&Option<String>; 10] {
        [
            &self.display_name,
            &self.first_name,
            &self.last_name,
            &self.sex,
            &self.birthday,
            &self.city,
            &self.country,
            &self.time_zone,
            &self.language,
            &self.email,
        ]
    }
}

impl Store {
    /// The profile of `login`.
    pub async fn profile(&self, login: &str) -> Result<Option<Profile>> {
        let row = sqlx::query(
            "SELECT login, username, phone, display_name, first_name, last_name, sex, birthday, \
             city, country, time_zone, language, email, avatar_updated_at FROM profiles WHERE login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Profile {
            login: row.try_get("login")?,
            username: row.try_get("username")?,
            phone: row.try_get("phone")?,
            display_name: row.try_get("display_name")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            sex: row.try_get("sex")?,
            birthday: row.try_get("birthday")?,
            city: row.try_get("city")?,
            country: row.try_get("country")?,
            time_zone: row.try_get("time_zone")?,
            language: row.try_get("language")?,
            email: row.try_get("email")?,
            avatar_updated_at: row.try_get("avatar_updated_at")?,
        }))
    }

    /// Applies `update`. The username is set only if there is none yet:
    /// [`StoreError::Conflict`] `"username"` when it is taken, `"username set"`
    /// when the profile already has one.
    pub async fn update_profile(&self, login: &str, update: &ProfileUpdate) -> Result<()> {
        for (column, value) in EDITABLE.iter().zip(update.values()) {
            if let Some(v) = value {
                if v.chars().count() > 255 || v.chars().any(char::is_control) {
                    return Err(StoreError::Invalid(format!(
                        "{column} must be at most 255 printable characters"
                    )));
                }
                // The column name comes from EDITABLE, never from the request.
                sqlx::query(&format!("UPDATE profiles SET {column} = ? WHERE login = ?"))
                    .bind(v)
                    .bind(login)
                    .execute(&self.pool)
                    .await?;
            }
        }
        if let Some(username) = &update.username {
            let done = sqlx::query(
                "UPDATE profiles SET username = ? WHERE login = ? AND username IS NULL",
            )
            .bind(username)
            .bind(login)
            .execute(&self.pool)
            .await;
            match done {
                Ok(d) if d.rows_affected() == 1 => {}
                Ok(_) => return Err(StoreError::Conflict("username set".into())),
                Err(e) if unique_violation(&e).is_some() => {
                    return Err(StoreError::Conflict("username".into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// One search hit of "find friends": public fields only (no phone, e-mail or
/// anything secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundUser {
    pub login: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub avatar_updated_at: Option<i64>,
}

/// `word` as a LIKE prefix pattern, its wildcards escaped with `!` (an
/// escape character both SQLite and MySQL take in an `ESCAPE` clause).
fn like_prefix(word: &str) -> String {
    let mut p = String::with_capacity(word.len() + 2);
    for c in word.chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    /// Find friends (SPEC §5): active accounts every word of `query` matches
    /// as the start of their username, first name or last name, ignoring case
    /// ("ada lov" finds Ada Lovelace), `exclude` left out, at most `limit`,
    /// by username then login.
    ///
    /// Lower-casing is the database's `LOWER`, which on SQLite folds ASCII
    /// only. The match is a scan of the profiles bounded by `limit`: prefix
    /// LIKE on lower-cased columns uses no index on either backend.
    pub async fn search_users(
        &self,
        query: &str,
        exclude: &str,
        limit: u32,
    ) -> Result<Vec<FoundUser>> {
        let words: Vec<String> = query
            .split_whitespace()
            .take(4)
            .map(|w| like_prefix(&w.to_lowercase()))
            .collect();
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut sql = String::from(
            "SELECT p.login, p.username, p.display_name, p.first_name, p.last_name, \
             p.avatar_updated_at FROM profiles p JOIN accounts a ON a.login = p.login \
             WHERE a.active = 1 AND p.login <> ?",
        );
        for _ in &words {
            sql.push_str(
                " AND (LOWER(p.username) LIKE ? ESCAPE '!' OR LOWER(p.first_name) LIKE ? ESCAPE '!' \
                 OR LOWER(p.last_name) LIKE ? ESCAPE '!')",
            );
        }
        sql.push_str(" ORDER BY p.username, p.login LIMIT ?");
        let mut q = sqlx::query(&sql).bind(exclude);
        for w in &words {
            q = q.bind(w).bind(w).bind(w);
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(FoundUser {
                    login: r.try_get("login")?,
                    username: r.try_get("username")?,
                    display_name: r.try_get("display_name")?,
                    first_name: r.try_get("first_name")?,
                    last_name: r.try_get("last_name")?,
                    avatar_updated_at: r.try_get("avatar_updated_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewAccount;
    use crate::store::testutil::{test_store, unique};

    #[tokio::test]
    async fn fields_update_and_the_username_is_set_once() {
        let store = test_store().await;
        let (a, b) = (unique("pa"), unique("pb"));
        for l in [&a, &b] {
            store
                .add_account(&NewAccount {
                    login: l.clone(),
                    sip_password: "x".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let name = unique("nick");
        store
            .update_profile(
                &a,
                &ProfileUpdate {
                    first_name: Some("Ada".into()),
                    city: Some("Kraków".into()),
                    username: Some(name.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let again = store
            .update_profile(
                &a,
                &ProfileUpdate {
                    username: Some(unique("other")),
                    ..Default::default()
                },
            )
            .await;
        let taken = store
            .update_profile(
                &b,
                &ProfileUpdate {
                    username: Some(name.clone()),
                    ..Default::default()
                },
            )
            .await;
        let p = store.profile(&a).await.unwrap().unwrap();
        store.delete_account(&a).await.unwrap();
        store.delete_account(&b).await.unwrap();
        assert_eq!(p.first_name.as_deref(), Some("Ada"));
        assert_eq!(p.city.as_deref(), Some("Kraków"));
        assert_eq!(p.username.as_deref(), Some(name.as_str()));
        assert!(matches!(again, Err(StoreError::Conflict(ref w)) if w == "username set"));
        assert!(matches!(taken, Err(StoreError::Conflict(ref w)) if w == "username"));
    }

    #[tokio::test]
    async fn find_friends_by_username_or_names_active_only() {
        let store = test_store().await;
        let tag = unique("ff").replace(['-', '_'], "");
        let (ada, ann, off, me) = (
            format!("{tag}a"),
            format!("{tag}b"),
            format!("{tag}c"),
            format!("{tag}d"),
        );
        for l in [&ada, &ann, &off, &me] {
            store
                .add_account(&NewAccount {
                    login: l.clone(),
                    sip_password: "x".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let set = |first: &str, last: &str, user: &str| ProfileUpdate {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            username: Some(user.into()),
            ..Default::default()
        };
        for (login, first, last, user) in [
            (&ada, "Ada", "Lovelace", "ada"),
            (&ann, "Ann", "Lovell", "ann"),
            (&off, "Ada", "Lovelace", "off"),
            (&me, "Ada", "Lovelace", "me"),
        ] {
            store
                .update_profile(
                    login,
                    &set(first, &format!("{tag}{last}"), &format!("{tag}{user}")),
                )
                .await
                .unwrap();
        }
        store.set_account_active(&off, false).await.unwrap();

        let by_last = store
            .search_users(&format!("{}LOVEL", tag.to_uppercase()), &me, 10)
            .await
            .unwrap();
        let two_words = store
            .search_users(&format!("ada {tag}lovelace"), &me, 10)
            .await
            .unwrap();
        let by_username = store
            .search_users(&format!("{tag}an"), &me, 10)
            .await
            .unwrap();
        let limited = store.search_users(&tag, &me, 1).await.unwrap();
        let wildcard = store.search_users("%", &me, 10).await.unwrap();
        for l in [&ada, &ann, &off, &me] {
            store.delete_account(l).await.unwrap();
        }
        let logins = |v: &[FoundUser]| v.iter().map(|u| u.login.clone()).collect::<Vec<_>>();
        // The inactive account and the searcher are left out; case is ignored.
        assert_eq!(logins(&by_last), vec![ada.clone(), ann.clone()]);
        assert_eq!(logins(&two_words), vec![ada.clone()]);
        assert_eq!(logins(&by_username), vec![ann.clone()]);
        assert_eq!(limited.len(), 1);
        assert!(wildcard.iter().all(|u| !u.login.starts_with(&tag)));
    }
}
