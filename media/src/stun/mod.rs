//! STUN messages (RFC 8489 / RFC 5389, and RFC 3489 "classic" messages
//! without the magic cookie), sans-io: bytes in, [`Message`] out, and back.
//!
//! Used by the switch's STUN server and by ICE-lite connectivity checks on
//! media relay ports:
//!
//! ```
//! use media::stun::{self, Message};
//! # let key = b"VOkJxbRl1RmTxUk/WvJxBt";
//! # let from: std::net::SocketAddr = "192.0.2.1:32853".parse().unwrap();
//! # let packet = Message::binding_request(stun::TransactionId([7; 12]))
//! #     .with(stun::Attribute::Username("local:remote".into()))
//! #     .encode(Some(key), true).unwrap();
//! if stun::is_stun(&packet) {
//!     let request = Message::decode(&packet)?;
//!     stun::verify_integrity(&packet, key)?;
//!     let use_candidate = request.use_candidate();
//!     let answer = Message::binding_success(&request, from).encode(Some(key), true)?;
//!     # assert!(stun::verify_integrity(&answer, key).is_ok() && !use_candidate);
//! }
//! # Ok::<(), stun::StunError>(())
//! ```
//!
//! Decoding never panics, whatever the input; every refusal is a
//! [`StunError`]. MESSAGE-INTEGRITY and FINGERPRINT are not part of what a
//! caller builds: the encoder computes them ([`Message::encode`]), the decoder
//! checks FINGERPRINT itself and leaves MESSAGE-INTEGRITY to
//! [`verify_integrity`], which needs the key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed value that marks an RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the message header.
pub const HEADER_LEN: usize = 20;

const FINGERPRINT_XOR: u32 = 0x5354_554E;
const INTEGRITY_LEN: usize = 20;
const COOKIE: [u8; 4] = MAGIC_COOKIE.to_be_bytes();

/// Attribute type codes.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// RFC 5780 (and RFC 3489, where classic clients always send it).
    pub const CHANGE_REQUEST: u16 = 0x0003;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RFC 8445 (ICE).
    pub const PRIORITY: u16 = 0x0024;
    /// RFC 8445 (ICE).
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    /// RFC 8445 (ICE).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// RFC 8445 (ICE).
    pub const ICE_CONTROLLING: u16 = 0x802A;

    /// Types below this must be understood by the receiver (RFC 8489 §14):
    /// an unknown one in a request is answered with 420.
    pub fn is_comprehension_required(typ: u16) -> bool {
        typ < 0x8000
    }
}

/// Why bytes are not a (valid) STUN message, or a check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Fewer bytes than a header.
    #[error("{len} bytes is shorter than a STUN header")]
    TooShort { len: usize },
    /// The first two bits are not zero, or the length is not a multiple of 4.
    #[error("not a STUN message")]
    NotStun,
    /// The header's length does not match the bytes given.
    #[error("header says {declared} bytes of attributes, got {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    /// An attribute runs past the end of the message.
    #[error("attribute {typ:#06x} at offset {offset} runs past the end of the message")]
    AttributeOverrun { typ: u16, offset: usize },
    /// An attribute's value has the wrong size or content.
    #[error("invalid attribute {typ:#06x}: {reason}")]
    InvalidAttribute { typ: u16, reason: &'static str },
    /// Something follows FINGERPRINT, which must be last.
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// FINGERPRINT does not match the message (RFC 8489 says: not STUN).
    #[error("FINGERPRINT does not match")]
    FingerprintMismatch,
    /// There is no MESSAGE-INTEGRITY to verify.
    #[error("no MESSAGE-INTEGRITY")]
    NoIntegrity,
    /// MESSAGE-INTEGRITY does not match the key.
    #[error("MESSAGE-INTEGRITY does not match")]
    IntegrityMismatch,
    /// The message to encode would not fit the 16-bit length field.
    #[error("message too long to encode ({len} bytes of attributes)")]
    TooLong { len: usize },
}

