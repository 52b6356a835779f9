//! Read-only look-ups that guests may make (the `directory` WIT import).
//!
//! The trait is the capability the host grants: a guest can ask about accounts,
//! registrations and gateways, and nothing else. The switch answers from the
//! database; tests and benchmarks answer from memory.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sip::registrar::Registrar;
use crate::store::Store;

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The public view of an account a guest may see (no secrets, no balance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirAccount {
    pub login: String,
    pub phone: Option<String>,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub voicemail_enabled: bool,
}

/// A gateway as a guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGateway {
    pub name: String,
    pub prefix: String,
}

/// Why a look-up could not be answered. The guest call is then abandoned and
/// the routing fallback applies: a guest must never decide on missing data.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The guest's capabilities do not grant this kind of look-up.
    #[error("directory look-up not granted: {0} (capabilities.directory)")]
    Denied(&'static str),
}

/// Result of a look-up.
pub type DirResult<T> = Result<T, DirectoryError>;

/// One look-up, as a key. A routing guest runs without waiting: what it
/// asks that the directory cannot answer at once ([`Directory::peek`]) is
/// fetched afterwards and the decision is made again with the answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    AccountByLogin(String),
    AccountByPhone(String),
    AccountByUsername(String),
    Registered(String),
    GatewayFor(String),
}

/// The answer to a [`Lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Account(Option<DirAccount>),
    Registered(bool),
    Gateway(Option<DirGateway>),
}

impl Lookup {
    /// What the guest is told while the real answer is being fetched (the
    /// decision made with it is thrown away).
    pub fn placeholder(&self) -> Answer {
        match self {
            Lookup::AccountByLogin(_)
            | Lookup::AccountByPhone(_)
            | Lookup::AccountByUsername(_) => Answer::Account(None),
            Lookup::Registered(_) => Answer::Registered(false),
            Lookup::GatewayFor(_) => Answer::Gateway(None),
        }
    }
}

/// The look-ups granted to routing guests.
pub trait Directory: Send + Sync + 'static {
    fn account_by_login<'a>(
        &'a self,
        login: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>>;
    fn account_by_phone<'a>(
        &'a self,
        phone: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>>;
    fn account_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>>;
    fn is_registered<'a>(&'a self, login: &'a str) -> BoxFuture<'a, DirResult<bool>>;
    fn gateway_for<'a>(&'a self, number: &'a str) -> BoxFuture<'a, DirResult<Option<DirGateway>>>;

    /// An empty directory with the same grants (the smoke call's).
    fn empty(&self) -> Arc<dyn Directory> {
        Arc::new(MemoryDirectory::default())
    }

    /// The answer when it is at hand (memory, a fresh cache entry) without
    /// waiting; `None`: it must be [fetched](Directory::fetch).
    fn peek(&self, _lookup: &Lookup) -> Option<DirResult<Answer>> {
        None
    }

    /// The answer, waiting for it as needed.
    fn fetch<'a>(&'a self, lookup: &'a Lookup) -> BoxFuture<'a, DirResult<Answer>> {
        Box::pin(async move {
            Ok(match lookup {
                Lookup::AccountByLogin(k) => Answer::Account(self.account_by_login(k).await?),
                Lookup::AccountByPhone(k) => Answer::Account(self.account_by_phone(k).await?),
                Lookup::AccountByUsername(k) => Answer::Account(self.account_by_username(k).await?),
                Lookup::Registered(k) => Answer::Registered(self.is_registered(k).await?),
                Lookup::GatewayFor(k) => Answer::Gateway(self.gateway_for(k).await?),
            })
        })
    }
}

/// The directory backed by the database.
///
/// Registrations come from the running registrar's memory when there is one
/// (the switch), else from the bindings table (the CLI).
///
/// Answers are cached for [`CACHE_TTL`] (unknown accounts too): a routing
/// decision makes two or three look-ups, and a message storm would otherwise
/// be a storm of identical queries. A change made through the database shows
/// in routing within that time.
#[derive(Clone)]
pub struct StoreDirectory {
    store: Store,
    registrar: Option<Arc<Registrar>>,
    accounts: Arc<TtlCache<Option<DirAccount>>>,
    gateways: Arc<TtlCache<Option<DirGateway>>>,
}

