//! Cluster mode: several switch nodes on one database (DESIGN: "every node
//! writes its bindings with its own SIP address; a request for a user bound
//! on another node is forwarded there over SIP").
//!
//! Membership is the `nodes` table: each node refreshes its row every
//! heartbeat and reads the others'; a node not seen for `dead_after_ms` is
//! dead and nothing is forwarded to it (its users register elsewhere).
//!
//! Trust between nodes needs no configuration of its own: nodes sharing a
//! database must share the secret key (it decrypts the SIP passwords), and
//! a forwarded request carries an HMAC under a key derived from it, over
//! the request's identity (method, caller, callee, Call-ID, CSeq, body) and
//! a timestamp. A node accepts a forwarded request only with a valid
//! signature, a timestamp within [`SIGNATURE_WINDOW_SECS`], and from the
//! SIP address of a live node: the switch never relays for anyone else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ring::hmac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sip::util::{header_value, user_of};
use crate::store::Store;

/// The header a forwarding node signs a request with.
pub const NODE_HEADER: &str = "X-Softswitch-Node";
/// The header naming the stored message a forwarded MESSAGE delivers.
pub const MESSAGE_ID_HEADER: &str = "X-Softswitch-Message-Id";
/// How far a signature's timestamp may be from this node's clock: the
/// nodes' clocks (NTP) and a request's retransmissions fit well inside.
pub const SIGNATURE_WINDOW_SECS: i64 = 60;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Off: one node, every binding in the database is this node's.
    pub enabled: bool,
    /// The node's name: as the local dialing plan names its server (users
    /// whose login that prefix matches are at home here), and in logs.
    /// Empty means the address (`HOST:PORT`).
    pub name: String,
    /// The SIP address other nodes forward to and expect this node's
    /// requests from: a `sip.udp` listener (on a wildcard listener, the
    /// address the nodes reach each other on). Empty means the first
    /// `sip.udp` listener.
    pub address: Option<SocketAddr>,
    /// How often a node refreshes its row and reads the others'.
    pub heartbeat_ms: u64,
    /// A node not seen for this long is dead.
    pub dead_after_ms: u64,
    /// Where a call that crosses nodes has its media relayed.
    pub media: ClusterMedia,
}

/// `cluster.media`: which nodes anchor the media of a call forwarded from
/// one node to another (each node anchors the calls it alone handles).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMedia {
    /// Only the node the call came in on: the callee's node passes the SDP
    /// through, so the audio takes one relay hop.
    #[default]
    Entry,
    /// Both nodes, each its own leg: two hops, and the callee's node sees
    /// the media too.
    Each,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            name: String::new(),
            address: None,
            heartbeat_ms: 1000,
            // Five missed heartbeats: a busy database does not declare a
            // live node dead, a killed one is given up within seconds.
            dead_after_ms: 5000,
            media: ClusterMedia::Entry,
        }
    }
}

impl ClusterConfig {
    /// The address this node is known by, from `address` or the first UDP
    /// listener; `None` when neither fits (checked when the config is read).
    pub fn node_address(&self, udp: &[SocketAddr]) -> Option<SocketAddr> {
        let address = self.address.or_else(|| udp.first().copied())?;
        let listened = udp.iter().any(|l| {
            l.port() == address.port() && (l.ip() == address.ip() || l.ip().is_unspecified())
        });
        (listened && !address.ip().is_unspecified()).then_some(address)
    }
}

/// The `node` value of bindings held by the node at `address`.
pub fn node_id(address: SocketAddr) -> String {
    format!("sip:{address}")
}

/// What a request says about having been forwarded by another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// No node signature: a client's request.
    No,
    /// Signed by a live node and sent from its address.
    Yes,
    /// A signature that does not hold (refused with 403).
    Bad(&'static str),
}

/// This node's view of the cluster.
pub struct Cluster {
    node: String,
    address: SocketAddr,
    name: String,
    started_at: i64,
    key: hmac::Key,
    heartbeat: Duration,
    dead_after: Duration,
    media: ClusterMedia,
    /// Live nodes other than this one, by `node` id: address and name.
    peers: RwLock<HashMap<String, (SocketAddr, String)>>,
    /// A graceful stop removed this node's row: no heartbeat writes it again.
    left: AtomicBool,
}

impl Cluster {
    /// `None` when cluster mode is off.
    pub fn from_config(
        config: &ClusterConfig,
        udp: &[SocketAddr],
        secrets: &crate::secrets::Secrets,
    ) -> Option<Cluster> {
        if !config.enabled {
            return None;
        }
        let address = config.node_address(udp)?;
        Some(Cluster {
            node: node_id(address),
            address,
            name: if config.name.is_empty() {
                address.to_string()
            } else {
                config.name.clone()
            },
            started_at: crate::store::now_secs(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &secrets.derive("cluster-forward")),
            heartbeat: Duration::from_millis(config.heartbeat_ms.max(100)),
            dead_after: Duration::from_millis(config.dead_after_ms),
            media: config.media,
            peers: RwLock::new(HashMap::new()),
            left: AtomicBool::new(false),
        })
    }

