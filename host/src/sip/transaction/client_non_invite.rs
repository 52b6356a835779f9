//! The non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
//!
//! ```text
//!              request sent, E = T1 (unreliable), F = 64·T1
//!   Trying ── 1xx ──> Proceeding ── 200-699 ──> Completed ── K ──> Terminated
//!     │                   │                      (K = T4 unreliable, 0 reliable)
//!     └── 200-699 ────────┼──────────────────────┘
//!     └── F or transport error (from Trying or Proceeding) ──> Terminated
//! ```

use std::time::Instant;

use super::message::encode;
use super::timer::{Backoff, after, earliest, is_due};
use super::{Action, Reliability, Timers, Transaction, TransactionError};

/// The states of Figure 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNonInviteState {
    /// The request was sent; no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; response retransmissions are absorbed.
    Completed,
    /// Over; the machine may be dropped.
    Terminated,
}

impl ClientNonInviteState {
    /// The RFC name of the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Trying => "Trying",
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Terminated => "Terminated",
        }
    }
}

/// A non-INVITE client transaction: sends one request (not ACK, not INVITE)
/// and passes its responses up.
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    reliability: Reliability,
    timers: Timers,
    /// The request as sent, kept so retransmissions are byte-identical.
    bytes: Vec<u8>,
    /// Timer E: retransmission (unreliable transports only).
    timer_e: Option<Backoff>,
    /// Timer F: the transaction timeout.
    timer_f: Option<Instant>,
    /// Timer K: how long Completed absorbs response retransmissions.
    timer_k: Option<Instant>,
}

impl ClientNonInvite {
    /// Starts the transaction: the request goes out now; Timer E is armed on
    /// unreliable transports and Timer F always (§17.1.2.2).
    pub fn new(
        request: rsip::Request,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        if matches!(request.method, rsip::Method::Invite | rsip::Method::Ack) {
            return Err(TransactionError::WrongMethod {
                machine: "non-INVITE client",
                method: request.method,
            });
        }
        let timers = timers.sanitized();
        let bytes = encode(&request);
        let timer_e = match reliability {
            Reliability::Unreliable => Backoff::start(now, timers.t1),
            Reliability::Reliable => None,
        };
        let tx = Self {
            state: ClientNonInviteState::Trying,
            reliability,
            timers,
            timer_e,
            timer_f: after(now, timers.timeout()),
            timer_k: None,
            bytes,
        };
        let actions = vec![Action::Send(tx.bytes.clone())];
        Ok((tx, actions))
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
    }

    /// Enters Completed on a final response: retransmissions stop, and the
    /// machine lingers T4 on unreliable transports to absorb retransmitted
    /// responses; on reliable ones there are none and it ends at once
    /// (§17.1.2.2).
    fn complete(&mut self, now: Instant) {
        self.timer_e = None;
        self.timer_f = None;
        if self.reliability.is_reliable() {
            self.terminate();
        } else {
            self.state = ClientNonInviteState::Completed;
            self.timer_k = after(now, self.timers.t4);
        }
    }
}

impl Transaction for ClientNonInvite {
    type State = ClientNonInviteState;

    fn on_message(&mut self, msg: rsip::SipMessage, now: Instant) -> Vec<Action> {
        let rsip::SipMessage::Response(response) = msg else {
            return Vec::new();
        };
        let code = response.status_code.code();
        match self.state {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => match code {
                100..=199 => {
                    self.state = ClientNonInviteState::Proceeding;
                    vec![Action::Deliver(response.into())]
                }
                200..=699 => {
                    self.complete(now);
                    vec![Action::Deliver(response.into())]
                }
                _ => Vec::new(),
            },
            // Completed: "buffer any additional response retransmissions"
            // (§17.1.2.2), i.e. absorb them; the TU saw the final response.
            ClientNonInviteState::Completed | ClientNonInviteState::Terminated => Vec::new(),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => {
                if is_due(self.timer_f, now) {
                    self.terminate();
                    return vec![Action::Timeout];
                }
                let Some(e) = self.timer_e.filter(|e| e.due <= now) else {
                    return Vec::new();
                };
                let t2 = self.timers.t2;
                // §17.1.2.2: in Trying the interval doubles up to T2; once a
                // provisional arrived the server is alive and T2 is used flat.
                self.timer_e = if self.state == ClientNonInviteState::Trying {
                    e.advance(now, |d| d.saturating_mul(2).min(t2))
                } else {
                    e.advance(now, |_| t2)
                };
                vec![Action::Send(self.bytes.clone())]
            }
            ClientNonInviteState::Completed => {
                if is_due(self.timer_k, now) {
                    self.terminate();
                }
                Vec::new()
            }
            ClientNonInviteState::Terminated => Vec::new(),
        }
    }

