//! SIP over WebSocket (RFC 7118): what browsers speak. A `ws` or `wss`
//! listener upgrades each connection that asks for the `sip` subprotocol
//! (from an allowed Origin, when the operator lists them); every WebSocket
//! message is one SIP message, so no stream framing is needed. The
//! connection then lives in the same table as TCP and TLS ones: a response
//! or a request for a device goes down the connection its REGISTER came on
//! (the `.invalid` Contact of a browser is never dialled: RFC 5626 flows).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::transport::{Flow, Handler, IDLE_TIMEOUT, Proto, Transports, register_connection};

/// Who may open WebSocket connections, and how many. Clones share the
/// per-address counts: the limit holds across the `ws` and `wss` listeners.
#[derive(Clone, Default)]
pub struct WsPolicy {
    /// Allowed `Origin` values (e.g. `https://portal.example.net`); empty
    /// allows any (and requests without one, as non-browser clients send).
    origins: Vec<String>,
    /// Open WebSocket connections one address may hold.
    max_per_address: usize,
    open: Arc<PerAddress>,
}

impl WsPolicy {
    pub fn new(origins: Vec<String>, max_per_address: usize) -> Self {
        Self {
            origins,
            max_per_address,
            open: Arc::default(),
        }
    }
}

/// A handshake this long is abandoned.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Open connections per source address, for [`WsPolicy::max_per_address`].
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One slot of [`PerAddress`], given back when the connection ends.
struct Slot {
    counts: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Accepts `ws` (no `acceptor`) or `wss` connections on `listener` until
/// the task is dropped.
pub(super) async fn serve_listener(
    proto: Proto,
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    policy: WsPolicy,
    transports: Arc<Transports>,
    handler: Arc<dyn Handler>,
) {
    let policy = Arc::new(policy);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = policy.open.take(remote.ip(), policy.max_per_address) else {
            tracing::info!(%remote, "WebSocket connection refused: too many from this address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let flow = Flow {
            proto,
            local,
            remote,
        };
        let (transports, handler, acceptor, policy) = (
            transports.clone(),
            handler.clone(),
            acceptor.clone(),
            policy.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve(tls, flow, &policy, transports, handler).await,
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
                None => serve(stream, flow, &policy, transports, handler).await,
            }
        });
    }
}

/// The handshake's answer: the `sip` subprotocol chosen, or a refusal.
#[allow(
    clippy::result_large_err,
    reason = "tungstenite's handshake Callback trait fixes the error type"
)]
fn check_handshake(
    request: &Request,
    mut response: Response,
    origins: &[String],
) -> Result<Response, ErrorResponse> {
    let refuse = |status: StatusCode, why: &str| {
        let mut r = ErrorResponse::new(Some(why.to_owned()));
        *r.status_mut() = status;
        r
    };
    let asks_for_sip = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"));
    if !asks_for_sip {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the sip subprotocol (RFC 7118) is required",
        ));
    }
    if !origins.is_empty() {
        let origin = request
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Err(refuse(StatusCode::FORBIDDEN, "origin not allowed"));
        }
    }
    response
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("sip"));
    Ok(response)
}

/// True for a keep-alive: a message of line ends only (RFC 5626's CRLF
/// pings, which some WebSocket clients send as messages).
fn is_keep_alive(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|b| matches!(b, b'\r' | b'\n'))
}

#[allow(
    clippy::result_large_err,
    reason = "the handshake callback returns tungstenite's error type"
)]
async fn serve<S>(
    stream: S,
    flow: Flow,
    policy: &WsPolicy,
    transports: Arc<Transports>,
    handler: Arc<dyn Handler>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = transports.max_message();
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(4096);
    let origins = policy.origins.clone();
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        move |req: &Request, resp: Response| check_handshake(req, resp, &origins),
        Some(config),
    );
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(remote = %flow.remote, error = %e, "WebSocket handshake refused or failed");
            return;
        }
        Err(_) => {
            tracing::debug!(remote = %flow.remote, "WebSocket handshake timed out");
            return;
        }
    };
    tracing::debug!(remote = %flow.remote, transport = flow.proto.as_str(), "WebSocket connection open");
    let (mut sink, mut source) = ws.split();
    let conn = register_connection(&transports, flow);
    let (id, tx, mut rx) = (conn.id, conn.tx, conn.rx);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            // SIP is text; a body that is not UTF-8 goes as a binary message.
            let message = match String::from_utf8(bytes) {
                Ok(text) => Message::text(text),
                Err(e) => Message::Binary(Bytes::from(e.into_bytes())),
            };
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    loop {
        let message = match tokio::time::timeout(IDLE_TIMEOUT, source.next()).await {
            Ok(Some(Ok(m))) => m,
            // Closed, broken (a bad frame, a message over the limit), or idle.
            Ok(Some(Err(e))) => {
                tracing::debug!(remote = %flow.remote, error = %e, "closing a WebSocket after an error");
                break;
            }
            Ok(None) | Err(_) => break,
        };
        let bytes: Vec<u8> = match message {
            Message::Text(text) => text.as_bytes().to_vec(),
            Message::Binary(bytes) => bytes.to_vec(),
            // Pings are answered by the protocol layer; pongs need nothing.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => break,
        };
        if is_keep_alive(&bytes) {
            if tx.send(b"\r\n".to_vec()).await.is_err() {
                break;
            }
            continue;
        }
        handler.clone().on_message(flow, bytes);
    }
    let ours = transports.forget_connection(flow, id);
    drop(tx);
    let _ = writer.await;
    if ours {
        handler.on_closed(flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(protocol: Option<&str>, origin: Option<&str>) -> Request {
        let mut r = Request::builder().uri("/");
        if let Some(p) = protocol {
            r = r.header("Sec-WebSocket-Protocol", p);
        }
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn the_handshake_needs_the_sip_subprotocol_and_an_allowed_origin() {
        let ok =
            check_handshake(&request(Some("chat, SIP"), None), Response::new(()), &[]).unwrap();
        assert_eq!(ok.headers()["sec-websocket-protocol"], "sip");
        let refused =
            check_handshake(&request(Some("chat"), None), Response::new(()), &[]).unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let origins = vec!["https://portal.example.net".to_string()];
        assert!(
            check_handshake(
                &request(Some("sip"), Some("https://portal.example.net")),
                Response::new(()),
                &origins
            )
            .is_ok()
        );
        for origin in [Some("https://evil.example"), None] {
            let refused =
                check_handshake(&request(Some("sip"), origin), Response::new(()), &origins)
                    .unwrap_err();
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{origin:?}");
        }
    }

    #[test]
    fn per_address_slots_come_back() {
        let counts = Arc::new(PerAddress::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = counts.take(ip, 2).unwrap();
        let _b = counts.take(ip, 2).unwrap();
        assert!(counts.take(ip, 2).is_none());
        assert!(counts.take("192.0.2.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(counts.take(ip, 2).is_some());
        assert!(is_keep_alive(b"\r\n\r\n") && !is_keep_alive(b"") && !is_keep_alive(b"OPTIONS"));
    }
}
