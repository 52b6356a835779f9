//! RFC 6665 pieces that need no sockets: event packages, expiry rules, the
//! buddy-list URI pattern, and a subscription dialog's NOTIFY sequencing.

use crate::store::contacts::Buddy;
use crate::store::presence::StoredSubscription;

/// Event packages this notifier serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Package {
    /// RFC 3856 (and RFC 4662 lists of it).
    Presence,
    /// RFC 3842 message waiting.
    MessageSummary,
}

/// `Allow-Events` of 489 answers.
pub const ALLOW_EVENTS: &str = "presence, message-summary";

impl Package {
    pub fn as_str(self) -> &'static str {
        match self {
            Package::Presence => "presence",
            Package::MessageSummary => "message-summary",
        }
    }

    pub fn parse(s: &str) -> Option<Package> {
        match s {
            "presence" => Some(Package::Presence),
            "message-summary" => Some(Package::MessageSummary),
            _ => None,
        }
    }
}

/// An `Event` header value: the package token and its `id` parameter.
pub fn parse_event(value: &str) -> (String, Option<String>) {
    let mut parts = value.split(';');
    let package = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let id = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("id")
            .then(|| v.trim().to_string())
    });
    (package, id)
}

/// Expiry limits, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryRules {
    pub default: u32,
    pub min: u32,
    pub max: u32,
}

/// Why an Expires value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiresError {
    /// 400: not a number.
    Malformed,
    /// 423 with this Min-Expires.
    TooBrief(u32),
}

impl ExpiryRules {
    /// The granted duration for an `Expires` header (absent → the default;
    /// 0 stays 0: an unsubscribe, a fetch or a removal).
    pub fn grant(&self, header: Option<&str>) -> Result<u32, ExpiresError> {
        let asked = match header {
            None => return Ok(self.default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| ExpiresError::Malformed)?,
        };
        if asked == 0 {
            return Ok(0);
        }
        if asked < u64::from(self.min) {
            return Err(ExpiresError::TooBrief(self.min));
        }
        Ok(asked.min(u64::from(self.max)) as u32)
    }
}

/// The buddy-list URI user pattern, e.g. `{login}-buddies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPattern {
    prefix: String,
    suffix: String,
}

impl ListPattern {
    /// `None` when the pattern does not hold `{login}` exactly once.
    pub fn new(pattern: &str) -> Option<ListPattern> {
        let (prefix, suffix) = pattern.split_once("{login}")?;
        if suffix.contains("{login}") || (prefix.is_empty() && suffix.is_empty()) {
            return None;
        }
        Some(ListPattern {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The owner whose list `user` names, if it is a list URI user.
    pub fn owner<'a>(&self, user: &'a str) -> Option<&'a str> {
        let owner = user
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        (!owner.is_empty()).then_some(owner)
    }

    pub fn user_for(&self, login: &str) -> String {
        format!("{}{login}{}", self.prefix, self.suffix)
    }
}

/// How far ahead of the CSeq in use the stored floor is kept: a restart
/// resumes NOTIFYs at the floor, so they stay above anything sent before
/// (RFC 3261 §12.2.1.1) while the database is written only once per this
/// many NOTIFYs in a dialog.
pub const CSEQ_HEADROOM: i64 = 10_000;

/// One live subscription dialog.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub stored: StoredSubscription,
    pub package: Package,
    /// The CSeq of the last NOTIFY sent (also the RLMI version of lists:
    /// every NOTIFY of a list dialog carries one RLMI document).
    pub cseq: i64,
    /// The list members (list subscriptions only).
    pub buddies: Vec<Buddy>,
    /// A NOTIFY of this dialog awaits its response: the next one waits, so
    /// NOTIFYs arrive in order and a burst of changes is coalesced into the
    /// latest state (as RFC 6446 rate control would).
    pub in_flight: bool,
    /// Something changed while a NOTIFY was in flight.
    pub dirty: bool,
    /// For lists, the members that changed meanwhile.
    pub dirty_buddies: std::collections::BTreeSet<String>,
    /// The TCP/TLS connection of the watcher is gone (closed, or lost in a
    /// restart): NOTIFYs wait until its device registers again or
    /// refreshes, which brings the full state (RFC 5626 flows).
    pub detached: bool,
}

impl Subscription {
    /// A new dialog: NOTIFYs start at CSeq 1, and the floor to store is
    /// already ahead of it (so the first NOTIFYs cost no write).
    pub fn fresh(mut stored: StoredSubscription, package: Package) -> Subscription {
        stored.cseq_floor = 1 + CSEQ_HEADROOM;
        Subscription {
            cseq: 0,
            stored,
            package,
            buddies: Vec::new(),
            in_flight: false,
            dirty: false,
            dirty_buddies: Default::default(),
            detached: false,
        }
    }