/// The class of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        }
    }

    fn from_bits(bits: u16) -> Class {
        match bits & 3 {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// A 12-bit STUN method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(u16);

impl Method {
    pub const BINDING: Method = Method(0x001);

    /// `None` past 12 bits.
    pub fn new(value: u16) -> Option<Method> {
        (value <= 0xFFF).then_some(Method(value))
    }

    pub fn value(self) -> u16 {
        self.0
    }
}

/// The 96-bit transaction ID of an RFC 5389 message. (An RFC 3489 message
/// has 128 bits: the 4 bytes where the cookie would be, then these 12.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

/// One attribute. Types this codec does not know are kept as
/// [`Attribute::Other`], so a server can find the comprehension-required
/// ones and answer 420 ([`Message::unknown_comprehension_required`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    MappedAddress(SocketAddr),
    XorMappedAddress(SocketAddr),
    Username(String),
    /// The HMAC-SHA1 as received; the encoder computes its own instead.
    MessageIntegrity([u8; INTEGRITY_LEN]),
    /// The CRC as received (already checked by the decoder); the encoder
    /// computes its own instead.
    Fingerprint(u32),
    /// `code` is 300..=699.
    ErrorCode {
        code: u16,
        reason: String,
    },
    UnknownAttributes(Vec<u16>),
    Realm(String),
    Nonce(String),
    /// Not required to be UTF-8 in the wild; invalid bytes are replaced.
    Software(String),
    Priority(u32),
    UseCandidate,
    IceControlling(u64),
    IceControlled(u64),
    ChangeRequest {
        change_ip: bool,
        change_port: bool,
    },
    Other {
        typ: u16,
        value: Vec<u8>,
    },
}

impl Attribute {
    /// The type code.
    pub fn typ(&self) -> u16 {
        match self {
            Attribute::MappedAddress(_) => attr::MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => attr::XOR_MAPPED_ADDRESS,
            Attribute::Username(_) => attr::USERNAME,
            Attribute::MessageIntegrity(_) => attr::MESSAGE_INTEGRITY,
            Attribute::Fingerprint(_) => attr::FINGERPRINT,
            Attribute::ErrorCode { .. } => attr::ERROR_CODE,
            Attribute::UnknownAttributes(_) => attr::UNKNOWN_ATTRIBUTES,
            Attribute::Realm(_) => attr::REALM,
            Attribute::Nonce(_) => attr::NONCE,
            Attribute::Software(_) => attr::SOFTWARE,
            Attribute::Priority(_) => attr::PRIORITY,
            Attribute::UseCandidate => attr::USE_CANDIDATE,
            Attribute::IceControlling(_) => attr::ICE_CONTROLLING,
            Attribute::IceControlled(_) => attr::ICE_CONTROLLED,
            Attribute::ChangeRequest { .. } => attr::CHANGE_REQUEST,
            Attribute::Other { typ, .. } => *typ,
        }
    }

    fn decode(typ: u16, v: &[u8], xor: &[u8; 16]) -> Result<Attribute, StunError> {
        let bad = |reason| StunError::InvalidAttribute { typ, reason };
        let text = |v: &[u8]| {
            std::str::from_utf8(v)
                .map(str::to_owned)
                .map_err(|_| bad("not UTF-8"))
        };
        Ok(match typ {
            attr::MAPPED_ADDRESS => Attribute::MappedAddress(decode_address(v, None).ok_or(
                bad("address family and length disagree (family 1: 8 bytes, 2: 20 bytes)"),
            )?),
            attr::XOR_MAPPED_ADDRESS => {
                Attribute::XorMappedAddress(decode_address(v, Some(xor)).ok_or(bad(
                    "address family and length disagree (family 1: 8 bytes, 2: 20 bytes)",
                ))?)
            }
            attr::USERNAME => Attribute::Username(text(v)?),
            attr::REALM => Attribute::Realm(text(v)?),
            attr::NONCE => Attribute::Nonce(text(v)?),
            attr::SOFTWARE => Attribute::Software(String::from_utf8_lossy(v).into_owned()),
            attr::MESSAGE_INTEGRITY => {
                Attribute::MessageIntegrity(v.try_into().map_err(|_| bad("HMAC-SHA1 is 20 bytes"))?)
            }
            attr::FINGERPRINT => Attribute::Fingerprint(u32::from_be_bytes(
                v.try_into().map_err(|_| bad("CRC-32 is 4 bytes"))?,
            )),
            attr::ERROR_CODE => {
                if v.len() < 4 {
                    return Err(bad("shorter than 4 bytes"));
                }
                let (class, number) = (u16::from(v[2] & 7), u16::from(v[3]));
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(bad("code outside 300..=699"));
                }
                Attribute::ErrorCode {
                    code: class * 100 + number,
                    reason: String::from_utf8_lossy(&v[4..]).into_owned(),
                }
            }
            attr::UNKNOWN_ATTRIBUTES => {
                if !v.len().is_multiple_of(2) {
                    return Err(bad("odd length"));
                }
                Attribute::UnknownAttributes(
                    v.chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect(),
                )
            }
            attr::PRIORITY => Attribute::Priority(u32::from_be_bytes(
                v.try_into().map_err(|_| bad("not 4 bytes"))?,
            )),
            attr::USE_CANDIDATE => {
                if !v.is_empty() {
                    return Err(bad("not empty"));
                }
                Attribute::UseCandidate
            }
            attr::ICE_CONTROLLING => Attribute::IceControlling(u64::from_be_bytes(
                v.try_into().map_err(|_| bad("not 8 bytes"))?,
            )),
            attr::ICE_CONTROLLED => Attribute::IceControlled(u64::from_be_bytes(
                v.try_into().map_err(|_| bad("not 8 bytes"))?,
            )),
            attr::CHANGE_REQUEST => {
                let flags = u32::from_be_bytes(v.try_into().map_err(|_| bad("not 4 bytes"))?);
                Attribute::ChangeRequest {
                    change_ip: flags & 4 != 0,
                    change_port: flags & 2 != 0,
                }
            }
            _ => Attribute::Other {
                typ,
                value: v.to_vec(),
            },
        })
    }

    /// Appends type, length, value and padding.
    fn encode(&self, out: &mut Vec<u8>, xor: &[u8; 16], padding: u8) -> Result<(), StunError> {
        let start = out.len();
        out.extend_from_slice(&self.typ().to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        match self {
            Attribute::MappedAddress(a) => encode_address(out, *a, None),
            Attribute::XorMappedAddress(a) => encode_address(out, *a, Some(xor)),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::MessageIntegrity(tag) => out.extend_from_slice(tag),
            Attribute::Fingerprint(crc) => out.extend_from_slice(&crc.to_be_bytes()),
            Attribute::ErrorCode { code, reason } => {
                let code = (*code).clamp(300, 699);
                out.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
                out.extend_from_slice(reason.as_bytes());
            }
            Attribute::UnknownAttributes(types) => {
                for t in types {
                    out.extend_from_slice(&t.to_be_bytes());
                }
            }
            Attribute::Priority(p) => out.extend_from_slice(&p.to_be_bytes()),
            Attribute::UseCandidate => {}
            Attribute::IceControlling(t) | Attribute::IceControlled(t) => {
                out.extend_from_slice(&t.to_be_bytes())
            }
            Attribute::ChangeRequest {
                change_ip,
                change_port,
            } => {
                let flags = (u32::from(*change_ip) << 2) | (u32::from(*change_port) << 1);
                out.extend_from_slice(&flags.to_be_bytes());
            }
            Attribute::Other { value, .. } => out.extend_from_slice(value),
        }
        let len = out.len() - start - 4;
        let len16 = u16::try_from(len).map_err(|_| StunError::TooLong { len })?;
        out[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
        out.resize(out.len() + pad(len), padding);
        Ok(())
    }
}

/// A STUN message: header fields and attributes in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    pub method: Method,
    /// The four bytes after the length: the magic cookie, or the start of an
    /// RFC 3489 message's 128-bit transaction ID.
    cookie: [u8; 4],
    pub transaction_id: TransactionId,
    pub attributes: Vec<Attribute>,
}

/// How [`Message::encode_with`] finishes a message.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodeOptions<'k> {
    /// Appends MESSAGE-INTEGRITY (HMAC-SHA1) with this key: the password for
    /// short-term credentials, `MD5(username:realm:password)` for long-term.
    pub integrity_key: Option<&'k [u8]>,
    /// Appends FINGERPRINT, last.
    pub fingerprint: bool,
    /// The byte that pads attribute values to 4 bytes (receivers ignore it;
    /// RFC 5769's vectors use spaces).
    pub padding: u8,
}

