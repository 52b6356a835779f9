//! SRTP and SRTCP (RFC 3711) with keys from SDP security descriptions
//! (SDES, RFC 4568), what a handset that insists on `RTP/SAVP` speaks,
//! or from a DTLS handshake (DTLS-SRTP, RFC 5764), what a browser speaks.
//!
//! - Suites: `AES_CM_128_HMAC_SHA1_80` and `AES_CM_128_HMAC_SHA1_32`
//!   (RFC 4568 §6.2), the two every SDES phone offers. Both encrypt with
//!   AES-128 in counter mode (§4.1.1) and authenticate with HMAC-SHA1
//!   (§4.2.1); they differ in the RTP tag (10 or 4 bytes). SRTCP's tag is
//!   10 bytes with either (RFC 4568 §6.2.2).
//! - `AEAD_AES_128_GCM` and `AEAD_AES_256_GCM` (RFC 7714, the transform
//!   in `srtp/gcm.rs`): AES in Galois/counter mode encrypts and authenticates in
//!   one pass, with a 16-byte tag and a nonce made of the SSRC and the
//!   packet index. DTLS-SRTP peers negotiate them first (Chromium offers
//!   them). SDES lines naming them are not read: no SDES phone offers
//!   them, and [`CryptoAttribute`] keeps to the AES-CM suites' keys.
//! - Keys: one master key and salt per direction, from an `a=crypto`
//!   line's `inline:` key or split from DTLS's exported keying material
//!   by [`dtls_srtp_keys`]; session keys are derived once (§4.3, key
//!   derivation rate 0, the SDES default and DTLS-SRTP's only rate), with
//!   AES-256 for a 32-byte master key (RFC 6188, RFC 7714 §11). MKIs and
//!   several master keys per line are refused: nothing re-keys a call in
//!   the middle.
//! - Per source (SSRC) a context follows the rollover counter of the
//!   sequence number (§3.3.1) and a 64-packet replay window (§3.3.2), so a
//!   peer's audio and its telephone-events may come from two sources.
//!
//! A [`SrtpContext`] serves one direction: the endpoint protects with the
//! context of its own key and unprotects with the context of the peer's.
//! The module is sans-io: packets in, packets out.

mod gcm;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{InnerIvInit, KeyInit, KeyIvInit, StreamCipher};
use aes::{Aes128, Aes256};
use base64::Engine as _;
use ring::hmac;

use crate::rtp;
use gcm::GcmKeys;

/// Bytes of an AES-128 master key (the AES-CM suites, `AEAD_AES_128_GCM`).
pub const MASTER_KEY_LEN: usize = 16;
/// Bytes of an AES-256 master key (`AEAD_AES_256_GCM`).
pub const MASTER_KEY_256_LEN: usize = 32;
/// Bytes of a master salt of the AES-CM suites (112 bits, §4.3.3).
pub const MASTER_SALT_LEN: usize = 14;
/// Bytes of a master salt of the GCM suites (96 bits, RFC 7714 §14.2).
pub const GCM_MASTER_SALT_LEN: usize = gcm::SALT_LEN;
/// Packets a receiver remembers behind the newest one (§3.3.2's minimum).
pub const REPLAY_WINDOW: u64 = 64;
/// The most packets one master key may protect (§3.2.1: 2^48).
pub const MAX_LIFETIME: u64 = 1 << 48;
/// An SRTCP index is 31 bits (§3.4).
const SRTCP_INDEX_MAX: u64 = 0x7FFF_FFFF;
/// The E flag in front of the SRTCP index: the packet is encrypted.
const SRTCP_E: u32 = 0x8000_0000;
/// SRTCP's authentication tag under the AES-CM suites (RFC 4568 §6.2).
const SRTCP_TAG_LEN: usize = 10;
/// RTCP's fixed part left in the clear: V/P/count, type, length, SSRC.
const RTCP_HEADER_LEN: usize = 8;
const AUTH_KEY_LEN: usize = 20;
/// Sources a context follows. A peer sends one audio source, maybe one
/// for events, and a new one after a transfer; a stranger cannot add one
/// without the key (state is kept only for authenticated packets). The
/// least recently heard is forgotten beyond this.
const STREAMS_KEPT: usize = 8;

/// Key derivation labels (§4.3.1).
const LABEL_RTP_ENCRYPTION: u8 = 0x00;
const LABEL_RTP_AUTH: u8 = 0x01;
const LABEL_RTP_SALT: u8 = 0x02;
const LABEL_RTCP_ENCRYPTION: u8 = 0x03;
const LABEL_RTCP_AUTH: u8 = 0x04;
const LABEL_RTCP_SALT: u8 = 0x05;

type AesCm = ctr::Ctr128BE<Aes128>;
type AesCmCore = ctr::CtrCore<Aes128, ctr::flavors::Ctr128BE>;

/// Why a packet was not protected or unprotected, or a key not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// Shorter than its header and authentication tag.
    #[error("packet too short for SRTP/SRTCP")]
    TooShort,
    /// Not an RTP (or RTCP) packet: wrong version, truncated header.
    #[error("not an RTP/RTCP packet")]
    Malformed,
    /// The authentication tag does not match: tampered, or another key.
    #[error("SRTP authentication failed")]
    Authentication,
    /// A packet already received (§3.3.2); or, under a GCM suite, a
    /// sequence number protected a second time, which would reuse its
    /// nonce.
    #[error("replayed SRTP packet")]
    Replayed,
    /// Older than the replay window: it cannot be told from a replay.
    #[error("SRTP packet too old for the replay window")]
    TooOld,
    /// The master key's lifetime (or SRTP's 2^48) is used up.
    #[error("the SRTP master key is used up")]
    KeyExhausted,
    /// An `a=crypto` suite this module does not implement (or, for the
    /// GCM suites, does not take SDES keys for).
    #[error("unsupported crypto suite {0}")]
    UnsupportedSuite(String),
    /// A key method other than `inline:`, or a malformed `a=crypto`.
    #[error("malformed crypto attribute: {0}")]
    Attribute(&'static str),
    /// The inline key is not base64 of a 16-byte key and 14-byte salt.
    #[error("inline key is not base64 of {MASTER_KEY_LEN}+{MASTER_SALT_LEN} bytes")]
    KeyLength,
    /// A master key and salt of lengths no suite takes: 16 and 14
    /// bytes (AES-CM), 16 and 12 (`AEAD_AES_128_GCM`) or 32 and 12
    /// (`AEAD_AES_256_GCM`) are.
    #[error("no SRTP suite takes a {key}-byte master key with a {salt}-byte salt")]
    MasterKeyLength { key: usize, salt: usize },
    /// A master key and salt of lengths another suite takes.
    #[error("a {key}-byte master key with a {salt}-byte salt does not fit {suite}")]
    KeyForAnotherSuite {
        suite: Suite,
        key: usize,
        salt: usize,
    },
    /// DTLS-SRTP keying material of another length than the suite's
    /// [`Suite::keying_material_len`].
    #[error("{suite} takes {expected} bytes of DTLS-SRTP keying material, not {len}")]
    KeyingMaterialLength {
        suite: Suite,
        expected: usize,
        len: usize,
    },
    /// A master key identifier, or several master keys (they need one):
    /// packets would carry an MKI field this module does not write.
    #[error("MKI (several master keys) is not supported")]
    Mki,
    /// A lifetime that is not a number, zero, or beyond 2^48.
    #[error("unsupported key lifetime {0}")]
    Lifetime(String),
    /// A session parameter (RFC 4568 §6.3) changing how packets are
    /// protected: `UNENCRYPTED_SRTP`, `KDR`, `FEC_ORDER`...
    #[error("unsupported session parameter {0}")]
    SessionParameter(String),
}

/// The crypto suites (RFC 4568 §6.2, RFC 7714 §14.1), which are also
/// the DTLS-SRTP protection profiles `SRTP_AES128_CM_HMAC_SHA1_80`/`_32`
/// (RFC 5764 §4.1.2) and `SRTP_AEAD_AES_128_GCM`/`_256_GCM` (RFC 7714
/// §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    /// AES-128-GCM, 16-byte master key, 12-byte master salt.
    AeadAes128Gcm,
    /// AES-256-GCM, 32-byte master key, 12-byte master salt.
    AeadAes256Gcm,
}

impl Suite {
    /// Every suite, in order of preference: authenticated encryption and
    /// the longer key first, then the longer tag (the order a DTLS-SRTP
    /// server picks in).
    pub const ALL: [Suite; 4] = [
        Suite::AeadAes256Gcm,
        Suite::AeadAes128Gcm,
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
    ];

    /// The suites an `a=crypto` line may name here, by preference (a
    /// longer tag first).
    pub const SDES: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    /// Its name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Authenticated encryption (RFC 7714): one GCM tag, no HMAC.
    fn is_aead(self) -> bool {
        matches!(self, Suite::AeadAes128Gcm | Suite::AeadAes256Gcm)
    }

