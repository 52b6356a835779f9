//! SIP transports: UDP sockets, TCP, TLS and WebSocket connections (the
//! latter in [`super::websocket`]), and the table that lets a response or a
//! later request reach a device over the connection it opened (handsets sit
//! behind NAT and cannot be connected to).
//!
//! This is the tokio glue: it moves bytes and cuts streams into frames; what
//! the bytes mean is the [`Handler`]'s business.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::parse::{Frame, StreamFramer};
use super::receive_time;
use super::transaction::Reliability;
pub use super::websocket::WsPolicy;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
    /// SIP over WebSocket (RFC 7118), plain and over TLS: browsers.
    Ws,
    Wss,
}

impl Proto {
    /// The name in a Via header.
    pub fn via_name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
            Proto::Ws => "WS",
            Proto::Wss => "WSS",
        }
    }

    /// The lowercase name stored with bindings and used in `transport=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
            Proto::Ws => "ws",
            Proto::Wss => "wss",
        }
    }

    /// The `transport=` URI parameter naming it (RFC 3261 §19.1.1, RFC 7118
    /// §5.2), empty for UDP: what the switch puts in the URIs and Contacts
    /// it sends along a flow.
    pub fn uri_param(self) -> &'static str {
        match self {
            Proto::Udp => "",
            Proto::Tcp => ";transport=tcp",
            Proto::Tls => ";transport=tls",
            Proto::Ws => ";transport=ws",
            Proto::Wss => ";transport=wss",
        }
    }

    /// Connection-oriented: a device on it is reachable only while its
    /// connection is open.
    pub fn is_stream(self) -> bool {
        self != Proto::Udp
    }

    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Proto::Udp),
            "tcp" => Some(Proto::Tcp),
            "tls" => Some(Proto::Tls),
            "ws" => Some(Proto::Ws),
            "wss" => Some(Proto::Wss),
            _ => None,
        }
    }

    pub fn reliability(self) -> Reliability {
        match self {
            Proto::Udp => Reliability::Unreliable,
            Proto::Tcp | Proto::Tls | Proto::Ws | Proto::Wss => Reliability::Reliable,
        }
    }
}

/// Where a message came from, and so how to answer it: the protocol, our
/// listener address and the peer's address as seen by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Errors sending.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No open connection to that peer (stream transports cannot dial a handset).
    #[error("no {proto:?} connection to {remote}")]
    NoConnection { proto: Proto, remote: SocketAddr },
    /// No UDP socket to send from.
    #[error("no UDP listener")]
    NoSocket,
    /// The socket refused the datagram.
    #[error("send to {remote} failed: {source}")]
    Io {
        remote: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS handshake with a peer the switch connected to failed: its
    /// certificate did not verify, or the peer broke off.
    #[error("TLS handshake with {remote} failed: {source}")]
    Tls {
        remote: SocketAddr,
        source: std::io::Error,
    },
}

/// What the SIP core does with what arrives.
pub trait Handler: Send + Sync + 'static {
    /// One datagram, or one framed stream message.
    fn on_message(self: Arc<Self>, flow: Flow, bytes: Vec<u8>);

    /// One datagram that waited `queued` in the socket's receive buffer
    /// (zero when the kernel gives no receive time).
    fn on_datagram(self: Arc<Self>, flow: Flow, bytes: Vec<u8>, queued: Duration) {
        let _ = queued;
        self.on_message(flow, bytes);
    }

    /// A TCP/TLS connection closed (by the peer, an error or the idle
    /// timeout) and no newer connection from the same address replaced it:
    /// RFC 5626 flow failure. What was bound to the flow is unreachable now.
    fn on_closed(self: Arc<Self>, flow: Flow) {
        let _ = flow;
    }
}

struct Conn {
    id: u64,
    local: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
}

/// The open sockets and connections.
pub struct Transports {
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    conns: Mutex<HashMap<(Proto, SocketAddr), Conn>>,
    next_conn: AtomicU64,
    max_message: usize,
    /// Local addresses actually bound (port 0 in the config becomes a real port).
    pub bound: Vec<(Proto, SocketAddr)>,
    /// Where messages on connections the switch opens itself go.
    handler: Arc<dyn Handler>,
    /// Verifies the servers the switch opens TLS connections to (carriers).
    tls_connector: tokio_rustls::TlsConnector,
}

/// How long opening a connection to a peer (a carrier) may take, the TLS
/// handshake included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many writes may queue on one connection before the sender is told it
/// is not keeping up; a slow reader must not grow memory without bound.
const CONN_QUEUE: usize = 256;

