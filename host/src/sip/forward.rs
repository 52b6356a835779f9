//! Reaching users across the cluster: where a user's devices are (this
//! node's flows, other nodes), the flow to another node, and whether a
//! request came from one (see [`crate::cluster`]).

use std::net::SocketAddr;

use super::server::SipServer;
use super::transport::{Flow, Proto};
use crate::cluster::Forwarded;
use crate::store::location::Binding;

/// Where a user's registered devices are.
#[derive(Debug, Clone, Default)]
pub struct Located {
    /// Bindings this node holds: reached over their flows.
    pub local: Vec<Binding>,
    /// Other live nodes holding bindings of the user: reached through them.
    pub remote: Vec<SocketAddr>,
}

impl Located {
    /// Only bindings of this node.
    pub fn here(local: Vec<Binding>) -> Located {
        Located {
            local,
            remote: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }
}

impl SipServer {
    /// Where `login`'s devices are now. Outside cluster mode, and for a
    /// request another node forwarded here (never forwarded again: no
    /// loops), this node's registrar; in a cluster, the database, which
    /// every node writes its bindings to before it answers a REGISTER, so
    /// a device registered on any node is seen at once.
    pub(crate) async fn locate(&self, login: &str, forwarded: bool) -> Located {
        let now = crate::store::now_secs();
        let Some(cluster) = self.cluster().filter(|_| !forwarded) else {
            return Located::here(self.registrar.bindings(login, now));
        };
        let all = match self.store.bindings_of(login, now).await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, login, "bindings not read: this node's only");
                return Located::here(self.registrar.bindings(login, now));
            }
        };
        let mut located = Located::default();
        for binding in all {
            if binding.node == cluster.node() {
                located.local.push(binding);
            } else if let Some(peer) = cluster.peer(&binding.node)
                && !located.remote.contains(&peer)
            {
                located.remote.push(peer);
            }
            // A dead node's bindings: its users register elsewhere.
        }
        located
    }

    /// The flow to another node: UDP from the listener that is this node's
    /// cluster address, so the peer sees the address it trusts.
    pub(crate) fn node_flow(&self, peer: SocketAddr) -> Option<Flow> {
        let address = self.cluster()?.address();
        let local = self
            .transports()?
            .bound
            .iter()
            .find(|(proto, a)| {
                *proto == Proto::Udp
                    && a.port() == address.port()
                    && (a.ip() == address.ip() || a.ip().is_unspecified())
            })
            .map(|(_, a)| *a)?;
        Some(Flow {
            proto: Proto::Udp,
            local,
            remote: peer,
        })
    }

    /// Whether `req` was forwarded by another node of the cluster. Outside
    /// cluster mode nothing is: the header is a client's and means nothing.
    pub(crate) fn forwarded(&self, flow: &Flow, req: &rsip::Request) -> Forwarded {
        match self.cluster() {
            Some(cluster) if flow.proto == Proto::Udp => cluster.verify(flow.remote, req),
            Some(_)
                if super::util::header_value(&req.headers, crate::cluster::NODE_HEADER)
                    .is_some() =>
            {
                Forwarded::Bad("Forbidden - nodes forward over UDP")
            }
            _ => Forwarded::No,
        }
    }
}