    /// This node's id, as its bindings' `node` column holds it.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address of `node` if it is another live node.
    pub fn peer(&self, node: &str) -> Option<SocketAddr> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .map(|(address, _)| *address)
    }

    /// The address of the live node called `name` (its `cluster.name`, as
    /// the local dialing plan names it), other than this one.
    pub fn peer_named(&self, name: &str) -> Option<SocketAddr> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|(_, n)| n == name)
            .map(|(address, _)| *address)
    }

    /// The ids of the live nodes other than this one.
    pub fn peer_nodes(&self) -> Vec<String> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Which nodes anchor the media of a call that crosses nodes.
    pub fn media(&self) -> ClusterMedia {
        self.media
    }

    /// How often this node beats (and presence looks at the others' changes).
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// Live nodes other than this one.
    pub fn peer_count(&self) -> usize {
        self.peers.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether `address` is the SIP address of another live node.
    pub fn is_peer_address(&self, address: SocketAddr) -> bool {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|(a, _)| *a == address)
    }

    /// Refreshes this node's row, then reads which others are alive.
    pub async fn beat(&self, store: &Store) -> crate::store::Result<()> {
        if self.left.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = now_ms();
        store
            .node_heartbeat(&self.node, &self.name, self.started_at, now)
            .await?;
        let since = now - i64::try_from(self.dead_after.as_millis()).unwrap_or(i64::MAX);
        let peers: HashMap<String, (SocketAddr, String)> = store
            .nodes_seen_since(since)
            .await?
            .into_iter()
            .filter(|row| row.node != self.node)
            .filter_map(|row| {
                let address = row.node.strip_prefix("sip:")?.parse().ok()?;
                Some((row.node, (address, row.name)))
            })
            .collect();
        let mut current = self.peers.write().unwrap_or_else(|p| p.into_inner());
        for (node, (address, _)) in &peers {
            if !current.contains_key(node) {
                tracing::info!(node, %address, "cluster node alive");
            }
        }
        for node in current.keys() {
            if !peers.contains_key(node) {
                tracing::warn!(node, "cluster node gone");
            }
        }
        *current = peers;
        Ok(())
    }

    /// Beats until the process ends. A failed beat is logged and retried:
    /// the peers keep their last known state meanwhile.
    pub fn spawn(self: Arc<Self>, store: Store) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.beat(&store).await {
                    tracing::warn!(error = %e, "cluster heartbeat failed");
                }
            }
        });
    }

    /// Leaves the cluster at a graceful stop: the others stop forwarding
    /// here at their next heartbeat.
    pub async fn leave(&self, store: &Store) {
        self.left.store(true, Ordering::Relaxed);
        if let Err(e) = store.leave_cluster(&self.node).await {
            tracing::warn!(error = %e, "cluster row not removed");
        }
    }

    /// Signs a request this node forwards to another.
    pub fn sign(&self, req: &mut rsip::Request) {
        let ts = crate::store::now_secs();
        let sig = self.signature(req, ts);
        req.headers.push(rsip::Header::Other(
            NODE_HEADER.into(),
            format!("ts={ts};sig={sig}"),
        ));
    }

    /// Whether `req`, received from `source`, was forwarded by a live node.
    pub fn verify(&self, source: SocketAddr, req: &rsip::Request) -> Forwarded {
        let Some(value) = header_value(&req.headers, NODE_HEADER) else {
            return Forwarded::No;
        };
        let mut ts = None;
        let mut sig = None;
        for part in value.split(';') {
            match part.trim().split_once('=') {
                Some(("ts", v)) => ts = v.trim().parse::<i64>().ok(),
                Some(("sig", v)) => sig = hex::decode(v.trim()).ok(),
                _ => {}
            }
        }
        let (Some(ts), Some(sig)) = (ts, sig) else {
            return Forwarded::Bad("Forbidden - malformed node signature");
        };
        if (crate::store::now_secs() - ts).abs() > SIGNATURE_WINDOW_SECS {
            return Forwarded::Bad("Forbidden - node signature out of date");
        }
        if hmac::verify(&self.key, self.payload(req, ts).as_bytes(), &sig).is_err() {
            return Forwarded::Bad("Forbidden - bad node signature");
        }
        if !self.is_peer_address(source) {
            return Forwarded::Bad("Forbidden - not from a live node");
        }
        Forwarded::Yes
    }

    fn signature(&self, req: &rsip::Request, ts: i64) -> String {
        hex::encode(hmac::sign(&self.key, self.payload(req, ts).as_bytes()))
    }

    /// What a signature covers: who asks what of whom (the users, not the
    /// URIs, which each side may print differently), the transaction, the
    /// stored message named, and the body.
    fn payload(&self, req: &rsip::Request, ts: i64) -> String {
        let h = |name| header_value(&req.headers, name).unwrap_or("").trim();
        let from = user_of(h("From")).unwrap_or_default();
        let target = user_of(&req.uri.to_string()).unwrap_or_default();
        let body = hex::encode(Sha256::digest(&req.body));
        format!(
            "{}\n{from}\n{target}\n{}\n{}\n{}\n{ts}\n{body}",
            req.method,
            h("Call-ID"),
            h("CSeq"),
            h(MESSAGE_ID_HEADER),
        )
    }
}