impl StoreDirectory {
    pub fn new(store: Store, registrar: Option<Arc<Registrar>>) -> Self {
        Self {
            store,
            registrar,
            accounts: Arc::default(),
            gateways: Arc::default(),
        }
    }

    async fn account(
        &self,
        key: String,
        fetch: impl Future<Output = crate::store::Result<Option<crate::store::accounts::Account>>>,
    ) -> DirResult<Option<DirAccount>> {
        if let Some(hit) = self.accounts.get(&key) {
            return Ok(hit);
        }
        let found = fetch.await.map_err(db_err)?.map(to_dir_account);
        self.accounts.put(key, found.clone());
        Ok(found)
    }
}

/// Keys of the account cache: a prefix per look-up, then its argument.
const BY_LOGIN: &str = "l:";
const BY_PHONE: &str = "p:";
const BY_USERNAME: &str = "u:";

/// How long a directory answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Entries kept per cache; it is cleared when full and refills on demand.
const CACHE_MAX: usize = 100_000;

/// A small map of answers that expire after [`CACHE_TTL`].
pub struct TtlCache<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V> Default for TtlCache<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> TtlCache<V> {
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(v, _)| v.clone())
    }

    pub fn put(&self, key: String, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }
}

fn db_err(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

fn to_dir_account(a: crate::store::accounts::Account) -> DirAccount {
    DirAccount {
        login: a.login,
        phone: a.phone,
        username: a.username,
        display_name: a.display_name,
        voicemail_enabled: a.voicemail_enabled,
    }
}

impl Directory for StoreDirectory {
    fn account_by_login<'a>(
        &'a self,
        login: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        Box::pin(self.account(
            format!("{BY_LOGIN}{login}"),
            self.store.account_by_login(login),
        ))
    }
    fn account_by_phone<'a>(
        &'a self,
        phone: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        Box::pin(self.account(
            format!("{BY_PHONE}{phone}"),
            self.store.account_by_phone(phone),
        ))
    }
    fn account_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        Box::pin(self.account(
            format!("{BY_USERNAME}{username}"),
            self.store.account_by_username(username),
        ))
    }
    fn is_registered<'a>(&'a self, login: &'a str) -> BoxFuture<'a, DirResult<bool>> {
        Box::pin(async move {
            let now = crate::store::now_secs();
            match &self.registrar {
                Some(registrar) => Ok(!registrar.bindings(login, now).is_empty()),
                None => Ok(!self
                    .store
                    .bindings_of(login, now)
                    .await
                    .map_err(db_err)?
                    .is_empty()),
            }
        })
    }
    fn peek(&self, lookup: &Lookup) -> Option<DirResult<Answer>> {
        let account = |key: String| self.accounts.get(&key).map(|a| Ok(Answer::Account(a)));
        match lookup {
            Lookup::AccountByLogin(k) => account(format!("{BY_LOGIN}{k}")),
            Lookup::AccountByPhone(k) => account(format!("{BY_PHONE}{k}")),
            Lookup::AccountByUsername(k) => account(format!("{BY_USERNAME}{k}")),
            Lookup::Registered(k) => self.registrar.as_ref().map(|registrar| {
                let now = crate::store::now_secs();
                Ok(Answer::Registered(!registrar.bindings(k, now).is_empty()))
            }),
            Lookup::GatewayFor(k) => self.gateways.get(k).map(|g| Ok(Answer::Gateway(g))),
        }
    }
    fn gateway_for<'a>(&'a self, number: &'a str) -> BoxFuture<'a, DirResult<Option<DirGateway>>> {
        Box::pin(async move {
            if let Some(hit) = self.gateways.get(number) {
                return Ok(hit);
            }
            let found = self
                .store
                .gateway_for(number)
                .await
                .map_err(db_err)?
                .map(|g| DirGateway {
                    name: g.name,
                    prefix: g.prefix,
                });
            self.gateways.put(number.to_string(), found.clone());
            Ok(found)
        })
    }
}

