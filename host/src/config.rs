//! The one configuration file (TOML). Every key has a working default, so the
//! switch runs with no file at all; `softswitch config default` prints the
//! annotated defaults below.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::store::accounts::AccountTemplate;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File that failed.
        path: PathBuf,
        /// What the parser said, with line and column.
        message: String,
    },
    /// A value parsed but makes no sense.
    #[error("invalid config value {key}: {message}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// Why it is refused.
        message: String,
    },
}

/// Top-level configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where state lives (SQLite file, generated keys and certificates, guest cache).
    /// Empty means `./data`; `--data-dir` / `SOFTSWITCH_DATA_DIR` override it.
    pub data_dir: String,
    pub database: DatabaseConfig,
    pub admin: AdminConfig,
    pub sip: SipConfig,
    pub presence: PresenceConfig,
    pub plugins: PluginsConfig,
    pub routing: RoutingConfig,
    pub calls: CallsConfig,
    /// The RTP relay that anchors calls' media.
    pub media: MediaConfig,
    pub account_template: AccountTemplate,
    /// Guests by name. The routing guest is the one named by `routing.guest`.
    pub guests: BTreeMap<String, GuestConfig>,
    /// The client HTTPS API.
    pub api: crate::api::ApiConfig,
    /// SMS provider guests and the SMS queue.
    pub sms: crate::sms::SmsConfig,
    /// Push provider guests, their signing keys and the push outbox.
    pub push: crate::push::PushConfig,
    /// SMTP server and sender of activation e-mails.
    pub email: crate::notify::email::EmailConfig,
    /// The STUN Binding server.
    pub stun: crate::stun::StunConfig,
    /// IVR services (voicemail, greeting, code readout) and their prompts.
    pub ivr: crate::ivr::IvrConfig,
    /// Tariffs, balances, vouchers and transfers.
    pub billing: crate::billing::BillingConfig,
    /// Several nodes on one database.
    pub cluster: crate::cluster::ClusterConfig,
    /// The self-care portal served on the client API's listeners.
    pub portal: crate::portal::PortalConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` or `mysql://user:pass@host:port/db`. Empty means
    /// `sqlite:<data_dir>/softswitch.db`.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin HTTP endpoint. Loopback by default: it is an operator tool.
    pub listen: SocketAddr,
    /// Bearer token. Empty means: generate one into `<data_dir>/admin.token` on first start.
    pub token: String,
    /// Source networks allowed to talk to the admin endpoint at all.
    pub allow: Vec<IpNet>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            token: String::new(),
            allow: vec![
                "127.0.0.0/8".parse().expect("static net"),
                "::1/128".parse().expect("static net"),
            ],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// SIP domain of the accounts; also the digest realm.
    pub domain: String,
    /// UDP listeners.
    pub udp: Vec<SocketAddr>,
    /// TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners (what handsets use).
    pub tls: Vec<SocketAddr>,
    /// SIP over WebSocket listeners (RFC 7118, what browsers use): plain
    /// `ws` (behind a TLS-terminating proxy, or for tests) and `wss` (TLS
    /// with the same certificate as `tls`). `wss` on loopback by default,
    /// so the portal's communicator registers out of the box.
    pub ws: Vec<SocketAddr>,
    pub wss: Vec<SocketAddr>,
    /// Origins (e.g. `https://portal.example.net`) whose pages may open
    /// WebSocket connections; empty allows any.
    pub ws_origins: Vec<String>,
    /// WebSocket connections one address may hold open.
    pub ws_max_per_address: usize,
    /// PEM certificate chain and key; both empty means a self-signed
    /// certificate generated into `<data_dir>/tls/`.
    pub tls_cert: String,
    pub tls_key: String,
    /// PEM file of CA certificates trusted for gateways reached over TLS, on
    /// top of the built-in Mozilla roots; empty means those roots only.
    pub gateway_ca: String,
    /// Registration expiry when the device asks for none, seconds.
    pub default_expires: u32,
    /// Shorter requests get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requests are shortened to this.
    pub max_expires: u32,
    /// Lifetime of a digest nonce, seconds; older ones get `stale=true`.
    pub nonce_ttl_secs: u64,
    /// Digest algorithms offered, most preferred first (`MD5`, `SHA-256`).
    pub digest_algorithms: Vec<String>,
    /// Largest SIP message accepted, bytes.
    pub max_message_bytes: usize,
    /// Failed authentications one source address may make in a burst ...
    pub auth_failure_burst: u32,
    /// ... and how many seconds it takes to earn one more.
    pub auth_failure_refill_secs: u64,
    /// How long a MESSAGE waits for a device's 2xx before the sender gets 202
    /// and the message stays deferred, milliseconds.
    pub message_wait_ms: u64,
    /// Load shedding: once the runtime's scheduling lag stays above this
    /// many milliseconds, a growing share of new requests gets 503 with
    /// Retry-After (0 turns shedding off).
    pub overload_lag_ms: u64,
    /// Requests per second one source address may send, in bursts of
    /// `flood_burst`; the excess is dropped unparsed (0 turns it off).
    pub flood_rate: u32,
    pub flood_burst: u32,
    /// Networks never limited per source: gateways, a proxy or SBC in front.
    pub flood_exempt: Vec<IpNet>,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            udp: vec![SocketAddr::from(([127, 0, 0, 1], 5060))],
            tcp: vec![SocketAddr::from(([127, 0, 0, 1], 5060))],
            tls: vec![SocketAddr::from(([127, 0, 0, 1], 5061))],
            ws: Vec::new(),
            // Near the other SIP ports, but not 5060 or 5061: browsers
            // refuse to open connections to those ("unsafe" ports).
            wss: vec![SocketAddr::from(([127, 0, 0, 1], 5063))],
            ws_origins: Vec::new(),
            // A browser holds one connection per tab; an office behind one
            // NAT address a few hundred.
            ws_max_per_address: 500,
            tls_cert: String::new(),
            tls_key: String::new(),
            gateway_ca: String::new(),
            default_expires: 3600,
            // RFC 3261 suggests an hour by default; 60 s floors keep-alive-free
            // clients from hammering the registrar.
            min_expires: 60,
            max_expires: 86400,
            // Five minutes: long enough for a slow handset to answer the
            // challenge, short enough to bound replays.
            nonce_ttl_secs: 300,
            // MD5 only by default: deployed clients (Debian's baresip 1.0 among
            // them) abort on a SHA-256 challenge they do not know, and others
            // (SIPp) read only the first one. Both algorithms are verified; an
            // operator whose handsets support RFC 8760 adds "SHA-256" (first).
            digest_algorithms: vec!["MD5".into()],
            // RFC 3261 §18.1.1 caps UDP at the path MTU unless congestion-controlled;
            // 64 KiB covers any real request on a stream and bounds memory per connection.
            max_message_bytes: 65535,
            auth_failure_burst: 20,
            auth_failure_refill_secs: 3,
            message_wait_ms: 5000,
            // The clients' first retransmission comes at 500 ms (T1): a
            // request admitted with 30 ms of queue ahead of it is answered
            // well before, with room for a burst.
            overload_lag_ms: 30,
            // Far above what one handset, or an office of them behind one
            // NAT address, sends; far below a flood.
            flood_rate: 500,
            flood_burst: 1000,
            // The local host is trusted, as on the admin endpoint.
            flood_exempt: vec![
                "127.0.0.1/32".parse().expect("static"),
                "::1/128".parse().expect("static"),
            ],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Where compiled guests are cached. Empty means `<data_dir>/guest-cache`.
    pub cache_dir: String,
    /// Linear-memory cap per guest instance, in MiB.
    pub memory_limit_mib: u64,
    /// Wall-clock budget for one guest call, in milliseconds.
    pub deadline_ms: u64,
    /// The same for SMS and push provider guests, whose calls are rare (one
    /// or two per message) and get a fresh instance each: a guest carrying a
    /// language runtime (CPython, a JavaScript engine) needs more than a
    /// router's budget on a busy machine.
    pub provider_deadline_ms: u64,
    /// Warm instances kept per guest for reuse.
    pub warm_instances: usize,
    /// Guest instances that may exist at once, every guest and world
    /// together, warm ones included: the size of the instance pool.
    pub max_instances: u32,
    /// Longest a guest call waits for an instance slot when all are in
    /// use, in milliseconds; then it fails (`overloaded`) and the
    /// extension point's fallback answers.
    pub instance_wait_ms: u64,
    /// How often guest files are checked for changes, in milliseconds (0 = never).
    pub watch_interval_ms: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            cache_dir: String::new(),
            // A routing guest needs a few hundred KiB; 64 MiB leaves room for large
            // configs while one runaway guest cannot take the host's memory.
            memory_limit_mib: 64,
            // A decision takes microseconds; 50 ms only ever cuts off a guest that is
            // stuck, and bounds how long a SIP transaction can wait on it.
            deadline_ms: 50,
            // A Python provider's call costs ~2.5 ms of CPU; 1 s still stops
            // a stuck one long before the vendor's own timeout.
            provider_deadline_ms: 1000,
            // Enough for both cores plus callers waiting on the directory.
            warm_instances: 8,
            // A routing call holds its instance while its directory look-ups
            // wait for the database, so at 2,000 calls/s a slow database
            // keeps a few hundred busy (256 ran out). Each slot reserves
            // address space only (about 4 GiB: 1,000 use 4 of the 128 TiB);
            // memory is committed for the slots in use.
            max_instances: 1000,
            // A call past this waits on a switch that is overloaded beyond
            // what waiting fixes: answer with the fallback instead. The same
            // bound as the database wait handed back to a guest (1 s).
            instance_wait_ms: 1000,
            watch_interval_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Seconds devices ring before the routing guest is asked again with
    /// the reason `no-answer` (voicemail); 0 rings until the caller gives up.
    /// The callee account's own `no_answer_secs` takes precedence.
    pub no_answer_secs: u64,
    /// Longest an answered call may last, seconds, for dialogs whose peers
    /// vanished without a session timer; 0 means no limit.
    pub max_duration_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            no_answer_secs: 30,
            // Four hours: far beyond a real call, short enough that a leaked
            // dialog does not live for days.
            max_duration_secs: 4 * 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Relay calls' media; false lets SDP cross unchanged (media goes
    /// straight between the parties, which NATs and carriers rarely allow).
    pub enabled: bool,
    /// Address the relay's ports are bound on.
    pub bind: IpAddr,
    /// Address written into SDP for the relay; unset means `bind` (set it
    /// when `bind` is 0.0.0.0 or the switch is behind a 1:1 NAT).
    pub advertised: Option<IpAddr>,
    /// The port range: an RTP/RTCP pair per stream and side, four ports
    /// per audio call.
    pub port_min: u16,
    pub port_max: u16,
    /// An answered call with no packet either way for this long is hung up
    /// (a phone that vanished); 0 never.
    pub silence_secs: u64,
    /// Hand plain RTP streams (no ICE) to the kernel once they have settled:
    /// nftables rewrites and forwards their packets, the relay's sockets see
    /// only what changes. Needs root (CAP_NET_ADMIN), `nft` and a specific
    /// `bind` (not 0.0.0.0 or ::); peers on other hosts also need the host
    /// to forward (`net.ipv4.ip_forward=1`, or its IPv6 counterpart).
    /// Without them the relay carries everything, with a warning.
    pub kernel_forwarding: bool,
    /// What the WebRTC gateway speaks with a browser it bridges to a phone
    /// or carrier: `g711` (the browser's PCMU or PCMA: nothing to
    /// transcode toward G.711 devices, a fraction of the CPU) or `opus`
    /// (its loss concealment and FEC suit lossy networks better, for an
    /// Opus transcode per call).
    pub browser_codec: BrowserCodec,
}

