//! Load generator for `bench/ws.sh`: SIP over WebSocket (RFC 7118, what
//! browsers speak) and, as the baseline, SIP over TLS, against a running
//! switch. Prints one JSON line of results.
//!
//! ```text
//! ws_load hold N --addr WSS_ADDR --cert CERT_PEM [--transport wss|tls]
//!         [--hold-secs 60] [--keepalive-secs 30] [--pid SWITCH_PID]
//!         [--metrics http://ADMIN/metrics --token T]
//! ws_load register-rate RATE SECONDS wss|tls --addr ADDR --cert CERT_PEM
//!         [--conns 50] [--pid SWITCH_PID]
//! ```
//!
//! `hold` opens N connections (at most `--concurrency` handshakes at a time),
//! spread over source addresses 127.1.x.y (`--per-source` each; Linux routes
//! the whole of 127/8 to loopback, and the switch counts WebSocket
//! connections per source address), registers each with its own account
//! (`user00001`/`pw00001`… as `bench/anchors/gen_users.sh` writes them,
//! REGISTER → 401 → REGISTER with an MD5 digest → 200), then sends each a
//! CRLFCRLF keep-alive every K seconds (RFC 5626 §4.4.1; a WebSocket message
//! of its own over wss) and counts the CRLF pongs. At the end of the hold
//! every connection sends one more keep-alive and counts as alive when its
//! pong comes back within 15 s. With `--pid` it reads the switch's memory
//! (VmRSS, RssAnon) and CPU time from /proc before opening, once all are
//! open and registered, and at the end of the hold.
//!
//! `register-rate` opens a pool of connections (one account each, registered
//! once untimed), then starts REGISTER transactions at RATE per second (0:
//! as fast as the pool goes) for SECONDS, spread over the pool: each one a
//! new challenge round (REGISTER → 401 → REGISTER with credentials → 200),
//! timed from the first REGISTER sent to the 200. Over `tls` the messages go
//! on the TLS stream itself, framed by Content-Length.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
#[command(about = "SIP over WebSocket load for bench/ws.sh")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Open N connections, register each once, hold them with keep-alives.
    Hold(HoldArgs),
    /// REGISTER transactions per second over a fixed pool of connections.
    RegisterRate(RateArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Wss,
    Tls,
}

#[derive(Args, Clone)]
struct Common {
    /// The switch's listener for the transport (its `wss` or `tls` address).
    #[arg(long)]
    addr: SocketAddr,
    /// The switch's certificate (`<data_dir>/tls/self-signed-cert.pem`).
    #[arg(long)]
    cert: PathBuf,
    /// SIP domain (and digest realm) of the accounts.
    #[arg(long, default_value = "127.0.0.1")]
    domain: String,
    /// Number of the first account used (`user%05d`, password `pw%05d`).
    #[arg(long, default_value_t = 1)]
    first_user: u64,
    /// Connections per source address (127.1.x.y).
    #[arg(long, default_value_t = 1000)]
    per_source: usize,
    /// Index of the first source address, so runs side by side use others.
    #[arg(long, default_value_t = 0)]
    first_source: usize,
    /// The switch's pid: its memory and CPU time are read from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// The switch's metrics (`http://ADMIN/metrics`), read at the same moments.
    #[arg(long)]
    metrics: Option<String>,
    /// Bearer token of the admin listener.
    #[arg(long, default_value = "")]
    token: String,
    /// How long one response may take, seconds.
    #[arg(long, default_value_t = 10)]
    response_timeout: u64,
}

#[derive(Args)]
struct HoldArgs {
    /// Connections to hold.
    n: usize,
    #[arg(long, value_enum, default_value = "wss")]
    transport: Transport,
    /// Seconds to hold them once all are open and registered.
    #[arg(long, default_value_t = 60)]
    hold_secs: u64,
    /// Seconds between two keep-alives on one connection.
    #[arg(long, default_value_t = 30)]
    keepalive_secs: u64,
    /// Connections being opened (TCP + TLS + WebSocket + REGISTER) at a time.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct RateArgs {
    /// Transactions started per second; 0: as fast as the pool goes.
    rate: u64,
    /// Seconds measured.
    seconds: u64,
    #[arg(value_enum)]
    transport: Transport,
    /// Connections in the pool (one account each).
    #[arg(long, default_value_t = 50)]
    conns: usize,
    #[command(flatten)]
    common: Common,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    softswitch::tls::install_crypto_provider();
    match Cli::parse().mode {
        Mode::Hold(args) => hold(args).await,
        Mode::RegisterRate(args) => register_rate(args).await,
    }
}

