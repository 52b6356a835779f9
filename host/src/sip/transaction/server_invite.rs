//! The INVITE server transaction (RFC 3261 §17.2.1, Figure 7, as amended by
//! RFC 6026 with the Accepted state).
//!
//! ```text
//!               INVITE passed to the TU; 100 Trying after 200 ms if the TU is silent
//!   Proceeding ── 300-699 from TU ──> Completed: G = T1 (unreliable), H = 64·T1
//!       │                                │ ACK
//!       │                                v
//!       │                            Confirmed ── I (T4 unreliable, 0 reliable) ──> Terminated
//!       └── 2xx from TU ──> Accepted ── L = 64·T1 ──> Terminated   (RFC 6026)
//!   Completed ── H (no ACK) ──> Terminated, TU told (Action::Timeout)
//! ```
//!
//! Accepted exists so that retransmissions of an INVITE that was answered
//! 2xx are absorbed here instead of looking like a new INVITE to the TU, and
//! so that an ACK sent with the INVITE's branch (a client bug, but common)
//! still reaches the TU. Retransmitting the 2xx stays the TU's job
//! (§13.3.1.4); it passes the retransmissions through
//! [`ServerInvite::on_tu_response`], which sends them while Accepted lasts.

use std::time::{Duration, Instant};

use super::message::{encode, trying, trying_source};
use super::timer::{Backoff, after, earliest, is_due};
use super::{Action, Linger, Reliability, Timers, Transaction, TransactionError};

/// How long the transaction waits for the TU's first response before it
/// sends 100 Trying itself. §17.2.1 asks for a 100 "if there's any chance
/// the TU will not generate a provisional response within 200 ms"; waiting
/// exactly that long lets a fast TU's 180 or final response go out alone and
/// still stops the client's Timer A before its first firing at T1 = 500 ms.
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// The states of Figure 7 plus RFC 6026's Accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerInviteState {
    /// The INVITE was passed to the TU; provisional responses may be sent.
    Proceeding,
    /// A 300-699 was sent; it is retransmitted until the ACK arrives.
    Completed,
    /// The ACK arrived; further ACKs are absorbed.
    Confirmed,
    /// A 2xx was sent (RFC 6026); INVITE retransmissions are absorbed.
    Accepted,
    /// Over; the machine may be dropped.
    Terminated,
}

impl ServerInviteState {
    /// The RFC name of the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Confirmed => "Confirmed",
            Self::Accepted => "Accepted",
            Self::Terminated => "Terminated",
        }
    }
}

/// An INVITE server transaction.
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliability: Reliability,
    timers: Timers,
    /// What a 100 Trying is built from (the INVITE's Via, From, To, Call-ID,
    /// CSeq and Timestamp), until the TU answers or the 100 is sent: the
    /// transaction outlives the call set-up by 32 s and need not hold the
    /// whole INVITE that long.
    trying_source: Option<Box<rsip::Request>>,
    /// When the INVITE arrived, for the Timestamp delay of the 100 Trying.
    received_at: Instant,
    /// The last provisional response sent (the TU's or our 100 Trying),
    /// resent for INVITE retransmissions in Proceeding.
    last_provisional: Option<Vec<u8>>,
    /// The 300-699 response sent, retransmitted in Completed.
    final_response: Option<Vec<u8>>,
    /// When to send 100 Trying if the TU has said nothing.
    trying_timer: Option<Instant>,
    /// Timer G: final-response retransmission (unreliable transports only).
    timer_g: Option<Backoff>,
    /// Timer H: how long Completed waits for the ACK.
    timer_h: Option<Instant>,
    /// Timer I: how long Confirmed absorbs ACK retransmissions.
    timer_i: Option<Instant>,
    /// Timer L: how long Accepted lasts (RFC 6026).
    timer_l: Option<Instant>,
}

impl ServerInvite {
    /// Starts the transaction for an INVITE that matched no existing one
    /// (§17.2.3): it is passed to the TU, and the 100 Trying timer starts.
    pub fn new(
        request: rsip::Request,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        if request.method != rsip::Method::Invite {
            return Err(TransactionError::WrongMethod {
                machine: "INVITE server",
                method: request.method,
            });
        }
        let tx = Self {
            state: ServerInviteState::Proceeding,
            reliability,
            timers: timers.sanitized(),
            trying_source: Some(Box::new(trying_source(&request))),
            received_at: now,
            last_provisional: None,
            final_response: None,
            trying_timer: after(now, TRYING_DELAY),
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        };
        Ok((tx, vec![Action::Deliver(request.into())]))
    }