/// See [`MediaConfig::browser_codec`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrowserCodec {
    #[default]
    G711,
    Opus,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: IpAddr::from([127, 0, 0, 1]),
            advertised: None,
            port_min: 20000,
            port_max: 29999,
            silence_secs: 60,
            kernel_forwarding: false,
            browser_codec: BrowserCodec::G711,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Name of the guest (a key of `[guests]`) that decides routing.
    pub guest: String,
    /// SIP code answered when the routing guest fails (trap, timeout, nonsense).
    pub fallback_code: u16,
    /// Reason phrase for the fallback answer.
    pub fallback_reason: String,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            guest: "routing".into(),
            fallback_code: 500,
            fallback_reason: "Routing Unavailable".into(),
        }
    }
}

/// Which extension point a guest implements.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WorldKind {
    /// `softswitch:routing/router@0.1.0`.
    #[default]
    Routing,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GuestConfig {
    /// Path of the `.wasm` component; relative paths are taken from the directory
    /// of the config file (or the current directory when there is none).
    pub path: String,
    /// Extension point the guest implements.
    pub world: WorldKind,
    /// Values the guest reads through its `config.get` import.
    pub config: BTreeMap<String, String>,
    /// A case file (`softswitch guest test`) every new version must pass
    /// before it replaces the one in service; empty: none. Relative to the
    /// config file's folder, like `path`.
    pub cases: String,
    /// What it may import and look up (`[guests.<name>.capabilities]`).
    pub capabilities: crate::plugins::capabilities::Capabilities,
}

