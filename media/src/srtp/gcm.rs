//! The AEAD transform of `AEAD_AES_128_GCM` and `AEAD_AES_256_GCM`
//! (RFC 7714): AES in Galois/counter mode encrypts the payload and
//! authenticates it with the header in one pass, under a 96-bit nonce
//! made of the SSRC and the packet index. No authentication key and no
//! separate HMAC: the 16-byte GCM tag is the SRTP tag.
//!
//! On the wire an SRTP packet is `header || ciphertext || tag`; an SRTCP
//! packet is `first 8 bytes || ciphertext || tag || E||index`, the E flag
//! and index last (unlike RFC 3711, where the tag follows them) because
//! they are authenticated data, not something the tag is appended to.
//!
//! The context (the parent module) picks the packet index and keeps the
//! replay window; this module only seals and opens one packet at a given
//! index. A nonce must never seal two packets: GCM then gives away its
//! authentication key, which is why the context refuses to protect an
//! index twice under these suites.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce, Tag};

use super::{RTCP_HEADER_LEN, SRTCP_E, SrtpError};

/// Bytes of the tag (RFC 7714 §14.2: both suites use the full 128 bits).
pub(super) const TAG_LEN: usize = 16;
/// Bytes of the session salt, and of the master salt (96 bits).
pub(super) const SALT_LEN: usize = 12;

/// The cipher under one session key, its key schedule and GHASH key
/// computed once.
enum Aead {
    Aes128(Aes128Gcm),
    Aes256(Aes256Gcm),
}

/// Session key and salt of RTP or of RTCP under a GCM suite.
pub(super) struct GcmKeys {
    aead: Aead,
    salt: [u8; SALT_LEN],
}

impl GcmKeys {
    /// `key` is 16 bytes (AES-128) or 32 (AES-256): the caller derived it
    /// for its suite.
    pub(super) fn new(key: &[u8], salt: [u8; SALT_LEN]) -> GcmKeys {
        let aead = Aes256Gcm::new_from_slice(key)
            .map(Aead::Aes256)
            .or_else(|_| Aes128Gcm::new_from_slice(key).map(Aead::Aes128))
            .expect("an AES-GCM session key is 16 or 32 bytes");
        GcmKeys { aead, salt }
    }

    /// The SRTP IV (RFC 7714 §8.1): `00 00 || SSRC || ROC || SEQ`, the
    /// last six bytes being the 48-bit packet index, XORed with the salt.
    fn rtp_iv(&self, ssrc: u32, index: u64) -> [u8; SALT_LEN] {
        self.iv(ssrc, &index.to_be_bytes()[2..])
    }

    /// The SRTCP IV (RFC 7714 §9.1): `00 00 || SSRC || 00 00 || 0 ||
    /// SRTCP index` (31 bits), XORed with the salt.
    fn rtcp_iv(&self, ssrc: u32, index: u32) -> [u8; SALT_LEN] {
        let mut tail = [0u8; 6];
        tail[2..].copy_from_slice(&(index & !SRTCP_E).to_be_bytes());
        self.iv(ssrc, &tail)
    }

    fn iv(&self, ssrc: u32, tail: &[u8]) -> [u8; SALT_LEN] {
        let mut iv = self.salt;
        for (b, x) in iv[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= x;
        }
        for (b, x) in iv[6..].iter_mut().zip(tail) {
            *b ^= x;
        }
        iv
    }

    /// Encrypts `data` in place and returns the tag over `aad` and it.
    fn seal(&self, iv: &[u8; SALT_LEN], aad: &[u8], data: &mut [u8]) -> Result<Tag, SrtpError> {
        let nonce = Nonce::from(*iv);
        match &self.aead {
            Aead::Aes128(c) => c.encrypt_inout_detached(&nonce, aad, data.into()),
            Aead::Aes256(c) => c.encrypt_inout_detached(&nonce, aad, data.into()),
        }
        // Only refused beyond 2^36 bytes: no packet is that long.
        .map_err(|_| SrtpError::Malformed)
    }

