//! Sending SMS through the provider guests: the queue worker, retries with
//! back-off, the per-guest allow-list of hosts, and delivery reports.
//!
//! Everything sent goes through the `sms_messages` table first ("accepted
//! means stored"): sign-up codes are queued by the API, OFFNET messages are
//! handed over from the SIP core's `sms_outbox`. The worker claims due rows,
//! asks the provider guest for the HTTP request, checks the host against the
//! guest's `allowed_hosts`, performs it with reqwest, and lets the guest read
//! the answer. Guest failures and network errors are retried with
//! exponential back-off up to `max_attempts`, then the row fails with the
//! reason; nothing a guest does can stop the worker.

pub mod encoding;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::plugins::hot::{HotSlot, SmsWorld};
use crate::plugins::registry::GuestRegistry;
use crate::plugins::sms::SmsProviderGuest;
use crate::store::Store;

/// `[sms]`: which provider guest sends, and how hard the host tries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// Provider (a key of `[sms.providers]`) for sign-up codes and OFFNET
    /// messages. Empty: no SMS (phone sign-up answers `sms-unavailable`).
    pub provider: String,
    /// Sender ID or number given to the provider (empty: the guest's own `from`).
    pub sender: String,
    /// Attempts before an SMS is marked failed.
    pub max_attempts: u32,
    /// First retry delay, seconds; doubled on each further attempt.
    pub retry_base_secs: u64,
    /// Longest retry delay, seconds.
    pub retry_max_secs: u64,
    /// How often the queue is checked when nothing wakes the worker, ms.
    pub poll_interval_ms: u64,
    /// Timeout of one request to a vendor, ms.
    pub http_timeout_ms: u64,
    /// Base URL vendors call back with delivery reports (the API's public
    /// address, e.g. `https://sip.example.net:8443`). Empty: reports are not requested.
    pub callback_base_url: String,
    /// Provider guests by name.
    pub providers: BTreeMap<String, SmsProviderConfig>,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            provider: String::new(),
            sender: String::new(),
            // Five tries over about five minutes (5, 10, 20, 40 s ...): a
            // sign-up code older than that is useless anyway.
            max_attempts: 5,
            retry_base_secs: 5,
            retry_max_secs: 300,
            poll_interval_ms: 1000,
            // Vendors answer in well under a second; ten leaves room for a slow
            // one without letting one SMS hold the worker.
            http_timeout_ms: 10_000,
            callback_base_url: String::new(),
            providers: BTreeMap::new(),
        }
    }
}

/// `[sms.providers.NAME]`: one provider guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SmsProviderConfig {
    /// Path of the `.wasm` component (relative to the config file's folder).
    pub path: String,
    /// Hosts the guest's requests may go to (exact names, optionally
    /// `host:port`). Any other host is refused and the SMS fails.
    pub allowed_hosts: Vec<String>,
    /// Values passed to the guest (credentials, sender, endpoint).
    pub config: BTreeMap<String, String>,
    /// A case file (`softswitch guest test`) every new version must pass
    /// before it replaces the one in service; empty: none.
    pub cases: String,
    /// The interfaces of its world it may import (`capabilities = {
    /// imports = [...] }`); the hosts it may reach are `allowed_hosts`.
    pub capabilities: crate::plugins::capabilities::Capabilities,
}

/// Errors starting the SMS service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmsError {
    /// `sms.provider` names no configured provider.
    #[error("sms.provider names {0:?}, which is not under [sms.providers]")]
    UnknownProvider(String),
    /// A provider guest could not be loaded.
    #[error("SMS provider guest {name}: {source}")]
    Load {
        name: String,
        source: crate::plugins::PluginError,
    },
    /// The HTTP client could not be built.
    #[error("SMS HTTP client: {0}")]
    Client(String),
}

/// The loaded provider guests and what the worker and the API share.
pub struct SmsService {
    pub config: SmsConfig,
    pub store: Store,
    pub providers: BTreeMap<String, Arc<HotSlot<SmsWorld>>>,
    /// Wakes the worker when something was queued.
    pub wake: tokio::sync::Notify,
    client: reqwest::Client,
}

impl SmsService {
    /// Loads every configured provider guest (paths as resolved by
    /// `Config::load`) and hands them to `registry` for hot reload (admin
    /// name `sms.<provider>`).
    pub async fn load(
        config: &SmsConfig,
        registry: &GuestRegistry,
        store: Store,
    ) -> Result<Arc<Self>, SmsError> {
        if !config.provider.is_empty() && !config.providers.contains_key(&config.provider) {
            return Err(SmsError::UnknownProvider(config.provider.clone()));
        }
        let mut providers = BTreeMap::new();
        for (name, p) in &config.providers {
            let slot = HotSlot::load(
                registry.plugins(),
                format!("sms.{name}"),
                name,
                Path::new(&p.path),
                (!p.cases.is_empty()).then(|| PathBuf::from(&p.cases)),
                SmsWorld {
                    config: p.config.clone(),
                    capabilities: p.capabilities.clone(),
                },
            )
            .await
            .map_err(|source| SmsError::Load {
                name: name.clone(),
                source,
            })?;
            registry.adopt(slot.clone());
            providers.insert(name.clone(), slot);
        }
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(config.http_timeout_ms))
            // A redirect could lead outside the allowed hosts.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SmsError::Client(e.to_string()))?;
        Ok(Arc::new(Self {
            config: config.clone(),
            store,
            providers,
            wake: tokio::sync::Notify::new(),
            client,
        }))
    }

    /// The version of `provider` in service, kept by the caller for the
    /// whole of one send or report.
    pub fn provider(&self, provider: &str) -> Option<Arc<SmsProviderGuest>> {
        self.providers.get(provider).map(|slot| slot.current())
    }

    /// Whether sign-up codes can be sent at all.
    pub fn enabled(&self) -> bool {
        !self.config.provider.is_empty()
    }

    /// Whether `url`'s host is on the provider's allow-list.
    pub fn host_allowed(&self, provider: &str, url: &reqwest::Url) -> bool {
        let Some(p) = self.config.providers.get(provider) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let with_port = url
            .port_or_known_default()
            .map(|port| format!("{host}:{port}"));
        p.allowed_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host) || Some(a.to_ascii_lowercase()) == with_port)
    }

    /// The callback URL for `provider`'s delivery reports, if configured.
    pub fn callback_url(&self, provider: &str) -> Option<String> {
        (!self.config.callback_base_url.is_empty()).then(|| {
            format!(
                "{}/v1/sms/reports/{provider}",
                self.config.callback_base_url.trim_end_matches('/')
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&SmsConfig::default()).unwrap();
        let back: SmsConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, SmsConfig::default());
    }
}
