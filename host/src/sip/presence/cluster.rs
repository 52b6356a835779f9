//! Presence across cluster nodes. A user's devices may be on another node
//! than the watchers of that user, so each node writes its *share* of a
//! user's presence (what its own devices of the user say: open, newest
//! note, push) to the database when it changes, and every node reads the
//! shares changed since its last look, once a heartbeat, and notifies its
//! own watchers of the users whose composed document changed. A change on
//! one node thus reaches watchers on another within one heartbeat
//! (`cluster.heartbeat_ms`) plus a database round trip.
//!
//! Shares are stamped with the database's clock and read back with a
//! margin ([`LOOK_BACK_MS`]), so a slow commit or a skewed node clock does
//! not lose one; a share read twice changes nothing. A dead node's shares
//! stop counting (its devices are gone); a node starting again empties its
//! old ones first.

use std::collections::HashSet;
use std::sync::Arc;

use super::Presence;
use crate::cluster::Cluster;
use crate::sip::server::SipServer;
use crate::store::presence_shares::PresenceShare;

/// How far back each look reads again, milliseconds: longer than a commit
/// takes to become visible on a loaded database.
const LOOK_BACK_MS: i64 = 2_000;
/// Empty shares older than this are purged, milliseconds.
const EMPTY_SHARES_KEPT_MS: i64 = 24 * 3600 * 1000;

impl Presence {
    /// Wires cluster mode in.
    pub fn attach_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Writes this node's share of `login`'s presence if it changed.
    pub(super) async fn share(&self, login: &str) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        let share = {
            let state = self.lock();
            let share = self.local_share(&state, login);
            let before = state.shared.get(login).cloned().unwrap_or_default();
            if share == before {
                return;
            }
            share
        };
        match self
            .store
            .put_presence_share(login, cluster.node(), &share)
            .await
        {
            Ok(()) => {
                let mut state = self.lock();
                if share == PresenceShare::default() {
                    state.shared.remove(login);
                } else {
                    state.shared.insert(login.to_string(), share);
                }
            }
            // Written again at the user's next change; until then the
            // other nodes' watchers see the previous share.
            Err(e) => tracing::warn!(error = %e, login, "presence share not written"),
        }
    }

    fn local_share(&self, state: &super::State, login: &str) -> PresenceShare {
        let (devices, push) = self.local_devices(state, login);
        let newest = devices.iter().filter(|d| d.1.is_some()).max_by_key(|d| d.2);
        PresenceShare {
            online: devices.iter().any(|d| d.0),
            note: newest.and_then(|d| d.1.map(str::to_string)),
            note_at: newest.map_or(0, |d| d.2),
            push,
        }
    }

    /// Starts the cluster side of presence: empties this node's old
    /// shares, writes those of the devices it holds now, then keeps
    /// reading the other nodes' changes.
    pub fn spawn_cluster_sync(server: Arc<SipServer>) {
        tokio::spawn(async move {
            let (Some(this), Some(cluster)) = (server.presence(), server.cluster()) else {
                return;
            };
            if let Err(e) = this.store.clear_presence_shares(cluster.node()).await {
                tracing::warn!(error = %e, "old presence shares not cleared");
            }
            let logins: Vec<String> = {
                let state = this.lock();
                state
                    .publications
                    .keys()
                    .cloned()
                    .chain(this.registrar.logins())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect()
            };
            for login in logins {
                this.share(&login).await;
            }
            let mut tick = tokio::time::interval(cluster.heartbeat());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut newest = 0i64;
            let mut peers: HashSet<String> = HashSet::new();
            let mut looks = 0u64;
            loop {
                tick.tick().await;
                newest = Self::look(&server, this, cluster, newest, &mut peers).await;
                looks += 1;
                if looks.is_multiple_of(3600) {
                    let before = newest - EMPTY_SHARES_KEPT_MS;
                    if let Err(e) = this.store.purge_empty_presence_shares(before).await {
                        tracing::warn!(error = %e, "empty presence shares not purged");
                    }
                }
            }
        });
    }

    /// One look at the shares changed since `newest` (less the margin) and
    /// at which nodes are alive; notifies the watchers of the users whose
    /// document this changes. Returns the newest stamp seen.
    async fn look(
        server: &Arc<SipServer>,
        this: &Presence,
        cluster: &Cluster,
        newest: i64,
        peers: &mut HashSet<String>,
    ) -> i64 {
        let rows = match this
            .store
            .presence_shares_since(newest - LOOK_BACK_MS)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "presence shares not read");
                return newest;
            }
        };
        let mut latest = newest;
        let mut changed: HashSet<String> = HashSet::new();
        let live: HashSet<String> = cluster.peer_nodes().into_iter().collect();
        {
            let mut state = this.lock();
            for row in rows {
                latest = latest.max(row.updated_at);
                if row.node == cluster.node() {
                    continue;
                }
                let shares = state.remote.entry(row.login.clone()).or_default();
                if shares.get(&row.node) == Some(&row.share) {
                    continue;
                }
                if row.share == PresenceShare::default() {
                    shares.remove(&row.node);
                } else {
                    shares.insert(row.node.clone(), row.share);
                }
                if shares.is_empty() {
                    state.remote.remove(&row.login);
                }
                changed.insert(row.login);
            }
            // A node that died or came back changes what its shares count for.
            let moved: HashSet<&String> = live.symmetric_difference(peers).collect();
            if !moved.is_empty() {
                for (login, shares) in &state.remote {
                    if shares.keys().any(|node| moved.contains(node)) {
                        changed.insert(login.clone());
                    }
                }
            }
        }
        *peers = live;
        let now = crate::store::now_secs();
        for login in changed {
            // Another node's devices of a user this node also holds: one
            // of ours may have moved there (the same binding registered
            // again), and must stop counting here.
            if !this.registrar.bindings(&login, now).is_empty() {
                match this.store.bindings_of(&login, now).await {
                    Ok(rows) => {
                        let moved = this.registrar.forget_moved(&login, &rows);
                        if !moved.is_empty() {
                            tracing::debug!(
                                login,
                                bindings = moved.len(),
                                "device moved to another node"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, login, "bindings not read"),
                }
            }
            Self::document_changed(server, &login).await;
        }
        latest
    }
}