    /// Bytes of the SRTP authentication tag.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => gcm::TAG_LEN,
        }
    }

    /// Bytes of the SRTCP authentication tag.
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() {
            gcm::TAG_LEN
        } else {
            SRTCP_TAG_LEN
        }
    }

    /// Bytes of its master key.
    pub fn master_key_len(self) -> usize {
        match self {
            Suite::AeadAes256Gcm => MASTER_KEY_256_LEN,
            _ => MASTER_KEY_LEN,
        }
    }

    /// Bytes of its master salt.
    pub fn master_salt_len(self) -> usize {
        if self.is_aead() {
            GCM_MASTER_SALT_LEN
        } else {
            MASTER_SALT_LEN
        }
    }

    /// Bytes of DTLS-SRTP keying material to export for it (RFC 5764
    /// §4.2): a master key and salt for each side.
    pub fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key and salt, and how many packets it may protect. Its
/// `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// The key in the first `key_len` bytes, zeros after.
    key: [u8; MASTER_KEY_256_LEN],
    key_len: usize,
    /// The salt in the first `salt_len` bytes, zeros after.
    salt: [u8; MASTER_SALT_LEN],
    salt_len: usize,
    lifetime: Option<u64>,
}

impl MasterKey {
    /// A key of the AES-CM suites (what SDES carries).
    pub fn new(key: [u8; MASTER_KEY_LEN], salt: [u8; MASTER_SALT_LEN]) -> MasterKey {
        let mut master = MasterKey {
            key: [0; MASTER_KEY_256_LEN],
            key_len: MASTER_KEY_LEN,
            salt,
            salt_len: MASTER_SALT_LEN,
            lifetime: None,
        };
        master.key[..MASTER_KEY_LEN].copy_from_slice(&key);
        master
    }

    /// A key and salt of one of the lengths the suites take: 16 and 14
    /// bytes (AES-CM), 16 and 12 (`AEAD_AES_128_GCM`), 32 and 12
    /// (`AEAD_AES_256_GCM`).
    pub fn from_parts(key: &[u8], salt: &[u8]) -> Result<MasterKey, SrtpError> {
        let fits = Suite::ALL
            .iter()
            .any(|s| s.master_key_len() == key.len() && s.master_salt_len() == salt.len());
        if !fits {
            return Err(SrtpError::MasterKeyLength {
                key: key.len(),
                salt: salt.len(),
            });
        }
        let mut master = MasterKey {
            key: [0; MASTER_KEY_256_LEN],
            key_len: key.len(),
            salt: [0; MASTER_SALT_LEN],
            salt_len: salt.len(),
            lifetime: None,
        };
        master.key[..key.len()].copy_from_slice(key);
        master.salt[..salt.len()].copy_from_slice(salt);
        Ok(master)
    }

    /// A fresh key and salt for the AES-CM suites. `rand`'s thread
    /// generator is a CSPRNG (ChaCha12) seeded and reseeded from the OS.
    pub fn random() -> MasterKey {
        MasterKey::new(rand::random(), rand::random())
    }

    /// A fresh key and salt of the lengths `suite` takes.
    pub fn random_for(suite: Suite) -> MasterKey {
        let key: [u8; MASTER_KEY_256_LEN] = rand::random();
        let salt: [u8; MASTER_SALT_LEN] = rand::random();
        let mut master = MasterKey::new([0; MASTER_KEY_LEN], [0; MASTER_SALT_LEN]);
        master.key_len = suite.master_key_len();
        master.salt_len = suite.master_salt_len();
        master.key[..master.key_len].copy_from_slice(&key[..master.key_len]);
        master.salt[..master.salt_len].copy_from_slice(&salt[..master.salt_len]);
        master
    }

    /// Packets the key may protect (SDES lifetime), `None` for SRTP's own
    /// bound (2^48).
    pub fn lifetime(&self) -> Option<u64> {
        self.lifetime
    }

    /// The key: 16 bytes, or 32 for `AEAD_AES_256_GCM`.
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }

    /// The salt: 14 bytes, or 12 for the GCM suites.
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.salt_len]
    }

    /// Whether its key and salt are of the lengths `suite` takes.
    pub fn fits(&self, suite: Suite) -> bool {
        self.key_len == suite.master_key_len() && self.salt_len == suite.master_salt_len()
    }

    /// Reads SDES key parameters (RFC 4568 §6.1):
    /// `inline:<base64 of key||salt>[|lifetime][|MKI:length]`. The
    /// lifetime is decimal or `2^n`; an MKI or several keys (`;`) are
    /// refused.
    pub fn from_key_params(params: &str) -> Result<MasterKey, SrtpError> {
        if params.contains(';') {
            return Err(SrtpError::Mki);
        }
        let info = params
            .strip_prefix("inline:")
            .ok_or(SrtpError::Attribute("key method is not inline"))?;
        let mut parts = info.split('|');
        let encoded = parts.next().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SrtpError::KeyLength)?;
        if bytes.len() != MASTER_KEY_LEN + MASTER_SALT_LEN {
            return Err(SrtpError::KeyLength);
        }
        let mut master = MasterKey::from_parts(&bytes[..MASTER_KEY_LEN], &bytes[MASTER_KEY_LEN..])?;
        for (i, part) in parts.enumerate() {
            // The MKI has a colon (value:length); it may follow a lifetime.
            if part.contains(':') {
                return Err(SrtpError::Mki);
            }
            if i > 0 || master.lifetime.is_some() {
                return Err(SrtpError::Attribute("too many key-info fields"));
            }
            master.lifetime = Some(parse_lifetime(part)?);
        }
        Ok(master)
    }

    /// The key as SDES key parameters: `inline:<base64 of key||salt>` (no
    /// lifetime: SRTP's own bound applies).
    pub fn key_params(&self) -> String {
        let bytes = [self.key(), self.salt()].concat();
        format!(
            "inline:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }
}

/// The master keys of a DTLS-SRTP association, `(outgoing, incoming)`
/// (RFC 5764 §4.2): `material` is what the handshake exported with the
/// label `EXTRACTOR-dtls_srtp`, [`Suite::keying_material_len`] bytes laid
/// out `client_write_key | server_write_key | client_write_salt |
/// server_write_salt`. Each side protects with its own write key.
pub fn dtls_srtp_keys(
    suite: Suite,
    material: &[u8],
    we_are_client: bool,
) -> Result<(MasterKey, MasterKey), SrtpError> {
    if material.len() != suite.keying_material_len() {
        return Err(SrtpError::KeyingMaterialLength {
            suite,
            expected: suite.keying_material_len(),
            len: material.len(),
        });
    }
    let (key, salt) = (suite.master_key_len(), suite.master_salt_len());
    let (keys, salts) = material.split_at(2 * key);
    let client = MasterKey::from_parts(&keys[..key], &salts[..salt])?;
    let server = MasterKey::from_parts(&keys[key..], &salts[salt..])?;
    Ok(if we_are_client {
        (client, server)
    } else {
        (server, client)
    })
}

fn parse_lifetime(text: &str) -> Result<u64, SrtpError> {
    let bad = || SrtpError::Lifetime(text.to_owned());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let packets = match text.strip_prefix("2^") {
        Some(exp) if digits(exp) => {
            let exp: u32 = exp.parse().map_err(|_| bad())?;
            1u64.checked_shl(exp).filter(|_| exp < 64).ok_or_else(bad)?
        }
        None if digits(text) => text.parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if packets == 0 || packets > MAX_LIFETIME {
        return Err(bad());
    }
    Ok(packets)
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("key", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// One `a=crypto` attribute (RFC 4568 §9.1), as far as this module can
/// use it: `<tag> <suite> inline:<key>[|lifetime]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// Chosen by the offerer; the answer echoes it (§5.1.2).
    pub tag: u32,
    pub suite: Suite,
    pub key: MasterKey,
}

impl CryptoAttribute {
    /// Reads the attribute's value (what follows `a=crypto:`). Only the
    /// [`Suite::SDES`] suites are taken. Session parameters are refused
    /// but for `WSH` (a window-size hint: ours is what it is).
    pub fn parse(value: &str) -> Result<CryptoAttribute, SrtpError> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields
            .next()
            .filter(|t| (1..=9).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or(SrtpError::Attribute("bad tag"))?;
        let name = fields
            .next()
            .ok_or(SrtpError::Attribute("no crypto suite"))?;
        let suite = Suite::SDES
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| SrtpError::UnsupportedSuite(name.to_owned()))?;
        let key = MasterKey::from_key_params(
            fields
                .next()
                .ok_or(SrtpError::Attribute("no key parameters"))?,
        )?;
        if let Some(param) = fields.find(|p| !p.starts_with("WSH=")) {
            return Err(SrtpError::SessionParameter(param.to_owned()));
        }
        Ok(CryptoAttribute { tag, suite, key })
    }
}

impl std::fmt::Display for CryptoAttribute {
    /// The attribute's value, for `a=crypto:`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.tag, self.suite, self.key.key_params())
    }
}

/// SRTP for one stream of an endpoint: the suite, the key it sends
/// with (ours, given in our SDP) and the key it hears with (the peer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpConfig {
    pub suite: Suite,
    pub outgoing: MasterKey,
    pub incoming: MasterKey,
}