    /// The TU answers (§17.2.1):
    ///
    /// * in Proceeding, a 1xx is sent; a 2xx is sent and moves the machine to
    ///   Accepted (RFC 6026); a 300-699 is sent and moves it to Completed,
    ///   where it is retransmitted until the ACK;
    /// * in Accepted, a 2xx (the TU's retransmission, §13.3.1.4) is sent;
    /// * anything else is refused with
    ///   [`TransactionError::ResponseNotAllowed`].
    ///
    /// A CANCEL is answered this way too: the TU sends 487 Request
    /// Terminated here (§9.2).
    pub fn on_tu_response(
        &mut self,
        response: rsip::Response,
        now: Instant,
    ) -> Result<Vec<Action>, TransactionError> {
        let code = response.status_code.code();
        if !(100..=699).contains(&code) {
            return Err(TransactionError::InvalidStatus(code));
        }
        let refuse = |state: ServerInviteState| TransactionError::ResponseNotAllowed {
            status: code,
            state: state.name(),
        };
        match (self.state, code) {
            (ServerInviteState::Proceeding, _) => {
                // Whatever the TU says, the automatic 100 is no longer needed.
                self.trying_timer = None;
                self.trying_source = None;
                let bytes = encode(&response);
                match code {
                    100..=199 => self.last_provisional = Some(bytes.clone()),
                    200..=299 => {
                        self.state = ServerInviteState::Accepted;
                        self.timer_l = after(now, self.timers.timeout());
                    }
                    _ => {
                        self.state = ServerInviteState::Completed;
                        self.timer_g = match self.reliability {
                            Reliability::Unreliable => Backoff::start(now, self.timers.t1),
                            Reliability::Reliable => None,
                        };
                        // Timer H on every transport: on a reliable one the
                        // ACK can still be lost with the connection.
                        self.timer_h = after(now, self.timers.timeout());
                        self.final_response = Some(bytes.clone());
                    }
                }
                Ok(vec![Action::Send(bytes)])
            }
            (ServerInviteState::Accepted, 200..=299) => Ok(vec![Action::Send(encode(&response))]),
            (state, _) => Err(refuse(state)),
        }
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.trying_timer = None;
        self.trying_source = None;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.timer_l = None;
    }

    fn on_ack(&mut self, ack: rsip::Request, now: Instant) -> Vec<Action> {
        match self.state {
            // §17.2.1: the ACK for a non-2xx ends retransmission; it belongs
            // to the transaction and is not passed up.
            ServerInviteState::Completed => {
                self.timer_g = None;
                self.timer_h = None;
                if self.reliability.is_reliable() {
                    // Timer I is zero: no ACK retransmissions will come.
                    self.terminate();
                } else {
                    self.state = ServerInviteState::Confirmed;
                    self.timer_i = after(now, self.timers.t4);
                }
                Vec::new()
            }
            // RFC 6026: an ACK that matches in Accepted is for the 2xx, i.e.
            // for the dialog, and goes to the TU.
            ServerInviteState::Accepted => vec![Action::Deliver(ack.into())],
            // Confirmed absorbs retransmitted ACKs; in Proceeding there is
            // nothing to acknowledge yet.
            ServerInviteState::Proceeding
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => Vec::new(),
        }
    }
}

impl ServerInvite {
    /// In Accepted (until Timer L) retransmitted INVITEs are absorbed and
    /// ACKs go to the dialog; in Confirmed (until Timer I) everything is
    /// absorbed. That job is handed out (the machine is Terminated
    /// afterwards).
    pub fn linger(&mut self) -> Option<Linger> {
        let (until, ack_to_dialog) = match self.state {
            ServerInviteState::Accepted => (self.timer_l?, true),
            ServerInviteState::Confirmed => (self.timer_i?, false),
            _ => return None,
        };
        self.terminate();
        Some(Linger {
            resend: None,
            until,
            ack_to_dialog,
        })
    }
}

impl Transaction for ServerInvite {
    type State = ServerInviteState;