// ---------------------------------------------------------------- wire

/// What the client dials: the listener, TLS trusting the switch's
/// certificate, the SIP domain.
struct Target {
    addr: SocketAddr,
    domain: String,
    tls: tokio_rustls::TlsConnector,
    transport: Transport,
    response_timeout: Duration,
}

impl Target {
    fn new(common: &Common, transport: Transport) -> anyhow::Result<Self> {
        let pem = std::fs::read(&common.cert)
            .with_context(|| format!("cannot read {}", common.cert.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert?)?;
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every connection pays a full handshake, as a browser's first does.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Target {
            addr: common.addr,
            domain: common.domain.clone(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            transport,
            response_timeout: Duration::from_secs(common.response_timeout),
        })
    }

    /// A connection from `source`: TCP, TLS, then (wss) the WebSocket
    /// upgrade asking for the `sip` subprotocol.
    async fn open(&self, source: IpAddr) -> Result<Wire, String> {
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind: {e}"))?;
        let tcp: TcpStream =
            tokio::time::timeout(Duration::from_secs(10), socket.connect(self.addr))
                .await
                .map_err(|_| "connect: timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let local = tcp
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = tokio::time::timeout(Duration::from_secs(15), self.tls.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake: timed out".to_string())?
            .map_err(|e| format!("TLS handshake: {e}"))?;
        match self.transport {
            Transport::Tls => Ok(Wire::Tls {
                stream: Box::new(tls),
                framer: Framer::default(),
                local,
            }),
            Transport::Wss => {
                let mut request = format!("wss://{}/", self.addr)
                    .into_client_request()
                    .map_err(|e| format!("request: {e}"))?;
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", "sip".parse().expect("static"));
                // tungstenite allocates (and zero-fills on every read) its
                // whole read buffer, 128 KiB by default: SIP messages fit in
                // far less, and 20,000 connections would be 2.5 GiB here.
                let config = WebSocketConfig::default().read_buffer_size(4096);
                let (ws, response) = tokio::time::timeout(
                    Duration::from_secs(15),
                    tokio_tungstenite::client_async_with_config(request, tls, Some(config)),
                )
                .await
                .map_err(|_| "WebSocket handshake: timed out".to_string())?
                .map_err(|e| format!("WebSocket handshake: {e}"))?;
                if response
                    .headers()
                    .get("sec-websocket-protocol")
                    .is_none_or(|p| p != "sip")
                {
                    return Err("WebSocket handshake: the sip subprotocol was not chosen".into());
                }
                Ok(Wire::Ws(Box::new(ws)))
            }
        }
    }
}

/// One connection to the switch.
enum Wire {
    Ws(Box<WebSocketStream<TlsStream<TcpStream>>>),
    Tls {
        stream: Box<TlsStream<TcpStream>>,
        framer: Framer,
        local: SocketAddr,
    },
}

/// What arrives on a connection.
enum Incoming {
    Sip(String),
    /// A CRLF: the answer to a keep-alive.
    Pong,
    Closed(String),
}

impl Wire {
    async fn send(&mut self, text: String) -> Result<(), String> {
        match self {
            Wire::Ws(ws) => ws
                .send(Message::text(text))
                .await
                .map_err(|e| format!("send: {e}")),
            Wire::Tls { stream, .. } => {
                stream
                    .write_all(text.as_bytes())
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                stream.flush().await.map_err(|e| format!("send: {e}"))
            }
        }
    }

    /// The next message. Cancel-safe: a partly read message stays buffered.
    async fn recv(&mut self) -> Incoming {
        match self {
            Wire::Ws(ws) => loop {
                let bytes = match ws.next().await {
                    None => return Incoming::Closed("closed by the switch".into()),
                    Some(Err(e)) => return Incoming::Closed(format!("receive: {e}")),
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Close(_))) => {
                        return Incoming::Closed("close frame from the switch".into());
                    }
                    Some(Ok(_)) => continue,
                };
                if !bytes.is_empty() && bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                    return Incoming::Pong;
                }
                return Incoming::Sip(String::from_utf8_lossy(&bytes).into_owned());
            },
            Wire::Tls { stream, framer, .. } => loop {
                match framer.next() {
                    Ok(Some(m)) => return m,
                    Ok(None) => {}
                    Err(e) => return Incoming::Closed(e),
                }
                framer.buf.reserve(4096);
                match stream.read_buf(&mut framer.buf).await {
                    Ok(0) => return Incoming::Closed("closed by the switch".into()),
                    Ok(_) => {}
                    Err(e) => return Incoming::Closed(format!("receive: {e}")),
                }
            },
        }
    }
}