/// Session keys of RTP or of RTCP (§4.3.2), by the suite's transform.
// Both are key schedules of about the same size (AES-CM's has the HMAC
// key too), made once per context and used for every packet: a box
// would buy nothing but an indirection.
#[allow(clippy::large_enum_variant)]
enum SessionKeys {
    AesCm(CmKeys),
    Gcm(GcmKeys),
}

impl SessionKeys {
    /// `labels`: encryption, authentication, salt. The caller checked
    /// that the key fits the suite.
    fn derive(suite: Suite, master: &MasterKey, labels: [u8; 3]) -> SessionKeys {
        let [encryption, auth, salt_label] = labels;
        if suite.is_aead() {
            // RFC 7714 §11: the same KDF, a session key as long as the
            // master key, a 96-bit session salt, no authentication key.
            let mut key = [0u8; MASTER_KEY_256_LEN];
            let key = &mut key[..master.key_len];
            derive(master, encryption, key);
            let mut salt = [0u8; GCM_MASTER_SALT_LEN];
            derive(master, salt_label, &mut salt);
            return SessionKeys::Gcm(GcmKeys::new(key, salt));
        }
        let mut key = [0u8; MASTER_KEY_LEN];
        derive(master, encryption, &mut key);
        let mut salt = [0u8; MASTER_SALT_LEN];
        derive(master, salt_label, &mut salt);
        let mut auth_key = [0u8; AUTH_KEY_LEN];
        derive(master, auth, &mut auth_key);
        SessionKeys::AesCm(CmKeys {
            cipher: Aes128::new(&key.into()),
            salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth_key),
            rtp_tag_len: suite.rtp_tag_len(),
        })
    }

    /// Protects an RTP packet whose first `header` bytes stay in the
    /// clear, appending the tag.
    fn seal_rtp(
        &self,
        ssrc: u32,
        index: u64,
        header: usize,
        packet: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        match self {
            SessionKeys::AesCm(k) => {
                k.seal_rtp(ssrc, index, header, packet);
                Ok(())
            }
            SessionKeys::Gcm(k) => k.seal_rtp(ssrc, index, header, packet),
        }
    }

    /// Authenticates and decrypts an SRTP packet: the RTP packet is
    /// `packet[..n]` for the `n` returned.
    fn open_rtp(
        &self,
        ssrc: u32,
        index: u64,
        header: usize,
        packet: &mut [u8],
    ) -> Result<usize, SrtpError> {
        match self {
            SessionKeys::AesCm(k) => k.open_rtp(ssrc, index, header, packet),
            SessionKeys::Gcm(k) => k.open_rtp(ssrc, index, header, packet),
        }
    }

    /// Protects an RTCP packet at SRTCP index `index` (31 bits).
    fn seal_rtcp(&self, ssrc: u32, index: u32, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        match self {
            SessionKeys::AesCm(k) => {
                k.seal_rtcp(ssrc, index, packet);
                Ok(())
            }
            SessionKeys::Gcm(k) => k.seal_rtcp(ssrc, index, packet),
        }
    }

    /// Authenticates and, with the E flag, decrypts an SRTCP packet
    /// whose `E || index` word is `e_index`: the RTCP packet is
    /// `packet[..n]` for the `n` returned.
    fn open_rtcp(&self, ssrc: u32, e_index: u32, packet: &mut [u8]) -> Result<usize, SrtpError> {
        match self {
            SessionKeys::AesCm(k) => k.open_rtcp(ssrc, e_index, packet),
            SessionKeys::Gcm(k) => k.open_rtcp(ssrc, e_index, packet),
        }
    }
}

/// Session keys of the AES-CM suites: AES-128 in counter mode, then
/// HMAC-SHA1 over the encrypted packet.
struct CmKeys {
    cipher: Aes128,
    salt: [u8; MASTER_SALT_LEN],
    auth: hmac::Key,
    rtp_tag_len: usize,
}

impl CmKeys {
    /// XORs the AES-CM keystream of (`ssrc`, `index`) into `data` (§4.1.1).
    fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        // The index is 48 bits (SRTP) or 31 (SRTCP), at bits 16..64.
        for (b, i) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= i;
        }
        let core = AesCmCore::inner_iv_init(self.cipher.clone(), &iv.into());
        AesCm::from_core(core).apply_keystream(data);
    }

    /// HMAC-SHA1 over `data` then `trailer` (§4.2.1: SRTP's ROC; SRTCP
    /// has its index inside `data`).
    fn tag(&self, data: &[u8], trailer: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.auth);
        ctx.update(data);
        ctx.update(trailer);
        ctx.sign()
    }

    fn seal_rtp(&self, ssrc: u32, index: u64, header: usize, packet: &mut Vec<u8>) {
        self.apply_keystream(ssrc, index, &mut packet[header..]);
        let roc = (index >> 16) as u32;
        let tag = self.tag(packet, &roc.to_be_bytes());
        packet.extend_from_slice(&tag.as_ref()[..self.rtp_tag_len]);
    }

    /// The tag is checked before anything is decrypted.
    fn open_rtp(
        &self,
        ssrc: u32,
        index: u64,
        header: usize,
        packet: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let end = packet.len() - self.rtp_tag_len;
        let roc = (index >> 16) as u32;
        let tag = self.tag(&packet[..end], &roc.to_be_bytes());
        if !tags_equal(&tag.as_ref()[..self.rtp_tag_len], &packet[end..]) {
            return Err(SrtpError::Authentication);
        }
        self.apply_keystream(ssrc, index, &mut packet[header..end]);
        Ok(end)
    }

    /// Encrypts after the first 8 bytes, appends `E || index` and the tag.
    fn seal_rtcp(&self, ssrc: u32, index: u32, packet: &mut Vec<u8>) {
        self.apply_keystream(ssrc, u64::from(index), &mut packet[RTCP_HEADER_LEN..]);
        packet.extend_from_slice(&(SRTCP_E | index).to_be_bytes());
        let tag = self.tag(packet, &[]);
        packet.extend_from_slice(&tag.as_ref()[..SRTCP_TAG_LEN]);
    }

    fn open_rtcp(&self, ssrc: u32, e_index: u32, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let tagged = packet.len() - SRTCP_TAG_LEN;
        let end = tagged - 4;
        let tag = self.tag(&packet[..tagged], &[]);
        if !tags_equal(&tag.as_ref()[..SRTCP_TAG_LEN], &packet[tagged..]) {
            return Err(SrtpError::Authentication);
        }
        if e_index & SRTCP_E != 0 {
            let index = u64::from(e_index & !SRTCP_E);
            self.apply_keystream(ssrc, index, &mut packet[RTCP_HEADER_LEN..end]);
        }
        Ok(end)
    }
}

/// The key derivation function (§4.3.1, key derivation rate 0): the
/// AES-CM keystream under the master key at IV (salt ^ label<<48) << 16,
/// the salt taken as 112 bits. A 32-byte master key runs AES-256 (RFC
/// 6188's AES_256_CM_PRF, RFC 7714 §11); a 96-bit GCM master salt fills
/// the high bits of the 112, the low 16 zero, as libsrtp pads it.
fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..master.salt_len].copy_from_slice(master.salt());
    // key_id = label || r (48 bits, 0), right-aligned in the 112 bits.
    iv[7] ^= label;
    out.fill(0);
    let key = master.key();
    if key.len() == MASTER_KEY_256_LEN {
        ctr::Ctr128BE::<Aes256>::new(GenericArray::from_slice(key), &iv.into())
            .apply_keystream(out);
    } else {
        AesCm::new(GenericArray::from_slice(key), &iv.into()).apply_keystream(out);
    }
}

/// Constant-time: a forger learns nothing from how long a refusal takes.
fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a context knows of one source: the highest index it holds
/// (for SRTP the rollover counter and highest sequence number, `ROC <<
/// 16 | s_l`) and which of the [`REPLAY_WINDOW`] before it were seen.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    highest: u64,
    /// Bit `i`: index `highest - i` was received.
    seen: u64,
    /// For forgetting the least recently heard source.
    touched: u64,
}

impl Stream {
    fn new(ssrc: u32, highest: u64) -> Stream {
        Stream {
            ssrc,
            highest,
            seen: 0,
            touched: 0,
        }
    }