/// A directory held in memory: for tests, benchmarks and guest tooling.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    pub accounts: Vec<DirAccount>,
    pub registered: HashSet<String>,
    pub gateways: Vec<DirGateway>,
    by_login: HashMap<String, usize>,
}

impl MemoryDirectory {
    pub fn new(
        accounts: Vec<DirAccount>,
        registered: HashSet<String>,
        gateways: Vec<DirGateway>,
    ) -> Self {
        let by_login = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.login.clone(), i))
            .collect();
        Self {
            accounts,
            registered,
            gateways,
            by_login,
        }
    }

    fn find(&self, pred: impl Fn(&DirAccount) -> bool) -> Option<DirAccount> {
        self.accounts.iter().find(|a| pred(a)).cloned()
    }

    fn answer(&self, lookup: &Lookup) -> Answer {
        match lookup {
            Lookup::AccountByLogin(k) => {
                Answer::Account(self.by_login.get(k).map(|&i| self.accounts[i].clone()))
            }
            Lookup::AccountByPhone(k) => {
                Answer::Account(self.find(|a| a.phone.as_deref() == Some(k)))
            }
            Lookup::AccountByUsername(k) => {
                Answer::Account(self.find(|a| a.username.as_deref() == Some(k)))
            }
            Lookup::Registered(k) => Answer::Registered(self.registered.contains(k)),
            Lookup::GatewayFor(k) => Answer::Gateway(
                self.gateways
                    .iter()
                    .filter(|g| k.starts_with(&g.prefix))
                    .max_by_key(|g| g.prefix.len())
                    .cloned(),
            ),
        }
    }
}

impl MemoryDirectory {
    fn account(&self, lookup: Lookup) -> BoxFuture<'_, DirResult<Option<DirAccount>>> {
        let found = match self.answer(&lookup) {
            Answer::Account(a) => a,
            _ => None,
        };
        Box::pin(std::future::ready(Ok(found)))
    }
}

impl Directory for MemoryDirectory {
    fn peek(&self, lookup: &Lookup) -> Option<DirResult<Answer>> {
        Some(Ok(self.answer(lookup)))
    }
    fn account_by_login<'a>(
        &'a self,
        login: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.account(Lookup::AccountByLogin(login.into()))
    }
    fn account_by_phone<'a>(
        &'a self,
        phone: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.account(Lookup::AccountByPhone(phone.into()))
    }
    fn account_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.account(Lookup::AccountByUsername(username.into()))
    }
    fn is_registered<'a>(&'a self, login: &'a str) -> BoxFuture<'a, DirResult<bool>> {
        Box::pin(std::future::ready(Ok(self.registered.contains(login))))
    }
    fn gateway_for<'a>(&'a self, number: &'a str) -> BoxFuture<'a, DirResult<Option<DirGateway>>> {
        let found = match self.answer(&Lookup::GatewayFor(number.into())) {
            Answer::Gateway(g) => g,
            _ => None,
        };
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_answers_negatives_too_and_stays_bounded() {
        let cache: TtlCache<Option<u32>> = TtlCache::default();
        assert_eq!(cache.get("a"), None);
        cache.put("a".into(), None);
        assert_eq!(
            cache.get("a"),
            Some(None),
            "an unknown account is cached as unknown"
        );
        cache.put("b".into(), Some(7));
        assert_eq!(cache.get("b"), Some(Some(7)));
        for i in 0..CACHE_MAX + 10 {
            cache.put(format!("k{i}"), Some(1));
        }
        assert!(cache.entries.lock().unwrap().len() <= CACHE_MAX);
    }
}