/// Now as Unix milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(secrets: &crate::secrets::Secrets, port: u16) -> Cluster {
        let config = ClusterConfig {
            enabled: true,
            ..ClusterConfig::default()
        };
        let udp = [SocketAddr::from(([127, 0, 0, 1], port))];
        Cluster::from_config(&config, &udp, secrets).unwrap()
    }

    fn message(body: &str) -> rsip::Request {
        let raw = format!(
            "MESSAGE sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:alice@example.com>;tag=1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: c1\r\nCSeq: 1 MESSAGE\r\n\
             X-Softswitch-Message-Id: 7\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        rsip::Request::try_from(raw.as_bytes()).unwrap()
    }

    impl Cluster {
        /// As if `other` had been seen alive at the last heartbeat.
        fn knows(&self, other: &Cluster) {
            self.peers
                .write()
                .unwrap()
                .insert(other.node.clone(), (other.address, other.name.clone()));
        }
    }

    /// Signs on one node, sends over the wire, verifies on the other.
    fn over_the_wire(req: &rsip::Request) -> rsip::Request {
        rsip::Request::try_from(req.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_request_signed_by_a_live_node_is_trusted_and_nothing_else_is() {
        let secrets = crate::secrets::Secrets::generate().unwrap();
        let a = cluster(&secrets, 5060);
        let b = cluster(&secrets, 5070);
        b.knows(&a);
        let from_a = a.address;

        let mut req = message("hi");
        assert_eq!(b.verify(from_a, &req), Forwarded::No);
        a.sign(&mut req);
        let received = over_the_wire(&req);
        assert_eq!(b.verify(from_a, &received), Forwarded::Yes);

        // From anywhere but a live node's address.
        let elsewhere = SocketAddr::from(([127, 0, 0, 9], 5060));
        assert!(matches!(b.verify(elsewhere, &received), Forwarded::Bad(_)));

        // Any change to what the signature covers.
        for (old, new) in [
            ("\r\n\r\nhi", "\r\n\r\nho"),
            ("sip:bob@127", "sip:eve@127"),
            ("<sip:alice@", "<sip:mallory@"),
            ("Message-Id: 7", "Message-Id: 8"),
            ("Call-ID: c1", "Call-ID: c2"),
        ] {
            let text = received.to_string();
            assert!(text.contains(old), "{old}");
            let changed = rsip::Request::try_from(text.replace(old, new).as_bytes()).unwrap();
            assert!(
                matches!(b.verify(from_a, &changed), Forwarded::Bad(_)),
                "{old} -> {new} still verified"
            );
        }

        // Another cluster's key.
        let other = crate::secrets::Secrets::generate().unwrap();
        let stranger = cluster(&other, 5060);
        let mut forged = message("hi");
        stranger.sign(&mut forged);
        assert!(matches!(
            b.verify(from_a, &over_the_wire(&forged)),
            Forwarded::Bad(_)
        ));
    }

    #[test]
    fn an_old_signature_is_refused() {
        let secrets = crate::secrets::Secrets::generate().unwrap();
        let a = cluster(&secrets, 5060);
        let b = cluster(&secrets, 5070);
        b.knows(&a);
        let mut req = message("hi");
        let ts = crate::store::now_secs() - SIGNATURE_WINDOW_SECS - 5;
        let sig = a.signature(&req, ts);
        req.headers.push(rsip::Header::Other(
            NODE_HEADER.into(),
            format!("ts={ts};sig={sig}"),
        ));
        assert_eq!(
            b.verify(a.address, &over_the_wire(&req)),
            Forwarded::Bad("Forbidden - node signature out of date")
        );
    }

    #[test]
    fn the_node_address_must_be_listened_on_and_not_a_wildcard() {
        let udp = [SocketAddr::from(([127, 0, 0, 1], 5060))];
        let mut config = ClusterConfig::default();
        assert_eq!(config.node_address(&udp), Some(udp[0]));
        config.address = Some(SocketAddr::from(([127, 0, 0, 2], 5060)));
        assert_eq!(config.node_address(&udp), None);
        let wildcard = [SocketAddr::from(([0, 0, 0, 0], 5060))];
        assert_eq!(ClusterConfig::default().node_address(&wildcard), None);
        config.address = Some(SocketAddr::from(([10, 0, 0, 2], 5060)));
        assert_eq!(config.node_address(&wildcard), config.address);
    }
}
