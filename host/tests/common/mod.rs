//! Shared set-up for the host's integration tests: where the built guests are,
//! and a plugin runtime with a directory held in memory.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use softswitch::config::{GuestConfig, WorldKind};
use softswitch::directory::{DirAccount, DirGateway, Directory, MemoryDirectory};
use softswitch::metrics::Metrics;
use softswitch::plugins::routing::{Kind, Reason, RouteRequest, Transport};
use softswitch::plugins::{Plugins, PluginsOptions};

// One definition of where the built guests are, shared with the black-box tests.
#[path = "../../../tests/support/mod.rs"]
mod support;
pub use support::guest_wasm;

pub const DEFAULT_ROUTER: &str = "routing_default";
pub const BLOCKLIST_ROUTER: &str = "routing_blocklist";

pub fn plugins(cache: &std::path::Path, metrics: &Metrics) -> Plugins {
    // Generous wait: a test's calls queue behind each other on two shared cores.
    plugins_with_slots(cache, metrics, 64, Duration::from_secs(10))
}

/// [`plugins`] with an instance pool of `max_instances` slots, a call
/// waiting at most `instance_wait` for one.
pub fn plugins_with_slots(
    cache: &std::path::Path,
    metrics: &Metrics,
    max_instances: u32,
    instance_wait: Duration,
) -> Plugins {
    Plugins::new(
        PluginsOptions {
            cache_dir: cache.to_path_buf(),
            // Small enough that the alloc fixture hits it in a few ms even on a
            // loaded machine, long before the deadline (which is generous for
            // the same reason: tests share two cores).
            memory_limit_bytes: 8 << 20,
            deadline: Duration::from_millis(200),
            provider_deadline: Duration::from_millis(200),
            warm_instances: 4,
            max_instances,
            instance_wait,
        },
        metrics.clone(),
    )
    .expect("engine")
}

fn account(
    login: &str,
    phone: Option<&str>,
    username: Option<&str>,
    voicemail: bool,
) -> DirAccount {
    DirAccount {
        login: login.into(),
        phone: phone.map(Into::into),
        username: username.map(Into::into),
        display_name: username.or(phone).map(Into::into),
        voicemail_enabled: voicemail,
    }
}

/// alice: username login, voicemail on. 48600333444: phone login, voicemail off.
/// carol: found by her username "carolina". Gateways by prefix 48, 486 and 49.
pub fn directory() -> Arc<dyn Directory> {
    Arc::new(MemoryDirectory::new(
        vec![
            account("alice", Some("48600111222"), Some("alice"), true),
            account("48600333444", Some("48600333444"), None, false),
            account("carol", None, Some("carolina"), true),
        ],
        HashSet::from(["alice".to_string()]),
        vec![
            DirGateway {
                name: "carrier-pl".into(),
                prefix: "48".into(),
            },
            DirGateway {
                name: "carrier-pl-mobile".into(),
                prefix: "486".into(),
            },
            DirGateway {
                name: "carrier-de".into(),
                prefix: "49".into(),
            },
        ],
    ))
}

pub fn guest(path: PathBuf, config: &[(&str, &str)]) -> GuestConfig {
    GuestConfig {
        path: path.to_string_lossy().into_owned(),
        world: WorldKind::Routing,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        cases: String::new(),
        capabilities: Default::default(),
    }
}

pub fn call(from: &str, to: &str) -> RouteRequest {
    RouteRequest {
        kind: Kind::Call,
        caller_login: from.into(),
        caller_display_name: None,
        authenticated: true,
        target: to.into(),
        transport: Transport::Tls,
        source_address: "127.0.0.1:5061".into(),
        dialplan_rule: "DP:int-> OR onnet".into(),
        reason: Reason::Initial,
    }
}
