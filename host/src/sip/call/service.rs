//! A call the switch answers itself: an IVR service (voicemail, greeting...).
//!
//! The caller's INVITE is taken over from the [`leg::Call`] that routed it:
//! this task owns the caller's dialog (the switch as UAS), a media endpoint
//! on the relay's port range, and the IVR run that drives the endpoint. The
//! run asks for the 2xx and for the hang-up ([`Control`]); the caller's
//! CANCEL or BYE closes the endpoint, which ends the run.
//!
//! [`leg::Call`]: super::leg::Call

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rsip::Method;
use rsip::headers::{self, UntypedHeader};
use tokio::sync::{mpsc, oneshot};

use super::endpoint_sdp::{AudioOffer, answer};
use super::unix_ms;
use super::{CallEvent, CallTx};
use crate::ivr::session::{CallFacts, Control};
use crate::sip::dialog::{Dialog, contact_for};
use crate::sip::parse::{encode, response_for};
use crate::sip::server::SipServer;
use crate::sip::transaction::ServerKey;
use crate::sip::transport::{Flow, Proto};
use crate::store::calls::{Cdr, Disposition};

/// How long a 2xx waits for its ACK (64·T1).
const ACK_WAIT: Duration = Duration::from_secs(32);
/// How long a run may take to notice the end of its call before it is
/// dropped (its imports all return `hung-up` at once by then).
const RUN_GRACE: Duration = Duration::from_secs(2);

/// What the service call starts from.
pub(super) struct ServiceStart {
    pub server: Arc<SipServer>,
    pub invite: rsip::Request,
    pub a_flow: Flow,
    pub a_tag: String,
    pub a_key: ServerKey,
    pub final_tx: oneshot::Sender<rsip::Response>,
    pub facts: CallFacts,
    pub offer: AudioOffer,
    /// For the call record.
    pub caller: String,
    pub callee: String,
    pub started_at: i64,
}

pub(super) struct ServiceCall {
    server: Arc<SipServer>,
    tx: CallTx,
    rx: mpsc::UnboundedReceiver<CallEvent>,
    control: mpsc::UnboundedReceiver<Control>,
    invite: rsip::Request,
    a: Dialog,
    a_key: ServerKey,
    final_tx: Option<oneshot::Sender<rsip::Response>>,
    endpoint: media::endpoint::EndpointHandle,
    sdp: Vec<u8>,
    /// The 2xx and when to send it again, until the ACK.
    resend: Option<(Vec<u8>, Instant, Duration)>,
    ack_deadline: Option<Instant>,
    max_end: Option<Instant>,
    run: Option<tokio::task::JoinHandle<()>>,
    hung_up: bool,
    caller: String,
    callee: String,
    started_at: i64,
    answered_at: Option<i64>,
    code: u16,
    end_reason: Option<&'static str>,
}

