//! Hot swap, for the guests of every world: a reload compiles and links the
//! new file, makes a smoke call (IVR flows have none: a flow needs a call),
//! runs the guest's cases when its config names them (the canary), and only
//! then swaps it in. Work in
//! flight keeps the `Arc` of the version it started on. A new version that
//! fails too many of its first calls is taken out of service and the one it
//! replaced comes back ([`super::probation`]).
//!
//! At start-up a provider's first version is linked and checked against its
//! cases but not smoke-called: there is no version in service to keep
//! instead, and a provider that fails its calls fails only its messages
//! (each is retried, then marked failed), not the switch. A routing guest
//! is smoke-called at start too: without it no call can be routed.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use wasmtime::component::Component;

use super::capabilities::Capabilities;
use super::engine::{Plugins, sha256_hex};
use super::ivr::{IvrGuest, WORLD as IVR_WORLD};
use super::probation::{History, HistoryEntry, VersionHealth};
use super::push::{PushProviderGuest, WORLD as PUSH_WORLD};
use super::registry::{FileStamp, GuestInfo, file_stamp, refuse_failed_cases, unix_now};
use super::routing::{RoutingGuest, WORLD as ROUTING_WORLD};
use super::sms::{SmsProviderGuest, WORLD as SMS_WORLD};
use super::{GuestFailure, PluginError, cases};
use crate::directory::Directory;
use crate::push::keys::PushKeys;

/// A boxed future, for the object-safe [`Reloadable`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the registry needs of a guest of another world than routing: its
/// admin view, a reload, and whether its file changed.
pub trait Reloadable: Send + Sync {
    fn name(&self) -> &str;
    fn info(&self) -> GuestInfo;
    fn reload(&self) -> BoxFuture<'_, Result<GuestInfo, PluginError>>;
    /// The file differs (time or length) from the one last loaded.
    fn changed(&self) -> bool;
    /// Versions put in service, refused and rolled back, oldest first.
    fn history(&self) -> Vec<HistoryEntry>;
}

/// The part of a world that [`HotSlot`] needs: how to make a guest of a
/// compiled component, smoke-call it and count its calls, and which cases
/// it runs.
pub trait World: Send + Sync + 'static {
    type Guest: Send + Sync + 'static;
    const WORLD: &'static str;
    /// The world at the version `guest` was built for; a world served at
    /// several versions (SMS providers) names the guest's own.
    fn world_of(_guest: &Self::Guest) -> &'static str {
        Self::WORLD
    }
    /// The cases its guests are checked against.
    const CASES: cases::CaseWorld;
    /// Whether the first version is smoke-called too.
    const SMOKE_AT_START: bool;
    /// Sets what this world's cases run with that the file cannot say.
    fn prepare_cases(&self, _file: &mut cases::CaseFile) {}
    /// What the guest is granted.
    fn capabilities(&self) -> &Capabilities;
    fn health(guest: &Self::Guest) -> &VersionHealth;
    fn smoke(guest: &Self::Guest) -> BoxFuture<'_, Result<(), GuestFailure>>;
    fn link(
        &self,
        plugins: &Plugins,
        name: &str,
        path: &Path,
        component: &Component,
    ) -> Result<Self::Guest, PluginError>;
}

/// The routing world, with one guest's configuration values and the
/// directory it looks users up in.
pub struct RoutingWorld {
    pub config: BTreeMap<String, String>,
    /// Already scoped to the look-ups the guest is granted.
    pub directory: Arc<dyn Directory>,
    pub capabilities: Capabilities,
}

impl World for RoutingWorld {
    type Guest = RoutingGuest;
    const WORLD: &'static str = ROUTING_WORLD;
    const CASES: cases::CaseWorld = cases::CaseWorld::Routing;
    const SMOKE_AT_START: bool = true;

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn health(guest: &RoutingGuest) -> &VersionHealth {
        guest.health()
    }

