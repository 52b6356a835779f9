//! The SIP server: takes what the transports deliver, runs it through the
//! transaction layer, and hands new requests to the handlers (registrar,
//! messaging, OPTIONS). One tokio task per transaction drives its state
//! machine; the maps below route retransmissions and responses to it. A
//! server transaction that only answers retransmissions until its timer
//! (most of its 32 s on UDP) gives its task up and stays in the map as a
//! [`Linger`], dropped by [`SipServer::sweep_lingering`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use rsip::{Method, SipMessage};
use tokio::sync::{mpsc, oneshot};

use super::digest::{DigestAuth, Verdict, parse_credentials};
use super::parse::{
    Inbound, database_unavailable, lenient_headers, parse_datagram_with_limit, parse_frame,
    precheck, reply_from_context, response_for, via_received,
};
use rsip::headers::UntypedHeader;

use super::call::{CallSettings, Calls};
use super::dialog::DialogId;
use super::flood::FloodGuard;
use super::overload::{Admission, Overload};
use super::registrar::{RegisterError, Registrar};
use super::transaction::{
    Action, ClientKey, ClientTransaction, Linger, ServerKey, ServerTransaction, Timers,
    Transaction, client_key, encode, server_key,
};
use super::transport::{Flow, Handler, Proto, Transports};
use super::util::{header_value, header_values, new_tag, user_of};
use crate::cluster::Forwarded;
use crate::config::SipConfig;
use crate::directory::TtlCache;
use crate::plugins::routing::Router;
use crate::ratelimit::RateLimiter;
use crate::store::{Account, Store};

/// Methods this switch implements today; others get 501 (RFC 3261 §8.2.1).
pub const ALLOWED: &[Method] = &[
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Update,
    Method::PRack,
    Method::Info,
    Method::Register,
    Method::Message,
    Method::Options,
    Method::Subscribe,
    Method::Publish,
    Method::Notify,
];
/// Option tags we support (`Require` with anything else gets 420). 100rel
/// and timer are the callers' and callees' business: the B2BUA relays
/// PRACK, RSeq/RAck and Session-Expires between the legs.
pub const SUPPORTED: &[&str] = &["path", "outbound", "gruu", "eventlist", "100rel", "timer"];

/// What the handlers need to know of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: String,
    pub digest_algorithms: Vec<super::digest::Algorithm>,
    pub max_message_bytes: usize,
    pub message_wait: Duration,
    pub timers: Timers,
    pub overload_lag: Duration,
    pub flood_rate: u32,
    pub flood_burst: u32,
    pub flood_exempt: Vec<ipnet::IpNet>,
}

impl Settings {
    pub fn from_config(sip: &SipConfig) -> Self {
        Self {
            domain: sip.domain.clone(),
            // Validated when the configuration was read.
            digest_algorithms: sip
                .digest_algorithms
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            max_message_bytes: sip.max_message_bytes,
            message_wait: Duration::from_millis(sip.message_wait_ms),
            timers: Timers::default(),
            overload_lag: Duration::from_millis(sip.overload_lag_ms),
            flood_rate: sip.flood_rate,
            flood_burst: sip.flood_burst,
            flood_exempt: sip.flood_exempt.clone(),
        }
    }
}

/// Where the transaction user sends provisional responses to an INVITE
/// while it works on the final one.
pub type ProvisionalSink = mpsc::UnboundedSender<Box<rsip::Response>>;

/// What a client transaction reports, as it happens.
#[derive(Debug)]
pub enum ClientEvent {
    /// A 1xx.
    Provisional(rsip::Response),
    /// A final response; for an INVITE every 2xx (retransmissions and other
    /// forks' answers included, RFC 6026) comes this way.
    Final(rsip::Response),
    /// Timer B or F fired.
    Timeout,
    /// The transport could not send it.
    TransportError,
}

/// The outcome of a request the switch sent.
#[derive(Debug)]
pub enum ClientOutcome {
    /// The final response.
    Response(rsip::Response),
    /// Timer F (or B) fired: no final response.
    Timeout,
    /// The transport could not send it.
    TransportError,
}

enum ServerEvent {
    /// A retransmission (or an ACK) matching the transaction. Boxed: a
    /// channel allocates room for 32 events when it is made, and there is one
    /// per transaction.
    Message(Box<SipMessage>),
}

/// A call record being written (see [`SipServer::writing_record`]).
pub(crate) struct RecordGuard<'a>(&'a AtomicUsize);

