//! SIP over WebSocket (RFC 7118) from outside: a small WebSocket SIP client
//! (what a browser's JsSIP or SIP.js does on the wire) over `ws` and `wss`
//! against the built binary, beside SIPp peers on UDP.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

use support::free_port;
use support::sipp::*;

/// A browser's SIP stack over one WebSocket connection.
struct WsPhone<S> {
    ws: WebSocketStream<S>,
    login: String,
    password: String,
    /// The `.invalid` host a browser uses for itself (RFC 7118 §5.2).
    host: String,
    cseq: u32,
}

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

/// The `name="value"` (or bare) parameter of a challenge header.
fn param(header: &str, name: &str) -> Option<String> {
    let at = header.find(&format!("{name}="))? + name.len() + 1;
    let rest = &header[at..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted[..quoted.find('"')?].to_string(),
        None => rest
            .split([',', '\r', '\n'])
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
    })
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every `name:` line of `message`, with its line end: what a response
/// copies from its request.
fn header_lines(message: &str, name: &str) -> String {
    message
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .map(|l| format!("{l}\r\n"))
        .collect()
}

fn status(message: &str) -> u16 {
    message
        .strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsPhone<S> {
    fn new(ws: WebSocketStream<S>, login: &str, password: &str) -> Self {
        WsPhone {
            ws,
            login: login.into(),
            password: password.into(),
            host: format!("{}.invalid", rand::random::<u32>()),
            cseq: 0,
        }
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next SIP message (text), skipping pings.
    async fn next(&mut self) -> String {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("nothing from the switch within 10 s")
                .expect("the switch closed the WebSocket")
                .unwrap();
            match m {
                Message::Text(t) => return t.to_string(),
                Message::Binary(b) => return String::from_utf8_lossy(&b).into_owned(),
                _ => continue,
            }
        }
    }

    /// Sends `method` to `uri` (with `body`), answering a digest challenge
    /// once; the final response.
    async fn request(&mut self, method: &str, uri: &str, extra: &str, body: &str) -> String {
        let call_id = format!("{}@{}", rand::random::<u64>(), self.host);
        let mut auth = String::new();
        loop {
            self.cseq += 1;
            let proto = "WSS";
            let msg = format!(
                "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{proto} {host};branch=z9hG4bK{branch}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{login}@localhost>;tag=ws{tag}\r\nTo: <{to}>\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{auth}{extra}Content-Length: {len}\r\n\r\n{body}",
                host = self.host,
                branch = rand::random::<u64>(),
                login = self.login,
                tag = self.cseq,
                to = if method == "REGISTER" {
                    format!("sip:{}@localhost", self.login)
                } else {
                    uri.to_string()
                },
                cseq = self.cseq,
                len = body.len(),
            );
            self.send_text(msg).await;
            let response = loop {
                let m = self.next().await;
                if status(&m) >= 200 {
                    break m;
                }
            };
            let challenge = match status(&response) {
                401 => header(&response, "WWW-Authenticate"),
                407 => header(&response, "Proxy-Authenticate"),
                _ => return response,
            };
            assert!(auth.is_empty(), "challenged twice:\n{response}");
            let challenge = challenge.unwrap().to_string();
            let realm = param(&challenge, "realm").unwrap();
            let nonce = param(&challenge, "nonce").unwrap();
            let ha1 = md5_hex(&format!("{}:{realm}:{}", self.login, self.password));
            let ha2 = md5_hex(&format!("{method}:{uri}"));
            let name = if status(&response) == 401 {
                "Authorization"
            } else {
                "Proxy-Authorization"
            };
            let opaque = param(&challenge, "opaque")
                .map(|o| format!(", opaque=\"{o}\""))
                .unwrap_or_default();
            auth = if param(&challenge, "qop").is_some() {
                let cnonce = format!("{:x}", rand::random::<u32>());
                let digest = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
                format!(
                    "{name}: Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                     response=\"{digest}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\"{opaque}\r\n",
                    self.login
                )
            } else {
                let digest = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
                format!(
                    "{name}: Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                     response=\"{digest}\", algorithm=MD5{opaque}\r\n",
                    self.login
                )
            };
        }
    }

    async fn register(&mut self) -> String {
        let contact = format!(
            "Contact: <sip:{}@{};transport=ws>;expires=600\r\n",
            self.login, self.host
        );
        self.request("REGISTER", "sip:localhost", &contact, "")
            .await
    }

    /// Answers `request` with `code` (a UAS's response: its Via, From, To
    /// with a tag, Call-ID and CSeq).
    async fn answer(&mut self, request: &str, code: u16, reason: &str) {
        let copy = |name: &str| header_lines(request, name);
        let to = header(request, "To").unwrap();
        let response = format!(
            "SIP/2.0 {code} {reason}\r\n{}{}To: {to};tag=ws-uas\r\n{}{}Content-Length: 0\r\n\r\n",
            copy("Via"),
            copy("From"),
            copy("Call-ID"),
            copy("CSeq"),
        );
        self.send_text(response).await;
    }
}

/// A WebSocket to `port` asking for `protocol` from `origin`, over TLS
/// (trusting the switch's self-signed certificate) or not.
async fn open(
    switch: &Switch,
    port: u16,
    tls: bool,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<WebSocketStream<Box<dyn AsyncReadWrite>>, tokio_tungstenite::tungstenite::Error> {
    let scheme = if tls { "wss" } else { "ws" };
    let mut request = format!("{scheme}://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    if let Some(o) = origin {
        request.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
    let stream: Box<dyn AsyncReadWrite> = if tls {
        let connector = support::trusting_connector(&switch.site);
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        Box::new(
            connector
                .connect(name, tcp)
                .await
                .map_err(tokio_tungstenite::tungstenite::Error::Io)?,
        )
    } else {
        Box::new(tcp)
    };
    client_async(request, stream).await.map(|(ws, response)| {
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "sip",
            "the switch chose the sip subprotocol"
        );
        ws
    })
}

trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

const PORTAL: &str = "https://portal.example.net";

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_registers_over_wss_and_exchanges_messages_with_a_udp_phone() {
    let (ws_port, wss_port) = (free_port(), free_port());
    let switch = Switch::start(&format!(
        "ws = [\"127.0.0.1:{ws_port}\"]\nwss = [\"127.0.0.1:{wss_port}\"]\n\
         ws_origins = [\"{PORTAL}\"]\nws_max_per_address = 4\n"
    ))
    .await;

    // Handshakes the switch refuses: no sip subprotocol, a foreign page.
    match open(&switch, ws_port, false, Some("chat"), Some(PORTAL)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        Err(other) => panic!("no sip subprotocol: {other:?}"),
        Ok(_) => panic!("no sip subprotocol: accepted"),
    }
    match open(
        &switch,
        wss_port,
        true,
        Some("sip"),
        Some("https://evil.example"),
    )
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        Err(other) => panic!("foreign origin: {other:?}"),
        Ok(_) => panic!("foreign origin: accepted"),
    }

    let ws = open(&switch, wss_port, true, Some("sip"), Some(PORTAL))
        .await
        .unwrap();
    let mut alice = WsPhone::new(ws, "alice", "alice-pw");
    let ok = alice.register().await;
    assert_eq!(status(&ok), 200, "{ok}\n{}", switch.log());
    assert!(
        header(&ok, "Contact")
            .unwrap()
            .contains(".invalid;transport=ws"),
        "{ok}"
    );
    // A CRLF keep-alive message gets its pong.
    alice.send_text("\r\n\r\n".into()).await;
    assert_eq!(alice.next().await, "\r\n");

    // bob (SIPp over UDP) writes to alice: the MESSAGE comes down her
    // WebSocket, and her 200 reaches him.
    let bob = switch.users("bob.csv", "bob", "bob-pw");
    let (sent, answered) = tokio::join!(
        tokio::task::spawn_blocking({
            let scenario = scenario("uac_message_auth.xml");
            let target = switch.target();
            let bob = bob.clone();
            move || {
                std::process::Command::new("sipp")
                    .arg(target)
                    .arg("-sf")
                    .arg(scenario)
                    .arg("-inf")
                    .arg(bob)
                    .args(["-s", "alice", "-key", "domain", "localhost", "-m", "1"])
                    .args(["-nostdin", "-timeout", "20", "-timeout_error"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            }
        }),
        async {
            let message = alice.next().await;
            assert!(message.starts_with("MESSAGE "), "{message}");
            assert!(
                header(&message, "Via").unwrap().starts_with("SIP/2.0/WSS "),
                "{message}"
            );
            assert!(message.contains("hello from sipp-bench"), "{message}");
            alice.answer(&message, 200, "OK").await;
        }
    );
    assert!(
        sent.unwrap(),
        "bob's MESSAGE did not get alice's 200:\n{}",
        switch.log()
    );
    let () = answered;

    // alice writes to carol, who has no device: stored for later (202),
    // after the proxy challenge.
    let stored = alice
        .request(
            "MESSAGE",
            "sip:carol@localhost",
            "Content-Type: text/plain\r\n",
            "hi carol, from a browser",
        )
        .await;
    assert_eq!(status(&stored), 202, "{stored}\n{}", switch.log());
    let listed = switch.site.ok(&["message", "list", "--to", "carol"]);
    assert!(listed.contains("hi carol, from a browser"), "{listed}");

    // A message over the size limit breaks the connection off cleanly.
    let mut spare = WsPhone::new(
        open(&switch, ws_port, false, Some("sip"), Some(PORTAL))
            .await
            .unwrap(),
        "bob",
        "bob-pw",
    );
    spare.send_text("x".repeat(70_000)).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match spare.ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an oversized message left the connection open"
    );

    // At most ws_max_per_address connections from one address, over ws and
    // wss together: alice's and three more.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            open(&switch, ws_port, false, Some("sip"), Some(PORTAL))
                .await
                .unwrap(),
        );
    }
    assert!(
        open(&switch, ws_port, false, Some("sip"), Some(PORTAL))
            .await
            .is_err(),
        "a fifth connection from one address"
    );
    drop(held);

    // alice's tab closes: her flow is gone, so bob's next MESSAGE is
    // stored for her instead of being sent down a dead connection.
    drop(alice);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let scenario = switch.variant(
        "uac_message_auth.xml",
        "<recv response=\"200\" rtd=\"1\" response_txn=\"msg2\"/>",
        "<recv response=\"202\" rtd=\"1\" response_txn=\"msg2\"/>",
    );
    let (ok, trace) = sipp(
        &switch,
        &scenario,
        &["-inf", bob.to_str().unwrap(), "-s", "alice"],
    );
    assert!(ok, "{trace}\n{}", switch.log());
}

