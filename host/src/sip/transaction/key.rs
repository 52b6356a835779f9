//! Transaction keys (§17.1.3, §17.2.3) and branch generation (§8.1.1.7).

use std::hash::{Hash, Hasher};

use rand::distr::{Alphanumeric, SampleString};

use super::message::{Name, first, top_via};

/// The prefix that marks a branch as RFC 3261-compliant (§8.1.1.7): only
/// such branches are unique enough to key a transaction on.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Random characters after the cookie. 22 alphanumerics carry about 131 bits,
/// more than a UUID, so branches are unique across space and time as §8.1.1.7
/// requires without any coordination between nodes.
const BRANCH_RANDOM_LEN: usize = 22;

/// A fresh branch for a request this node sends: the magic cookie and 22
/// random alphanumerics (a SIP `token`, so it needs no quoting).
pub fn new_branch() -> String {
    let mut branch = String::with_capacity(MAGIC_COOKIE.len() + BRANCH_RANDOM_LEN);
    branch.push_str(MAGIC_COOKIE);
    Alphanumeric.append_string(&mut rand::rng(), &mut branch, BRANCH_RANDOM_LEN);
    branch
}

/// The key of a server transaction (§17.2.3): the top Via's branch and
/// sent-by, and the method, with ACK folded into INVITE.
///
/// The sent-by is part of the key because two clients may pick the same
/// branch by accident; the method because a CANCEL carries the branch of the
/// INVITE it cancels yet is a transaction of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    branch: String,
    sent_by: String,
    method: rsip::Method,
}

impl ServerKey {
    /// The top Via's branch (with the cookie).
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The top Via's sent-by, `host[:port]`, lowercased. The port is kept as
    /// written: `host` and `host:5060` are different keys, which only matters
    /// for a client that changes its own Via between retransmissions.
    pub fn sent_by(&self) -> &str {
        &self.sent_by
    }

    /// The method of the transaction: INVITE for an ACK.
    pub fn method(&self) -> rsip::Method {
        self.method
    }

    /// The key of the transaction with the same branch and sent-by and
    /// another method: a CANCEL finds the INVITE it cancels this way (§9.2).
    pub fn with_method(&self, method: rsip::Method) -> ServerKey {
        ServerKey {
            method,
            ..self.clone()
        }
    }
}

// rsip::Method has no Hash; its discriminant is exactly the identity Eq uses.
impl Hash for ServerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.branch.hash(state);
        self.sent_by.hash(state);
        std::mem::discriminant(&self.method).hash(state);
    }
}

/// The key of a client transaction (§17.1.3): the branch this node put in its
/// top Via, and the CSeq method (so the response to a CANCEL does not land in
/// the INVITE transaction it shares the branch with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    branch: String,
    method: rsip::Method,
}

impl ClientKey {
    /// The key under which the client transaction for `request` is stored,
    /// from its top Via branch and its method.
    ///
    /// `None` for an ACK (the ACK of a non-2xx belongs to the INVITE's
    /// transaction and the ACK of a 2xx has none, §17.1.1.3) and for a branch
    /// without the cookie: this node always generates its branches with
    /// [`new_branch`], so such a request was not built for a transaction.
    pub fn from_request(request: &rsip::Request) -> Option<Self> {
        if request.method == rsip::Method::Ack {
            return None;
        }
        Some(Self {
            branch: compliant_branch(&request.headers)?,
            method: request.method,
        })
    }

    /// The branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The method of the request that created the transaction.
    pub fn method(&self) -> rsip::Method {
        self.method
    }
}

impl Hash for ClientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.branch.hash(state);
        std::mem::discriminant(&self.method).hash(state);
    }
}

/// The top Via branch if it carries the magic cookie.
fn compliant_branch(headers: &rsip::Headers) -> Option<String> {
    let branch = top_via(headers)?.branch?;
    // §17.2.3 matches on the cookie exactly; a branch that is only the
    // cookie identifies nothing.
    (branch.starts_with(MAGIC_COOKIE) && branch.len() > MAGIC_COOKIE.len())
        .then(|| branch.to_owned())
}

/// The server transaction a request belongs to (§17.2.3), or `None` when the
/// request cannot be matched by RFC 3261 rules.
///
/// `None` covers a missing or unreadable top Via and a branch without the
/// `z9hG4bK` cookie. The latter is an RFC 2543 client, whose transactions
/// §17.2.3 matches by comparing Request-URI, tags, Call-ID, CSeq and the whole
/// top Via; that fallback is not supported: the caller handles such a request
/// statelessly (answers it without a transaction), which RFC 2543 clients
/// survive because they retransmit until answered.
pub fn server_key(request: &rsip::Request) -> Option<ServerKey> {
    let via = top_via(&request.headers)?;
    let branch = via.branch?;
    if !branch.starts_with(MAGIC_COOKIE) || branch.len() == MAGIC_COOKIE.len() {
        return None;
    }
    let method = match request.method {
        // §17.2.3: "the method of the request matches the one that created
        // the transaction, except for ACK, where the method of the request
        // that created the transaction is INVITE".
        rsip::Method::Ack => rsip::Method::Invite,
        m => m,
    };
    Some(ServerKey {
        branch: branch.to_owned(),
        sent_by: via.sent_by,
        method,
    })
}