impl Message {
    /// An RFC 5389/8489 message without attributes.
    pub fn new(class: Class, method: Method, transaction_id: TransactionId) -> Message {
        Message {
            class,
            method,
            cookie: COOKIE,
            transaction_id,
            attributes: Vec::new(),
        }
    }

    /// An RFC 3489 message with its 128-bit transaction ID.
    pub fn new_rfc3489(class: Class, method: Method, transaction_id: [u8; 16]) -> Message {
        let (cookie, rest) = transaction_id.split_at(4);
        Message {
            class,
            method,
            cookie: cookie.try_into().unwrap_or(COOKIE),
            transaction_id: TransactionId(rest.try_into().unwrap_or([0; 12])),
            attributes: Vec::new(),
        }
    }

    pub fn binding_request(transaction_id: TransactionId) -> Message {
        Message::new(Class::Request, Method::BINDING, transaction_id)
    }

    /// The success answer to `request` telling the client it was seen at
    /// `mapped`: XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS for an RFC 3489
    /// request (which cannot decode the XOR form). Same method and
    /// transaction ID; add SOFTWARE and friends with [`Message::with`].
    pub fn binding_success(request: &Message, mapped: SocketAddr) -> Message {
        let address = if request.is_rfc3489() {
            Attribute::MappedAddress(mapped)
        } else {
            Attribute::XorMappedAddress(mapped)
        };
        request.answer(Class::Success).with(address)
    }

