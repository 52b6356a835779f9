//! The registrar (RFC 3261 §10.3, RFC 5626 instance bindings): bindings per
//! account in the database, with an in-memory copy for look-ups.

use std::collections::HashMap;
use std::sync::RwLock;

use super::transport::{Flow, Proto};
use super::util::{header_value, header_values, split_list};
use crate::store::Store;
use crate::store::location::Binding;

/// Expiry limits from the configuration, seconds.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryPolicy {
    pub default: u32,
    pub min: u32,
    pub max: u32,
}

/// Why a REGISTER is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// 400 with this reason.
    Bad(&'static str),
    /// 423 Interval Too Brief; the Min-Expires value.
    TooBrief(u32),
    /// 500: the database failed; nothing was changed.
    Store(String),
}

/// What a successful REGISTER left behind.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Every live binding of the account after the change, for the 200 OK.
    pub bindings: Vec<Binding>,
    /// True when at least one binding was added or refreshed (deferred
    /// messages then go out).
    pub refreshed: bool,
    /// True when a device came or moved: a binding key that was not there,
    /// or one now reached over another flow (presence follows devices).
    pub arrived: bool,
    /// Bindings this REGISTER removed (and expired ones it swept out).
    pub removed: Vec<Binding>,
}

/// One Contact of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContactSpec {
    uri: String,
    expires: Option<u32>,
    instance: Option<String>,
    reg_id: Option<i64>,
}

/// `<uri>;p=v;q` or `uri;p=v` → the URI and its header parameters.
fn parse_contact(part: &str) -> Result<ContactSpec, RegisterError> {
    let bad = RegisterError::Bad("Bad Request - malformed Contact");
    // The first '>' after '<' closes the URI: a quoted +sip.instance value
    // later on carries angle brackets of its own.
    let close = part
        .find('<')
        .and_then(|a| part[a..].find('>').map(|b| (a, a + b)));
    let (uri, params) = match (part.find('<'), close) {
        (Some(_), Some((a, b))) => (&part[a + 1..b], &part[b + 1..]),
        (None, None) => match part.split_once(';') {
            Some((u, p)) => (u, p),
            None => (part, ""),
        },
        _ => return Err(bad),
    };
    let uri = uri.trim();
    if !(uri.starts_with("sip:") || uri.starts_with("sips:")) || uri.len() > 1024 {
        return Err(bad);
    }
    let mut spec = ContactSpec {
        uri: uri.to_string(),
        expires: None,
        instance: None,
        reg_id: None,
    };
    for param in split_params(params) {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param.trim(), None),
        };
        if name.eq_ignore_ascii_case("expires") {
            spec.expires = Some(value.and_then(|v| v.parse().ok()).ok_or(bad.clone())?);
        } else if name.eq_ignore_ascii_case("+sip.instance") {
            spec.instance = value
                .map(|v| v.trim_matches('"').to_string())
                .filter(|v| !v.is_empty() && v.len() <= 200);
        } else if name.eq_ignore_ascii_case("reg-id") {
            spec.reg_id = Some(value.and_then(|v| v.parse().ok()).ok_or(bad.clone())?);
        }
    }
    Ok(spec)
}

/// Whether a REGISTER only removes bindings (`Contact: *`, or every
/// Contact with expires 0), so a node redirecting registrations elsewhere
/// still lets a device leave where it was.
pub fn removes_only(req: &rsip::Request) -> bool {
    let header_zero = header_value(&req.headers, "Expires").is_some_and(|v| v.trim() == "0");
    let mut any = false;
    for value in header_values(&req.headers, "Contact") {
        for part in split_list(value) {
            any = true;
            if part == "*" {
                continue;
            }
            match parse_contact(part) {
                Ok(c) if c.expires == Some(0) || (c.expires.is_none() && header_zero) => {}
                _ => return false,
            }
        }
    }
    any
}

/// Splits `;a=1;b="x;y"` into `a=1`, `b="x;y"`.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

impl ContactSpec {
    /// RFC 5626 §6: with an instance id and reg-id the flow identifies the
    /// binding; otherwise the Contact URI does (RFC 3261 §10.3).
    fn binding_key(&self) -> String {
        match (&self.instance, self.reg_id) {
            (Some(instance), Some(reg_id)) => format!("{instance};reg-id={reg_id}"),
            (Some(instance), None) => instance.clone(),
            _ => self.uri.clone(),
        }
    }
}

/// Bindings in the database with a copy in memory.
pub struct Registrar {
    store: Store,
    policy: ExpiryPolicy,
    node: String,
    cache: RwLock<HashMap<String, Vec<Binding>>>,
}

