//! Push notifications through the push provider guests (SPEC §9).
//!
//! Something happens to a user (a message while their devices are away, a
//! voice message left, a call waiting): [`PushService::notify`] picks the
//! user's device tokens that should hear of it and queues one row per token
//! in `push_outbox` ("accepted means stored"). The worker claims due rows,
//! asks the token's provider guest for the request(s), checks each URL's
//! host against the guest's `allowed_hosts`, performs them over a shared
//! HTTP/2 client, and lets the guest read the answers: delivered, token
//! invalid (the token is deleted), retry after N seconds, or failed. At most
//! `max_in_flight` pushes per provider are in the air at once.
//!
//! Which tokens: an incoming call goes to a device's VoIP token when it has
//! one (iOS PushKit), else to its alert token; everything else goes to alert
//! tokens only, because iOS ends an app that gets a VoIP push without
//! reporting a call.

pub mod keys;
pub mod rfc8599;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::plugins::hot::{HotSlot, PushWorld};
use crate::plugins::push::PushProviderGuest;
use crate::plugins::registry::GuestRegistry;
use crate::store::Store;
use crate::store::push::{PushToken, TokenKind};
use keys::{KeyConfig, PushKeys};

/// `[push]`: provider guests, their keys, and how hard the host tries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// A call to a user with push tokens whose registered devices have not
    /// answered after this long is parked and their apps get an
    /// incoming-call push, ms (without registered devices: at once).
    pub park_after_ms: u64,
    /// Attempts before a push is marked failed.
    pub max_attempts: u32,
    /// First retry delay, seconds; doubled on each further attempt.
    pub retry_base_secs: u64,
    /// Longest retry delay, seconds.
    pub retry_max_secs: u64,
    /// A push older than this is dropped instead of sent (an incoming-call
    /// push is useless after the call; a message push after a day).
    pub max_age_secs: u64,
    /// How often the outbox is checked when nothing wakes the worker, ms.
    pub poll_interval_ms: u64,
    /// Timeout of one request to a push service, ms.
    pub http_timeout_ms: u64,
    /// Pushes in flight at once, per provider.
    pub max_in_flight: usize,
    /// PEM file of extra CA certificates trusted for push services (an
    /// operator's own gateway; the tests' stand-ins). Empty: public roots only.
    pub ca_file: String,
    /// Signing keys by name (`[push.keys.NAME]`), used by guests through
    /// the credentials import.
    pub keys: BTreeMap<String, KeyConfig>,
    /// Provider guests by name (`[push.providers.NAME]`); a token names one.
    pub providers: BTreeMap<String, PushProviderConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            park_after_ms: 3000,
            // Six tries over about two minutes (2, 4, 8, 16, 32 s): services
            // that throttle say when to come back, and that wins.
            max_attempts: 6,
            retry_base_secs: 2,
            retry_max_secs: 300,
            max_age_secs: 86_400,
            poll_interval_ms: 1000,
            // APNs and FCM answer in a few hundred ms; a hung service must
            // not hold a push slot for long.
            http_timeout_ms: 5000,
            max_in_flight: 32,
            ca_file: String::new(),
            keys: BTreeMap::new(),
            providers: BTreeMap::new(),
        }
    }
}

/// `[push.providers.NAME]`: one provider guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushProviderConfig {
    /// Path of the `.wasm` component (relative to the config file's folder).
    pub path: String,
    /// Hosts the guest's requests may go to (exact names, optionally
    /// `host:port`); `*` allows any (UnifiedPush endpoints are the
    /// devices' choice). Any other host is refused and the push fails.
    pub allowed_hosts: Vec<String>,
    /// Values passed to the guest (team id, topic, project id, endpoint).
    pub config: BTreeMap<String, String>,
    /// A case file (`softswitch guest test`) every new version must pass
    /// before it replaces the one in service; empty: none.
    pub cases: String,
    /// The interfaces of its world it may import (`capabilities = {
    /// imports = [...] }`); the hosts it may reach are `allowed_hosts`.
    pub capabilities: crate::plugins::capabilities::Capabilities,
}