/// Cuts a SIP stream into messages by Content-Length (RFC 3261 §18.3);
/// line ends between messages are keep-alive pongs.
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    fn next(&mut self) -> Result<Option<Incoming>, String> {
        if self.buf.starts_with(b"\r\n") {
            self.buf.drain(..2);
            return Ok(Some(Incoming::Pong));
        }
        if self.buf.first() == Some(&b'\n') {
            self.buf.drain(..1);
            return Ok(Some(Incoming::Pong));
        }
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() > 65_536 {
                return Err("framing: no end of headers in 64 KiB".into());
            }
            return Ok(None);
        };
        let head_len = end + 4;
        let head = std::str::from_utf8(&self.buf[..head_len])
            .map_err(|_| "framing: headers are not UTF-8".to_string())?;
        let body_len = head
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                let name = name.trim();
                (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        if self.buf.len() < head_len + body_len {
            return Ok(None);
        }
        let message = String::from_utf8_lossy(&self.buf[..head_len + body_len]).into_owned();
        self.buf.drain(..head_len + body_len);
        Ok(Some(Incoming::Sip(message)))
    }
}

// ---------------------------------------------------------------- SIP

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

/// The `name="value"` (or bare) parameter of a challenge header.
fn param(header: &str, name: &str) -> Option<String> {
    let at = header
        .match_indices(&format!("{name}="))
        .find(|(i, _)| *i == 0 || matches!(header.as_bytes()[i - 1], b' ' | b',' | b'\t'))?
        .0
        + name.len()
        + 1;
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

fn status(message: &str) -> u16 {
    message
        .strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn cseq_number(message: &str) -> Option<u32> {
    header(message, "CSeq")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A SIP phone on one connection, registering one account.
struct Phone {
    wire: Wire,
    login: String,
    password: String,
    domain: String,
    /// The `.invalid` host a browser uses for itself (RFC 7118 §5.2).
    host: String,
    call_id: String,
    cseq: u32,
    timeout: Duration,
    /// Pongs that arrived while waiting for a response.
    pongs: u64,
}

impl Phone {
    fn new(wire: Wire, user: u64, target: &Target) -> Self {
        let host = format!("{:08x}.invalid", rand::random::<u32>());
        Phone {
            wire,
            login: format!("user{user:05}"),
            password: format!("pw{user:05}"),
            domain: target.domain.clone(),
            call_id: format!("{:016x}@{host}", rand::random::<u64>()),
            host,
            cseq: 0,
            timeout: target.response_timeout,
            pongs: 0,
        }
    }

    fn register_message(&mut self, authorization: &str) -> String {
        self.cseq += 1;
        let (via, contact) = match &self.wire {
            Wire::Ws(_) => (
                format!("SIP/2.0/WSS {}", self.host),
                format!("<sip:{}@{};transport=ws>", self.login, self.host),
            ),
            Wire::Tls { local, .. } => (
                format!("SIP/2.0/TLS {local}"),
                format!("<sip:{}@{local};transport=tls>", self.login),
            ),
        };
        format!(
            "REGISTER sip:{domain} SIP/2.0\r\n\
             Via: {via};branch=z9hG4bK{branch:016x}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{login}@{domain}>;tag={tag:08x}\r\n\
             To: <sip:{login}@{domain}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: {contact};expires=3600\r\n\
             {authorization}\
             User-Agent: ws_load\r\n\
             Content-Length: 0\r\n\r\n",
            domain = self.domain,
            branch = rand::random::<u64>(),
            login = self.login,
            tag = rand::random::<u32>(),
            call_id = self.call_id,
            cseq = self.cseq,
        )
    }

    /// Sends `message` (CSeq `self.cseq`) and waits for its final response.
    async fn transact(&mut self, message: String) -> Result<String, String> {
        self.wire.send(message).await?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let incoming = tokio::time::timeout_at(deadline, self.wire.recv())
                .await
                .map_err(|_| "no final response in time".to_string())?;
            match incoming {
                Incoming::Pong => self.pongs += 1,
                Incoming::Closed(e) => return Err(e),
                Incoming::Sip(m) => {
                    if status(&m) >= 200 && cseq_number(&m) == Some(self.cseq) {
                        return Ok(m);
                    }
                }
            }
        }
    }

    /// One registration: REGISTER, its 401 challenge, REGISTER with an MD5
    /// digest, its 200.
    async fn register(&mut self) -> Result<(), String> {
        let first = self.register_message("");
        let challenge = self.transact(first).await?;
        match status(&challenge) {
            401 => {}
            code => return Err(format!("REGISTER answered {code}, not 401")),
        }
        let www = challenge
            .lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case("WWW-Authenticate")
                    .then(|| v.trim())
            })
            .find(|v| param(v, "algorithm").is_none_or(|a| a.eq_ignore_ascii_case("MD5")))
            .ok_or("401 without an MD5 challenge")?
            .to_string();
        let realm = param(&www, "realm").ok_or("challenge without a realm")?;
        let nonce = param(&www, "nonce").ok_or("challenge without a nonce")?;
        let uri = format!("sip:{}", self.domain);
        let ha1 = md5_hex(&format!("{}:{realm}:{}", self.login, self.password));
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let opaque = param(&www, "opaque")
            .map(|o| format!(", opaque=\"{o}\""))
            .unwrap_or_default();
        let authorization = if param(&www, "qop").is_some() {
            let cnonce = format!("{:08x}", rand::random::<u32>());
            let digest = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
            format!(
                "Authorization: Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", \
                 uri=\"{uri}\", response=\"{digest}\", algorithm=MD5, qop=auth, nc=00000001, \
                 cnonce=\"{cnonce}\"{opaque}\r\n",
                self.login
            )
        } else {
            let digest = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Authorization: Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", \
                 uri=\"{uri}\", response=\"{digest}\", algorithm=MD5{opaque}\r\n",
                self.login
            )
        };
        let second = self.register_message(&authorization);
        let answer = self.transact(second).await?;
        match status(&answer) {
            200 => Ok(()),
            code => Err(format!("REGISTER with credentials answered {code}")),
        }
    }
}