    /// The error answer to `request`: ERROR-CODE with `code` (300..=699)
    /// and `reason`.
    pub fn error_response(request: &Message, code: u16, reason: &str) -> Message {
        request.answer(Class::Error).with(Attribute::ErrorCode {
            code,
            reason: reason.to_owned(),
        })
    }

    /// The 420 answer listing the attributes a request needed understood.
    pub fn unknown_attributes_response(request: &Message, unknown: Vec<u16>) -> Message {
        Message::error_response(request, 420, "Unknown Attribute")
            .with(Attribute::UnknownAttributes(unknown))
    }

    fn answer(&self, class: Class) -> Message {
        Message {
            class,
            method: self.method,
            cookie: self.cookie,
            transaction_id: self.transaction_id,
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute (builder style).
    pub fn with(mut self, attribute: Attribute) -> Message {
        self.attributes.push(attribute);
        self
    }

    /// True when the header has no magic cookie: an RFC 3489 client.
    pub fn is_rfc3489(&self) -> bool {
        self.cookie != COOKIE
    }

    /// The full 128-bit ID of an RFC 3489 message (for an RFC 5389 one, the
    /// cookie and the 96-bit ID).
    pub fn transaction_id_128(&self) -> [u8; 16] {
        let mut id = [0; 16];
        id[..4].copy_from_slice(&self.cookie);
        id[4..].copy_from_slice(&self.transaction_id.0);
        id
    }

    /// The first attribute of type `typ`.
    pub fn get(&self, typ: u16) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.typ() == typ)
    }

