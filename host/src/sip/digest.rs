//! SIP digest authentication (RFC 3261 §22, RFC 7616 for SHA-256, RFC 8760
//! for its use in SIP), sans-io: the caller feeds header values, the method,
//! the account's password (or cached HA1) and the current time, and gets a
//! [`Verdict`] back. No sockets, no clocks, no storage.
//!
//! # Nonces
//!
//! Nonces are stateless and self-validating:
//! `base64url(unix_millis_be ‖ random ‖ HMAC-SHA256(secret, unix_millis_be ‖ random))`
//! (8 + 16 + 32 bytes, 75 characters).
//! Every node that shares the secret accepts them and a restart does not
//! invalidate them, so no nonce table has to be replicated or persisted. A
//! nonce older than the TTL is [`Verdict::Stale`] (re-challenge with
//! `stale=true`, the client retries without prompting the user); one whose MAC
//! does not check out is [`Verdict::BadNonce`].
//!
//! # Replay protection
//!
//! With `qop=auth` the client numbers its uses of a nonce (`nc`); each node
//! remembers the highest `nc` seen per nonce and refuses anything not above it
//! ([`Verdict::Replay`]). That memory is bounded (see
//! [`DigestAuth::with_replay_capacity`]) and local to the node: a captured
//! request could be replayed once against *another* node sharing the secret
//! within the nonce lifetime. Clients register with their home node (SPEC §6,
//! local dialing plan), which keeps that window narrow.
//!
//! Without `qop` (the RFC 2069 form, still sent by some old clients) there is
//! no nonce-count, so a captured request **can be replayed for the whole
//! nonce lifetime**. It is accepted by default for compatibility; turn it off
//! with [`DigestAuth::with_rfc2069`] once the client base allows.
//!
//! # What the caller still checks
//!
//! The digest `uri` must match the Request-URI of the request being
//! authenticated, and the password (or HA1) must be the one of
//! `credentials.username` — this module sees neither the request nor the
//! directory.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Hash algorithm of a digest challenge or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `MD5`: the RFC 3261 default, the only one most SIP clients know.
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token used in the `algorithm` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Hex-encoded hash of `parts` joined by `:`, as every digest formula is.
    fn hash_hex(self, parts: &[&[u8]]) -> String {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(part);
            }
            hex::encode(d.finalize())
        }
        match self {
            Algorithm::Md5 => run::<md5::Md5>(parts),
            Algorithm::Sha256 => run::<sha2::Sha256>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    /// Case-insensitive, as RFC 7616 §3.3 asks of algorithm tokens.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(DigestError::UnsupportedAlgorithm(truncate(s)))
        }
    }
}

/// Quality of protection named in the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Qop {
    /// `auth`: the only one this server offers.
    Auth,
    /// `auth-int`: parsed so it can be refused precisely; never offered,
    /// because hashing SIP bodies buys little once TLS protects them.
    AuthInt,
}

/// Parsed `Authorization` / `Proxy-Authorization` digest credentials.
///
/// Strings are unquoted and unescaped, exactly as they enter the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`: the account login.
    pub username: String,
    /// `realm` echoed from the challenge.
    pub realm: String,
    /// `nonce` echoed from the challenge.
    pub nonce: String,
    /// `uri`: must equal the Request-URI (the caller checks that).
    pub uri: String,
    /// `response`: the hex digest the client computed.
    pub response: String,
    /// `algorithm`; absent means MD5 (RFC 3261 §22.4).
    pub algorithm: Algorithm,
    /// `qop`; absent for RFC 2069 clients.
    pub qop: Option<Qop>,
    /// `nc`, the nonce-count (8 hex digits on the wire).
    pub nc: Option<u32>,
    /// `cnonce`, the client nonce.
    pub cnonce: Option<String>,
    /// `opaque` echoed from the challenge (this server sends none).
    pub opaque: Option<String>,
}

