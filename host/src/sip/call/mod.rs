//! Calls: the switch as a back-to-back user agent.
//!
//! Every call is one tokio task (a [`leg::Call`]) that owns both sides: the
//! caller's dialog (the A leg, where the switch is the UAS) and one dialog per
//! device or gateway it forked to (the B legs, where the switch is the UAC).
//! The SIP server finds the call of an in-dialog request, an ACK or a CANCEL
//! through the maps below and hands the message to the task; the task relays
//! it to the other side with that side's own Call-ID, tags, CSeq and Via.

mod endpoint_sdp;
mod leg;
mod media_session;
pub mod outbound;
pub mod pickup;
mod recording;
pub mod relay;
mod service;
mod webrtc_sdp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::dialog::DialogId;
use super::parse::{database_unavailable, response_for};
use super::server::{ClientEvent, ProvisionalSink, SipServer};
use super::transaction::{ServerKey, server_key};
use super::transport::{Flow, Proto};
use super::util::{display_name_of, header_value, user_of};
use crate::cluster::Forwarded;
use crate::config::{CallsConfig, MediaConfig};
use crate::plugins::routing::{
    Kind, Reason, RouteDecision, RouteRequest, Routed, Transport as RouteTransport,
};
use crate::store::Gateway;
use crate::store::answering::AnsweringRule;
use media::{Relay, RelayConfig};

/// Now as Unix milliseconds (call records, recordings).
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the call task is told.
pub(crate) enum CallEvent {
    /// The caller cancelled the INVITE.
    Cancel,
    /// An ACK for a 2xx the switch relayed.
    Ack { id: DialogId, req: rsip::Request },
    /// A request inside one of the call's dialogs.
    Request {
        id: DialogId,
        req: rsip::Request,
        respond: oneshot::Sender<rsip::Response>,
    },
    /// What a B leg's INVITE transaction reported.
    Branch { index: usize, event: ClientEvent },
    /// A relayed re-INVITE was answered 2xx: the side that sent it will ACK
    /// (under `ack_from`), and the switch then ACKs the other side with `cseq`.
    Reinvited {
        ack_from: DialogId,
        cseq: u32,
        resend: Option<(Vec<u8>, Flow)>,
        session_expires: Option<u64>,
    },
    /// A session refresh (UPDATE) went through.
    Refreshed { session_expires: Option<u64> },
    /// The peer of a confirmed dialog is gone (408/481 to a relayed request).
    PeerGone { from: DialogId },
    /// The callee's device registered while the call is parked (an app
    /// woken by push): ring it too, as the seed's fork to registered and
    /// push-woken devices has it.
    DeviceRegistered {
        bindings: Vec<crate::store::location::Binding>,
    },
    /// The callee's woken device picks the parked call (INVITE with
    /// Replaces, already authenticated as the callee).
    Pickup {
        req: rsip::Request,
        flow: Flow,
        tag: String,
        respond: oneshot::Sender<rsip::Response>,
    },
}

type CallTx = mpsc::UnboundedSender<CallEvent>;

/// Limits of a call.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// How long devices ring before the routing guest is asked again.
    pub no_answer: Duration,
    /// Longest an answered call may last; 0 means no limit.
    pub max_duration: Duration,
    /// The media relay, unless SDP crosses unchanged.
    pub media: Option<MediaSettings>,
}

/// The relay calls anchor their media on.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub relay: Relay,
    /// The relay's address as written into SDP.
    pub advertised: IpAddr,
    /// Silence after which an answered call is hung up; zero never.
    pub silence: Duration,
    /// What the WebRTC gateway speaks with browsers.
    pub browser_codec: crate::config::BrowserCodec,
}

impl CallSettings {
    pub fn from_config(c: &CallsConfig, m: &MediaConfig) -> Self {
        let media = m.enabled.then(|| MediaSettings {
            relay: Relay::new(RelayConfig {
                bind: m.bind,
                port_min: m.port_min,
                port_max: m.port_max,
                kernel_forwarding: m.kernel_forwarding,
            }),
            advertised: m.advertised.unwrap_or(m.bind),
            silence: Duration::from_secs(m.silence_secs),
            browser_codec: m.browser_codec,
        });
        Self {
            no_answer: Duration::from_secs(c.no_answer_secs),
            max_duration: Duration::from_secs(c.max_duration_secs),
            media,
        }
    }
}

/// How long the list of gateways is trusted before it is read again.
const GATEWAYS_TTL: Duration = Duration::from_secs(10);

