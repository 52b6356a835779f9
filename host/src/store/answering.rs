//! Answering rules by caller ID (SPEC §9, the seed's VUP): per user, what
//! a call from given callers does — ring as usual, ring without voicemail,
//! go straight to voicemail, or be declined — and an optional greeting of
//! its own. See `migrations/sqlite/0011_answering_rules.sql`.

use sqlx::Row;

use super::Store;
use super::error::{Result, StoreError, is_foreign_key_violation, unique_violation};

/// What a rule does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Ring, then voicemail if enabled (what happens without a rule).
    Ring,
    /// Ring; unanswered, busy or offline ends the call, never voicemail.
    RingOnly,
    /// Straight to voicemail, nothing rings.
    Voicemail,
    /// Declined at once (603).
    Reject,
}

impl RuleAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleAction::Ring => "ring",
            RuleAction::RingOnly => "ring-only",
            RuleAction::Voicemail => "voicemail",
            RuleAction::Reject => "reject",
        }
    }

    fn parse(s: &str) -> Option<RuleAction> {
        [
            RuleAction::Ring,
            RuleAction::RingOnly,
            RuleAction::Voicemail,
            RuleAction::Reject,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One rule, without its greeting's audio.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AnsweringRule {
    pub id: i64,
    /// A login or number; a prefix when it ends in `*`.
    pub caller: String,
    pub action: RuleAction,
    /// It has a greeting of its own.
    pub greeting: bool,
}

/// Callers a rule may name: logins and numbers, `*` only at the end.
pub fn validate_caller(caller: &str) -> Result<()> {
    let body = caller.strip_suffix('*').unwrap_or(caller);
    let ok = caller.len() <= 128
        && !caller.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "caller {caller:?}: a login or number (letters, digits, + - _ .), \
             or a prefix ending in *"
        )))
    }
}

/// The rule of `rules` for a call from any of `callers` (the caller's
/// login, number, username): an exact match first, then the longest
/// prefix.
pub fn rule_for<'a>(rules: &'a [AnsweringRule], callers: &[&str]) -> Option<&'a AnsweringRule> {
    rules
        .iter()
        .find(|r| callers.contains(&r.caller.as_str()))
        .or_else(|| {
            rules
                .iter()
                .filter_map(|r| Some((r, r.caller.strip_suffix('*')?)))
                .filter(|(_, prefix)| callers.iter().any(|c| c.starts_with(prefix)))
                .max_by_key(|(_, prefix)| prefix.len())
                .map(|(r, _)| r)
        })
}

fn rule(r: &sqlx::any::AnyRow) -> Result<AnsweringRule> {
    let action: String = r.try_get("action")?;
    Ok(AnsweringRule {
        id: r.try_get("id")?,
        caller: r.try_get("caller")?,
        action: RuleAction::parse(&action)
            .ok_or_else(|| StoreError::Corrupt(format!("answering rule action {action:?}")))?,
        greeting: r.try_get::<i64, _>("has_greeting")? != 0,
    })
}

const COLUMNS: &str =
    "id, caller, action, CASE WHEN greeting IS NULL THEN 0 ELSE 1 END AS has_greeting";

