//! SRTP and SRTCP (RFC 3711) with keys from SDP security descriptions
//! (SDES, RFC 4568): what a handset that insists on `RTP/SAVP` speaks.
//!
//! - Suites: `AES_CM_128_HMAC_SHA1_80` and `AES_CM_128_HMAC_SHA1_32`
//!   (RFC 4568 §6.2), the two every SDES phone offers. Both encrypt with
//!   AES-128 in counter mode (§4.1.1) and authenticate with HMAC-SHA1
//!   (§4.2.1); they differ in the RTP tag (10 or 4 bytes). SRTCP's tag is
//!   10 bytes with either (RFC 4568 §6.2.2).
//! - Keys: one master key and salt per direction, from an `a=crypto`
//!   line's `inline:` key; session keys are derived once (§4.3, key
//!   derivation rate 0, the SDES default). MKIs and several master keys
//!   per line are refused: nothing re-keys a call in the middle.
//! - Per source (SSRC) a context follows the rollover counter of the
//!   sequence number (§3.3.1) and a 64-packet replay window (§3.3.2), so a
//!   peer's audio and its telephone-events may come from two sources.
//!
//! A [`SrtpContext`] serves one direction: the endpoint protects with the
//! context of its own key and unprotects with the context of the peer's.
//! The module is sans-io: packets in, packets out.

use aes::Aes128;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use base64::Engine as _;
use ring::hmac;

use crate::rtp;