impl Drop for RecordGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Everything the SIP core holds.
pub struct SipServer {
    pub settings: Settings,
    pub store: Store,
    pub router: Router,
    pub registrar: Arc<Registrar>,
    pub calls: Calls,
    pub(crate) auth: DigestAuth,
    pub(crate) auth_failures: RateLimiter<IpAddr>,
    transports: OnceLock<Arc<Transports>>,
    passwords: PasswordCache,
    accounts: TtlCache<Option<Arc<Account>>>,
    /// Home nodes by login, from the local dialing plan (cluster mode).
    homes: TtlCache<Option<String>>,
    /// A graceful stop began ([`SipServer::drain`]).
    draining: AtomicBool,
    pub overload: Arc<Overload>,
    pub flood: FloodGuard,
    /// Call records (with their charge) being written: a stop waits for
    /// them ([`SipServer::writing_record`]).
    records_in_flight: AtomicUsize,
    server_txs: Mutex<HashMap<ServerKey, ServerEntry>>,
    /// Lingering server transactions in the order they began to linger:
    /// the same timer for all non-INVITE ones, so mostly by deadline.
    lingering: Mutex<VecDeque<(Instant, ServerKey)>>,
    client_txs: Mutex<HashMap<ClientKey, mpsc::UnboundedSender<Box<SipMessage>>>>,
    presence: OnceLock<Arc<super::presence::Presence>>,
    ivr: OnceLock<Arc<crate::ivr::Ivr>>,
    push: OnceLock<Arc<crate::push::PushService>>,
    /// Prepaid charging of OFFNET calls, when `billing.prepaid_calls` is on.
    billing: OnceLock<Arc<crate::billing::Billing>>,
    /// The other nodes on the database, in cluster mode.
    cluster: OnceLock<Arc<crate::cluster::Cluster>>,
}

/// Takes the request a new server transaction delivers to its TU out of its
/// first actions.
fn take_delivered(actions: &mut Vec<Action>) -> Option<rsip::Request> {
    let i = actions
        .iter()
        .position(|a| matches!(a, Action::Deliver(SipMessage::Request(_))))?;
    match actions.remove(i) {
        Action::Deliver(SipMessage::Request(req)) => Some(req),
        _ => None,
    }
}

/// A server transaction in the map.
enum ServerEntry {
    /// Run by its task, which gets what matches it through the channel.
    Live(mpsc::UnboundedSender<ServerEvent>),
    /// Only answering retransmissions until its deadline.
    Lingering(Linger),
}

/// The transaction user's side of a server transaction: its final answer
/// to come, and the provisional responses it sends meanwhile.
struct Tu {
    answer: Pin<Box<dyn Future<Output = rsip::Response> + Send>>,
    provisional: mpsc::UnboundedReceiver<Box<rsip::Response>>,
}

impl SipServer {
    pub fn new(
        settings: Settings,
        store: Store,
        router: Router,
        registrar: Arc<Registrar>,
        calls: CallSettings,
        auth: DigestAuth,
        auth_failures: RateLimiter<IpAddr>,
    ) -> Self {
        let overload = Arc::new(Overload::new(settings.overload_lag));
        let flood = FloodGuard::new(
            settings.flood_rate,
            settings.flood_burst,
            settings.flood_exempt.clone(),
        );
        Self {
            settings,
            store,
            router,
            registrar,
            calls: Calls::new(calls),
            auth,
            auth_failures,
            transports: OnceLock::new(),
            passwords: PasswordCache::default(),
            accounts: TtlCache::default(),
            homes: TtlCache::default(),
            draining: AtomicBool::new(false),
            overload,
            flood,
            records_in_flight: AtomicUsize::new(0),
            server_txs: Mutex::new(HashMap::new()),
            lingering: Mutex::new(VecDeque::new()),
            client_txs: Mutex::new(HashMap::new()),
            presence: OnceLock::new(),
            ivr: OnceLock::new(),
            push: OnceLock::new(),
            billing: OnceLock::new(),
            cluster: OnceLock::new(),
        }
    }

    /// Wires cluster mode in: users registered on other nodes are reached
    /// through them.
    pub fn attach_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// Wires the IVR services in (calls routed `to-service` need them).
    pub fn attach_ivr(&self, ivr: Arc<crate::ivr::Ivr>) {
        let _ = self.ivr.set(ivr);
    }

    /// The IVR services, once attached.
    pub fn ivr(&self) -> Option<&Arc<crate::ivr::Ivr>> {
        self.ivr.get()
    }

    /// Wires the push service in (offline users hear of messages and calls).
    pub fn attach_push(&self, push: Arc<crate::push::PushService>) {
        let _ = self.push.set(push);
    }

    /// Wires prepaid charging in: OFFNET calls of accounts are authorised,
    /// cut and charged.
    pub fn attach_billing(&self, billing: Arc<crate::billing::Billing>) {
        let _ = self.billing.set(billing);
    }

    /// Prepaid charging, when attached.
    pub fn billing(&self) -> Option<&Arc<crate::billing::Billing>> {
        self.billing.get()
    }

    /// The push service, once attached.
    pub fn push(&self) -> Option<&Arc<crate::push::PushService>> {
        self.push.get()
    }