/// A connection silent this long is closed: RFC 5626 clients ping every
/// 2 minutes or so, so 10 minutes without a byte means the peer is gone.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

impl Transports {
    /// Sends bytes along a flow: from the UDP socket it names, or down the
    /// stream connection the peer opened.
    pub async fn send(&self, flow: &Flow, bytes: Vec<u8>) -> Result<(), TransportError> {
        match flow.proto {
            Proto::Udp => {
                let socket = self
                    .udp
                    .get(&flow.local)
                    .or_else(|| self.udp.values().next())
                    .ok_or(TransportError::NoSocket)?;
                socket
                    .send_to(&bytes, flow.remote)
                    .await
                    .map_err(|source| TransportError::Io {
                        remote: flow.remote,
                        source,
                    })?;
                Ok(())
            }
            Proto::Tcp | Proto::Tls | Proto::Ws | Proto::Wss => {
                let tx = {
                    let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
                    conns.get(&(flow.proto, flow.remote)).map(|c| c.tx.clone())
                };
                let no_conn = || TransportError::NoConnection {
                    proto: flow.proto,
                    remote: flow.remote,
                };
                let tx = tx.ok_or_else(no_conn)?;
                tx.send(bytes).await.map_err(|_| no_conn())
            }
        }
    }

    /// True when a stream connection to the peer is open (always true for UDP).
    pub fn is_reachable(&self, flow: &Flow) -> bool {
        match flow.proto {
            Proto::Udp => true,
            _ => self
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&(flow.proto, flow.remote)),
        }
    }

    /// The flow of an open TCP connection to `remote`, or of a new one the
    /// switch opens (carriers are reached this way; phones always connect
    /// to the switch). Messages arriving on it are handled like any other.
    pub async fn connect_tcp(self: &Arc<Self>, remote: SocketAddr) -> Result<Flow, TransportError> {
        self.connect(remote, None).await
    }

    /// Like [`Transports::connect_tcp`] over TLS: the peer's certificate must
    /// verify against the client roots and match `name` (the host the
    /// carrier is configured by, a DNS name or an IP address).
    pub async fn connect_tls(
        self: &Arc<Self>,
        remote: SocketAddr,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Flow, TransportError> {
        self.connect(remote, Some(name)).await
    }

    /// An open connection to `remote` (TLS when `tls` names the server),
    /// else a new one, served like an accepted one: framing, keep-alive
    /// answers, idle timeout and the connection table are shared.
    async fn connect(
        self: &Arc<Self>,
        remote: SocketAddr,
        tls: Option<rustls::pki_types::ServerName<'static>>,
    ) -> Result<Flow, TransportError> {
        let proto = if tls.is_some() {
            Proto::Tls
        } else {
            Proto::Tcp
        };
        if let Some(c) = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(proto, remote))
        {
            return Ok(Flow {
                proto,
                local: c.local,
                remote,
            });
        }
        let io = |source| TransportError::Io { remote, source };
        let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(remote))
            .await
            .map_err(|_| io(timed_out()))?
            .map_err(io)?;
        let _ = stream.set_nodelay(true);
        let flow = Flow {
            proto,
            local: stream.local_addr().map_err(io)?,
            remote,
        };
        match tls {
            None => self.adopt(stream, flow),
            Some(name) => {
                // Registered only once the certificate verified: nothing may
                // be sent to a peer that could not prove who it is.
                let tls_err = |source| TransportError::Tls { remote, source };
                let stream =
                    tokio::time::timeout_at(deadline, self.tls_connector.connect(name, stream))
                        .await
                        .map_err(|_| tls_err(timed_out()))?
                        .map_err(tls_err)?;
                self.adopt(stream, flow);
            }
        }
        Ok(flow)
    }

    /// Serves a connection the switch opened. In the table before
    /// [`Transports::connect`] returns, so the first send finds it.
    fn adopt<S>(self: &Arc<Self>, stream: S, flow: Flow)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let conn = register_connection(self, flow);
        tracing::debug!(remote = %flow.remote, transport = flow.proto.as_str(), "connected to a peer");
        tokio::spawn(serve_connection(
            stream,
            flow,
            conn,
            self.clone(),
            self.handler.clone(),
        ));
    }

    /// True when a `proto` (TCP or TLS) connection from `remote` is open.
    pub fn has_connection(&self, proto: Proto, remote: SocketAddr) -> bool {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(proto, remote))
    }

    /// Open stream connections.
    pub fn connection_count(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Largest message accepted, bytes.
    pub(super) fn max_message(&self) -> usize {
        self.max_message
    }

    /// Connection `id` of `flow` ended: out of the table, unless a newer
    /// connection from the same address replaced it (true when it was
    /// still there: the flow failed, RFC 5626).
    pub(super) fn forget_connection(&self, flow: Flow, id: u64) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let ours = conns
            .get(&(flow.proto, flow.remote))
            .is_some_and(|c| c.id == id);
        if ours {
            conns.remove(&(flow.proto, flow.remote));
        }
        ours
    }
}