    pub fn username(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Username(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn software(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Software(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn realm(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Realm(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn nonce(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Nonce(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::MappedAddress(s) => Some(*s),
            _ => None,
        })
    }

    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::XorMappedAddress(s) => Some(*s),
            _ => None,
        })
    }

    /// `(code, reason)` of ERROR-CODE.
    pub fn error_code(&self) -> Option<(u16, &str)> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ErrorCode { code, reason } => Some((*code, reason.as_str())),
            _ => None,
        })
    }

    pub fn priority(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Priority(p) => Some(*p),
            _ => None,
        })
    }

    pub fn use_candidate(&self) -> bool {
        self.attributes
            .iter()
            .any(|a| matches!(a, Attribute::UseCandidate))
    }

    /// The tie-breaker of ICE-CONTROLLING.
    pub fn ice_controlling(&self) -> Option<u64> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::IceControlling(t) => Some(*t),
            _ => None,
        })
    }

    /// The tie-breaker of ICE-CONTROLLED.
    pub fn ice_controlled(&self) -> Option<u64> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::IceControlled(t) => Some(*t),
            _ => None,
        })
    }

    /// True when the message carried MESSAGE-INTEGRITY (check it with
    /// [`verify_integrity`]).
    pub fn has_integrity(&self) -> bool {
        self.get(attr::MESSAGE_INTEGRITY).is_some()
    }

    /// True when the message carried a (valid) FINGERPRINT.
    pub fn has_fingerprint(&self) -> bool {
        self.get(attr::FINGERPRINT).is_some()
    }

    /// Types of the attributes this codec does not know but the sender
    /// requires understood: a server answers 420 listing them.
    pub fn unknown_comprehension_required(&self) -> Vec<u16> {
        let mut types = Vec::new();
        for a in &self.attributes {
            if let Attribute::Other { typ, .. } = a
                && attr::is_comprehension_required(*typ)
                && !types.contains(typ)
            {
                types.push(*typ);
            }
        }
        types
    }

    /// Parses one whole message (a datagram, or a frame cut from a stream
    /// with [`message_len`]). Checks FINGERPRINT when present; ignores
    /// attributes between MESSAGE-INTEGRITY and FINGERPRINT, as RFC 8489
    /// §14.5 requires.
    pub fn decode(buf: &[u8]) -> Result<Message, StunError> {
        let total = check_whole(buf)?;
        let typ = u16::from_be_bytes([buf[0], buf[1]]);
        let method = (typ & 0x000F) | ((typ & 0x00E0) >> 1) | ((typ & 0x3E00) >> 2);
        let class = Class::from_bits(((typ >> 4) & 1) | ((typ >> 7) & 2));
        let xor: [u8; 16] = buf[4..HEADER_LEN].try_into().unwrap_or([0; 16]);
        let mut message = Message::new_rfc3489(class, Method(method), xor);
        let mut after_integrity = false;
        for item in RawAttributes::new(&buf[..total]) {
            let (offset, typ, value) = item?;
            if typ == attr::FINGERPRINT {
                let end = offset + 4 + pad4(value.len());
                if end != total {
                    return Err(StunError::FingerprintNotLast);
                }
                let got = u32::from_be_bytes(value.try_into().map_err(|_| {
                    StunError::InvalidAttribute {
                        typ,
                        reason: "CRC-32 is 4 bytes",
                    }
                })?);
                // The header already counts FINGERPRINT, as the sender's did.
                if crc32fast::hash(&buf[..offset]) ^ FINGERPRINT_XOR != got {
                    return Err(StunError::FingerprintMismatch);
                }
                message.attributes.push(Attribute::Fingerprint(got));
                continue;
            }
            if after_integrity {
                continue;
            }
            after_integrity = typ == attr::MESSAGE_INTEGRITY;
            message
                .attributes
                .push(Attribute::decode(typ, value, &xor)?);
        }
        Ok(message)
    }

    /// Encodes with the attributes as they are (MESSAGE-INTEGRITY and
    /// FINGERPRINT in the list are left out), then appends
    /// MESSAGE-INTEGRITY computed with `integrity_key` if given, then
    /// FINGERPRINT if asked. Padding is zeros.
    pub fn encode(
        &self,
        integrity_key: Option<&[u8]>,
        fingerprint: bool,
    ) -> Result<Vec<u8>, StunError> {
        self.encode_with(&EncodeOptions {
            integrity_key,
            fingerprint,
            padding: 0,
        })
    }

    pub fn encode_with(&self, options: &EncodeOptions<'_>) -> Result<Vec<u8>, StunError> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(&mut out, options)?;
        Ok(out)
    }

    /// Like [`Message::encode_with`], appending to `out` (a reused buffer);
    /// on error `out` is left as it was.
    pub fn encode_into(
        &self,
        out: &mut Vec<u8>,
        options: &EncodeOptions<'_>,
    ) -> Result<(), StunError> {
        let base = out.len();
        let result = self.encode_at(out, base, options);
        if result.is_err() {
            out.truncate(base);
        }
        result
    }

    fn encode_at(
        &self,
        out: &mut Vec<u8>,
        base: usize,
        options: &EncodeOptions<'_>,
    ) -> Result<(), StunError> {
        let m = self.method.0;
        let c = self.class.bits();
        let typ = (m & 0x000F)
            | ((m & 0x0070) << 1)
            | ((m & 0x0F80) << 2)
            | ((c & 1) << 4)
            | ((c & 2) << 7);
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.cookie);
        out.extend_from_slice(&self.transaction_id.0);
        let xor = self.transaction_id_128();
        for a in &self.attributes {
            if !matches!(
                a,
                Attribute::MessageIntegrity(_) | Attribute::Fingerprint(_)
            ) {
                a.encode(out, &xor, options.padding)?;
            }
        }
        // Each trailer is computed over a header whose length already counts it.
        if let Some(key) = options.integrity_key {
            set_length(out, base, 4 + INTEGRITY_LEN)?;
            let tag = hmac_sha1(key, &[&out[base..]]);
            out.extend_from_slice(&attr::MESSAGE_INTEGRITY.to_be_bytes());
            out.extend_from_slice(&(INTEGRITY_LEN as u16).to_be_bytes());
            out.extend_from_slice(&tag);
        }
        if options.fingerprint {
            set_length(out, base, 8)?;
            let crc = crc32fast::hash(&out[base..]) ^ FINGERPRINT_XOR;
            out.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&crc.to_be_bytes());
        }
        set_length(out, base, 0)
    }
}

