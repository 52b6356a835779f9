//! Loaded guests by name, and hot reload.
//!
//! Each configured guest has a [`GuestSlot`] holding its current version behind
//! an `ArcSwap`. A reload compiles and links the new file, makes a smoke call,
//! and only then swaps it in: calls in flight keep the `Arc` of the version they
//! started on, new calls get the new one, and a version that fails any step
//! never replaces the one in service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use super::engine::{Plugins, sha256_hex};
use super::routing::{Fallback, Router, RoutingGuest, WORLD as ROUTING_WORLD};
use super::{PluginError, cases};
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

/// One loaded version.
struct Version {
    info: GuestInfo,
    routing: Arc<RoutingGuest>,
}

/// A configured guest and its current version.
pub struct GuestSlot {
    name: String,
    config: GuestConfig,
    current: ArcSwapOption<Version>,
    /// (modified time, length) of the file when last looked at, for the watch.
    seen: Mutex<Option<(SystemTime, u64)>>,
    /// Serialises reloads of one guest (watch, SIGHUP and admin may race).
    reloading: tokio::sync::Mutex<()>,
}

impl GuestSlot {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn current_routing(&self) -> Option<Arc<RoutingGuest>> {
        self.current.load().as_ref().map(|v| v.routing.clone())
    }

    fn info(&self) -> Option<GuestInfo> {
        self.current.load().as_ref().map(|v| v.info.clone())
    }
}

/// Every configured guest.
pub struct GuestRegistry {
    plugins: Plugins,
    directory: Arc<dyn Directory>,
    slots: BTreeMap<String, Arc<GuestSlot>>,
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the cases a guest's config names against a new version; refuses it
/// if one fails (or the cases cannot be run).
async fn canary(
    plugins: &Plugins,
    name: &str,
    path: &Path,
    component: &wasmtime::component::Component,
    cases_path: &Path,
) -> Result<(), PluginError> {
    let refuse = |message: String| PluginError::Canary {
        path: path.to_path_buf(),
        message,
    };
    let file = cases::CaseFile::load(cases_path).map_err(|e| refuse(e.to_string()))?;
    let checked = cases::routing(plugins, name, path, component, &file)
        .await
        .map_err(|e| refuse(e.to_string()))?;
    let failed: Vec<String> = checked
        .iter()
        .filter_map(|c| c.failure.as_ref().map(|why| format!("{}: {why}", c.name)))
        .collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(refuse(format!(
            "{} of {} cases in {} failed, first {first}",
            failed.len(),
            checked.len(),
            cases_path.display()
        ))),
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
        let mut slots = BTreeMap::new();
        for (name, config) in guests {
            let slot = Arc::new(GuestSlot {
                name: name.clone(),
                config: config.clone(),
                current: ArcSwapOption::empty(),
                seen: Mutex::new(None),
                reloading: tokio::sync::Mutex::new(()),
            });
            slots.insert(name.clone(), slot);
        }
        let registry = Self {
            plugins,
            directory,
            slots,
        };
        for name in registry.slots.keys() {
            registry.reload(name).await?;
        }
        Ok(registry)
    }

    /// The router for the guest named in `config.routing`.
    pub fn router(&self, config: &Config) -> Result<Router, PluginError> {
        let slot = self
            .slots
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

    /// Current versions, by name.
    pub fn list(&self) -> Vec<GuestInfo> {
        self.slots.values().filter_map(|s| s.info()).collect()
    }

    /// Loads the guest's file again and swaps it in if it passes every check.
    /// On failure the previous version stays in service and the error says why.
    pub async fn reload(&self, name: &str) -> Result<GuestInfo, PluginError> {
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| PluginError::UnknownGuest(name.into()))?;
        let _one_at_a_time = slot.reloading.lock().await;
        let path = PathBuf::from(&slot.config.path);
        *slot.seen.lock().unwrap_or_else(|p| p.into_inner()) = file_stamp(&path);
        let result = self.load_version(slot, &path).await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.plugins
            .metrics
            .guest_loads
            .with_label_values(&[name, outcome])
            .inc();
        match result {
            Ok(version) => {
                let info = version.info.clone();
                slot.current.store(Some(Arc::new(version)));
                tracing::info!(guest = name, world = info.world, sha256 = %info.sha256, path = %info.path, "guest in service");
                Ok(info)
            }
            Err(e) => {
                let kept = slot
                    .info()
                    .map(|i| i.sha256)
                    .unwrap_or_else(|| "none".into());
                tracing::error!(guest = name, error = %e, kept_version = %kept, "guest load failed; previous version stays in service");
                Err(e)
            }
        }
    }

    async fn load_version(&self, slot: &GuestSlot, path: &Path) -> Result<Version, PluginError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| PluginError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let sha256 = sha256_hex(&bytes);
        // Compiling is CPU-bound for a tenth of a second or more: keep it off the reactor.
        let plugins = self.plugins.clone();
        let owned_path = path.to_path_buf();
        let component = tokio::task::spawn_blocking(move || plugins.compile(&owned_path, &bytes))
            .await
            .map_err(|e| PluginError::Engine(e.to_string()))??;
        match slot.config.world {
            WorldKind::Routing => {
                let guest = RoutingGuest::new(
                    &self.plugins,
                    &slot.name,
                    path,
                    &component,
                    slot.config.config.clone(),
                    self.directory.clone(),
                )?;
                guest.smoke().await.map_err(|failure| PluginError::Smoke {
                    path: path.to_path_buf(),
                    failure,
                })?;
                if !slot.config.cases.is_empty() {
                    let cases = Path::new(&slot.config.cases);
                    canary(&self.plugins, &slot.name, path, &component, cases).await?;
                }
                Ok(Version {
                    info: GuestInfo {
                        name: slot.name.clone(),
                        world: ROUTING_WORLD,
                        path: path.display().to_string(),
                        sha256,
                        loaded_at: unix_now(),
                    },
                    routing: Arc::new(guest),
                })
            }
        }
    }

    /// Reloads every guest (SIGHUP). Failures are logged by `reload`.
    pub async fn reload_all(&self) {
        for name in self.slots.keys() {
            let _ = self.reload(name).await;
        }
    }

    /// Reloads the guests whose file changed since it was last loaded.
    pub async fn reload_changed(&self) {
        for (name, slot) in &self.slots {
            let stamp = file_stamp(Path::new(&slot.config.path));
            let changed = {
                let seen = slot.seen.lock().unwrap_or_else(|p| p.into_inner());
                stamp.is_some() && stamp != *seen
            };
            if changed {
                tracing::info!(guest = %name, "guest file changed; reloading");
                let _ = self.reload(name).await;
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
