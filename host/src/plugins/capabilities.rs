//! What one guest may import and reach, declared in its config section
//! (`[guests.<name>.capabilities]`, `[ivr.services.<name>.capabilities]`,
//! ...) and checked by the host: the interfaces of its world it may
//! import (checked when a version is loaded: a guest that imports more is
//! refused), and, on every call, the directory look-ups a routing guest may
//! make and the mailboxes an IVR run may open. The hosts a provider may
//! reach are its `allowed_hosts`, checked on every request it asks for;
//! the config values a guest reads are its own section's only, by
//! construction.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::component::Component;

use super::{PluginError, Plugins};
use crate::directory::{
    Answer, BoxFuture, DirAccount, DirGateway, DirResult, Directory, DirectoryError, Lookup,
};
use crate::ivr::session::MailboxGrant;

/// A guest's capabilities; the default grants what its world offers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// The interfaces of its world it may import, by short name
    /// (`directory`, `log`, `config`; `call`, `voicemail`; ...); none
    /// given: all of them.
    pub imports: Option<Vec<String>>,
    /// Routing guests: the look-ups they may make (`accounts`,
    /// `registrations`, `gateways`); none given: all.
    pub directory: Option<Vec<DirectoryLookup>>,
    /// IVR guests: the mailboxes a run may open.
    pub mailboxes: MailboxScope,
}

/// A kind of directory look-up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DirectoryLookup {
    /// `account-by-login`, `account-by-phone`, `account-by-username`.
    Accounts,
    /// `is-registered`.
    Registrations,
    /// `gateway-for`.
    Gateways,
}

/// Which mailboxes an IVR run may open.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MailboxScope {
    /// Those the call grants: the caller's own, and the box the routing
    /// guest sent a deposit to.
    #[default]
    Call,
    /// The authenticated caller's own box only.
    Caller,
    /// None.
    None,
}

impl MailboxScope {
    /// The call's grants this scope leaves.
    pub fn filter(self, grants: Vec<MailboxGrant>) -> Vec<MailboxGrant> {
        match self {
            MailboxScope::Call => grants,
            MailboxScope::Caller => grants.into_iter().filter(|g| g.full).collect(),
            MailboxScope::None => Vec::new(),
        }
    }
}

impl Capabilities {
    /// `directory` as this guest may use it.
    pub fn scope(&self, directory: Arc<dyn Directory>) -> Arc<dyn Directory> {
        match &self.directory {
            None => directory,
            Some(granted) => Arc::new(ScopedDirectory {
                inner: directory,
                granted: granted.clone(),
            }),
        }
    }

