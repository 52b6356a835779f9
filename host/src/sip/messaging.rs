//! MESSAGE (RFC 3428): routed by the routing guest, stored before it is
//! acknowledged, delivered to every registered device, deferred while the
//! recipient is offline and delivered oldest first when a device registers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rsip::headers::{self, UntypedHeader};
use rsip::{Header, Method};
use tokio::task::JoinSet;

use super::forward::Located;
use super::parse::{database_unavailable, response_for};
use super::registrar::flow_of;
use super::server::{ClientOutcome, SipServer};
use super::transaction::new_branch;
use super::transport::Flow;
use super::util::{display_name_of, header_value, new_call_id, new_tag, user_of};
use crate::cluster::{Forwarded, MESSAGE_ID_HEADER};
use crate::plugins::routing::{
    Kind, Reason, RouteDecision, RouteRequest, Transport as RouteTransport,
};
use crate::push::{Notification, NotificationKind, excerpt};
use crate::store::messages::{MessageStatus, NewMessage, OffnetSms, StoredMessage};

/// Content type of system commands (SPEC §5: "Contacts add", file and
/// location commands): deferred like any message, never announced by push.
pub use crate::store::joins::SYSTEM_COMMAND_TYPE;

/// How many deferred messages one delivery round reads at a time.
const DEFERRED_BATCH: u32 = 100;

/// An incoming MESSAGE from a client.
pub async fn on_message(
    server: &Arc<SipServer>,
    flow: &Flow,
    req: &rsip::Request,
    tag: &str,
) -> rsip::Response {
    let forwarded = server.forwarded(flow, req);
    if forwarded == Forwarded::Yes
        && let Some(id) =
            header_value(&req.headers, MESSAGE_ID_HEADER).and_then(|v| v.trim().parse::<i64>().ok())
    {
        return deliver_forwarded(server, req, tag, id).await;
    }
    let caller = match server.identify_caller(flow, req, tag, forwarded).await {
        Ok(caller) => caller,
        Err(resp) => return resp,
    };
    let login = caller.login.clone();
    let from = header_value(&req.headers, "From").unwrap_or("");
    let Some(target) = user_of(&req.uri.to_string()) else {
        return response_for(req, 404, "Not Found", Some(tag), &[]);
    };
    let sender_name = display_name_of(from).or(caller.display_name.clone());
    let routed = server
        .router
        .route(&RouteRequest {
            kind: Kind::Message,
            caller_login: login.clone(),
            caller_display_name: sender_name.clone(),
            authenticated: true,
            target,
            transport: match flow.proto {
                super::transport::Proto::Udp => RouteTransport::Udp,
                super::transport::Proto::Tcp => RouteTransport::Tcp,
                super::transport::Proto::Tls => RouteTransport::Tls,
                // The routing world names no WebSocket (yet): a browser's
                // requests look like TCP or TLS ones to the guest.
                super::transport::Proto::Ws => RouteTransport::Tcp,
                super::transport::Proto::Wss => RouteTransport::Tls,
            },
            source_address: flow.remote.to_string(),
            dialplan_rule: caller.dialplan_rule.clone(),
            reason: Reason::Initial,
        })
        .await;
    let content_type = header_value(&req.headers, "Content-Type")
        .unwrap_or("text/plain")
        .trim()
        .to_string();
    let system = content_type.eq_ignore_ascii_case(SYSTEM_COMMAND_TYPE);
    if system && let Err(reason) = super::system_command::check(&req.body) {
        return response_for(req, 400, reason, Some(tag), &[]);
    }
    match routed.decision {
        RouteDecision::ToUser { login: recipient } => {
            let message = NewMessage {
                sender: login,
                sender_name,
                recipient,
                system,
                content_type,
                body: req.body.clone(),
            };
            // In the database before any answer leaves: a crash after this
            // point loses nothing the sender was told we accepted.
            let id = match server
                .store
                .insert_message(&message, MessageStatus::Deferred)
                .await
            {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!(error = %e, "message not stored");
                    return database_unavailable(req, Some(tag));
                }
            };
            let stored = StoredMessage {
                id,
                message,
                status: MessageStatus::Deferred,
                created_at: crate::store::now_secs(),
            };
            let located = server.locate(&stored.message.recipient, false).await;
            if located.is_empty() {
                tracing::debug!(id, recipient = %stored.message.recipient, "recipient offline: message deferred");
                push_deferred(server, &stored);
                return response_for(req, 202, "Accepted", Some(tag), &[]);
            }
            if deliver(server, &stored, located, Some(server.settings.message_wait)).await {
                response_for(req, 200, "OK", Some(tag), &[])
            } else {
                push_deferred(server, &stored);
                response_for(req, 202, "Accepted", Some(tag), &[])
            }
        }
        RouteDecision::ToGateway { gateway, number } => {
            // OFFNET: the SMS provider extension point drains this outbox.
            let sms = OffnetSms {
                sender: &login,
                number: &number,
                gateway: &gateway,
                body: &req.body,
            };
            let queued = match server.billing() {
                Some(billing) if billing.config().prepaid_sms => {
                    match billing.queue_sms(&sms).await {
                        Ok(charge) => Ok(charge.outbox_id),
                        Err(refusal) => {
                            tracing::info!(sender = login, number, %refusal, "prepaid SMS refused");
                            let (code, reason) = refusal.sip_status();
                            let retry = [("Retry-After".into(), "5".into())];
                            let headers: &[_] = if code == 503 { &retry } else { &[] };
                            return response_for(req, code, reason, Some(tag), headers);
                        }
                    }
                }
                _ => server.store.queue_sms(&sms).await,
            };
            match queued {
                Ok(id) => {
                    tracing::debug!(id, number, gateway, "OFFNET message queued for SMS");
                    response_for(req, 202, "Accepted", Some(tag), &[])
                }
                Err(e) => {
                    tracing::error!(error = %e, "SMS not queued");
                    database_unavailable(req, Some(tag))
                }
            }
        }
        RouteDecision::ToService { .. } => {
            response_for(req, 488, "Not Acceptable Here", Some(tag), &[])
        }
        RouteDecision::Reject { code, reason } => response_for(req, code, &reason, Some(tag), &[]),
    }
}

