//! One call: the caller's leg, the legs it forked to, and the task that
//! relays between them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use media::Side;
use rsip::Method;
use rsip::headers::{self, UntypedHeader};
use tokio::sync::{mpsc, oneshot};

use super::endpoint_sdp;
use super::media_session::{CallMedia, SharedMedia};
use super::recording::{RecordedCall, RecordingPlan};
use super::relay::{
    any_header, cancel_of, max_forwards_across, name_addr, passed_headers, rack_across,
    response_across, session_expires,
};
use super::service::{ServiceCall, ServiceStart};
use super::unix_ms;
use super::{CallEvent, CallTx, Origin, Target, gateway_flow, pickup};
use crate::ivr::session::CallFacts;
use crate::plugins::routing::{Reason, RouteDecision, Routed};
use crate::push::{Notification, NotificationKind};
use crate::sip::dialog::{Dialog, DialogId, contact_for, cseq_number, via_for};
use crate::sip::forward::Located;
use crate::sip::parse::{encode, response_for};
use crate::sip::registrar::flow_of;
use crate::sip::server::{ClientEvent, ProvisionalSink, SipServer};
use crate::sip::transaction::ServerKey;
use crate::sip::transport::{Flow, Proto};
use crate::sip::util::{header_value, new_call_id, new_tag, tag_of};
use crate::store::Gateway;
use crate::store::answering::{RuleAction, rule_for};
use crate::store::calls::{Cdr, Disposition};

/// How long a relayed 2xx waits for its ACK, and a cancelled branch for its
/// final response (64·T1 with the default T1).
const ACK_WAIT: Duration = Duration::from_secs(32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    /// INVITE sent, nothing back yet (a CANCEL must wait for a 1xx, §9.1).
    Trying,
    /// A provisional response arrived.
    Early,
    /// Answered 2xx (the winner, or a loser the switch hung up).
    Answered,
    /// A final non-2xx, a timeout or a transport error.
    Done,
}

/// One B leg: the INVITE to one device or gateway.
struct Branch {
    invite: rsip::Request,
    /// The switch as UAC toward the device.
    b: Dialog,
    /// The switch as UAS toward the caller, for what this branch says.
    a: Dialog,
    state: BranchState,
    /// The final status, once there is one.
    code: Option<rsip::Response>,
    /// Cancel as soon as a provisional response allows it.
    cancel_wanted: bool,
    /// When a sent CANCEL stops being waited for.
    cancel_deadline: Option<Instant>,
    /// The ACK sent for this branch's 2xx, resent when the 2xx is.
    ack: Option<Vec<u8>>,
}

/// A 2xx the switch relayed and whose ACK it waits for.
struct AwaitAck {
    /// Where the ACK arrives.
    from: DialogId,
    /// Which side's dialog gets the ACK then: true for the B leg.
    to_b: bool,
    /// False for a 2xx the switch itself answered (a picked call): its ACK
    /// ends there.
    relay: bool,
    branch: usize,
    /// CSeq of the INVITE on the side the ACK goes to.
    cseq: u32,
    /// The 2xx bytes and flow to retransmit on (unreliable transports).
    resend: Option<(Vec<u8>, Flow)>,
    next: Instant,
    interval: Duration,
    deadline: Instant,
}

pub(super) struct Call {
    server: Arc<SipServer>,
    tx: CallTx,
    rx: mpsc::UnboundedReceiver<CallEvent>,
    invite: rsip::Request,
    a_flow: Flow,
    a_tag: String,
    a_key: ServerKey,
    a_cseq: u32,
    a_template: Dialog,
    origin: Origin,
    provisional: ProvisionalSink,
    final_tx: Option<oneshot::Sender<rsip::Response>>,
    branches: Vec<Branch>,
    winner: Option<usize>,
    callee: String,
    gateway: Option<String>,
    started_at: i64,
    answered_at: Option<i64>,
    code: u16,
    disposition: Option<Disposition>,
    end_reason: Option<&'static str>,
    /// Set once the answered call is over (BYE, timer).
    hung_up: bool,
    no_answer_at: Option<Instant>,
    rerouted: bool,
    session_deadline: Option<Instant>,
    max_end: Option<Instant>,
    /// A prepaid OFFNET call's authorisation: settled (or released) with
    /// the call record; the call is cut when its money runs out.
    charge: Option<crate::billing::Authorization>,
    /// `max_end` is the charge's limit, not the configured maximum.
    cut_for_credit: bool,
    awaiting: Vec<AwaitAck>,
    /// The call's streams on the relay and its SDP rewriting (once
    /// answered, the winning branch's).
    media: SharedMedia,
    /// While a call rings a user's browsers and other devices at once: the
    /// browsers' media (the other devices keep `media`), each side of the
    /// WebRTC gateway its own. The winner's becomes `media`.
    browser_media: Option<SharedMedia>,
    /// When the relay is next looked at for silence.
    silence_check_at: Option<Instant>,
    /// The caller was handed to an IVR service, which owns its dialog,
    /// its INVITE and its call record from then on.
    handed_over: bool,
    /// When the ringing devices have had long enough: the call is parked
    /// and the callee's apps pushed.
    park_at: Option<Instant>,
    /// The callee's apps got an incoming-call push (a missed-call push
    /// follows if nobody answers).
    pushed: bool,
    /// The From of the B legs, for devices that register while the call
    /// is parked.
    b_from: String,
}

