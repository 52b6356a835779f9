//! The non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
//!
//! ```text
//!            request passed to the TU
//!   Trying ── 1xx from TU ──> Proceeding ── 200-699 from TU ──> Completed ── J ──> Terminated
//!     └── 200-699 from TU ────────────────────────────────────────┘
//!                     (J = 64·T1 unreliable, 0 reliable)
//! ```
//!
//! Retransmitted requests never reach the TU: in Trying they are absorbed
//! (nothing has been said yet), afterwards the last response is sent again.
//! That is what makes a retransmitted MESSAGE harmless: it is answered with
//! the same bytes and is not delivered twice.

use std::time::Instant;

use super::message::encode;
use super::timer::{after, earliest, is_due};
use super::{Action, Linger, Reliability, Timers, Transaction, TransactionError};

/// The states of Figure 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerNonInviteState {
    /// The request was passed to the TU, which has not answered yet.
    Trying,
    /// The TU sent a provisional response.
    Proceeding,
    /// The TU sent a final response; request retransmissions get it again.
    Completed,
    /// Over; the machine may be dropped.
    Terminated,
}

impl ServerNonInviteState {
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

/// A non-INVITE server transaction.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliability: Reliability,
    timers: Timers,
    /// The request's method: all a retransmission is matched on. The request
    /// itself goes to the TU; keeping it for Timer J's 32 s held a copy of
    /// every request in memory.
    method: rsip::Method,
    /// The last response sent, as bytes, for retransmitted requests.
    last_response: Option<Vec<u8>>,
    /// Timer J: how long Completed answers retransmitted requests.
    timer_j: Option<Instant>,
}

impl ServerNonInvite {
    /// Starts the transaction for a request that matched no existing one
    /// (§17.2.3) and passes it to the TU.
    pub fn new(
        request: rsip::Request,
        reliability: Reliability,
        timers: Timers,
        _now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        if matches!(request.method, rsip::Method::Invite | rsip::Method::Ack) {
            return Err(TransactionError::WrongMethod {
                machine: "non-INVITE server",
                method: request.method,
            });
        }
        let tx = Self {
            state: ServerNonInviteState::Trying,
            reliability,
            timers: timers.sanitized(),
            method: request.method,
            last_response: None,
            timer_j: None,
        };
        Ok((tx, vec![Action::Deliver(request.into())]))
    }

    /// The TU answers: the response is sent; a provisional one moves the
    /// machine to Proceeding, a final one to Completed (§17.2.2).
    ///
    /// Once a final response was sent, further responses are refused: "any
    /// other final responses passed by the TU to the server transaction MUST
    /// be discarded" (§17.2.2), and a provisional after a final is
    /// meaningless.
    pub fn on_tu_response(
        &mut self,
        response: rsip::Response,
        now: Instant,
    ) -> Result<Vec<Action>, TransactionError> {
        let code = response.status_code.code();
        if !(100..=699).contains(&code) {
            return Err(TransactionError::InvalidStatus(code));
        }
        match self.state {
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding => {}
            state @ (ServerNonInviteState::Completed | ServerNonInviteState::Terminated) => {
                return Err(TransactionError::ResponseNotAllowed {
                    status: code,
                    state: state.name(),
                });
            }
        }
        let bytes = encode(&response);
        if code < 200 {
            self.state = ServerNonInviteState::Proceeding;
        } else if self.reliability.is_reliable() {
            // Timer J is zero: no request retransmissions will come.
            self.state = ServerNonInviteState::Terminated;
        } else {
            // §17.2.2: J = 64·T1 outlasts the client's Timer F, so every
            // retransmission the client can still send is answered.
            self.state = ServerNonInviteState::Completed;
            self.timer_j = after(now, self.timers.timeout());
        }
        self.last_response = Some(bytes.clone());
        Ok(vec![Action::Send(bytes)])
    }
}

impl ServerNonInvite {
    /// In Completed, all that is left is resending the final response to
    /// retransmitted requests until Timer J: that job is handed out (the
    /// machine is Terminated afterwards).
    pub fn linger(&mut self) -> Option<Linger> {
        let until = self
            .timer_j
            .filter(|_| self.state == ServerNonInviteState::Completed)?;
        self.state = ServerNonInviteState::Terminated;
        self.timer_j = None;
        Some(Linger {
            resend: self.last_response.take(),
            until,
            ack_to_dialog: false,
        })
    }
}

impl Transaction for ServerNonInvite {
    type State = ServerNonInviteState;

    fn on_message(&mut self, msg: rsip::SipMessage, _now: Instant) -> Vec<Action> {
        let rsip::SipMessage::Request(request) = msg else {
            return Vec::new();
        };
        if request.method != self.method {
            return Vec::new();
        }
        match self.state {
            // §17.2.2: in Trying, retransmissions are discarded; the TU has
            // the request and will answer once.
            ServerNonInviteState::Trying | ServerNonInviteState::Terminated => Vec::new(),
            // In Proceeding the last provisional, in Completed the final
            // response, goes out again, byte for byte.
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => self
                .last_response
                .iter()
                .cloned()
                .map(Action::Send)
                .collect(),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        if self.state == ServerNonInviteState::Completed && is_due(self.timer_j, now) {
            self.state = ServerNonInviteState::Terminated;
            self.timer_j = None;
        }
        Vec::new()
    }

    fn on_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        if self.state == ServerNonInviteState::Terminated {
            return Vec::new();
        }
        // §17.2.4: the response could not be sent; the TU learns of it.
        self.state = ServerNonInviteState::Terminated;
        self.timer_j = None;
        vec![Action::TransportError]
    }

    fn next_deadline(&self) -> Option<Instant> {
        earliest([self.timer_j])
    }