/// The annotated default configuration printed by `softswitch config default`.
/// Presence (SUBSCRIBE/NOTIFY, PUBLISH, buddy lists, MWI).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// User part of a buddy-list URI; `{login}` is the list owner.
    pub list_uri_user: String,
    /// Who may SUBSCRIBE to one user's presence: `address-book` (only users
    /// the presentity has in its address book) or `open` (any user).
    pub watch_policy: WatchPolicy,
    /// Subscription expiry when none is asked, seconds; floor (423) and ceiling.
    pub subscribe_default_expires: u32,
    pub subscribe_min_expires: u32,
    pub subscribe_max_expires: u32,
    /// Publication expiry when none is asked, seconds; floor (423) and ceiling.
    pub publish_default_expires: u32,
    pub publish_min_expires: u32,
    pub publish_max_expires: u32,
    /// How often voicemail counts are checked for MWI watchers, ms (the
    /// voicemail table may be written by another process or node).
    pub mwi_poll_ms: u64,
    /// Calling code for normalising address-book numbers of users whose own
    /// number does not give one (SPEC §4).
    pub default_country_code: String,
}

/// Who may watch one user's presence.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WatchPolicy {
    AddressBook,
    Open,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            list_uri_user: "{login}-buddies".into(),
            watch_policy: WatchPolicy::AddressBook,
            // SPEC §6: subscriptions last an hour like registrations.
            subscribe_default_expires: 3600,
            subscribe_min_expires: 60,
            subscribe_max_expires: 86400,
            publish_default_expires: 3600,
            publish_min_expires: 60,
            publish_max_expires: 86400,
            // A second: a new voicemail shows on the handset about as fast as
            // its push, for one grouped query per second.
            mwi_poll_ms: 1000,
            default_country_code: "1".into(),
        }
    }
}

/// A unit test checks that it parses to exactly `Config::default()` with the
/// default routing guest, so it cannot drift.
pub const DEFAULT_TOML: &str = r#"# softswitch configuration. Every key is optional; these are the defaults.

# Where state lives: SQLite file, generated admin token and secret key, guest cache.
# Empty means ./data. --data-dir and SOFTSWITCH_DATA_DIR override it.
data_dir = ""

[database]
# sqlite:PATH or mysql://user:password@host:3306/db. Empty means sqlite:<data_dir>/softswitch.db.
url = ""

