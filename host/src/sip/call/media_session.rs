//! A call's media on the relay: the streams opened for its m-lines and the
//! SDP rewriting that points each side at them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::{Side, Stream};

use super::MediaSettings;
use crate::sip::sdp::{self, RelayPorts, Rewrite};

/// Shared by the call's task and the tasks that relay its in-dialog
/// requests (their answers carry SDP too).
pub(super) type SharedMedia = Arc<Mutex<CallMedia>>;

pub(super) struct CallMedia {
    settings: Option<MediaSettings>,
    /// Chosen by the first SDP of the call and kept for its re-offers.
    how: Option<Rewrite>,
    /// By m-line index; `None` where the m-line was rejected or no port
    /// was free.
    streams: Vec<Option<Stream>>,
    closed: bool,
}

impl CallMedia {
    pub(super) fn shared(settings: Option<MediaSettings>) -> SharedMedia {
        Arc::new(Mutex::new(CallMedia {
            settings,
            how: None,
            streams: Vec::new(),
            closed: false,
        }))
    }

    /// `body`, sent by `from`, as the other side gets it. `offnet` calls
    /// (a gateway on either side) are always anchored: a carrier never sees
    /// a handset's address, nor ICE it would not use.
    pub(super) fn rewrite(&mut self, body: &[u8], from: Side, offnet: bool) -> Vec<u8> {
        let Some(settings) = self.settings.clone() else {
            return body.to_vec();
        };
        let Some(summary) = (!self.closed).then(|| sdp::inspect(body)).flatten() else {
            return body.to_vec();
        };
        let how = *self.how.get_or_insert(if offnet || !summary.ice {
            Rewrite::Anchor
        } else {
            Rewrite::AddRelayCandidate
        });
        if how == Rewrite::AddRelayCandidate && !summary.ice {
            // The other side answered without ICE: the offerer falls back to
            // plain addresses, which the relay does not sit between.
            return body.to_vec();
        }
        let toward = from.other();
        let mut ports = Vec::with_capacity(summary.media.len());
        for (i, m) in summary.media.iter().enumerate() {
            if self.streams.len() <= i {
                self.streams.resize_with(i + 1, || None);
            }
            // A rejected stream, or one the phone already relays through its
            // own TURN server (SPEC §9: the switch adds its relay candidate
            // only when none is there).
            if m.port == 0 || (how == Rewrite::AddRelayCandidate && m.has_relay_candidate) {
                ports.push(None);
                continue;
            }
            if self.streams[i].is_none() {
                match settings.relay.open() {
                    Ok(s) => self.streams[i] = Some(s),
                    Err(e) => {
                        // The call still connects; this stream goes direct.
                        tracing::warn!(error = %e, "no relay port for a media stream");
                    }
                }
            }
            let Some(stream) = &self.streams[i] else {
                ports.push(None);
                continue;
            };
            if how == Rewrite::AddRelayCandidate
                && let Some(ice) = &m.ice
            {
                stream.set_ice(from, ice.clone());
            }
            if let Some(ip) = m.addr.filter(|ip| !ip.is_unspecified()) {
                stream.announce(
                    from,
                    SocketAddr::new(ip, m.port),
                    SocketAddr::new(ip, m.rtcp_port),
                );
            }
            ports.push(Some(RelayPorts {
                rtp: stream.rtp_port(toward),
                rtcp: stream.rtcp_port(toward),
            }));
        }
        sdp::rewrite(body, how, settings.advertised, &ports)
    }

    /// Closes every stream (the call is over): ports go back at once.
    pub(super) fn close(&mut self) {
        self.closed = true;
        self.streams.clear();
    }

    /// Whether streams are open and all have been silent for the configured
    /// time.
    pub(super) fn silent(&self) -> bool {
        let Some(settings) = &self.settings else {
            return false;
        };
        let mut open = self.streams.iter().flatten().peekable();
        !settings.silence.is_zero()
            && open.peek().is_some()
            && open.all(|s| s.idle() >= settings.silence)
    }

    /// How often silence is looked for.
    pub(super) fn silence_check(&self) -> Option<Duration> {
        let s = self.settings.as_ref()?.silence;
        (!s.is_zero() && self.streams.iter().any(Option::is_some))
            .then(|| (s / 4).max(Duration::from_millis(250)))
    }
}