    fn state(&self) -> ServerNonInviteState {
        self.state
    }

    fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use ServerNonInviteState::*;

    fn start(reliability: Reliability) -> (ServerNonInvite, Instant) {
        let t0 = Instant::now();
        let (tx, actions) =
            ServerNonInvite::new(message(), reliability, Timers::default(), t0).unwrap();
        assert_eq!(actions, vec![Action::Deliver(message().into())]);
        (tx, t0)
    }

    #[test]
    fn starts_in_trying_and_absorbs_retransmissions() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        assert_eq!(tx.state(), Trying);
        assert_eq!(tx.next_deadline(), None);
        assert!(tx.on_message(message().into(), at(t0, 500)).is_empty());
        assert_eq!(tx.state(), Trying);
    }

    #[test]
    fn refuses_invite_and_ack() {
        let t0 = Instant::now();
        for r in [invite(), ack()] {
            assert!(matches!(
                ServerNonInvite::new(r, Reliability::Unreliable, Timers::default(), t0),
                Err(TransactionError::WrongMethod { .. })
            ));
        }
    }

    #[test]
    fn provisional_then_retransmission_resends_it() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        let trying = response(&message(), 100, None);
        let actions = tx.on_tu_response(trying.clone(), at(t0, 10)).unwrap();
        assert_eq!(actions, vec![Action::Send(encode(&trying))]);
        assert_eq!(tx.state(), Proceeding);
        assert_eq!(tx.on_message(message().into(), at(t0, 500)), actions);
    }

    #[test]
    fn retransmitted_message_gets_the_same_final_bytes_and_no_second_delivery() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        let accepted = response(&message(), 202, Some("srv"));
        let first = tx.on_tu_response(accepted, at(t0, 20)).unwrap();
        assert_eq!(sent_status(&first), 202);
        assert_eq!(tx.state(), Completed);
        for n in [500, 1_500, 3_500] {
            let again = tx.on_message(message().into(), at(t0, n));
            assert_eq!(again, first, "same bytes, and no Deliver");
        }
        // Timer J = 64·T1 after the final response.
        assert_eq!(tx.next_deadline(), Some(at(t0, 32_020)));
        assert!(tx.on_timer(at(t0, 32_019)).is_empty());
        assert_eq!(tx.state(), Completed);
        assert!(tx.on_timer(at(t0, 32_020)).is_empty());
        assert_eq!(tx.state(), Terminated);
        assert!(tx.on_message(message().into(), at(t0, 32_100)).is_empty());
    }

    #[test]
    fn completed_hands_out_its_final_response_until_timer_j() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        assert_eq!(tx.linger(), None, "Trying still waits for the TU");
        let first = tx
            .on_tu_response(response(&message(), 202, Some("srv")), at(t0, 20))
            .unwrap();
        let linger = tx.linger().expect("Completed lingers");
        assert_eq!(Some(linger.resend.unwrap()), sent(&first).pop());
        assert_eq!(linger.until, at(t0, 32_020));
        assert!(!linger.ack_to_dialog);
        assert_eq!(tx.state(), Terminated);
        assert_eq!(tx.linger(), None);
    }

    #[test]
    fn final_after_provisional() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_tu_response(response(&message(), 100, None), at(t0, 1))
            .unwrap();
        tx.on_tu_response(response(&message(), 180, None), at(t0, 2))
            .unwrap();
        let last = tx
            .on_tu_response(response(&message(), 404, Some("t")), at(t0, 3))
            .unwrap();
        assert_eq!(sent_status(&last), 404);
        assert_eq!(tx.state(), Completed);
        assert_eq!(tx.on_message(message().into(), at(t0, 4)), last);
    }

    #[test]
    fn nothing_is_sent_after_the_final_response() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_tu_response(response(&message(), 200, Some("t")), at(t0, 1))
            .unwrap();
        let err = tx
            .on_tu_response(response(&message(), 500, Some("t")), at(t0, 2))
            .unwrap_err();
        assert_eq!(
            err,
            TransactionError::ResponseNotAllowed {
                status: 500,
                state: "Completed"
            }
        );
        assert!(
            tx.on_tu_response(response(&message(), 180, None), at(t0, 3))
                .is_err()
        );
    }

    #[test]
    fn invalid_status_is_refused() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        let mut r = response(&message(), 200, None);
        r.status_code = rsip::StatusCode::Other(99, "Odd".into());
        assert_eq!(
            tx.on_tu_response(r, at(t0, 1)),
            Err(TransactionError::InvalidStatus(99))
        );
        assert_eq!(tx.state(), Trying);
    }

    #[test]
    fn reliable_transport_terminates_on_the_final_response() {
        let (mut tx, t0) = start(Reliability::Reliable);
        let actions = tx
            .on_tu_response(response(&message(), 200, Some("t")), at(t0, 5))
            .unwrap();
        assert_eq!(sent_status(&actions), 200);
        assert_eq!(
            tx.state(),
            Terminated,
            "Timer J is zero on reliable transports"
        );
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn transport_error_terminates_and_informs_the_tu() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_tu_response(response(&message(), 200, Some("t")), at(t0, 1))
            .unwrap();
        assert_eq!(
            tx.on_transport_error(at(t0, 2)),
            vec![Action::TransportError]
        );
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        assert!(tx.on_transport_error(at(t0, 3)).is_empty());
    }

    #[test]
    fn responses_and_other_methods_are_ignored() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_tu_response(response(&message(), 200, Some("t")), at(t0, 1))
            .unwrap();
        assert!(
            tx.on_message(response(&message(), 200, None).into(), at(t0, 2))
                .is_empty()
        );
        let mut other = message();
        other.method = rsip::Method::Options;
        assert!(tx.on_message(other.into(), at(t0, 3)).is_empty());
    }
}