impl Call {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        server: Arc<SipServer>,
        flow: &Flow,
        req: &rsip::Request,
        tag: &str,
        a_key: ServerKey,
        origin: Origin,
        provisional: ProvisionalSink,
        final_tx: oneshot::Sender<rsip::Response>,
    ) -> Option<Call> {
        let a_template = Dialog::uas(req, tag.to_owned(), *flow)?;
        // A call another node forwarded here is anchored there alone,
        // unless `cluster.media` asks each node to relay its own leg.
        let anchored_elsewhere = origin.forwarded
            && server
                .cluster()
                .is_some_and(|c| c.media() == crate::cluster::ClusterMedia::Entry);
        let server_media = if anchored_elsewhere {
            None
        } else {
            server.calls.settings.media.clone()
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Some(Call {
            server,
            tx,
            rx,
            invite: req.clone(),
            a_flow: *flow,
            a_tag: tag.to_owned(),
            a_key,
            a_cseq: cseq_number(&req.headers).unwrap_or(1),
            a_template,
            gateway: origin.gateway.clone(),
            origin,
            provisional,
            final_tx: Some(final_tx),
            branches: Vec::new(),
            winner: None,
            callee: String::new(),
            started_at: unix_ms(),
            answered_at: None,
            code: 0,
            disposition: None,
            end_reason: None,
            hung_up: false,
            no_answer_at: None,
            rerouted: false,
            session_deadline: None,
            max_end: None,
            charge: None,
            cut_for_credit: false,
            awaiting: Vec::new(),
            media: CallMedia::shared(server_media),
            browser_media: None,
            silence_check_at: None,
            handed_over: false,
            park_at: None,
            pushed: false,
            b_from: String::new(),
        })
    }

    /// Acts on the routing decision and, if devices are called, runs the
    /// call in its own task.
    pub(super) async fn start(mut self, routed: Routed, gateways: Arc<Vec<Gateway>>) {
        self.follow(routed, &gateways).await;
        if self.final_tx.is_none() && self.branches.is_empty() {
            // Answered at once (a refusal): nothing to run, but it is a call
            // record (unless a service took the call: it writes its own).
            if !self.handed_over {
                self.write_cdr().await;
            }
            return;
        }
        let calls = &self.server.calls;
        calls
            .invites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.a_key.clone(), self.tx.clone());
        calls.active.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("call", call_id = %self.a_template.call_id);
        tokio::spawn(tracing::Instrument::instrument(self.run(), span));
    }

    /// Forks to what the guest decided, or answers the caller.
    async fn follow(&mut self, routed: Routed, gateways: &[Gateway]) {
        let caller_id = routed.caller_id.clone();
        let domain = self.server.settings.domain.clone();
        let from_user = caller_id
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_else(|| self.origin.caller.clone());
        let from_name = caller_id
            .as_ref()
            .and_then(|c| c.display_name.clone())
            .or_else(|| self.origin.display_name.clone());
        let from = name_addr(from_name.as_deref(), &format!("sip:{from_user}@{domain}"));
        self.b_from = from.clone();
        // How long the targets ring: the callee account's own no-answer
        // timeout, else (and for a carrier's number) the switch-wide one.
        let mut ring_for = self.server.calls.settings.no_answer;
        let mut callee_account = None;
        // A prepaid call routed again elsewhere than a gateway (a user,
        // voicemail) is not charged at the carrier's rate.
        if !matches!(routed.decision, RouteDecision::ToGateway { .. }) {
            self.release_charge().await;
        }
        let targets: Vec<Target> = match routed.decision {
            RouteDecision::ToUser { login } => {
                // A forwarded call's answering rules were applied by the
                // node that forwarded it.
                let rule = match self.origin.forwarded {
                    true => None,
                    false => self.answering_rule(&login).await,
                };
                match rule {
                    Some(RuleAction::Reject) => {
                        self.callee = login;
                        return self.answer_now(603, "Decline");
                    }
                    Some(RuleAction::Voicemail) => {
                        self.callee = login;
                        if Box::pin(self.reroute(Reason::Unavailable)).await {
                            return;
                        }
                        return self.answer_now(480, "Temporarily Unavailable");
                    }
                    // No second routing question: unanswered, busy and
                    // offline end the call.
                    Some(RuleAction::RingOnly) => self.rerouted = true,
                    Some(RuleAction::Ring) | None => {}
                }
                let located = self.server.locate(&login, self.origin.forwarded).await;
                self.callee = login.clone();
                let mut targets = self.targets_of(&login, located);
                let pushable = self.has_push_tokens(&login).await;
                let mut at_home = false;
                if targets.is_empty()
                    && pushable
                    && !self.origin.forwarded
                    && let Some(home) = self.home_target(&login).await
                {
                    // Offline, with an app to wake, and at home on another
                    // node: that node parks the call and pushes, so the
                    // woken app, registering at home, picks it there.
                    targets.push(home);
                    at_home = true;
                }
                if targets.is_empty() && pushable {
                    // Offline, but an app can be woken: park the call for
                    // it until the no-answer timeout.
                    ring_for = self.no_answer_of(&login).await;
                    self.park();
                    if !ring_for.is_zero() {
                        self.no_answer_at = Some(Instant::now() + ring_for);
                    }
                    return;
                }
                if targets.is_empty() {
                    // Offline: the user's answering rules (voicemail) apply.
                    if Box::pin(self.reroute(Reason::Unavailable)).await {
                        return;
                    }
                    return self.answer_now(480, "Temporarily Unavailable");
                }
                if pushable
                    && !at_home
                    && let Some(push) = self.server.push()
                {
                    self.park_at =
                        Some(Instant::now() + Duration::from_millis(push.config.park_after_ms));
                }
                ring_for = self.no_answer_of(&login).await;
                // The forwarding node records the call.
                callee_account = (!self.origin.forwarded).then_some(login);
                targets
            }
            RouteDecision::ToGateway { gateway, number } => {
                self.callee = number.clone();
                self.gateway = Some(gateway.clone());
                let flow = match gateways.iter().find(|g| g.name == gateway) {
                    Some(g) => gateway_flow(&self.server, g).await,
                    None => None,
                };
                let Some(flow) = flow else {
                    tracing::warn!(gateway, "gateway unknown or not reachable");
                    return self.answer_now(503, "Service Unavailable");
                };
                if let Err((code, reason)) = self.authorize_charge(&number).await {
                    return self.answer_now(code, reason);
                }
                // The transport the switch chose, said in the URI as RFC 3261
                // §19.1.1 has it (a plain `sip:` URI means UDP to a proxy
                // that re-resolves it); over TLS without requiring `sips:`.
                let transport = flow.proto.uri_param();
                vec![Target {
                    uri: format!("sip:{number}@{}{transport}", flow.remote),
                    to: format!("<sip:{number}@{}>", flow.remote),
                    flow,
                    node: false,
                }]
            }
            RouteDecision::ToService { name, args } => {
                if self.callee.is_empty() {
                    self.callee = name.clone();
                }
                return self.hand_to_service(name, args).await;
            }
            RouteDecision::Reject { code, reason } => {
                if self.callee.is_empty() {
                    self.callee = self
                        .origin
                        .route
                        .as_ref()
                        .map(|r| r.target.clone())
                        .unwrap_or_default();
                }
                return self.answer_now(code, &reason);
            }
        };
        if !self.origin.forwarded
            && let Some(plan) = self
                .recording_plan(callee_account.as_deref(), gateways)
                .await
        {
            lock(&self.media).plan_recording(plan);
        }
        let browsers = browsers_among(&targets);
        if browsers == Some(false) && targets.iter().any(|t| is_browser(&t.flow)) {
            // Browsers and other devices ring together: each kind gets
            // what it speaks (the browsers WebRTC, the others the caller's
            // media or its G.711), from a media session of its own.
            let browser_media = lock(&self.media).sibling();
            lock(&browser_media).callee_browsers(Some(true));
            self.browser_media = Some(browser_media);
        }
        lock(&self.media).callee_browsers(browsers);
        let before = self.branches.len();
        for target in targets {
            self.fork(target, &from).await;
        }
        if self.branches.len() == before {
            // Every contact was unusable: nothing rings.
            return self.answer_now(480, "Temporarily Unavailable");
        }
        if !ring_for.is_zero() {
            self.no_answer_at = Some(Instant::now() + ring_for);
        }
    }

    /// The B legs that ring `login`'s devices: this node's over their
    /// flows, other nodes' through those nodes.
    fn targets_of(&self, login: &str, located: Located) -> Vec<Target> {
        let domain = &self.server.settings.domain;
        let transports = self.server.transports().cloned();
        let local = located.local.into_iter().filter_map(|b| {
            let flow = flow_of(&b)?;
            if transports.as_ref().is_some_and(|t| !t.is_reachable(&flow)) {
                return None;
            }
            Some(Target {
                uri: b.contact,
                to: format!("<sip:{login}@{domain}>"),
                flow,
                node: false,
            })
        });
        let remote = located.remote.into_iter().filter_map(|peer| {
            Some(Target {
                uri: format!("sip:{login}@{peer}"),
                to: format!("<sip:{login}@{domain}>"),
                flow: self.server.node_flow(peer)?,
                node: true,
            })
        });
        local.chain(remote).collect()
    }

    /// The B leg to `login`'s home node (the local dialing plan's), when
    /// that is another live node of the cluster.
    async fn home_target(&self, login: &str) -> Option<Target> {
        let (_, home) = self.server.home_node(login).await?;
        Some(Target {
            uri: format!("sip:{login}@{home}"),
            to: format!("<sip:{login}@{}>", self.server.settings.domain),
            flow: self.server.node_flow(home)?,
            node: true,
        })
    }

    /// Hands the caller over to an IVR service the switch answers itself.
    async fn hand_to_service(&mut self, name: String, args: Vec<String>) {
        let mut offer = match endpoint_sdp::audio_offer(&self.invite.body) {
            Ok(offer) => offer,
            Err(e) => {
                tracing::info!(service = name, error = %e, "offer refused by the IVR endpoint");
                return self.answer_now(488, "Not Acceptable Here");
            }
        };
        // A browser's leg speaks what the operator chose for browsers (the
        // services' prompts are 8 kHz: Opus buys nothing but its cost).
        let browser_codec = self
            .server
            .calls
            .settings
            .media
            .as_ref()
            .map(|m| m.browser_codec);
        if offer.webrtc.is_some() && browser_codec == Some(crate::config::BrowserCodec::G711) {
            offer.prefer_g711();
        }
        let Some(final_tx) = self.final_tx.take() else {
            return;
        };
        let language = self
            .server
            .ivr()
            .map(|i| i.language().to_owned())
            .unwrap_or_default();
        let dialled = self
            .origin
            .route
            .as_ref()
            .map(|r| r.target.clone())
            .unwrap_or_else(|| self.callee.clone());
        let facts = CallFacts {
            service: name,
            args,
            // A carrier's caller is a number, not one of our accounts.
            caller_login: if self.origin.gateway.is_none() {
                self.origin.caller.clone()
            } else {
                String::new()
            },
            caller_id: self.origin.caller.clone(),
            caller_display_name: self.origin.display_name.clone(),
            callee: dialled,
            language,
            call_id: self.a_template.call_id.clone(),
        };
        let start = ServiceStart {
            server: self.server.clone(),
            invite: self.invite.clone(),
            a_flow: self.a_flow,
            // After ringing (no answer, busy) the first branch's early dialog
            // has the caller's tag and stays this task's until it ends: the
            // service answers as a dialog of its own (a fork, to the caller).
            a_tag: if self.branches.is_empty() {
                self.a_tag.clone()
            } else {
                new_tag()
            },
            a_key: self.a_key.clone(),
            final_tx,
            facts,
            offer,
            caller: self.origin.caller.clone(),
            callee: self.callee.clone(),
            started_at: self.started_at,
        };
        match ServiceCall::start(start).await {
            Ok(()) => self.handed_over = true,
            Err((start, code, reason)) => {
                self.final_tx = Some(start.final_tx);
                self.answer_now(code, reason);
            }
        }
    }

    /// A body sent by `from` as the other side gets it.
    fn sdp(&self, body: &[u8], from: Side) -> Vec<u8> {
        self.sdp_in(&self.media, body, from)
    }

    /// The same, across the media of the branch toward `flow`.
    fn sdp_toward(&self, flow: &Flow, body: &[u8], from: Side) -> Vec<u8> {
        self.sdp_in(self.media_toward(flow), body, from)
    }

    fn sdp_in(&self, media: &SharedMedia, body: &[u8], from: Side) -> Vec<u8> {
        if body.is_empty() {
            return Vec::new();
        }
        lock(media).rewrite(body, from, self.gateway.is_some())
    }

    /// The media session of the branch toward `flow`.
    fn media_toward(&self, flow: &Flow) -> &SharedMedia {
        match &self.browser_media {
            Some(browsers) if is_browser(flow) => browsers,
            _ => &self.media,
        }
    }

    /// How long `login`'s devices ring: its own no-answer timeout, else the
    /// switch-wide one. Read through the server's account cache, so a call
    /// costs no database round trip while the entry is fresh; a change shows
    /// within that cache's lifetime. A failed read rings for the default.
    async fn no_answer_of(&self, login: &str) -> Duration {
        let default = self.server.calls.settings.no_answer;
        match self.server.account(login).await {
            Ok(Some(account)) => account
                .no_answer_secs
                .map_or(default, |secs| Duration::from_secs(secs.into())),
            Ok(None) => default,
            Err(e) => {
                tracing::warn!(callee = login, error = %e, "account look-up failed: default no-answer timeout");
                default
            }
        }
    }

    /// What `login`'s answering rules say about this caller (its login,
    /// number or username; a carrier's caller by number). A failed read
    /// applies no rule: the call rings as usual.
    async fn answering_rule(&self, login: &str) -> Option<RuleAction> {
        let calls = &self.server.calls;
        let rules = match calls.rules.get(login) {
            Some(rules) => rules,
            None => match self.server.store.answering_rules(login).await {
                Ok(rules) => {
                    let rules = Arc::new(rules);
                    calls.rules.put(login.to_owned(), rules.clone());
                    rules
                }
                Err(e) => {
                    tracing::warn!(callee = login, error = %e, "answering rules unreadable: none applied");
                    return None;
                }
            },
        };
        if rules.is_empty() {
            return None;
        }
        let mut callers = vec![self.origin.caller.clone()];
        if self.origin.gateway.is_none()
            && let Ok(Some(account)) = self.server.account(&self.origin.caller).await
        {
            callers.extend(account.phone.clone());
            callers.extend(account.username.clone());
        }
        let callers: Vec<&str> = callers.iter().map(String::as_str).collect();
        let rule = rule_for(&rules, &callers)?;
        tracing::debug!(
            callee = login,
            rule = rule.id,
            action = rule.action.as_str(),
            "answering rule applies"
        );
        Some(rule.action)
    }

    /// Whether the call is recorded: the caller's account, the callee's
    /// (`callee_account`, when the call rings one), or a gateway on either
    /// side says so. A gateway records for the party on this switch.
    async fn recording_plan(
        &self,
        callee_account: Option<&str>,
        gateways: &[Gateway],
    ) -> Option<RecordingPlan> {
        let caller_account = self
            .origin
            .gateway
            .is_none()
            .then_some(self.origin.caller.as_str());
        let mut flags: Vec<(Option<String>, String)> = Vec::new();
        for login in [caller_account, callee_account].into_iter().flatten() {
            match self.server.account(login).await {
                Ok(Some(a)) => flags.push((a.recording.clone(), login.to_owned())),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(login, error = %e, "account look-up failed: its recording flag is not known");
                }
            }
        }
        let local = callee_account.or(caller_account).unwrap_or_default();
        for name in [self.origin.gateway.as_deref(), self.gateway.as_deref()]
            .into_iter()
            .flatten()
        {
            if let Some(g) = gateways.iter().find(|g| g.name == name) {
                flags.push((g.recording.clone(), local.to_owned()));
            }
        }
        RecordingPlan::from_flags(flags.iter().map(|(l, o)| (l.as_deref(), o.as_str())))
    }

    /// Answers the caller with a final non-2xx (no branch involved).
    fn answer_now(&mut self, code: u16, reason: &str) {
        let resp = response_for(&self.invite, code, reason, Some(&self.a_tag), &[]);
        self.finish(resp, disposition_of(code));
    }

    fn finish(&mut self, resp: rsip::Response, disposition: Disposition) {
        self.code = resp.status_code.code();
        if self.disposition.is_none() {
            self.disposition = Some(disposition);
        }
        if let Some(tx) = self.final_tx.take() {
            let _ = tx.send(resp);
        }
        self.server.calls.forget_invite(&self.a_key);
        self.server.calls.unpark(&self.a_template.call_id);
    }

    /// Sends the INVITE of a new B leg.
    async fn fork(&mut self, target: Target, from: &str) {
        let index = self.branches.len();
        let flow = target.flow;
        let contact = contact_for(&flow);
        let Ok(uri) = rsip::Uri::try_from(target.uri.as_str()) else {
            tracing::debug!(uri = target.uri, "unusable contact skipped");
            return;
        };
        let domain = &self.server.settings.domain;
        let mut hs: Vec<rsip::Header> = vec![
            rsip::Header::Via(headers::Via::new(via_for(&flow))),
            max_forwards_across(&self.invite.headers)
                .unwrap_or_else(|| rsip::Header::MaxForwards(headers::MaxForwards::new("69"))),
            rsip::Header::From(headers::From::new(format!("{from};tag={}", new_tag()))),
            rsip::Header::To(headers::To::new(target.to.clone())),
            rsip::Header::CallId(headers::CallId::new(new_call_id(domain))),
            rsip::Header::CSeq(headers::CSeq::new("1 INVITE")),
            rsip::Header::Contact(headers::Contact::new(contact)),
        ];
        hs.extend(passed_headers(&self.invite.headers));
        let mut invite = rsip::Request {
            method: Method::Invite,
            uri,
            version: rsip::Version::V2,
            headers: hs.into(),
            body: self.sdp_toward(&flow, &self.invite.body, Side::A),
        };
        if target.node {
            let Some(cluster) = self.server.cluster() else {
                return;
            };
            cluster.sign(&mut invite);
        }
        let Some(b) = Dialog::uac(&invite, flow) else {
            return;
        };
        let mut a = self.a_template.clone();
        a.local_tag = if index == 0 {
            self.a_tag.clone()
        } else {
            new_tag()
        };
        self.server.calls.register(b.id(), self.tx.clone());
        self.server.calls.register(a.id(), self.tx.clone());
        self.branches.push(Branch {
            invite: invite.clone(),
            b,
            a,
            state: BranchState::Trying,
            code: None,
            cancel_wanted: false,
            cancel_deadline: None,
            ack: None,
        });
        let events = self.tx.clone();
        tracing::debug!(branch = index, remote = %flow.remote, "forking");
        self.server.send_request(flow, invite, move |event| {
            let _ = events.send(CallEvent::Branch { index, event });
        });
    }

    async fn run(mut self) {
        let mut recorded = false;
        while !self.is_over() {
            recorded |= self.handed_over;
            // The record is written when the caller's side is over, not when
            // the last straggling branch (a device that never answered) is.
            if !recorded && self.final_tx.is_none() && (self.winner.is_none() || self.hung_up) {
                self.write_cdr().await;
                recorded = true;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                event = self.rx.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => break,
                },
                _ = sleep_until(deadline) => self.on_timer().await,
            }
        }
        let ids: Vec<DialogId> = self
            .branches
            .iter()
            .flat_map(|b| [b.a.id(), b.b.id()])
            .collect();
        let invite = (!self.handed_over).then_some(&self.a_key);
        self.server.calls.forget(&ids, invite);
        self.server.calls.active.fetch_sub(1, Ordering::Relaxed);
        if !recorded && !self.handed_over {
            self.write_cdr().await;
        }
    }

    fn is_over(&self) -> bool {
        let branches_settled = self
            .branches
            .iter()
            .enumerate()
            .all(|(i, b)| match b.state {
                BranchState::Done => true,
                BranchState::Answered => Some(i) != self.winner || self.hung_up,
                _ => false,
            });
        self.final_tx.is_none() && branches_settled && self.awaiting.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut all: Vec<Instant> = Vec::new();
        if self.final_tx.is_some() {
            all.extend(self.no_answer_at);
            all.extend(self.park_at);
        }
        if !self.hung_up {
            all.extend(self.session_deadline);
            all.extend(self.max_end);
            if self.winner.is_some() {
                all.extend(self.silence_check_at);
            }
        }
        for a in &self.awaiting {
            all.push(a.deadline);
            if a.resend.is_some() {
                all.push(a.next);
            }
        }
        all.extend(self.branches.iter().filter_map(|b| b.cancel_deadline));
        all.into_iter().min()
    }

    async fn on_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::Cancel => {
                if self.final_tx.is_some() {
                    self.caller_gave_up().await;
                }
            }
            CallEvent::Branch { index, event } => self.on_branch(index, event).await,
            CallEvent::Ack { id, req } => self.on_ack(id, req).await,
            CallEvent::Request { id, req, respond } => self.on_request(id, req, respond).await,
            CallEvent::Reinvited {
                ack_from,
                cseq,
                resend,
                session_expires,
            } => {
                self.refresh_session(session_expires);
                let Some((branch, from_b)) = self.locate(&ack_from) else {
                    return;
                };
                let now = Instant::now();
                let t1 = self.server.settings.timers.t1;
                self.awaiting.push(AwaitAck {
                    from: ack_from,
                    to_b: !from_b,
                    relay: true,
                    branch,
                    cseq,
                    resend,
                    next: now + t1,
                    interval: t1,
                    deadline: now + ACK_WAIT,
                });
            }
            CallEvent::Refreshed { session_expires } => self.refresh_session(session_expires),
            CallEvent::Pickup {
                req,
                flow,
                tag,
                respond,
            } => self.on_pickup(req, flow, tag, respond).await,
            CallEvent::DeviceRegistered { bindings } => self.on_device_registered(bindings).await,
            CallEvent::PeerGone { from } => {
                if self.winner.is_some() && !self.hung_up {
                    // The side that sent the request is alive; the other is gone.
                    let from_b = self.locate(&from).is_some_and(|(_, b)| b);
                    tracing::info!("peer of a confirmed dialog is gone: call torn down");
                    self.hang_up(!from_b, from_b, "peer-gone").await;
                }
            }
        }
    }

    /// Which branch a dialog id is, and whether it is the B side.
    fn locate(&self, id: &DialogId) -> Option<(usize, bool)> {
        self.branches.iter().enumerate().find_map(|(i, b)| {
            if b.b.call_id == id.call_id && b.b.local_tag == id.local_tag {
                Some((i, true))
            } else if b.a.call_id == id.call_id && b.a.local_tag == id.local_tag {
                Some((i, false))
            } else {
                None
            }
        })
    }

    async fn on_branch(&mut self, index: usize, event: ClientEvent) {
        let resp = match event {
            ClientEvent::Provisional(resp) | ClientEvent::Final(resp) => resp,
            ClientEvent::Timeout => response_for(
                &self.branches[index].invite,
                408,
                "Request Timeout",
                None,
                &[],
            ),
            ClientEvent::TransportError => response_for(
                &self.branches[index].invite,
                503,
                "Service Unavailable",
                None,
                &[],
            ),
        };
        let code = resp.status_code.code();
        match code {
            100 => {}
            101..=199 => self.on_provisional(index, resp).await,
            200..=299 => self.on_answer(index, resp).await,
            _ => self.on_failure(index, resp).await,
        }
    }

    async fn on_provisional(&mut self, index: usize, resp: rsip::Response) {
        let branch = &mut self.branches[index];
        if branch.state == BranchState::Trying {
            branch.state = BranchState::Early;
        }
        if header_value(&resp.headers, "To").is_some_and(|to| tag_of(to).is_some()) {
            branch.b.learn_from_response(&resp);
        }
        if branch.cancel_wanted && branch.cancel_deadline.is_none() {
            self.send_cancel(index).await;
            return;
        }
        if self.final_tx.is_none() {
            return;
        }
        let body = self.sdp_toward(&self.branches[index].b.flow, &resp.body, Side::B);
        let branch = &self.branches[index];
        let out = response_across(
            &self.invite,
            &resp,
            Some(&branch.a.local_tag),
            &contact_for(&self.a_flow),
            body,
        );
        let _ = self.provisional.send(Box::new(out));
    }

    async fn on_answer(&mut self, index: usize, resp: rsip::Response) {
        let branch = &mut self.branches[index];
        if let Some(ack) = &branch.ack {
            // The device retransmits its 2xx: our ACK was lost.
            let (flow, ack) = (branch.b.flow, ack.clone());
            self.server.send_raw(&flow, ack).await;
            return;
        }
        if branch.state == BranchState::Answered {
            // A retransmission while the caller's ACK is awaited.
            return;
        }
        branch.state = BranchState::Answered;
        branch.b.learn_from_response(&resp);
        branch.cancel_deadline = None;
        if self.final_tx.is_none() || self.winner.is_some() {
            // Too late (another device answered, or the caller gave up):
            // acknowledge and hang up this one.
            let ack = branch
                .b
                .ack(1, &contact_for(&branch.b.flow), vec![], vec![]);
            let bytes = encode(&ack);
            branch.ack = Some(bytes.clone());
            let flow = branch.b.flow;
            self.server.send_raw(&flow, bytes).await;
            self.send_bye(index, true);
            return;
        }
        let contact = contact_for(&self.a_flow);
        let a_tag = self.branches[index].a.local_tag.clone();
        let body = self.sdp_toward(&self.branches[index].b.flow, &resp.body, Side::B);
        self.mark_answered(index, session_expires(&resp.headers));
        let out = response_across(&self.invite, &resp, Some(&a_tag), &contact, body);
        let now = Instant::now();
        let t1 = self.server.settings.timers.t1;
        let resend = (self.a_flow.proto == Proto::Udp).then(|| (encode(&out), self.a_flow));
        self.awaiting.push(AwaitAck {
            from: self.branches[index].a.id(),
            to_b: true,
            relay: true,
            branch: index,
            cseq: 1,
            resend,
            next: now + t1,
            interval: t1,
            deadline: now + ACK_WAIT,
        });
        self.cancel_branches(Some(index)).await;
        self.finish(out, Disposition::Answered);
    }

    /// Branch `index` won: the call is answered from now on (its SDP has
    /// crossed, so the recorder knows the codecs).
    fn mark_answered(&mut self, index: usize, session_expires: Option<u64>) {
        self.winner = Some(index);
        // The winner's media is the call's; the other kind's goes.
        if let Some(mut browsers) = self.browser_media.take() {
            if is_browser(&self.branches[index].b.flow) {
                std::mem::swap(&mut self.media, &mut browsers);
                lock(&self.media).won();
            }
            lock(&browsers).close();
        }
        self.answered_at = Some(unix_ms());
        self.server.calls.answered.fetch_add(1, Ordering::Relaxed);
        lock(&self.media).start_recording(
            self.server.store.clone(),
            RecordedCall {
                call_id: self.a_template.call_id.clone(),
                caller: self.origin.caller.clone(),
                callee: self.callee.clone(),
                gateway: self.gateway.clone(),
            },
        );
        self.refresh_session(session_expires);
        if !self.server.calls.settings.max_duration.is_zero() {
            self.max_end = Some(Instant::now() + self.server.calls.settings.max_duration);
        }
        if let Some(charge) = &self.charge {
            let paid_until = Instant::now() + Duration::from_secs(u64::from(charge.max_secs));
            if self.max_end.is_none_or(|end| paid_until < end) {
                self.max_end = Some(paid_until);
                self.cut_for_credit = true;
            }
        }
        self.silence_check_at = lock(&self.media)
            .silence_check()
            .map(|every| Instant::now() + every);
    }

    /// The callee's woken device picked the parked call (INVITE with
    /// Replaces): it becomes the winning branch, the switch answers both
    /// sides (each with the other's offer cut to its own formats) and the
    /// devices still ringing are cancelled.
    async fn on_pickup(
        &mut self,
        req: rsip::Request,
        flow: Flow,
        tag: String,
        respond: oneshot::Sender<rsip::Response>,
    ) {
        if self.final_tx.is_none() || self.winner.is_some() {
            let gone = response_for(
                &req,
                481,
                "Call/Transaction Does Not Exist",
                Some(&tag),
                &[],
            );
            let _ = respond.send(gone);
            return;
        }
        let answers = (
            pickup::answer_from(&self.invite.body, &req.body),
            pickup::answer_from(&req.body, &self.invite.body),
        );
        let (Some(to_device), Some(to_caller)) = answers else {
            let refused = response_for(&req, 488, "Not Acceptable Here", Some(&tag), &[]);
            let _ = respond.send(refused);
            return;
        };
        let Some(b) = Dialog::uas(&req, tag.clone(), flow) else {
            let bad = response_for(&req, 400, "Bad Request - Contact", Some(&tag), &[]);
            let _ = respond.send(bad);
            return;
        };
        let index = self.branches.len();
        let mut a = self.a_template.clone();
        a.local_tag = if index == 0 {
            self.a_tag.clone()
        } else {
            new_tag()
        };
        // The caller's media as the device gets it, then the device's as
        // the caller gets it (the order an INVITE and its 2xx take).
        let to_device = self.sdp(&to_device, Side::A);
        let to_caller = self.sdp(&to_caller, Side::B);
        let sdp_type = ("Content-Type".to_string(), "application/sdp".to_string());
        let mut device_ok = response_for(
            &req,
            200,
            "OK",
            Some(&tag),
            &[("Contact".into(), contact_for(&flow)), sdp_type.clone()],
        );
        device_ok.body = to_device;
        let device_cseq = cseq_number(&req.headers).unwrap_or(1);
        let (a_id, b_id) = (a.id(), b.id());
        self.server.calls.register(b_id.clone(), self.tx.clone());
        self.server.calls.register(a_id.clone(), self.tx.clone());
        self.branches.push(Branch {
            invite: req,
            b,
            a,
            state: BranchState::Answered,
            code: None,
            cancel_wanted: false,
            cancel_deadline: None,
            ack: None,
        });
        self.mark_answered(index, None);
        let a_tag = self.branches[index].a.local_tag.clone();
        let mut caller_ok = response_for(
            &self.invite,
            200,
            "OK",
            Some(&a_tag),
            &[("Contact".into(), contact_for(&self.a_flow)), sdp_type],
        );
        caller_ok.body = to_caller;
        let now = Instant::now();
        let t1 = self.server.settings.timers.t1;
        for (from, cseq, out, flow) in [
            (b_id, device_cseq, &device_ok, flow),
            (a_id, 1, &caller_ok, self.a_flow),
        ] {
            self.awaiting.push(AwaitAck {
                from,
                to_b: false,
                relay: false,
                branch: index,
                cseq,
                resend: (flow.proto == Proto::Udp).then(|| (encode(out), flow)),
                next: now + t1,
                interval: t1,
                deadline: now + ACK_WAIT,
            });
        }
        tracing::info!(callee = self.callee, remote = %flow.remote, "parked call picked by a woken device");
        let _ = respond.send(device_ok);
        self.pushed = false;
        self.cancel_branches(Some(index)).await;
        self.finish(caller_ok, Disposition::Answered);
    }

    /// The callee registered a device while the call is parked: every
    /// binding not yet rung gets the INVITE too.
    async fn on_device_registered(&mut self, bindings: Vec<crate::store::location::Binding>) {
        if self.final_tx.is_none() || self.winner.is_some() {
            return;
        }
        let domain = self.server.settings.domain.clone();
        let from = self.b_from.clone();
        for b in bindings {
            let Some(flow) = flow_of(&b) else {
                continue;
            };
            let rung = self
                .branches
                .iter()
                .any(|br| br.b.flow == flow && br.invite.uri.to_string() == b.contact);
            if rung {
                continue;
            }
            tracing::info!(callee = self.callee, remote = %flow.remote, "a device registered while the call is parked: it rings too");
            lock(&self.media).callee_browsers(Some(is_browser(&flow)));
            self.fork(
                Target {
                    uri: b.contact.clone(),
                    to: format!("<sip:{}@{domain}>", self.callee),
                    flow,
                    node: false,
                },
                &from,
            )
            .await;
        }
    }

    /// Whether `login`'s apps can be woken by push (the push service runs
    /// and the user holds a token). A failed read counts as no.
    async fn has_push_tokens(&self, login: &str) -> bool {
        let Some(push) = self.server.push() else {
            return false;
        };
        if push.providers.is_empty() {
            return false;
        }
        match self.server.store.push_tokens(login).await {
            Ok(tokens) => !tokens.is_empty(),
            Err(e) => {
                tracing::warn!(callee = login, error = %e, "push tokens unreadable: no push");
                false
            }
        }
    }

    /// A call notification about this call for the callee's apps.
    fn call_notification(&self, kind: NotificationKind) -> Notification {
        let call_id = &self.a_template.call_id;
        Notification {
            kind,
            from_login: self.origin.caller.clone(),
            from_display_name: self.origin.display_name.clone().unwrap_or_default(),
            from_book_name: None,
            timestamp: self.started_at / 1000,
            call_id: Some(call_id.clone()),
            excerpt: String::new(),
            badge: 0,
            id: format!("{}-{call_id}", kind.as_str()),
        }
    }

    fn push_to_callee(&self, kind: NotificationKind) {
        let Some(push) = self.server.push().cloned() else {
            return;
        };
        let (callee, n) = (self.callee.clone(), self.call_notification(kind));
        tokio::spawn(async move { push.notify_user(&callee, n).await });
    }

    /// Parks the call for a device woken by push: the callee's apps get an
    /// incoming-call push, the caller hears ringing, and a pickup INVITE
    /// with Replaces finds the call from now on. Registered devices go on
    /// ringing.
    fn park(&mut self) {
        if self.pushed || self.final_tx.is_none() {
            return;
        }
        self.pushed = true;
        self.park_at = None;
        self.server
            .calls
            .park(&self.a_template.call_id, &self.callee, self.tx.clone());
        if self.branches.is_empty() {
            let ringing = response_for(
                &self.invite,
                180,
                "Ringing",
                Some(&self.a_tag),
                &[("Contact".into(), contact_for(&self.a_flow))],
            );
            let _ = self.provisional.send(Box::new(ringing));
        }
        tracing::info!(
            callee = self.callee,
            "call parked: the callee's apps are pushed"
        );
        self.push_to_callee(NotificationKind::IncomingCall);
    }

    /// The parked call ended unanswered: no longer pickable, and the
    /// callee's apps hear it was missed (an alert, never a VoIP push).
    fn missed(&mut self) {
        self.server.calls.unpark(&self.a_template.call_id);
        if std::mem::take(&mut self.pushed) {
            self.push_to_callee(NotificationKind::MissedCall);
        }
    }

    async fn on_failure(&mut self, index: usize, resp: rsip::Response) {
        let branch = &mut self.branches[index];
        if matches!(branch.state, BranchState::Done | BranchState::Answered) {
            return;
        }
        branch.state = BranchState::Done;
        branch.cancel_deadline = None;
        branch.code = Some(resp);
        if self.final_tx.is_none() {
            return;
        }
        if self
            .branches
            .iter()
            .any(|b| matches!(b.state, BranchState::Trying | BranchState::Early))
        {
            return;
        }
        let best = self
            .branches
            .iter()
            .filter_map(|b| b.code.as_ref())
            .min_by_key(|r| rank(r.status_code.code()))
            .cloned();
        let out = match best {
            // A device or carrier challenging the switch, or redirecting it,
            // means nothing to the caller: the callee is unavailable.
            Some(r) if matches!(r.status_code.code(), 300..=399 | 401 | 407) => response_for(
                &self.invite,
                480,
                "Temporarily Unavailable",
                Some(&self.a_tag),
                &[],
            ),
            Some(r) => response_across(
                &self.invite,
                &r,
                Some(&self.a_tag),
                &contact_for(&self.a_flow),
                r.body.clone(),
            ),
            None => response_for(
                &self.invite,
                480,
                "Temporarily Unavailable",
                Some(&self.a_tag),
                &[],
            ),
        };
        let code = out.status_code.code();
        // Busy everywhere or declined: the user's answering rules apply.
        let reason = match code {
            486 | 600 => Some(Reason::Busy),
            603 => Some(Reason::Declined),
            _ => None,
        };
        if reason.is_none() && (self.pushed || self.park_at.is_some()) {
            // The registered devices are unreachable (a dead connection,
            // an app asleep): the call waits for a push-woken one.
            self.park();
            return;
        }
        if let Some(reason) = reason
            && self.reroute(reason).await
        {
            return;
        }
        self.finish(out, disposition_of(code));
    }

    /// Asks the routing guest again for a call to a user that was not
    /// answered (once per call) and follows a decision to a service; true
    /// when the call went there.
    async fn reroute(&mut self, reason: Reason) -> bool {
        let Some(route) = self.origin.route.clone().filter(|_| !self.rerouted) else {
            return false;
        };
        self.rerouted = true;
        let mut again = route;
        again.reason = reason;
        let routed = self.server.router.route(&again).await;
        if !matches!(routed.decision, RouteDecision::ToService { .. }) {
            return false;
        }
        let gateways = self.server.calls.gateways(&self.server).await;
        self.follow(routed, &gateways).await;
        true
    }

    /// The caller hung up before an answer: stop the ringing, 487 (§9.2).
    async fn caller_gave_up(&mut self) {
        self.cancel_branches(None).await;
        self.missed();
        let resp = response_for(
            &self.invite,
            487,
            "Request Terminated",
            Some(&self.a_tag),
            &[],
        );
        self.finish(resp, Disposition::Cancelled);
    }

    /// CANCELs every ringing branch except `keep` (§9.1: only once it has
    /// answered provisionally; until then the wish is remembered).
    async fn cancel_branches(&mut self, keep: Option<usize>) {
        for index in 0..self.branches.len() {
            if Some(index) == keep {
                continue;
            }
            match self.branches[index].state {
                BranchState::Early if self.branches[index].cancel_deadline.is_none() => {
                    self.send_cancel(index).await
                }
                BranchState::Trying => self.branches[index].cancel_wanted = true,
                _ => {}
            }
        }
    }

    async fn send_cancel(&mut self, index: usize) {
        let branch = &mut self.branches[index];
        branch.cancel_wanted = false;
        branch.cancel_deadline = Some(Instant::now() + ACK_WAIT);
        let cancel = cancel_of(&branch.invite);
        let server = self.server.clone();
        let flow = branch.b.flow;
        tokio::spawn(async move {
            server.request(flow, cancel).await;
        });
    }

    /// A BYE on one side, not waited for.
    fn send_bye(&mut self, index: usize, to_b: bool) {
        let branch = &mut self.branches[index];
        let dialog = if to_b { &mut branch.b } else { &mut branch.a };
        let contact = contact_for(&dialog.flow);
        let bye = dialog.request(Method::Bye, &contact, vec![], vec![]);
        let flow = dialog.flow;
        let server = self.server.clone();
        tokio::spawn(async move {
            server.request(flow, bye).await;
        });
    }

    /// Ends an answered call, sending BYE to the sides asked.
    async fn hang_up(&mut self, bye_a: bool, bye_b: bool, reason: &'static str) {
        let Some(winner) = self.winner else {
            return;
        };
        if self.hung_up {
            return;
        }
        self.hung_up = true;
        self.end_reason = Some(reason);
        self.awaiting.clear();
        lock(&self.media).close();
        if bye_a {
            self.send_bye(winner, false);
        }
        if bye_b {
            self.send_bye(winner, true);
        }
    }

    async fn on_ack(&mut self, id: DialogId, req: rsip::Request) {
        let Some(pos) = self.awaiting.iter().position(|a| a.from == id) else {
            return;
        };
        let pending = self.awaiting.remove(pos);
        if !pending.relay {
            return;
        }
        let from = if pending.to_b { Side::A } else { Side::B };
        let body = self.sdp(&req.body, from);
        let branch = &mut self.branches[pending.branch];
        let dialog = if pending.to_b {
            &mut branch.b
        } else {
            &mut branch.a
        };
        let contact = contact_for(&dialog.flow);
        let ack = dialog.ack(pending.cseq, &contact, passed_headers(&req.headers), body);
        let bytes = encode(&ack);
        let flow = dialog.flow;
        if pending.to_b && pending.cseq == 1 {
            branch.ack = Some(bytes.clone());
        }
        self.server.send_raw(&flow, bytes).await;
    }

    async fn on_request(
        &mut self,
        id: DialogId,
        req: rsip::Request,
        respond: oneshot::Sender<rsip::Response>,
    ) {
        let Some((index, from_b)) = self.locate(&id) else {
            let _ = respond.send(response_for(
                &req,
                481,
                "Call/Transaction Does Not Exist",
                None,
                &[],
            ));
            return;
        };
        if req.method == Method::Bye {
            let _ = respond.send(response_for(&req, 200, "OK", None, &[]));
            if self.winner == Some(index) {
                let reason = if from_b { "callee" } else { "caller" };
                self.hang_up(from_b, !from_b, reason).await;
            } else if !from_b && self.final_tx.is_some() {
                // A BYE in an early dialog ends the attempt like a CANCEL.
                self.caller_gave_up().await;
            }
            return;
        }
        let a_cseq = self.a_cseq;
        let from = if from_b { Side::B } else { Side::A };
        let media = self.media_toward(&self.branches[index].b.flow).clone();
        let body = self.sdp_in(&media, &req.body, from);
        let offnet = self.gateway.is_some();
        let branch = &mut self.branches[index];
        let (this, other) = if from_b {
            (&mut branch.b, &mut branch.a)
        } else {
            (&mut branch.a, &mut branch.b)
        };
        if matches!(req.method, Method::Invite | Method::Update) {
            this.refresh_target(&req.headers);
        }
        let mut extra = passed_headers(&req.headers);
        match max_forwards_across(&req.headers) {
            Some(mf) => extra.push(mf),
            None => {
                let _ = respond.send(response_for(&req, 483, "Too Many Hops", None, &[]));
                return;
            }
        }
        if req.method == Method::PRack {
            let invite_cseq = if from_b { a_cseq } else { 1 };
            if let Some(rack) =
                any_header(&req.headers, "RAck").and_then(|r| rack_across(&r, invite_cseq))
            {
                extra.push(rack);
            }
        }
        let contact_other = contact_for(&other.flow);
        let out = other.request(req.method, &contact_other, extra, body);
        let out_cseq = other.local_cseq;
        let other_flow = other.flow;
        let this_contact = contact_for(&this.flow);
        let this_flow = this.flow;
        let confirmed = self.winner == Some(index);
        let server = self.server.clone();
        let events = self.tx.clone();
        tokio::spawn(async move {
            let answer = match server.request(other_flow, out).await {
                crate::sip::server::ClientOutcome::Response(resp) => {
                    let body = lock(&media).rewrite(&resp.body, from.other(), offnet);
                    response_across(&req, &resp, None, &this_contact, body)
                }
                crate::sip::server::ClientOutcome::Timeout => {
                    response_for(&req, 408, "Request Timeout", None, &[])
                }
                crate::sip::server::ClientOutcome::TransportError => {
                    response_for(&req, 503, "Service Unavailable", None, &[])
                }
            };
            let code = answer.status_code.code();
            if confirmed && matches!(code, 408 | 481) {
                // RFC 5057: the dialog on the other side is gone.
                let _ = events.send(CallEvent::PeerGone { from: id.clone() });
            }
            if (200..300).contains(&code) {
                let se = session_expires(&answer.headers);
                if req.method == Method::Invite {
                    let resend =
                        (this_flow.proto == Proto::Udp).then(|| (encode(&answer), this_flow));
                    let _ = events.send(CallEvent::Reinvited {
                        ack_from: id,
                        cseq: out_cseq,
                        resend,
                        session_expires: se,
                    });
                } else if req.method == Method::Update {
                    let _ = events.send(CallEvent::Refreshed {
                        session_expires: se,
                    });
                }
            }
            let _ = respond.send(answer);
        });
    }

    fn refresh_session(&mut self, session_expires: Option<u64>) {
        if let Some(secs) = session_expires.filter(|s| *s > 0) {
            // RFC 4028 §10: without a refresh by then, the session is dead.
            // The last third is the slack the refresher is given.
            let slack = Duration::from_secs(secs / 3).max(Duration::from_secs(2));
            self.session_deadline = Some(Instant::now() + Duration::from_secs(secs) + slack);
        } else if self.session_deadline.is_some() {
            // Refreshed without a new interval: the old one restarts.
            self.session_deadline = None;
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.final_tx.is_some() && self.park_at.is_some_and(|t| t <= now) {
            self.park_at = None;
            self.park();
        }
        if self.final_tx.is_some() && self.no_answer_at.is_some_and(|t| t <= now) {
            self.no_answer_at = None;
            self.on_no_answer().await;
        }
        if !self.hung_up && self.session_deadline.is_some_and(|t| t <= now) {
            self.session_deadline = None;
            tracing::info!("session timer expired without a refresh");
            self.hang_up(true, true, "session-timer").await;
        }
        if !self.hung_up && self.max_end.is_some_and(|t| t <= now) {
            self.max_end = None;
            let reason = if self.cut_for_credit {
                "out-of-credit"
            } else {
                "max-duration"
            };
            self.hang_up(true, true, reason).await;
        }
        if !self.hung_up && self.silence_check_at.is_some_and(|t| t <= now) {
            let (silent, every) = {
                let media = lock(&self.media);
                (media.silent(), media.silence_check())
            };
            self.silence_check_at = every.map(|e| now + e);
            if silent {
                tracing::info!("no media either way: call torn down");
                self.hang_up(true, true, "media-timeout").await;
            }
        }
        let mut expired = false;
        for a in &mut self.awaiting {
            if a.deadline <= now {
                expired = true;
            } else if let Some((bytes, flow)) = &a.resend
                && a.next <= now
            {
                self.server.send_raw(flow, bytes.clone()).await;
                a.interval = (a.interval * 2).min(self.server.settings.timers.t2);
                a.next = now + a.interval;
            }
        }
        if expired {
            self.awaiting.retain(|a| a.deadline > now);
            // §13.3.1.4: no ACK for the 2xx, the session is not established.
            self.hang_up(true, true, "ack-timeout").await;
        }
        for branch in &mut self.branches {
            if branch.cancel_deadline.is_some_and(|t| t <= now) {
                branch.cancel_deadline = None;
                if branch.state == BranchState::Early {
                    branch.state = BranchState::Done;
                }
            }
        }
    }

    /// Nobody answered in time: stop the ringing and ask the guest again.
    async fn on_no_answer(&mut self) {
        self.cancel_branches(None).await;
        self.missed();
        let decision = match (&self.origin.route, self.rerouted) {
            (Some(route), false) => {
                self.rerouted = true;
                let mut again = route.clone();
                again.reason = Reason::NoAnswer;
                Some(self.server.router.route(&again).await)
            }
            _ => None,
        };
        match decision {
            Some(
                routed @ Routed {
                    decision:
                        RouteDecision::ToUser { .. }
                        | RouteDecision::ToGateway { .. }
                        | RouteDecision::ToService { .. },
                    ..
                },
            ) => {
                // Forwarding on no answer, or voicemail: `follow` answers
                // 480 itself when nothing new rings.
                let gateways = self.server.calls.gateways(&self.server).await;
                self.follow(routed, &gateways).await;
            }
            Some(Routed {
                decision: RouteDecision::Reject { code, reason },
                ..
            }) => {
                let resp = response_for(&self.invite, code, &reason, Some(&self.a_tag), &[]);
                self.finish(resp, Disposition::NoAnswer);
            }
            _ => {
                let resp = response_for(
                    &self.invite,
                    480,
                    "Temporarily Unavailable",
                    Some(&self.a_tag),
                    &[],
                );
                self.finish(resp, Disposition::NoAnswer);
            }
        }
    }

    async fn write_cdr(&self) {
        if self.origin.forwarded {
            return; // the node the caller is on writes it
        }
        let _writing = self.server.writing_record();
        let cdr = Cdr {
            call_id: self.a_template.call_id.clone(),
            caller: self.origin.caller.clone(),
            callee: self.callee.clone(),
            gateway: self.gateway.clone(),
            started_at: self.started_at,
            answered_at: self.answered_at,
            ended_at: unix_ms(),
            disposition: self.disposition.unwrap_or(Disposition::Failed),
            code: self.code,
            end_reason: self.end_reason.map(str::to_owned),
            cost_micro: None,
        };
        if let (Some(charge), Some(billing)) = (&self.charge, self.server.billing()) {
            match cdr.answered_at {
                Some(answered) => {
                    // Started seconds count: 61.2 s is billed as 62.
                    let billed = u32::try_from(((cdr.ended_at - answered).max(0) + 999) / 1000)
                        .unwrap_or(u32::MAX);
                    match billing.settle_call(charge, billed, &cdr).await {
                        Ok(settled) => {
                            tracing::info!(
                                call_id = cdr.call_id,
                                secs = settled.secs,
                                plan_secs = settled.plan_secs,
                                cost_micro = settled.cost_micro,
                                "call charged"
                            );
                            return;
                        }
                        // The reservation stays until its grace runs out;
                        // the record is written below without a cost.
                        Err(e) => {
                            tracing::error!(error = %e, call_id = cdr.call_id, "call not charged")
                        }
                    }
                }
                None => {
                    if let Err(e) = billing.release(charge).await {
                        tracing::error!(error = %e, call_id = cdr.call_id, "reservation not released");
                    }
                }
            }
        }
        if let Err(e) = self.server.store.insert_cdr(&cdr).await {
            tracing::error!(error = %e, call_id = cdr.call_id, "call record not written");
        }
    }

    /// Frees the call's reservation, if it holds one, without a charge.
    async fn release_charge(&mut self) {
        if let (Some(charge), Some(billing)) = (self.charge.take(), self.server.billing())
            && let Err(e) = billing.release(&charge).await
        {
            tracing::error!(error = %e, "reservation not released");
        }
    }

    /// Prepaid: authorises a call of the account to `number` through a
    /// gateway (a reservation on its balance); the answer to refuse it with.
    /// Calls from gateways, and every call when prepaid is off, pass.
    async fn authorize_charge(&mut self, number: &str) -> Result<(), (u16, &'static str)> {
        let Some(billing) = self.server.billing().cloned() else {
            return Ok(());
        };
        if !billing.config().prepaid_calls || self.origin.gateway.is_some() {
            return Ok(());
        }
        // A call routed again (no answer, then another gateway) holds one
        // reservation at a time.
        self.release_charge().await;
        match billing.authorize(&self.origin.caller, number).await {
            Ok(charge) => {
                tracing::info!(
                    caller = self.origin.caller,
                    number,
                    max_secs = charge.max_secs,
                    reserved_micro = charge.reserved_micro,
                    plan_secs = charge.plan.map_or(0, |p| p.secs),
                    "prepaid call authorised"
                );
                self.charge = Some(charge);
                Ok(())
            }
            Err(refusal) => {
                tracing::info!(caller = self.origin.caller, number, %refusal, "prepaid call refused");
                Err(refusal.sip_status())
            }
        }
    }
}

