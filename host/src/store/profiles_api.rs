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
}
