//! Presence (SPEC §8): the switch as RFC 6665 notifier for `presence`
//! (RFC 3856, and RFC 4662 buddy lists built from address books) and
//! `message-summary` (RFC 3842), and as RFC 3903 state agent for PUBLISH.
//!
//! The protocol pieces are sans-io ([`pidf`], [`rlmi`], [`mwi`],
//! [`subscription`]); this module is the glue: it keeps the live
//! subscriptions and publications in memory (loaded from the database at
//! start, written there before any 2xx), composes each user's document from
//! its devices' publications, and sends NOTIFYs through the server's client
//! transactions over the flow each SUBSCRIBE came on.

pub mod cluster;
pub mod mwi;
pub mod pidf;
pub mod rlmi;
pub mod subscription;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rsip::headers::{self, UntypedHeader};
use rsip::{Header, Method};
use tokio::task::JoinSet;

use self::pidf::UserPresence;
use self::subscription::{
    ALLOW_EVENTS, DialogKey, ExpiresError, ExpiryRules, ListPattern, Package, Subscription,
    parse_event,
};
use super::parse::response_for;
use super::registrar::Registrar;
use super::server::{ClientOutcome, SipServer};
use super::transaction::new_branch;
use super::transport::{Flow, Proto, Transports};
use super::util::{header_value, header_values, new_tag, tag_of, user_of};
use crate::config::{PresenceConfig, WatchPolicy};
use crate::store::Store;
use crate::store::contacts::Buddy;
use crate::store::location::Binding;
use crate::store::presence::{MailboxCounts, Publication, StoredSubscription};
use crate::store::presence_shares::PresenceShare;

/// One device of a user as presence composes it: open, its note, and when
/// it last said so (Unix seconds).
type DeviceState<'a> = (bool, Option<&'a str>, i64);

/// Content type of published and notified presence documents.
const PIDF_TYPE: &str = "application/pidf+xml";
/// Content type of MWI bodies.
const MWI_TYPE: &str = "application/simple-message-summary";

/// Presence settings drawn from the configuration.
#[derive(Debug, Clone)]
pub struct PresenceSettings {
    pub list: ListPattern,
    pub open_policy: bool,
    pub subscribe: ExpiryRules,
    pub publish: ExpiryRules,
    pub mwi_poll: Duration,
}

impl PresenceSettings {
    pub fn from_config(c: &PresenceConfig) -> Self {
        Self {
            // Validated when the configuration was read.
            list: ListPattern::new(&c.list_uri_user)
                .or_else(|| ListPattern::new("{login}-buddies"))
                .expect("the built-in pattern is valid"),
            open_policy: c.watch_policy == WatchPolicy::Open,
            subscribe: ExpiryRules {
                default: c.subscribe_default_expires,
                min: c.subscribe_min_expires,
                max: c.subscribe_max_expires,
            },
            publish: ExpiryRules {
                default: c.publish_default_expires,
                min: c.publish_min_expires,
                max: c.publish_max_expires,
            },
            mwi_poll: Duration::from_millis(c.mwi_poll_ms),
        }
    }
}

/// What subscriptions are indexed by: a presentity (or list member) whose
/// document they carry, or a mailbox.
type Topic = (Package, String);

#[derive(Default)]
struct State {
    subs: HashMap<DialogKey, Subscription>,
    by_topic: HashMap<Topic, HashSet<DialogKey>>,
    /// Subscriptions per watcher login: those to move to a device's new
    /// flow when it registers again.
    by_watcher: HashMap<String, HashSet<DialogKey>>,
    /// Live publications per login.
    publications: HashMap<String, Vec<Publication>>,
    /// The last composed document per watched login, to notify only changes.
    documents: HashMap<String, UserPresence>,
    /// The last counts notified per mailbox.
    mailboxes: HashMap<String, MailboxCounts>,
    /// Logins that registered or published over each open TCP/TLS
    /// connection: whose documents to recompose when it closes.
    by_flow: HashMap<(Proto, SocketAddr), HashSet<String>>,
    /// Logins whose apps hold a push token: reachable by push even with
    /// no device registered (`<ss:push>`).
    push_tokens: HashSet<String>,
    /// Cluster mode: the other nodes' shares of users' presence, by login
    /// and node (see [`cluster`]).
    remote: HashMap<String, HashMap<String, PresenceShare>>,
    /// Cluster mode: this node's shares as last written, by login.
    shared: HashMap<String, PresenceShare>,
}

impl State {
    fn index(&mut self, sub: &Subscription) {
        let key = sub.key();
        self.by_watcher
            .entry(sub.stored.watcher.clone())
            .or_default()
            .insert(key.clone());
        if sub.stored.is_list {
            for b in &sub.buddies {
                self.by_topic
                    .entry((Package::Presence, b.login.clone()))
                    .or_default()
                    .insert(key.clone());
            }
        } else {
            self.by_topic
                .entry((sub.package, sub.stored.resource.clone()))
                .or_default()
                .insert(key);
        }
    }

    fn unindex(&mut self, sub: &Subscription) {
        let key = sub.key();
        if let Some(set) = self.by_watcher.get_mut(&sub.stored.watcher) {
            set.remove(&key);
            if set.is_empty() {
                self.by_watcher.remove(&sub.stored.watcher);
            }
        }
        let topics: Vec<Topic> = if sub.stored.is_list {
            sub.buddies
                .iter()
                .map(|b| (Package::Presence, b.login.clone()))
                .collect()
        } else {
            vec![(sub.package, sub.stored.resource.clone())]
        };
        for topic in topics {
            if let Some(set) = self.by_topic.get_mut(&topic) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_topic.remove(&topic);
                }
            }
        }
    }

    fn insert(&mut self, sub: Subscription) {
        self.index(&sub);
        self.subs.insert(sub.key(), sub);
    }

    fn remove(&mut self, key: &DialogKey) -> Option<Subscription> {
        let sub = self.subs.remove(key)?;
        self.unindex(&sub);
        Some(sub)
    }
}

/// The presence service of one switch node.
pub struct Presence {
    settings: PresenceSettings,
    domain: String,
    store: Store,
    registrar: Arc<Registrar>,
    /// Which TCP/TLS connections are open: a device over a closed one is
    /// not there (RFC 5626 flow failure).
    transports: Arc<Transports>,
    state: Mutex<State>,
    /// The newest account id seen: accounts created after it may join
    /// buddy lists (SPEC §5: a contact who becomes a user).
    last_account: AtomicI64,
    /// The newest address-book change applied.
    last_contact_change: AtomicI64,
    /// Cluster mode: users' devices on other nodes count too.
    cluster: OnceLock<Arc<crate::cluster::Cluster>>,
}

/// How long address-book changes are kept for the nodes to apply.
const CONTACT_CHANGES_KEPT: i64 = 600;

/// How often new accounts are looked for in watched buddy lists. The
/// accounts come from the API, the CLI or another node, so the switch asks
/// the database; one indexed query per period.
const NEW_USERS_POLL: Duration = Duration::from_secs(2);

/// A NOTIFY ready to go.
struct Outgoing {
    key: DialogKey,
    flow: Flow,
    request: rsip::Request,
}

/// What a NOTIFY carries.
enum Content<'a> {
    /// Nothing: the watcher is no longer allowed to see the document.
    Empty,
    /// One presentity's document.
    Pidf(&'a UserPresence),
    /// A buddy list: full state, or only the members given.
    List {
        full: bool,
        members: &'a [(&'a Buddy, Option<&'a UserPresence>)],
    },
    Mwi(MailboxCounts),
}

