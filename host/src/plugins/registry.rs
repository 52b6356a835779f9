//! Loaded guests by name, and hot reload.
//!
//! Each configured routing guest (`[guests.<name>]`) is a
//! [`HotSlot`](super::hot::HotSlot) holding its current version behind an
//! `ArcSwap`; the provider services hand theirs over with
//! [`GuestRegistry::adopt`]. A reload compiles and links the new file, makes
//! a smoke call, runs its cases, and only then swaps it in: calls in flight
//! keep the `Arc` of the version they started on, new calls get the new one,
//! and a version that fails any step never replaces the one in service. The
//! admin endpoint, SIGHUP and the file watch reach every guest through here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::PluginError;
use super::cases;
use super::engine::Plugins;
use super::hot::{HotSlot, Reloadable, RoutingWorld};
use super::probation::HistoryEntry;
use super::routing::{Fallback, Router};
use crate::config::{Config, GuestConfig, WorldKind};
use crate::directory::Directory;

/// What `/guests` shows of a loaded version.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GuestInfo {
    pub name: String,
    pub world: &'static str,
    pub path: String,
    pub sha256: String,
    /// Unix time (seconds) the version was put in service.
    pub loaded_at: u64,
}

/// Every configured guest.
pub struct GuestRegistry {
    plugins: Plugins,
    routing: BTreeMap<String, Arc<HotSlot<RoutingWorld>>>,
    /// Guests of the other worlds, handed over by the services that use
    /// them once those are loaded ([`GuestRegistry::adopt`]).
    others: RwLock<BTreeMap<String, Arc<dyn Reloadable>>>,
}

/// (modified time, length) of a guest file.
pub(crate) type FileStamp = (SystemTime, u64);

pub(crate) fn file_stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Refuses a version that failed one of its cases, naming the first.
pub(crate) fn refuse_failed_cases(
    path: &Path,
    cases_path: &Path,
    checked: &[cases::Checked],
) -> Result<(), PluginError> {
    let failed: Vec<String> = checked
        .iter()
        .filter_map(|c| c.failure.as_ref().map(|why| format!("{}: {why}", c.name)))
        .collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(PluginError::Canary {
            path: path.to_path_buf(),
            message: format!(
                "{} of {} cases in {} failed, first {first}",
                failed.len(),
                checked.len(),
                cases_path.display()
            ),
        }),
    }
}

impl GuestRegistry {
    /// Loads every configured guest. Fails on the first guest that cannot be
    /// loaded: at start-up an operator wants to hear about a bad file at once.
    pub async fn load(
        plugins: Plugins,
        guests: &BTreeMap<String, GuestConfig>,
        directory: Arc<dyn Directory>,
    ) -> Result<Self, PluginError> {
        let mut routing = BTreeMap::new();
        for (name, config) in guests {
            // `[guests]` holds routing guests only; a new kind must say here
            // which world it loads into.
            match config.world {
                WorldKind::Routing => {}
            }
            let slot = HotSlot::load(
                &plugins,
                name.clone(),
                name,
                Path::new(&config.path),
                (!config.cases.is_empty()).then(|| PathBuf::from(&config.cases)),
                RoutingWorld {
                    config: config.config.clone(),
                    directory: config.capabilities.scope(directory.clone()),
                    capabilities: config.capabilities.clone(),
                },
            )
            .await?;
            routing.insert(name.clone(), slot);
        }
        Ok(Self {
            plugins,
            routing,
            others: RwLock::new(BTreeMap::new()),
        })
    }

    /// The router for the guest named in `config.routing`.
    pub fn router(&self, config: &Config) -> Result<Router, PluginError> {
        let slot = self
            .routing
            .get(&config.routing.guest)
            .ok_or_else(|| PluginError::UnknownGuest(config.routing.guest.clone()))?;
        Ok(Router::new(
            slot.clone(),
            Fallback {
                code: config.routing.fallback_code,
                reason: config.routing.fallback_reason.clone(),
            },
            self.plugins.metrics.clone(),
        ))
    }

    /// The engine and limits guests run under (shared with other worlds' loaders).
    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// Takes a guest of another world into the admin view, SIGHUP and the
    /// file watch. Its name must not be one of the routing guests'.
    pub fn adopt(&self, guest: Arc<dyn Reloadable>) {
        let name = guest.name().to_owned();
        debug_assert!(!self.routing.contains_key(&name), "{name} is taken");
        self.others
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, guest);
    }

    /// Every guest, routing ones first.
    fn all(&self) -> Vec<Arc<dyn Reloadable>> {
        let mut all: Vec<Arc<dyn Reloadable>> = self
            .routing
            .values()
            .map(|slot| slot.clone() as Arc<dyn Reloadable>)
            .collect();
        all.extend(
            self.others
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned(),
        );
        all
    }

    fn find(&self, name: &str) -> Option<Arc<dyn Reloadable>> {
        self.all().into_iter().find(|g| g.name() == name)
    }

    /// Current versions, by name: routing guests, then the others.
    pub fn list(&self) -> Vec<GuestInfo> {
        self.all().iter().map(|g| g.info()).collect()
    }

    /// The guest's versions put in service, refused and rolled back.
    pub fn history(&self, name: &str) -> Option<Vec<HistoryEntry>> {
        self.find(name).map(|g| g.history())
    }

    /// Loads the guest's file again and swaps it in if it passes every check.
    /// On failure the previous version stays in service and the error says why.
    pub async fn reload(&self, name: &str) -> Result<GuestInfo, PluginError> {
        match self.find(name) {
            Some(guest) => guest.reload().await,
            None => Err(PluginError::UnknownGuest(name.into())),
        }
    }

    /// Reloads every guest (SIGHUP). Failures are logged by `reload`.
    pub async fn reload_all(&self) {
        for guest in self.all() {
            let _ = guest.reload().await;
        }
    }

    /// Reloads the guests whose file changed since it was last loaded.
    pub async fn reload_changed(&self) {
        for guest in self.all() {
            if guest.changed() {
                tracing::info!(guest = %guest.name(), "guest file changed; reloading");
                let _ = guest.reload().await;
            }
        }
    }

    /// Polls guest files every `interval` and reloads those that changed.
    ///
    /// Polling (one `stat` per guest per interval) rather than inotify: it sees
    /// a file replaced by rename, by copy over, or on a network file system
    /// alike, and needs no extra dependency.
    pub fn spawn_watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                registry.reload_changed().await;
            }
        })
    }
}