impl PushConfig {
    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn rebase(&mut self, base: &Path) {
        let rebase = |p: &mut String| {
            if !p.is_empty() && Path::new(p.as_str()).is_relative() {
                *p = base.join(&*p).to_string_lossy().into_owned();
            }
        };
        rebase(&mut self.ca_file);
        for k in self.keys.values_mut() {
            rebase(&mut k.path);
        }
        for p in self.providers.values_mut() {
            rebase(&mut p.path);
            rebase(&mut p.cases);
        }
    }
}

/// What happened (SPEC §9's payload types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationKind {
    IncomingCall,
    MissedCall,
    Text,
    Picture,
    Video,
    Audio,
    File,
    Voicemail,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IncomingCall => "incoming-call",
            Self::MissedCall => "missed-call",
            Self::Text => "text",
            Self::Picture => "picture",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::File => "file",
            Self::Voicemail => "voicemail",
        }
    }

    /// The kind of a message push, from the message's content type.
    pub fn of_message(content_type: &str) -> Self {
        let t = content_type.trim().to_ascii_lowercase();
        if t.starts_with("image/") {
            Self::Picture
        } else if t.starts_with("video/") {
            Self::Video
        } else if t.starts_with("audio/") {
            Self::Audio
        } else if t.starts_with("text/") || t.is_empty() {
            Self::Text
        } else {
            Self::File
        }
    }
}

/// One notification for one user, as stored in the outbox and handed to
/// the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: NotificationKind,
    pub from_login: String,
    pub from_display_name: String,
    pub from_book_name: Option<String>,
    pub timestamp: i64,
    pub call_id: Option<String>,
    /// A text's first 40 characters; a voicemail's id.
    pub excerpt: String,
    pub badge: u32,
    /// Stable across retries (collapse id, idempotency key).
    pub id: String,
}

/// Characters of a name a push carries (display names come from SIP headers).
const NAME_CHARS: usize = 128;

/// Characters of a message body a text push carries (SPEC §9).
pub const EXCERPT_CHARS: usize = 40;

/// A message body's first [`EXCERPT_CHARS`] characters, on one line.
pub fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(EXCERPT_CHARS)
        .collect()
}

/// Errors starting the push service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    #[error("push provider guest {name}: {source}")]
    Load {
        name: String,
        source: crate::plugins::PluginError,
    },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("push HTTP client: {0}")]
    Client(String),
    #[error("push.ca_file {path}: {message}")]
    Ca { path: String, message: String },
}

/// The loaded provider guests, the keys and the HTTP client.
pub struct PushService {
    pub config: PushConfig,
    pub store: Store,
    pub providers: BTreeMap<String, Arc<HotSlot<PushWorld>>>,
    pub keys: Arc<PushKeys>,
    /// Wakes the worker when something was queued.
    pub wake: tokio::sync::Notify,
    client: reqwest::Client,
    limits: HashMap<String, Arc<tokio::sync::Semaphore>>,
    metrics: crate::metrics::Metrics,
    /// Tokens last taken from REGISTERs, so a refresh writes nothing.
    from_register: std::sync::Mutex<HashMap<(String, String, TokenKind), String>>,
}