/// The calls in progress.
pub struct Calls {
    pub settings: CallSettings,
    dialogs: Mutex<HashMap<DialogId, CallTx>>,
    invites: Mutex<HashMap<ServerKey, CallTx>>,
    active: AtomicUsize,
    answered: AtomicU64,
    gateways: Mutex<Option<(Instant, Arc<Vec<Gateway>>)>>,
    /// Users' answering rules, read once per directory cache lifetime: a
    /// call to a user costs no database round trip for them.
    rules: crate::directory::TtlCache<Arc<Vec<AnsweringRule>>>,
    /// Calls waiting for a push-woken device, by the caller's Call-ID:
    /// the callee and the call's task.
    parked: Mutex<HashMap<String, (String, CallTx)>>,
}

impl Calls {
    pub fn new(settings: CallSettings) -> Self {
        Self {
            settings,
            dialogs: Mutex::new(HashMap::new()),
            invites: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            gateways: Mutex::new(None),
            rules: Default::default(),
            parked: Mutex::new(HashMap::new()),
        }
    }

    /// Calls parked for a push-woken device.
    pub fn parked(&self) -> usize {
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn park(&self, call_id: &str, callee: &str, tx: CallTx) {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call_id.to_owned(), (callee.to_owned(), tx));
    }

    /// `login` registered a device: its parked calls ring it too.
    pub fn device_registered(&self, login: &str, bindings: &[crate::store::location::Binding]) {
        let parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        for (callee, tx) in parked.values() {
            if callee == login {
                let _ = tx.send(CallEvent::DeviceRegistered {
                    bindings: bindings.to_vec(),
                });
            }
        }
    }

    fn unpark(&self, call_id: &str) {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call_id);
    }

    /// Calls whose task is running.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Calls answered since start.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Dialogs registered (two per answered call, more while forking): a
    /// leak shows here.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn register(&self, id: DialogId, tx: CallTx) {
        self.dialogs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
    }

    fn forget(&self, ids: &[DialogId], invite: Option<&ServerKey>) {
        let mut dialogs = self.dialogs.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            dialogs.remove(id);
        }
        drop(dialogs);
        if let Some(key) = invite {
            self.forget_invite(key);
        }
    }

    fn forget_invite(&self, key: &ServerKey) {
        self.invites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn call_of(&self, req: &rsip::Request) -> Option<(DialogId, CallTx)> {
        let id = DialogId::of_request(req)?;
        let tx = self
            .dialogs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()?;
        Some((id, tx))
    }

    /// An ACK outside any transaction: the ACK of a 2xx, for the call's task.
    pub fn on_ack(&self, req: rsip::Request) {
        if let Some((id, tx)) = self.call_of(&req) {
            let _ = tx.send(CallEvent::Ack { id, req });
        }
    }

    /// The caller's CANCEL: true when it matched an INVITE still ringing.
    pub fn cancel(&self, cancel: &rsip::Request) -> bool {
        let Some(key) = server_key(cancel).map(|k| k.with_method(rsip::Method::Invite)) else {
            return false;
        };
        let tx = self
            .invites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        tx.is_some_and(|tx| tx.send(CallEvent::Cancel).is_ok())
    }

    /// A request inside a call's dialog; `None` when no call owns it.
    pub async fn in_dialog(&self, req: &rsip::Request) -> Option<rsip::Response> {
        let (id, tx) = self.call_of(req)?;
        let (respond, answer) = oneshot::channel();
        // The call ended meanwhile: the dialog is gone (built only then).
        let gone = || response_for(req, 481, "Call/Transaction Does Not Exist", None, &[]);
        let event = CallEvent::Request {
            id,
            req: req.clone(),
            respond,
        };
        if tx.send(event).is_err() {
            return Some(gone());
        }
        Some(answer.await.unwrap_or_else(|_| gone()))
    }

    async fn gateways(&self, server: &SipServer) -> Arc<Vec<Gateway>> {
        let now = Instant::now();
        if let Some((at, list)) = &*self.gateways.lock().unwrap_or_else(|p| p.into_inner())
            && now.duration_since(*at) < GATEWAYS_TTL
        {
            return list.clone();
        }
        let list = match server.store.list_gateways().await {
            Ok(list) => Arc::new(list),
            Err(e) => {
                tracing::error!(error = %e, "cannot read gateways");
                Arc::new(Vec::new())
            }
        };
        *self.gateways.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, list.clone()));
        list
    }
}