impl Presence {
    /// Loads the subscriptions and publications a previous run left: a
    /// restart keeps them.
    pub async fn load(
        settings: PresenceSettings,
        domain: String,
        store: Store,
        registrar: Arc<Registrar>,
        transports: Arc<Transports>,
    ) -> crate::store::Result<Presence> {
        let now = crate::store::now_secs();
        let mut state = State::default();
        for p in store.live_publications(now).await? {
            state
                .publications
                .entry(p.login.clone())
                .or_default()
                .push(p);
        }
        state.push_tokens = store.logins_with_push_tokens().await?.into_iter().collect();
        let stored = store.subscriptions().await?;
        let count = stored.len();
        for s in stored {
            let Some(package) = Package::parse(&s.event) else {
                continue;
            };
            let is_list = s.is_list;
            let owner = s.resource.clone();
            let mut sub = Subscription::reloaded(s, package);
            if is_list {
                sub.buddies = store.buddies(&owner).await?;
            }
            state.insert(sub);
        }
        tracing::info!(
            subscriptions = count,
            publications = state.publications.len(),
            "presence state loaded"
        );
        let last_account = store.last_account_id().await?;
        let last_contact_change = store.last_contact_change_id().await?;
        Ok(Presence {
            settings,
            domain,
            store,
            registrar,
            transports,
            state: Mutex::new(state),
            last_account: AtomicI64::new(last_account),
            last_contact_change: AtomicI64::new(last_contact_change),
            cluster: OnceLock::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscriptions alive now.
    pub fn subscription_count(&self) -> usize {
        self.lock().subs.len()
    }

    fn uri_of(&self, login: &str) -> String {
        format!("sip:{login}@{}", self.domain)
    }

    /// Whether a device last seen over `transport`/`source` is still
    /// there. Over TCP/TLS only while that connection is open: a closed one
    /// is a failed flow (RFC 5626), and a restart closes them all. Over UDP
    /// (or unknown, for rows older than the flow columns) the expiry of the
    /// binding or publication decides.
    fn attached(&self, transport: Option<&str>, source: Option<&str>) -> bool {
        match (
            transport.and_then(Proto::parse),
            source.and_then(|s| s.parse::<SocketAddr>().ok()),
        ) {
            (Some(proto), Some(remote)) if proto.is_stream() => {
                self.transports.has_connection(proto, remote)
            }
            _ => true,
        }
    }

    /// SPEC §8 per user: the devices are the publications still attached
    /// to their device, plus each registered device that published nothing
    /// (it takes calls and messages now, so it counts as open). Push
    /// reachability comes from bindings registered with RFC 8599 push
    /// parameters, which stay usable after their connection is gone. There
    /// is no push-token table yet (SPEC §9 "tokens are stored per device
    /// instance"); when it comes, a token counts here as a push parameter
    /// does.
    fn compose_locked(&self, state: &State, login: &str, avatar: Option<i64>) -> UserPresence {
        let (mut devices, mut push_capable) = self.local_devices(state, login);
        push_capable |= state.push_tokens.contains(login);
        if let Some(cluster) = self.cluster.get() {
            // Shares of live nodes only: a dead node's devices are gone.
            for (node, share) in state.remote.get(login).into_iter().flatten() {
                if cluster.peer(node).is_some() {
                    devices.push((share.online, share.note.as_deref(), share.note_at));
                    push_capable |= share.push;
                }
            }
        }
        UserPresence::compose(&devices, push_capable, avatar)
    }

    /// The devices of `login` this node holds, as `(open, note,
    /// updated_at)`, and whether one registered with push parameters.
    fn local_devices<'a>(&self, state: &'a State, login: &str) -> (Vec<DeviceState<'a>>, bool) {
        let now = crate::store::now_secs();
        let publications: Vec<&Publication> = state
            .publications
            .get(login)
            .into_iter()
            .flatten()
            .filter(|p| {
                p.expires_at > now && self.attached(p.transport.as_deref(), p.source.as_deref())
            })
            .collect();
        let mut devices: Vec<DeviceState> = publications
            .iter()
            .map(|p| (p.open, p.note.as_deref(), p.updated_at))
            .collect();
        let bindings = self.registrar.bindings(login, now);
        for b in &bindings {
            let published = publications.iter().any(|p| {
                p.transport.as_deref() == Some(b.transport.as_str())
                    && p.source.as_deref() == Some(b.source.as_str())
            });
            if !published && self.attached(Some(&b.transport), Some(&b.source)) {
                devices.push((true, None, 0));
            }
        }
        let push = bindings.iter().any(|b| {
            let c = b.contact.to_ascii_lowercase();
            c.contains(";pn-provider=") || c.contains(";pn-prid=")
        });
        (devices, push)
    }

    /// The flow a NOTIFY of `sub` goes over: the one its SUBSCRIBE (or last
    /// refresh) came on while that is open; when that TCP/TLS connection is
    /// gone (the watcher reconnected, or the switch restarted), the flow the
    /// same device (same Contact) has registered over since, as RFC 5626
    /// reaches a device over its current flow. `None` while the device has
    /// no open flow: the subscription waits for it (see [`Self::device_back`]).
    fn flow_for(&self, sub: &mut Subscription) -> Option<Flow> {
        let stored = Flow {
            proto: Proto::parse(&sub.stored.transport)?,
            local: sub.stored.local.parse().ok()?,
            remote: sub.stored.source.parse().ok()?,
        };
        if stored.proto == Proto::Udp
            || (!sub.detached && self.transports.has_connection(stored.proto, stored.remote))
        {
            return Some(stored);
        }
        let target = uri_core(&sub.stored.target);
        let flow = self
            .registrar
            .bindings(&sub.stored.watcher, crate::store::now_secs())
            .iter()
            .filter(|b| uri_core(&b.contact) == target)
            .filter_map(super::registrar::flow_of)
            .find(|f| f.proto == Proto::Udp || self.transports.has_connection(f.proto, f.remote));
        let Some(flow) = flow else {
            sub.detached = true;
            return None;
        };
        sub.stored.transport = flow.proto.as_str().to_string();
        sub.stored.source = flow.remote.to_string();
        sub.stored.local = flow.local.to_string();
        sub.detached = false;
        let store = self.store.clone();
        let (call_id, tag) = sub.key();
        tokio::spawn(async move {
            if let Err(e) = store
                .move_subscription_flow(
                    &call_id,
                    &tag,
                    flow.proto.as_str(),
                    &flow.remote.to_string(),
                    &flow.local.to_string(),
                )
                .await
            {
                tracing::warn!(error = %e, call_id, "subscription's new flow not stored");
            }
        });
        tracing::debug!(call_id = sub.stored.call_id, remote = %flow.remote, "subscription follows its watcher to a new flow");
        Some(flow)
    }

    /// Builds a NOTIFY for one subscription (the caller holds the lock).
    fn build_notify(
        &self,
        sub: &mut Subscription,
        terminated: Option<&str>,
        content: Content<'_>,
        now: i64,
    ) -> Option<Outgoing> {
        let flow = self.flow_for(sub)?;
        let (cseq, new_floor) = sub.next_cseq();
        if let Some(floor) = new_floor {
            let store = self.store.clone();
            let (call_id, tag) = sub.key();
            tokio::spawn(async move {
                if let Err(e) = store
                    .set_subscription_cseq_floor(&call_id, &tag, floor)
                    .await
                {
                    tracing::warn!(error = %e, call_id, "subscription CSeq floor not stored");
                }
            });
        }
        let s = &sub.stored;
        let (content_type, body, list) = match content {
            Content::Empty => (String::new(), String::new(), false),
            Content::Pidf(doc) => (
                PIDF_TYPE.to_string(),
                doc.to_pidf(&s.resource_uri, &s.resource),
                false,
            ),
            Content::List { full, members } => {
                let members: Vec<rlmi::Member<'_>> = members
                    .iter()
                    .map(|(b, state)| rlmi::Member {
                        uri: self.uri_of(&b.login),
                        login: &b.login,
                        name: b.name.as_deref(),
                        state: *state,
                    })
                    .collect();
                let built = rlmi::build(
                    &s.resource_uri,
                    u32::try_from(cseq).unwrap_or(u32::MAX),
                    full,
                    &members,
                    &self.domain,
                    &format!("rlmi-{}", new_tag()),
                );
                (built.content_type, built.body, true)
            }
            Content::Mwi(counts) => (
                MWI_TYPE.to_string(),
                mwi::summary(&self.uri_of(&s.resource), counts),
                false,
            ),
        };
        let sub_state = match terminated {
            Some(reason) => format!("terminated;reason={reason}"),
            None => format!("active;expires={}", (s.expires_at - now).max(0)),
        };
        let event = match &s.event_id {
            Some(id) => format!("{};id={id}", s.event),
            None => s.event.clone(),
        };
        let uri = rsip::Uri::try_from(s.target.as_str()).ok()?;
        let mut hs: Vec<Header> = vec![
            Header::Via(headers::Via::new(format!(
                "SIP/2.0/{} {};branch={};rport",
                flow.proto.via_name(),
                flow.local,
                new_branch()
            ))),
            Header::MaxForwards(headers::MaxForwards::new("70")),
            Header::From(headers::From::new(format!(
                "<{}>;tag={}",
                s.resource_uri, s.local_tag
            ))),
            Header::To(headers::To::new(s.remote.clone())),
            Header::CallId(headers::CallId::new(s.call_id.clone())),
            Header::CSeq(headers::CSeq::new(format!("{cseq} NOTIFY"))),
            Header::Contact(headers::Contact::new(our_contact(&flow))),
            Header::Event(headers::Event::new(event)),
            Header::SubscriptionState(headers::SubscriptionState::new(sub_state)),
        ];
        if list {
            // RFC 4662 §5.2: list NOTIFYs carry Require: eventlist.
            hs.push(Header::Require(headers::Require::new("eventlist")));
        }
        if !content_type.is_empty() {
            hs.push(Header::ContentType(headers::ContentType::new(content_type)));
        }
        hs.push(Header::ContentLength(headers::ContentLength::from(
            body.len() as u32,
        )));
        Some(Outgoing {
            key: sub.key(),
            flow,
            request: rsip::Request {
                method: Method::Notify,
                uri,
                version: rsip::Version::V2,
                headers: hs.into(),
                body: body.into_bytes(),
            },
        })
    }

    /// Sends NOTIFYs concurrently and waits for their responses; a watcher
    /// that answers 481, times out or cannot be reached loses its
    /// subscription (RFC 6665 §4.2.2). With `then_pending`, each dialog
    /// then goes on with what changed while its NOTIFY was in flight.
    /// Returns how many got a 2xx.
    async fn send_all(
        server: &Arc<SipServer>,
        outgoing: Vec<Outgoing>,
        then_pending: bool,
    ) -> usize {
        let mut set = JoinSet::new();
        for o in outgoing {
            let server = server.clone();
            set.spawn(async move {
                let key = o.key.clone();
                let ok = Self::send_one(&server, o).await;
                if then_pending && ok.is_some() {
                    Self::spawn_pending(server, key);
                }
                ok == Some(true)
            });
        }
        let mut ok = 0;
        while let Some(done) = set.join_next().await {
            if let Ok(true) = done {
                ok += 1;
            }
        }
        ok
    }

    /// One NOTIFY: `Some(2xx?)` while the subscription lives on, `None`
    /// when the answer ended it.
    async fn send_one(server: &Arc<SipServer>, o: Outgoing) -> Option<bool> {
        let outcome = server.request(o.flow, o.request).await;
        let (ok, gone) = match &outcome {
            ClientOutcome::Response(r) => {
                let code = r.status_code.code();
                (
                    (200..300).contains(&code),
                    matches!(
                        code,
                        404 | 405
                            | 408
                            | 410
                            | 416
                            | 480
                            | 481
                            | 482
                            | 483
                            | 484
                            | 485
                            | 489
                            | 501
                            | 604
                    ),
                )
            }
            ClientOutcome::TransportError if o.flow.proto != Proto::Udp => {
                // The connection closed under the NOTIFY: the watcher is
                // reconnecting, not refusing (RFC 5626). The subscription
                // waits for its device's new flow, which gets the full state.
                if let Some(p) = server.presence() {
                    p.park(&o.key);
                }
                return None;
            }
            ClientOutcome::Timeout | ClientOutcome::TransportError => (false, true),
        };
        if gone {
            if let Some(p) = server.presence() {
                tracing::debug!(
                    call_id = o.key.0,
                    ?outcome,
                    "watcher gone: subscription removed"
                );
                p.forget(&o.key).await;
            }
            return None;
        }
        Some(ok)
    }

    /// Sends a dialog's pending change once its NOTIFY in flight is answered,
    /// and so on until nothing is pending.
    fn spawn_pending(server: Arc<SipServer>, key: DialogKey) {
        tokio::spawn(async move {
            loop {
                let Some(next) = server.presence().and_then(|p| p.next_pending(&key)) else {
                    return;
                };
                if Self::send_one(&server, next).await.is_none() {
                    return;
                }
            }
        });
    }

    /// Frees the dialog, or builds the NOTIFY for what changed meanwhile
    /// from the latest state (keeping the dialog busy).
    fn next_pending(&self, key: &DialogKey) -> Option<Outgoing> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let sub = state.subs.get_mut(key)?;
        if !sub.dirty {
            sub.in_flight = false;
            return None;
        }
        sub.dirty = false;
        let changed = std::mem::take(&mut sub.dirty_buddies);
        let now = crate::store::now_secs();
        let built = match sub.package {
            Package::MessageSummary => {
                let counts = state
                    .mailboxes
                    .get(&sub.stored.resource)
                    .copied()
                    .unwrap_or_default();
                self.build_notify(sub, None, Content::Mwi(counts), now)
            }
            Package::Presence if sub.stored.is_list => {
                let members: Vec<Buddy> = sub
                    .buddies
                    .iter()
                    .filter(|b| changed.contains(&b.login))
                    .cloned()
                    .collect();
                let docs: Vec<Option<&UserPresence>> = members
                    .iter()
                    .map(|b| state.documents.get(&b.login))
                    .collect();
                let pairs: Vec<(&Buddy, Option<&UserPresence>)> =
                    members.iter().zip(docs).collect();
                self.build_notify(
                    sub,
                    None,
                    Content::List {
                        full: false,
                        members: &pairs,
                    },
                    now,
                )
            }
            Package::Presence => match state.documents.get(&sub.stored.resource) {
                Some(doc) => self.build_notify(sub, None, Content::Pidf(doc), now),
                None => None,
            },
        };
        if built.is_none() {
            sub.in_flight = false;
        }
        built
    }

    /// Remembers that `login` uses a TCP/TLS connection, so that its
    /// closing is applied to what the login has there.
    fn watch_flow(&self, flow: &Flow, login: &str) {
        if flow.proto != Proto::Udp {
            self.lock()
                .by_flow
                .entry((flow.proto, flow.remote))
                .or_default()
                .insert(login.to_string());
        }
    }

    /// A subscription whose flow is gone: nothing in flight any more; it is
    /// sent its full state when its device is back.
    fn park(&self, key: &DialogKey) {
        if let Some(sub) = self.lock().subs.get_mut(key) {
            sub.in_flight = false;
            sub.dirty = false;
            sub.dirty_buddies.clear();
            sub.detached = true;
            tracing::debug!(
                call_id = key.0,
                "watcher's connection gone: subscription waits for it"
            );
        }
    }

    /// A REGISTER from `login` over `flow` went through. Presence follows
    /// registrations: the documents of devices whose binding went are
    /// removed, a device that came counts as online, and a watcher's device
    /// back on a new flow gets its waiting subscriptions' state.
    pub async fn registration_changed(
        server: &Arc<SipServer>,
        login: String,
        flow: Flow,
        arrived: bool,
        removed: Vec<Binding>,
    ) {
        let Some(this) = server.presence() else {
            return;
        };
        // A REGISTER over a connection not seen before is a device that
        // came back, even from the same address and port (a client bound
        // to its port reconnects from it).
        let fresh_flow = flow.proto != Proto::Udp
            && this
                .lock()
                .by_flow
                .entry((flow.proto, flow.remote))
                .or_default()
                .insert(login.clone());
        let arrived = arrived || fresh_flow;
        if !arrived && removed.is_empty() {
            // A refresh over a known connection: nothing moved.
            return;
        }
        this.devices_gone(&login, &removed).await;
        Self::document_changed(server, &login).await;
        if arrived {
            Self::device_back(server, &login).await;
        }
    }

    /// Bindings that went (un-REGISTER, expiry): the device behind each is
    /// gone, and so are the documents it published over the same flow,
    /// unless another binding of the login still uses that flow. Without
    /// this a document outlives its device: a phone that quits removes the
    /// one publication it knows of, but a client may hold more than one
    /// (baresip 1.0 sends two initial PUBLISHes when it starts).
    async fn devices_gone(&self, login: &str, removed: &[Binding]) {
        if removed.is_empty() {
            return;
        }
        let live = self.registrar.bindings(login, crate::store::now_secs());
        let mut flows: Vec<(&str, &str)> = removed
            .iter()
            .filter(|b| {
                !live
                    .iter()
                    .any(|l| l.transport == b.transport && l.source == b.source)
            })
            .map(|b| (b.transport.as_str(), b.source.as_str()))
            .collect();
        flows.sort_unstable();
        flows.dedup();
        for (transport, source) in flows {
            {
                let mut state = self.lock();
                if let Some(list) = state.publications.get_mut(login) {
                    list.retain(|p| {
                        !(p.transport.as_deref() == Some(transport)
                            && p.source.as_deref() == Some(source))
                    });
                    if list.is_empty() {
                        state.publications.remove(login);
                    }
                }
            }
            match self
                .store
                .delete_publications_of_flow(login, transport, source)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(
                    login,
                    transport,
                    source,
                    publications = n,
                    "device gone: its publications removed"
                ),
                // The row expires on its own; memory already forgot it.
                Err(e) => tracing::warn!(error = %e, login, "publication removal not stored"),
            }
        }
    }