impl ServiceCall {
    /// Opens the endpoint, starts the run and the call's task. `Err` gives
    /// the final response back when the service cannot start.
    pub(super) async fn start(s: ServiceStart) -> Result<(), (ServiceStart, u16, &'static str)> {
        let server = s.server.clone();
        let (Some(ivr), Some(media)) = (server.ivr(), server.calls.settings.media.clone()) else {
            return Err((s, 503, "Service Unavailable"));
        };
        let guest = match ivr.guest(&s.facts.service).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(service = s.facts.service, error = %e, "IVR service unavailable");
                return Err((s, 503, "Service Unavailable"));
            }
        };
        // Where the caller said it receives; a phone that hides behind
        // 0.0.0.0 is found by latching on what it sends.
        let ip = s
            .offer
            .addr
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(s.a_flow.remote.ip());
        let remote = std::net::SocketAddr::new(ip, s.offer.port);
        let endpoint = match media.relay.open_endpoint(media::endpoint::EndpointConfig {
            codec: s.offer.codec,
            payload_type: s.offer.payload_type,
            telephone_event: s.offer.telephone_event,
            remote,
            // RTP/SAVP: the caller's key for what it sends, ours (in the
            // answer below) for what the endpoint sends.
            srtp: s.offer.srtp.clone(),
            webrtc: s.offer.webrtc.clone(),
        }) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "no media port for an IVR call");
                return Err((s, 503, "Service Unavailable"));
            }
        };
        let Some(a) = Dialog::uas(&s.invite, s.a_tag.clone(), s.a_flow) else {
            return Err((s, 400, "Bad Request"));
        };
        let sdp = answer(
            &s.offer,
            media.advertised,
            endpoint.local_port(),
            rand::random::<u32>().into(),
        );
        let grants = ivr.grants(&s.facts).await;
        let (control_tx, control) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let calls = &server.calls;
        calls.register(a.id(), tx.clone());
        calls
            .invites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(s.a_key.clone(), tx.clone());
        calls.active.fetch_add(1, Ordering::Relaxed);
        let handle = endpoint.handle();
        let run = ivr.spawn_run(guest, s.facts, endpoint, control_tx, grants, false);
        let max_end = (!calls.settings.max_duration.is_zero())
            .then(|| Instant::now() + calls.settings.max_duration);
        let call = ServiceCall {
            server: s.server,
            tx,
            rx,
            control,
            invite: s.invite,
            a,
            a_key: s.a_key,
            final_tx: Some(s.final_tx),
            endpoint: handle,
            sdp,
            resend: None,
            ack_deadline: None,
            max_end,
            run: Some(run),
            hung_up: false,
            caller: s.caller,
            callee: s.callee,
            started_at: s.started_at,
            answered_at: None,
            code: 0,
            end_reason: None,
        };
        let span = tracing::debug_span!("service", call_id = %call.a.call_id);
        tokio::spawn(tracing::Instrument::instrument(call.serve(), span));
        Ok(())
    }

    fn over(&self) -> bool {
        self.final_tx.is_none() && (self.answered_at.is_none() || self.hung_up)
    }

    async fn serve(mut self) {
        // The tx kept in `self` keeps `rx` open; the maps hold the others.
        let _keep = self.tx.clone();
        while !self.over() {
            let deadline = [
                self.resend.as_ref().map(|r| r.1),
                self.ack_deadline,
                self.max_end,
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                event = self.rx.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => break,
                },
                control = self.control.recv() => match control {
                    Some(c) => self.on_control(c).await,
                    // The run is over and told nothing: end the call.
                    None => self.hang_up("service").await,
                },
                _ = sleep_until(deadline) => self.on_timer().await,
            }
        }
        self.endpoint.close();
        if let Some(run) = self.run.take() {
            // The run sees the closed endpoint at its next import; one that
            // does not come back is dropped.
            tokio::spawn(async move {
                let abort = run.abort_handle();
                if tokio::time::timeout(RUN_GRACE, run).await.is_err() {
                    tracing::warn!("IVR run did not end with its call: dropped");
                    abort.abort();
                }
            });
        }
        let calls = &self.server.calls;
        calls.forget(&[self.a.id()], Some(&self.a_key));
        calls.active.fetch_sub(1, Ordering::Relaxed);
        self.write_cdr().await;
    }

    async fn on_control(&mut self, control: Control) {
        match control {
            Control::Answer(done) => {
                let Some(final_tx) = self.final_tx.take() else {
                    let _ = done.send(self.answered_at.is_some() && !self.hung_up);
                    return;
                };
                let mut resp = response_for(&self.invite, 200, "OK", Some(&self.a.local_tag), &[]);
                resp.headers
                    .push(rsip::Header::Contact(headers::Contact::new(contact_for(
                        &self.a.flow,
                    ))));
                resp.headers
                    .push(rsip::Header::ContentType(headers::ContentType::new(
                        "application/sdp",
                    )));
                resp.body = self.sdp.clone();
                let now = Instant::now();
                let t1 = self.server.settings.timers.t1;
                if self.a.flow.proto == Proto::Udp {
                    self.resend = Some((encode(&resp), now + t1, t1));
                }
                self.ack_deadline = Some(now + ACK_WAIT);
                self.answered_at = Some(unix_ms());
                self.code = 200;
                self.server.calls.answered.fetch_add(1, Ordering::Relaxed);
                self.server.calls.forget_invite(&self.a_key);
                let _ = final_tx.send(resp);
                let _ = done.send(true);
            }
            Control::Hangup(cause) => {
                if self.final_tx.is_some() {
                    let code = if (400..=699).contains(&cause) {
                        cause
                    } else {
                        480
                    };
                    self.refuse(code, "Temporarily Unavailable");
                } else {
                    self.hang_up("service").await;
                }
            }
        }
    }

    /// A final non-2xx before the answer.
    fn refuse(&mut self, code: u16, reason: &str) {
        if let Some(final_tx) = self.final_tx.take() {
            self.code = code;
            let _ = final_tx.send(response_for(
                &self.invite,
                code,
                reason,
                Some(&self.a.local_tag),
                &[],
            ));
            self.server.calls.forget_invite(&self.a_key);
        }
        self.endpoint.close();
    }

    /// Ends the answered call with a BYE to the caller.
    async fn hang_up(&mut self, reason: &'static str) {
        if self.final_tx.is_some() {
            self.refuse(480, "Temporarily Unavailable");
            return;
        }
        if self.hung_up {
            return;
        }
        self.hung_up = true;
        self.end_reason.get_or_insert(reason);
        self.endpoint.close();
        let contact = contact_for(&self.a.flow);
        let bye = self.a.request(Method::Bye, &contact, vec![], vec![]);
        let server = self.server.clone();
        let flow = self.a.flow;
        tokio::spawn(async move {
            server.request(flow, bye).await;
        });
    }

    async fn on_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::Cancel => {
                if self.final_tx.is_some() {
                    self.end_reason = Some("caller");
                    self.refuse(487, "Request Terminated");
                }
            }
            CallEvent::Ack { .. } => {
                self.resend = None;
                self.ack_deadline = None;
            }
            CallEvent::Request { req, respond, .. } => {
                let resp = match req.method {
                    Method::Bye => {
                        let _ = respond.send(response_for(&req, 200, "OK", None, &[]));
                        if self.final_tx.is_some() {
                            // A BYE in the early dialog ends it like a CANCEL.
                            self.refuse(487, "Request Terminated");
                        } else if !self.hung_up {
                            self.hung_up = true;
                            self.end_reason = Some("caller");
                            self.endpoint.close();
                        }
                        return;
                    }
                    // A re-INVITE (hold, refresh) gets the same media back.
                    Method::Invite | Method::Update if !req.body.is_empty() => {
                        let mut r = response_for(&req, 200, "OK", None, &[]);
                        r.headers
                            .push(rsip::Header::Contact(headers::Contact::new(contact_for(
                                &self.a.flow,
                            ))));
                        r.headers
                            .push(rsip::Header::ContentType(headers::ContentType::new(
                                "application/sdp",
                            )));
                        r.body = self.sdp.clone();
                        r
                    }
                    _ => {
                        let mut r = response_for(&req, 200, "OK", None, &[]);
                        if req.method == Method::Invite || req.method == Method::Update {
                            r.headers.push(rsip::Header::Contact(headers::Contact::new(
                                contact_for(&self.a.flow),
                            )));
                        }
                        r
                    }
                };
                let _ = respond.send(resp);
            }
            CallEvent::PeerGone { .. } => self.hang_up("peer-gone").await,
            // A service call is never parked.
            CallEvent::Pickup {
                req, tag, respond, ..
            } => {
                let gone = response_for(
                    &req,
                    481,
                    "Call/Transaction Does Not Exist",
                    Some(&tag),
                    &[],
                );
                let _ = respond.send(gone);
            }
            CallEvent::Branch { .. }
            | CallEvent::DeviceRegistered { .. }
            | CallEvent::Reinvited { .. }
            | CallEvent::Refreshed { .. } => {}
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some((bytes, at, interval)) = &mut self.resend
            && *at <= now
        {
            self.server.send_raw(&self.a.flow, bytes.clone()).await;
            *interval = (*interval * 2).min(self.server.settings.timers.t2);
            *at = now + *interval;
        }
        if self.ack_deadline.is_some_and(|t| t <= now) {
            self.ack_deadline = None;
            self.resend = None;
            // §13.3.1.4: no ACK, no session.
            self.hang_up("ack-timeout").await;
        }
        if self.max_end.is_some_and(|t| t <= now) {
            self.max_end = None;
            self.hang_up("max-duration").await;
        }
    }

    async fn write_cdr(&self) {
        let cdr = Cdr {
            call_id: self.a.call_id.clone(),
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            gateway: None,
            started_at: self.started_at,
            answered_at: self.answered_at,
            ended_at: unix_ms(),
            disposition: match (self.answered_at, self.code) {
                (Some(_), _) => Disposition::Answered,
                (None, 487) => Disposition::Cancelled,
                _ => Disposition::Failed,
            },
            code: self.code,
            end_reason: self.end_reason.map(str::to_owned),
            cost_micro: None,
        };
        let _writing = self.server.writing_record();
        if let Err(e) = self.server.store.insert_cdr(&cdr).await {
            tracing::error!(error = %e, call_id = cdr.call_id, "call record not written");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