/// The client transaction a response belongs to (§17.1.3): the top Via
/// branch and the CSeq method. `None` when either is missing or unreadable,
/// or the branch lacks the cookie (then it was not sent by this node, which
/// only uses [`new_branch`]); the response is then dropped, or handed to the
/// TU as a stray 2xx (§13.2.2.4, the RFC 6026 case of a retransmitted 2xx
/// after the transaction is gone).
pub fn client_key(response: &rsip::Response) -> Option<ClientKey> {
    let branch = compliant_branch(&response.headers)?;
    let method = first(&response.headers, Name::CSeq)?
        .split_whitespace()
        .nth(1)?
        .parse::<rsip::Method>()
        .ok()?;
    Some(ClientKey { branch, method })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::collections::HashSet;

    fn with_top_via(mut request: rsip::Request, via: &str) -> rsip::Request {
        request.headers.retain(|h| !Name::Via.is(h));
        let mut headers: Vec<rsip::Header> = vec![rsip::Header::Via(via.into())];
        headers.extend(request.headers);
        request.headers = headers.into();
        request
    }

    #[test]
    fn server_key_from_branch_sent_by_and_method() {
        let key = server_key(&invite()).unwrap();
        assert_eq!(key.branch(), "z9hG4bKnashds8");
        assert_eq!(key.sent_by(), "pc33.atlanta.example.com:5060");
        assert_eq!(key.method(), rsip::Method::Invite);
    }

    #[test]
    fn ack_maps_to_the_invite_key_and_cancel_has_its_own() {
        let invite_key = server_key(&invite()).unwrap();
        assert_eq!(server_key(&ack()).unwrap(), invite_key);

        let mut cancel = invite();
        cancel.method = rsip::Method::Cancel;
        let cancel_key = server_key(&cancel).unwrap();
        assert_eq!(cancel_key.branch(), invite_key.branch());
        assert_ne!(cancel_key, invite_key);

        let set: HashSet<_> = [invite_key.clone(), server_key(&ack()).unwrap(), cancel_key]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn server_key_separates_clients_that_reuse_a_branch() {
        let a = with_top_via(message(), "SIP/2.0/UDP a.example.com;branch=z9hG4bKsame");
        let b = with_top_via(message(), "SIP/2.0/UDP b.example.com;branch=z9hG4bKsame");
        assert_ne!(server_key(&a), server_key(&b));
        let a_upper = with_top_via(message(), "SIP/2.0/UDP A.EXAMPLE.COM;branch=z9hG4bKsame");
        assert_eq!(
            server_key(&a),
            server_key(&a_upper),
            "host is case-insensitive"
        );
    }

    #[test]
    fn server_key_reads_compact_and_ipv6_vias() {
        let r = with_top_via(message(), "SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bK6");
        assert_eq!(server_key(&r).unwrap().sent_by(), "[2001:db8::9]:5062");
        let mut r = message();
        r.headers.retain(|h| !Name::Via.is(h));
        let mut headers: Vec<rsip::Header> = vec![rsip::Header::Other(
            "v".into(),
            "SIP/2.0/TCP compact.example.com;branch=z9hG4bKc".into(),
        )];
        headers.extend(r.headers);
        r.headers = headers.into();
        let key = server_key(&r).unwrap();
        assert_eq!(key.branch(), "z9hG4bKc");
        assert_eq!(key.sent_by(), "compact.example.com");
    }

    #[test]
    fn rfc_2543_requests_have_no_key() {
        let old = with_top_via(message(), "SIP/2.0/UDP a.example.com;branch=1234");
        assert_eq!(server_key(&old), None);
        let none = with_top_via(message(), "SIP/2.0/UDP a.example.com");
        assert_eq!(server_key(&none), None);
        let bare = with_top_via(message(), "SIP/2.0/UDP a.example.com;branch=z9hG4bK");
        assert_eq!(server_key(&bare), None);
        let mut no_via = message();
        no_via.headers.retain(|h| !Name::Via.is(h));
        assert_eq!(server_key(&no_via), None);
    }

    #[test]
    fn client_key_of_a_response_matches_the_request() {
        let request = invite();
        let resp = response(&request, 180, Some("x"));
        let key = client_key(&resp).unwrap();
        assert_eq!(key.branch(), "z9hG4bKnashds8");
        assert_eq!(key.method(), rsip::Method::Invite);
        assert_eq!(ClientKey::from_request(&request), Some(key.clone()));

        // The 200 to a CANCEL carries the INVITE's branch but another method.
        let mut cancel = request.clone();
        cancel.method = rsip::Method::Cancel;
        cancel.headers.retain(|h| !Name::CSeq.is(h));
        cancel
            .headers
            .push(rsip::Header::CSeq("314159 CANCEL".into()));
        let cancel_key = client_key(&response(&cancel, 200, None)).unwrap();
        assert_eq!(cancel_key.branch(), key.branch());
        assert_ne!(cancel_key, key);
        assert_eq!(ClientKey::from_request(&cancel), Some(cancel_key));
    }

    #[test]
    fn client_key_refuses_what_this_node_did_not_send() {
        assert_eq!(ClientKey::from_request(&ack()), None);
        let old = with_top_via(message(), "SIP/2.0/UDP a.example.com;branch=1234");
        assert_eq!(client_key(&response(&old, 200, None)), None);
        let mut no_cseq = response(&message(), 200, None);
        no_cseq.headers.retain(|h| !Name::CSeq.is(h));
        assert_eq!(client_key(&no_cseq), None);
    }

    #[test]
    fn new_branch_is_cookie_plus_random_token() {
        let branches: HashSet<String> = (0..1000).map(|_| new_branch()).collect();
        assert_eq!(branches.len(), 1000);
        for b in &branches {
            assert!(b.starts_with(MAGIC_COOKIE));
            assert_eq!(b.len(), MAGIC_COOKIE.len() + BRANCH_RANDOM_LEN);
            assert!(b.chars().all(|c| c.is_ascii_alphanumeric()));
        }
        let r = with_top_via(message(), &format!("SIP/2.0/UDP h;branch={}", new_branch()));
        assert!(server_key(&r).is_some());
    }
}