    /// Refuses a component that imports an interface of `world` (e.g.
    /// `softswitch:routing/router@0.1.0`) this guest is not granted.
    pub fn check_imports(
        &self,
        plugins: &Plugins,
        path: &Path,
        world: &str,
        component: &Component,
    ) -> Result<(), PluginError> {
        let Some(granted) = &self.imports else {
            return Ok(());
        };
        let package = world.split('/').next().unwrap_or(world);
        for (name, _) in component.component_type().imports(&plugins.engine) {
            // `softswitch:routing/directory@0.1.0` -> `directory`.
            let Some(interface) = name
                .strip_prefix(package)
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|rest| rest.split('@').next().unwrap_or(rest))
            else {
                continue;
            };
            // The world's shared records carry no capability.
            if interface != "types" && !granted.iter().any(|g| g == interface) {
                return Err(PluginError::NotGranted {
                    path: path.to_path_buf(),
                    import: name.to_owned(),
                    granted: granted.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// A directory that answers only the look-ups granted.
struct ScopedDirectory {
    inner: Arc<dyn Directory>,
    granted: Vec<DirectoryLookup>,
}

impl ScopedDirectory {
    fn allows(&self, lookup: DirectoryLookup) -> DirResult<()> {
        if self.granted.contains(&lookup) {
            Ok(())
        } else {
            Err(DirectoryError::Denied(match lookup {
                DirectoryLookup::Accounts => "accounts",
                DirectoryLookup::Registrations => "registrations",
                DirectoryLookup::Gateways => "gateways",
            }))
        }
    }
}

impl Directory for ScopedDirectory {
    fn account_by_login<'a>(
        &'a self,
        login: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        Box::pin(async move {
            self.allows(DirectoryLookup::Accounts)?;
            self.inner.account_by_login(login).await
        })
    }

    fn account_by_phone<'a>(
        &'a self,
        phone: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        Box::pin(async move {
            self.allows(DirectoryLookup::Accounts)?;
            self.inner.account_by_phone(phone).await
        })
    }

    fn account_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        Box::pin(async move {
            self.allows(DirectoryLookup::Accounts)?;
            self.inner.account_by_username(username).await
        })
    }

    fn is_registered<'a>(&'a self, login: &'a str) -> BoxFuture<'a, DirResult<bool>> {
        Box::pin(async move {
            self.allows(DirectoryLookup::Registrations)?;
            self.inner.is_registered(login).await
        })
    }

    fn gateway_for<'a>(&'a self, number: &'a str) -> BoxFuture<'a, DirResult<Option<DirGateway>>> {
        Box::pin(async move {
            self.allows(DirectoryLookup::Gateways)?;
            self.inner.gateway_for(number).await
        })
    }

    fn empty(&self) -> Arc<dyn Directory> {
        Arc::new(ScopedDirectory {
            inner: self.inner.empty(),
            granted: self.granted.clone(),
        })
    }

    fn peek(&self, lookup: &Lookup) -> Option<DirResult<Answer>> {
        if let Err(denied) = self.allows(kind_of(lookup)) {
            return Some(Err(denied));
        }
        self.inner.peek(lookup)
    }

    fn fetch<'a>(&'a self, lookup: &'a Lookup) -> BoxFuture<'a, DirResult<Answer>> {
        Box::pin(async move {
            self.allows(kind_of(lookup))?;
            self.inner.fetch(lookup).await
        })
    }
}

fn kind_of(lookup: &Lookup) -> DirectoryLookup {
    match lookup {
        Lookup::AccountByLogin(_) | Lookup::AccountByPhone(_) | Lookup::AccountByUsername(_) => {
            DirectoryLookup::Accounts
        }
        Lookup::Registered(_) => DirectoryLookup::Registrations,
        Lookup::GatewayFor(_) => DirectoryLookup::Gateways,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::MemoryDirectory;

    fn grant(owner: &str, full: bool) -> MailboxGrant {
        MailboxGrant {
            owner: owner.into(),
            full,
        }
    }

    #[test]
    fn a_mailbox_scope_leaves_only_what_it_names() {
        let call = vec![grant("alice", true), grant("bob", false)];
        assert_eq!(MailboxScope::Call.filter(call.clone()), call);
        assert_eq!(
            MailboxScope::Caller.filter(call.clone()),
            vec![grant("alice", true)]
        );
        assert!(MailboxScope::None.filter(call).is_empty());
    }

    #[tokio::test]
    async fn a_scoped_directory_answers_only_the_look_ups_granted() {
        let gateways = vec![DirGateway {
            name: "carrier".into(),
            prefix: "48".into(),
        }];
        let full: Arc<dyn Directory> = Arc::new(MemoryDirectory::new(
            Vec::new(),
            Default::default(),
            gateways,
        ));
        let caps: Capabilities =
            toml::from_str("directory = [\"gateways\"]").expect("a capabilities table");
        let scoped = caps.scope(full);
        assert_eq!(
            scoped.gateway_for("4860").await.unwrap().unwrap().name,
            "carrier"
        );
        for denied in [
            scoped.account_by_login("alice").await.err(),
            scoped.account_by_phone("4860").await.err(),
        ] {
            assert!(matches!(denied, Some(DirectoryError::Denied("accounts"))));
        }
        assert!(matches!(
            scoped.is_registered("alice").await,
            Err(DirectoryError::Denied("registrations"))
        ));
        assert!(matches!(
            scoped.peek(&Lookup::AccountByLogin("alice".into())),
            Some(Err(DirectoryError::Denied("accounts")))
        ));
        assert!(matches!(
            scoped.peek(&Lookup::GatewayFor("4860".into())),
            Some(Ok(Answer::Gateway(Some(_))))
        ));
        // The smoke call's empty directory keeps the scope.
        assert!(scoped.empty().account_by_login("x").await.is_err());
        assert!(scoped.empty().gateway_for("4860").await.unwrap().is_none());
    }
}