    /// A dialog loaded after a restart: NOTIFYs resume at its stored floor.
    /// A watcher's connection did not survive the restart.
    pub fn reloaded(stored: StoredSubscription, package: Package) -> Subscription {
        Subscription {
            cseq: stored.cseq_floor.max(1) - 1,
            detached: !stored.transport.eq_ignore_ascii_case("udp"),
            stored,
            package,
            buddies: Vec::new(),
            in_flight: false,
            dirty: false,
            dirty_buddies: Default::default(),
        }
    }

    /// The next NOTIFY's CSeq, and a new floor to store when it reached the
    /// stored one.
    pub fn next_cseq(&mut self) -> (i64, Option<i64>) {
        self.cseq += 1;
        if self.cseq >= self.stored.cseq_floor {
            self.stored.cseq_floor = self.cseq + CSEQ_HEADROOM;
            (self.cseq, Some(self.stored.cseq_floor))
        } else {
            (self.cseq, None)
        }
    }

    pub fn key(&self) -> DialogKey {
        (self.stored.call_id.clone(), self.stored.local_tag.clone())
    }
}

/// A subscription dialog as the notifier knows it: Call-ID and its own tag.
pub type DialogKey = (String, String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        assert_eq!(parse_event("presence"), ("presence".into(), None));
        assert_eq!(
            parse_event(" Presence ;id=7"),
            ("presence".into(), Some("7".into()))
        );
        assert_eq!(
            Package::parse("message-summary"),
            Some(Package::MessageSummary)
        );
        assert_eq!(Package::parse("dialog"), None);
    }

    #[test]
    fn expiry() {
        let r = ExpiryRules {
            default: 3600,
            min: 60,
            max: 7200,
        };
        assert_eq!(r.grant(None), Ok(3600));
        assert_eq!(r.grant(Some("0")), Ok(0));
        assert_eq!(r.grant(Some("30")), Err(ExpiresError::TooBrief(60)));
        assert_eq!(r.grant(Some("99999999999")), Ok(7200));
        assert_eq!(r.grant(Some("soon")), Err(ExpiresError::Malformed));
        assert_eq!(r.grant(Some("-1")), Err(ExpiresError::Malformed));
    }

    #[test]
    fn list_pattern() {
        let p = ListPattern::new("{login}-buddies").unwrap();
        assert_eq!(p.owner("alice-buddies"), Some("alice"));
        assert_eq!(p.owner("alice"), None);
        assert_eq!(p.owner("-buddies"), None);
        assert_eq!(p.user_for("bob"), "bob-buddies");
        assert!(ListPattern::new("buddies").is_none());
        assert!(ListPattern::new("{login}").is_none());
        assert_eq!(
            ListPattern::new("bl-{login}").unwrap().owner("bl-48600"),
            Some("48600")
        );
    }

    #[test]
    fn cseq_floor_moves_ahead_once_per_headroom() {
        let stored = StoredSubscription {
            event: "presence".into(),
            watcher: "a".into(),
            resource: "b".into(),
            is_list: false,
            resource_uri: "sip:b@x".into(),
            call_id: "c".into(),
            local_tag: "t".into(),
            remote: "<sip:a@x>;tag=r".into(),
            remote_tag: "r".into(),
            target: "sip:a@1.2.3.4".into(),
            event_id: None,
            cseq_floor: 1,
            transport: "udp".into(),
            source: "1.2.3.4:5060".into(),
            local: "1.2.3.4:5061".into(),
            expires_at: 0,
        };
        let mut s = Subscription::fresh(stored.clone(), Package::Presence);
        assert_eq!(s.stored.cseq_floor, 1 + CSEQ_HEADROOM);
        assert_eq!(s.next_cseq(), (1, None));
        assert_eq!(s.next_cseq(), (2, None));
        s.cseq = CSEQ_HEADROOM - 1;
        assert_eq!(s.next_cseq(), (CSEQ_HEADROOM, None));
        assert_eq!(
            s.next_cseq(),
            (CSEQ_HEADROOM + 1, Some(1 + 2 * CSEQ_HEADROOM))
        );
        // After a restart the dialog resumes at the stored floor.
        let mut again = Subscription::reloaded(
            StoredSubscription {
                cseq_floor: 1 + CSEQ_HEADROOM,
                ..stored
            },
            Package::Presence,
        );
        assert_eq!(
            again.next_cseq(),
            (1 + CSEQ_HEADROOM, Some(1 + 2 * CSEQ_HEADROOM))
        );
    }
}