/// A device on a WebSocket flow: a browser, which speaks only WebRTC.
fn is_browser(flow: &Flow) -> bool {
    matches!(flow.proto, Proto::Ws | Proto::Wss)
}

/// Whether every target is a browser of this node; `None` when another
/// node's devices are among them (that node decides for its own).
fn browsers_among(targets: &[Target]) -> Option<bool> {
    if targets.iter().any(|t| t.node) {
        return None;
    }
    Some(!targets.is_empty() && targets.iter().all(|t| is_browser(&t.flow)))
}

/// RFC 3261 §16.7 in short: a 6xx ends the search, then busy, then the other
/// client errors, then server errors, then the rest.
fn rank(code: u16) -> (u8, u16) {
    match code {
        600..=699 => (0, code),
        486 => (1, code),
        400..=499 => (2, code),
        500..=599 => (3, code),
        _ => (4, code),
    }
}

fn disposition_of(code: u16) -> Disposition {
    match code {
        200..=299 => Disposition::Answered,
        486 | 600 => Disposition::Busy,
        487 => Disposition::Cancelled,
        _ => Disposition::Failed,
    }
}

fn lock(media: &SharedMedia) -> std::sync::MutexGuard<'_, CallMedia> {
    media.lock().unwrap_or_else(|p| p.into_inner())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