    /// A TCP/TLS connection closed: the devices that registered or published
    /// over it are not there any more, so their users' documents are
    /// recomposed; watchers on it wait for their device to come back.
    pub async fn flow_closed(server: &Arc<SipServer>, flow: Flow) {
        let Some(this) = server.presence() else {
            return;
        };
        let logins = this
            .lock()
            .by_flow
            .remove(&(flow.proto, flow.remote))
            .unwrap_or_default();
        {
            // Watchers on it: their NOTIFYs wait for the device to be back.
            let mut guard = this.lock();
            let state = &mut *guard;
            let (proto, remote) = (flow.proto.as_str(), flow.remote.to_string());
            for login in &logins {
                for key in state.by_watcher.get(login).into_iter().flatten() {
                    if let Some(sub) = state.subs.get_mut(key)
                        && sub.stored.transport == proto
                        && sub.stored.source == remote
                    {
                        sub.detached = true;
                    }
                }
            }
        }
        for login in logins {
            tracing::debug!(login, remote = %flow.remote, "connection closed: document recomposed");
            Self::document_changed(server, &login).await;
        }
    }

    /// `login` registered a device over a new flow: its subscriptions whose
    /// own flow is gone (it reconnected, or the switch restarted) follow it
    /// there and are sent their full state, which covers what changed while
    /// they could not be reached.
    async fn device_back(server: &Arc<SipServer>, login: &str) {
        let Some(this) = server.presence() else {
            return;
        };
        let waiting: Vec<DialogKey> = {
            let state = this.lock();
            state
                .by_watcher
                .get(login)
                .into_iter()
                .flatten()
                .filter(|k| state.subs.get(*k).is_some_and(|sub| sub.detached))
                .cloned()
                .collect()
        };
        for key in waiting {
            let moved = {
                let mut state = this.lock();
                state
                    .subs
                    .get_mut(&key)
                    .and_then(|sub| this.flow_for(sub))
                    .is_some()
            };
            if moved {
                Self::notify_full(server, key, None).await;
            }
        }
    }

