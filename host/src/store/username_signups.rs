//! What username sign-up needs beyond account creation: whether a username
//! is free, and the profile's country.

use super::Store;
use super::error::Result;

impl Store {
    /// Whether `username` is taken, as a username or as a SIP login (in
    /// generic mode the login of a username account is the username).
    pub async fn username_taken(&self, username: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM profiles WHERE username = ?) + \
             (SELECT COUNT(*) FROM accounts WHERE login = ?)",
        )
        .bind(username)
        .bind(username)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Sets the profile's country (ISO 3166 alpha-2).
    pub async fn set_profile_country(&self, login: &str, country: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE profiles SET country = ? WHERE login = ?")
            .bind(country)
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::NewAccount;
    use crate::store::testutil::{test_store, unique};

    #[tokio::test]
    async fn taken_usernames_and_country() {
        let store = test_store().await;
        let name = unique("un");
        assert!(!store.username_taken(&name).await.unwrap());
        store
            .add_account(&NewAccount {
                login: name.clone(),
                sip_password: "x".into(),
                username: Some(name.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(store.username_taken(&name).await.unwrap());
        assert!(store.set_profile_country(&name, "PL").await.unwrap());
        let country: Option<String> =
            sqlx::query_scalar("SELECT country FROM profiles WHERE login = ?")
                .bind(&name)
                .fetch_one(store.pool())
                .await
                .unwrap();
        store.delete_account(&name).await.unwrap();
        assert_eq!(country.as_deref(), Some("PL"));
    }
}