[admin]
# Admin HTTP endpoint (health, metrics, guests, reload). Loopback by default.
listen = "127.0.0.1:8089"
# Bearer token; empty means generate one into <data_dir>/admin.token on first start.
token = ""
# Source networks allowed to reach the admin endpoint.
allow = ["127.0.0.0/8", "::1/128"]

[sip]
# SIP domain of the accounts; also the digest realm.
domain = "localhost"
# Listeners. Handsets use TLS; servers may use UDP.
udp = ["127.0.0.1:5060"]
tcp = ["127.0.0.1:5060"]
tls = ["127.0.0.1:5061"]
# PEM certificate chain and key; empty means a self-signed pair generated into <data_dir>/tls/.
tls_cert = ""
tls_key = ""
# CA certificates (PEM) trusted for gateways with transport "tls", on top of the built-in
# Mozilla roots; empty means those roots only. The certificate must match the gateway's
# address host (a DNS name, or an IP address SAN).
gateway_ca = ""
# Registration expiry in seconds when the device asks for none; the floor (423 below it) and the ceiling.
default_expires = 3600
min_expires = 60
max_expires = 86400
# Lifetime of a digest nonce in seconds; older ones are answered with stale=true.
nonce_ttl_secs = 300
# Digest algorithms offered, most preferred first ("MD5", "SHA-256"). Older clients abort on a SHA-256 challenge.
digest_algorithms = ["MD5"]
# Largest SIP message accepted, bytes.
max_message_bytes = 65535
# Failed authentications per source address: burst, then one more every N seconds.
auth_failure_burst = 20
auth_failure_refill_secs = 3
# How long a MESSAGE waits for a device's 2xx before the sender gets 202 and it stays deferred, ms.
message_wait_ms = 5000
# Load shedding: when the scheduling lag stays above this many ms, a growing share of new
# requests is answered 503 with Retry-After; in-dialog requests, ACK, CANCEL and BYE never are (0: off).
overload_lag_ms = 30
# Requests per second one source address may send, with bursts of flood_burst; the excess is
# dropped unparsed (0: off). Gateways, proxies or SBCs that send more go in flood_exempt.
flood_rate = 500
flood_burst = 1000
flood_exempt = ["127.0.0.1/32", "::1/128"]
# SIP over WebSocket (RFC 7118), what browsers and the portal's communicator speak: ws is plain
# (behind a TLS-terminating proxy), wss uses the TLS certificate above. Browsers refuse a few
# ports (5060 and 5061 among them), so WebSocket listeners need others.
ws = []
wss = ["127.0.0.1:5063"]
# Origins (scheme://host[:port]) whose pages may open WebSocket connections, e.g. the portal's
# ["https://sip.example.net:8443"]; empty allows any page (and clients sending no Origin).
ws_origins = []
# Open WebSocket connections one source address may hold.
ws_max_per_address = 500

[presence]
# User part of buddy-list URIs (sip:<user>@<domain>); {login} is the list owner.
list_uri_user = "{login}-buddies"
# Who may SUBSCRIBE to one user's presence: "address-book" (users in that user's address book) or "open".
watch_policy = "address-book"
# Subscription expiry in seconds when none is asked; the floor (423 below it) and the ceiling.
subscribe_default_expires = 3600
subscribe_min_expires = 60
subscribe_max_expires = 86400
# Same for PUBLISH.
publish_default_expires = 3600
publish_min_expires = 60
publish_max_expires = 86400
# How often voicemail counts are checked for MWI subscribers, ms.
mwi_poll_ms = 1000
# Calling code for normalising address-book numbers when the owner's own phone gives none.
default_country_code = "1"

[plugins]
# Compiled-guest cache; empty means <data_dir>/guest-cache.
cache_dir = ""
# Linear-memory cap per guest instance, MiB.
memory_limit_mib = 64
# Time budget of one guest call, ms; a guest past it is stopped and the fallback applies.
deadline_ms = 50
# The same for SMS and push provider guests (a fresh instance per call, one or two calls
# per message; a Python or JavaScript guest needs more than a router), ms.
provider_deadline_ms = 1000
# Warm instances kept per guest for reuse.
warm_instances = 8
# Guest instances alive at once, all guests and worlds together (warm ones included):
# the instance pool. A call finding every slot in use waits for one.
max_instances = 1000
# Longest a guest call waits for a free instance slot, ms; then the fallback applies.
instance_wait_ms = 1000
# How often guest files are checked for changes, ms (0 disables the watch; SIGHUP and the admin API still reload).
watch_interval_ms = 1000

[routing]
# Guest (a key of [guests]) that decides where calls and messages go.
guest = "routing"
# SIP answer when the routing guest fails (trap, timeout, memory cap, nonsense decision).
fallback_code = 500
fallback_reason = "Routing Unavailable"

[calls]
# Seconds devices ring before the routing guest is asked again with reason "no-answer"
# (voicemail); 0 rings until the caller gives up. An account's own value
# (softswitch account set LOGIN --no-answer-secs N) takes precedence.
no_answer_secs = 30
# Longest an answered call may last, seconds (a dialog whose peers vanished without a
# session timer ends then); 0 means no limit.
max_duration_secs = 14400

[account_template]
# Applied to every new account.
tariff = "default"
currency = "USD"
dialplan_rule = "DP:int-> OR onnet"
# Initial balance in millionths of the currency unit.
balance_micro = 0
# plan = "basic"