    /// Applies the address-book changes made since the last look (by the
    /// CLI, the API or another node): a changed book's watched buddy lists
    /// are sent again in full, and a watcher removed from a user's book
    /// loses its subscription to that user (RFC 6665 `rejected`: the
    /// authorization that allowed it is gone).
    async fn apply_contact_changes(server: &Arc<SipServer>) {
        let Some(this) = server.presence() else {
            return;
        };
        let after = this.last_contact_change.load(Ordering::Relaxed);
        let changes = match this.store.contact_changes_after(after, 1000).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "address-book changes unavailable");
                return;
            }
        };
        let Some(newest) = changes.last().map(|c| c.id) else {
            return;
        };
        this.last_contact_change.store(newest, Ordering::Relaxed);
        let mut owners: Vec<&str> = changes.iter().map(|c| c.owner.as_str()).collect();
        owners.sort_unstable();
        owners.dedup();
        let mut revoked: Vec<&str> = changes
            .iter()
            .filter(|c| c.removed)
            .map(|c| c.owner.as_str())
            .collect();
        revoked.sort_unstable();
        revoked.dedup();
        let watching: Vec<(DialogKey, String, String)> = {
            let state = this.lock();
            if this.settings.open_policy {
                Vec::new()
            } else {
                revoked
                    .iter()
                    .flat_map(|owner| {
                        state
                            .by_topic
                            .get(&(Package::Presence, owner.to_string()))
                            .into_iter()
                            .flatten()
                    })
                    .filter_map(|k| state.subs.get(k))
                    .filter(|s| !s.stored.is_list && s.stored.watcher != s.stored.resource)
                    .map(|s| (s.key(), s.stored.resource.clone(), s.stored.watcher.clone()))
                    .collect()
            }
        };
        for (key, owner, watcher) in watching {
            match this.store.has_in_address_book(&owner, &watcher).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(
                        watcher,
                        presentity = owner,
                        "watcher left the presentity's address book: subscription rejected"
                    );
                    Self::notify_full(server, key, Some("rejected")).await;
                }
                Err(e) => tracing::warn!(error = %e, "address book look-up failed"),
            }
        }
        Self::resend_changed_lists(server, &owners, "address book changed").await;
    }

    /// Removes a subscription without a NOTIFY.
    async fn forget(&self, key: &DialogKey) {
        self.lock().remove(key);
        if let Err(e) = self.store.delete_subscription(&key.0, &key.1).await {
            tracing::warn!(error = %e, "subscription removal not stored");
        }
    }

    /// Recomposes `login`'s document and notifies its watchers (direct ones
    /// with the document, list ones with a partial RLMI) when it changed.
    pub async fn document_changed(server: &Arc<SipServer>, login: &str) {
        let Some(this) = server.presence() else {
            return;
        };
        this.share(login).await;
        {
            // Registrations call this often: skip the avatar look-up when
            // nobody watches (the document is composed afresh for the
            // first watcher anyway).
            let mut state = this.lock();
            if !state
                .by_topic
                .contains_key(&(Package::Presence, login.to_string()))
            {
                state.documents.remove(login);
                return;
            }
        }
        let started = Instant::now();
        // A token registered or deleted (the API, a REGISTER) comes this way.
        match this.store.push_tokens(login).await {
            Ok(tokens) if tokens.is_empty() => {
                this.lock().push_tokens.remove(login);
            }
            Ok(_) => {
                this.lock().push_tokens.insert(login.to_string());
            }
            Err(e) => tracing::warn!(error = %e, login, "push tokens unavailable for presence"),
        }
        let avatar = match this.store.avatar_updated_at(login).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, login, "avatar timestamp unavailable");
                None
            }
        };
        let now = crate::store::now_secs();
        let outgoing = {
            let mut guard = this.lock();
            let state = &mut *guard;
            let doc = this.compose_locked(state, login, avatar);
            if state.documents.get(login) == Some(&doc) {
                return;
            }
            let Some(keys) = state.by_topic.get(&(Package::Presence, login.to_string())) else {
                // Nobody watches: no need to remember the document either.
                state.documents.remove(login);
                return;
            };
            let keys: Vec<DialogKey> = keys.iter().cloned().collect();
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let Some(sub) = state.subs.get_mut(&key) else {
                    continue;
                };
                if sub.in_flight {
                    sub.dirty = true;
                    if sub.stored.is_list {
                        sub.dirty_buddies.insert(login.to_string());
                    }
                    continue;
                }
                let built = if sub.stored.is_list {
                    let Some(buddy) = sub.buddies.iter().find(|b| b.login == login).cloned() else {
                        continue;
                    };
                    let members = [(&buddy, Some(&doc))];
                    this.build_notify(
                        sub,
                        None,
                        Content::List {
                            full: false,
                            members: &members,
                        },
                        now,
                    )
                } else {
                    this.build_notify(sub, None, Content::Pidf(&doc), now)
                };
                sub.in_flight = built.is_some();
                out.extend(built);
            }
            state.documents.insert(login.to_string(), doc);
            out
        };
        let watchers = outgoing.len();
        let built_ms = started.elapsed().as_secs_f64() * 1000.0;
        let notified = Self::send_all(server, outgoing, true).await;
        // From the change to the last watcher's answer: what bench/presence.sh reports.
        tracing::info!(
            login,
            watchers,
            notified,
            built_ms,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "presence change notified"
        );
    }

    /// Sends one subscription its full state (initial NOTIFY, refresh), or
    /// a terminating NOTIFY with `reason`.
    async fn notify_full(server: &Arc<SipServer>, key: DialogKey, terminated: Option<&str>) {
        let Some(this) = server.presence() else {
            return;
        };
        let Some((package, is_list, resource)) = this
            .lock()
            .subs
            .get(&key)
            .map(|s| (s.package, s.stored.is_list, s.stored.resource.clone()))
        else {
            return;
        };
        let now = crate::store::now_secs();
        let outgoing = match (package, is_list) {
            (Package::MessageSummary, _) => {
                let counts = match this.store.mailbox_counts(&resource).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, login = resource, "mailbox counts unavailable");
                        return;
                    }
                };
                let mut state = this.lock();
                state.mailboxes.insert(resource.clone(), counts);
                state
                    .subs
                    .get_mut(&key)
                    .and_then(|sub| {
                        let built = this.build_notify(sub, terminated, Content::Mwi(counts), now);
                        sub.in_flight = built.is_some();
                        built
                    })
                    .into_iter()
                    .collect()
            }
            (Package::Presence, true) => {
                // The list is the address book as it is now: entries that
                // became service users since the last NOTIFY join it.
                let buddies = match this.store.buddies(&resource).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, owner = resource, "buddy list unavailable");
                        return;
                    }
                };
                let mut guard = this.lock();
                let state = &mut *guard;
                let Some(mut sub) = state.remove(&key) else {
                    return;
                };
                // Re-index under the new membership.
                sub.buddies = buddies.clone();
                let docs: Vec<UserPresence> = buddies
                    .iter()
                    .map(|b| this.compose_locked(state, &b.login, b.avatar_updated_at))
                    .collect();
                let mut out = Vec::new();
                if terminated.is_some() {
                    // The last word lists the members without their documents.
                    let members: Vec<(&Buddy, Option<&UserPresence>)> =
                        buddies.iter().map(|b| (b, None)).collect();
                    let content = Content::List {
                        full: true,
                        members: &members,
                    };
                    out.extend(this.build_notify(&mut sub, terminated, content, now));
                } else {
                    let budget = body_budget(&sub.stored.transport);
                    let chunks = chunk_members(&buddies, &docs, budget, |b, d| {
                        d.to_pidf(&this.uri_of(&b.login), &b.login).len()
                    });
                    for (i, range) in chunks.into_iter().enumerate() {
                        // The first NOTIFY is the full state: every member
                        // listed, documents for those that fit; the rest
                        // follow as partial NOTIFYs (RFC 4662 §5.2 allows a
                        // resource listed without an instance).
                        let members: Vec<(&Buddy, Option<&UserPresence>)> = if i == 0 {
                            buddies
                                .iter()
                                .zip(docs.iter())
                                .enumerate()
                                .map(|(j, (b, d))| (b, range.contains(&j).then_some(d)))
                                .collect()
                        } else {
                            buddies[range.clone()]
                                .iter()
                                .zip(docs[range].iter().map(Some))
                                .collect()
                        };
                        let content = Content::List {
                            full: i == 0,
                            members: &members,
                        };
                        out.extend(this.build_notify(&mut sub, None, content, now));
                    }
                }
                for (b, d) in buddies.iter().zip(docs) {
                    state.documents.insert(b.login.clone(), d);
                }
                if terminated.is_none() {
                    sub.in_flight = !out.is_empty();
                    state.insert(sub);
                }
                out
            }
            (Package::Presence, false) => {
                let avatar = this
                    .store
                    .avatar_updated_at(&resource)
                    .await
                    .unwrap_or(None);
                let mut guard = this.lock();
                let state = &mut *guard;
                let doc = this.compose_locked(state, &resource, avatar);
                state.documents.insert(resource.clone(), doc.clone());
                state
                    .subs
                    .get_mut(&key)
                    .and_then(|sub| {
                        // A watcher no longer allowed to see the document
                        // is not sent it in the last word either.
                        let content = if terminated == Some("rejected") {
                            Content::Empty
                        } else {
                            Content::Pidf(&doc)
                        };
                        let built = this.build_notify(sub, terminated, content, now);
                        sub.in_flight = built.is_some();
                        built
                    })
                    .into_iter()
                    .collect()
            }
        };
        if terminated.is_some() {
            this.forget(&key).await;
        }
        Self::send_in_order(server, outgoing).await;
    }

    /// Sends one dialog's NOTIFYs one after the other, so they arrive in
    /// CSeq (and RLMI version) order; stops at the first failure, which
    /// ends the subscription.
    async fn send_in_order(server: &Arc<SipServer>, outgoing: Vec<Outgoing>) {
        let Some(key) = outgoing.first().map(|o| o.key.clone()) else {
            return;
        };
        for o in outgoing {
            if Self::send_one(server, o).await.is_none() {
                return;
            }
        }
        Self::spawn_pending(server.clone(), key);
    }

    /// Tells MWI watchers of `login` the new counts (the voicemail engine
    /// calls this after writing the table; other writers are caught by the
    /// poll).
    pub async fn mailbox_changed(server: &Arc<SipServer>, login: &str) {
        let Some(this) = server.presence() else {
            return;
        };
        let counts = match this.store.mailbox_counts(login).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, login, "mailbox counts unavailable");
                return;
            }
        };
        let now = crate::store::now_secs();
        let outgoing: Vec<Outgoing> = {
            let mut guard = this.lock();
            let state = &mut *guard;
            if state.mailboxes.get(login) == Some(&counts) {
                return;
            }
            state.mailboxes.insert(login.to_string(), counts);
            let keys: Vec<DialogKey> = state
                .by_topic
                .get(&(Package::MessageSummary, login.to_string()))
                .map(|k| k.iter().cloned().collect())
                .unwrap_or_default();
            let mut out = Vec::with_capacity(keys.len());
            for k in &keys {
                if let Some(sub) = state.subs.get_mut(k) {
                    if sub.in_flight {
                        sub.dirty = true;
                        continue;
                    }
                    let built = this.build_notify(sub, None, Content::Mwi(counts), now);
                    sub.in_flight = built.is_some();
                    out.extend(built);
                }
            }
            out
        };
        tracing::debug!(
            login,
            new = counts.new,
            old = counts.old,
            "mailbox change notified"
        );
        Self::send_all(server, outgoing, true).await;
    }

    /// Accounts created since the last look that are in the address book
    /// of someone watching their buddy list: those lists are read again and
    /// sent in full.
    async fn new_users_join_lists(server: &Arc<SipServer>) {
        let Some(this) = server.presence() else {
            return;
        };
        let after = this.last_account.load(Ordering::Relaxed);
        let fresh = match this.store.accounts_after(after, 1000).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "new accounts unavailable");
                return;
            }
        };
        let Some(newest) = fresh.last().map(|a| a.0) else {
            return;
        };
        this.last_account.store(newest, Ordering::Relaxed);
        let logins: Vec<String> = fresh.into_iter().map(|a| a.1).collect();
        let owners = match this.store.owners_knowing(&logins).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "address books unavailable");
                return;
            }
        };
        let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
        Self::resend_changed_lists(server, &owners, "a contact became a user").await;
    }

    /// Sends the watched buddy lists of these owners again in full where
    /// the list read from the address book now differs from the one the
    /// watcher has (a change that leaves the list as it was sends nothing).
    async fn resend_changed_lists(server: &Arc<SipServer>, owners: &[&str], why: &str) {
        let Some(this) = server.presence() else {
            return;
        };
        for owner in owners {
            let watched = {
                let state = this.lock();
                state
                    .subs
                    .values()
                    .any(|s| s.stored.is_list && s.stored.resource == *owner)
            };
            if !watched {
                continue;
            }
            let buddies = match this.store.buddies(owner).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, owner, "buddy list unavailable");
                    continue;
                }
            };
            let keys: Vec<DialogKey> = {
                let state = this.lock();
                state
                    .subs
                    .values()
                    // A dialog whose first NOTIFY is not built yet (CSeq
                    // 0) reads the address book itself.
                    .filter(|s| {
                        s.stored.is_list
                            && s.stored.resource == *owner
                            && s.cseq > 0
                            && s.buddies != buddies
                    })
                    .map(Subscription::key)
                    .collect()
            };
            for key in keys {
                tracing::debug!(call_id = key.0, owner, why, "buddy list sent again");
                Self::notify_full(server, key, None).await;
            }
        }
    }

    /// Once a second: ends expired subscriptions with a terminating NOTIFY,
    /// drops expired publications and registrations (re-notifying their
    /// users), and polls the mailboxes MWI watchers follow; every 2 s, new
    /// accounts and address-book changes.
    pub fn spawn_housekeeping(server: Arc<SipServer>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last_poll = Instant::now();
            let mut last_users = Instant::now();
            let mut last_purge = Instant::now();
            loop {
                tick.tick().await;
                let Some(this) = server.presence() else {
                    continue;
                };
                let now = crate::store::now_secs();
                let (expired_subs, expired_pubs, mailboxes) = {
                    let mut state = this.lock();
                    let mut subs: Vec<DialogKey> = Vec::new();
                    for sub in state.subs.values_mut() {
                        if sub.stored.expires_at <= now {
                            // Not picked again by the next tick while its
                            // terminating NOTIFY is on the way.
                            sub.stored.expires_at = i64::MAX;
                            subs.push(sub.key());
                        }
                    }
                    let mut logins = Vec::new();
                    state.publications.retain(|login, pubs| {
                        let before = pubs.len();
                        pubs.retain(|p| p.expires_at > now);
                        if pubs.len() != before {
                            logins.push(login.clone());
                        }
                        !pubs.is_empty()
                    });
                    let mailboxes: Vec<String> = state
                        .by_topic
                        .keys()
                        .filter(|(p, _)| *p == Package::MessageSummary)
                        .map(|(_, l)| l.clone())
                        .collect();
                    (subs, logins, mailboxes)
                };
                for key in expired_subs {
                    tracing::debug!(call_id = key.0, "subscription expired");
                    let server = server.clone();
                    tokio::spawn(async move {
                        Self::notify_full(&server, key, Some("timeout")).await;
                    });
                }
                if !expired_pubs.is_empty() {
                    if let Err(e) = this.store.purge_expired_publications(now).await {
                        tracing::warn!(error = %e, "expired publications not purged");
                    }
                    for login in expired_pubs {
                        Self::document_changed(&server, &login).await;
                    }
                }
                // Bindings that expired: their devices are gone.
                let mut expired: HashMap<String, Vec<Binding>> = HashMap::new();
                for b in this.registrar.take_expired(now) {
                    expired.entry(b.login.clone()).or_default().push(b);
                }
                for (login, removed) in expired {
                    tracing::debug!(login, bindings = removed.len(), "registration expired");
                    this.devices_gone(&login, &removed).await;
                    Self::document_changed(&server, &login).await;
                }
                if last_users.elapsed() >= NEW_USERS_POLL {
                    last_users = Instant::now();
                    Self::apply_contact_changes(&server).await;
                    if last_purge.elapsed() >= Duration::from_secs(60) {
                        last_purge = Instant::now();
                        if let Err(e) = this
                            .store
                            .purge_contact_changes(now - CONTACT_CHANGES_KEPT)
                            .await
                        {
                            tracing::warn!(error = %e, "old address-book changes not purged");
                        }
                    }
                    let watched_lists = this.lock().subs.values().any(|s| s.stored.is_list);
                    if watched_lists {
                        Self::new_users_join_lists(&server).await;
                    } else if let Ok(id) = this.store.last_account_id().await {
                        // Nobody to tell: just move the mark forward.
                        this.last_account.store(id, Ordering::Relaxed);
                    }
                }
                if last_poll.elapsed() >= this.settings.mwi_poll && !mailboxes.is_empty() {
                    last_poll = Instant::now();
                    // One grouped query for every watched mailbox; only the
                    // ones whose counts moved are notified.
                    match this.store.mailbox_counts_of(&mailboxes).await {
                        Ok(counts) => {
                            let changed: Vec<String> = {
                                let state = this.lock();
                                mailboxes
                                    .into_iter()
                                    .filter(|l| {
                                        let now = counts.get(l).copied().unwrap_or_default();
                                        state.mailboxes.get(l) != Some(&now)
                                    })
                                    .collect()
                            };
                            for login in changed {
                                Self::mailbox_changed(&server, &login).await;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "mailbox counts unavailable"),
                    }
                }
            }
        });
    }
}