    /// Wires the presence service in once its state is loaded.
    pub fn attach_presence(&self, presence: Arc<super::presence::Presence>) {
        let _ = self.presence.set(presence);
    }

    /// The presence service, once attached.
    pub fn presence(&self) -> Option<&Arc<super::presence::Presence>> {
        self.presence.get()
    }

    /// Wires the transports in once they are bound.
    pub fn attach(&self, transports: Arc<Transports>) {
        let _ = self.transports.set(transports);
    }

    pub fn transports(&self) -> Option<&Arc<Transports>> {
        self.transports.get()
    }

    /// Drops the lingering server transactions whose deadline has passed.
    pub fn sweep_lingering(&self, now: Instant) {
        let mut queue = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
        self.sweep_locked(&mut queue, now);
    }

    fn sweep_locked(&self, queue: &mut VecDeque<(Instant, ServerKey)>, now: Instant) {
        if queue.front().is_none_or(|(until, _)| *until > now) {
            return;
        }
        let mut txs = self.server_txs.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((until, _)) = queue.front()
            && *until <= now
        {
            let Some((_, key)) = queue.pop_front() else {
                break;
            };
            // The key may have been taken by a new transaction since.
            if matches!(txs.get(&key), Some(ServerEntry::Lingering(l)) if l.until <= now) {
                txs.remove(&key);
            }
        }
    }

    /// Transactions alive now (a leak shows up here).
    pub fn transaction_count(&self) -> (usize, usize) {
        let s = self
            .server_txs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let c = self
            .client_txs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        (s, c)
    }

    /// Sends bytes outside any transaction (a 2xx retransmission, the ACK
    /// of a 2xx).
    pub(crate) async fn send_raw(&self, flow: &Flow, bytes: Vec<u8>) -> bool {
        self.send(flow, bytes).await
    }