impl Store {
    /// `login`'s rules, oldest first.
    pub async fn answering_rules(&self, login: &str) -> Result<Vec<AnsweringRule>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM answering_rules WHERE login = ? ORDER BY id"
        ))
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule).collect()
    }

    /// Sets what calls from `caller` do (a rule for that caller is
    /// replaced, its greeting kept); the rule's id.
    pub async fn set_answering_rule(
        &self,
        login: &str,
        caller: &str,
        action: RuleAction,
    ) -> Result<i64> {
        validate_caller(caller)?;
        let updated =
            sqlx::query("UPDATE answering_rules SET action = ? WHERE login = ? AND caller = ?")
                .bind(action.as_str())
                .bind(login)
                .bind(caller)
                .execute(&self.pool)
                .await?;
        if updated.rows_affected() == 0 {
            let inserted = sqlx::query(
                "INSERT INTO answering_rules (login, caller, action, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(login)
            .bind(caller)
            .bind(action.as_str())
            .bind(super::now())
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_foreign_key_violation(&e) => {
                    return Err(StoreError::NotFound(format!("account {login:?}")));
                }
                // Another request added it meanwhile: it is there either way.
                Err(e) if unique_violation(&e).is_some() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(
            sqlx::query_scalar("SELECT id FROM answering_rules WHERE login = ? AND caller = ?")
                .bind(login)
                .bind(caller)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Deletes one of `login`'s rules. False if it has none by that id.
    pub async fn delete_answering_rule(&self, login: &str, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM answering_rules WHERE id = ? AND login = ?")
            .bind(id)
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives one of `login`'s rules a greeting (`Some(wav)`) or takes it
    /// away. False if it has no rule by that id.
    pub async fn set_rule_greeting(
        &self,
        login: &str,
        id: i64,
        wav: Option<&[u8]>,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE answering_rules SET greeting = ? WHERE id = ? AND login = ?")
                .bind(wav)
                .bind(id)
                .bind(login)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The greeting of one of `login`'s rules.
    pub async fn rule_greeting(&self, login: &str, id: i64) -> Result<Option<Vec<u8>>> {
        let wav: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT greeting FROM answering_rules WHERE id = ? AND login = ?")
                .bind(id)
                .bind(login)
                .fetch_optional(&self.pool)
                .await?;
        Ok(wav.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::super::accounts::NewAccount;
    use super::super::testutil::{test_store, unique};
    use super::*;

    fn r(id: i64, caller: &str) -> AnsweringRule {
        AnsweringRule {
            id,
            caller: caller.into(),
            action: RuleAction::Ring,
            greeting: false,
        }
    }

    #[test]
    fn the_exact_caller_wins_then_the_longest_prefix() {
        let rules = [r(1, "*"), r(2, "48*"), r(3, "48600*"), r(4, "alice")];
        let id = |callers: &[&str]| rule_for(&rules, callers).map(|r| r.id);
        assert_eq!(id(&["alice", "48600111222"]), Some(4));
        assert_eq!(id(&["bob", "48600111222"]), Some(3));
        assert_eq!(id(&["4870"]), Some(2));
        assert_eq!(id(&["carol"]), Some(1));
        assert_eq!(rule_for(&rules[1..3], &["carol"]), None);
    }

    #[test]
    fn callers_are_logins_numbers_or_prefixes() {
        for ok in ["alice", "+48600111222", "486*", "*", "a.b-c_d"] {
            assert!(validate_caller(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a*b", "al ice", "x@y", "**", &"9".repeat(129)] {
            assert!(validate_caller(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn rules_are_set_replaced_greeted_and_deleted_by_their_owner_only() {
        let store = test_store().await;
        let (bob, eve) = (unique("arb"), unique("are"));
        for login in [&bob, &eve] {
            store
                .add_account(&NewAccount {
                    login: login.clone(),
                    sip_password: "pw".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let id = store
            .set_answering_rule(&bob, "alice", RuleAction::Voicemail)
            .await
            .unwrap();
        assert!(
            store
                .set_rule_greeting(&bob, id, Some(b"RIFF"))
                .await
                .unwrap()
        );
        let same = store
            .set_answering_rule(&bob, "alice", RuleAction::Reject)
            .await
            .unwrap();
        let other = store
            .set_answering_rule(&bob, "486*", RuleAction::RingOnly)
            .await
            .unwrap();
        let bad = store
            .set_answering_rule(&bob, "a b", RuleAction::Ring)
            .await;
        let nobody = store
            .set_answering_rule(&unique("none"), "x", RuleAction::Ring)
            .await;
        let rules = store.answering_rules(&bob).await.unwrap();
        let greeting = store.rule_greeting(&bob, id).await.unwrap();
        let eve_greeting = store.rule_greeting(&eve, id).await.unwrap();
        let eve_delete = store.delete_answering_rule(&eve, id).await.unwrap();
        let eve_greets = store.set_rule_greeting(&eve, id, None).await.unwrap();
        assert!(store.delete_answering_rule(&bob, id).await.unwrap());
        let left = store.answering_rules(&bob).await.unwrap();
        for login in [&bob, &eve] {
            store.delete_account(login).await.unwrap();
        }

        assert_eq!(same, id, "one rule per caller, replaced");
        assert_eq!(
            rules,
            [
                AnsweringRule {
                    id,
                    caller: "alice".into(),
                    action: RuleAction::Reject,
                    greeting: true,
                },
                AnsweringRule {
                    id: other,
                    caller: "486*".into(),
                    action: RuleAction::RingOnly,
                    greeting: false,
                },
            ]
        );
        assert!(matches!(bad, Err(StoreError::Invalid(_))));
        assert!(matches!(nobody, Err(StoreError::NotFound(_))));
        assert_eq!(greeting.as_deref(), Some(&b"RIFF"[..]));
        assert_eq!(eve_greeting, None);
        assert!(!eve_delete && !eve_greets);
        assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), [other]);
    }
}