/// How many body bytes one list NOTIFY may carry. A 500-buddy list is a
/// few hundred kilobytes of PIDF: more than one UDP datagram can hold and
/// more than peers accept in one message (ours refuses over 64 KiB). Over
/// UDP stay near the size RFC 3261 §18.1.1 tolerates for fragmenting
/// paths; over streams, well under common message size limits.
fn body_budget(transport: &str) -> usize {
    match Proto::parse(transport) {
        Some(Proto::Udp) | None => 8 * 1024,
        Some(_) => 48 * 1024,
    }
}

/// Splits the members into runs whose documents fit `budget` bytes per
/// NOTIFY (each run holds at least one member). The first run also pays
/// for listing every member in the full-state RLMI.
fn chunk_members<B, D>(
    buddies: &[B],
    docs: &[D],
    budget: usize,
    doc_len: impl Fn(&B, &D) -> usize,
) -> Vec<std::ops::Range<usize>> {
    // Multipart headers and the RLMI <resource>/<instance> line per member.
    const PER_MEMBER: usize = 320;
    const LISTED: usize = 160;
    let mut runs = Vec::new();
    let mut start = 0;
    let mut used = LISTED * buddies.len();
    for (i, (b, d)) in buddies.iter().zip(docs).enumerate() {
        let cost = doc_len(b, d) + PER_MEMBER;
        if i > start && used + cost > budget {
            runs.push(start..i);
            start = i;
            used = 0;
        }
        used += cost;
    }
    if start < buddies.len() || runs.is_empty() {
        runs.push(start..buddies.len());
    }
    runs
}