    async fn send(&self, flow: &Flow, bytes: Vec<u8>) -> bool {
        match self.transports.get() {
            Some(t) => match t.send(flow, bytes).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(remote = %flow.remote, error = %e, "send failed");
                    false
                }
            },
            None => false,
        }
    }

    /// Stops taking new requests (a graceful stop): they get 503 with
    /// Retry-After; requests in dialogs, CANCELs and the transactions
    /// under way go on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Counts a call record, with its charge, as being written until the
    /// guard drops: [`SipServer::wait_records`] waits for it, so a graceful
    /// stop does not close the database under a call that just ended.
    pub(crate) fn writing_record(&self) -> RecordGuard<'_> {
        self.records_in_flight.fetch_add(1, Ordering::AcqRel);
        RecordGuard(&self.records_in_flight)
    }

    /// Waits until no call record is being written, at most `max`; true if
    /// none is.
    pub async fn wait_records(&self, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        loop {
            let writing = self.records_in_flight.load(Ordering::Acquire);
            if writing == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(writing, "stopping with call records still being written");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until no server transaction is still working on its answer,
    /// at most `max`; true if none is.
    pub async fn wait_answered(&self, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        loop {
            let live = self
                .server_txs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|e| matches!(e, ServerEntry::Live(_)))
                .count();
            if live == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(live, "stopping with transactions still under way");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn receive(self: Arc<Self>, flow: Flow, bytes: Vec<u8>) {
        // The other nodes of the cluster forward many users' requests from
        // one address: never limited per source.
        let from_node = || {
            self.cluster()
                .is_some_and(|c| c.is_peer_address(flow.remote))
        };
        if !self
            .flood
            .admits_unless_trusted(flow.remote.ip(), &bytes, Instant::now(), from_node)
        {
            return;
        }
        let parsed = match flow.proto {
            // A WebSocket message is one whole SIP message, like a datagram
            // (RFC 7118 §5: no stream framing, Content-Length optional).
            Proto::Udp | Proto::Ws | Proto::Wss => {
                parse_datagram_with_limit(&bytes, self.settings.max_message_bytes)
            }
            _ => parse_frame(&bytes, self.settings.max_message_bytes).map(Inbound::Message),
        };
        match parsed {
            Ok(Inbound::Message(SipMessage::Request(req))) => self.on_request(flow, req),
            Ok(Inbound::Message(SipMessage::Response(resp))) => self.on_response(resp),
            Ok(Inbound::KeepAlive | Inbound::Stun) => {}
            Err(e) => {
                // Answer a broken request with a 400 naming the fault when enough
                // of it survives to route a response; otherwise drop it.
                match lenient_headers(&bytes) {
                    Some(ctx) => {
                        let reply = reply_from_context(
                            &ctx,
                            e.status_code(),
                            &e.reason_phrase(),
                            &new_tag(),
                            &[],
                        );
                        tracing::debug!(remote = %flow.remote, error = %e, "malformed request answered with 400");
                        tokio::spawn(async move {
                            self.send(&flow, reply).await;
                        });
                    }
                    None => {
                        tracing::debug!(remote = %flow.remote, error = %e, "malformed message dropped")
                    }
                }
            }
        }
    }

    fn on_response(&self, resp: rsip::Response) {
        let Some(key) = client_key(&resp) else {
            tracing::debug!("response without a usable branch dropped");
            return;
        };
        let tx = self
            .client_txs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        match tx {
            Some(tx) => {
                let _ = tx.send(Box::new(SipMessage::Response(resp)));
            }
            None => tracing::debug!(
                branch = key.branch(),
                "response matching no transaction dropped"
            ),
        }
    }

    fn on_request(self: Arc<Self>, flow: Flow, mut req: rsip::Request) {
        // RFC 3581 / RFC 3261 §18.2.1: record where the request really came from
        // in its top Via, so the response (and the client) see the NAT mapping.
        stamp_received(&mut req, &flow);
        let Some(key) = server_key(&req) else {
            // RFC 2543 peers (no magic cookie): answered statelessly.
            if req.method != Method::Ack {
                tokio::spawn(async move {
                    let (sink, _) = mpsc::unbounded_channel();
                    let resp = self.clone().handle(flow, req, sink).await;
                    self.send(&flow, encode(&SipMessage::Response(resp))).await;
                });
            }
            return;
        };
        {
            let txs = self.server_txs.lock().unwrap_or_else(|p| p.into_inner());
            match txs.get(&key) {
                Some(ServerEntry::Live(tx)) => {
                    let _ = tx.send(ServerEvent::Message(Box::new(SipMessage::Request(req))));
                    return;
                }
                Some(ServerEntry::Lingering(linger)) if linger.until > Instant::now() => {
                    let linger = (linger.resend.clone(), linger.ack_to_dialog);
                    drop(txs);
                    self.answer_lingering(flow, req, linger);
                    return;
                }
                _ => {}
            }
        }
        match req.method {
            // An ACK that matches no transaction acknowledges a 2xx: it
            // belongs to a call's dialog.
            Method::Ack => self.calls.on_ack(req),
            _ => match self.overload.admit(&req) {
                Admission::Admit => self.start_server_transaction(key, flow, req),
                Admission::Shed => self.shed(flow, req),
            },
        }
    }

    /// Refuses a new request under overload with a stateless 503: no
    /// transaction, no task beyond the send. A retransmission is refused
    /// again the same way, and the ACK of an INVITE's 503 matches nothing and
    /// is dropped. Retry-After is spread so refused clients do not come back
    /// together.
    fn shed(self: Arc<Self>, flow: Flow, req: rsip::Request) {
        let retry_after = 5 + rand::random::<u8>() % 11;
        let reply = response_for(
            &req,
            503,
            "Service Unavailable",
            Some(&new_tag()),
            &[("Retry-After".into(), retry_after.to_string())],
        );
        tokio::spawn(async move {
            self.send(&flow, encode(&SipMessage::Response(reply))).await;
        });
    }

    /// A request matching a lingering transaction: a retransmission gets
    /// the final response again (or nothing), an ACK of a 2xx goes to its
    /// dialog.
    fn answer_lingering(
        self: Arc<Self>,
        flow: Flow,
        req: rsip::Request,
        (resend, ack_to_dialog): (Option<Vec<u8>>, bool),
    ) {
        if req.method == Method::Ack {
            if ack_to_dialog {
                self.calls.on_ack(req);
            }
        } else if let Some(bytes) = resend {
            tokio::spawn(async move { self.send(&flow, bytes).await });
        }
    }

    fn start_server_transaction(self: Arc<Self>, key: ServerKey, flow: Flow, req: rsip::Request) {
        let now = Instant::now();
        let (machine, mut actions) = match ServerTransaction::new(
            req,
            flow.proto.reliability(),
            self.settings.timers,
            now,
        ) {
            Ok(started) => started,
            Err(e) => {
                tracing::debug!(error = %e, "cannot start a server transaction");
                return;
            }
        };
        // The machine hands the request to its TU: that is the handler.
        let Some(req) = take_delivered(&mut actions) else {
            tracing::warn!("a new server transaction delivered no request");
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.server_txs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), ServerEntry::Live(tx));
        let (sink, provisional) = mpsc::unbounded_channel();
        let tu = Tu {
            answer: Box::pin(self.clone().handle(flow, req, sink)),
            provisional,
        };
        tokio::spawn(self.run_server_transaction(key, flow, machine, actions, rx, tu));
    }

    async fn run_server_transaction(
        self: Arc<Self>,
        key: ServerKey,
        flow: Flow,
        mut machine: ServerTransaction,
        first: Vec<Action>,
        mut rx: mpsc::UnboundedReceiver<ServerEvent>,
        tu: Tu,
    ) {
        let Tu {
            answer: tu,
            mut provisional,
        } = tu;
        self.execute(&flow, first).await;
        let mut tu = Some(tu);
        while !machine.is_terminated() {
            let deadline = machine.next_deadline();
            let actions = tokio::select! {
                resp = async { tu.as_mut().expect("guarded").await }, if tu.is_some() => {
                    tu = None;
                    match machine.on_tu_response(resp, Instant::now()) {
                        Ok(actions) => actions,
                        Err(e) => {
                            tracing::warn!(error = %e, "handler produced a response the transaction refused");
                            Vec::new()
                        }
                    }
                }
                Some(resp) = provisional.recv(), if tu.is_some() => {
                    machine.on_tu_response(*resp, Instant::now()).unwrap_or_default()
                }
                event = rx.recv() => match event {
                    Some(ServerEvent::Message(msg)) => machine.on_message(*msg, Instant::now()),
                    None => break,
                },
                _ = sleep_until(deadline) => machine.on_timer(Instant::now()),
            };
            // After a final response Timer J, L or H is always scheduled, so an
            // answered transaction always reaches Terminated and leaves the map.
            self.execute(&flow, actions).await;
            if tu.is_none()
                && let Some(linger) = machine.linger()
            {
                return self.linger(key, flow, linger, rx);
            }
        }
        self.server_txs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// Replaces a transaction's task by its [`Linger`] entry. Anything that
    /// reached the task meanwhile is answered as the entry would answer it.
    fn linger(
        self: Arc<Self>,
        key: ServerKey,
        flow: Flow,
        linger: Linger,
        mut rx: mpsc::UnboundedReceiver<ServerEvent>,
    ) {
        let until = linger.until;
        self.server_txs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), ServerEntry::Lingering(linger));
        // From here on the map answers; what reached the task before is
        // answered the same way (rarely anything: read from the map then).
        while let Ok(ServerEvent::Message(msg)) = rx.try_recv() {
            let answer = match self
                .server_txs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
            {
                Some(ServerEntry::Lingering(l)) => (l.resend.clone(), l.ack_to_dialog),
                _ => break,
            };
            if let SipMessage::Request(req) = *msg {
                self.clone().answer_lingering(flow, req, answer);
            }
        }
        let mut queue = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
        queue.push_back((until, key));
        self.sweep_locked(&mut queue, Instant::now());
    }

    async fn execute(&self, flow: &Flow, actions: Vec<Action>) {
        for action in actions {
            if let Action::Send(bytes) = action {
                self.send(flow, bytes).await;
            }
        }
    }

    /// Sends a request through a client transaction and waits for its final
    /// response (provisional ones are skipped).
    pub async fn request(self: &Arc<Self>, flow: Flow, req: rsip::Request) -> ClientOutcome {
        let (done_tx, done_rx) = oneshot::channel();
        let mut done = Some(done_tx);
        self.send_request(flow, req, move |event| {
            let outcome = match event {
                ClientEvent::Provisional(_) => return,
                ClientEvent::Final(resp) => ClientOutcome::Response(resp),
                ClientEvent::Timeout => ClientOutcome::Timeout,
                ClientEvent::TransportError => ClientOutcome::TransportError,
            };
            if let Some(d) = done.take() {
                let _ = d.send(outcome);
            }
        });
        done_rx.await.unwrap_or(ClientOutcome::TransportError)
    }

    /// Sends a request through a client transaction; `on_event` hears every
    /// response as it arrives, and the end of the transaction if it fails.
    pub fn send_request(
        self: &Arc<Self>,
        flow: Flow,
        req: rsip::Request,
        mut on_event: impl FnMut(ClientEvent) + Send + 'static,
    ) {
        let Some(key) = ClientKey::from_request(&req) else {
            on_event(ClientEvent::TransportError);
            return;
        };
        let now = Instant::now();
        let (mut machine, first) = match ClientTransaction::new(
            req,
            flow.proto.reliability(),
            self.settings.timers,
            now,
        ) {
            Ok(started) => started,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a client transaction");
                on_event(ClientEvent::TransportError);
                return;
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.client_txs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), tx);
        let server = self.clone();
        tokio::spawn(async move {
            let mut pending = first;
            loop {
                for action in std::mem::take(&mut pending) {
                    match action {
                        Action::Send(bytes) => {
                            if !server.send(&flow, bytes).await {
                                pending.extend(machine.on_transport_error(Instant::now()));
                            }
                        }
                        Action::Deliver(SipMessage::Response(resp)) => {
                            on_event(if resp.status_code.code() >= 200 {
                                ClientEvent::Final(resp)
                            } else {
                                ClientEvent::Provisional(resp)
                            })
                        }
                        Action::Deliver(_) => {}
                        Action::Timeout => on_event(ClientEvent::Timeout),
                        Action::TransportError => on_event(ClientEvent::TransportError),
                    }
                }
                if !pending.is_empty() {
                    continue;
                }
                if machine.is_terminated() {
                    break;
                }
                let deadline = machine.next_deadline();
                pending = tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(msg) => machine.on_message(*msg, Instant::now()),
                        None => break,
                    },
                    _ = sleep_until(deadline) => machine.on_timer(Instant::now()),
                };
            }
            server
                .client_txs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }

    /// The transaction user: one request in, its final response out.
    async fn handle(
        self: Arc<Self>,
        flow: Flow,
        req: rsip::Request,
        provisional: ProvisionalSink,
    ) -> rsip::Response {
        let tag = new_tag();
        if let Err(rejection) = precheck(&req, ALLOWED, SUPPORTED) {
            return rejection.response(&req, Some(&tag));
        }
        if req.method != Method::Cancel
            && let Some(resp) = self.calls.in_dialog(&req).await
        {
            return resp;
        }
        if self.draining.load(Ordering::Relaxed) && req.method != Method::Cancel {
            // Stopping: what is under way finishes, nothing new starts; the
            // client tries another node or comes back (RFC 3261 §21.5.4).
            return response_for(
                &req,
                503,
                "Service Unavailable",
                Some(&tag),
                &[("Retry-After".into(), "5".into())],
            );
        }
        let does_not_exist = || {
            response_for(
                &req,
                481,
                "Call/Transaction Does Not Exist",
                Some(&tag),
                &[],
            )
        };
        match req.method {
            Method::Options => response_for(
                &req,
                200,
                "OK",
                Some(&tag),
                &[
                    ("Allow".into(), allow_header()),
                    (
                        "Accept".into(),
                        "text/plain, application/im-iscomposing+xml, */*".into(),
                    ),
                    ("Supported".into(), SUPPORTED.join(", ")),
                ],
            ),
            Method::Register => self.on_register(&flow, &req, &tag).await,
            Method::Message => super::messaging::on_message(&self, &flow, &req, &tag).await,
            // A request for a dialog no call owns (RFC 3261 §12.2.2); BYE,
            // UPDATE, PRACK and INFO only exist inside a dialog, so without a
            // To tag they match none either (SIPp sent such a BYE once in an
            // overloaded benchmark run, and got 501).
            Method::Invite | Method::Bye | Method::Update | Method::PRack | Method::Info
                if req.method != Method::Invite || DialogId::of_request(&req).is_some() =>
            {
                does_not_exist()
            }
            Method::Invite => super::call::on_invite(&self, &flow, &req, &tag, provisional).await,
            Method::Cancel => {
                if self.calls.cancel(&req) {
                    response_for(&req, 200, "OK", Some(&tag), &[])
                } else {
                    does_not_exist()
                }
            }
            Method::Subscribe => super::presence::on_subscribe(&self, &flow, &req, &tag).await,
            Method::Publish => super::presence::on_publish(&self, &flow, &req, &tag).await,
            Method::Notify => super::presence::on_notify(&req, &tag),
            _ => response_for(
                &req,
                501,
                "Not Implemented",
                Some(&tag),
                &[("Allow".into(), allow_header())],
            ),
        }
    }

    async fn on_register(
        self: &Arc<Self>,
        flow: &Flow,
        req: &rsip::Request,
        tag: &str,
    ) -> rsip::Response {
        let login = match self.authenticate(flow, req, false, tag).await {
            Ok(login) => login,
            Err(resp) => return resp,
        };
        // The account registers only its own address of record.
        let to_user = header_value(&req.headers, "To").and_then(user_of);
        if to_user.as_deref() != Some(login.as_str()) {
            return response_for(
                req,
                403,
                "Forbidden - To does not match the authenticated user",
                Some(tag),
                &[],
            );
        }
        if let Some((home, _)) = self.home_node(&login).await
            && !super::registrar::removes_only(req)
        {
            tracing::debug!(login, home, "registration redirected to the home node");
            return response_for(
                req,
                302,
                "Moved Temporarily",
                Some(tag),
                &[("Contact".into(), format!("<sip:{home}>"))],
            );
        }
        let now = crate::store::now_secs();
        match self.registrar.register(req, flow, &login, now).await {
            Ok(registered) => {
                let contacts: Vec<(String, String)> = registered
                    .bindings
                    .iter()
                    .map(|b| {
                        (
                            "Contact".to_string(),
                            format!("<{}>;expires={}", b.contact, (b.expires_at - now).max(0)),
                        )
                    })
                    .collect();
                if let Some(push) = self.push()
                    && registered.refreshed
                {
                    push.tokens_from_bindings(&login, &registered.bindings)
                        .await;
                }
                if registered.arrived {
                    self.calls.device_registered(&login, &registered.bindings);
                }
                if registered.refreshed {
                    super::messaging::deliver_deferred(self.clone(), login.clone());
                }
                if registered.arrived
                    || !registered.removed.is_empty()
                    || flow.proto != super::transport::Proto::Udp
                {
                    // Presence follows devices: one that came is online,
                    // one that left takes its published documents along.
                    // Over TCP/TLS presence also checks whether the
                    // connection is new (a device back after a restart).
                    let server = self.clone();
                    let (login, flow) = (login.clone(), *flow);
                    tokio::spawn(async move {
                        super::presence::Presence::registration_changed(
                            &server,
                            login,
                            flow,
                            registered.arrived,
                            registered.removed,
                        )
                        .await;
                    });
                }
                tracing::debug!(login, bindings = contacts.len(), "registered");
                response_for(req, 200, "OK", Some(tag), &contacts)
            }
            Err(RegisterError::Bad(reason)) => response_for(req, 400, reason, Some(tag), &[]),
            Err(RegisterError::TooBrief(min)) => response_for(
                req,
                423,
                "Interval Too Brief",
                Some(tag),
                &[("Min-Expires".into(), min.to_string())],
            ),
            Err(RegisterError::Store(e)) => {
                tracing::error!(error = %e, login, "registration not stored");
                database_unavailable(req, Some(tag))
            }
        }
    }

    /// Digest authentication (RFC 3261 §22): REGISTER is challenged by the
    /// registrar (401), everything else by the proxy (407). Returns the
    /// authenticated login, or the response to send instead.
    pub(crate) async fn authenticate(
        &self,
        flow: &Flow,
        req: &rsip::Request,
        proxy: bool,
        tag: &str,
    ) -> Result<String, rsip::Response> {
        let ip = flow.remote.ip();
        let now = Instant::now();
        if !self.auth_failures.allows(&ip, now) {
            return Err(response_for(
                req,
                403,
                "Forbidden - too many failed authentications",
                Some(tag),
                &[],
            ));
        }
        let (header, code, reason, challenge_header) = if proxy {
            (
                "Proxy-Authorization",
                407,
                "Proxy Authentication Required",
                "Proxy-Authenticate",
            )
        } else {
            ("Authorization", 401, "Unauthorized", "WWW-Authenticate")
        };
        let challenge = |stale: bool| {
            let extra: Vec<(String, String)> = self
                .auth
                .challenges_for(&self.settings.digest_algorithms, SystemTime::now(), stale)
                .into_iter()
                .map(|v| (challenge_header.to_string(), v))
                .collect();
            response_for(req, code, reason, Some(tag), &extra)
        };
        // Only credentials for our realm count; a client may carry others for proxies upstream.
        let creds = header_values(&req.headers, header)
            .filter_map(|v| parse_credentials(v).ok())
            .find(|c| c.realm == self.auth.realm());
        let Some(creds) = creds else {
            return Err(challenge(false));
        };
        // RFC 3261 §22.4 wants the digest uri to equal the Request-URI, but
        // common clients (SIPp among them) put the server address there. The
        // response hashes the uri the client names, and nonce counts stop
        // replays, so a mismatch is logged rather than refused (as Kamailio does).
        if !same_uri(&creds.uri, &req.uri.to_string()) {
            tracing::debug!(digest_uri = %creds.uri, request_uri = %req.uri, "digest uri differs from the Request-URI");
        }
        let password = match self.sip_password(&creds.username, proxy).await {
            Ok(Some(p)) => p,
            // An unknown user is answered like a wrong password, so the challenge
            // does not tell which logins exist.
            Ok(None) => {
                self.auth_failures.check(&ip, now);
                return Err(challenge(false));
            }
            Err(e) => {
                tracing::error!(error = %e, "account look-up failed during authentication");
                return Err(database_unavailable(req, Some(tag)));
            }
        };
        match self.auth.verify(
            &creds,
            req.method.to_string().as_str(),
            &password,
            SystemTime::now(),
        ) {
            Verdict::Ok => Ok(creds.username),
            Verdict::Stale => Err(challenge(true)),
            verdict => {
                tracing::info!(remote = %flow.remote, user = %creds.username, ?verdict, "authentication failed");
                self.auth_failures.check(&ip, now);
                Err(challenge(false))
            }
        }
    }
}

