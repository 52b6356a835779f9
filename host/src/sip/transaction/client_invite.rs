//! The INVITE client transaction (RFC 3261 §17.1.1, Figure 5, as amended by
//! RFC 6026 with the Accepted state).
//!
//! ```text
//!            INVITE sent, A = T1 (unreliable), B = 64·T1
//!   Calling ── 1xx ──> Proceeding
//!     │                   │
//!     ├── 300-699 ────────┼──> Completed: ACK sent, D = max(32 s, 64·T1) unreliable / 0 reliable
//!     ├── 2xx ────────────┴──> Accepted: 2xx to TU, M = 64·T1 (RFC 6026)
//!     └── B or transport error ──> Terminated (TU informed)
//! ```
//!
//! Accepted exists because a 2xx may be retransmitted by the UAS and, when
//! the INVITE forked, several UASs may answer 2xx. Before RFC 6026 the
//! transaction vanished on the first 2xx and the rest arrived as strays; now
//! the transaction stays for 64·T1 and passes every 2xx up, so the TU can ACK
//! (or ACK and BYE) each dialog.

use std::time::{Duration, Instant};

use super::message::{AckTemplate, encode};
use super::timer::{Backoff, after, earliest, is_due};
use super::{Action, Reliability, Timers, Transaction, TransactionError};

/// How long Completed waits for retransmitted final responses on unreliable
/// transports (§17.1.1.2: Timer D "at least 32 seconds").
///
/// 32 s is 64·T1 with the default T1, the time the server's Timer H keeps
/// retransmitting; when an operator raises T1 the server side does too, so
/// Timer D follows 64·T1 when that is longer.
const TIMER_D_MIN: Duration = Duration::from_secs(32);

/// The states of Figure 5 plus RFC 6026's Accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientInviteState {
    /// The INVITE was sent; no response yet.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A non-2xx final response arrived and was acknowledged.
    Completed,
    /// A 2xx arrived (RFC 6026); further 2xx responses are passed up.
    Accepted,
    /// Over; the machine may be dropped.
    Terminated,
}

impl ClientInviteState {
    /// The RFC name of the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Calling => "Calling",
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Accepted => "Accepted",
            Self::Terminated => "Terminated",
        }
    }
}

/// An INVITE client transaction.
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    reliability: Reliability,
    timers: Timers,
    /// The INVITE as sent, kept so retransmissions are byte-identical.
    bytes: Vec<u8>,
    /// What the ACK for a non-2xx is built from (§17.1.1.3); boxed because it
    /// is only read once per transaction and would double the machine's size.
    ack_template: Box<AckTemplate>,
    /// The ACK sent in Completed, resent for each retransmitted final
    /// response.
    ack: Option<Vec<u8>>,
    /// Timer A: INVITE retransmission (unreliable transports only).
    timer_a: Option<Backoff>,
    /// Timer B: the transaction timeout, only while Calling.
    timer_b: Option<Instant>,
    /// Timer D: how long Completed absorbs final-response retransmissions.
    timer_d: Option<Instant>,
    /// Timer M: how long Accepted passes extra 2xx responses up (RFC 6026).
    timer_m: Option<Instant>,
}

impl ClientInvite {
    /// Starts the transaction: the INVITE goes out now; Timer A is armed on
    /// unreliable transports and Timer B always (§17.1.1.2).
    ///
    /// The request must have the headers the ACK of §17.1.1.3 is built from
    /// (Via, From, To, Call-ID, CSeq); checking now means a response can never
    /// find the transaction unable to acknowledge it.
    pub fn new(
        request: rsip::Request,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        if request.method != rsip::Method::Invite {
            return Err(TransactionError::WrongMethod {
                machine: "INVITE client",
                method: request.method,
            });
        }
        let ack_template =
            Box::new(AckTemplate::new(&request).map_err(TransactionError::MissingHeader)?);
        let timers = timers.sanitized();
        let bytes = encode(&request);
        let timer_a = match reliability {
            Reliability::Unreliable => Backoff::start(now, timers.t1),
            Reliability::Reliable => None,
        };
        let tx = Self {
            state: ClientInviteState::Calling,
            reliability,
            timers,
            ack_template,
            ack: None,
            timer_a,
            timer_b: after(now, timers.timeout()),
            timer_d: None,
            timer_m: None,
            bytes,
        };
        let actions = vec![Action::Send(tx.bytes.clone())];
        Ok((tx, actions))
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.timer_m = None;
    }