impl Registrar {
    /// Loads the live bindings: a restart loses no registration. In a
    /// cluster (`only_own`), only those this node holds (its `node`): the
    /// others' flows are theirs to use.
    pub async fn load(
        store: Store,
        policy: ExpiryPolicy,
        node: String,
        only_own: bool,
    ) -> crate::store::Result<Self> {
        let mut cache: HashMap<String, Vec<Binding>> = HashMap::new();
        for b in store.live_bindings(crate::store::now_secs()).await? {
            if only_own && b.node != node {
                continue;
            }
            cache.entry(b.login.clone()).or_default().push(b);
        }
        tracing::info!(accounts = cache.len(), "registrations loaded");
        Ok(Self {
            store,
            policy,
            node,
            cache: RwLock::new(cache),
        })
    }

    /// Live bindings of a login.
    pub fn bindings(&self, login: &str, now: i64) -> Vec<Binding> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache
            .get(login)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets `login`'s bindings in memory that the database (`rows`, its
    /// live bindings) no longer gives this node: a device that registered
    /// the same binding on another node of the cluster has moved there.
    /// Returns what was forgotten.
    pub fn forget_moved(&self, login: &str, rows: &[Binding]) -> Vec<Binding> {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let Some(list) = cache.get_mut(login) else {
            return Vec::new();
        };
        let mut moved = Vec::new();
        list.retain(|b| {
            let here = rows
                .iter()
                .any(|r| r.binding_key == b.binding_key && r.node == self.node);
            if !here {
                moved.push(b.clone());
            }
            here
        });
        if list.is_empty() {
            cache.remove(login);
        }
        moved
    }

    /// Logins with at least one binding in memory.
    pub fn logins(&self) -> Vec<String> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache.keys().cloned().collect()
    }

    /// Number of accounts with at least one binding in memory.
    pub fn registered_accounts(&self) -> usize {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Applies a REGISTER from `login` (already authenticated) received on `flow`.
    pub async fn register(
        &self,
        req: &rsip::Request,
        flow: &Flow,
        login: &str,
        now: i64,
    ) -> Result<Registered, RegisterError> {
        let call_id = header_value(&req.headers, "Call-ID")
            .unwrap_or("")
            .trim()
            .to_string();
        let cseq: i64 = header_value(&req.headers, "CSeq")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or(RegisterError::Bad("Bad Request - malformed CSeq"))?;
        let header_expires: Option<u32> = match header_value(&req.headers, "Expires") {
            Some(v) => Some(
                v.trim()
                    .parse()
                    .map_err(|_| RegisterError::Bad("Bad Request - malformed Expires"))?,
            ),
            None => None,
        };
        let mut contacts = Vec::new();
        let mut star = false;
        for value in header_values(&req.headers, "Contact") {
            for part in split_list(value) {
                if part == "*" {
                    star = true;
                } else {
                    contacts.push(parse_contact(part)?);
                }
            }
        }
        // RFC 3261 §10.3 step 6: "*" only alone and only with Expires: 0.
        if star && (!contacts.is_empty() || header_expires != Some(0)) {
            return Err(RegisterError::Bad(
                "Bad Request - Contact * needs Expires: 0 and no other Contact",
            ));
        }
        let existing = self.bindings(login, now);
        let mut removals = Vec::new();
        let mut upserts = Vec::new();
        for contact in &contacts {
            let key = contact.binding_key();
            if let Some(old) = existing.iter().find(|b| b.binding_key == key)
                && old.call_id == call_id
                && old.cseq >= cseq
            {
                // §10.3 step 7: an out-of-order REGISTER of the same dialog must not win.
                return Err(RegisterError::Bad(
                    "Bad Request - CSeq not above the stored one",
                ));
            }
            let asked = contact
                .expires
                .or(header_expires)
                .unwrap_or(self.policy.default);
            if asked == 0 {
                removals.push(key);
                continue;
            }
            if asked < self.policy.min {
                return Err(RegisterError::TooBrief(self.policy.min));
            }
            let expires = asked.min(self.policy.max);
            upserts.push(Binding {
                login: login.to_string(),
                binding_key: key,
                contact: contact.uri.clone(),
                instance: contact.instance.clone(),
                reg_id: contact.reg_id,
                call_id: call_id.clone(),
                cseq,
                expires_at: now + i64::from(expires),
                transport: flow.proto.as_str().to_string(),
                source: flow.remote.to_string(),
                local: flow.local.to_string(),
                node: self.node.clone(),
                user_agent: header_value(&req.headers, "User-Agent")
                    .map(|s| s.chars().take(255).collect()),
            });
        }
        if star || !removals.is_empty() || !upserts.is_empty() {
            self.store
                .apply_registration(login, star, &removals, &upserts)
                .await
                .map_err(|e| RegisterError::Store(e.to_string()))?;
        }
        let refreshed = !upserts.is_empty();
        let arrived = upserts.iter().any(|u| {
            !existing.iter().any(|b| {
                b.binding_key == u.binding_key && b.transport == u.transport && b.source == u.source
            })
        });
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let list = cache.entry(login.to_string()).or_default();
        let mut removed = Vec::new();
        list.retain(|b| {
            let keep = b.expires_at > now && !star && !removals.contains(&b.binding_key);
            if !keep {
                removed.push(b.clone());
            }
            keep
        });
        for b in upserts {
            match list.iter_mut().find(|old| old.binding_key == b.binding_key) {
                Some(old) => *old = b,
                None => list.push(b),
            }
        }
        let bindings = list.clone();
        if list.is_empty() {
            cache.remove(login);
        }
        Ok(Registered {
            bindings,
            refreshed,
            arrived,
            removed,
        })
    }

    /// Takes the bindings expired at `now` out of memory and returns them,
    /// so that what depends on a device being registered (presence) learns
    /// it is gone. The rows stay until the store's periodic purge.
    pub fn take_expired(&self, now: i64) -> Vec<Binding> {
        let mut expired = Vec::new();
        {
            // Most seconds nothing expires: look with the read lock first.
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if !cache.values().flatten().any(|b| b.expires_at <= now) {
                return expired;
            }
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, list| {
            list.retain(|b| {
                let live = b.expires_at > now;
                if !live {
                    expired.push(b.clone());
                }
                live
            });
            !list.is_empty()
        });
        expired
    }
}