/// SIP passwords recently read, so a registration storm does not turn into a
/// database read and an AES-GCM decryption per request. Entries live
/// [`PASSWORD_TTL`]: a password changed by another process (the CLI, a second
/// node) is picked up within that time.
#[derive(Default)]
struct PasswordCache {
    entries: Mutex<HashMap<String, (Arc<str>, Instant)>>,
}

/// How long a cached password is trusted.
const PASSWORD_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; the map is cleared when full (refilled on demand).
const PASSWORD_CACHE_MAX: usize = 200_000;

impl SipServer {
    async fn sip_password(
        &self,
        login: &str,
        with_account: bool,
    ) -> crate::store::Result<Option<Arc<str>>> {
        let now = Instant::now();
        if let Some((password, at)) = self
            .passwords
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(login)
            && now.duration_since(*at) < PASSWORD_TTL
        {
            return Ok(Some(password.clone()));
        }
        // A caller's request (INVITE, MESSAGE) needs the account's settings
        // right after the digest check: one read brings both.
        let password: Arc<str> = if with_account {
            let Some((account, password)) = self.store.account_with_sip_password(login).await?
            else {
                return Ok(None);
            };
            self.accounts
                .put(login.to_string(), Some(Arc::new(account)));
            password.into()
        } else {
            let Some(password) = self.store.sip_password(login).await? else {
                return Ok(None);
            };
            password.into()
        };
        let mut entries = self
            .passwords
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if entries.len() >= PASSWORD_CACHE_MAX {
            entries.clear();
        }
        entries.insert(login.to_string(), (password.clone(), now));
        Ok(Some(password))
    }
}