    /// The packet index of `seq` (§3.3.1): the one of ROC-1, ROC, ROC+1
    /// closest to the highest index. `None` before index 0 or past the
    /// 32-bit rollover counter.
    fn estimate(&self, seq: u16) -> Option<u64> {
        let roc = (self.highest >> 16) as i64;
        let s_l = i64::from(self.highest as u16);
        let seq = i64::from(seq);
        let v = if s_l < 32_768 {
            if seq - s_l > 32_768 { roc - 1 } else { roc }
        } else if s_l - 32_768 > seq {
            roc + 1
        } else {
            roc
        };
        u32::try_from(v)
            .ok()
            .map(|v| u64::from(v) << 16 | seq as u64)
    }

    fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        let behind = self.highest - index;
        if behind >= REPLAY_WINDOW {
            Err(SrtpError::TooOld)
        } else if self.seen & (1 << behind) != 0 {
            Err(SrtpError::Replayed)
        } else {
            Ok(())
        }
    }

    fn accept(&mut self, index: u64) {
        if index > self.highest {
            let ahead = index - self.highest;
            self.seen = if ahead >= REPLAY_WINDOW {
                0
            } else {
                self.seen << ahead
            };
            self.highest = index;
            self.seen |= 1;
        } else {
            self.seen |= 1 << (self.highest - index);
        }
    }
}

/// The sources a context follows, the least recently heard forgotten.
#[derive(Default)]
struct Streams {
    streams: Vec<Stream>,
    clock: u64,
}

impl Streams {
    fn get(&self, ssrc: u32) -> Option<Stream> {
        self.streams.iter().find(|s| s.ssrc == ssrc).copied()
    }

    fn put(&mut self, mut stream: Stream) {
        self.clock += 1;
        stream.touched = self.clock;
        if let Some(s) = self.streams.iter_mut().find(|s| s.ssrc == stream.ssrc) {
            *s = stream;
            return;
        }
        if self.streams.len() >= STREAMS_KEPT
            && let Some(oldest) = self
                .streams
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.touched)
                .map(|(i, _)| i)
        {
            self.streams.swap_remove(oldest);
        }
        self.streams.push(stream);
    }
}

/// SRTP and SRTCP of one direction under one master key.
pub struct SrtpContext {
    suite: Suite,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    rtp_streams: Streams,
    rtcp_streams: Streams,
    /// Packets the master key may still protect.
    remaining: u64,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("sources", &self.rtp_streams.streams.len())
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl SrtpContext {
    /// A context for a key known to fit the suite: an SDES key (always
    /// 16+14 bytes) with an AES-CM suite, or a key from
    /// [`MasterKey::random_for`] the suite.
    ///
    /// # Panics
    ///
    /// If the key does not fit the suite ([`MasterKey::fits`]); keys from
    /// elsewhere go through [`SrtpContext::try_new`].
    pub fn new(suite: Suite, master: &MasterKey) -> SrtpContext {
        match SrtpContext::try_new(suite, master) {
            Ok(context) => context,
            Err(e) => panic!("{e}"),
        }
    }

    /// A context, or [`SrtpError::KeyForAnotherSuite`] when the key's or
    /// the salt's length is not the suite's.
    pub fn try_new(suite: Suite, master: &MasterKey) -> Result<SrtpContext, SrtpError> {
        if !master.fits(suite) {
            return Err(SrtpError::KeyForAnotherSuite {
                suite,
                key: master.key_len,
                salt: master.salt_len,
            });
        }
        Ok(SrtpContext::with_keys(
            suite,
            SessionKeys::derive(
                suite,
                master,
                [LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT],
            ),
            SessionKeys::derive(
                suite,
                master,
                [LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT],
            ),
            master.lifetime,
        ))
    }

    fn with_keys(
        suite: Suite,
        rtp: SessionKeys,
        rtcp: SessionKeys,
        lifetime: Option<u64>,
    ) -> SrtpContext {
        SrtpContext {
            suite,
            rtp,
            rtcp,
            rtp_streams: Streams::default(),
            rtcp_streams: Streams::default(),
            remaining: lifetime.unwrap_or(MAX_LIFETIME).min(MAX_LIFETIME),
        }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    fn spend(&mut self) -> Result<(), SrtpError> {
        self.remaining = self
            .remaining
            .checked_sub(1)
            .ok_or(SrtpError::KeyExhausted)?;
        Ok(())
    }

    /// Encrypts an RTP packet's payload in place and appends the tag.
    /// Sequence numbers may skip (packets built but not sent) as long as
    /// they move on by less than 2^15 at a time. Under a GCM suite a
    /// sequence number already protected (or older than the window) is
    /// refused: its nonce would seal a second packet.
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let header = rtp_header_len(packet)?;
        let (ssrc, seq) = rtp_ids(packet);
        let mut stream = self
            .rtp_streams
            .get(ssrc)
            .unwrap_or_else(|| Stream::new(ssrc, u64::from(seq)));
        let index = stream.estimate(seq).ok_or(SrtpError::KeyExhausted)?;
        if self.suite.is_aead() {
            stream.check(index)?;
        }
        self.spend()?;
        stream.accept(index);
        self.rtp_streams.put(stream);
        self.rtp.seal_rtp(ssrc, index, header, packet)
    }

    /// Checks an SRTP packet (replay, then tag) and decrypts it in place:
    /// the RTP packet is `packet[..n]` for the `n` returned. Nothing is
    /// learnt from a packet refused.
    pub fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtp_tag_len();
        if packet.len() < rtp::HEADER_LEN + tag_len {
            return Err(SrtpError::TooShort);
        }
        let end = packet.len() - tag_len;
        let header = rtp_header_len(&packet[..end])?;
        let (ssrc, seq) = rtp_ids(packet);
        let mut stream = self
            .rtp_streams
            .get(ssrc)
            .unwrap_or_else(|| Stream::new(ssrc, u64::from(seq)));
        let index = stream.estimate(seq).ok_or(SrtpError::TooOld)?;
        stream.check(index)?;
        let end = self.rtp.open_rtp(ssrc, index, header, packet)?;
        self.spend()?;
        stream.accept(index);
        self.rtp_streams.put(stream);
        Ok(end)
    }

    /// Encrypts a (compound) RTCP packet in place after its first 8
    /// bytes, and appends the E flag, the SRTCP index and the tag (under
    /// a GCM suite: the tag, then the E flag and index).
    pub fn protect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        if packet.len() < RTCP_HEADER_LEN || packet[0] >> 6 != rtp::VERSION {
            return Err(SrtpError::Malformed);
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        // §3.4: the index starts at zero and counts every packet sent.
        let index = match self.rtcp_streams.get(ssrc) {
            Some(s) => s.highest + 1,
            None => 0,
        };
        self.protect_rtcp_at(packet, index)
    }

    fn protect_rtcp_at(&mut self, packet: &mut Vec<u8>, index: u64) -> Result<(), SrtpError> {
        if index > SRTCP_INDEX_MAX {
            return Err(SrtpError::KeyExhausted);
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        self.spend()?;
        self.rtcp_streams.put(Stream::new(ssrc, index));
        self.rtcp.seal_rtcp(ssrc, index as u32, packet)
    }

    /// Checks an SRTCP packet and decrypts it in place: the RTCP packet
    /// is `packet[..n]` for the `n` returned.
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtcp_tag_len();
        if packet.len() < RTCP_HEADER_LEN + 4 + tag_len {
            return Err(SrtpError::TooShort);
        }
        if packet[0] >> 6 != rtp::VERSION {
            return Err(SrtpError::Malformed);
        }
        // E || index: before the tag (§3.4), or last (RFC 7714 §9.2).
        let at = if self.suite.is_aead() {
            packet.len() - 4
        } else {
            packet.len() - tag_len - 4
        };
        let e_index =
            u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]]);
        let index = u64::from(e_index & !SRTCP_E);
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let mut stream = self
            .rtcp_streams
            .get(ssrc)
            .unwrap_or_else(|| Stream::new(ssrc, index));
        stream.check(index)?;
        let end = self.rtcp.open_rtcp(ssrc, e_index, packet)?;
        self.spend()?;
        stream.accept(index);
        self.rtcp_streams.put(stream);
        Ok(end)
    }
}

/// The bytes of the RTP header left in the clear: fixed part, CSRCs and
/// header extension.
fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    if packet.len() < rtp::HEADER_LEN {
        return Err(SrtpError::TooShort);
    }
    if packet[0] >> 6 != rtp::VERSION {
        return Err(SrtpError::Malformed);
    }
    let mut len = rtp::HEADER_LEN + 4 * usize::from(packet[0] & 0x0F);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4).ok_or(SrtpError::Malformed)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if len > packet.len() {
        return Err(SrtpError::Malformed);
    }
    Ok(len)
}