/// The flow to reach a binding: over the connection its REGISTER came on.
pub fn flow_of(binding: &Binding) -> Option<Flow> {
    Some(Flow {
        proto: Proto::parse(&binding.transport)?,
        local: binding.local.parse().ok()?,
        remote: binding.source.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {

    fn register_with(headers: &str) -> rsip::Request {
        let raw = format!(
            "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKr\r\n\
             From: <sip:a@localhost>;tag=1\r\nTo: <sip:a@localhost>\r\nCall-ID: r1\r\n\
             CSeq: 1 REGISTER\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        rsip::Request::try_from(raw.as_bytes()).unwrap()
    }

    #[test]
    fn only_a_register_that_adds_nothing_removes_only() {
        for (headers, removes) in [
            ("Contact: *\r\nExpires: 0\r\n", true),
            ("Contact: <sip:a@1.2.3.4>\r\nExpires: 0\r\n", true),
            ("Contact: <sip:a@1.2.3.4>;expires=0\r\n", true),
            (
                "Contact: <sip:a@1.2.3.4>;expires=0, <sip:a@5.6.7.8>\r\nExpires: 0\r\n",
                true,
            ),
            ("Contact: <sip:a@1.2.3.4>\r\n", false),
            (
                "Contact: <sip:a@1.2.3.4>;expires=60\r\nExpires: 0\r\n",
                false,
            ),
            (
                "Contact: <sip:a@1.2.3.4>;expires=0, <sip:a@5.6.7.8>\r\n",
                false,
            ),
            // A fetch of the bindings adds nothing, but is not a removal either.
            ("", false),
        ] {
            assert_eq!(
                removes_only(&register_with(headers)),
                removes,
                "{headers:?}"
            );
        }
    }

    use super::*;

    #[test]
    fn contacts_with_instance_and_params() {
        let c = parse_contact(r#"<sip:alice@10.0.0.2:5060;transport=tls>;expires=600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1"#)
            .unwrap();
        assert_eq!(c.uri, "sip:alice@10.0.0.2:5060;transport=tls");
        assert_eq!(c.expires, Some(600));
        assert_eq!(
            c.instance.as_deref(),
            Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
        );
        assert_eq!(c.reg_id, Some(1));
        assert_eq!(
            c.binding_key(),
            "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>;reg-id=1"
        );
        let plain = parse_contact("sip:bob@192.0.2.1:5062;expires=0").unwrap();
        assert_eq!(plain.expires, Some(0));
        assert_eq!(plain.binding_key(), "sip:bob@192.0.2.1:5062");
        assert!(parse_contact("<mailto:x@y>").is_err());
        assert!(parse_contact("<sip:a@b>;expires=soon").is_err());
        assert!(parse_contact("<sip:a@b").is_err());
    }
}