/// Who placed the call, for routing and the call record.
#[derive(Debug, Clone)]
struct Origin {
    /// Login of the caller, or the number a gateway presented.
    caller: String,
    display_name: Option<String>,
    /// Gateway the call came in from.
    gateway: Option<String>,
    route: Option<RouteRequest>,
    /// Another node of the cluster forwarded the call to the callee's
    /// devices here: it routed, records and charges the call, and decides
    /// what an unanswered call becomes; this node only rings.
    forwarded: bool,
}

/// An INVITE with Replaces (RFC 3891): the callee's device, woken by a
/// push, picks its parked call. 481 when no call with that Call-ID is
/// parked, 403 when it is parked for someone else.
async fn pickup(
    server: &Arc<SipServer>,
    flow: &Flow,
    req: &rsip::Request,
    tag: &str,
    replaces: &str,
) -> rsip::Response {
    let Some(replaces) = pickup::parse_replaces(replaces) else {
        return response_for(req, 400, "Bad Request - Replaces", Some(tag), &[]);
    };
    let forwarded = server.forwarded(flow, req);
    let account = match server.identify_caller(flow, req, tag, forwarded).await {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    let parked = server
        .calls
        .parked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&replaces.call_id)
        .cloned();
    let gone = || response_for(req, 481, "Call/Transaction Does Not Exist", Some(tag), &[]);
    let Some((callee, tx)) = parked else {
        tracing::info!(login = account.login, "pickup of a call that is not parked");
        return gone();
    };
    if callee != account.login {
        tracing::warn!(
            login = account.login,
            callee,
            "pickup of another user's call refused"
        );
        return response_for(req, 403, "Forbidden - not your call", Some(tag), &[]);
    }
    let (respond, answer) = oneshot::channel();
    let event = CallEvent::Pickup {
        req: req.clone(),
        flow: *flow,
        tag: tag.to_owned(),
        respond,
    };
    if tx.send(event).is_err() {
        return gone();
    }
    answer.await.unwrap_or_else(|_| gone())
}

/// A new INVITE from outside any dialog.
pub async fn on_invite(
    server: &Arc<SipServer>,
    flow: &Flow,
    req: &rsip::Request,
    tag: &str,
    provisional: ProvisionalSink,
) -> rsip::Response {
    if let Some(replaces) = header_value(&req.headers, "Replaces") {
        return pickup(server, flow, req, tag, replaces).await;
    }
    let calls = &server.calls;
    let gateways = calls.gateways(server).await;
    let from = header_value(&req.headers, "From").unwrap_or("");
    let Some(target) = user_of(&req.uri.to_string()) else {
        return response_for(req, 404, "Not Found", Some(tag), &[]);
    };
    let (origin, routed) = match gateways
        .iter()
        .find(|g| g.address.parse::<SocketAddr>().ok() == Some(flow.remote))
    {
        // A carrier delivering a call to one of our numbers: trusted by its
        // source address, routed by the DID table.
        Some(gateway) => {
            let number = target.trim_start_matches('+').to_owned();
            let owner = match server.store.did_owner(&number).await {
                Ok(Some(owner)) => owner,
                Ok(None) => return response_for(req, 404, "Not Found", Some(tag), &[]),
                Err(e) => {
                    tracing::error!(error = %e, "DID look-up failed");
                    return database_unavailable(req, Some(tag));
                }
            };
            let origin = Origin {
                caller: user_of(from).unwrap_or_default(),
                display_name: display_name_of(from),
                gateway: Some(gateway.name.clone()),
                route: None,
                forwarded: false,
            };
            (origin, to_user(owner))
        }
        None => {
            let forwarded = server.forwarded(flow, req);
            let account = match server.identify_caller(flow, req, tag, forwarded).await {
                Ok(account) => account,
                Err(resp) => return resp,
            };
            let login = account.login.clone();
            let display_name = display_name_of(from).or(account.display_name.clone());
            let forwarded = forwarded == Forwarded::Yes;
            // A call another node forwarded was routed there.
            let (route, routed) = if forwarded {
                (None, to_user(target))
            } else {
                let route = RouteRequest {
                    kind: Kind::Call,
                    caller_login: login.clone(),
                    caller_display_name: display_name.clone(),
                    authenticated: true,
                    target,
                    transport: match flow.proto {
                        Proto::Udp => RouteTransport::Udp,
                        Proto::Tcp => RouteTransport::Tcp,
                        Proto::Tls => RouteTransport::Tls,
                        // The routing world names no WebSocket (yet): a browser's
                        // requests look like TCP or TLS ones to the guest.
                        Proto::Ws => RouteTransport::Tcp,
                        Proto::Wss => RouteTransport::Tls,
                    },
                    source_address: flow.remote.to_string(),
                    dialplan_rule: account.dialplan_rule.clone(),
                    reason: Reason::Initial,
                };
                let routed = server.router.route(&route).await;
                (Some(route), routed)
            };
            let origin = Origin {
                caller: login,
                display_name,
                gateway: None,
                route,
                forwarded,
            };
            (origin, routed)
        }
    };
    let Some(a_key) = server_key(req) else {
        return response_for(req, 400, "Bad Request - Via branch", Some(tag), &[]);
    };
    let (final_tx, final_rx) = oneshot::channel();
    let Some(call) = leg::Call::new(
        server.clone(),
        flow,
        req,
        tag,
        a_key,
        origin,
        provisional,
        final_tx,
    ) else {
        return response_for(req, 400, "Bad Request - Contact", Some(tag), &[]);
    };
    call.start(routed, gateways).await;
    final_rx
        .await
        .unwrap_or_else(|_| response_for(req, 500, "Server Internal Error", Some(tag), &[]))
}