[api]
# Client HTTPS API listeners (JSON under /v1/, document at /v1/openapi.json); empty disables it.
listen = ["127.0.0.1:8443"]
# PEM certificate chain and key; empty means the SIP TLS certificate (sip.tls_cert), else the generated self-signed one.
tls_cert = ""
tls_key = ""
# Largest request body, bytes.
max_body_bytes = 65536
# Sign-up, code and login requests per source address: burst, then one more every N seconds.
address_burst = 30
address_refill_secs = 2
# The same per identity (phone number or public ID).
identity_burst = 10
identity_refill_secs = 30
# Text of the sign-up code SMS; [CODE] is replaced by the 4 digits.
code_sms_text = "Your verification code is [CODE]"
# Code SMS per phone number and device, seconds before a resend, wrong codes before the device is refused (SPEC 3).
sms_per_device = 5
resend_after_secs = 60
code_attempts = 3
# Test seam: a file holding seconds added to the sign-up rules' clock. Empty: the system clock.
# Honoured by debug (test) builds only; a release build refuses to start with it set.
clock_offset_file = ""
# Largest avatar upload (PNG, JPEG or WebP), bytes; avatars are scaled down to fit this many pixels a side.
avatar_max_bytes = 5242880
avatar_max_side = 512
# Caller ID (user part of From) of "call me" sign-up calls, which read the code through
# the gateway serving the number; they count against sms_per_device and resend_after_secs.
call_me_caller_id = "verify"

[sms]
# Provider guest (a key of [sms.providers]) for sign-up codes and OFFNET messages; empty: no SMS.
provider = ""
# Sender ID or number handed to the provider; empty: the guest's own "from" value.
sender = ""
# Attempts before an SMS fails; retry delay doubles from retry_base_secs up to retry_max_secs.
max_attempts = 5
retry_base_secs = 5
retry_max_secs = 300
# Queue check interval when nothing wakes the worker, ms; timeout of one vendor request, ms.
poll_interval_ms = 1000
http_timeout_ms = 10000
# Public base URL of this API that vendors call back with delivery reports
# (https://host:8443); empty: reports are not requested.
callback_base_url = ""
# Provider guests, one table each, e.g.:
# [sms.providers.vonage]
# path = "guests/target/wasm32-wasip2/release/sms_vonage.wasm"
# allowed_hosts = ["rest.nexmo.com"]
# config = { api_key = "...", api_secret = "...", from = "Softswitch" }
# cases = "guests/sms-providers/vonage/cases.toml"   # canary a new build must pass
# A new build of a provider's file goes into service without a restart (file watch,
# SIGHUP, or POST /guests/sms.<name>/reload on the admin endpoint).

[push]
# A call to a user whose apps hold push tokens is parked and pushed after the registered
# devices rang this long without an answer, ms (at once when none is registered); a woken
# device picks it with INVITE + Replaces.
park_after_ms = 3000
# Attempts before a push fails; retry delay doubles from retry_base_secs up to retry_max_secs
# (a service's own Retry-After wins). Pushes older than max_age_secs are dropped
# (incoming-call pushes after 60 s).
max_attempts = 6
retry_base_secs = 2
retry_max_secs = 300
max_age_secs = 86400
# Outbox check interval when nothing wakes the worker, ms; timeout of one request, ms;
# pushes in flight at once per provider.
poll_interval_ms = 1000
http_timeout_ms = 5000
max_in_flight = 32
# Extra CA certificates (PEM) trusted for push services; empty: public roots only.
ca_file = ""
# Signing keys the guests use by name (they never see them), e.g.:
# [push.keys.apns]
# path = "AuthKey_ABC123DEFG.p8"      # APNs token-based auth key (EC P-256, PKCS#8)
# key_id = "ABC123DEFG"
# [push.keys.fcm]
# path = "service-account.json"       # Firebase service account (RS256, OAuth 2.0)
# Provider guests, one table each; a device token names one, e.g.:
# [push.providers.apns]
# path = "guests/target/wasm32-wasip2/release/push_apns.wasm"
# allowed_hosts = ["api.push.apple.com", "api.sandbox.push.apple.com"]
# config = { team_id = "TEAM123456", topic = "net.example.app" }
# cases = "guests/push-providers/apns/cases.toml"   # canary a new build must pass
# New builds go into service without a restart, like SMS providers' (admin name push.<name>).

[email]
# SMTP server for activation e-mails; empty host: no e-mail (username sign-up answers email-unavailable).
smtp_host = ""
smtp_port = 25
# Credentials; an empty user means no authentication.
smtp_user = ""
smtp_password = ""
# "none", "starttls" or "tls" (implicit TLS, usually port 465).
smtp_tls = "starttls"
# Sender address and display name; optional Reply-To and Bcc.
from = "softswitch@localhost"
from_name = "Softswitch"
reply_to = ""
bcc = ""
# Activation template file (Subject:/Content-Type: lines, blank line, body with [USER_NAME], [LINK], [CODE]);
# empty: the built-in one.
activation_template = ""
# Password-reset template file (same format; [LINK] leads to the reset form); empty: the built-in one.
reset_template = ""
# Voicemail e-mail template file ([USER_NAME], [CALLER], [CALLER_NAME], [TIME], [DURATION]; the
# recording is attached as MP3); empty: the built-in one.
voicemail_template = ""
# Base URL of links in e-mails (https://sip.example.net:8443); empty: https:// + the first api.listen address.
link_base_url = ""
# How long an activation link works, seconds.
activation_ttl_secs = 86400