/// Our Contact in subscription dialogs: the listener the watcher reached,
/// so in-dialog requests come back the same way.
fn our_contact(flow: &Flow) -> String {
    format!("<sip:{}{}>", flow.local, flow.proto.uri_param())
}

/// Values of a header rsip parses into a typed variant that
/// [`header_values`] does not list (Event, Supported).
fn typed_values<'a>(req: &'a rsip::Request, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    req.headers.iter().filter_map(move |h| match h {
        Header::Event(v) if name == "Event" => Some(v.value()),
        Header::Supported(v) if name == "Supported" => Some(v.value()),
        Header::Other(n, v) if n.eq_ignore_ascii_case(name) => Some(v.as_str()),
        _ => None,
    })
}

fn supports(req: &rsip::Request, option: &str) -> bool {
    typed_values(req, "Supported")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(option))
}

/// A SIP URI reduced to what names a device's address: `user@host:port`,
/// lower case, without scheme, parameters or angle brackets. A device puts
/// the same address in its REGISTER and SUBSCRIBE Contacts.
fn uri_core(uri: &str) -> String {
    let u = uri.trim().trim_start_matches('<');
    let u = u
        .strip_prefix("sips:")
        .or_else(|| u.strip_prefix("sip:"))
        .unwrap_or(u);
    u.split([';', '?', '>'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The URI inside a Contact value.
fn contact_uri(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value),
    };
    let uri = uri.trim();
    (uri.starts_with("sip:") || uri.starts_with("sips:"))
        .then(|| uri.to_string())
        .filter(|u| u.len() <= 1024 && rsip::Uri::try_from(u.as_str()).is_ok())
}

fn expires_error(req: &rsip::Request, tag: &str, e: ExpiresError) -> rsip::Response {
    match e {
        ExpiresError::Malformed => {
            response_for(req, 400, "Bad Request - malformed Expires", Some(tag), &[])
        }
        ExpiresError::TooBrief(min) => response_for(
            req,
            423,
            "Interval Too Brief",
            Some(tag),
            &[("Min-Expires".into(), min.to_string())],
        ),
    }
}

fn bad_event(req: &rsip::Request, tag: &str) -> rsip::Response {
    response_for(
        req,
        489,
        "Bad Event",
        Some(tag),
        &[("Allow-Events".into(), ALLOW_EVENTS.into())],
    )
}

/// Checks the request comes from the authenticated user; the login or the
/// answer to send.
async fn authenticated(
    server: &Arc<SipServer>,
    flow: &Flow,
    req: &rsip::Request,
    tag: &str,
) -> Result<String, rsip::Response> {
    let login = server.authenticate(flow, req, true, tag).await?;
    let from = header_value(&req.headers, "From").unwrap_or("");
    if user_of(from).as_deref() != Some(login.as_str()) {
        return Err(response_for(
            req,
            403,
            "Forbidden - From does not match the authenticated user",
            Some(tag),
            &[],
        ));
    }
    Ok(login)
}

/// SUBSCRIBE (RFC 6665 §4.2.1).
pub async fn on_subscribe(
    server: &Arc<SipServer>,
    flow: &Flow,
    req: &rsip::Request,
    tag: &str,
) -> rsip::Response {
    let Some(this) = server.presence().cloned() else {
        return response_for(req, 503, "Service Unavailable", Some(tag), &[]);
    };
    let login = match authenticated(server, flow, req, tag).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let (event, event_id) = match typed_values(req, "Event").next() {
        Some(v) => parse_event(v),
        None => return bad_event(req, tag),
    };
    let Some(package) = Package::parse(&event) else {
        return bad_event(req, tag);
    };
    let expires = match this
        .settings
        .subscribe
        .grant(header_value(&req.headers, "Expires"))
    {
        Ok(e) => e,
        Err(e) => return expires_error(req, tag, e),
    };
    let Some(target) = header_value(&req.headers, "Contact").and_then(contact_uri) else {
        return response_for(
            req,
            400,
            "Bad Request - missing or bad Contact",
            Some(tag),
            &[],
        );
    };
    let call_id = header_value(&req.headers, "Call-ID")
        .unwrap_or("")
        .trim()
        .to_string();
    let to = header_value(&req.headers, "To").unwrap_or("");
    let now = crate::store::now_secs();
    let expires_at = now + i64::from(expires);
    let ok = |extra: Vec<(String, String)>| {
        let mut headers = vec![
            ("Expires".to_string(), expires.to_string()),
            ("Contact".to_string(), our_contact(flow)),
        ];
        headers.extend(extra);
        response_for(req, 200, "OK", Some(tag), &headers)
    };

    if let Some(local_tag) = tag_of(to) {
        // A refresh or an unsubscribe within an existing dialog.
        let key = (call_id.clone(), local_tag.to_string());
        let updated = {
            let mut state = this.lock();
            match state.subs.get_mut(&key) {
                Some(sub) if sub.stored.watcher == login && sub.package == package => {
                    // An unsubscribe is ended by its own NOTIFY below; the
                    // expiry sweep must not send a second one.
                    sub.stored.expires_at = if expires == 0 { i64::MAX } else { expires_at };
                    sub.stored.target = target;
                    sub.stored.transport = flow.proto.as_str().to_string();
                    sub.stored.source = flow.remote.to_string();
                    sub.stored.local = flow.local.to_string();
                    // The refresh came over a live flow: NOTIFYs go there.
                    sub.detached = false;
                    Some(sub.stored.clone())
                }
                _ => None,
            }
        };
        let Some(stored) = updated else {
            return response_for(req, 481, "Subscription Does Not Exist", Some(tag), &[]);
        };
        this.watch_flow(flow, &login);
        if expires == 0 {
            spawn_notify(server, key, Some("timeout"));
            return ok(Vec::new());
        }
        if let Err(e) = this.store.refresh_subscription(&stored).await {
            tracing::error!(error = %e, "subscription refresh not stored");
            return super::parse::database_unavailable(req, Some(tag));
        }
        spawn_notify(server, key, None);
        return ok(Vec::new());
    }

    let Some(user) = user_of(&req.uri.to_string()) else {
        return response_for(req, 404, "Not Found", Some(tag), &[]);
    };
    let (resource, is_list) = match package {
        Package::MessageSummary => {
            if user != login {
                return response_for(req, 403, "Forbidden - not your mailbox", Some(tag), &[]);
            }
            (user, false)
        }
        Package::Presence => match this.settings.list.owner(&user) {
            Some(owner) => {
                if owner != login {
                    return response_for(req, 403, "Forbidden - not your list", Some(tag), &[]);
                }
                if !supports(req, "eventlist") {
                    // RFC 4662 §5.1: a list needs a subscriber that understands lists.
                    return response_for(
                        req,
                        421,
                        "Extension Required",
                        Some(tag),
                        &[("Require".into(), "eventlist".into())],
                    );
                }
                (owner.to_string(), true)
            }
            None => {
                match this.store.account_by_login(&user).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return response_for(req, 404, "Not Found", Some(tag), &[]),
                    Err(e) => {
                        tracing::error!(error = %e, "account look-up failed");
                        return super::parse::database_unavailable(req, Some(tag));
                    }
                }
                let allowed = user == login
                    || this.settings.open_policy
                    || match this.store.has_in_address_book(&user, &login).await {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::error!(error = %e, "address book look-up failed");
                            return super::parse::database_unavailable(req, Some(tag));
                        }
                    };
                if !allowed {
                    tracing::debug!(
                        watcher = login,
                        presentity = user,
                        "watcher not in the presentity's address book"
                    );
                    return response_for(
                        req,
                        403,
                        "Forbidden - not in the user's address book",
                        Some(tag),
                        &[],
                    );
                }
                (user, false)
            }
        },
    };
    let from = header_value(&req.headers, "From").unwrap_or("").trim();
    let Some(remote_tag) = tag_of(from).map(str::to_string) else {
        return response_for(req, 400, "Bad Request - From without a tag", Some(tag), &[]);
    };
    let resource_uri = if is_list {
        this.uri_of(&this.settings.list.user_for(&resource))
    } else {
        this.uri_of(&resource)
    };
    let stored = StoredSubscription {
        event: package.as_str().to_string(),
        watcher: login.clone(),
        resource,
        is_list,
        resource_uri,
        call_id: call_id.clone(),
        local_tag: tag.to_string(),
        remote: from.to_string(),
        remote_tag,
        target,
        event_id,
        cseq_floor: 1,
        transport: flow.proto.as_str().to_string(),
        source: flow.remote.to_string(),
        local: flow.local.to_string(),
        expires_at,
    };
    let key = (call_id, tag.to_string());
    let mut sub = Subscription::fresh(stored, package);
    // The initial NOTIFY goes first: a change before it is sent after it.
    sub.in_flight = true;
    if expires == 0 {
        // A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, then over
        // (and not a second one from the expiry sweep).
        sub.stored.expires_at = i64::MAX;
        this.lock().insert(sub);
        spawn_notify(server, key, Some("timeout"));
        return ok(Vec::new());
    }
    if let Err(e) = this.store.insert_subscription(&sub.stored).await {
        tracing::error!(error = %e, "subscription not stored");
        return super::parse::database_unavailable(req, Some(tag));
    }
    tracing::debug!(
        watcher = login,
        resource = sub.stored.resource,
        list = is_list,
        event = package.as_str(),
        "subscription created"
    );
    this.lock().insert(sub);
    this.watch_flow(flow, &login);
    spawn_notify(server, key, None);
    let extra = if is_list {
        vec![("Require".to_string(), "eventlist".to_string())]
    } else {
        Vec::new()
    };
    ok(extra)
}