    /// Checks `tag` over `aad` and `data`, then decrypts `data` in place.
    /// A packet refused is left as it came (the tag is checked, in
    /// constant time, before anything is decrypted).
    fn open(
        &self,
        iv: &[u8; SALT_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        let nonce = Nonce::from(*iv);
        let tag = Tag::try_from(tag).map_err(|_| SrtpError::Authentication)?;
        match &self.aead {
            Aead::Aes128(c) => c.decrypt_inout_detached(&nonce, aad, data.into(), &tag),
            Aead::Aes256(c) => c.decrypt_inout_detached(&nonce, aad, data.into(), &tag),
        }
        .map_err(|_| SrtpError::Authentication)
    }

    /// Seals an RTP packet whose first `header` bytes stay in the clear
    /// (and are the authenticated data, CSRCs and extension included),
    /// appending the tag.
    pub(super) fn seal_rtp(
        &self,
        ssrc: u32,
        index: u64,
        header: usize,
        packet: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        let iv = self.rtp_iv(ssrc, index);
        let (aad, payload) = packet.split_at_mut(header);
        let tag = self.seal(&iv, aad, payload)?;
        packet.extend_from_slice(&tag);
        Ok(())
    }

    /// Opens an SRTP packet: the RTP packet is `packet[..n]` for the `n`
    /// returned. The caller checked that a tag fits after `header`.
    pub(super) fn open_rtp(
        &self,
        ssrc: u32,
        index: u64,
        header: usize,
        packet: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let end = packet.len() - TAG_LEN;
        let iv = self.rtp_iv(ssrc, index);
        let (aad, rest) = packet.split_at_mut(header);
        let (payload, tag) = rest.split_at_mut(end - header);
        self.open(&iv, aad, payload, tag)?;
        Ok(end)
    }

    /// Seals an RTCP packet after its first 8 bytes and appends the tag
    /// and `E || index` (RFC 7714 §9.2: those 8 bytes and that word are
    /// the authenticated data).
    pub(super) fn seal_rtcp(
        &self,
        ssrc: u32,
        index: u32,
        packet: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        let e_index = (SRTCP_E | index).to_be_bytes();
        let mut aad = [0u8; RTCP_HEADER_LEN + 4];
        aad[..RTCP_HEADER_LEN].copy_from_slice(&packet[..RTCP_HEADER_LEN]);
        aad[RTCP_HEADER_LEN..].copy_from_slice(&e_index);
        let tag = self.seal(
            &self.rtcp_iv(ssrc, index),
            &aad,
            &mut packet[RTCP_HEADER_LEN..],
        )?;
        packet.extend_from_slice(&tag);
        packet.extend_from_slice(&e_index);
        Ok(())
    }

    /// Opens an SRTCP packet (`... || tag || E||index`, the caller read
    /// `e_index` from its last 4 bytes): the RTCP packet is `packet[..n]`
    /// for the `n` returned. Without the E flag nothing was encrypted and
    /// the whole packet with `E || index` is authenticated data (RFC 7714
    /// §9.3).
    pub(super) fn open_rtcp(
        &self,
        ssrc: u32,
        e_index: u32,
        packet: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let end = packet.len() - TAG_LEN - 4;
        let iv = self.rtcp_iv(ssrc, e_index);
        if e_index & SRTCP_E != 0 {
            let mut aad = [0u8; RTCP_HEADER_LEN + 4];
            aad[..RTCP_HEADER_LEN].copy_from_slice(&packet[..RTCP_HEADER_LEN]);
            aad[RTCP_HEADER_LEN..].copy_from_slice(&e_index.to_be_bytes());
            let (payload, tag) = packet[RTCP_HEADER_LEN..].split_at_mut(end - RTCP_HEADER_LEN);
            self.open(&iv, &aad, payload, &tag[..TAG_LEN])?;
        } else {
            // The authenticated data runs on past the tag: move the
            // index word in front of it (and back if refused) rather
            // than copy the packet.
            packet[end..].rotate_right(4);
            let (aad, tag) = packet.split_at_mut(end + 4);
            if let Err(e) = self.open(&iv, aad, &mut [], tag) {
                packet[end..].rotate_left(4);
                return Err(e);
            }
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::tests::hex;

    fn rfc_keys() -> GcmKeys {
        // RFC 7714 §16: key 00 01 .. 0f, salt "Quid pro quo".
        GcmKeys::new(
            &hex("000102030405060708090a0b0c0d0e0f"),
            hex("517569642070726f2071756f").try_into().unwrap(),
        )
    }

    #[test]
    fn rfc_7714_ivs() {
        // §16.1: SSRC 0x5501a0b2, ROC 0, SEQ 0xf17b.
        assert_eq!(
            rfc_keys().rtp_iv(0x5501_a0b2, 0xf17b)[..],
            hex("51753c6580c2726f20718414")
        );
        // §17.1: SSRC "Mars", index 0x5d4 (the E flag is not part of it).
        assert_eq!(
            rfc_keys().rtcp_iv(0x4d61_7273, 0x8000_05d4)[..],
            hex("517524055203726f207170bb")
        );
    }
}