[stun]
# STUN Binding server (RFC 8489; RFC 3489 clients get MAPPED-ADDRESS). false: no listener.
enabled = true
# Listeners; empty lists mean none on that transport.
udp = ["127.0.0.1:3478"]
tcp = ["127.0.0.1:3478"]
# Answers per source address: a burst, then rate_per_sec more each second; the rest is dropped.
burst = 200
rate_per_sec = 100
# Open TCP connections at most, and seconds a silent one stays open.
max_tcp_connections = 1024
tcp_idle_secs = 60

[ivr]
# Folder of prompt folders, one per language (<prompts>/en/digit-4.wav: 8 kHz mono
# 16-bit WAV); relative paths are taken from the config file's folder. A prompt
# missing from a language's folder is taken from en/.
prompts = "prompts"
# Prompt language when the account has none.
language = "en"
# CPU an IVR guest may use between two call-control calls, ms, before it is stopped.
step_budget_ms = 1000
# Longest one IVR run may last, seconds.
max_run_secs = 1800

# Services the routing guest can send calls to (to-service NAME), each an IVR guest
# (world softswitch:ivr/scenario). A changed file goes into service by itself (the guest
# file watch, SIGHUP, or POST /guests/ivr.<service>/reload on the admin endpoint).
# Each may name its cases (`cases = "guests/ivr/greeting/cases.toml"`: the canary a new
# version must pass) and capabilities: the interfaces it may import and the mailboxes a
# run may open (`capabilities = { mailboxes = "caller" }`: "call", the default, grants
# the caller's own and the deposit's box; "caller" the caller's own; "none" none).
[ivr.services.code-readout]
path = "guests/target/wasm32-wasip2/release/ivr_code_readout.wasm"
[ivr.services.voicemail-deposit]
path = "guests/target/wasm32-wasip2/release/ivr_voicemail_deposit.wasm"
[ivr.services.voicemail]
path = "guests/target/wasm32-wasip2/release/ivr_voicemail_access.wasm"
[ivr.services.voicemail-playback]
path = "guests/target/wasm32-wasip2/release/ivr_voicemail_access.wasm"
[ivr.services.greeting]
path = "guests/target/wasm32-wasip2/release/ivr_greeting.wasm"

[billing]
# Largest user-to-user balance transfer, millionths of the sender's currency unit.
transfer_max_micro = 50000000
# Longest call one authorisation covers, seconds: it caps the money reserved for a call,
# and the call is cut then.
max_call_secs = 14400
# How often each node checks whether a tariff changed (CLI, admin API, another node), seconds.
tariff_poll_secs = 5
# Seconds after a call's latest possible end at which a reservation never settled is released.
reservation_grace_secs = 3600
# Days a voucher is valid when its batch does not say.
voucher_days = 365
# Prepaid OFFNET calls: authorised against the caller's tariff and balance, cut when the
# money runs out, charged at the end (402/403 before the carrier is called otherwise).
prepaid_calls = false
# Prepaid OFFNET messages: a MESSAGE to a number the SMS provider sends is charged at the
# tariff row's SMS price before it is accepted (402/403 otherwise), refunded if never sent.
prepaid_sms = false
# Shared secret of the payment page's webhook (POST /v1/payments/webhook, signed with
# HMAC-SHA256, see README "Billing"); empty: no webhook.
payment_webhook_secret = ""
# Days one paid period of an ordered DID lasts: the order pays the setup fee and the first,
# each renewal (from the balance) the next.
did_period_days = 30
# Days an ordered DID keeps ringing after its period ended unpaid, before it goes back to the pool.
did_grace_days = 3

[cluster]
# Several switch nodes on one MariaDB (README "Cluster"): each node's users are those
# registered on it; a call or message for a user registered on another node is forwarded
# there over SIP, signed with a key derived from the shared secret.key.
enabled = false
# The node's name as the local dialing plan names its server (`dialplan add PREFIX NAME`):
# a user whose login a prefix of this node matches registers here; one registering at
# another live node is redirected here (302). Empty: the address (HOST:PORT).
name = ""
# This node's SIP address as the other nodes reach it: a sip.udp listener (on a wildcard
# listener, the address the nodes reach each other on). Unset: the first sip.udp listener.
# address = "10.0.0.1:5060"
# How often a node writes its heartbeat and reads which others are alive, milliseconds.
heartbeat_ms = 1000
# A node not seen for this long is dead: nothing is forwarded to it, milliseconds.
dead_after_ms = 5000
# Where a call forwarded from one node to another has its media relayed: "entry" (only
# the node the call came in on; the callee's node passes the SDP through: one relay
# hop) or "each" (both nodes, each its own leg: two hops).
media = "entry"

[portal]
# The self-care portal and web communicator, served on the api.listen addresses at /portal/
# (https://127.0.0.1:8443/portal/). The folder scripts/build-portal.sh builds; relative paths
# start at the config file's folder (the current folder when there is none). Empty: no portal.
dir = "portal/dist"
# WebSocket URL the communicator registers over (a proxy, another host name); empty means
# wss://<the page's host>:<port of the first sip.wss listener>.
wss_url = ""