/// The NOTIFY a SUBSCRIBE calls for: full state after a new subscription
/// or a refresh, the terminating one after an unsubscribe or a fetch.
fn spawn_notify(server: &Arc<SipServer>, key: DialogKey, terminated: Option<&'static str>) {
    let server = server.clone();
    tokio::spawn(async move {
        // RFC 6665 lets the NOTIFY overtake the 200; a short pause makes the
        // usual order (200 first) the common case, which simple clients and
        // scripted peers expect.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Presence::notify_full(&server, key, terminated).await;
    });
}

/// PUBLISH (RFC 3903 §6) of the `presence` event.
pub async fn on_publish(
    server: &Arc<SipServer>,
    flow: &Flow,
    req: &rsip::Request,
    tag: &str,
) -> rsip::Response {
    let Some(this) = server.presence().cloned() else {
        return response_for(req, 503, "Service Unavailable", Some(tag), &[]);
    };
    let login = match authenticated(server, flow, req, tag).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let event = typed_values(req, "Event").next().map(parse_event);
    if event.as_ref().map(|e| e.0.as_str()) != Some("presence") {
        return response_for(
            req,
            489,
            "Bad Event",
            Some(tag),
            &[("Allow-Events".into(), "presence".into())],
        );
    }
    if user_of(&req.uri.to_string()).as_deref() != Some(login.as_str()) {
        return response_for(
            req,
            403,
            "Forbidden - publish only your own presence",
            Some(tag),
            &[],
        );
    }
    let expires = match this
        .settings
        .publish
        .grant(header_value(&req.headers, "Expires"))
    {
        Ok(e) => e,
        Err(e) => return expires_error(req, tag, e),
    };
    let if_match = header_values(&req.headers, "SIP-If-Match")
        .next()
        .map(|v| v.trim().to_string());
    let status = if req.body.is_empty() {
        None
    } else {
        let ct = header_value(&req.headers, "Content-Type").unwrap_or("");
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(PIDF_TYPE) {
            return response_for(
                req,
                415,
                "Unsupported Media Type",
                Some(tag),
                &[("Accept".into(), PIDF_TYPE.into())],
            );
        }
        match pidf::parse_device_status(&req.body) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(login, error = %e, body = %String::from_utf8_lossy(&req.body), "published document refused");
                return response_for(req, 400, &format!("Bad Request - {e}"), Some(tag), &[]);
            }
        }
    };
    let now = crate::store::now_secs();
    let existing = if_match.as_ref().map(|etag| {
        this.lock()
            .publications
            .get(&login)
            .and_then(|v| v.iter().find(|p| &p.etag == etag).cloned())
    });
    let respond = |etag: &str, expires: u32| {
        response_for(
            req,
            200,
            "OK",
            Some(tag),
            &[
                ("SIP-ETag".into(), etag.to_string()),
                ("Expires".into(), expires.to_string()),
            ],
        )
    };
    let (old_etag, publication) = match (existing, status) {
        (None, None) => {
            return response_for(
                req,
                400,
                "Bad Request - PUBLISH without a body",
                Some(tag),
                &[],
            );
        }
        (None, Some(status)) => {
            if expires == 0 {
                // Nothing to remove and nothing to keep.
                return respond(&new_tag(), 0);
            }
            (
                None,
                Publication {
                    etag: new_tag(),
                    login: login.clone(),
                    open: status.open,
                    note: status.note,
                    expires_at: now + i64::from(expires),
                    updated_at: now,
                    transport: Some(flow.proto.as_str().to_string()),
                    source: Some(flow.remote.to_string()),
                },
            )
        }
        (Some(None), _) => {
            return response_for(req, 412, "Conditional Request Failed", Some(tag), &[]);
        }
        (Some(Some(old)), status) => {
            if expires == 0 {
                if let Err(e) = this.store.delete_publication(&old.etag).await {
                    tracing::error!(error = %e, "publication removal not stored");
                    return super::parse::database_unavailable(req, Some(tag));
                }
                remove_publication(&this, &login, &old.etag);
                spawn_changed(server, login);
                return respond(&old.etag, 0);
            }
            let mut p = old.clone();
            p.etag = new_tag();
            p.expires_at = now + i64::from(expires);
            // The entity tag proves it is the same device: its document now
            // lives with the flow it came over this time.
            p.transport = Some(flow.proto.as_str().to_string());
            p.source = Some(flow.remote.to_string());
            if let Some(s) = status {
                p.open = s.open;
                p.note = s.note;
                p.updated_at = now;
            }
            (Some(old.etag), p)
        }
    };
    if let Err(e) = this
        .store
        .put_publication(old_etag.as_deref(), &publication)
        .await
    {
        tracing::error!(error = %e, "publication not stored");
        return super::parse::database_unavailable(req, Some(tag));
    }
    {
        let mut state = this.lock();
        let list = state.publications.entry(login.clone()).or_default();
        if let Some(old) = &old_etag {
            list.retain(|p| &p.etag != old);
        }
        list.push(publication.clone());
        if flow.proto != Proto::Udp {
            state
                .by_flow
                .entry((flow.proto, flow.remote))
                .or_default()
                .insert(login.clone());
        }
    }
    tracing::debug!(
        login,
        open = publication.open,
        expires,
        "presence published"
    );
    spawn_changed(server, login);
    respond(&publication.etag, expires)
}

