//! Calls the switch places itself to run an IVR service on the callee:
//! "call me" sign-up (the code-readout guest says the code to the number).
//!
//! The switch is the UAC toward the carrier that serves the number (longest
//! prefix of the gateways): INVITE with an offer for its media endpoint,
//! ACK of the 2xx, then the run drives the endpoint and its hang-up becomes
//! a BYE; the carrier's BYE closes the endpoint, which ends the run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use media::codec::Codec;
use rsip::Method;
use rsip::headers::{self, UntypedHeader};
use tokio::sync::mpsc;

use super::endpoint_sdp::audio_offer;
use super::unix_ms;
use super::{CallEvent, gateway_flow};
use crate::ivr::session::{CallFacts, Control};
use crate::sip::dialog::{Dialog, contact_for, via_for};
use crate::sip::parse::{encode, response_for};
use crate::sip::server::{ClientEvent, SipServer};
use crate::sip::util::{new_call_id, new_tag};
use crate::store::calls::{Cdr, Disposition};

/// How long the callee's phone rings before the switch gives up.
const RING_FOR: Duration = Duration::from_secs(45);
/// Payload types of the offer: PCMA (what European carriers speak; a
/// G.711 carrier speaks both laws) and RFC 4733 events.
const PCMA: u8 = 8;
const TELEPHONE_EVENT: u8 = 101;

/// How a placed call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered, and the service ran to its end.
    Answered,
    /// Not answered: the final status (486 busy, 480, 408 ...).
    Failed(u16),
    /// The switch could not place it (no gateway, no port, no service).
    NotPlaced(String),
}