/// Messages the switch itself stored (a user joined): delivered at once to
/// the recipients' registered devices, pushed (texts only) where none took
/// them; the rest wait for a REGISTER like any deferred message.
pub fn deliver_stored(server: Arc<SipServer>, messages: Vec<StoredMessage>) {
    tokio::spawn(async move {
        for stored in messages {
            let located = server.locate(&stored.message.recipient, false).await;
            if located.is_empty() || !deliver(&server, &stored, located, None).await {
                push_deferred(&server, &stored);
            }
        }
    });
}

/// A message no device took: the recipient's apps hear of it by push (a
/// text with its first 40 characters, or the attachment's type). System
/// commands are never announced (SPEC §5), but for a shared file's, which
/// is announced by the file's type like an attachment.
fn push_deferred(server: &Arc<SipServer>, stored: &StoredMessage) {
    let Some(push) = server.push().cloned() else {
        return;
    };
    let m = &stored.message;
    let kind = if m.system {
        match crate::sip::system_command::shared_file_type(&m.body) {
            Some(file_type) => NotificationKind::of_message(&file_type),
            None => return,
        }
    } else {
        NotificationKind::of_message(&m.content_type)
    };
    let notification = Notification {
        kind,
        from_login: m.sender.clone(),
        from_display_name: m.sender_name.clone().unwrap_or_default(),
        from_book_name: None,
        timestamp: stored.created_at,
        call_id: None,
        excerpt: if kind == NotificationKind::Text {
            excerpt(&m.body)
        } else {
            String::new()
        },
        badge: 0,
        id: format!("msg-{}", stored.id),
    };
    let recipient = m.recipient.clone();
    tokio::spawn(async move { push.notify_user(&recipient, notification).await });
}

/// A MESSAGE another node stored (as `id`) and forwarded because the
/// recipient's devices are registered here: offered to them, 200 once one
/// took it (and it is marked delivered), 480 otherwise. The forwarding node
/// answers the sender, pushes, and leaves the message deferred if need be.
async fn deliver_forwarded(
    server: &Arc<SipServer>,
    req: &rsip::Request,
    tag: &str,
    id: i64,
) -> rsip::Response {
    let from = header_value(&req.headers, "From").unwrap_or("");
    let (Some(sender), Some(recipient)) = (user_of(from), user_of(&req.uri.to_string())) else {
        return response_for(req, 400, "Bad Request - forwarded message", Some(tag), &[]);
    };
    let content_type = header_value(&req.headers, "Content-Type")
        .unwrap_or("text/plain")
        .trim()
        .to_string();
    let stored = StoredMessage {
        id,
        message: NewMessage {
            sender,
            sender_name: display_name_of(from),
            system: content_type.eq_ignore_ascii_case(SYSTEM_COMMAND_TYPE),
            recipient,
            content_type,
            body: req.body.clone(),
        },
        status: MessageStatus::Deferred,
        created_at: crate::store::now_secs(),
    };
    let located = server.locate(&stored.message.recipient, true).await;
    let wait = Some(server.settings.message_wait);
    if !located.is_empty() && deliver(server, &stored, located, wait).await {
        response_for(req, 200, "OK", Some(tag), &[])
    } else {
        response_for(req, 480, "Temporarily Unavailable", Some(tag), &[])
    }
}