// ---------------------------------------------------------------- helpers

/// Source address of connection `i`: 127.1.x.y, `per_source` connections
/// each.
fn source_ip(i: usize, common: &Common) -> IpAddr {
    let s = common.first_source + i / common.per_source.max(1);
    IpAddr::V4(Ipv4Addr::new(127, 1, (s / 254) as u8, (s % 254 + 1) as u8))
}

/// Error messages by kind, with counts.
#[derive(Default)]
struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    fn add(&self, what: &str, e: &str) {
        // Addresses and numbers vary per connection; the kind does not.
        let kind: String = e
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(120)
            .collect();
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("{what}: {kind}"))
            .or_insert(0) += 1;
    }

    fn json(&self) -> serde_json::Value {
        json!(*self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A process's memory (kB) and CPU time (s), from /proc.
#[derive(Clone, Copy, Default)]
struct ProcSample {
    vm_rss_kb: u64,
    rss_anon_kb: u64,
    cpu_s: f64,
    threads: u64,
    fds: u64,
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the line, in clock ticks (100 per second).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    Some(ProcSample {
        vm_rss_kb: field("VmRSS:"),
        rss_anon_kb: field("RssAnon:"),
        cpu_s: ticks as f64 / 100.0,
        threads: field("Threads:"),
        fds,
    })
}

fn sample_json(s: Option<ProcSample>) -> serde_json::Value {
    match s {
        Some(s) => json!({
            "vm_rss_kb": s.vm_rss_kb,
            "rss_anon_kb": s.rss_anon_kb,
            "cpu_s": s.cpu_s,
            "threads": s.threads,
            "fds": s.fds,
        }),
        None => serde_json::Value::Null,
    }
}

/// The switch's gauges that matter here, from its metrics page.
async fn gauges(common: &Common) -> serde_json::Value {
    let Some(url) = &common.metrics else {
        return serde_json::Value::Null;
    };
    let text = async {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(&common.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }
    .await;
    let Ok(text) = text else {
        return json!("unreadable");
    };
    let mut out = serde_json::Map::new();
    for line in text.lines() {
        for name in ["sip_connections", "sip_registered_accounts"] {
            if let Some(value) = line
                .strip_prefix("softswitch_")
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
            {
                out.insert(
                    name.into(),
                    json!(value.trim().parse::<f64>().unwrap_or(-1.0)),
                );
            }
        }
    }
    serde_json::Value::Object(out)
}

// ---------------------------------------------------------------- hold

#[derive(Default)]
struct HoldStats {
    /// Connections whose opening ended, one way or the other.
    settled: AtomicU64,
    connected: AtomicU64,
    registered: AtomicU64,
    failed: AtomicU64,
    pings: AtomicU64,
    pongs: AtomicU64,
    /// Keep-alives whose pong had not come when the next one was due.
    missed: AtomicU64,
    /// Connections that ended during the hold.
    dropped: AtomicU64,
    /// Connections whose final keep-alive got its pong.
    alive: AtomicU64,
    /// Connections whose final check is done.
    checked: AtomicU64,
    /// SIP messages other than responses to our requests.
    other: AtomicU64,
    errors: Errors,
}

async fn hold(args: HoldArgs) -> anyhow::Result<()> {
    let common = args.common.clone();
    let target = Arc::new(Target::new(&common, args.transport)?);
    let stats = Arc::new(HoldStats::default());
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let keepalive = Duration::from_secs(args.keepalive_secs.max(1));
    // false: hold; true: send the final keep-alive. The second channel tells
    // the tasks to let go of their connections.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let switch_before = common.pid.and_then(proc_sample);
    let gauges_before = gauges(&common).await;
    let client_before = proc_sample(std::process::id());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.n);
    for i in 0..args.n {
        let (target, stats, gate) = (target.clone(), stats.clone(), gate.clone());
        let (mut stop, mut release) = (stop_rx.clone(), release_rx.clone());
        let source = source_ip(i, &common);
        let user = common.first_user + i as u64;
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("never closed");
            let wire = match target.open(source).await {
                Ok(w) => w,
                Err(e) => {
                    stats.errors.add("open", &e);
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    stats.settled.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            stats.connected.fetch_add(1, Ordering::Relaxed);
            let mut phone = Phone::new(wire, user, &target);
            if let Err(e) = phone.register().await {
                stats.errors.add("register", &e);
                stats.failed.fetch_add(1, Ordering::Relaxed);
                stats.settled.fetch_add(1, Ordering::Relaxed);
                return;
            }
            stats.registered.fetch_add(1, Ordering::Relaxed);
            stats.settled.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            // Keep-alives spread over the period, as independent browsers' are.
            let mut next = Instant::now() + keepalive.mul_f64(rand::random::<f64>());
            let mut awaiting = false;
            let ping = "\r\n\r\n".to_string();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep_until(next) => {
                        if awaiting {
                            stats.missed.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Err(e) = phone.wire.send(ping.clone()).await {
                            stats.errors.add("keep-alive", &e);
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                            stats.checked.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        stats.pings.fetch_add(1, Ordering::Relaxed);
                        awaiting = true;
                        next += keepalive;
                    }
                    incoming = phone.wire.recv() => match incoming {
                        Incoming::Pong => {
                            stats.pongs.fetch_add(1, Ordering::Relaxed);
                            awaiting = false;
                        }
                        Incoming::Sip(_) => {
                            stats.other.fetch_add(1, Ordering::Relaxed);
                        }
                        Incoming::Closed(e) => {
                            stats.errors.add("hold", &e);
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                            stats.checked.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    },
                }
            }
            // The final keep-alive: alive when its pong comes back.
            let alive = async {
                phone.wire.send(ping).await?;
                stats.pings.fetch_add(1, Ordering::Relaxed);
                loop {
                    match phone.wire.recv().await {
                        Incoming::Pong => return Ok::<_, String>(()),
                        Incoming::Sip(_) => {
                            stats.other.fetch_add(1, Ordering::Relaxed);
                        }
                        Incoming::Closed(e) => return Err(e),
                    }
                }
            };
            match tokio::time::timeout(Duration::from_secs(15), alive).await {
                Ok(Ok(())) => {
                    stats.pongs.fetch_add(1, Ordering::Relaxed);
                    stats.alive.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => stats.errors.add("final keep-alive", &e),
                Err(_) => stats.errors.add("final keep-alive", "no pong in 15 s"),
            }
            stats.checked.fetch_add(1, Ordering::Relaxed);
            let _ = release.changed().await;
            drop(phone);
        }));
    }
    // Opening.
    let mut last_report = Instant::now();
    while (stats.settled.load(Ordering::Relaxed) as usize) < args.n {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  {:>5.1} s: {} settled, {} registered, {} failed",
                started.elapsed().as_secs_f64(),
                stats.settled.load(Ordering::Relaxed),
                stats.registered.load(Ordering::Relaxed),
                stats.failed.load(Ordering::Relaxed),
            );
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    let switch_opened = common.pid.and_then(proc_sample);
    let registered = stats.registered.load(Ordering::Relaxed);
    eprintln!(
        "  all settled in {open_secs:.1} s: {registered} registered, {} failed; holding {} s",
        stats.failed.load(Ordering::Relaxed),
        args.hold_secs
    );
    // Let the switch's metrics loop catch up (it runs every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let switch_held = common.pid.and_then(proc_sample);
    let gauges_held = gauges(&common).await;
    let client_held = proc_sample(std::process::id());
    let hold_start = Instant::now();
    let pings_before = stats.pings.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.hold_secs).saturating_sub(Duration::from_secs(3)))
        .await;
    let switch_end = common.pid.and_then(proc_sample);
    let gauges_end = gauges(&common).await;
    let hold_secs = hold_start.elapsed().as_secs_f64();
    let pings_in_hold = stats.pings.load(Ordering::Relaxed) - pings_before;
    // Final check.
    let _ = stop_tx.send(true);
    let check_started = Instant::now();
    while stats.checked.load(Ordering::Relaxed) < registered
        && check_started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check_secs = check_started.elapsed().as_secs_f64();
    let _ = release_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }

    let per_conn =
        |a: Option<ProcSample>, b: Option<ProcSample>, f: fn(&ProcSample) -> u64| match (a, b) {
            (Some(a), Some(b)) if registered > 0 => {
                json!(((f(&b) as f64 - f(&a) as f64) * 1024.0 / registered as f64).round())
            }
            _ => serde_json::Value::Null,
        };
    let cpu = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
        (Some(a), Some(b)) => json!(((b.cpu_s - a.cpu_s) * 100.0).round() / 100.0),
        _ => serde_json::Value::Null,
    };
    let out = json!({
        "mode": "hold",
        "transport": match args.transport { Transport::Wss => "wss", Transport::Tls => "tls" },
        "n": args.n,
        "connected": stats.connected.load(Ordering::Relaxed),
        "registered": registered,
        "failed": stats.failed.load(Ordering::Relaxed),
        "open_secs": (open_secs * 10.0).round() / 10.0,
        "opened_per_sec": (registered as f64 / open_secs).round(),
        "hold_secs": hold_secs.round(),
        "keepalive_secs": args.keepalive_secs,
        "keepalives_per_sec_in_hold": (pings_in_hold as f64 / hold_secs).round(),
        "pings": stats.pings.load(Ordering::Relaxed),
        "pongs": stats.pongs.load(Ordering::Relaxed),
        "missed_pongs": stats.missed.load(Ordering::Relaxed),
        "dropped_in_hold": stats.dropped.load(Ordering::Relaxed),
        "alive_at_end": stats.alive.load(Ordering::Relaxed),
        "final_check_secs": (check_secs * 10.0).round() / 10.0,
        "other_messages": stats.other.load(Ordering::Relaxed),
        "errors": stats.errors.json(),
        "switch": {
            "before": sample_json(switch_before),
            "held": sample_json(switch_held),
            "end_of_hold": sample_json(switch_end),
            "vm_rss_per_conn_bytes": per_conn(switch_before, switch_held, |s| s.vm_rss_kb),
            "rss_anon_per_conn_bytes": per_conn(switch_before, switch_held, |s| s.rss_anon_kb),
            "cpu_s_opening": cpu(switch_before, switch_opened),
            "cpu_s_holding": cpu(switch_held, switch_end),
            "gauges_before": gauges_before,
            "gauges_held": gauges_held,
            "gauges_end_of_hold": gauges_end,
        },
        "client": {
            "before": sample_json(client_before),
            "held": sample_json(client_held),
        },
    });
    println!("{out}");
    Ok(())
}