    fn smoke(guest: &RoutingGuest) -> BoxFuture<'_, Result<(), GuestFailure>> {
        Box::pin(guest.smoke())
    }

    fn link(
        &self,
        plugins: &Plugins,
        name: &str,
        path: &Path,
        component: &Component,
    ) -> Result<RoutingGuest, PluginError> {
        RoutingGuest::new(
            plugins,
            name,
            path,
            component,
            self.config.clone(),
            self.directory.clone(),
        )
    }
}

/// The SMS provider world, with one provider's configuration values.
pub struct SmsWorld {
    pub config: BTreeMap<String, String>,
    pub capabilities: Capabilities,
}

impl World for SmsWorld {
    type Guest = SmsProviderGuest;
    const WORLD: &'static str = SMS_WORLD;
    const CASES: cases::CaseWorld = cases::CaseWorld::Sms;
    const SMOKE_AT_START: bool = false;

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn world_of(guest: &SmsProviderGuest) -> &'static str {
        guest.world()
    }

    fn health(guest: &SmsProviderGuest) -> &VersionHealth {
        guest.health()
    }

    fn smoke(guest: &SmsProviderGuest) -> BoxFuture<'_, Result<(), GuestFailure>> {
        Box::pin(guest.smoke())
    }

    fn link(
        &self,
        plugins: &Plugins,
        name: &str,
        path: &Path,
        component: &Component,
    ) -> Result<SmsProviderGuest, PluginError> {
        SmsProviderGuest::link(plugins, name, path, component, self.config.clone())
    }
}

/// The push provider world, with one provider's configuration values and
/// the switch's keys.
pub struct PushWorld {
    pub config: BTreeMap<String, String>,
    pub keys: Arc<PushKeys>,
    pub capabilities: Capabilities,
}

impl World for PushWorld {
    type Guest = PushProviderGuest;
    const WORLD: &'static str = PUSH_WORLD;
    const CASES: cases::CaseWorld = cases::CaseWorld::Push;
    const SMOKE_AT_START: bool = false;

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn health(guest: &PushProviderGuest) -> &VersionHealth {
        guest.health()
    }

    fn smoke(guest: &PushProviderGuest) -> BoxFuture<'_, Result<(), GuestFailure>> {
        Box::pin(guest.smoke())
    }

    fn link(
        &self,
        plugins: &Plugins,
        name: &str,
        path: &Path,
        component: &Component,
    ) -> Result<PushProviderGuest, PluginError> {
        PushProviderGuest::link(
            plugins,
            name,
            path,
            component,
            self.config.clone(),
            self.keys.clone(),
        )
    }
}

/// The IVR world, with one service's configuration values and CPU budget.
pub struct IvrWorld {
    pub config: BTreeMap<String, String>,
    pub step_budget: std::time::Duration,
    /// The switch's prompts, which the canary's calls play.
    pub prompts: PathBuf,
    pub capabilities: Capabilities,
}

impl World for IvrWorld {
    type Guest = IvrGuest;
    const WORLD: &'static str = IVR_WORLD;
    const CASES: cases::CaseWorld = cases::CaseWorld::Ivr;
    const SMOKE_AT_START: bool = false;

    fn prepare_cases(&self, file: &mut cases::CaseFile) {
        file.use_prompts(&self.prompts);
        file.use_mailboxes(self.capabilities.mailboxes);
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn health(guest: &IvrGuest) -> &VersionHealth {
        guest.health()
    }

    /// A flow runs only inside a call: linking is the whole check.
    fn smoke(_guest: &IvrGuest) -> BoxFuture<'_, Result<(), GuestFailure>> {
        Box::pin(async { Ok(()) })
    }

    fn link(
        &self,
        plugins: &Plugins,
        name: &str,
        path: &Path,
        component: &Component,
    ) -> Result<IvrGuest, PluginError> {
        IvrGuest::link(
            plugins,
            name,
            path,
            component,
            self.config.clone(),
            self.step_budget,
        )
    }
}