    fn on_message(&mut self, msg: rsip::SipMessage, now: Instant) -> Vec<Action> {
        let rsip::SipMessage::Request(request) = msg else {
            return Vec::new();
        };
        match request.method {
            rsip::Method::Ack => self.on_ack(request, now),
            rsip::Method::Invite => {
                let resend = match self.state {
                    // §17.2.1: the most recent provisional response (none
                    // yet: nothing to say, the 100 timer is running).
                    ServerInviteState::Proceeding => self.last_provisional.as_ref(),
                    ServerInviteState::Completed => self.final_response.as_ref(),
                    // Confirmed: the client has ACKed and a stray INVITE
                    // copy is late; Accepted: RFC 6026 absorbs retransmissions
                    // of an INVITE answered 2xx (the TU retransmits the 2xx).
                    ServerInviteState::Confirmed
                    | ServerInviteState::Accepted
                    | ServerInviteState::Terminated => None,
                };
                resend.cloned().map(Action::Send).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            ServerInviteState::Proceeding => {
                if !is_due(self.trying_timer, now) {
                    return Vec::new();
                }
                self.trying_timer = None;
                let Some(source) = self.trying_source.take() else {
                    return Vec::new();
                };
                let held = now.saturating_duration_since(self.received_at);
                let bytes = encode(&trying(&source, held));
                self.last_provisional = Some(bytes.clone());
                vec![Action::Send(bytes)]
            }
            ServerInviteState::Completed => {
                if is_due(self.timer_h, now) {
                    // §17.2.1: the ACK never came; the TU must learn that
                    // the final response was (probably) never received.
                    self.terminate();
                    return vec![Action::Timeout];
                }
                let Some(g) = self.timer_g.filter(|g| g.due <= now) else {
                    return Vec::new();
                };
                let t2 = self.timers.t2;
                // §17.2.1: G doubles from T1 and is capped at T2, like E.
                self.timer_g = g.advance(now, |d| d.saturating_mul(2).min(t2));
                self.final_response
                    .iter()
                    .cloned()
                    .map(Action::Send)
                    .collect()
            }
            ServerInviteState::Confirmed => {
                if is_due(self.timer_i, now) {
                    self.terminate();
                }
                Vec::new()
            }
            ServerInviteState::Accepted => {
                if is_due(self.timer_l, now) {
                    self.terminate();
                }
                Vec::new()
            }
            ServerInviteState::Terminated => Vec::new(),
        }
    }

    fn on_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        if self.state == ServerInviteState::Terminated {
            return Vec::new();
        }
        self.terminate();
        vec![Action::TransportError]
    }

    fn next_deadline(&self) -> Option<Instant> {
        earliest([
            self.trying_timer,
            self.timer_g.map(|g| g.due),
            self.timer_h,
            self.timer_i,
            self.timer_l,
        ])
    }

    fn state(&self) -> ServerInviteState {
        self.state
    }

    fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::{Name, first};
    use super::super::testutil::*;
    use super::*;
    use ServerInviteState::*;
    use rsip::headers::UntypedHeader;

    fn start(reliability: Reliability) -> (ServerInvite, Instant) {
        let t0 = Instant::now();
        let (tx, actions) =
            ServerInvite::new(invite(), reliability, Timers::default(), t0).unwrap();
        assert_eq!(actions, vec![Action::Deliver(invite().into())]);
        (tx, t0)
    }

    fn parse_response(bytes: &[u8]) -> rsip::Response {
        rsip::Response::try_from(bytes.to_vec()).expect("response parses")
    }

    #[test]
    fn starts_in_proceeding_and_refuses_other_methods() {
        let (tx, t0) = start(Reliability::Unreliable);
        assert_eq!(tx.state(), Proceeding);
        assert_eq!(tx.next_deadline(), Some(at(t0, 200)));
        for r in [message(), ack()] {
            assert!(matches!(
                ServerInvite::new(r, Reliability::Unreliable, Timers::default(), t0),
                Err(TransactionError::WrongMethod { .. })
            ));
        }
    }