/// Why a credentials header value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The value does not start with the `Digest` scheme.
    #[error("credentials do not use the Digest scheme")]
    NotDigest,
    /// The parameter list is not `name=value` pairs separated by commas.
    #[error("malformed digest credentials: {0}")]
    Syntax(&'static str),
    /// A required parameter is absent.
    #[error("digest parameter `{0}` is missing")]
    MissingParam(&'static str),
    /// A parameter appears twice; refused rather than guessing which counts.
    #[error("digest parameter `{0}` appears more than once")]
    DuplicateParam(&'static str),
    /// A parameter's value does not fit its grammar (e.g. `nc` not 8 hex digits).
    #[error("digest parameter `{0}` has an invalid value")]
    InvalidParam(&'static str),
    /// An algorithm other than MD5 or SHA-256 (the value, truncated).
    #[error("unsupported digest algorithm `{0}`")]
    UnsupportedAlgorithm(String),
}

/// Outcome of [`DigestAuth::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The credentials are valid: the request is authenticated.
    Ok,
    /// The response is right but the nonce has expired: re-challenge with
    /// `stale=true` so the client retries without asking the user.
    Stale,
    /// The nonce was not issued by a node holding the secret.
    BadNonce,
    /// The credentials name another realm.
    WrongRealm,
    /// The response does not match (wrong password, username or uri): a failed
    /// authentication, to count against the source address.
    WrongResponse,
    /// The nonce-count did not increase: a replayed request.
    Replay,
    /// The credentials are inconsistent (e.g. `qop` without `nc`); the reason
    /// is for logs.
    Malformed(&'static str),
}

/// Default bound on nonces tracked for replay protection. An entry costs well
/// under 100 bytes, so the worst case stays below ~100 MB while covering far
/// more live nonces than the expected registration rate times a nonce TTL.
const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;

/// Shards of the replay map: enough that the two cores (and more in
/// production) rarely contend, few enough that each shard's FIFO stays useful.
const REPLAY_SHARDS: usize = 16;

const TS_LEN: usize = 8;
const RAND_LEN: usize = 16;
const MAC_LEN: usize = 32;
const NONCE_BYTES: usize = TS_LEN + RAND_LEN + MAC_LEN;
/// Length of an encoded nonce; checked before decoding so a huge attacker
/// string costs nothing.
const NONCE_CHARS: usize = (NONCE_BYTES * 4).div_ceil(3);

/// Issues digest challenges and verifies credentials for one realm.
///
/// Cheap to share (`Arc<DigestAuth>`): verification takes a short per-shard
/// lock only to record the nonce-count.
pub struct DigestAuth {
    realm: String,
    key: hmac::Key,
    ttl_ms: u64,
    allow_rfc2069: bool,
    rng: SystemRandom,
    replay: ReplayCache,
}

impl fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is deliberately left out.
        f.debug_struct("DigestAuth")
            .field("realm", &self.realm)
            .field("ttl_ms", &self.ttl_ms)
            .field("allow_rfc2069", &self.allow_rfc2069)
            .finish_non_exhaustive()
    }
}

impl DigestAuth {
    /// A verifier for `realm` whose nonces are signed with `secret` (share it
    /// across nodes so any of them accepts the others' nonces) and live for
    /// `nonce_ttl` (at least one second).
    pub fn new(realm: String, secret: [u8; 32], nonce_ttl: Duration) -> Self {
        DigestAuth {
            realm,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            ttl_ms: u64::try_from(nonce_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1000),
            allow_rfc2069: true,
            rng: SystemRandom::new(),
            replay: ReplayCache::new(DEFAULT_REPLAY_CAPACITY),
        }
    }

    /// Bounds the number of nonces tracked for replay protection (default
    /// 2^20). When full, the oldest are forgotten and any nonce as old as
    /// those is answered [`Verdict::Stale`], so forgetting never reopens a
    /// replay window; it only costs clients one extra challenge.
    pub fn with_replay_capacity(mut self, capacity: usize) -> Self {
        self.replay = ReplayCache::new(capacity);
        self
    }

    /// Whether credentials without `qop` (RFC 2069) are accepted (default
    /// yes). Such requests carry no nonce-count and can be replayed within
    /// the nonce lifetime; when refused they get
    /// [`Verdict::Malformed`]`("qop is required")`.
    pub fn with_rfc2069(mut self, allow: bool) -> Self {
        self.allow_rfc2069 = allow;
        self
    }

    /// The realm this verifier challenges for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// `HA1 = H(username:realm:password)`, the only password-derived value
    /// verification needs; a registrar may store or cache it (per algorithm)
    /// instead of the password and call [`DigestAuth::verify_ha1`].
    pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
        algorithm.hash_hex(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
    }

    /// Values for `WWW-Authenticate` (registrar) or `Proxy-Authenticate`
    /// (proxy) headers, one per algorithm, SHA-256 first: RFC 8760 §2.4 has
    /// the client use the first one it supports. Both share one fresh nonce.
    /// Set `stale` when answering a [`Verdict::Stale`].
    pub fn challenges(&self, now: SystemTime, stale: bool) -> Vec<String> {
        self.challenges_for(&[Algorithm::Sha256, Algorithm::Md5], now, stale)
    }

    /// Like [`DigestAuth::challenges`], offering `algorithms` in that order of
    /// preference (one nonce for all). Many deployed clients read only the
    /// first challenge, so the operator chooses what comes first.
    pub fn challenges_for(
        &self,
        algorithms: &[Algorithm],
        now: SystemTime,
        stale: bool,
    ) -> Vec<String> {
        let nonce = self.issue_nonce(now);
        algorithms
            .iter()
            .copied()
            .map(|alg| {
                let mut v = format!(
                    "Digest realm={}, nonce=\"{nonce}\", algorithm={alg}, qop=\"auth\"",
                    quote(&self.realm)
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// Verifies `creds` for a request with `method` against the account's
    /// plaintext `password`. See [`DigestAuth::verify_ha1`].
    pub fn verify(
        &self,
        creds: &Credentials,
        method: &str,
        password: &str,
        now: SystemTime,
    ) -> Verdict {
        let ha1 = Self::ha1(creds.algorithm, &creds.username, &self.realm, password);
        self.verify_ha1(creds, method, &ha1, now)
    }

    /// Verifies `creds` against a precomputed `ha1` (lowercase hex, computed
    /// with `creds.algorithm` and this realm).
    ///
    /// Checks run cheapest first, and the expiry and replay checks only after
    /// the response matched, so [`Verdict::Stale`] never tells a guesser that
    /// a nonce was merely old, and only the rightful client can advance the
    /// nonce-count.
    pub fn verify_ha1(
        &self,
        creds: &Credentials,
        method: &str,
        ha1: &str,
        now: SystemTime,
    ) -> Verdict {
        if creds.realm != self.realm {
            return Verdict::WrongRealm;
        }
        let counted = match creds.qop {
            Some(Qop::Auth) => {
                let Some(nc) = creds.nc else {
                    return Verdict::Malformed("qop=auth without nc");
                };
                let Some(cnonce) = creds.cnonce.as_deref() else {
                    return Verdict::Malformed("qop=auth without cnonce");
                };
                if nc == 0 {
                    return Verdict::Malformed("nc starts at 00000001");
                }
                Some((nc, cnonce))
            }
            Some(Qop::AuthInt) => return Verdict::Malformed("qop=auth-int was not offered"),
            None if self.allow_rfc2069 => None,
            None => return Verdict::Malformed("qop is required"),
        };
        let Some(nonce) = self.open_nonce(&creds.nonce) else {
            return Verdict::BadNonce;
        };

        let alg = creds.algorithm;
        let ha2 = alg.hash_hex(&[method.as_bytes(), creds.uri.as_bytes()]);
        let expected = match counted {
            Some((nc, cnonce)) => {
                let nc = format!("{nc:08x}");
                alg.hash_hex(&[
                    ha1.as_bytes(),
                    creds.nonce.as_bytes(),
                    nc.as_bytes(),
                    cnonce.as_bytes(),
                    b"auth",
                    ha2.as_bytes(),
                ])
            }
            None => alg.hash_hex(&[ha1.as_bytes(), creds.nonce.as_bytes(), ha2.as_bytes()]),
        };
        // Clients must send lowercase hex, but being lenient about case
        // costs nothing in security.
        let given = creds.response.to_ascii_lowercase();
        if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            return Verdict::WrongResponse;
        }

        let now = unix_millis(now);
        // A nonce from the future comes from a node whose clock runs ahead;
        // tolerate as much skew as a nonce lives, no more, so a broken clock
        // cannot mint near-eternal nonces.
        if now.abs_diff(nonce.issued) > self.ttl_ms {
            return Verdict::Stale;
        }
        match counted {
            Some((nc, _)) => self.replay.record(&nonce, nc, now, self.ttl_ms),
            None => Verdict::Ok,
        }
    }

    fn issue_nonce(&self, now: SystemTime) -> String {
        let mut raw = [0u8; NONCE_BYTES];
        raw[..TS_LEN].copy_from_slice(&unix_millis(now).to_be_bytes());
        // SystemRandom only fails when the OS has no entropy source at all,
        // where nothing else in the process would work either; a zero random
        // part still yields a correctly MACed, merely predictable, nonce.
        let _ = self.rng.fill(&mut raw[TS_LEN..TS_LEN + RAND_LEN]);
        let tag = hmac::sign(&self.key, &raw[..TS_LEN + RAND_LEN]);
        raw[TS_LEN + RAND_LEN..].copy_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes and authenticates a nonce; `None` for anything this secret
    /// did not produce.
    fn open_nonce(&self, nonce: &str) -> Option<Nonce> {
        if nonce.len() != NONCE_CHARS {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != NONCE_BYTES {
            return None;
        }
        let (signed, tag) = raw.split_at(TS_LEN + RAND_LEN);
        hmac::verify(&self.key, signed, tag).ok()?;
        let issued = u64::from_be_bytes(raw[..TS_LEN].try_into().ok()?);
        let random = raw[TS_LEN..TS_LEN + RAND_LEN].try_into().ok()?;
        Some(Nonce { issued, random })
    }
}

/// An authenticated nonce.
struct Nonce {
    issued: u64,
    random: [u8; RAND_LEN],
}

/// Highest nonce-count seen per nonce, bounded and sharded.
struct ReplayCache {
    shards: Vec<Mutex<ReplayShard>>,
    shard_capacity: usize,
}

#[derive(Default)]
struct ReplayShard {
    highest_nc: HashMap<[u8; RAND_LEN], u32>,
    /// First-use order, which tracks issue order closely because clients use
    /// a nonce right after receiving it; lets expiry and eviction start from
    /// the front without scanning the map.
    order: VecDeque<(u64, [u8; RAND_LEN])>,
    /// Newest issue time among entries evicted for capacity: an unknown nonce
    /// at least this old may have been evicted, so it cannot be trusted as
    /// first use.
    evicted_up_to: Option<u64>,
}

impl ReplayCache {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let n = REPLAY_SHARDS.min(capacity);
        ReplayCache {
            shards: (0..n).map(|_| Mutex::default()).collect(),
            shard_capacity: capacity / n,
        }
    }

    fn record(&self, nonce: &Nonce, nc: u32, now: u64, ttl: u64) -> Verdict {
        // The random part is MAC-protected, so it spreads evenly and an
        // attacker cannot aim at one shard.
        let shard = &self.shards[usize::from(nonce.random[0]) % self.shards.len()];
        let mut s = lock(shard);
        while let Some(&(issued, key)) = s.order.front() {
            if now.saturating_sub(issued) <= ttl {
                break;
            }
            s.order.pop_front();
            s.highest_nc.remove(&key);
        }
        if let Some(highest) = s.highest_nc.get_mut(&nonce.random) {
            if nc <= *highest {
                return Verdict::Replay;
            }
            *highest = nc;
            return Verdict::Ok;
        }
        if s.evicted_up_to.is_some_and(|t| nonce.issued <= t) {
            return Verdict::Stale;
        }
        while s.highest_nc.len() >= self.shard_capacity {
            let Some((issued, key)) = s.order.pop_front() else {
                break;
            };
            s.highest_nc.remove(&key);
            s.evicted_up_to = Some(s.evicted_up_to.map_or(issued, |t| t.max(issued)));
        }
        s.highest_nc.insert(nonce.random, nc);
        s.order.push_back((nonce.issued, nonce.random));
        Verdict::Ok
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).highest_nc.len()).sum()
    }
}

/// A poisoned shard only means another thread panicked mid-update of plain
/// counters; the data is still usable, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds rather than seconds so nonces issued close together rarely
/// share a timestamp, which keeps [`ReplayShard::evicted_up_to`] precise.
fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Compares without an early exit, so timing does not reveal how many
/// leading characters of a guessed response were right. Lengths are public
/// (fixed by the algorithm).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Keeps attacker-supplied text in errors (and so in logs) short.
fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

/// Parses an `Authorization` / `Proxy-Authorization` header value.
///
/// Accepts parameters in any order, names in any case, quoted or bare values
/// (quoted strings may contain `\`-escapes), free whitespace (including folded
/// lines) and empty list elements; ignores unknown parameters (`userhash`,
/// `username*` and future ones). Never panics.
pub fn parse_credentials(value: &str) -> Result<Credentials, DigestError> {
    let mut cur = Cursor { s: value, pos: 0 };
    cur.skip_ws();
    let scheme = cur.take_while(|c| !is_ws(c));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }

    let mut slots: [Option<String>; KNOWN.len()] = Default::default();
    loop {
        cur.skip_ws_and_commas();
        if cur.at_end() {
            break;
        }
        let name = cur.take_while(|c| c != '=' && c != ',' && c != '"' && !is_ws(c));
        if name.is_empty() {
            return Err(DigestError::Syntax("expected a parameter name"));
        }
        cur.skip_ws();
        if !cur.eat('=') {
            return Err(DigestError::Syntax("expected `=` after a parameter name"));
        }
        cur.skip_ws();
        let value = if cur.eat('"') {
            cur.quoted()?
        } else {
            let v = cur.take_while(|c| c != ',' && c != '"' && !is_ws(c));
            if v.is_empty() {
                return Err(DigestError::Syntax("expected a parameter value"));
            }
            v.to_owned()
        };
        cur.skip_ws();
        if !cur.at_end() && !cur.eat(',') {
            return Err(DigestError::Syntax("expected `,` between parameters"));
        }
        if let Some(i) = KNOWN.iter().position(|k| name.eq_ignore_ascii_case(k)) {
            if slots[i].is_some() {
                return Err(DigestError::DuplicateParam(KNOWN[i]));
            }
            slots[i] = Some(value);
        }
    }

    let [
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        qop,
        nc,
        cnonce,
        opaque,
    ] = slots;
    let required = |v: Option<String>, name| v.ok_or(DigestError::MissingParam(name));
    Ok(Credentials {
        username: required(username, "username")?,
        realm: required(realm, "realm")?,
        nonce: required(nonce, "nonce")?,
        uri: required(uri, "uri")?,
        response: required(response, "response")?,
        algorithm: algorithm
            .as_deref()
            .map_or(Ok(Algorithm::Md5), str::parse)?,
        qop: qop.as_deref().map(parse_qop).transpose()?,
        nc: nc.as_deref().map(parse_nc).transpose()?,
        cnonce,
        opaque,
    })
}

/// Parameters this module reads, in the order of the destructuring in
/// [`parse_credentials`].
const KNOWN: [&str; 10] = [
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "qop",
    "nc",
    "cnonce",
    "opaque",
];

fn parse_qop(v: &str) -> Result<Qop, DigestError> {
    if v.eq_ignore_ascii_case("auth") {
        Ok(Qop::Auth)
    } else if v.eq_ignore_ascii_case("auth-int") {
        Ok(Qop::AuthInt)
    } else {
        Err(DigestError::InvalidParam("qop"))
    }
}

/// `nc` is exactly 8 hex digits (RFC 7616 §3.4); the digit check also keeps
/// `from_str_radix` from accepting a sign.
fn parse_nc(v: &str) -> Result<u32, DigestError> {
    if v.len() != 8 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::InvalidParam("nc"));
    }
    u32::from_str_radix(v, 16).map_err(|_| DigestError::InvalidParam("nc"))
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Byte position into the header value; only ever advanced by whole chars,
/// so every slice lands on a char boundary.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn at_end(&self) -> bool {
        self.rest().is_empty()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, want: char) -> bool {
        if self.peek() == Some(want) {
            self.pos += want.len_utf8();
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn skip_ws(&mut self) {
        self.take_while(is_ws);
    }

    fn skip_ws_and_commas(&mut self) {
        self.take_while(|c| c == ',' || is_ws(c));
    }

    /// The body of a quoted string whose opening quote was consumed.
    fn quoted(&mut self) -> Result<String, DigestError> {
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => out.push(escaped),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(DigestError::Syntax("unterminated quoted string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &str = "sip.example.org";
    const TTL: Duration = Duration::from_secs(300);

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const T0: u64 = 1_700_000_000;

    fn auth() -> DigestAuth {
        DigestAuth::new(REALM.into(), [7; 32], TTL)
    }

    fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
        let start = challenge.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let rest = &challenge[start..];
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        &rest[..rest.find(['"', ',']).unwrap_or(rest.len())]
    }

    /// What a well-behaved client would send, computed independently of
    /// `verify` from the formulas.
    fn client(
        challenge: &str,
        alg: Algorithm,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
    ) -> Credentials {
        let nonce = param(challenge, "nonce").to_owned();
        let realm = param(challenge, "realm").to_owned();
        let cnonce = "0a4f113b".to_owned();
        let ha1 = alg.hash_hex(&[user.as_bytes(), realm.as_bytes(), password.as_bytes()]);
        let ha2 = alg.hash_hex(&[method.as_bytes(), uri.as_bytes()]);
        let ncs = format!("{nc:08x}");
        let response = alg.hash_hex(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            ncs.as_bytes(),
            cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ]);
        Credentials {
            username: user.into(),
            realm,
            nonce,
            uri: uri.into(),
            response,
            algorithm: alg,
            qop: Some(Qop::Auth),
            nc: Some(nc),
            cnonce: Some(cnonce),
            opaque: None,
        }
    }

    fn login(a: &DigestAuth, alg: Algorithm, nc: u32) -> Credentials {
        let ch = a.challenges(t(T0), false);
        client(
            &ch[0],
            alg,
            "alice",
            "secret",
            "REGISTER",
            "sip:sip.example.org",
            nc,
        )
    }

    #[test]
    fn rfc7616_example_vectors() {
        // RFC 7616 §3.9.1 (errata-corrected MD5 value).
        let header = |alg: &str, response: &str| {
            format!(
                r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html",
                algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001,
                cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth,
                response="{response}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            )
        };
        for (alg, expected) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let creds = parse_credentials(&header(alg.as_str(), expected)).unwrap();
            assert_eq!(creds.algorithm, alg);
            assert_eq!(creds.nc, Some(1));
            assert_eq!(
                creds.opaque.as_deref(),
                Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
            );
            let ha1 = DigestAuth::ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            let ha2 = alg.hash_hex(&[b"GET", creds.uri.as_bytes()]);
            let response = alg.hash_hex(&[
                ha1.as_bytes(),
                creds.nonce.as_bytes(),
                b"00000001",
                creds.cnonce.as_deref().unwrap().as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ]);
            assert_eq!(response, expected, "{alg}");
            assert_eq!(creds.response, expected);
        }
    }

    #[test]
    fn rfc7616_example_goes_through_verify_up_to_the_nonce() {
        // The example's nonce is not ours: everything before the nonce check
        // passes and the foreign nonce is refused, never accepted.
        let a = DigestAuth::new("http-auth@example.org".into(), [1; 32], TTL);
        let creds = parse_credentials(
            r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="8ca523f5e9506fed4657c9700eebdbec""#,
        )
        .unwrap();
        assert_eq!(
            a.verify(&creds, "GET", "Circle of Life", t(T0)),
            Verdict::BadNonce
        );
    }

    #[test]
    fn challenges_offer_sha256_first_then_md5() {
        let a = auth();
        let ch = a.challenges(t(T0), false);
        assert_eq!(ch.len(), 2);
        assert!(ch[0].starts_with("Digest realm=\"sip.example.org\", nonce=\""));
        assert!(ch[0].contains("algorithm=SHA-256"));
        assert!(ch[1].contains("algorithm=MD5"));
        assert!(
            ch.iter()
                .all(|c| c.contains("qop=\"auth\"") && !c.contains("stale"))
        );
        assert_eq!(param(&ch[0], "nonce"), param(&ch[1], "nonce"));
        assert_eq!(param(&ch[0], "nonce").len(), NONCE_CHARS);
        let stale = a.challenges(t(T0), true);
        assert!(stale.iter().all(|c| c.ends_with(", stale=true")));
        assert_ne!(param(&stale[0], "nonce"), param(&ch[0], "nonce"));
    }

    #[test]
    fn realm_is_escaped_in_challenges() {
        let a = DigestAuth::new(r#"a"b\c"#.into(), [0; 32], TTL);
        let ch = a.challenges(t(T0), false);
        assert!(
            ch[0].starts_with(r#"Digest realm="a\"b\\c", "#),
            "{}",
            ch[0]
        );
    }

    #[test]
    fn round_trip_both_algorithms() {
        let a = auth();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let creds = login(&a, alg, 1);
            assert_eq!(
                a.verify(&creds, "REGISTER", "secret", t(T0 + 1)),
                Verdict::Ok
            );
        }
    }

    #[test]
    fn round_trip_through_the_header_text() {
        let a = auth();
        let c = login(&a, Algorithm::Sha256, 1);
        let header = format!(
            "Digest username=\"{}\",realm=\"{}\",nonce=\"{}\",uri=\"{}\",response=\"{}\",algorithm=SHA-256,qop=auth,nc=00000001,cnonce=\"{}\"",
            c.username,
            c.realm,
            c.nonce,
            c.uri,
            c.response,
            c.cnonce.as_deref().unwrap()
        );
        let parsed = parse_credentials(&header).unwrap();
        assert_eq!(parsed, c);
        assert_eq!(a.verify(&parsed, "REGISTER", "secret", t(T0)), Verdict::Ok);
    }

    #[test]
    fn verify_ha1_matches_verify() {
        let a = auth();
        let creds = login(&a, Algorithm::Md5, 1);
        let ha1 = DigestAuth::ha1(Algorithm::Md5, "alice", REALM, "secret");
        assert_eq!(a.verify_ha1(&creds, "REGISTER", &ha1, t(T0)), Verdict::Ok);
        let sha_ha1 = DigestAuth::ha1(Algorithm::Sha256, "alice", REALM, "secret");
        let creds = login(&a, Algorithm::Md5, 1);
        assert_eq!(
            a.verify_ha1(&creds, "REGISTER", &sha_ha1, t(T0)),
            Verdict::WrongResponse
        );
    }

    #[test]
    fn nonces_survive_a_restart_and_work_on_peer_nodes() {
        let creds = login(&auth(), Algorithm::Sha256, 1);
        let peer = auth();
        assert_eq!(
            peer.verify(&creds, "REGISTER", "secret", t(T0)),
            Verdict::Ok
        );
        let other_secret = DigestAuth::new(REALM.into(), [8; 32], TTL);
        assert_eq!(
            other_secret.verify(&creds, "REGISTER", "secret", t(T0)),
            Verdict::BadNonce
        );
    }

    #[test]
    fn stale_after_ttl_only_when_the_response_is_right() {
        let a = auth();
        let creds = login(&a, Algorithm::Sha256, 1);
        let late = t(T0 + TTL.as_secs() + 1);
        assert_eq!(
            a.verify(&creds, "REGISTER", "wrong", late),
            Verdict::WrongResponse
        );
        assert_eq!(a.verify(&creds, "REGISTER", "secret", late), Verdict::Stale);
        let just_in_time = t(T0 + TTL.as_secs());
        assert_eq!(
            a.verify(&creds, "REGISTER", "secret", just_in_time),
            Verdict::Ok
        );
    }

    #[test]
    fn nonce_from_far_in_the_future_is_stale() {
        let a = auth();
        let creds = login(&a, Algorithm::Md5, 1);
        let early = t(T0 - TTL.as_secs() - 1);
        assert_eq!(
            a.verify(&creds, "REGISTER", "secret", early),
            Verdict::Stale
        );
    }

    #[test]
    fn forged_and_garbage_nonces_are_bad() {
        let a = auth();
        let good = login(&a, Algorithm::Sha256, 1);
        // Flip one character of the MAC, of the timestamp, and of the random part.
        for at in [0, 12, NONCE_CHARS - 3] {
            let mut forged = good.clone();
            let mut bytes = forged.nonce.into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            forged.nonce = String::from_utf8(bytes).unwrap();
            assert_eq!(
                a.verify(&forged, "REGISTER", "secret", t(T0)),
                Verdict::BadNonce,
                "{at}"
            );
        }
        for garbage in [
            "",
            "abc",
            &"!".repeat(NONCE_CHARS),
            &"A".repeat(NONCE_CHARS),
            &"é".repeat(40),
        ] {
            let mut c = good.clone();
            c.nonce = garbage.to_owned();
            assert_eq!(a.verify(&c, "REGISTER", "secret", t(T0)), Verdict::BadNonce);
        }
        // Extending an old nonce's life by rewriting its timestamp breaks the MAC.
        let raw = URL_SAFE_NO_PAD.decode(&good.nonce).unwrap();
        let mut moved = raw.clone();
        moved[..TS_LEN].copy_from_slice(&((T0 + 10_000) * 1000).to_be_bytes());
        let mut c = good.clone();
        c.nonce = URL_SAFE_NO_PAD.encode(moved);
        assert_eq!(
            a.verify(&c, "REGISTER", "secret", t(T0 + 10_000)),
            Verdict::BadNonce
        );
    }

    #[test]
    fn wrong_password_username_uri_or_method() {
        let a = auth();
        let creds = login(&a, Algorithm::Sha256, 1);
        assert_eq!(
            a.verify(&creds, "REGISTER", "Secret", t(T0)),
            Verdict::WrongResponse
        );
        assert_eq!(
            a.verify(&creds, "INVITE", "secret", t(T0)),
            Verdict::WrongResponse
        );
        let mut other_user = creds.clone();
        other_user.username = "bob".into();
        assert_eq!(
            a.verify(&other_user, "REGISTER", "secret", t(T0)),
            Verdict::WrongResponse
        );
        let mut other_uri = creds.clone();
        other_uri.uri = "sip:evil.example".into();
        assert_eq!(
            a.verify(&other_uri, "REGISTER", "secret", t(T0)),
            Verdict::WrongResponse
        );
        let mut other_alg = creds.clone();
        other_alg.algorithm = Algorithm::Md5;
        assert_eq!(
            a.verify(&other_alg, "REGISTER", "secret", t(T0)),
            Verdict::WrongResponse
        );
        // A failed attempt does not burn the nonce-count for the real client.
        assert_eq!(a.verify(&creds, "REGISTER", "secret", t(T0)), Verdict::Ok);
    }

    #[test]
    fn response_case_is_ignored() {
        let a = auth();
        let mut creds = login(&a, Algorithm::Md5, 1);
        creds.response = creds.response.to_ascii_uppercase();
        assert_eq!(a.verify(&creds, "REGISTER", "secret", t(T0)), Verdict::Ok);
    }

    #[test]
    fn wrong_realm() {
        let a = auth();
        let mut creds = login(&a, Algorithm::Sha256, 1);
        creds.realm = "other.example.org".into();
        assert_eq!(
            a.verify(&creds, "REGISTER", "secret", t(T0)),
            Verdict::WrongRealm
        );
    }

    #[test]
    fn replayed_nc_is_refused_and_increasing_nc_accepted() {
        let a = auth();
        let ch = a.challenges(t(T0), false);
        let at = |nc| {
            client(
                &ch[0],
                Algorithm::Sha256,
                "alice",
                "secret",
                "REGISTER",
                "sip:x",
                nc,
            )
        };
        assert_eq!(a.verify(&at(1), "REGISTER", "secret", t(T0)), Verdict::Ok);
        assert_eq!(
            a.verify(&at(1), "REGISTER", "secret", t(T0)),
            Verdict::Replay
        );
        assert_eq!(
            a.verify(&at(2), "REGISTER", "secret", t(T0 + 1)),
            Verdict::Ok
        );
        // Skipping counts is allowed (the client may have sent requests elsewhere).
        assert_eq!(
            a.verify(&at(7), "REGISTER", "secret", t(T0 + 2)),
            Verdict::Ok
        );
        assert_eq!(
            a.verify(&at(5), "REGISTER", "secret", t(T0 + 3)),
            Verdict::Replay
        );
        assert_eq!(
            a.verify(&at(7), "REGISTER", "secret", t(T0 + 3)),
            Verdict::Replay
        );
        assert_eq!(
            a.verify(&at(0xffff_ffff), "REGISTER", "secret", t(T0 + 4)),
            Verdict::Ok
        );
        assert_eq!(
            a.verify(&at(0xffff_ffff), "REGISTER", "secret", t(T0 + 4)),
            Verdict::Replay
        );
        // A different nonce has its own count.
        let other = login(&a, Algorithm::Sha256, 1);
        assert_eq!(
            a.verify(&other, "REGISTER", "secret", t(T0 + 5)),
            Verdict::Ok
        );
    }

    #[test]
    fn replay_map_is_bounded_and_eviction_does_not_reopen_replays() {
        let a = auth().with_replay_capacity(64);
        let first = login(&a, Algorithm::Md5, 1);
        assert_eq!(a.verify(&first, "REGISTER", "secret", t(T0)), Verdict::Ok);
        // One nonce per millisecond, far beyond the capacity within a TTL.
        for i in 0..1000 {
            let now = t(T0 + 1) + Duration::from_millis(i);
            let ch = a.challenges(now, false);
            let c = client(
                &ch[1],
                Algorithm::Md5,
                "alice",
                "secret",
                "REGISTER",
                "sip:x",
                1,
            );
            assert_eq!(a.verify(&c, "REGISTER", "secret", now), Verdict::Ok);
        }
        assert!(a.replay.len() <= 64, "{}", a.replay.len());
        // `first` was evicted; replaying it must not pass as a first use.
        assert_eq!(
            a.verify(&first, "REGISTER", "secret", t(T0 + 20)),
            Verdict::Stale
        );
    }

    #[test]
    fn expired_entries_leave_the_replay_map() {
        let a = auth();
        for i in 0..10 {
            assert_eq!(
                a.verify(
                    &login(&a, Algorithm::Md5, 1),
                    "REGISTER",
                    "secret",
                    t(T0 + i)
                ),
                Verdict::Ok
            );
        }
        assert_eq!(a.replay.len(), 10);
        // Uses after every earlier nonce expired prune them from their shards.
        let late = T0 + TTL.as_secs() + 100;
        for _ in 0..200 {
            let ch = a.challenges(t(late), false);
            let c = client(
                &ch[0],
                Algorithm::Md5,
                "alice",
                "secret",
                "REGISTER",
                "sip:x",
                1,
            );
            assert_eq!(a.verify(&c, "REGISTER", "secret", t(late)), Verdict::Ok);
        }
        assert_eq!(a.replay.len(), 200);
    }

    #[test]
    fn rfc2069_form_is_allowed_by_default_and_can_be_refused() {
        let a = auth();
        let ch = a.challenges(t(T0), false);
        let nonce = param(&ch[1], "nonce").to_owned();
        let ha1 = DigestAuth::ha1(Algorithm::Md5, "alice", REALM, "secret");
        let ha2 = Algorithm::Md5.hash_hex(&[b"REGISTER", b"sip:x"]);
        let response = Algorithm::Md5.hash_hex(&[ha1.as_bytes(), nonce.as_bytes(), ha2.as_bytes()]);
        let header = format!(
            r#"Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="sip:x", response="{response}""#
        );
        let creds = parse_credentials(&header).unwrap();
        assert_eq!(creds.algorithm, Algorithm::Md5);
        assert_eq!(
            (creds.qop, creds.nc, creds.cnonce.as_deref()),
            (None, None, None)
        );
        assert_eq!(a.verify(&creds, "REGISTER", "secret", t(T0)), Verdict::Ok);
        // Documented weakness: no nonce-count, so the same request passes again.
        assert_eq!(
            a.verify(&creds, "REGISTER", "secret", t(T0 + 1)),
            Verdict::Ok
        );
        let strict = auth().with_rfc2069(false);
        assert_eq!(
            strict.verify(&creds, "REGISTER", "secret", t(T0)),
            Verdict::Malformed("qop is required")
        );
    }

    #[test]
    fn inconsistent_qop_is_malformed() {
        let a = auth();
        let good = login(&a, Algorithm::Sha256, 1);
        let mut c = good.clone();
        c.nc = None;
        assert!(matches!(
            a.verify(&c, "REGISTER", "secret", t(T0)),
            Verdict::Malformed(_)
        ));
        let mut c = good.clone();
        c.cnonce = None;
        assert!(matches!(
            a.verify(&c, "REGISTER", "secret", t(T0)),
            Verdict::Malformed(_)
        ));
        let mut c = good.clone();
        c.nc = Some(0);
        assert!(matches!(
            a.verify(&c, "REGISTER", "secret", t(T0)),
            Verdict::Malformed(_)
        ));
        let mut c = good.clone();
        c.qop = Some(Qop::AuthInt);
        assert!(matches!(
            a.verify(&c, "REGISTER", "secret", t(T0)),
            Verdict::Malformed(_)
        ));
    }

    #[test]
    fn parse_accepts_messy_but_valid_input() {
        let v = "  dIgEsT\tNC=0000000a ,, QOP=\"auth\",\r\n  Response = \"ABC\" , cnonce=xyz,\n\tusername=\"a\\\"l\\\\ice\", realm=r,unknown=\"x, y=\\\"z\",nonce=\"n\",uri=\"sip:a@b;transport=tls\",algorithm=sha-256,userhash=false,";
        let c = parse_credentials(v).unwrap();
        assert_eq!(c.username, "a\"l\\ice");
        assert_eq!(c.realm, "r");
        assert_eq!(c.nonce, "n");
        assert_eq!(c.uri, "sip:a@b;transport=tls");
        assert_eq!(c.response, "ABC");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(c.nc, Some(10));
        assert_eq!(c.cnonce.as_deref(), Some("xyz"));
        assert_eq!(c.opaque, None);
    }

    #[test]
    fn parse_keeps_utf8_and_empty_quoted_values() {
        let c = parse_credentials(
            r#"Digest username="jürgen 李", realm="", nonce="n", uri="u", response="r", opaque="""#,
        )
        .unwrap();
        assert_eq!(c.username, "jürgen 李");
        assert_eq!(c.realm, "");
        assert_eq!(c.opaque.as_deref(), Some(""));
    }

    #[test]
    fn parse_errors() {
        use DigestError::*;
        let base = r#"username="a", realm="r", nonce="n", uri="u", response="x""#;
        let cases: &[(&str, DigestError)] = &[
            ("", NotDigest),
            ("Basic dXNlcjpwYXNz", NotDigest),
            ("Digestusername=\"a\"", NotDigest),
            ("Digest", MissingParam("username")),
            (
                r#"Digest username="a", realm="r", nonce="n", uri="u""#,
                MissingParam("response"),
            ),
            (
                r#"Digest username="a"#,
                Syntax("unterminated quoted string"),
            ),
            (
                r#"Digest username="a\"#,
                Syntax("unterminated quoted string"),
            ),
            (
                "Digest username",
                Syntax("expected `=` after a parameter name"),
            ),
            ("Digest username=", Syntax("expected a parameter value")),
            ("Digest =x", Syntax("expected a parameter name")),
            (
                r#"Digest username="a" realm="r""#,
                Syntax("expected `,` between parameters"),
            ),
            (
                r#"Digest username=a"b""#,
                Syntax("expected `,` between parameters"),
            ),
            (
                r#"Digest username="a", USERNAME="b""#,
                DuplicateParam("username"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_credentials(input).as_ref(), Err(want), "{input}");
        }
        let with = |extra: &str| parse_credentials(&format!("Digest {base}, {extra}"));
        assert_eq!(with("nc=1"), Err(InvalidParam("nc")));
        assert_eq!(with("nc=+0000001"), Err(InvalidParam("nc")));
        assert_eq!(with("nc=0000000g"), Err(InvalidParam("nc")));
        assert_eq!(with("nc=000000001"), Err(InvalidParam("nc")));
        assert_eq!(with("nc=FFFFFFFF").unwrap().nc, Some(u32::MAX));
        assert_eq!(with("qop=auth-int").unwrap().qop, Some(Qop::AuthInt));
        assert_eq!(with("qop=\"auth,auth-int\""), Err(InvalidParam("qop")));
        assert_eq!(
            with("algorithm=MD5-sess"),
            Err(UnsupportedAlgorithm("MD5-sess".into()))
        );
        let long = "x".repeat(10_000);
        assert_eq!(
            with(&format!("algorithm={long}")),
            Err(UnsupportedAlgorithm("x".repeat(32)))
        );
    }

    /// xorshift64*: deterministic, dependency-free randomness for the fuzz test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn one_in(&mut self, n: u64) -> bool {
            self.next().is_multiple_of(n)
        }
    }

    #[test]
    fn parse_and_verify_never_panic_on_random_input() {
        let a = auth();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let pieces: &[&str] = &[
            "Digest ",
            "digest",
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "qop",
            "nc",
            "cnonce",
            "opaque",
            "=",
            "\"",
            "\\",
            ",",
            " ",
            "\t",
            "\r\n",
            "auth",
            "MD5",
            "SHA-256",
            "00000001",
            "é",
            "李",
            "\u{0}",
            "\u{ffff}",
            "x",
        ];
        let real_nonce = param(&a.challenges(t(T0), false)[0], "nonce").to_owned();
        let mut ok = 0;
        for round in 0..20_000 {
            let input = if round % 2 == 0 {
                let len = (rng.next() % 128) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                // Mostly well-formed name=value pairs with occasional junk,
                // so the parser's deeper paths and the verifier run too.
                let pick = |rng: &mut Rng| pieces[(rng.next() % pieces.len() as u64) as usize];
                let mut s = String::from(if rng.one_in(20) { "x" } else { "Digest " });
                for name in KNOWN {
                    if rng.one_in(40) {
                        continue;
                    }
                    let junk = rng.one_in(20);
                    s.push_str(if junk { pick(&mut rng) } else { name });
                    s.push('=');
                    let value = match name {
                        _ if rng.one_in(20) => pick(&mut rng),
                        "algorithm" => ["MD5", "SHA-256"][(rng.next() % 2) as usize],
                        "qop" => "auth",
                        "nc" => "00000002",
                        "nonce" => &real_nonce,
                        "realm" => REALM,
                        _ => "x",
                    };
                    let quoted = rng.one_in(2);
                    if quoted {
                        s.push('"');
                    }
                    s.push_str(value);
                    if quoted {
                        s.push('"');
                    }
                    s.push_str(if rng.one_in(40) { pick(&mut rng) } else { ", " });
                }
                s
            };
            if let Ok(c) = parse_credentials(&input) {
                let v = a.verify(&c, "REGISTER", "secret", t(T0));
                assert_ne!(v, Verdict::Ok, "{input:?}");
                if v == Verdict::WrongResponse {
                    ok += 1;
                }
            }
        }
        // The structured half must get as far as the response check, or the
        // fuzz would only exercise the error paths.
        assert!(ok > 100, "{ok}");
    }

    #[test]
    fn debug_output_hides_the_key() {
        let s = format!("{:?}", auth());
        assert!(s.contains("sip.example.org") && !s.contains("key"), "{s}");
    }
}