/// Writes the header length as what follows the header so far plus `more`.
fn set_length(out: &mut [u8], base: usize, more: usize) -> Result<(), StunError> {
    let len = out.len() - base - HEADER_LEN + more;
    let len16 = u16::try_from(len).map_err(|_| StunError::TooLong { len })?;
    out[base + 2..base + 4].copy_from_slice(&len16.to_be_bytes());
    Ok(())
}

/// Cheap test for demultiplexing STUN from RTP/RTCP/DTLS on one port
/// (RFC 7983): first two bits zero, the magic cookie, a length that is a
/// multiple of 4 and matches the datagram. RFC 3489 messages (no cookie)
/// are not recognised: they cannot be told from other traffic.
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN
        && buf[0] & 0xC0 == 0
        && buf[4..8] == COOKIE
        && usize::from(u16::from_be_bytes([buf[2], buf[3]])) + HEADER_LEN == buf.len()
        && buf[3] & 3 == 0
}

/// For cutting messages out of a stream (STUN over TCP, RFC 8489 §6.2.2):
/// the size of the message that starts `buf`, from its header. `Ok(None)`
/// until a whole header is there; an error means the stream is not (or no
/// longer) STUN and should be closed.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, StunError> {
    if buf.len() < HEADER_LEN {
        if buf.first().is_some_and(|b| b & 0xC0 != 0) {
            return Err(StunError::NotStun);
        }
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if buf[0] & 0xC0 != 0 || !len.is_multiple_of(4) {
        return Err(StunError::NotStun);
    }
    Ok(Some(HEADER_LEN + len))
}

