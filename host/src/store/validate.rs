//! Input checks shared by the aggregates.
//!
//! The limits match the VARCHAR sizes in `migrations/mysql`: checking here
//! gives the same answer on both backends, where SQLite would accept anything
//! and MySQL would refuse (strict mode) or silently truncate (lax mode).
//! Lengths are in characters, as VARCHAR(n) counts them.

use super::error::{Result, StoreError};

/// Longest login, username, tariff, plan or gateway name.
pub(crate) const NAME_MAX: usize = 64;
/// Longest gateway or dialplan prefix; also bounds the prefix look-ups.
pub(crate) const PREFIX_MAX: usize = 32;
/// E.164 allows at most 15 digits.
pub(crate) const PHONE_MAX: usize = 15;
/// Longest SIP password: its ciphertext must fit `sip_password_enc`.
pub(crate) const SIP_PASSWORD_MAX: usize = 128;
/// Bounds the work an argon2 hash is asked to do on hostile input.
pub(crate) const ACCESS_PASSWORD_MAX: usize = 1024;

fn invalid(msg: String) -> StoreError {
    StoreError::Invalid(msg)
}

/// At most `max` characters and no control characters.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n > max {
        return Err(invalid(format!(
            "{field} is {n} characters long, at most {max} allowed"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} contains control characters")));
    }
    Ok(())
}

/// Like [`text`], and not empty.
pub(crate) fn required(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    text(field, value, max)
}

pub(crate) fn optional(field: &str, value: Option<&str>, max: usize) -> Result<()> {
    value.map_or(Ok(()), |v| text(field, v, max))
}

/// A SIP login or a username: it becomes the user part of a SIP URI and a
/// public ID, so no whitespace and none of the URI delimiters `@` and `:`.
pub(crate) fn identifier(field: &str, value: &str) -> Result<()> {
    required(field, value, NAME_MAX)?;
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || *c == '@' || *c == ':')
    {
        return Err(invalid(format!("{field} {value:?} must not contain {c:?}")));
    }
    Ok(())
}

/// E.164 without the leading `+`: 1 to 15 ASCII digits.
pub(crate) fn phone(value: &str) -> Result<()> {
    if value.is_empty() || value.len() > PHONE_MAX || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "phone {value:?} must be 1 to {PHONE_MAX} digits (E.164 without +)"
        )));
    }
    Ok(())
}

/// A routing prefix: ASCII letters and digits only, possibly empty (the
/// default route).
pub(crate) fn prefix(value: &str) -> Result<()> {
    if value.len() > PREFIX_MAX || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(format!(
            "prefix {value:?} must be at most {PREFIX_MAX} ASCII letters or digits"
        )));
    }
    Ok(())
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits and
/// hyphens.
fn host_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `host:port` where host is a DNS name, an IPv4 address or a bracketed IPv6
/// address, and port is 1–65535.
pub(crate) fn host_port(field: &str, value: &str) -> Result<()> {
    let bad = || {
        invalid(format!(
            "{field} {value:?} must be host:port (e.g. sip.example.net:5060 or [2001:db8::1]:5061)"
        ))
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host_name(host),
    };
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A SIP server: a host name, optionally with `:port`.
pub(crate) fn server(field: &str, value: &str) -> Result<()> {
    if host_name(value) || host_port(field, value).is_ok() {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} {value:?} must be a host name, optionally with :port"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["alice", "48600123456", "a.b-c_d", "ünïcode"] {
            identifier("login", ok).unwrap();
        }
        for bad in ["", "a b", "a@b", "a:b", "tab\there", &"x".repeat(65)] {
            assert!(identifier("login", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phones_and_prefixes() {
        phone("48600123456").unwrap();
        for bad in ["", "+48600", "48 600", "1234567890123456"] {
            assert!(phone(bad).is_err(), "{bad:?}");
        }
        for ok in ["", "48", "int", "onnet950"] {
            prefix(ok).unwrap();
        }
        for bad in ["4 8", "+48", "4-8", &"1".repeat(33)] {
            assert!(prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "sip.example.net:5060",
            "10.0.0.1:5061",
            "[2001:db8::1]:5060",
            "gw:1",
        ] {
            host_port("address", ok).unwrap();
        }
        for bad in [
            "sip.example.net",
            "host:0",
            "host:65536",
            ":5060",
            "2001:db8::1:5060",
            "bad_host:5060",
            "a..b:5060",
            "[nonsense]:5060",
        ] {
            assert!(host_port("address", bad).is_err(), "{bad:?}");
        }
        server("server", "sip1.example.org").unwrap();
        server("server", "sip1.example.org:5061").unwrap();
        assert!(server("server", "sip1 example").is_err());
    }
}