/// What the SIP UDP sockets ask the kernel to buffer. The default (~200 KiB)
/// overflows in the bursts of a few thousand requests per second, and every
/// datagram dropped there costs a retransmission timer (0.5 s and more) on
/// both sides: at 1,500 calls/s this was the switch's ceiling.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

async fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use rustix::net::sockopt;
    let socket = UdpSocket::bind(addr).await?;
    // Past `net.core.rmem_max` only with CAP_NET_ADMIN (running as root);
    // otherwise as much as that sysctl allows.
    if sockopt::set_socket_recv_buffer_size_force(&socket, UDP_RECEIVE_BUFFER).is_err()
        && let Err(e) = sockopt::set_socket_recv_buffer_size(&socket, UDP_RECEIVE_BUFFER)
    {
        tracing::warn!(address = %addr, error = %e, "cannot enlarge the UDP receive buffer");
    }
    // Linux reports twice what was set (bookkeeping included).
    let granted = sockopt::socket_recv_buffer_size(&socket).unwrap_or(0) / 2;
    if granted < UDP_RECEIVE_BUFFER {
        tracing::warn!(
            address = %addr,
            receive_buffer = granted,
            wanted = UDP_RECEIVE_BUFFER,
            "small SIP UDP receive buffer: bursts will be dropped; \
             raise net.core.rmem_max (sysctl) to at least the wanted size"
        );
    }
    Ok(socket)
}

/// The addresses to listen on, by transport.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listeners<'a> {
    pub udp: &'a [SocketAddr],
    pub tcp: &'a [SocketAddr],
    pub tls: &'a [SocketAddr],
    pub ws: &'a [SocketAddr],
    pub wss: &'a [SocketAddr],
}

/// Binds every listener and starts serving. Returns the transports and the
/// listener tasks. `tls_config` serves TLS and WSS (without it those
/// listeners are not bound); `tls_client` verifies the servers the switch
/// connects to.
pub async fn start(
    listeners: Listeners<'_>,
    ws_policy: WsPolicy,
    tls_config: Option<Arc<rustls::ServerConfig>>,
    tls_client: Arc<rustls::ClientConfig>,
    max_message: usize,
    handler: Arc<dyn Handler>,
) -> std::io::Result<(Arc<Transports>, Vec<JoinHandle<()>>)> {
    let Listeners {
        udp,
        tcp,
        tls,
        ws,
        wss,
    } = listeners;
    let mut udp_sockets = HashMap::new();
    let mut bound = Vec::new();
    for addr in udp {
        let socket = Arc::new(bind_udp(*addr).await?);
        let local = socket.local_addr()?;
        bound.push((Proto::Udp, local));
        udp_sockets.insert(local, socket);
    }
    let mut tcp_listeners = Vec::new();
    for addr in tcp {
        let listener = TcpListener::bind(addr).await?;
        bound.push((Proto::Tcp, listener.local_addr()?));
        tcp_listeners.push((Proto::Tcp, listener));
    }
    if tls_config.is_some() {
        for addr in tls {
            let listener = TcpListener::bind(addr).await?;
            bound.push((Proto::Tls, listener.local_addr()?));
            tcp_listeners.push((Proto::Tls, listener));
        }
    }
    let mut ws_listeners = Vec::new();
    for (proto, addrs) in [(Proto::Ws, ws), (Proto::Wss, wss)] {
        if proto == Proto::Wss && tls_config.is_none() {
            continue;
        }
        for addr in addrs {
            let listener = TcpListener::bind(addr).await?;
            bound.push((proto, listener.local_addr()?));
            ws_listeners.push((proto, listener));
        }
    }
    let transports = Arc::new(Transports {
        udp: udp_sockets.clone(),
        conns: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        max_message,
        bound,
        handler: handler.clone(),
        tls_connector: tokio_rustls::TlsConnector::from(tls_client),
    });
    let mut tasks = Vec::new();
    // Parsing happens in the receive loop, so one loop per socket would put
    // every datagram through one task (one core) and overflow the socket's
    // buffer under load while the other core idles. One loop per core reads
    // the same socket, as Kamailio's UDP workers do; SIP over UDP tolerates
    // the reordering this allows.
    let readers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for (local, socket) in udp_sockets {
        for _ in 0..readers {
            tasks.push(tokio::spawn(serve_udp(
                socket.clone(),
                local,
                max_message,
                handler.clone(),
            )));
        }
    }
    let acceptor = tls_config.map(tokio_rustls::TlsAcceptor::from);
    for (proto, listener) in tcp_listeners {
        tasks.push(tokio::spawn(serve_stream_listener(
            proto,
            listener,
            acceptor.clone(),
            transports.clone(),
            handler.clone(),
        )));
    }
    for (proto, listener) in ws_listeners {
        tasks.push(tokio::spawn(super::websocket::serve_listener(
            proto,
            listener,
            acceptor.clone().filter(|_| proto == Proto::Wss),
            ws_policy.clone(),
            transports.clone(),
            handler.clone(),
        )));
    }
    Ok((transports, tasks))
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    max_message: usize,
    handler: Arc<dyn Handler>,
) {
    // One byte more than the limit, so an oversized datagram is seen as such
    // instead of being silently truncated into something that parses.
    let mut buf = vec![0u8; max_message.saturating_add(1).max(2048)];
    let stamped = receive_time::enable(&socket);
    loop {
        let received = if stamped {
            socket
                .async_io(tokio::io::Interest::READABLE, || {
                    receive_time::recv(&socket, &mut buf)
                })
                .await
        } else {
            socket
                .recv_from(&mut buf)
                .await
                .map(|(n, remote)| (n, remote, Duration::ZERO))
        };
        match received {
            Ok((n, remote, queued)) => {
                let flow = Flow {
                    proto: Proto::Udp,
                    local,
                    remote,
                };
                handler.clone().on_datagram(flow, buf[..n].to_vec(), queued);
            }
            // ICMP port-unreachable from an earlier send shows up here on some
            // systems; it concerns one peer, not the socket.
            Err(e) => tracing::debug!(%local, error = %e, "udp receive error"),
        }
    }
}