    #[test]
    fn sends_100_trying_at_200_ms_when_the_tu_is_silent() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        assert!(tx.on_timer(at(t0, 199)).is_empty());
        let actions = tx.on_timer(at(t0, 200));
        assert_eq!(sent_status(&actions), 100);
        let trying = parse_response(&sent(&actions)[0]);
        let inv = invite();
        for name in [Name::From, Name::To, Name::CallId, Name::CSeq, Name::Via] {
            assert_eq!(first(&trying.headers, name), first(&inv.headers, name));
        }
        assert_eq!(tx.state(), Proceeding);
        assert_eq!(tx.next_deadline(), None, "sent once");
        assert!(tx.on_timer(at(t0, 400)).is_empty());
        // An INVITE retransmission gets the 100 again.
        assert_eq!(tx.on_message(invite().into(), at(t0, 500)), actions);
    }

    #[test]
    fn no_automatic_100_when_the_tu_answers_in_time() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        // Nothing said yet: a retransmission gets nothing either.
        assert!(tx.on_message(invite().into(), at(t0, 50)).is_empty());
        let ringing = response(&invite(), 180, Some("b"));
        let actions = tx.on_tu_response(ringing, at(t0, 150)).unwrap();
        assert_eq!(sent_status(&actions), 180);
        assert_eq!(tx.next_deadline(), None);
        assert!(tx.on_timer(at(t0, 200)).is_empty());
        assert_eq!(tx.on_message(invite().into(), at(t0, 500)), actions);
        assert_eq!(tx.state(), Proceeding);
    }

    #[test]
    fn latest_provisional_is_the_one_resent() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_timer(at(t0, 200));
        let ringing = tx
            .on_tu_response(response(&invite(), 180, Some("b")), at(t0, 300))
            .unwrap();
        assert_eq!(tx.on_message(invite().into(), at(t0, 500)), ringing);
    }

    #[test]
    fn timestamp_is_echoed_with_the_delay() {
        let t0 = Instant::now();
        let mut inv = invite();
        inv.headers
            .push(rsip::Header::Timestamp(rsip::headers::Timestamp::new(
                "100.5",
            )));
        let (mut tx, _) =
            ServerInvite::new(inv, Reliability::Unreliable, Timers::default(), t0).unwrap();
        let actions = tx.on_timer(at(t0, 200));
        let trying = parse_response(&sent(&actions)[0]);
        assert_eq!(first(&trying.headers, Name::Timestamp), Some("100.5 0.200"));
    }

    #[test]
    fn non_2xx_final_is_retransmitted_by_timer_g_until_timer_h() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        let busy = tx
            .on_tu_response(response(&invite(), 486, Some("a6c85cf")), t0)
            .unwrap();
        assert_eq!(sent_status(&busy), 486);
        assert_eq!(tx.state(), Completed);
        // G: 0.5, 1, 2, 4, 4, … s (capped at T2); H at 64·T1 = 32 s.
        let mut times = Vec::new();
        while let Some(deadline) = tx.next_deadline() {
            let actions = tx.on_timer(deadline);
            if actions == vec![Action::Timeout] {
                assert_eq!(deadline, at(t0, 32_000));
                break;
            }
            assert_eq!(actions, busy, "the same bytes each time");
            times.push((deadline - t0).as_millis());
        }
        assert_eq!(
            times,
            vec![
                500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
            ]
        );
        assert_eq!(tx.state(), Terminated);
    }

    #[test]
    fn invite_retransmission_in_completed_resends_the_final_response() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        let busy = tx
            .on_tu_response(response(&invite(), 486, Some("x")), at(t0, 100))
            .unwrap();
        assert_eq!(tx.on_message(invite().into(), at(t0, 300)), busy);
    }

    #[test]
    fn ack_confirms_absorbs_and_timer_i_terminates() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_tu_response(response(&invite(), 486, Some("a6c85cf")), t0)
            .unwrap();
        tx.on_timer(at(t0, 500));
        // The ACK is absorbed, not delivered to the TU.
        assert!(tx.on_message(ack().into(), at(t0, 700)).is_empty());
        assert_eq!(tx.state(), Confirmed);
        // Retransmissions stopped; only Timer I = T4 remains.
        assert_eq!(tx.next_deadline(), Some(at(t0, 5_700)));
        assert!(tx.on_message(ack().into(), at(t0, 900)).is_empty());
        assert!(tx.on_message(invite().into(), at(t0, 950)).is_empty());
        assert!(tx.on_timer(at(t0, 5_699)).is_empty());
        assert_eq!(tx.state(), Confirmed);
        assert!(tx.on_timer(at(t0, 5_700)).is_empty());
        assert_eq!(tx.state(), Terminated);
    }

    #[test]
    fn reliable_transport_no_g_and_ack_terminates_at_once() {
        let (mut tx, t0) = start(Reliability::Reliable);
        tx.on_tu_response(response(&invite(), 603, Some("d")), at(t0, 10))
            .unwrap();
        assert_eq!(tx.next_deadline(), Some(at(t0, 32_010)), "Timer H only");
        assert!(tx.on_timer(at(t0, 20_000)).is_empty());
        assert!(tx.on_message(ack().into(), at(t0, 20_001)).is_empty());
        assert_eq!(
            tx.state(),
            Terminated,
            "Timer I is zero on reliable transports"
        );
    }

    #[test]
    fn reliable_timer_h() {
        let (mut tx, t0) = start(Reliability::Reliable);
        tx.on_tu_response(response(&invite(), 486, Some("d")), t0)
            .unwrap();
        assert_eq!(tx.on_timer(at(t0, 32_000)), vec![Action::Timeout]);
        assert!(tx.is_terminated());
    }

    #[test]
    fn accepted_and_confirmed_hand_out_what_they_absorb() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        assert_eq!(tx.linger(), None);
        tx.on_tu_response(response(&invite(), 200, Some("b")), at(t0, 100))
            .unwrap();
        let accepted = tx.linger().expect("Accepted lingers");
        assert_eq!(accepted.resend, None);
        assert_eq!(accepted.until, at(t0, 32_100));
        assert!(accepted.ack_to_dialog, "RFC 6026: the ACK is the dialog's");
        assert_eq!(tx.state(), Terminated);

        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_tu_response(response(&invite(), 486, Some("a")), t0)
            .unwrap();
        assert_eq!(tx.linger(), None, "Completed still retransmits");
        tx.on_message(ack().into(), at(t0, 700));
        let confirmed = tx.linger().expect("Confirmed lingers");
        assert_eq!(confirmed.until, at(t0, 5_700));
        assert!(!confirmed.ack_to_dialog);
    }

    #[test]
    fn two_hundred_enters_accepted_for_timer_l() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        let ok = response(&invite(), 200, Some("b"));
        let sent_ok = tx.on_tu_response(ok.clone(), at(t0, 100)).unwrap();
        assert_eq!(sent_status(&sent_ok), 200);
        assert_eq!(tx.state(), Accepted);
        assert_eq!(tx.next_deadline(), Some(at(t0, 32_100)), "Timer L = 64·T1");

        // INVITE retransmissions are absorbed: neither resent 2xx nor a new
        // INVITE for the TU.
        assert!(tx.on_message(invite().into(), at(t0, 600)).is_empty());
        // The TU's own 2xx retransmission is sent.
        assert_eq!(tx.on_tu_response(ok, at(t0, 600)).unwrap(), sent_ok);
        // An ACK with the INVITE's branch is the dialog's: passed up.
        assert_eq!(
            tx.on_message(ack().into(), at(t0, 700)),
            vec![Action::Deliver(ack().into())]
        );
        assert_eq!(tx.state(), Accepted);
        // Non-2xx answers are refused now.
        assert_eq!(
            tx.on_tu_response(response(&invite(), 486, Some("b")), at(t0, 800)),
            Err(TransactionError::ResponseNotAllowed {
                status: 486,
                state: "Accepted"
            })
        );
        assert!(tx.on_timer(at(t0, 32_099)).is_empty());
        assert!(tx.on_timer(at(t0, 32_100)).is_empty());
        assert_eq!(tx.state(), Terminated);
        assert!(
            tx.on_tu_response(response(&invite(), 200, Some("b")), at(t0, 32_200))
                .is_err()
        );
    }

    #[test]
    fn responses_after_the_final_are_refused() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_tu_response(response(&invite(), 487, Some("c")), t0)
            .unwrap();
        for code in [180, 200, 500] {
            assert_eq!(
                tx.on_tu_response(response(&invite(), code, Some("c")), at(t0, 1)),
                Err(TransactionError::ResponseNotAllowed {
                    status: code,
                    state: "Completed"
                })
            );
        }
        let mut bad = response(&invite(), 200, None);
        bad.status_code = rsip::StatusCode::Other(700, "Nope".into());
        assert_eq!(
            tx.on_tu_response(bad, at(t0, 2)),
            Err(TransactionError::InvalidStatus(700))
        );
    }

    #[test]
    fn transport_error_terminates_and_informs_the_tu() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        tx.on_tu_response(response(&invite(), 486, Some("c")), t0)
            .unwrap();
        assert_eq!(
            tx.on_transport_error(at(t0, 1)),
            vec![Action::TransportError]
        );
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        assert!(tx.on_transport_error(at(t0, 2)).is_empty());

        let (mut tx, t0) = start(Reliability::Unreliable);
        assert_eq!(tx.on_transport_error(t0), vec![Action::TransportError]);
        assert!(
            tx.on_timer(at(t0, 200)).is_empty(),
            "no 100 after termination"
        );
    }

    #[test]
    fn responses_and_other_requests_are_ignored() {
        let (mut tx, t0) = start(Reliability::Unreliable);
        assert!(
            tx.on_message(response(&invite(), 200, None).into(), at(t0, 1))
                .is_empty()
        );
        let mut cancel = invite();
        cancel.method = rsip::Method::Cancel;
        assert!(tx.on_message(cancel.into(), at(t0, 2)).is_empty());
        assert_eq!(tx.state(), Proceeding);
    }
}