struct Loaded<G> {
    info: GuestInfo,
    guest: Arc<G>,
}

/// One guest of world `W` and its current version.
pub struct HotSlot<W: World> {
    /// The name the admin endpoint knows it by (`sms.<provider>`).
    name: String,
    /// The name in logs and metrics (the provider's).
    guest_name: String,
    path: PathBuf,
    cases: Option<PathBuf>,
    world: W,
    plugins: Plugins,
    current: ArcSwap<Loaded<W::Guest>>,
    /// The version `current` replaced, while `current` is on probation: it
    /// comes back if `current` fails too many of its first calls.
    previous: ArcSwapOption<Loaded<W::Guest>>,
    history: History,
    seen: Mutex<Option<FileStamp>>,
    reloading: tokio::sync::Mutex<()>,
}

impl<W: World> HotSlot<W> {
    /// Loads the first version; fails if it does not link or fails its
    /// cases (at start-up an operator wants to hear about a bad file at once).
    pub async fn load(
        plugins: &Plugins,
        name: String,
        guest_name: &str,
        path: &Path,
        cases: Option<PathBuf>,
        world: W,
    ) -> Result<Arc<Self>, PluginError> {
        let seen = file_stamp(path);
        let first = match read_file(path).await {
            Ok(file) => {
                load_version(
                    plugins,
                    &world,
                    guest_name,
                    path,
                    file,
                    cases.as_deref(),
                    W::SMOKE_AT_START,
                )
                .await
            }
            Err(e) => Err(e),
        };
        count_load(plugins, guest_name, first.is_ok());
        let mut first = first?;
        first.info.name.clone_from(&name);
        tracing::info!(guest = guest_name, world = first.info.world, sha256 = %first.info.sha256, path = %path.display(), "guest in service");
        let history = History::default();
        history.push("in-service", &first.info.sha256, "");
        Ok(Arc::new(Self {
            name,
            guest_name: guest_name.to_owned(),
            path: path.to_path_buf(),
            cases,
            world,
            plugins: plugins.clone(),
            current: ArcSwap::from_pointee(first),
            previous: ArcSwapOption::empty(),
            history,
            seen: Mutex::new(seen),
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// The name in logs and metrics.
    pub fn guest_name(&self) -> &str {
        &self.guest_name
    }

    /// The version in service: a caller keeps it for the whole of its work.
    /// A new version that failed too many of its first calls is taken out
    /// of service here, and the one it replaced comes back.
    pub fn current(&self) -> Arc<W::Guest> {
        // Every routing decision comes here: guards, not Arc clones, until
        // a version on probation has to go.
        let current = self.current.load();
        if self.previous.load().is_none() {
            return current.guest.clone();
        }
        let health = W::health(&current.guest);
        match health.verdict() {
            Some(why) => self.roll_back(&why),
            None => {
                if health.past_probation() {
                    self.previous.store(None);
                }
                current.guest.clone()
            }
        }
    }

    fn roll_back(&self, why: &str) -> Arc<W::Guest> {
        let bad = self.current.load_full();
        let Some(previous) = self.previous.load_full() else {
            // Another call rolled it back already.
            return bad.guest.clone();
        };
        let swapped = self.current.compare_and_swap(&bad, previous.clone());
        if Arc::ptr_eq(&swapped, &bad) {
            self.previous.store(None);
            self.history.push("rolled-back", &bad.info.sha256, why);
            self.plugins
                .metrics
                .guest_loads
                .with_label_values(&[&self.guest_name, "rolled-back"])
                .inc();
            tracing::error!(guest = %self.guest_name, world = W::WORLD, bad_version = %bad.info.sha256, restored = %previous.info.sha256, reason = why, "guest version taken out of service; the previous one is back");
        }
        self.current.load().guest.clone()
    }

    async fn reload_now(&self) -> Result<GuestInfo, PluginError> {
        let _one_at_a_time = self.reloading.lock().await;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = file_stamp(&self.path);
        let file = read_file(&self.path).await;
        // The history names a refused version too, when its file was read.
        let sha256 = file
            .as_ref()
            .map_or_else(|_| "unreadable".to_owned(), |(_, sha)| sha.clone());
        let result = match file {
            Ok(file) => {
                load_version(
                    &self.plugins,
                    &self.world,
                    &self.guest_name,
                    &self.path,
                    file,
                    self.cases.as_deref(),
                    true,
                )
                .await
            }
            Err(e) => Err(e),
        };
        count_load(&self.plugins, &self.guest_name, result.is_ok());
        match result {
            Ok(mut version) => {
                version.info.name.clone_from(&self.name);
                let info = version.info.clone();
                let replaced = self.current.swap(Arc::new(version));
                // The version to go back to is the last one that made its
                // probation: one replaced while still on probation is not.
                if self.previous.load().is_none() {
                    self.previous.store(Some(replaced));
                }
                self.history.push("in-service", &info.sha256, "");
                tracing::info!(guest = %self.guest_name, world = info.world, sha256 = %info.sha256, path = %info.path, "guest in service");
                Ok(info)
            }
            Err(e) => {
                let kept = self.current.load().info.sha256.clone();
                self.history.push("refused", &sha256, e.to_string());
                tracing::error!(guest = %self.guest_name, error = %e, kept_version = %kept, "guest load failed; previous version stays in service");
                Err(e)
            }
        }
    }
}

fn count_load(plugins: &Plugins, name: &str, ok: bool) {
    plugins
        .metrics
        .guest_loads
        .with_label_values(&[name, if ok { "ok" } else { "failed" }])
        .inc();
}

/// A guest file's bytes and their SHA-256.
async fn read_file(path: &Path) -> Result<(Vec<u8>, String), PluginError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| PluginError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let sha256 = sha256_hex(&bytes);
    Ok((bytes, sha256))
}

async fn load_version<W: World>(
    plugins: &Plugins,
    world: &W,
    name: &str,
    path: &Path,
    (bytes, sha256): (Vec<u8>, String),
    cases_path: Option<&Path>,
    smoke: bool,
) -> Result<Loaded<W::Guest>, PluginError> {
    let component = plugins.compile_off_reactor(path, bytes).await?;
    world
        .capabilities()
        .check_imports(plugins, path, W::WORLD, &component)?;
    let guest = world.link(plugins, name, path, &component)?;
    if smoke {
        W::smoke(&guest)
            .await
            .map_err(|failure| PluginError::Smoke {
                path: path.to_path_buf(),
                failure,
            })?;
    }
    if let Some(cases_path) = cases_path {
        let refuse = |message: String| PluginError::Canary {
            path: path.to_path_buf(),
            message,
        };
        let mut file = cases::CaseFile::load(cases_path).map_err(|e| refuse(e.to_string()))?;
        world.prepare_cases(&mut file);
        let checked = cases::run_component(W::CASES, plugins, name, path, &component, &file)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        refuse_failed_cases(path, cases_path, &checked)?;
    }
    Ok(Loaded {
        info: GuestInfo {
            // The slot replaces it with its admin name (`sms.<provider>` ...).
            name: name.to_owned(),
            world: W::world_of(&guest),
            path: path.display().to_string(),
            sha256,
            loaded_at: unix_now(),
        },
        guest: Arc::new(guest),
    })
}

impl<W: World> Reloadable for HotSlot<W> {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> GuestInfo {
        self.current.load().info.clone()
    }

    fn reload(&self) -> BoxFuture<'_, Result<GuestInfo, PluginError>> {
        Box::pin(self.reload_now())
    }

    fn changed(&self) -> bool {
        let stamp = file_stamp(&self.path);
        stamp.is_some() && stamp != *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.history.entries()
    }
}