/// One client for every push: HTTP/2 where the service offers it (ALPN),
/// connections kept and reused (APNs asks for long-lived connections).
fn http_client(config: &PushConfig) -> Result<reqwest::Client, PushError> {
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(config.http_timeout_ms))
        // A redirect could lead outside the allowed hosts.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(std::time::Duration::from_secs(600));
    if !config.ca_file.is_empty() {
        let pem = std::fs::read(&config.ca_file).map_err(|e| PushError::Ca {
            path: config.ca_file.clone(),
            message: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| PushError::Ca {
            path: config.ca_file.clone(),
            message: e.to_string(),
        })?;
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder
        .build()
        .map_err(|e| PushError::Client(e.to_string()))
}

impl PushService {
    /// Loads the keys and every configured provider guest, and hands the
    /// guests to `registry` for hot reload (admin name `push.<provider>`).
    pub async fn load(
        config: &PushConfig,
        registry: &GuestRegistry,
        store: Store,
        metrics: crate::metrics::Metrics,
    ) -> Result<Arc<Self>, PushError> {
        crate::tls::install_crypto_provider();
        let client = http_client(config)?;
        let keys = Arc::new(PushKeys::load(&config.keys, client.clone())?);
        let mut providers = BTreeMap::new();
        let mut limits = HashMap::new();
        for (name, p) in &config.providers {
            let slot = HotSlot::load(
                registry.plugins(),
                format!("push.{name}"),
                name,
                Path::new(&p.path),
                (!p.cases.is_empty()).then(|| PathBuf::from(&p.cases)),
                PushWorld {
                    config: p.config.clone(),
                    keys: keys.clone(),
                    capabilities: p.capabilities.clone(),
                },
            )
            .await
            .map_err(|source| PushError::Load {
                name: name.clone(),
                source,
            })?;
            registry.adopt(slot.clone());
            providers.insert(name.clone(), slot);
            limits.insert(
                name.clone(),
                Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1))),
            );
        }
        Ok(Arc::new(Self {
            config: config.clone(),
            store,
            providers,
            keys,
            wake: tokio::sync::Notify::new(),
            client,
            limits,
            metrics,
            from_register: Default::default(),
        }))
    }

    /// The version of `provider` in service, kept by the caller for the
    /// whole of one push.
    pub fn provider(&self, provider: &str) -> Option<Arc<PushProviderGuest>> {
        self.providers.get(provider).map(|slot| slot.current())
    }

    /// Whether a provider of that name is configured.
    pub fn has_provider(&self, name: &str) -> bool {
        self.providers.contains_key(name)
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
        p.allowed_hosts.iter().any(|a| {
            a == "*" || a.eq_ignore_ascii_case(host) || Some(a.to_ascii_lowercase()) == with_port
        })
    }

    /// Stores the tokens `login`'s bindings carry (RFC 8599 Contact URI
    /// parameters) that are new or changed since the last REGISTER.
    pub async fn tokens_from_bindings(
        &self,
        login: &str,
        bindings: &[crate::store::location::Binding],
    ) {
        for b in bindings {
            let Some(t) = rfc8599::token_from_contact(&b.contact, b.instance.as_deref()) else {
                continue;
            };
            let key = (login.to_string(), t.instance.clone(), t.kind);
            let known = self
                .from_register
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .is_some_and(|token| *token == t.token);
            if known {
                continue;
            }
            if !self.has_provider(&t.provider) {
                tracing::debug!(
                    login,
                    provider = t.provider,
                    "REGISTER names a push provider that is not configured"
                );
                continue;
            }
            let now = crate::store::now_secs();
            match self
                .store
                .set_push_token(login, &t, crate::store::push::TokenSource::Register, now)
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        login,
                        instance = t.instance,
                        provider = t.provider,
                        kind = t.kind.as_str(),
                        "push token taken from REGISTER"
                    );
                    self.from_register
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, t.token);
                }
                Err(e) => tracing::warn!(login, error = %e, "push token from REGISTER not stored"),
            }
        }
    }

    /// Queues `n` for `login`'s devices that should hear of it; returns how
    /// many pushes were queued (none when the user has no suitable token).
    pub async fn notify(&self, login: &str, n: &Notification) -> crate::store::Result<usize> {
        let tokens = self.store.push_tokens(login).await?;
        // Names come from SIP headers: bounded, so the stored row is too.
        let mut n = n.clone();
        for name in [&mut n.from_login, &mut n.from_display_name] {
            *name = name.chars().take(NAME_CHARS).collect();
        }
        n.from_book_name = n
            .from_book_name
            .map(|b| b.chars().take(NAME_CHARS).collect());
        n.call_id = n.call_id.map(|c| c.chars().take(255).collect());
        let n = &n;
        let chosen = choose_tokens(&tokens, n.kind);
        if chosen.is_empty() {
            return Ok(0);
        }
        let json = serde_json::to_string(n).expect("a notification serialises");
        let ids = self
            .store
            .queue_pushes(&chosen, n.kind.as_str(), &json, crate::store::now_secs())
            .await?;
        tracing::info!(
            login,
            kind = n.kind.as_str(),
            id = n.id,
            devices = ids.len(),
            "push queued"
        );
        self.metrics
            .push_queued
            .with_label_values(&[n.kind.as_str()])
            .inc_by(ids.len() as u64);
        self.wake.notify_one();
        Ok(ids.len())
    }

    /// Fills in what the receiving user sees (their own name for the
    /// sender, their unread count) and queues the push; errors are logged,
    /// never returned: a push is a courtesy, the event itself is stored.
    pub async fn notify_user(&self, login: &str, mut n: Notification) {
        if n.from_book_name.is_none() && !n.from_login.is_empty() {
            n.from_book_name = self
                .store
                .book_name(login, &n.from_login)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "address-book name unavailable for a push");
                    None
                });
        }
        if n.badge == 0 {
            n.badge = match self.store.mailbox_counts(login).await {
                Ok(c) => u32::try_from(c.new).unwrap_or(u32::MAX),
                Err(_) => 0,
            };
        }
        if let Err(e) = self.notify(login, &n).await {
            tracing::error!(error = %e, login, kind = n.kind.as_str(), "push not queued");
        }
    }
}

