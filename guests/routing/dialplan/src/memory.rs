//! An in-memory [`Directory`], for unit tests of guests and for the host's
//! native benchmark, so neither needs a database to exercise the dialplan.

use alloc::string::String;
use alloc::vec::Vec;

use crate::{Account, Directory, Gateway};

#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    pub accounts: Vec<Account>,
    pub gateways: Vec<Gateway>,
    /// Logins with at least one registered device.
    pub registered: Vec<String>,
}

impl MemoryDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_account(mut self, account: Account) -> Self {
        self.accounts.push(account);
        self
    }

    pub fn with_gateway(mut self, name: &str, prefix: &str) -> Self {
        self.gateways.push(Gateway {
            name: name.into(),
            prefix: prefix.into(),
        });
        self
    }

    pub fn with_registered(mut self, login: &str) -> Self {
        self.registered.push(login.into());
        self
    }

    fn find(&self, pred: impl Fn(&Account) -> bool) -> Option<Account> {
        self.accounts.iter().find(|a| pred(a)).cloned()
    }
}

impl Directory for MemoryDirectory {
    fn account_by_login(&self, login: &str) -> Option<Account> {
        self.find(|a| a.login == login)
    }

    fn account_by_phone(&self, phone: &str) -> Option<Account> {
        self.find(|a| a.phone.as_deref() == Some(phone))
    }

    fn account_by_username(&self, username: &str) -> Option<Account> {
        self.find(|a| a.username.as_deref() == Some(username))
    }

    fn is_registered(&self, login: &str) -> bool {
        self.registered.iter().any(|l| l == login)
    }

    fn gateway_for(&self, number: &str) -> Option<Gateway> {
        self.gateways
            .iter()
            .filter(|g| number.starts_with(g.prefix.as_str()))
            .max_by_key(|g| g.prefix.len())
            .cloned()
    }
}