/// Calls `number` through its gateway and runs `facts.service` on the
/// callee; returns when the call is over.
pub async fn call_out(
    server: &Arc<SipServer>,
    number: &str,
    caller_id: &str,
    facts: CallFacts,
) -> Outcome {
    let started_at = unix_ms();
    let not_placed = |why: &str| Outcome::NotPlaced(why.to_owned());
    let (Some(ivr), Some(media)) = (server.ivr(), server.calls.settings.media.clone()) else {
        return not_placed("no IVR or media");
    };
    let guest = match ivr.guest(&facts.service).await {
        Ok(g) => g,
        Err(e) => return Outcome::NotPlaced(e.to_string()),
    };
    let gateway = match server.store.gateway_for(number).await {
        Ok(Some(g)) => g,
        Ok(None) => return not_placed("no gateway serves the number"),
        Err(e) => return Outcome::NotPlaced(e.to_string()),
    };
    let Some(flow) = gateway_flow(server, &gateway).await else {
        return not_placed("gateway unreachable");
    };
    let endpoint = match media.relay.open_endpoint(media::endpoint::EndpointConfig {
        codec: Codec::Pcma,
        payload_type: PCMA,
        telephone_event: Some(TELEPHONE_EVENT),
        // Until the answer says where: nothing is sent to 0.0.0.0.
        remote: std::net::SocketAddr::new(std::net::IpAddr::from([0, 0, 0, 0]), 9),
        srtp: None,
        webrtc: None,
    }) {
        Ok(e) => e,
        Err(e) => return Outcome::NotPlaced(e.to_string()),
    };
    let ip = media.advertised;
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let sdp = format!(
        "v=0\r\no=softswitch {} 1 IN {family} {ip}\r\ns=softswitch\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP {PCMA} {TELEPHONE_EVENT}\r\na=rtpmap:{PCMA} PCMA/8000\r\n\
         a=rtpmap:{TELEPHONE_EVENT} telephone-event/8000\r\na=fmtp:{TELEPHONE_EVENT} 0-15\r\n\
         a=ptime:20\r\na=sendrecv\r\n",
        rand::random::<u32>(),
        endpoint.local_port()
    );
    let domain = &server.settings.domain;
    let transport = flow.proto.uri_param();
    let Ok(uri) = rsip::Uri::try_from(format!("sip:{number}@{}{transport}", flow.remote).as_str())
    else {
        return not_placed("number is not a SIP user part");
    };
    let invite = rsip::Request {
        method: Method::Invite,
        uri,
        version: rsip::Version::V2,
        headers: vec![
            rsip::Header::Via(headers::Via::new(via_for(&flow))),
            rsip::Header::MaxForwards(headers::MaxForwards::new("70")),
            rsip::Header::From(headers::From::new(format!(
                "<sip:{caller_id}@{domain}>;tag={}",
                new_tag()
            ))),
            rsip::Header::To(headers::To::new(format!("<sip:{number}@{}>", flow.remote))),
            rsip::Header::CallId(headers::CallId::new(new_call_id(domain))),
            rsip::Header::CSeq(headers::CSeq::new("1 INVITE")),
            rsip::Header::Contact(headers::Contact::new(contact_for(&flow))),
            rsip::Header::ContentType(headers::ContentType::new("application/sdp")),
        ]
        .into(),
        body: sdp.into_bytes(),
    };
    let Some(mut dialog) = Dialog::uac(&invite, flow) else {
        return not_placed("cannot build the dialog");
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let calls = &server.calls;
    calls.register(dialog.id(), tx.clone());
    calls.active.fetch_add(1, Ordering::Relaxed);
    let branch_tx = tx.clone();
    server.send_request(flow, invite.clone(), move |event| {
        let _ = branch_tx.send(CallEvent::Branch { index: 0, event });
    });
    let ring_until = Instant::now() + RING_FOR;
    let mut cancelled = false;
    // Ringing: wait for the final answer (CANCEL once, after RING_FOR).
    let answer = loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = tokio::time::sleep_until(ring_until.into()), if !cancelled => {
                cancelled = true;
                send_cancel(server, &invite, flow);
                continue;
            }
        };
        match event {
            Some(CallEvent::Branch { event, .. }) => match event {
                ClientEvent::Provisional(resp) => {
                    if resp.status_code.code() > 100 {
                        dialog.learn_from_response(&resp);
                    }
                }
                ClientEvent::Final(resp) => break Ok(resp),
                ClientEvent::Timeout => break Err(408),
                ClientEvent::TransportError => break Err(503),
            },
            Some(_) => {}
            None => break Err(500),
        }
    };
    let code = match &answer {
        Ok(resp) => resp.status_code.code(),
        Err(code) => *code,
    };
    let mut cdr = Cdr {
        call_id: dialog.call_id.clone(),
        caller: caller_id.to_owned(),
        callee: number.to_owned(),
        gateway: Some(gateway.name.clone()),
        started_at,
        answered_at: None,
        ended_at: 0,
        disposition: Disposition::Failed,
        code,
        end_reason: None,
        cost_micro: None,
    };
    let outcome = match answer {
        Ok(resp) if (200..300).contains(&code) => {
            dialog.learn_from_response(&resp);
            let ack = encode(&dialog.ack(1, &contact_for(&flow), vec![], vec![]));
            server.send_raw(&flow, ack.clone()).await;
            cdr.answered_at = Some(unix_ms());
            cdr.disposition = Disposition::Answered;
            calls.answered.fetch_add(1, Ordering::Relaxed);
            if let Ok(answer) = audio_offer(&resp.body)
                && answer.codec == Codec::Pcma
                && answer.srtp.is_none()
                && let Some(addr) = answer.addr.filter(|a| !a.is_unspecified())
            {
                let _ = endpoint
                    .set_remote(std::net::SocketAddr::new(addr, answer.port))
                    .await;
            } else {
                tracing::warn!(number, "the callee's answer has no PCMA audio: hanging up");
                endpoint.close();
            }
            let handle = endpoint.handle();
            let (control_tx, mut control) = mpsc::unbounded_channel();
            let grants = ivr.grants(&facts).await;
            let run = ivr.spawn_run(guest, facts, endpoint, control_tx, grants, true);
            let mut callee_gone = false;
            // Answered: until one side hangs up.
            loop {
                tokio::select! {
                    c = control.recv() => {
                        if matches!(c, Some(Control::Answer(_))) {
                            if let Some(Control::Answer(done)) = c {
                                let _ = done.send(!handle.closed());
                            }
                            continue;
                        }
                        // Hang-up, or the run ended: BYE.
                        if !callee_gone {
                            cdr.end_reason.get_or_insert_with(|| "service".into());
                            handle.close();
                            let bye = dialog.request(Method::Bye, &contact_for(&flow), vec![], vec![]);
                            server.request(flow, bye).await;
                        }
                        break;
                    }
                    e = rx.recv() => match e {
                        Some(CallEvent::Request { req, respond, .. }) => {
                            let is_bye = req.method == Method::Bye;
                            let _ = respond.send(response_for(&req, 200, "OK", None, &[]));
                            if is_bye {
                                callee_gone = true;
                                cdr.end_reason = Some("callee".into());
                                handle.close();
                            }
                        }
                        // A retransmitted 2xx: our ACK was lost.
                        Some(CallEvent::Branch { event: ClientEvent::Final(_), .. }) => {
                            server.send_raw(&flow, ack.clone()).await;
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
            let _ = run.await;
            Outcome::Answered
        }
        Ok(_) | Err(_) => {
            drop(endpoint);
            Outcome::Failed(code)
        }
    };
    calls.forget(&[dialog.id()], None);
    calls.active.fetch_sub(1, Ordering::Relaxed);
    cdr.ended_at = unix_ms();
    if cdr.disposition != Disposition::Answered {
        cdr.disposition = match code {
            486 | 600 => Disposition::Busy,
            487 => Disposition::NoAnswer,
            _ => Disposition::Failed,
        };
    }
    let writing = server.writing_record();
    if let Err(e) = server.store.insert_cdr(&cdr).await {
        tracing::error!(error = %e, "call record not written");
    }
    drop(writing);
    tracing::info!(number, ?outcome, "placed call over");
    outcome
}

fn send_cancel(server: &Arc<SipServer>, invite: &rsip::Request, flow: crate::sip::transport::Flow) {
    let cancel = super::relay::cancel_of(invite);
    let server = server.clone();
    tokio::spawn(async move {
        server.request(flow, cancel).await;
    });
}
