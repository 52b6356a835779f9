//! Read-only look-ups that guests may make (the `directory` WIT import).
//!
//! The trait is the capability the host grants: a guest can ask about accounts,
//! registrations and gateways, and nothing else. The switch answers from the
//! database; tests and benchmarks answer from memory.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

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
#[error("directory unavailable: {0}")]
pub struct DirectoryError(pub String);

/// Result of a look-up.
pub type DirResult<T> = Result<T, DirectoryError>;

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
}

/// The directory backed by the database.
///
/// Registrations come from the running registrar's memory when there is one
/// (the switch), else from the bindings table (the CLI).
#[derive(Clone)]
pub struct StoreDirectory {
    store: Store,
    registrar: Option<Arc<Registrar>>,
}

impl StoreDirectory {
    pub fn new(store: Store, registrar: Option<Arc<Registrar>>) -> Self {
        Self { store, registrar }
    }
}

fn db_err(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError(e.to_string())
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
        Box::pin(async move {
            let found = self.store.account_by_login(login).await.map_err(db_err)?;
            Ok(found.map(to_dir_account))
        })
    }
    fn account_by_phone<'a>(
        &'a self,
        phone: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        Box::pin(async move {
            let found = self.store.account_by_phone(phone).await.map_err(db_err)?;
            Ok(found.map(to_dir_account))
        })
    }
    fn account_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        Box::pin(async move {
            let found = self
                .store
                .account_by_username(username)
                .await
                .map_err(db_err)?;
            Ok(found.map(to_dir_account))
        })
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
    fn gateway_for<'a>(&'a self, number: &'a str) -> BoxFuture<'a, DirResult<Option<DirGateway>>> {
        Box::pin(async move {
            let found = self.store.gateway_for(number).await.map_err(db_err)?;
            Ok(found.map(|g| DirGateway {
                name: g.name,
                prefix: g.prefix,
            }))
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
}

impl Directory for MemoryDirectory {
    fn account_by_login<'a>(
        &'a self,
        login: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        let found = self.by_login.get(login).map(|&i| self.accounts[i].clone());
        Box::pin(std::future::ready(Ok(found)))
    }
    fn account_by_phone<'a>(
        &'a self,
        phone: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        let found = self.find(|a| a.phone.as_deref() == Some(phone));
        Box::pin(std::future::ready(Ok(found)))
    }
    fn account_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        let found = self.find(|a| a.username.as_deref() == Some(username));
        Box::pin(std::future::ready(Ok(found)))
    }
    fn is_registered<'a>(&'a self, login: &'a str) -> BoxFuture<'a, DirResult<bool>> {
        Box::pin(std::future::ready(Ok(self.registered.contains(login))))
    }
    fn gateway_for<'a>(&'a self, number: &'a str) -> BoxFuture<'a, DirResult<Option<DirGateway>>> {
        let found = self
            .gateways
            .iter()
            .filter(|g| number.starts_with(&g.prefix))
            .max_by_key(|g| g.prefix.len())
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }
}