    /// Calling or Proceeding receives 300-699: ACK it, pass it up, and linger
    /// in Completed to re-ACK retransmissions (§17.1.1.2); on a reliable
    /// transport there are none, so Timer D is zero.
    fn complete(&mut self, response: rsip::Response, now: Instant) -> Vec<Action> {
        let ack = encode(&self.ack_template.ack_for(&response));
        self.timer_a = None;
        self.timer_b = None;
        if self.reliability.is_reliable() {
            self.terminate();
        } else {
            self.state = ClientInviteState::Completed;
            self.timer_d = after(now, TIMER_D_MIN.max(self.timers.timeout()));
        }
        let actions = vec![Action::Send(ack.clone()), Action::Deliver(response.into())];
        self.ack = Some(ack);
        actions
    }

    /// Calling or Proceeding receives a 2xx: pass it up and enter Accepted for
    /// 64·T1 (RFC 6026). The transaction sends no ACK for a 2xx: that ACK
    /// belongs to the dialog and is the TU's (§13.2.2.4).
    fn accept(&mut self, response: rsip::Response, now: Instant) -> Vec<Action> {
        self.state = ClientInviteState::Accepted;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_m = after(now, self.timers.timeout());
        vec![Action::Deliver(response.into())]
    }
}

impl Transaction for ClientInvite {
    type State = ClientInviteState;