    fn on_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        if self.state == ClientNonInviteState::Terminated {
            return Vec::new();
        }
        self.terminate();
        vec![Action::TransportError]
    }

    fn next_deadline(&self) -> Option<Instant> {
        earliest([self.timer_e.map(|e| e.due), self.timer_f, self.timer_k])
    }

    fn state(&self) -> ClientNonInviteState {
        self.state
    }

    fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use ClientNonInviteState::*;

    fn start(reliability: Reliability) -> (ClientNonInvite, Instant, Vec<Action>) {
        let t0 = Instant::now();
        let (tx, actions) =
            ClientNonInvite::new(message(), reliability, Timers::default(), t0).unwrap();
        (tx, t0, actions)
    }

    #[test]
    fn sends_the_request_and_starts_in_trying() {
        let (tx, t0, actions) = start(Reliability::Unreliable);
        assert_eq!(tx.state(), Trying);
        assert_eq!(sent(&actions), vec![encode(&message())]);
        assert_eq!(tx.next_deadline(), Some(at(t0, 500)));
    }

    #[test]
    fn refuses_invite_and_ack() {
        let t0 = Instant::now();
        for r in [invite(), ack()] {
            let err = ClientNonInvite::new(r, Reliability::Unreliable, Timers::default(), t0)
                .unwrap_err();
            assert!(matches!(err, TransactionError::WrongMethod { .. }));
        }
    }

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f_times_out() {
        let (mut tx, t0, first) = start(Reliability::Unreliable);
        // Intervals 0.5, 1, 2, 4, 4, 4 … s; F at 64·T1 = 32 s.
        assert_eq!(
            send_times(&mut tx, t0, 31_999),
            vec![
                500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
            ]
        );
        assert_eq!(tx.next_deadline(), Some(at(t0, 32_000)));
        assert!(tx.on_timer(at(t0, 31_999)).is_empty());
        assert_eq!(tx.on_timer(at(t0, 32_000)), vec![Action::Timeout]);
        assert_eq!(tx.state(), Terminated);
        assert_eq!(tx.next_deadline(), None);
        // Every retransmission is the original bytes.
        let (mut again, t0, _) = start(Reliability::Unreliable);
        assert_eq!(sent(&again.on_timer(at(t0, 500))), sent(&first));
    }

    #[test]
    fn no_timer_fires_early() {
        let (mut tx, t0, _) = start(Reliability::Unreliable);
        assert!(tx.on_timer(at(t0, 499)).is_empty());
        assert_eq!(tx.next_deadline(), Some(at(t0, 500)));
    }

    #[test]
    fn provisional_moves_to_proceeding_and_e_goes_flat_at_t2() {
        let (mut tx, t0, _) = start(Reliability::Unreliable);
        assert_eq!(sent(&tx.on_timer(at(t0, 500))).len(), 1);
        let trying = response(&message(), 100, None);
        let actions = tx.on_message(trying.clone().into(), at(t0, 600));
        assert_eq!(actions, vec![Action::Deliver(trying.clone().into())]);
        assert_eq!(tx.state(), Proceeding);
        // A second provisional is also passed up.
        assert_eq!(
            delivered(&tx.on_message(trying.into(), at(t0, 700))).len(),
            1
        );
        // The firing already scheduled (1.5 s) stays; after it, every T2.
        assert_eq!(
            send_times(&mut tx, t0, 20_000),
            vec![1_500, 5_500, 9_500, 13_500, 17_500]
        );
        assert_eq!(tx.on_timer(at(t0, 32_000)), vec![Action::Timeout]);
        assert_eq!(tx.state(), Terminated);
    }

    #[test]
    fn final_response_completes_absorbs_retransmissions_then_timer_k() {
        let (mut tx, t0, _) = start(Reliability::Unreliable);
        let ok = response(&message(), 200, Some("b1"));
        let actions = tx.on_message(ok.clone().into(), at(t0, 800));
        assert_eq!(actions, vec![Action::Deliver(ok.clone().into())]);
        assert_eq!(tx.state(), Completed);
        // Retransmissions stop; K = T4 = 5 s from the final response.
        assert_eq!(tx.next_deadline(), Some(at(t0, 5_800)));
        assert!(tx.on_message(ok.into(), at(t0, 1_000)).is_empty());
        assert!(
            tx.on_message(response(&message(), 100, None).into(), at(t0, 1_100))
                .is_empty()
        );
        assert!(tx.on_timer(at(t0, 5_799)).is_empty());
        assert_eq!(tx.state(), Completed);
        assert!(tx.on_timer(at(t0, 5_800)).is_empty());
        assert_eq!(tx.state(), Terminated);
    }

    #[test]
    fn final_response_from_proceeding() {
        let (mut tx, t0, _) = start(Reliability::Unreliable);
        tx.on_message(response(&message(), 180, None).into(), at(t0, 10));
        let busy = response(&message(), 486, Some("x"));
        assert_eq!(delivered(&tx.on_message(busy.into(), at(t0, 20))).len(), 1);
        assert_eq!(tx.state(), Completed);
    }

    #[test]
    fn reliable_transport_never_retransmits_and_skips_completed() {
        let (mut tx, t0, _) = start(Reliability::Reliable);
        assert_eq!(tx.next_deadline(), Some(at(t0, 32_000)), "only Timer F");
        assert!(tx.on_timer(at(t0, 31_000)).is_empty());
        let ok = response(&message(), 200, None);
        assert_eq!(
            delivered(&tx.on_message(ok.into(), at(t0, 31_500))).len(),
            1
        );
        assert_eq!(
            tx.state(),
            Terminated,
            "Timer K is zero on reliable transports"
        );
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn reliable_timeout() {
        let (mut tx, t0, _) = start(Reliability::Reliable);
        assert_eq!(tx.on_timer(at(t0, 32_000)), vec![Action::Timeout]);
        assert!(tx.is_terminated());
    }

    #[test]
    fn late_timer_sends_once_and_timeout_wins() {
        let (mut tx, t0, _) = start(Reliability::Unreliable);
        // The glue wakes up at 10 s instead of 0.5 s: one retransmission.
        assert_eq!(sent(&tx.on_timer(at(t0, 10_000))).len(), 1);
        assert_eq!(tx.next_deadline(), Some(at(t0, 11_500)));
        // Waking up after F: the timeout, no pointless retransmission.
        assert_eq!(tx.on_timer(at(t0, 40_000)), vec![Action::Timeout]);
    }

    #[test]
    fn transport_error_terminates_and_informs_the_tu() {
        let (mut tx, t0, _) = start(Reliability::Unreliable);
        assert_eq!(
            tx.on_transport_error(at(t0, 1)),
            vec![Action::TransportError]
        );
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        assert!(tx.on_transport_error(at(t0, 2)).is_empty());
        assert!(
            tx.on_message(response(&message(), 200, None).into(), at(t0, 3))
                .is_empty()
        );
    }

    #[test]
    fn requests_and_bogus_codes_are_ignored() {
        let (mut tx, t0, _) = start(Reliability::Unreliable);
        assert!(tx.on_message(message().into(), at(t0, 1)).is_empty());
        let mut weird = response(&message(), 200, None);
        weird.status_code = rsip::StatusCode::Other(700, "Nope".into());
        assert!(tx.on_message(weird.into(), at(t0, 2)).is_empty());
        assert_eq!(tx.state(), Trying);
    }
}