/// The tokens a notification of `kind` goes to: per device, the VoIP token
/// for incoming calls when there is one, else the alert token.
pub fn choose_tokens(tokens: &[PushToken], kind: NotificationKind) -> Vec<PushToken> {
    let mut by_device: BTreeMap<&str, (Option<&PushToken>, Option<&PushToken>)> = BTreeMap::new();
    for t in tokens {
        let slot = by_device.entry(t.instance.as_str()).or_default();
        match t.kind {
            TokenKind::Voip => slot.0 = Some(t),
            TokenKind::Alert => slot.1 = Some(t),
        }
    }
    by_device
        .into_values()
        .filter_map(|(voip, alert)| match kind {
            NotificationKind::IncomingCall => voip.or(alert),
            _ => alert,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(instance: &str, kind: TokenKind) -> PushToken {
        PushToken {
            id: 0,
            login: "bob".into(),
            instance: instance.into(),
            provider: "apns".into(),
            token: format!("{instance}-{}", kind.as_str()),
            app: String::new(),
            sandbox: false,
            kind,
            source: "api".into(),
            updated_at: 0,
        }
    }

    #[test]
    fn calls_go_to_voip_tokens_and_the_rest_to_alert_tokens() {
        let tokens = [
            t("iphone", TokenKind::Voip),
            t("iphone", TokenKind::Alert),
            t("android", TokenKind::Alert),
            t("old-ios", TokenKind::Voip),
        ];
        let names = |k| -> Vec<String> {
            choose_tokens(&tokens, k)
                .into_iter()
                .map(|t| t.token)
                .collect()
        };
        assert_eq!(
            names(NotificationKind::IncomingCall),
            ["android-alert", "iphone-voip", "old-ios-voip"]
        );
        assert_eq!(
            names(NotificationKind::Text),
            ["android-alert", "iphone-alert"]
        );
    }

    #[test]
    fn excerpts_are_forty_characters_on_one_line() {
        let long = "Zażółć gęślą jaźń\nthen a very long tail that goes on and on";
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), 40);
        assert!(e.starts_with("Zażółć gęślą jaźń then"));
        assert_eq!(excerpt(b"hi"), "hi");
    }

    #[test]
    fn message_kinds_follow_the_content_type() {
        assert_eq!(
            NotificationKind::of_message("text/plain"),
            NotificationKind::Text
        );
        assert_eq!(
            NotificationKind::of_message("image/jpeg"),
            NotificationKind::Picture
        );
        assert_eq!(
            NotificationKind::of_message("video/mp4"),
            NotificationKind::Video
        );
        assert_eq!(
            NotificationKind::of_message("audio/ogg"),
            NotificationKind::Audio
        );
        assert_eq!(
            NotificationKind::of_message("application/pdf"),
            NotificationKind::File
        );
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&PushConfig::default()).unwrap();
        let back: PushConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, PushConfig::default());
    }
}