// ---------------------------------------------------------------- rate

async fn register_rate(args: RateArgs) -> anyhow::Result<()> {
    let common = args.common.clone();
    let target = Arc::new(Target::new(&common, args.transport)?);
    if args.conns == 0 || args.seconds == 0 {
        bail!("--conns and SECONDS must be above 0");
    }
    // The pool, each connection registered once (untimed: the account's
    // first look-up and the connection's first binding are not the steady
    // state).
    let errors = Arc::new(Errors::default());
    let mut opening = Vec::new();
    for i in 0..args.conns {
        let (target, errors) = (target.clone(), errors.clone());
        let source = source_ip(i, &common);
        let user = common.first_user + i as u64;
        opening.push(tokio::spawn(async move {
            let wire = target
                .open(source)
                .await
                .map_err(|e| errors.add("open", &e))
                .ok()?;
            let mut phone = Phone::new(wire, user, &target);
            match phone.register().await {
                Ok(()) => Some(phone),
                Err(e) => {
                    errors.add("first register", &e);
                    None
                }
            }
        }));
    }
    let mut phones = Vec::new();
    for task in opening {
        if let Some(phone) = task.await? {
            phones.push(phone);
        }
    }
    if phones.is_empty() {
        bail!("no connection registered: {}", errors.json());
    }
    let pool = phones.len();

    let interval_ns = 1_000_000_000u64.checked_div(args.rate).unwrap_or(0);
    let next = Arc::new(AtomicU64::new(0));
    let window = Duration::from_secs(args.seconds);
    let switch_before = common.pid.and_then(proc_sample);
    let client_before = proc_sample(std::process::id());
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + window;
    let mut workers = Vec::new();
    for mut phone in phones {
        let (next, errors) = (next.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("static bounds");
            let mut lateness = latency.clone();
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut last_done = start;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let due = start + Duration::from_nanos(k.saturating_mul(interval_ns));
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let _ = lateness.record((sent - due).as_micros().max(1) as u64);
                match phone.register().await {
                    Ok(()) => {
                        ok += 1;
                        let _ = latency.record(sent.elapsed().as_micros().max(1) as u64);
                    }
                    Err(e) => {
                        failed += 1;
                        errors.add("register", &e);
                    }
                }
                last_done = Instant::now();
            }
            (ok, failed, latency, lateness, last_done, phone)
        }));
    }
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut lateness = latency.clone();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut last_done = start;
    let mut phones = Vec::new();
    for worker in workers {
        let (o, f, l, late, done, phone) = worker.await?;
        ok += o;
        failed += f;
        latency.add(&l)?;
        lateness.add(&late)?;
        last_done = last_done.max(done);
        phones.push(phone);
    }
    let switch_after = common.pid.and_then(proc_sample);
    let client_after = proc_sample(std::process::id());
    let elapsed = (last_done.max(end) - start).as_secs_f64();
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0
    };
    let switch_cpu = match (switch_before, switch_after) {
        (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
        _ => None,
    };
    let out = json!({
        "mode": "register-rate",
        "transport": match args.transport { Transport::Wss => "wss", Transport::Tls => "tls" },
        "target_rate": args.rate,
        "seconds": args.seconds,
        "pool": pool,
        "ok": ok,
        "failed": failed,
        "rate": (ok as f64 / elapsed * 10.0).round() / 10.0,
        "p50_ms": ms(&latency, 0.5),
        "p90_ms": ms(&latency, 0.9),
        "p99_ms": ms(&latency, 0.99),
        "max_ms": ms(&latency, 1.0),
        "start_late_p99_ms": ms(&lateness, 0.99),
        "switch_cpu_s": switch_cpu.map(|c| (c * 100.0).round() / 100.0),
        "switch_cpu_pct": switch_cpu.map(|c| (c / elapsed * 100.0).round()),
        "switch_cpu_us_per_register": switch_cpu
            .filter(|_| ok > 0)
            .map(|c| (c * 1e6 / ok as f64).round()),
        "client_cpu_pct": client_before
            .zip(client_after)
            .map(|(a, b)| ((b.cpu_s - a.cpu_s) / elapsed * 100.0).round()),
        "errors": errors.json(),
    });
    drop(phones);
    println!("{out}");
    Ok(())
}