/// Sends a stored message to every device, through the nodes that hold the
/// remote ones; true once one answered 2xx (the message is then marked
/// delivered). With `wait`, gives up waiting after that long and lets the
/// remaining attempts finish in the background.
async fn deliver(
    server: &Arc<SipServer>,
    stored: &StoredMessage,
    located: Located,
    wait: Option<Duration>,
) -> bool {
    let mut attempts = JoinSet::new();
    let domain = &server.settings.domain;
    let recipient = &stored.message.recipient;
    let local = located.local.into_iter().filter_map(|binding| {
        let flow = flow_of(&binding)?;
        if server.transports().is_some_and(|t| !t.is_reachable(&flow)) {
            return None;
        }
        let uri = rsip::Uri::try_from(binding.contact.as_str()).unwrap_or_else(|_| {
            rsip::Uri::try_from(format!("sip:{}@{}", binding.login, flow.remote).as_str())
                .unwrap_or_default()
        });
        Some((flow, build_message(domain, uri, &flow, stored), false))
    });
    let remote = located.remote.into_iter().filter_map(|peer| {
        let flow = server.node_flow(peer)?;
        let uri = rsip::Uri::try_from(format!("sip:{recipient}@{peer}").as_str()).ok()?;
        let mut request = build_message(domain, uri, &flow, stored);
        request.headers.push(Header::Other(
            MESSAGE_ID_HEADER.into(),
            stored.id.to_string(),
        ));
        server.cluster()?.sign(&mut request);
        Some((flow, request, true))
    });
    let requests: Vec<_> = local.chain(remote).collect();
    for (flow, request, node) in requests {
        let server = server.clone();
        tracing::debug!(id = stored.id, remote = %flow.remote, node, "sending message to a device");
        attempts.spawn(async move {
            let outcome = server.request(flow, request).await;
            tracing::debug!(remote = %flow.remote, ?outcome, "device answered");
            (outcome, node)
        });
    }
    let id = stored.id;
    let store = server.store.clone();
    let first_success = async move {
        while let Some(outcome) = attempts.join_next().await {
            if let Ok((ClientOutcome::Response(resp), node)) = outcome
                && (200..300).contains(&resp.status_code.code())
            {
                // A node that delivered it has marked it delivered already.
                if !node
                    && let Err(e) = store.set_message_status(id, MessageStatus::Delivered).await
                {
                    tracing::error!(error = %e, id, "delivery not recorded");
                }
                // Other devices' attempts finish on their own; one 2xx is enough.
                attempts.detach_all();
                return true;
            }
        }
        false
    };
    match wait {
        None => first_success.await,
        Some(wait) => {
            let handle = tokio::spawn(first_success);
            tokio::time::timeout(wait, handle)
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or(false)
        }
    }
}

/// A MESSAGE from the switch to `uri` (a device's Contact, or the user at
/// the node holding the device) over `flow`.
fn build_message(
    domain: &str,
    uri: rsip::Uri,
    flow: &Flow,
    stored: &StoredMessage,
) -> rsip::Request {
    let m = &stored.message;
    let from = match &m.sender_name {
        Some(name) => format!(
            "\"{}\" <sip:{}@{domain}>;tag={}",
            quote(name),
            m.sender,
            new_tag()
        ),
        None => format!("<sip:{}@{domain}>;tag={}", m.sender, new_tag()),
    };
    let headers: Vec<Header> = vec![
        Header::Via(headers::Via::new(format!(
            "SIP/2.0/{} {};branch={};rport",
            flow.proto.via_name(),
            flow.local,
            new_branch()
        ))),
        Header::MaxForwards(headers::MaxForwards::new("70")),
        Header::From(headers::From::new(from)),
        Header::To(headers::To::new(format!("<sip:{}@{domain}>", m.recipient))),
        Header::CallId(headers::CallId::new(new_call_id(domain))),
        Header::CSeq(headers::CSeq::new("1 MESSAGE")),
        Header::ContentType(headers::ContentType::new(m.content_type.clone())),
        Header::ContentLength(headers::ContentLength::from(m.body.len() as u32)),
    ];
    rsip::Request {
        method: Method::Message,
        uri,
        version: rsip::Version::V2,
        headers: headers.into(),
        body: m.body.clone(),
    }
}

fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            _ => vec![c],
        })
        .collect()
}

fn delivering() -> &'static Mutex<HashSet<String>> {
    static DELIVERING: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    DELIVERING.get_or_init(|| Mutex::new(HashSet::new()))
}

/// After a REGISTER: delivers the recipient's deferred messages, oldest
/// first, stopping at the first one no device accepts (it stays deferred).
pub fn deliver_deferred(server: Arc<SipServer>, login: String) {
    // One delivery round per login at a time: two REGISTERs in a row must not
    // send every message twice.
    if !delivering()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(login.clone())
    {
        return;
    }
    tokio::spawn(async move {
        loop {
            let batch = match server.store.deferred_messages(&login, DEFERRED_BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, login, "cannot read deferred messages");
                    break;
                }
            };
            let full = batch.len() as u32 == DEFERRED_BATCH;
            let mut stuck = false;
            // Once a batch: in a cluster each look is a database read.
            let located = server.locate(&login, false).await;
            for message in batch {
                if located.is_empty() || !deliver(&server, &message, located.clone(), None).await {
                    stuck = true;
                    break;
                }
                tracing::debug!(id = message.id, login, "deferred message delivered");
            }
            if stuck || !full {
                break;
            }
        }
        delivering()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&login);
    });
}