/// Checks MESSAGE-INTEGRITY of the raw message `raw` with `key` (the
/// password for short-term credentials, `MD5(username:realm:password)` for
/// long-term ones). Attributes after it other than FINGERPRINT are not
/// covered, as RFC 8489 §14.5 says.
pub fn verify_integrity(raw: &[u8], key: &[u8]) -> Result<(), StunError> {
    let total = check_whole(raw)?;
    for item in RawAttributes::new(&raw[..total]) {
        let (offset, typ, value) = item?;
        if typ != attr::MESSAGE_INTEGRITY {
            continue;
        }
        if value.len() != INTEGRITY_LEN {
            return Err(StunError::InvalidAttribute {
                typ,
                reason: "HMAC-SHA1 is 20 bytes",
            });
        }
        // The sender computed over a header that counted up to this attribute only.
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&raw[..HEADER_LEN]);
        let len = offset - HEADER_LEN + 4 + INTEGRITY_LEN;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        let tag = hmac_sha1(key, &[&header, &raw[HEADER_LEN..offset]]);
        return if constant_time_eq(&tag, value) {
            Ok(())
        } else {
            Err(StunError::IntegrityMismatch)
        };
    }
    Err(StunError::NoIntegrity)
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; INTEGRITY_LEN] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let mut tag = [0u8; INTEGRITY_LEN];
    tag.copy_from_slice(ctx.sign().as_ref());
    tag
}

/// So a forger cannot learn the tag byte by byte from response timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Header checks shared by the decoder and the integrity check; the total
/// length on success.
fn check_whole(buf: &[u8]) -> Result<usize, StunError> {
    if buf.len() < HEADER_LEN {
        return Err(StunError::TooShort { len: buf.len() });
    }
    let total = match message_len(buf)? {
        Some(total) => total,
        None => return Err(StunError::TooShort { len: buf.len() }),
    };
    if total != buf.len() {
        return Err(StunError::LengthMismatch {
            declared: total - HEADER_LEN,
            actual: buf.len() - HEADER_LEN,
        });
    }
    Ok(total)
}

/// Walks `(offset, type, value)` of a message whose header is checked.
struct RawAttributes<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> RawAttributes<'a> {
    fn new(buf: &'a [u8]) -> Self {
        RawAttributes {
            buf,
            offset: HEADER_LEN,
        }
    }
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = Result<(usize, u16, &'a [u8]), StunError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset;
        let head = self.buf.get(offset..offset + 4)?;
        let typ = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let start = offset + 4;
        let Some(value) = self.buf.get(start..start + len) else {
            self.offset = self.buf.len();
            return Some(Err(StunError::AttributeOverrun { typ, offset }));
        };
        self.offset = (start + pad4(len)).min(self.buf.len());
        Some(Ok((offset, typ, value)))
    }
}

fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn pad4(len: usize) -> usize {
    len + pad(len)
}

/// MAPPED-ADDRESS, or with `xor` (cookie and transaction ID) XOR-MAPPED-ADDRESS.
fn decode_address(v: &[u8], xor: Option<&[u8; 16]>) -> Option<SocketAddr> {
    let mask = xor.copied().unwrap_or([0; 16]);
    let port = u16::from_be_bytes([v.get(2)? ^ mask[0], v.get(3)? ^ mask[1]]);
    let ip = match (v[1], v.len()) {
        (1, 8) => {
            let mut b = [0u8; 4];
            for (i, out) in b.iter_mut().enumerate() {
                *out = v[4 + i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        (2, 20) => {
            let mut b = [0u8; 16];
            for (i, out) in b.iter_mut().enumerate() {
                *out = v[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn encode_address(out: &mut Vec<u8>, addr: SocketAddr, xor: Option<&[u8; 16]>) {
    let mask = xor.copied().unwrap_or([0; 16]);
    let family = if addr.is_ipv4() { 1 } else { 2 };
    let port = addr.port().to_be_bytes();
    out.extend_from_slice(&[0, family, port[0] ^ mask[0], port[1] ^ mask[1]]);
    match addr.ip() {
        IpAddr::V4(ip) => out.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m)),
        IpAddr::V6(ip) => out.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m)),
    }
}

#[cfg(test)]
mod tests;