fn rtp_ids(packet: &[u8]) -> (u32, u16) {
    (
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        u16::from_be_bytes([packet[2], packet[3]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn array<const N: usize>(s: &str) -> [u8; N] {
        hex(s).try_into().unwrap()
    }

    /// The master key of RFC 3711 B.3 and libsrtp's reference packets.
    fn rfc_key() -> MasterKey {
        MasterKey::new(
            array("E1F97A0D3E018BE0D64FA32C06DE4139"),
            array("0EC675AD498AFEEBB6960B3AABE6"),
        )
    }

    fn rtp_packet(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        rtp::Header {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
        }
        .build(payload, &mut out)
        .unwrap();
        out
    }

    fn pair(suite: Suite) -> (SrtpContext, SrtpContext) {
        let key = MasterKey::random();
        (SrtpContext::new(suite, &key), SrtpContext::new(suite, &key))
    }

    fn unprotect(rx: &mut SrtpContext, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut buf = packet.to_vec();
        let n = rx.unprotect_rtp(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    #[test]
    fn rfc_3711_b2_aes_cm_keystream() {
        let keys = CmKeys {
            cipher: Aes128::new(&array::<16>("2B7E151628AED2A6ABF7158809CF4F3C").into()),
            salt: array("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"),
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[0; 20]),
            rtp_tag_len: 10,
        };
        // SSRC and index zero: the IV is the salt shifted, and the
        // keystream of a segment of 65282 blocks is the RFC's table.
        let mut keystream = vec![0u8; 65_282 * 16];
        keys.apply_keystream(0, 0, &mut keystream);
        assert_eq!(
            keystream[..48],
            hex("E03EAD0935C95E80E166B16DD92B4EB4
                 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
        assert_eq!(
            keystream[0xFEFF * 16..],
            hex("EC8CDF7398607CB0F2D21675EA9EA1E4
                 362B7C3C6773516318A077D7FC5073AE
                 6A2CC3787889374FBEB4C81B17BA6C44")
        );
    }

    #[test]
    fn rfc_3711_b3_key_derivation() {
        let master = rfc_key();
        let mut key = [0u8; 16];
        derive(&master, LABEL_RTP_ENCRYPTION, &mut key);
        assert_eq!(key[..], hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        derive(&master, LABEL_RTP_SALT, &mut salt);
        assert_eq!(salt[..], hex("30CBBC08863D8C85D49DB34A9AE1"));
        // The RFC lists 94 bytes of the authentication key's keystream;
        // HMAC-SHA1 uses the first 20.
        let mut auth = [0u8; 94];
        derive(&master, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(
            auth[..],
            hex(
                "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    #[test]
    fn libsrtp_reference_packets_are_reproduced_and_read_back() {
        // libsrtp's srtp_validate: the B.3 master key, SSRC 0xcafebabe.
        let plain = hex("800f1234decafbadcafebabe abababababababababababababababab");
        let protected =
            hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
        let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &rfc_key());
        let mut packet = plain.clone();
        tx.protect_rtp(&mut packet).unwrap();
        assert_eq!(packet, protected);
        let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &rfc_key());
        assert_eq!(unprotect(&mut rx, &protected).unwrap(), plain);

        // SRTCP: libsrtp's first index is 1, the E flag set.
        let plain = hex("81c8000bcafebabe abababababababababababababababab");
        let protected =
            hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");
        let mut packet = plain.clone();
        tx.protect_rtcp_at(&mut packet, 1).unwrap();
        assert_eq!(packet, protected);
        let mut buf = protected.clone();
        let n = rx.unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(buf[..n], plain[..]);
    }

    #[test]
    fn both_suites_round_trip_with_their_tag_lengths() {
        for (suite, tag) in [
            (Suite::AesCm128HmacSha1_80, 10),
            (Suite::AesCm128HmacSha1_32, 4),
        ] {
            let (mut tx, mut rx) = pair(suite);
            for seq in 1000..1010u16 {
                let plain = rtp_packet(seq, 0x1234_5678, &[0x55; 160]);
                let mut packet = plain.clone();
                tx.protect_rtp(&mut packet).unwrap();
                assert_eq!(packet.len(), plain.len() + tag, "{suite}");
                assert_eq!(packet[..12], plain[..12], "the header is in the clear");
                assert_ne!(packet[12..172], plain[12..], "the payload is not");
                assert_eq!(unprotect(&mut rx, &packet).unwrap(), plain, "{suite}");
            }
            let rtcp = hex("80c80006 12345678 0102030405060708090a0b0c0d0e0f101112131415161718");
            let mut packet = rtcp.clone();
            tx.protect_rtcp(&mut packet).unwrap();
            assert_eq!(packet.len(), rtcp.len() + 4 + 10, "SRTCP's tag is 80 bits");
            assert_eq!(packet[rtcp.len()..rtcp.len() + 4], [0x80, 0, 0, 0]);
            let mut buf = packet.clone();
            let n = rx.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(buf[..n], rtcp[..]);
            assert_eq!(
                rx.unprotect_rtcp(&mut packet.clone()),
                Err(SrtpError::Replayed)
            );
        }
    }

    #[test]
    fn tampered_packets_fail_authentication_and_change_nothing() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let mut packet = rtp_packet(7, 42, &[1; 160]);
        tx.protect_rtp(&mut packet).unwrap();
        for at in [1, 3, 11, 40, packet.len() - 1] {
            let mut bad = packet.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                unprotect(&mut rx, &bad),
                Err(SrtpError::Authentication),
                "byte {at}"
            );
        }
        // Another key, a cut-off tag, garbage.
        let (_, mut stranger) = pair(Suite::AesCm128HmacSha1_80);
        assert_eq!(
            unprotect(&mut stranger, &packet),
            Err(SrtpError::Authentication)
        );
        assert_eq!(
            unprotect(&mut rx, &packet[..packet.len() - 1]),
            Err(SrtpError::Authentication)
        );
        assert_eq!(unprotect(&mut rx, &packet[..15]), Err(SrtpError::TooShort));
        assert_eq!(unprotect(&mut rx, &[0x40; 40]), Err(SrtpError::Malformed));
        // The refusals left no trace: the genuine packet is still new.
        assert_eq!(
            unprotect(&mut rx, &packet).unwrap(),
            rtp_packet(7, 42, &[1; 160])
        );
        let mut rtcp = hex("80c80006 0000002a 0102030405060708");
        tx.protect_rtcp(&mut rtcp).unwrap();
        let mut bad = rtcp.clone();
        bad[9] ^= 0x80;
        assert_eq!(rx.unprotect_rtcp(&mut bad), Err(SrtpError::Authentication));
        assert!(rx.unprotect_rtcp(&mut rtcp).is_ok());
    }

    #[test]
    fn replays_and_packets_older_than_the_window_are_refused() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_32);
        let sent: Vec<Vec<u8>> = (0..200u16)
            .map(|seq| {
                let mut p = rtp_packet(seq + 10, 9, &[seq as u8; 20]);
                tx.protect_rtp(&mut p).unwrap();
                p
            })
            .collect();
        assert!(unprotect(&mut rx, &sent[0]).is_ok());
        assert_eq!(unprotect(&mut rx, &sent[0]), Err(SrtpError::Replayed));
        // Out of order inside the window is fine, once.
        assert!(unprotect(&mut rx, &sent[5]).is_ok());
        assert!(unprotect(&mut rx, &sent[3]).is_ok());
        assert_eq!(unprotect(&mut rx, &sent[3]), Err(SrtpError::Replayed));
        assert!(unprotect(&mut rx, &sent[150]).is_ok());
        // 150 - 87 = 63 behind: the window's last slot; 64 is out.
        assert!(unprotect(&mut rx, &sent[87]).is_ok());
        assert_eq!(unprotect(&mut rx, &sent[86]), Err(SrtpError::TooOld));
        assert_eq!(unprotect(&mut rx, &sent[5]), Err(SrtpError::TooOld));
        assert!(unprotect(&mut rx, &sent[199]).is_ok());
        assert_eq!(unprotect(&mut rx, &sent[150]), Err(SrtpError::Replayed));
    }

    #[test]
    fn the_rollover_counter_moves_on_when_the_sequence_wraps() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let seqs: Vec<u16> = (65_530..=65_535).chain(0..6).collect();
        let sent: Vec<(u16, Vec<u8>)> = seqs
            .iter()
            .map(|&seq| {
                let mut p = rtp_packet(seq, 0xABCD, &[seq as u8; 160]);
                tx.protect_rtp(&mut p).unwrap();
                (seq, p)
            })
            .collect();
        // In order, but 65535 arrives after 0 (ROC - 1 estimated for it).
        let order = [0, 1, 2, 3, 4, 6, 5, 7, 8, 9, 10, 11];
        for i in order {
            let (seq, packet) = &sent[i];
            assert_eq!(
                unprotect(&mut rx, packet).unwrap(),
                rtp_packet(*seq, 0xABCD, &[*seq as u8; 160]),
                "seq {seq}"
            );
        }
        assert_eq!(rx.rtp_streams.get(0xABCD).unwrap().highest, 1 << 16 | 5);
        // After the wrap the tag covers ROC 1: a receiver that starts
        // there, taking ROC 0, cannot authenticate the packet.
        let (mut fresh_tx, mut fresh_rx) = pair(Suite::AesCm128HmacSha1_80);
        let mut after = Vec::new();
        for &seq in &seqs {
            after = rtp_packet(seq, 1, &[0; 20]);
            fresh_tx.protect_rtp(&mut after).unwrap();
        }
        assert_eq!(
            unprotect(&mut fresh_rx, &after),
            Err(SrtpError::Authentication)
        );
        // And the sender's own ROC: a sequence built but never sent
        // (the endpoint on hold) still counts.
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let mut first = rtp_packet(60_000, 5, &[1; 10]);
        tx.protect_rtp(&mut first).unwrap();
        unprotect(&mut rx, &first).unwrap();
        for seq in (60_001..=65_535)
            .step_by(1000)
            .chain([65_535, 0, 1000, 2000])
        {
            let mut p = rtp_packet(seq, 5, &[1; 10]);
            tx.protect_rtp(&mut p).unwrap();
            unprotect(&mut rx, &p).unwrap();
        }
        assert_eq!(rx.rtp_streams.get(5).unwrap().highest, 1 << 16 | 2000);
    }

    #[test]
    fn sources_are_followed_apart_and_the_oldest_forgotten() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        for ssrc in 0..(STREAMS_KEPT as u32 + 2) {
            let mut p = rtp_packet(100, ssrc, &[0; 10]);
            tx.protect_rtp(&mut p).unwrap();
            assert!(
                unprotect(&mut rx, &p).is_ok(),
                "the same seq, another source"
            );
        }
        assert_eq!(rx.rtp_streams.streams.len(), STREAMS_KEPT);
        assert!(rx.rtp_streams.get(0).is_none() && rx.rtp_streams.get(1).is_none());
    }

    #[test]
    fn a_key_protects_no_more_than_its_lifetime() {
        let key = MasterKey::from_key_params(&format!("{}|3", rfc_key().key_params())).unwrap();
        assert_eq!(key.lifetime(), Some(3));
        let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
        for seq in 0..3 {
            tx.protect_rtp(&mut rtp_packet(seq, 1, &[0; 10])).unwrap();
        }
        assert_eq!(
            tx.protect_rtp(&mut rtp_packet(3, 1, &[0; 10])),
            Err(SrtpError::KeyExhausted)
        );
    }

    #[test]
    fn sdes_crypto_attributes_are_read_and_written() {
        // RFC 4568 §4's example key.
        let line =
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
        assert_eq!(CryptoAttribute::parse(line), Err(SrtpError::Mki));
        let line = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20";
        let a = CryptoAttribute::parse(line).unwrap();
        assert_eq!((a.tag, a.suite), (1, Suite::AesCm128HmacSha1_80));
        assert_eq!(a.key.lifetime(), Some(1 << 20));
        assert_eq!(&a.key.key()[..3], b"=-n");
        let plain = CryptoAttribute::parse(
            "27 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR WSH=128",
        )
        .unwrap();
        assert_eq!((plain.tag, plain.suite), (27, Suite::AesCm128HmacSha1_32));
        assert_eq!(plain.key.lifetime(), None);
        assert_eq!(
            plain.to_string(),
            "27 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
        );
        let fresh = MasterKey::random();
        assert_eq!(
            MasterKey::from_key_params(&fresh.key_params()).unwrap(),
            fresh
        );
        assert_ne!(fresh, MasterKey::random());
        assert!(!format!("{fresh:?}").contains(&fresh.key_params()[7..20]));

        let key = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        for (value, error) in [
            (
                format!("1 AES_256_CM_HMAC_SHA1_80 {key}"),
                SrtpError::UnsupportedSuite("AES_256_CM_HMAC_SHA1_80".into()),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {key}|2^20;{key}|2^20"),
                SrtpError::Mki,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {key}|2^49"),
                SrtpError::Lifetime("2^49".into()),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {key}|0"),
                SrtpError::Lifetime("0".into()),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {key}|forever"),
                SrtpError::Lifetime("forever".into()),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {key} UNENCRYPTED_SRTP"),
                SrtpError::SessionParameter("UNENCRYPTED_SRTP".into()),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {key} KDR=1"),
                SrtpError::SessionParameter("KDR=1".into()),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywj".into(),
                SrtpError::KeyLength,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!".into(),
                SrtpError::KeyLength,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/key".into(),
                SrtpError::Attribute("key method is not inline"),
            ),
            (
                format!("x AES_CM_128_HMAC_SHA1_80 {key}"),
                SrtpError::Attribute("bad tag"),
            ),
            ("1".into(), SrtpError::Attribute("no crypto suite")),
            (
                "1 AES_CM_128_HMAC_SHA1_80".into(),
                SrtpError::Attribute("no key parameters"),
            ),
        ] {
            assert_eq!(CryptoAttribute::parse(&value), Err(error), "{value}");
        }
    }

    /// RFC 7714 §16 and §17: the session key (not a master key) 00 01 ..,
    /// the session salt "Quid pro quo".
    fn rfc_7714_context(suite: Suite) -> SrtpContext {
        let key = hex("000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f");
        let key = &key[..suite.master_key_len()];
        let keys = || SessionKeys::Gcm(GcmKeys::new(key, array("517569642070726f2071756f")));
        SrtpContext::with_keys(suite, keys(), keys(), None)
    }

    /// A master key of any lengths, for vectors `from_parts` refuses.
    fn any_master(key: &str, salt: &str) -> MasterKey {
        let (key, salt) = (hex(key), hex(salt));
        let mut master = MasterKey::from_parts(&[0; 16], &[0; 14]).unwrap();
        master.key[..key.len()].copy_from_slice(&key);
        master.key_len = key.len();
        master.salt[..salt.len()].copy_from_slice(&salt);
        master.salt_len = salt.len();
        master
    }

    /// "Gallia est omnis divisa in partes tres", SSRC 0x5501a0b2, SEQ 0xf17b.
    const RFC_7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                                20646976 69736120 696e2070 61727465 73207472 6573";
    /// SSRC "Mars", the packet §17.1 to §17.4 protect (§17's preamble
    /// prints another; its subsections agree with each other on this one).
    const RFC_7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                                 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";

    #[test]
    fn rfc_7714_16_srtp_vectors_both_ways() {
        for (suite, protected) in [
            // §16.1.1 / §16.1.2.
            (
                Suite::AeadAes128Gcm,
                "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
                 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
            ),
            // §16.2.1 / §16.2.2.
            (
                Suite::AeadAes256Gcm,
                "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
                 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
            ),
        ] {
            let (plain, protected) = (hex(RFC_7714_RTP), hex(protected));
            let mut packet = plain.clone();
            rfc_7714_context(suite).protect_rtp(&mut packet).unwrap();
            assert_eq!(packet, protected, "{suite}");
            let mut rx = rfc_7714_context(suite);
            assert_eq!(unprotect(&mut rx, &protected).unwrap(), plain, "{suite}");
            // The same packet under the other key size is a forgery.
            let other = if suite == Suite::AeadAes128Gcm {
                Suite::AeadAes256Gcm
            } else {
                Suite::AeadAes128Gcm
            };
            assert_eq!(
                unprotect(&mut rfc_7714_context(other), &protected),
                Err(SrtpError::Authentication)
            );
        }
    }

    #[test]
    fn rfc_7714_17_srtcp_vectors_both_ways() {
        for (suite, protected) in [
            // §17.1.
            (
                Suite::AeadAes128Gcm,
                "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
                 c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
                 45d9eade 800005d4",
            ),
            // §17.2.
            (
                Suite::AeadAes256Gcm,
                "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50
                 a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c
                 b26ac3be 800005d4",
            ),
        ] {
            let (plain, protected) = (hex(RFC_7714_RTCP), hex(protected));
            let mut packet = plain.clone();
            rfc_7714_context(suite)
                .protect_rtcp_at(&mut packet, 0x5d4)
                .unwrap();
            assert_eq!(packet, protected, "{suite}");
            let mut rx = rfc_7714_context(suite);
            let mut buf = protected.clone();
            let n = rx.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(buf[..n], plain[..], "{suite}");
            assert_eq!(
                rx.unprotect_rtcp(&mut protected.clone()),
                Err(SrtpError::Replayed)
            );
        }
        // §17.3: tagged, not encrypted (E clear): the whole packet and
        // the index word are the authenticated data.
        let tagged = hex(&format!(
            "{RFC_7714_RTCP} 841dd968 3dd78ec9 2ae58790 125f62b3 000005d4"
        ));
        let mut rx = rfc_7714_context(Suite::AeadAes128Gcm);
        let mut bad = tagged.clone();
        bad[20] ^= 1;
        assert_eq!(rx.unprotect_rtcp(&mut bad), Err(SrtpError::Authentication));
        // A refusal puts the moved index word back.
        bad[20] ^= 1;
        assert_eq!(bad, tagged);
        let mut buf = tagged.clone();
        let n = rx.unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(buf[..n], hex(RFC_7714_RTCP)[..]);
    }

    #[test]
    fn rfc_6188_aes_256_key_derivation() {
        // §7.2, AES_256_CM_PRF (with a 14-byte salt, which no suite here
        // takes; the PRF is the one AEAD_AES_256_GCM uses).
        let master = any_master(
            "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6",
            "3b04803de51ee7c96423ab5b78d2",
        );
        let mut key = [0u8; 32];
        derive(&master, LABEL_RTP_ENCRYPTION, &mut key);
        assert_eq!(
            key[..],
            hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")
        );
        let mut salt = [0u8; 14];
        derive(&master, LABEL_RTP_SALT, &mut salt);
        assert_eq!(salt[..], hex("fa31791685ca444a9e07c6c64e93"));
        let mut auth = [0u8; 20];
        derive(&master, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(auth[..], hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05"));
    }

    #[test]
    fn a_96_bit_master_salt_is_padded_with_zeros_in_the_kdf() {
        // libsrtp's GCM test key; computed with `openssl enc -aes-*-ctr`
        // at IV salt || 00 00 (label at byte 7) || 00 00.
        let salt = "a0a1a2a3a4a5a6a7a8a9aaab";
        let master = any_master("000102030405060708090a0b0c0d0e0f", salt);
        let mut key = [0u8; 16];
        derive(&master, LABEL_RTCP_ENCRYPTION, &mut key);
        assert_eq!(key[..], hex("615dcd9042600666f6fd4d9e4fe4519f"));
        let mut salt12 = [0u8; 12];
        derive(&master, LABEL_RTCP_SALT, &mut salt12);
        assert_eq!(salt12[..], hex("fcca937b9112a500dac72269"));
        let master = any_master(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            salt,
        );
        let mut key = [0u8; 32];
        derive(&master, LABEL_RTP_ENCRYPTION, &mut key);
        assert_eq!(
            key[..],
            hex("b7a435ce454463b760dc82c838468a115c699625af4b93a0f8220a2a6119c5d0")
        );
        derive(&master, LABEL_RTP_SALT, &mut salt12);
        assert_eq!(salt12[..], hex("944bd21c268a962cd09c674a"));
    }

    #[test]
    fn gcm_packets_from_master_keys_match_libsrtp_and_an_independent_model() {
        // libsrtp's srtp_validate_gcm (AEAD_AES_128_GCM): master key
        // 00 01 .. 0f, salt a0 .. ab, SSRC 0xcafebabe; SRTCP index 1.
        // AEAD_AES_256_GCM: the same packets under key 00 .. 1f, from a
        // Python model (AES-CTR KDF, AESGCM of `cryptography`) that
        // reproduces the libsrtp and RFC 7714 vectors.
        let salt = hex("a0a1a2a3a4a5a6a7a8a9aaab");
        let key = hex("000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f");
        for (suite, srtp, srtcp) in [
            (
                Suite::AeadAes128Gcm,
                "c5002ede04cfdd2eb91159e0880aa06e d2976826f796b201df3131a127e8a392",
                "c98b8b5df0392a55852b6c21ac8e7025 c52c6fbea2b3b446ea31123ba88ce61e",
            ),
            (
                Suite::AeadAes256Gcm,
                "0af7f21e8a90bdad7a425c9c31ed4bb1 d90238917e7390a2793500e1681acaea",
                "8abfafa780070a90e80f9161cf4aac08 1ed93aaa53c15b0f3ed1a3b984167b03",
            ),
        ] {
            let master = MasterKey::from_parts(&key[..suite.master_key_len()], &salt).unwrap();
            let mut tx = SrtpContext::try_new(suite, &master).unwrap();
            let mut rx = SrtpContext::try_new(suite, &master).unwrap();
            let plain = hex("800f1234decafbadcafebabe abababababababababababababababab");
            let protected = hex(&format!("800f1234decafbadcafebabe {srtp}"));
            let mut packet = plain.clone();
            tx.protect_rtp(&mut packet).unwrap();
            assert_eq!(packet, protected, "{suite}");
            assert_eq!(unprotect(&mut rx, &protected).unwrap(), plain, "{suite}");

            let plain = hex("81c8000bcafebabe abababababababababababababababab");
            let protected = hex(&format!("81c8000bcafebabe {srtcp} 80000001"));
            let mut packet = plain.clone();
            tx.protect_rtcp_at(&mut packet, 1).unwrap();
            assert_eq!(packet, protected, "{suite}");
            let mut buf = protected.clone();
            let n = rx.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(buf[..n], plain[..], "{suite}");
        }
    }

    #[test]
    fn gcm_suites_round_trip_across_the_rollover_with_16_byte_tags() {
        for suite in [Suite::AeadAes128Gcm, Suite::AeadAes256Gcm] {
            let key = MasterKey::random_for(suite);
            let mut tx = SrtpContext::try_new(suite, &key).unwrap();
            let mut rx = SrtpContext::try_new(suite, &key).unwrap();
            let seqs: Vec<u16> = (65_530..=65_535).chain(0..6).collect();
            let sent: Vec<(u16, Vec<u8>)> = seqs
                .iter()
                .map(|&seq| {
                    let mut p = rtp_packet(seq, 0xABCD, &[seq as u8; 160]);
                    tx.protect_rtp(&mut p).unwrap();
                    assert_eq!(p.len(), 12 + 160 + 16);
                    (seq, p)
                })
                .collect();
            // 65535 arrives after 0: ROC - 1 is estimated for it.
            for i in [0, 1, 2, 3, 4, 6, 5, 7, 8, 9, 10, 11] {
                let (seq, packet) = &sent[i];
                assert_eq!(
                    unprotect(&mut rx, packet).unwrap(),
                    rtp_packet(*seq, 0xABCD, &[*seq as u8; 160]),
                    "{suite} seq {seq}"
                );
            }
            assert_eq!(rx.rtp_streams.get(0xABCD).unwrap().highest, 1 << 16 | 5);
            // The ROC is in the nonce: a receiver that starts after the
            // wrap, taking ROC 0, cannot open the packet.
            let mut late = SrtpContext::try_new(suite, &key).unwrap();
            assert_eq!(
                unprotect(&mut late, &sent[11].1),
                Err(SrtpError::Authentication)
            );
            // A header with CSRCs and an extension is authenticated data.
            let mut plain = vec![0x91, 0x00, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 9];
            plain.extend_from_slice(&[0xAA; 4]); // CSRC
            plain.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0xFF, 0, 0]);
            plain.extend_from_slice(b"payload");
            let mut packet = plain.clone();
            tx.protect_rtp(&mut packet).unwrap();
            assert_eq!(packet[..24], plain[..24], "the header is in the clear");
            let mut bad = packet.clone();
            bad[21] ^= 1;
            assert_eq!(unprotect(&mut rx, &bad), Err(SrtpError::Authentication));
            assert_eq!(unprotect(&mut rx, &packet).unwrap(), plain);

            let rtcp = hex("80c80006 00000009 0102030405060708090a0b0c0d0e0f101112131415161718");
            for index in 0..3u32 {
                let mut packet = rtcp.clone();
                tx.protect_rtcp(&mut packet).unwrap();
                assert_eq!(packet.len(), rtcp.len() + 16 + 4, "tag, then E || index");
                assert_eq!(
                    packet[packet.len() - 4..],
                    (0x8000_0000 | index).to_be_bytes()
                );
                let n = rx.unprotect_rtcp(&mut packet).unwrap();
                assert_eq!(packet[..n], rtcp[..]);
            }
        }
    }

    #[test]
    fn gcm_tampered_packets_are_refused_and_change_nothing() {
        let suite = Suite::AeadAes256Gcm;
        let key = MasterKey::random_for(suite);
        let mut tx = SrtpContext::new(suite, &key);
        let mut rx = SrtpContext::new(suite, &key);
        let mut packet = rtp_packet(7, 42, &[1; 160]);
        tx.protect_rtp(&mut packet).unwrap();
        for at in [1, 3, 11, 40, packet.len() - 16, packet.len() - 1] {
            let mut bad = packet.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                unprotect(&mut rx, &bad),
                Err(SrtpError::Authentication),
                "byte {at}"
            );
            // Nothing was decrypted in place.
            bad[at] ^= 0x01;
            assert_eq!(bad, packet);
        }
        let mut stranger = SrtpContext::new(suite, &MasterKey::random_for(suite));
        assert_eq!(
            unprotect(&mut stranger, &packet),
            Err(SrtpError::Authentication)
        );
        assert_eq!(
            unprotect(&mut rx, &packet[..packet.len() - 1]),
            Err(SrtpError::Authentication)
        );
        assert_eq!(unprotect(&mut rx, &packet[..27]), Err(SrtpError::TooShort));
        assert_eq!(
            unprotect(&mut rx, &packet).unwrap(),
            rtp_packet(7, 42, &[1; 160])
        );

        let mut rtcp = hex("80c80006 0000002a 0102030405060708");
        tx.protect_rtcp(&mut rtcp).unwrap();
        // Header, ciphertext, tag, E flag, index.
        for (at, bit) in [
            (1, 1),
            (9, 0x80),
            (17, 1),
            (rtcp.len() - 4, 0x80),
            (rtcp.len() - 1, 1),
        ] {
            let mut bad = rtcp.clone();
            bad[at] ^= bit;
            assert_eq!(
                rx.unprotect_rtcp(&mut bad),
                Err(SrtpError::Authentication),
                "byte {at}"
            );
        }
        assert_eq!(
            rx.unprotect_rtcp(&mut rtcp[..19].to_vec()),
            Err(SrtpError::TooShort)
        );
        assert!(rx.unprotect_rtcp(&mut rtcp).is_ok());
    }

    #[test]
    fn gcm_replays_are_refused_and_no_sequence_is_sealed_twice() {
        let suite = Suite::AeadAes128Gcm;
        let key = MasterKey::random_for(suite);
        let (mut tx, mut rx) = (SrtpContext::new(suite, &key), SrtpContext::new(suite, &key));
        let sent: Vec<Vec<u8>> = (0..100u16)
            .map(|seq| {
                let mut p = rtp_packet(seq + 10, 9, &[seq as u8; 20]);
                tx.protect_rtp(&mut p).unwrap();
                p
            })
            .collect();
        assert!(unprotect(&mut rx, &sent[0]).is_ok());
        assert_eq!(unprotect(&mut rx, &sent[0]), Err(SrtpError::Replayed));
        assert!(unprotect(&mut rx, &sent[99]).is_ok());
        assert!(unprotect(&mut rx, &sent[36]).is_ok());
        assert_eq!(unprotect(&mut rx, &sent[35]), Err(SrtpError::TooOld));
        assert_eq!(unprotect(&mut rx, &sent[99]), Err(SrtpError::Replayed));
        // The sender: a sequence number protected again would reuse its
        // nonce (and give away GCM's authentication key).
        let again = rtp_packet(109, 9, &[0xEE; 20]);
        assert_eq!(tx.protect_rtp(&mut again.clone()), Err(SrtpError::Replayed));
        assert_eq!(
            tx.protect_rtp(&mut rtp_packet(10, 9, &[0; 20])),
            Err(SrtpError::TooOld)
        );
        // Moving on is fine; so is a gap filled later.
        assert!(tx.protect_rtp(&mut rtp_packet(112, 9, &[0; 20])).is_ok());
        assert!(tx.protect_rtp(&mut rtp_packet(111, 9, &[0; 20])).is_ok());
        // AES-CM keeps re-protecting, as before.
        let (mut cm, _) = pair(Suite::AesCm128HmacSha1_80);
        for _ in 0..2 {
            assert!(cm.protect_rtp(&mut rtp_packet(5, 9, &[0; 20])).is_ok());
        }
    }

    #[test]
    fn keys_must_fit_their_suite() {
        for (key, salt) in [(16, 14), (16, 12), (32, 12)] {
            let master = MasterKey::from_parts(&vec![7; key], &vec![9; salt]).unwrap();
            assert_eq!(
                (master.key(), master.salt()),
                (&vec![7; key][..], &vec![9; salt][..])
            );
            for suite in Suite::ALL {
                let fits = suite.master_key_len() == key && suite.master_salt_len() == salt;
                assert_eq!(master.fits(suite), fits, "{suite} {key}/{salt}");
                match SrtpContext::try_new(suite, &master) {
                    Ok(c) => assert!(fits && c.suite() == suite),
                    Err(e) => assert_eq!(
                        (fits, e),
                        (false, SrtpError::KeyForAnotherSuite { suite, key, salt })
                    ),
                }
            }
        }
        for (key, salt) in [(32, 14), (16, 16), (24, 12), (0, 0), (16, 0)] {
            assert_eq!(
                MasterKey::from_parts(&vec![0; key], &vec![0; salt]),
                Err(SrtpError::MasterKeyLength { key, salt })
            );
        }
        assert_eq!(
            SrtpContext::try_new(Suite::AeadAes128Gcm, &rfc_key())
                .unwrap_err()
                .to_string(),
            "a 16-byte master key with a 14-byte salt does not fit AEAD_AES_128_GCM"
        );
        for suite in Suite::ALL {
            assert!(MasterKey::random_for(suite).fits(suite));
        }
        // SDES keys stay 16+14, for the AES-CM suites.
        assert!(rfc_key().fits(Suite::AesCm128HmacSha1_32));
        assert_eq!(rfc_key().key().len(), MASTER_KEY_LEN);
    }

    #[test]
    #[should_panic(expected = "does not fit AEAD_AES_256_GCM")]
    fn new_panics_on_a_key_that_does_not_fit() {
        SrtpContext::new(Suite::AeadAes256Gcm, &MasterKey::random());
    }

    #[test]
    fn dtls_srtp_keying_material_is_split_client_then_server() {
        for suite in Suite::ALL {
            let (k, s) = (suite.master_key_len(), suite.master_salt_len());
            assert_eq!(suite.keying_material_len(), 2 * (k + s));
            // Every byte says whose and which it is: 0xC? client, 0x5?
            // server; 0x?0 key, 0x?1 salt.
            let material = [vec![0xC0; k], vec![0x50; k], vec![0xC1; s], vec![0x51; s]].concat();
            let (out, inc) = dtls_srtp_keys(suite, &material, true).unwrap();
            assert_eq!(
                (out.key(), out.salt()),
                (&vec![0xC0; k][..], &vec![0xC1; s][..])
            );
            assert_eq!(
                (inc.key(), inc.salt()),
                (&vec![0x50; k][..], &vec![0x51; s][..])
            );
            let (out_s, inc_s) = dtls_srtp_keys(suite, &material, false).unwrap();
            assert_eq!((out_s, inc_s), (inc.clone(), out.clone()));
            assert!(out.fits(suite) && inc.fits(suite));
            assert_eq!(
                dtls_srtp_keys(suite, &material[1..], true),
                Err(SrtpError::KeyingMaterialLength {
                    suite,
                    expected: material.len(),
                    len: material.len() - 1
                })
            );
            // The two ends of the association talk.
            let (client_out, client_in) = dtls_srtp_keys(suite, &material, true).unwrap();
            let (server_out, server_in) = dtls_srtp_keys(suite, &material, false).unwrap();
            let mut p = rtp_packet(1, 2, &[3; 40]);
            SrtpContext::new(suite, &client_out)
                .protect_rtp(&mut p)
                .unwrap();
            assert!(unprotect(&mut SrtpContext::new(suite, &server_in), &p).is_ok());
            let mut p = rtp_packet(1, 2, &[3; 40]);
            SrtpContext::new(suite, &server_out)
                .protect_rtp(&mut p)
                .unwrap();
            assert!(unprotect(&mut SrtpContext::new(suite, &client_in), &p).is_ok());
        }
        assert_eq!(Suite::AesCm128HmacSha1_80.keying_material_len(), 60);
        assert_eq!(Suite::AeadAes128Gcm.keying_material_len(), 56);
        assert_eq!(Suite::AeadAes256Gcm.keying_material_len(), 88);
    }

    #[test]
    fn suite_names_and_sdes_stays_with_aes_cm() {
        for suite in Suite::ALL {
            assert_eq!(Suite::from_name(suite.name()), Some(suite));
        }
        assert_eq!(Suite::AeadAes128Gcm.name(), "AEAD_AES_128_GCM");
        assert_eq!(Suite::AeadAes256Gcm.to_string(), "AEAD_AES_256_GCM");
        assert_eq!(Suite::from_name("AES_256_CM_HMAC_SHA1_80"), None);
        assert_eq!(
            (
                Suite::AeadAes128Gcm.rtp_tag_len(),
                Suite::AeadAes256Gcm.rtcp_tag_len()
            ),
            (16, 16)
        );
        // An a=crypto line naming a GCM suite is not taken, whatever its key.
        for line in [
            "1 AEAD_AES_128_GCM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 AEAD_AES_128_GCM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaQ==",
        ] {
            assert_eq!(
                CryptoAttribute::parse(line),
                Err(SrtpError::UnsupportedSuite("AEAD_AES_128_GCM".into()))
            );
        }
    }
}