/// Bytes of a master key (AES-128).
pub const MASTER_KEY_LEN: usize = 16;
/// Bytes of a master salt (112 bits, §4.3.3 for the AES-CM suites).
pub const MASTER_SALT_LEN: usize = 14;
/// Packets a receiver remembers behind the newest one (§3.3.2's minimum).
pub const REPLAY_WINDOW: u64 = 64;
/// The most packets one master key may protect (§3.2.1: 2^48).
pub const MAX_LIFETIME: u64 = 1 << 48;
/// An SRTCP index is 31 bits (§3.4).
const SRTCP_INDEX_MAX: u64 = 0x7FFF_FFFF;
/// The E flag in front of the SRTCP index: the packet is encrypted.
const SRTCP_E: u32 = 0x8000_0000;
/// SRTCP's authentication tag, whichever suite (RFC 4568 §6.2).
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
    /// A packet already received (§3.3.2).
    #[error("replayed SRTP packet")]
    Replayed,
    /// Older than the replay window: it cannot be told from a replay.
    #[error("SRTP packet too old for the replay window")]
    TooOld,
    /// The master key's lifetime (or SRTP's 2^48) is used up.
    #[error("the SRTP master key is used up")]
    KeyExhausted,
    /// An `a=crypto` suite this module does not implement.
    #[error("unsupported crypto suite {0}")]
    UnsupportedSuite(String),
    /// A key method other than `inline:`, or a malformed `a=crypto`.
    #[error("malformed crypto attribute: {0}")]
    Attribute(&'static str),
    /// The inline key is not base64 of a 16-byte key and 14-byte salt.
    #[error("inline key is not base64 of {MASTER_KEY_LEN}+{MASTER_SALT_LEN} bytes")]
    KeyLength,
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

/// The crypto suites (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl Suite {
    /// In order of preference (a longer tag first).
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    /// Its name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Bytes of the SRTP authentication tag.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }

    /// Bytes of the SRTCP authentication tag.
    pub fn rtcp_tag_len(self) -> usize {
        SRTCP_TAG_LEN
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
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
    lifetime: Option<u64>,
}

impl MasterKey {
    pub fn new(key: [u8; MASTER_KEY_LEN], salt: [u8; MASTER_SALT_LEN]) -> MasterKey {
        MasterKey {
            key,
            salt,
            lifetime: None,
        }
    }

    /// A fresh key and salt. `rand`'s thread generator is a CSPRNG
    /// (ChaCha12) seeded and reseeded from the OS.
    pub fn random() -> MasterKey {
        MasterKey::new(rand::random(), rand::random())
    }

    /// Packets the key may protect (SDES lifetime), `None` for SRTP's own
    /// bound (2^48).
    pub fn lifetime(&self) -> Option<u64> {
        self.lifetime
    }

    pub fn key(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.key
    }

    pub fn salt(&self) -> &[u8; MASTER_SALT_LEN] {
        &self.salt
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
        let mut key = [0; MASTER_KEY_LEN];
        let mut salt = [0; MASTER_SALT_LEN];
        key.copy_from_slice(&bytes[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&bytes[MASTER_KEY_LEN..]);
        let mut master = MasterKey::new(key, salt);
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

    /// The key as SDES key parameters: `inline:<base64>` (no lifetime:
    /// SRTP's own bound applies).
    pub fn key_params(&self) -> String {
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        bytes[..MASTER_KEY_LEN].copy_from_slice(&self.key);
        bytes[MASTER_KEY_LEN..].copy_from_slice(&self.salt);
        format!(
            "inline:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }
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
    /// Reads the attribute's value (what follows `a=crypto:`). Session
    /// parameters are refused but for `WSH` (a window-size hint: ours is
    /// what it is).
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
        let suite =
            Suite::from_name(name).ok_or_else(|| SrtpError::UnsupportedSuite(name.to_owned()))?;
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

/// Session keys of RTP or of RTCP (§4.3.2).
struct SessionKeys {
    cipher: Aes128,
    salt: [u8; MASTER_SALT_LEN],
    auth: hmac::Key,
}

impl SessionKeys {
    fn derive(master: &MasterKey, labels: [u8; 3]) -> SessionKeys {
        let [encryption, auth, salt_label] = labels;
        let prf = Aes128::new(&master.key.into());
        let mut key = [0u8; MASTER_KEY_LEN];
        derive(&prf, &master.salt, encryption, &mut key);
        let mut salt = [0u8; MASTER_SALT_LEN];
        derive(&prf, &master.salt, salt_label, &mut salt);
        let mut auth_key = [0u8; AUTH_KEY_LEN];
        derive(&prf, &master.salt, auth, &mut auth_key);
        SessionKeys {
            cipher: Aes128::new(&key.into()),
            salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth_key),
        }
    }

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
}

/// The key derivation function (§4.3.1, key derivation rate 0): the
/// AES-CM keystream under the master key at IV (salt ^ label<<48) << 16.
fn derive(prf: &Aes128, master_salt: &[u8; MASTER_SALT_LEN], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(master_salt);
    // key_id = label || r (48 bits, 0), right-aligned in the 112 bits.
    iv[7] ^= label;
    out.fill(0);
    AesCm::from_core(AesCmCore::inner_iv_init(prf.clone(), &iv.into())).apply_keystream(out);
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
    pub fn new(suite: Suite, master: &MasterKey) -> SrtpContext {
        SrtpContext {
            suite,
            rtp: SessionKeys::derive(
                master,
                [LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT],
            ),
            rtcp: SessionKeys::derive(
                master,
                [LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT],
            ),
            rtp_streams: Streams::default(),
            rtcp_streams: Streams::default(),
            remaining: master.lifetime.unwrap_or(MAX_LIFETIME).min(MAX_LIFETIME),
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
    /// they move on by less than 2^15 at a time.
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let header = rtp_header_len(packet)?;
        let (ssrc, seq) = rtp_ids(packet);
        let mut stream = self
            .rtp_streams
            .get(ssrc)
            .unwrap_or_else(|| Stream::new(ssrc, u64::from(seq)));
        let index = stream.estimate(seq).ok_or(SrtpError::KeyExhausted)?;
        self.spend()?;
        stream.accept(index);
        self.rtp_streams.put(stream);
        self.rtp.apply_keystream(ssrc, index, &mut packet[header..]);
        let roc = (index >> 16) as u32;
        let tag = self.rtp.tag(packet, &roc.to_be_bytes());
        packet.extend_from_slice(&tag.as_ref()[..self.suite.rtp_tag_len()]);
        Ok(())
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
        let roc = (index >> 16) as u32;
        let tag = self.rtp.tag(&packet[..end], &roc.to_be_bytes());
        if !tags_equal(&tag.as_ref()[..tag_len], &packet[end..]) {
            return Err(SrtpError::Authentication);
        }
        self.spend()?;
        stream.accept(index);
        self.rtp_streams.put(stream);
        self.rtp
            .apply_keystream(ssrc, index, &mut packet[header..end]);
        Ok(end)
    }

    /// Encrypts a (compound) RTCP packet in place after its first 8
    /// bytes, and appends the E flag, the SRTCP index and the tag.
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
        self.rtcp
            .apply_keystream(ssrc, index, &mut packet[RTCP_HEADER_LEN..]);
        packet.extend_from_slice(&(SRTCP_E | index as u32).to_be_bytes());
        let tag = self.rtcp.tag(packet, &[]);
        packet.extend_from_slice(&tag.as_ref()[..SRTCP_TAG_LEN]);
        Ok(())
    }

    /// Checks an SRTCP packet and decrypts it in place: the RTCP packet
    /// is `packet[..n]` for the `n` returned.
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        if packet.len() < RTCP_HEADER_LEN + 4 + SRTCP_TAG_LEN {
            return Err(SrtpError::TooShort);
        }
        if packet[0] >> 6 != rtp::VERSION {
            return Err(SrtpError::Malformed);
        }
        let tagged = packet.len() - SRTCP_TAG_LEN;
        let end = tagged - 4;
        let e_index = u32::from_be_bytes([
            packet[end],
            packet[end + 1],
            packet[end + 2],
            packet[end + 3],
        ]);
        let index = u64::from(e_index & !SRTCP_E);
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let mut stream = self
            .rtcp_streams
            .get(ssrc)
            .unwrap_or_else(|| Stream::new(ssrc, index));
        stream.check(index)?;
        let tag = self.rtcp.tag(&packet[..tagged], &[]);
        if !tags_equal(&tag.as_ref()[..SRTCP_TAG_LEN], &packet[tagged..]) {
            return Err(SrtpError::Authentication);
        }
        self.spend()?;
        stream.accept(index);
        self.rtcp_streams.put(stream);
        if e_index & SRTCP_E != 0 {
            self.rtcp
                .apply_keystream(ssrc, index, &mut packet[RTCP_HEADER_LEN..end]);
        }
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

    fn hex(s: &str) -> Vec<u8> {
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
        let keys = SessionKeys {
            cipher: Aes128::new(&array::<16>("2B7E151628AED2A6ABF7158809CF4F3C").into()),
            salt: array("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"),
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[0; 20]),
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
        let prf = Aes128::new(&(*master.key()).into());
        let mut key = [0u8; 16];
        derive(&prf, master.salt(), LABEL_RTP_ENCRYPTION, &mut key);
        assert_eq!(key[..], hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        derive(&prf, master.salt(), LABEL_RTP_SALT, &mut salt);
        assert_eq!(salt[..], hex("30CBBC08863D8C85D49DB34A9AE1"));
        // The RFC lists 94 bytes of the authentication key's keystream;
        // HMAC-SHA1 uses the first 20.
        let mut auth = [0u8; 94];
        derive(&prf, master.salt(), LABEL_RTP_AUTH, &mut auth);
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
}
