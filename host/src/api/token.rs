//! Signed, expiring tokens for the links the switch e-mails (activation,
//! password reset): `<login, base64url>.<expiry, unix seconds>.<HMAC-SHA256, hex>`.
//! The MAC covers the purpose too, so an activation token is no reset token.
//! Nothing is stored: the key (derived from the secret key file) and the
//! clock are enough to check one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link is not valid")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

fn mac(key: &[u8; 32], purpose: &str, login_b64: &str, expires: i64) -> ring::hmac::Tag {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(
        &key,
        format!("{purpose}\n{login_b64}\n{expires}").as_bytes(),
    )
}

/// A token for `login`, valid until `expires` (Unix seconds).
pub fn sign(key: &[u8; 32], purpose: &str, login: &str, expires: i64) -> String {
    let login_b64 = URL_SAFE_NO_PAD.encode(login);
    let tag = mac(key, purpose, &login_b64, expires);
    format!("{login_b64}.{expires}.{}", hex::encode(tag.as_ref()))
}

/// The login a token was issued for, if it is genuine and not expired at `now`.
pub fn verify(key: &[u8; 32], purpose: &str, token: &str, now: i64) -> Result<String, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(login_b64), Some(expires), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| TokenError::Malformed)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::verify(
        &key,
        format!("{purpose}\n{login_b64}\n{expires}").as_bytes(),
        &tag,
    )
    .map_err(|_| TokenError::BadSignature)?;
    if now > expires {
        return Err(TokenError::Expired);
    }
    let login = URL_SAFE_NO_PAD
        .decode(login_b64)
        .map_err(|_| TokenError::Malformed)?;
    String::from_utf8(login).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_expiry_and_tampering() {
        let key = [7u8; 32];
        let t = sign(&key, "activate", "alice", 1000);
        assert_eq!(verify(&key, "activate", &t, 999).unwrap(), "alice");
        assert_eq!(verify(&key, "activate", &t, 1001), Err(TokenError::Expired));
        assert_eq!(
            verify(&key, "reset", &t, 999),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&[8u8; 32], "activate", &t, 999),
            Err(TokenError::BadSignature)
        );
        let longer = t.replacen(".1000.", ".9999.", 1);
        assert_eq!(
            verify(&key, "activate", &longer, 999),
            Err(TokenError::BadSignature)
        );
        let other = sign(&key, "activate", "mallory", 1000);
        let spliced = format!(
            "{}.{}",
            other.split('.').next().unwrap(),
            t.split_once('.').unwrap().1
        );
        assert_eq!(
            verify(&key, "activate", &spliced, 999),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&key, "activate", "x.y", 0),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify(&key, "activate", "a.b.c", 0),
            Err(TokenError::Malformed)
        );
    }
}