impl SipServer {
    /// The caller of a request from a client (MESSAGE, INVITE): challenged
    /// with 407, and the authenticated login must be the From user (SPEC:
    /// nobody sends as someone else). The answer to send otherwise.
    /// `forwarded` is [`SipServer::forwarded`] of the request, which its
    /// handler also needs: a request another node signed is that node's
    /// authenticated caller's, one with a bad signature gets 403.
    pub(crate) async fn identify_caller(
        &self,
        flow: &Flow,
        req: &rsip::Request,
        tag: &str,
        forwarded: Forwarded,
    ) -> Result<Arc<Account>, rsip::Response> {
        let login = match forwarded {
            // Another node authenticated the caller.
            Forwarded::Yes => {
                user_of(header_value(&req.headers, "From").unwrap_or("")).unwrap_or_default()
            }
            Forwarded::Bad(reason) => {
                tracing::warn!(remote = %flow.remote, reason, "forwarded request refused");
                return Err(response_for(req, 403, reason, Some(tag), &[]));
            }
            Forwarded::No => self.authenticate(flow, req, true, tag).await?,
        };
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
        match self.account(&login).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(response_for(req, 403, "Forbidden", Some(tag), &[])),
            Err(e) => {
                tracing::error!(error = %e, "account look-up failed");
                Err(database_unavailable(req, Some(tag)))
            }
        }
    }

    /// In a cluster, `login`'s home by the local dialing plan (longest
    /// prefix) when that is another live node: its name and address. `None`
    /// when this is the home, the plan names no node, or the home node is
    /// down (this node stands in until it is back).
    pub(crate) async fn home_node(&self, login: &str) -> Option<(String, std::net::SocketAddr)> {
        let cluster = self.cluster()?;
        let home = self.home_of(login).await?;
        if home == cluster.name() {
            return None;
        }
        let address = cluster.peer_named(&home)?;
        Some((home, address))
    }

    /// The server the local dialing plan names for `login`.
    async fn home_of(&self, login: &str) -> Option<String> {
        if let Some(home) = self.homes.get(login) {
            return home;
        }
        let home = match self.store.server_for(login).await {
            Ok(entry) => entry.map(|e| e.server),
            Err(e) => {
                tracing::warn!(error = %e, login, "dialing plan not read: no home node");
                return None;
            }
        };
        self.homes.put(login.to_string(), home.clone());
        home
    }

    /// An account, from a short-lived cache: a call or message reads the
    /// caller's settings (dialing plan, display name) without a database
    /// round trip; changes show within the directory's cache lifetime.
    pub(crate) async fn account(&self, login: &str) -> crate::store::Result<Option<Arc<Account>>> {
        if let Some(hit) = self.accounts.get(login) {
            return Ok(hit);
        }
        let found = self.store.account_by_login(login).await?.map(Arc::new);
        self.accounts.put(login.to_string(), found.clone());
        Ok(found)
    }
}

impl Handler for SipServer {
    fn on_message(self: Arc<Self>, flow: Flow, bytes: Vec<u8>) {
        self.receive(flow, bytes);
    }

    fn on_datagram(self: Arc<Self>, flow: Flow, bytes: Vec<u8>, queued: Duration) {
        self.overload.observe_queue(queued);
        self.receive(flow, bytes);
    }

    fn on_closed(self: Arc<Self>, flow: Flow) {
        tokio::spawn(async move {
            super::presence::Presence::flow_closed(&self, flow).await;
        });
    }
}

fn allow_header() -> String {
    ALLOWED
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Digest `uri` against the Request-URI: clients quote it as they sent it,
/// modulo case in the scheme and host.
fn same_uri(digest_uri: &str, request_uri: &str) -> bool {
    digest_uri.trim().eq_ignore_ascii_case(request_uri.trim())
}

fn stamp_received(req: &mut rsip::Request, flow: &Flow) {
    for h in req.headers.iter_mut() {
        if let rsip::Header::Via(via) = h {
            let value = via.value().to_string();
            if let Ok(stamped) = via_received(&value, flow.remote) {
                *via = rsip::headers::Via::new(stamped);
            }
            return;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