[guests.routing]
# The default dialplan (SPEC 6). Relative paths start at the config file's folder
# (the current folder when there is no config file).
path = "guests/target/wasm32-wasip2/release/routing_default.wasm"
world = "routing"
# Cases (`softswitch guest test`) a new version must pass before a hot reload
# puts it in service (its canary); empty: none.
cases = ""
# What it may import (a version importing more is refused) and which directory
# look-ups it may make (others fail its call: the fallback applies); unset: all.
# capabilities = { imports = ["directory", "log", "config"], directory = ["accounts", "registrations", "gateways"] }

[guests.routing.config]
# Values the guest reads with config.get(key); the default router reads none.
"#;

impl Default for Config {
    /// The defaults, including the default routing guest.
    fn default() -> Config {
        let mut guests = BTreeMap::new();
        guests.insert(
            "routing".into(),
            GuestConfig {
                path: "guests/target/wasm32-wasip2/release/routing_default.wasm".into(),
                world: WorldKind::Routing,
                config: BTreeMap::new(),
                cases: String::new(),
                capabilities: Default::default(),
            },
        );
        Config {
            data_dir: String::new(),
            database: DatabaseConfig::default(),
            admin: AdminConfig::default(),
            sip: SipConfig::default(),
            presence: PresenceConfig::default(),
            plugins: PluginsConfig::default(),
            routing: RoutingConfig::default(),
            calls: CallsConfig::default(),
            media: MediaConfig::default(),
            account_template: AccountTemplate::default(),
            guests,
            api: crate::api::ApiConfig::default(),
            sms: crate::sms::SmsConfig::default(),
            push: crate::push::PushConfig::default(),
            email: crate::notify::email::EmailConfig::default(),
            stun: crate::stun::StunConfig::default(),
            ivr: crate::ivr::IvrConfig::default(),
            billing: crate::billing::BillingConfig::default(),
            cluster: crate::cluster::ClusterConfig::default(),
            portal: crate::portal::PortalConfig::default(),
        }
    }
}

impl Config {
    /// Settings that exist only so the black-box tests can drive the switch
    /// (a clock shifted from a file) are honoured by debug builds, which is
    /// what `cargo test` runs; a release build refuses to start with them,
    /// so no production switch runs with its clock open to a file.
    fn refuse_test_seams(&self, release: bool) -> Result<(), ConfigError> {
        if release && !self.api.clock_offset_file.is_empty() {
            return Err(ConfigError::Invalid {
                key: "api.clock_offset_file",
                message: "a test seam, honoured by debug (test) builds only: remove it".into(),
            });
        }
        Ok(())
    }