/// A call from a SIPp phone on UDP to a browser on WSS: the INVITE comes
/// down the WebSocket, the browser's 200 reaches the caller, the caller's
/// BYE reaches the browser in the dialog; a call record is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_udp_phone_calls_a_browser_over_wss() {
    let wss_port = free_port();
    let switch = Switch::start(&format!("wss = [\"127.0.0.1:{wss_port}\"]\n")).await;
    let ws = open(&switch, wss_port, true, Some("sip"), None)
        .await
        .unwrap();
    let mut alice = WsPhone::new(ws, "alice", "alice-pw");
    let ok = alice.register().await;
    assert_eq!(status(&ok), 200, "{ok}");

    let bob = switch.users("bob-call.csv", "bob", "bob-pw");
    let caller = tokio::task::spawn_blocking({
        let target = switch.target();
        move || {
            std::process::Command::new("sipp")
                .arg(target)
                .arg("-sf")
                .arg(scenario("call_uac.xml"))
                .arg("-inf")
                .arg(bob)
                .args(["-s", "alice", "-d", "500", "-key", "domain", "localhost"])
                .args(["-m", "1", "-nostdin", "-timeout", "20", "-timeout_error"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        }
    });
    let invite = alice.next().await;
    assert!(invite.starts_with("INVITE sip:alice@"), "{invite}");
    assert!(
        invite
            .to_ascii_lowercase()
            .contains(".invalid;transport=ws"),
        "the INVITE goes to the browser's registered Contact:\n{invite}"
    );
    assert!(
        header(&invite, "Contact")
            .unwrap()
            .contains(";transport=wss"),
        "the switch's Contact names the transport the browser reaches it by:\n{invite}"
    );
    // The phone's plain RTP reaches a browser as WebRTC: the switch's
    // gateway offers DTLS-SRTP with ICE-lite from its own endpoint.
    for line in [
        // G.711 (the default browser_codec), events at 8 kHz.
        " UDP/TLS/RTP/SAVPF 0 8 101\r\n",
        "a=ice-lite\r\n",
        "a=setup:actpass\r\n",
        "a=rtcp-mux\r\n",
        "a=fingerprint:sha-256 ",
        " typ host\r\n",
    ] {
        assert!(invite.contains(line), "{line:?} not offered:\n{invite}");
    }
    // Answer with SDP (this client has no DTLS: signalling only; the
    // Chromium tests carry the media).
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    let copy = |name: &str| header_lines(&invite, name);
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}{}To: {};tag=browser1\r\n{}{}Contact: <sip:alice@{};transport=ws>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        copy("Via"),
        copy("From"),
        header(&invite, "To").unwrap(),
        copy("Call-ID"),
        copy("CSeq"),
        alice.host,
        sdp.len()
    );
    alice.send_text(ok).await;
    let ack = alice.next().await;
    assert!(ack.starts_with("ACK "), "{ack}");
    let bye = alice.next().await;
    assert!(bye.starts_with("BYE "), "{bye}");
    alice.answer(&bye, 200, "OK").await;
    assert!(
        caller.await.unwrap(),
        "the caller's call failed:\n{}",
        switch.log()
    );
    let records = switch.site.ok(&["cdr", "list", "--login", "alice"]);
    assert!(records.contains("bob"), "{records}");
}