    fn on_message(&mut self, msg: rsip::SipMessage, now: Instant) -> Vec<Action> {
        let rsip::SipMessage::Response(response) = msg else {
            return Vec::new();
        };
        let code = response.status_code.code();
        match (self.state, code) {
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 100..=199) => {
                // §17.1.1.2: a provisional response stops retransmissions,
                // and with them Timer B; how long to ring is the TU's call
                // (Expires, CANCEL).
                self.state = ClientInviteState::Proceeding;
                self.timer_a = None;
                self.timer_b = None;
                vec![Action::Deliver(response.into())]
            }
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 200..=299) => {
                self.accept(response, now)
            }
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 300..=699) => {
                self.complete(response, now)
            }
            // §17.1.1.2: a retransmitted final response is re-ACKed and not
            // passed up again.
            (ClientInviteState::Completed, 300..=699) => {
                self.ack.iter().cloned().map(Action::Send).collect()
            }
            // RFC 6026: in Accepted every 2xx (a retransmission or another
            // fork's answer) goes to the TU, which ACKs each dialog.
            (ClientInviteState::Accepted, 200..=299) => vec![Action::Deliver(response.into())],
            // A 2xx after a non-2xx final cannot come from a well-behaved
            // proxy, but if it does, a UAS is now holding a session: the TU
            // should see it to ACK and BYE it rather than leave it to time out.
            (ClientInviteState::Completed, 200..=299) => vec![Action::Deliver(response.into())],
            _ => Vec::new(),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            ClientInviteState::Calling => {
                if is_due(self.timer_b, now) {
                    self.terminate();
                    return vec![Action::Timeout];
                }
                let Some(a) = self.timer_a.filter(|a| a.due <= now) else {
                    return Vec::new();
                };
                // §17.1.1.2: Timer A doubles each time, with no T2 cap; Timer
                // B ends it after about 6 retransmissions with default T1.
                self.timer_a = a.advance(now, |d| d.saturating_mul(2));
                vec![Action::Send(self.bytes.clone())]
            }
            ClientInviteState::Completed => {
                if is_due(self.timer_d, now) {
                    self.terminate();
                }
                Vec::new()
            }
            ClientInviteState::Accepted => {
                if is_due(self.timer_m, now) {
                    self.terminate();
                }
                Vec::new()
            }
            ClientInviteState::Proceeding | ClientInviteState::Terminated => Vec::new(),
        }
    }

    fn on_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        if self.state == ClientInviteState::Terminated {
            return Vec::new();
        }
        self.terminate();
        vec![Action::TransportError]
    }

    fn next_deadline(&self) -> Option<Instant> {
        earliest([
            self.timer_a.map(|a| a.due),
            self.timer_b,
            self.timer_d,
            self.timer_m,
        ])
    }

    fn state(&self) -> ClientInviteState {
        self.state
    }

    fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::{Name, first, top_via};
    use super::super::testutil::*;
    use super::*;
    use ClientInviteState::*;

    fn start(reliability: Reliability) -> (ClientInvite, Instant) {
        let t0 = Instant::now();
        let (tx, actions) =
            ClientInvite::new(invite(), reliability, Timers::default(), t0).unwrap();
        assert_eq!(sent(&actions), vec![encode(&invite())]);
        (tx, t0)
    }

    fn parse_request(bytes: &[u8]) -> rsip::Request {
        rsip::Request::try_from(bytes.to_vec()).expect("ACK parses")
    }

    #[test]
    fn starts_in_calling_with_timers_a_and_b() {
        let (tx, t0) = start(Reliability::Unreliable);
        assert_eq!(tx.state(), Calling);
        assert_eq!(tx.next_deadline(), Some(at(t0, 500)));
    }

    #[test]
    fn refuses_other_methods_and_incomplete_requests() {
        let t0 = Instant::now();
        let err = ClientInvite::new(message(), Reliability::Unreliable, Timers::default(), t0)
            .unwrap_err();
        assert!(matches!(err, TransactionError::WrongMethod { .. }));
        let mut no_from = invite();
        no_from.headers.retain(|h| !Name::From.is(h));
        let err =
            ClientInvite::new(no_from, Reliability::Unreliable, Timers::default(), t0).unwrap_err();
        assert_eq!(err, TransactionError::MissingHeader("From"));
    }

    #[test]
    fn timer_a_doubles_without_cap_until_timer_b() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        // Intervals 0.5, 1, 2, 4, 8, 16 s: no T2 cap for INVITE.
        assert_eq!(
            send_times(&mut tx, t0, 31_999),
            vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]
        );
        assert_eq!(tx.next_deadline(), Some(at(t0, 32_000)));
        assert_eq!(tx.on_timer(at(t0, 32_000)), vec![Action::Timeout]);
        assert_eq!(tx.state(), Terminated);
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn retransmissions_are_the_original_bytes() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        assert_eq!(sent(&tx.on_timer(at(t0, 500))), vec![encode(&invite())]);
    }

    #[test]
    fn provisional_stops_retransmission_and_timer_b() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        let ringing = response(&invite(), 180, Some("b"));
        let actions = tx.on_message(ringing.clone().into(), at(t0, 300));
        assert_eq!(actions, vec![Action::Deliver(ringing.clone().into())]);
        assert_eq!(tx.state(), Proceeding);
        assert_eq!(tx.next_deadline(), None);
        assert!(tx.on_timer(at(t0, 60_000)).is_empty());
        assert_eq!(
            delivered(&tx.on_message(ringing.into(), at(t0, 400))).len(),
            1
        );
        assert_eq!(tx.state(), Proceeding);
    }

    #[test]
    fn busy_here_is_acked_per_17_1_1_3() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_message(response(&invite(), 100, None).into(), at(t0, 100));
        let busy = response(&invite(), 486, Some("a6c85cf"));
        let actions = tx.on_message(busy.clone().into(), at(t0, 2_000));
        assert_eq!(tx.state(), Completed);
        assert_eq!(delivered(&actions), vec![busy.clone().into()]);
        let acks = sent(&actions);
        assert_eq!(acks.len(), 1);
        let ack = parse_request(&acks[0]);
        let inv = invite();

        assert_eq!(ack.method, rsip::Method::Ack);
        assert_eq!(ack.uri, inv.uri, "same Request-URI");
        let vias: Vec<_> = ack.headers.iter().filter(|h| Name::Via.is(h)).collect();
        assert_eq!(vias.len(), 1, "the INVITE's top Via only");
        assert_eq!(
            top_via(&ack.headers).unwrap().raw,
            top_via(&inv.headers).unwrap().raw,
            "same branch and sent-by"
        );
        assert_eq!(
            first(&ack.headers, Name::To),
            Some("Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"),
            "To from the response, with its tag"
        );
        for name in [Name::From, Name::CallId] {
            assert_eq!(first(&ack.headers, name), first(&inv.headers, name));
        }
        assert_eq!(first(&ack.headers, Name::CSeq), Some("314159 ACK"));
        let routes: Vec<_> = ack
            .headers
            .iter()
            .filter_map(|h| Name::Route.value_of(h))
            .collect();
        assert_eq!(
            routes,
            vec!["<sip:proxy1.example.com;lr>", "<sip:proxy2.example.com;lr>"]
        );
        assert!(ack.body.is_empty());
        assert!(
            ack.headers
                .iter()
                .any(|h| h.to_string() == "Content-Length: 0")
        );
        assert!(
            ack.headers
                .iter()
                .any(|h| h.to_string() == "Max-Forwards: 70")
        );

        // Retransmitted 486: the same ACK again, nothing for the TU.
        let again = tx.on_message(busy.into(), at(t0, 2_500));
        assert_eq!(again, vec![Action::Send(acks[0].clone())]);

        // Timer D = 32 s after entering Completed.
        assert_eq!(tx.next_deadline(), Some(at(t0, 34_000)));
        assert!(tx.on_timer(at(t0, 33_999)).is_empty());
        assert_eq!(tx.state(), Completed);
        assert!(tx.on_timer(at(t0, 34_000)).is_empty());
        assert_eq!(tx.state(), Terminated);
    }

    #[test]
    fn final_response_in_calling_stops_timers_a_and_b() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        let actions = tx.on_message(response(&invite(), 503, Some("z")).into(), at(t0, 700));
        assert_eq!(sent(&actions).len(), 1);
        assert_eq!(tx.state(), Completed);
        assert_eq!(tx.next_deadline(), Some(at(t0, 32_700)), "only Timer D");
        assert!(
            tx.on_message(response(&invite(), 180, None).into(), at(t0, 800))
                .is_empty()
        );
    }

    #[test]
    fn timer_d_follows_a_raised_t1() {
        let t0 = Instant::now();
        let timers = Timers {
            t1: ms(1_000),
            ..Timers::default()
        };
        let (mut tx, _) = ClientInvite::new(invite(), Reliability::Unreliable, timers, t0).unwrap();
        tx.on_message(response(&invite(), 404, Some("q")).into(), t0);
        assert_eq!(tx.next_deadline(), Some(at(t0, 64_000)));
    }

    #[test]
    fn reliable_transport_acks_and_terminates_at_once() {
        let (mut tx, t0) = start(Reliability::Reliable);
        assert_eq!(
            tx.next_deadline(),
            Some(at(t0, 32_000)),
            "Timer B only, no A"
        );
        let actions = tx.on_message(response(&invite(), 486, Some("t")).into(), at(t0, 900));
        assert_eq!(sent(&actions).len(), 1, "the ACK still goes out");
        assert_eq!(delivered(&actions).len(), 1);
        assert_eq!(
            tx.state(),
            Terminated,
            "Timer D is zero on reliable transports"
        );
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn reliable_timer_b() {
        let (mut tx, t0) = start(Reliability::Reliable);
        assert!(tx.on_timer(at(t0, 31_999)).is_empty());
        assert_eq!(tx.on_timer(at(t0, 32_000)), vec![Action::Timeout]);
    }

    #[test]
    fn two_hundred_enters_accepted_and_later_2xx_go_to_the_tu() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_message(response(&invite(), 180, Some("b1")).into(), at(t0, 100));
        let ok = response(&invite(), 200, Some("b1"));
        let actions = tx.on_message(ok.clone().into(), at(t0, 5_000));
        assert_eq!(
            actions,
            vec![Action::Deliver(ok.clone().into())],
            "no ACK: the TU's job"
        );
        assert_eq!(tx.state(), Accepted);
        assert_eq!(tx.next_deadline(), Some(at(t0, 37_000)), "Timer M = 64·T1");

        // A retransmission and another fork's 2xx are both passed up.
        assert_eq!(
            tx.on_message(ok.into(), at(t0, 5_500)),
            vec![Action::Deliver(response(&invite(), 200, Some("b1")).into())]
        );
        let other_fork = response(&invite(), 200, Some("b2"));
        assert_eq!(
            delivered(&tx.on_message(other_fork.into(), at(t0, 6_000))).len(),
            1
        );
        // Late provisional and non-2xx finals are dropped.
        assert!(
            tx.on_message(response(&invite(), 180, Some("b3")).into(), at(t0, 6_100))
                .is_empty()
        );
        assert!(
            tx.on_message(response(&invite(), 486, Some("b4")).into(), at(t0, 6_200))
                .is_empty()
        );

        assert!(tx.on_timer(at(t0, 36_999)).is_empty());
        assert_eq!(tx.state(), Accepted);
        assert!(tx.on_timer(at(t0, 37_000)).is_empty());
        assert_eq!(tx.state(), Terminated);
    }

    #[test]
    fn two_hundred_in_calling_and_on_reliable_transport() {
        let (mut tx, t0) = start(Reliability::Reliable);
        let ok = response(&invite(), 200, Some("b1"));
        assert_eq!(delivered(&tx.on_message(ok.into(), at(t0, 50))).len(), 1);
        // Accepted lasts 64·T1 on every transport: it guards against forks
        // and 2xx retransmissions, not against datagram loss.
        assert_eq!(tx.state(), Accepted);
        assert_eq!(tx.next_deadline(), Some(at(t0, 32_050)));
    }

    #[test]
    fn late_2xx_after_a_failure_is_still_shown_to_the_tu() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_message(response(&invite(), 480, Some("a")).into(), at(t0, 10));
        let ok = response(&invite(), 200, Some("b"));
        assert_eq!(delivered(&tx.on_message(ok.into(), at(t0, 20))).len(), 1);
        assert_eq!(tx.state(), Completed);
    }

    #[test]
    fn transport_error_in_calling_and_completed() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        assert_eq!(
            tx.on_transport_error(at(t0, 1)),
            vec![Action::TransportError]
        );
        assert!(tx.is_terminated());
        assert!(tx.on_transport_error(at(t0, 2)).is_empty());

        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_message(response(&invite(), 486, Some("a")).into(), at(t0, 10));
        assert_eq!(
            tx.on_transport_error(at(t0, 11)),
            vec![Action::TransportError]
        );
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn requests_are_ignored() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        assert!(tx.on_message(invite().into(), at(t0, 1)).is_empty());
        assert_eq!(tx.state(), Calling);
    }
}