fn remove_publication(this: &Presence, login: &str, etag: &str) {
    let mut state = this.lock();
    if let Some(list) = state.publications.get_mut(login) {
        list.retain(|p| p.etag != etag);
        if list.is_empty() {
            state.publications.remove(login);
        }
    }
}

fn spawn_changed(server: &Arc<SipServer>, login: String) {
    let server = server.clone();
    tokio::spawn(async move {
        Presence::document_changed(&server, &login).await;
    });
}

/// A NOTIFY sent to the switch: it is the notifier, never a subscriber, so
/// no dialog can match (RFC 6665 §4.1.3).
pub fn on_notify(req: &rsip::Request, tag: &str) -> rsip::Response {
    response_for(req, 481, "Subscription Does Not Exist", Some(tag), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_lists_are_split_into_runs_that_fit() {
        let buddies = vec![(); 500];
        let docs = vec![(); 500];
        let runs = chunk_members(&buddies, &docs, 48 * 1024, |_, _| 450);
        assert_eq!(runs.first().unwrap().start, 0);
        assert_eq!(runs.last().unwrap().end, 500);
        for w in runs.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &runs[1..] {
            assert!(r.len() * (450 + 320) <= 48 * 1024, "{r:?}");
        }
        // An empty list is still one (full-state) NOTIFY.
        assert_eq!(chunk_members::<(), ()>(&[], &[], 100, |_, _| 0), vec![0..0]);
        // A member bigger than the budget goes alone.
        assert_eq!(
            chunk_members(&[(), ()], &[(), ()], 10, |_, _| 50),
            vec![0..1, 1..2]
        );
    }

    #[test]
    fn contact_uris() {
        assert_eq!(
            contact_uri("<sip:alice@10.0.0.1:5070;transport=tcp>;expires=60").as_deref(),
            Some("sip:alice@10.0.0.1:5070;transport=tcp")
        );
        assert_eq!(contact_uri("sip:a@b").as_deref(), Some("sip:a@b"));
        assert_eq!(contact_uri("<mailto:a@b>"), None);
        assert_eq!(contact_uri("*"), None);
    }

    #[test]
    fn device_addresses() {
        assert_eq!(
            uri_core("<sip:Alice-0x1@127.0.0.1:36137;transport=tls>;expires=600"),
            "alice-0x1@127.0.0.1:36137"
        );
        assert_eq!(
            uri_core("sip:alice-0x1@127.0.0.1:36137;transport=TLS"),
            uri_core("sips:alice-0x1@127.0.0.1:36137")
        );
        assert_ne!(
            uri_core("sip:a@127.0.0.1:5060"),
            uri_core("sip:a@127.0.0.1:5061")
        );
    }

    #[test]
    fn contacts_point_back_at_the_listener() {
        let flow = Flow {
            proto: Proto::Tcp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
        };
        assert_eq!(our_contact(&flow), "<sip:127.0.0.1:5060;transport=tcp>");
    }
}