/// A call to a user decided without the routing guest: a DID's owner, a
/// callee another node forwarded.
fn to_user(login: String) -> Routed {
    Routed {
        decision: RouteDecision::ToUser { login },
        caller_id: None,
        guest: String::new(),
        fallback: None,
    }
}

/// Where a B leg goes.
struct Target {
    /// The Request-URI.
    uri: String,
    /// To of the B leg (the callee as addressed).
    to: String,
    flow: Flow,
    /// Another node of the cluster, ringing the callee's devices there:
    /// the INVITE is signed.
    node: bool,
}

/// The flow toward a gateway: UDP from one of our UDP listeners, or a TCP
/// or TLS connection (the open one, else a new one). The address may be a
/// name, resolved here; over TLS the certificate must be valid for that
/// host (the name, or the IP address as a SAN), and a gateway that fails
/// the check is not called.
async fn gateway_flow(server: &SipServer, gateway: &Gateway) -> Option<Flow> {
    let remote: SocketAddr = match gateway.address.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(&gateway.address)
            .await
            .ok()?
            .next()?,
    };
    let transports = server.transports()?;
    let connected = match gateway.transport {
        crate::store::Transport::Udp => {
            let local = transports
                .bound
                .iter()
                .find(|(p, a)| *p == Proto::Udp && a.is_ipv4() == remote.is_ipv4())
                .map(|(_, a)| *a)?;
            return Some(Flow {
                proto: Proto::Udp,
                local,
                remote,
            });
        }
        crate::store::Transport::Tcp => transports.connect_tcp(remote).await,
        crate::store::Transport::Tls => {
            let Some(name) = server_name(&gateway.address) else {
                tracing::warn!(
                    gateway = gateway.name,
                    address = gateway.address,
                    "gateway address has no host to verify a certificate for"
                );
                return None;
            };
            transports.connect_tls(remote, name).await
        }
    };
    match connected {
        Ok(flow) => Some(flow),
        Err(e) => {
            tracing::warn!(
                gateway = gateway.name,
                address = gateway.address,
                transport = gateway.transport.as_str(),
                error = %e,
                "cannot connect to the gateway"
            );
            None
        }
    }
}

/// The name a gateway's certificate must carry: the host of its
/// `HOST:PORT` address, an IP address when the host is one.
fn server_name(address: &str) -> Option<rustls::pki_types::ServerName<'static>> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Some(a.ip().into());
    }
    let (host, _port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::server_name;
    use rustls::pki_types::ServerName;

    #[test]
    fn the_certificate_name_is_the_host_of_the_gateway_address() {
        let ip = |s: &str| Some(ServerName::from(s.parse::<std::net::IpAddr>().unwrap()));
        assert_eq!(server_name("127.0.0.1:5061"), ip("127.0.0.1"));
        assert_eq!(server_name("[2001:db8::1]:5061"), ip("2001:db8::1"));
        assert_eq!(
            server_name("sip.carrier.example:5061"),
            Some(ServerName::try_from("sip.carrier.example").unwrap())
        );
        assert_eq!(server_name("no-port"), None);
        assert_eq!(server_name("bad host:5061"), None);
    }
}