    /// Parses a configuration from TOML text.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path`, or returns the defaults when there is no file.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut config = Config::from_toml(&text, path)?;
                // Relative guest paths are relative to the file that names them.
                let base = path.parent().unwrap_or(Path::new("."));
                for guest in config.guests.values_mut() {
                    for file in [&mut guest.path, &mut guest.cases] {
                        if Path::new(file.as_str()).is_relative() && !file.is_empty() {
                            *file = base.join(file.as_str()).to_string_lossy().into_owned();
                        }
                    }
                }
                config.ivr.rebase(base);
                config.push.rebase(base);
                config.portal.rebase(base);
                for provider in config.sms.providers.values_mut() {
                    for file in [&mut provider.path, &mut provider.cases] {
                        if Path::new(file.as_str()).is_relative() && !file.is_empty() {
                            *file = base.join(file.as_str()).to_string_lossy().into_owned();
                        }
                    }
                }
                Ok(config)
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.refuse_test_seams(!cfg!(debug_assertions))?;
        if self.cluster.enabled {
            if self.cluster.node_address(&self.sip.udp).is_none() {
                return Err(ConfigError::Invalid {
                    key: "cluster.address",
                    message: "cluster mode needs this node's SIP address: a sip.udp listener that is not a wildcard (or the address the nodes reach a wildcard listener on)".into(),
                });
            }
            if self.cluster.dead_after_ms < 2 * self.cluster.heartbeat_ms.max(100) {
                return Err(ConfigError::Invalid {
                    key: "cluster.dead_after_ms",
                    message: "must be at least two heartbeats (cluster.heartbeat_ms)".into(),
                });
            }
        }
        if self.media.port_min < 1024 || self.media.port_max < self.media.port_min.saturating_add(3)
        {
            return Err(ConfigError::Invalid {
                key: "media.port_min",
                message: "need 1024 <= port_min and room for one call (port_max >= port_min + 3)"
                    .into(),
            });
        }
        if !(400..=699).contains(&self.routing.fallback_code) {
            return Err(ConfigError::Invalid {
                key: "routing.fallback_code",
                message: format!(
                    "{} is not a SIP failure code (400-699)",
                    self.routing.fallback_code
                ),
            });
        }
        if self.plugins.memory_limit_mib == 0 || self.plugins.memory_limit_mib > 4096 {
            return Err(ConfigError::Invalid {
                key: "plugins.memory_limit_mib",
                message: "must be between 1 and 4096".into(),
            });
        }
        if self.sip.min_expires > self.sip.max_expires
            || self.sip.default_expires < self.sip.min_expires
        {
            return Err(ConfigError::Invalid {
                key: "sip.min_expires",
                message: "need min_expires <= default_expires <= max_expires".into(),
            });
        }
        if self.sip.digest_algorithms.is_empty()
            || self
                .sip
                .digest_algorithms
                .iter()
                .any(|a| a.parse::<crate::sip::digest::Algorithm>().is_err())
        {
            return Err(ConfigError::Invalid {
                key: "sip.digest_algorithms",
                message: "list one or more of \"MD5\", \"SHA-256\"".into(),
            });
        }
        if self.sip.tls_cert.is_empty() != self.sip.tls_key.is_empty() {
            return Err(ConfigError::Invalid {
                key: "sip.tls_cert",
                message: "tls_cert and tls_key go together".into(),
            });
        }
        let p = &self.presence;
        if p.subscribe_min_expires > p.subscribe_max_expires
            || p.subscribe_default_expires < p.subscribe_min_expires
            || p.subscribe_default_expires > p.subscribe_max_expires
            || p.publish_min_expires > p.publish_max_expires
            || p.publish_default_expires < p.publish_min_expires
            || p.publish_default_expires > p.publish_max_expires
        {
            return Err(ConfigError::Invalid {
                key: "presence.subscribe_min_expires",
                message: "need min <= default <= max for subscribe_* and publish_*".into(),
            });
        }
        if crate::sip::presence::subscription::ListPattern::new(&p.list_uri_user).is_none() {
            return Err(ConfigError::Invalid {
                key: "presence.list_uri_user",
                message: "must hold {login} exactly once, with text beside it".into(),
            });
        }
        if p.default_country_code.is_empty()
            || p.default_country_code.len() > 3
            || !p.default_country_code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ConfigError::Invalid {
                key: "presence.default_country_code",
                message: "must be 1 to 3 digits".into(),
            });
        }
        if p.mwi_poll_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "presence.mwi_poll_ms",
                message: "must be at least 1".into(),
            });
        }
        if self.plugins.deadline_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "plugins.deadline_ms",
                message: "must be at least 1".into(),
            });
        }
        if self.plugins.provider_deadline_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "plugins.provider_deadline_ms",
                message: "must be at least 1".into(),
            });
        }
        // Each slot reserves about 4 GiB of address space: 10,000 is 40 of
        // the 128 TiB a process has.
        if !(1..=10_000).contains(&self.plugins.max_instances) {
            return Err(ConfigError::Invalid {
                key: "plugins.max_instances",
                message: "must be between 1 and 10000".into(),
            });
        }
        for (key, value) in [
            ("stun.burst", u64::from(self.stun.burst)),
            ("stun.rate_per_sec", u64::from(self.stun.rate_per_sec)),
            (
                "stun.max_tcp_connections",
                self.stun.max_tcp_connections as u64,
            ),
            ("stun.tcp_idle_secs", self.stun.tcp_idle_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if !self.guests.contains_key(&self.routing.guest) {
            return Err(ConfigError::Invalid {
                key: "routing.guest",
                message: format!(
                    "names {:?}, which is not under [guests]",
                    self.routing.guest
                ),
            });
        }
        for (name, guest) in &self.guests {
            if guest.path.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "guests.*.path",
                    message: format!("guest {name} has no path"),
                });
            }
        }
        Ok(())
    }

    /// Data directory after applying the command-line override.
    pub fn data_dir(&self, cli: Option<&Path>) -> PathBuf {
        match cli {
            Some(dir) => dir.to_path_buf(),
            None if self.data_dir.is_empty() => PathBuf::from("data"),
            None => PathBuf::from(&self.data_dir),
        }
    }

    /// Database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self, data_dir: &Path) -> String {
        if self.database.url.is_empty() {
            format!("sqlite:{}", data_dir.join("softswitch.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// Guest cache directory.
    pub fn cache_dir(&self, data_dir: &Path) -> PathBuf {
        if self.plugins.cache_dir.is_empty() {
            data_dir.join("guest-cache")
        } else {
            PathBuf::from(&self.plugins.cache_dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_build_refuses_test_seams() {
        let mut config = Config::default();
        assert!(config.refuse_test_seams(true).is_ok(), "nothing set");
        config.api.clock_offset_file = "/tmp/clock".into();
        assert!(config.refuse_test_seams(false).is_ok(), "a test build");
        let err = config.refuse_test_seams(true).unwrap_err().to_string();
        assert!(err.contains("api.clock_offset_file"), "{err}");
    }

    #[test]
    fn default_toml_is_the_default_config() {
        let parsed = Config::from_toml(DEFAULT_TOML, Path::new("default.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err =
            Config::from_toml("[admin]\nlisten_on = \"x\"\n", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn bad_fallback_code_is_refused() {
        let err =
            Config::from_toml("[routing]\nfallback_code = 200\n", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("routing.fallback_code"), "{err}");
    }

    #[test]
    fn relative_guest_paths_start_at_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("softswitch.toml");
        std::fs::write(&file, "[guests.routing]\npath = \"g/r.wasm\"\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(
            config.guests["routing"].path,
            dir.path().join("g/r.wasm").to_string_lossy()
        );
    }
}
