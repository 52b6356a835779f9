//! `softswitch guest check`: which world a component implements, or why it is refused.
//!
//! A component that exports `build-send` is checked as an SMS provider (the
//! report names the version it was built for, `...@0.1.0` or `...@0.2.0`);
//! any other as a router.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::PluginError;
use super::engine::{Plugins, sha256_hex};
use super::routing::{RoutingGuest, WORLD as ROUTING_WORLD};
use super::sms::SmsProviderGuest;
use crate::directory::MemoryDirectory;

/// What a check found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub path: String,
    pub world: &'static str,
    pub sha256: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// The names a component exports: which world it is written for (`route`:
/// routing; `build-send`: sms-provider; ...).
pub fn export_names(plugins: &Plugins, component: &wasmtime::component::Component) -> Vec<String> {
    component
        .component_type()
        .exports(&plugins.engine)
        .map(|(n, _)| n.to_string())
        .collect()
}

/// Compiles `path`, links it against every world the host implements and makes
/// the smoke call. The error names the world that was expected and what the
/// component offers instead.
pub async fn check(plugins: &Plugins, path: &Path) -> Result<CheckReport, PluginError> {
    let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let sha256 = sha256_hex(&bytes);
    let component = plugins.compile(path, &bytes)?;
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(&plugins.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(&plugins.engine)
        .map(|(n, _)| n.to_string())
        .collect();

    let with_exports = |e| match e {
        PluginError::WrongWorld {
            path,
            expected,
            message,
        } => PluginError::WrongWorld {
            path,
            expected,
            message: format!("{message} (the component exports [{}])", exports.join(", ")),
        },
        other => other,
    };
    let smoke_failed = |failure| PluginError::Smoke {
        path: path.to_path_buf(),
        failure,
    };
    let world = if exports.iter().any(|e| e == "build-send") {
        let guest = SmsProviderGuest::link(plugins, "check", path, &component, Default::default())
            .map_err(with_exports)?;
        guest.smoke().await.map_err(smoke_failed)?;
        guest.world()
    } else {
        let guest = RoutingGuest::new(
            plugins,
            "check",
            path,
            &component,
            Default::default(),
            Arc::new(MemoryDirectory::default()),
        )
        .map_err(with_exports)?;
        guest.smoke().await.map_err(smoke_failed)?;
        ROUTING_WORLD
    };
    Ok(CheckReport {
        path: path.display().to_string(),
        world,
        sha256,
        imports,
        exports,
    })
}