async fn serve_stream_listener(
    proto: Proto,
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    transports: Arc<Transports>,
    handler: Arc<dyn Handler>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(_) => continue,
        };
        let flow = Flow {
            proto,
            local,
            remote,
        };
        let transports = transports.clone();
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match (proto, acceptor) {
                (Proto::Tls, Some(acceptor)) => {
                    // A peer that never finishes the handshake must not hold a task forever.
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let conn = register_connection(&transports, flow);
                            serve_connection(tls, flow, conn, transports, handler).await
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
                _ => {
                    let conn = register_connection(&transports, flow);
                    serve_connection(stream, flow, conn, transports, handler).await
                }
            }
        });
    }
}

/// A connection's entry in the table: its id and its write queue.
pub(super) struct Registered {
    pub(super) id: u64,
    pub(super) tx: mpsc::Sender<Vec<u8>>,
    pub(super) rx: mpsc::Receiver<Vec<u8>>,
}

pub(super) fn register_connection(transports: &Transports, flow: Flow) -> Registered {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
    let id = transports.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut conns = transports.conns.lock().unwrap_or_else(|p| p.into_inner());
    // A newer connection from the same address replaces an older one: the
    // device reconnected through the same NAT mapping.
    conns.insert(
        (flow.proto, flow.remote),
        Conn {
            id,
            local: flow.local,
            tx: tx.clone(),
        },
    );
    Registered { id, tx, rx }
}

async fn serve_connection<S>(
    stream: S,
    flow: Flow,
    conn: Registered,
    transports: Arc<Transports>,
    handler: Arc<dyn Handler>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let Registered { id, tx, mut rx } = conn;
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut framer = StreamFramer::new(transports.max_message);
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        for frame in framer.by_ref() {
            match frame {
                Ok(Frame::KeepAlive) => {
                    // RFC 5626 §4.4.1: a CRLFCRLF ping gets a CRLF pong.
                    if tx.send(b"\r\n".to_vec()).await.is_err() {
                        break 'read;
                    }
                }
                Ok(Frame::Message(bytes)) => handler.clone().on_message(flow, bytes),
                Err(e) => {
                    // Framing is lost for good: nothing after this can be trusted.
                    tracing::debug!(remote = %flow.remote, error = %e, "closing stream after a framing error");
                    break 'read;
                }
            }
        }
    }
    let ours = transports.forget_connection(flow, id);
    drop(tx);
    let _ = writer_task.await;
    if ours {
        handler.on_closed(flow);
    }
}
