//! SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" states), as
//! sans-io state machines.
//!
//! # The manual
//!
//! A transaction is one request and the responses to it. Four machines cover
//! the cases of §17:
//!
//! | machine             | RFC         | states                                                  |
//! |---------------------|-------------|---------------------------------------------------------|
//! | [`ClientNonInvite`] | §17.1.2     | Trying → Proceeding → Completed → Terminated             |
//! | [`ClientInvite`]    | §17.1.1 + RFC 6026 | Calling → Proceeding → Completed / Accepted → Terminated |
//! | [`ServerNonInvite`] | §17.2.2     | Trying → Proceeding → Completed → Terminated             |
//! | [`ServerInvite`]    | §17.2.1 + RFC 6026 | Proceeding → Completed → Confirmed / Accepted → Terminated |
//!
//! None of them owns a socket, a task or a clock. The glue around them (a
//! sharded `HashMap` keyed by [`ServerKey`] / [`ClientKey`], and a timer wheel)
//! drives each machine with four kinds of input and carries out the
//! [`Action`]s it returns, in order:
//!
//! ```text
//! let (mut tx, actions) = ServerInvite::new(request, reliability, timers, now)?;
//! run(actions);                                  // Deliver(request) to the TU
//! loop {
//!     select! {
//!         msg  = retransmission for this key   => run(tx.on_message(msg, now)),
//!         resp = the TU answers                 => run(tx.on_tu_response(resp, now)?),
//!         _    = sleep_until(tx.next_deadline()) => run(tx.on_timer(now)),
//!         err  = the transport failed to send   => run(tx.on_transport_error(now)),
//!     }
//!     if tx.is_terminated() { remove it from the map; break }
//! }
//! ```
//!
//! * [`Action::Send`] carries the finished bytes; they go out through the
//!   transport (and, for a server transaction, to the address of §18.2.2) the
//!   transaction belongs to. Retransmissions are byte-identical, because the
//!   machine encodes a message once and keeps the bytes.
//! * [`Action::Deliver`] passes a response (client side) or a request (server
//!   side) up to the transaction user (TU).
//! * [`Action::Timeout`] tells the TU that Timer B, F or H fired: for a client
//!   transaction it is the 408 (Request Timeout) of §8.1.3.1; for an INVITE
//!   server transaction it means no ACK ever came.
//! * [`Action::TransportError`] answers [`Transaction::on_transport_error`]:
//!   the transaction is over and the TU must treat the request as failed
//!   (§8.1.3.1 wants a 503-equivalent on the client side).
//!
//! Time is an input: every entry point takes `now`, and
//! [`Transaction::next_deadline`] says when the machine next wants
//! [`Transaction::on_timer`]. Firing late is harmless: a retransmission timer
//! that is several periods behind sends once, not once per missed period, and
//! a due timeout wins over a due retransmission. Tests drive the machines with
//! `Instant`s they advance by hand; nothing here sleeps.
//!
//! # What is deliberately not here
//!
//! * RFC 2543 transactions (a top Via without the `z9hG4bK` cookie):
//!   [`server_key`] returns `None` and the caller answers statelessly.
//! * Matching (§17.1.3, §17.2.3): the glue looks the key up; the machines trust
//!   that what they are given belongs to them.
//! * 2xx retransmission and the ACK for a 2xx: those belong to the TU
//!   (§13.3.1.4, §13.2.2.4). RFC 6026 only makes the transaction live long
//!   enough (Timers L and M) to keep INVITE retransmissions and extra 2xx
//!   responses away from the wrong place.
//! * CANCEL (§9): the TU handles it with a separate non-INVITE transaction and
//!   answers the INVITE with a 487 through [`ServerInvite::on_tu_response`].

mod client_invite;
mod client_non_invite;
mod key;
mod message;
mod server_invite;
mod server_non_invite;
mod timer;

#[cfg(test)]
mod testutil;

use std::time::{Duration, Instant};

use thiserror::Error;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use key::{ClientKey, MAGIC_COOKIE, ServerKey, client_key, new_branch, server_key};
pub use message::encode;
pub use server_invite::{ServerInvite, ServerInviteState, TRYING_DELAY};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};

/// The protocol timers of RFC 3261 Table 4 that everything else is derived
/// from.
///
/// Values are taken as given, with two guards applied when a machine is
/// created: T1 is at least 1 ms (a zero T1 would make the retransmission
/// timers fire without end) and T2 is at least T1 (§17.1.2.2 caps the
/// non-INVITE back-off at T2, which only makes sense above T1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip time estimate; the first retransmission interval and the
    /// unit of every transaction timeout (64·T1).
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and for
    /// INVITE final responses.
    pub t2: Duration,
    /// Longest time a message stays in the network; how long completed
    /// transactions linger on unreliable transports to absorb retransmissions.
    pub t4: Duration,
}

impl Default for Timers {
    /// RFC 3261 Table 4: T1 = 500 ms, T2 = 4 s, T4 = 5 s. The RFC lets T1 be
    /// raised on high-latency links but warns against lowering it on the
    /// open Internet, so these are the right values unless an operator knows
    /// the path.
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// The shortest T1 a machine accepts (see the type's documentation).
    const MIN_T1: Duration = Duration::from_millis(1);

    /// 64·T1: Timers B, F, H, J, L and M (32 s with the defaults).
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The values a machine actually runs with (see the type's documentation).
    pub(crate) fn sanitized(self) -> Self {
        let t1 = self.t1.max(Self::MIN_T1);
        Self {
            t1,
            t2: self.t2.max(t1),
            t4: self.t4,
        }
    }
}

/// Whether the transport under a transaction delivers by itself (TCP, TLS,
/// WebSocket, SCTP) or may lose datagrams (UDP).
///
/// It decides whether the machine retransmits (unreliable only, §17.1.1.2,
/// §17.1.2.2, §17.2.1) and whether a completed transaction lingers to absorb
/// retransmissions (Timers D, I, J and K are zero on reliable transports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// A stream or association transport; nothing is retransmitted.
    Reliable,
    /// UDP; the transaction retransmits and absorbs retransmissions.
    Unreliable,
}

impl Reliability {
    /// The reliability of an RFC 3261 transport name as it appears in a Via
    /// (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, `WSS`; case-insensitive). Unknown
    /// names are taken as unreliable, the safe side: retransmitting over a
    /// reliable transport only costs bytes, not retransmitting over UDP loses
    /// requests.
    pub fn of_transport(name: &str) -> Self {
        const RELIABLE: [&str; 6] = ["TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"];
        if RELIABLE.iter().any(|t| t.eq_ignore_ascii_case(name.trim())) {
            Self::Reliable
        } else {
            Self::Unreliable
        }
    }

    pub(crate) fn is_reliable(self) -> bool {
        self == Self::Reliable
    }
}

/// What the glue must do after feeding a machine an input. Actions are
/// returned in the order they must be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Put these bytes on the wire through the transaction's transport.
    Send(Vec<u8>),
    /// Pass this message up to the transaction user.
    Deliver(rsip::SipMessage),
    /// Timer B, F or H fired: the transaction is over and failed (the TU
    /// treats a client timeout as a 408 Request Timeout, §8.1.3.1).
    Timeout,
    /// The transport reported a failure; the transaction is over and the TU
    /// treats it as a 503 Service Unavailable (§8.1.3.1, §17.1.4).
    TransportError,
}

/// Why a transaction could not be started or could not take a TU response.
///
/// Inputs from the network never produce an error: a stray or malformed
/// message is dropped by the machine, which is what §17 asks for. Errors are
/// for the TU, whose mistakes are bugs to be logged rather than silently
/// swallowed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The request's method does not fit the machine: an INVITE given to a
    /// non-INVITE machine or the reverse, or an ACK, which never starts a
    /// transaction of its own (§17.1.1.3, §17.2.3).
    #[error("a {machine} transaction cannot be started with a {method} request")]
    WrongMethod {
        /// The machine that refused the request.
        machine: &'static str,
        /// The request's method.
        method: rsip::Method,
    },
    /// The request lacks a header the transaction needs, or has one it
    /// cannot read (the client INVITE needs Via, From, To, Call-ID and CSeq to
    /// build the ACK of §17.1.1.3).
    #[error("the request has no usable {0} header")]
    MissingHeader(&'static str),
    /// The TU passed a response whose status code is not in 100–699.
    #[error("status code {0} is not a valid SIP response code")]
    InvalidStatus(u16),
    /// The TU passed a response the machine may no longer send in its current
    /// state (a second final response, a provisional after the final one, or
    /// anything after termination).
    #[error("a {status} response cannot be sent in the {state} state")]
    ResponseNotAllowed {
        /// The status code the TU tried to send.
        status: u16,
        /// The state the machine is in, by its RFC name.
        state: &'static str,
    },
}

/// The inputs and queries every machine shares, so that the glue can drive a
/// map of them without knowing which kind each one is.
pub trait Transaction {
    /// The machine's state type.
    type State: Copy + Eq + std::fmt::Debug;

    /// A message from the network that matched this transaction's key: a
    /// response for a client transaction, a retransmitted request or an ACK
    /// for a server one. Anything else is dropped.
    fn on_message(&mut self, msg: rsip::SipMessage, now: Instant) -> Vec<Action>;

    /// Fires whatever timers are due at `now` (nothing if none is).
    fn on_timer(&mut self, now: Instant) -> Vec<Action>;

    /// The transport could not send one of this transaction's messages
    /// (§17.1.4, §17.2.4): the transaction terminates and tells the TU.
    fn on_transport_error(&mut self, now: Instant) -> Vec<Action>;

    /// When [`Transaction::on_timer`] next has something to do; `None` when
    /// nothing is scheduled (waiting on the network or the TU, or terminated).
    fn next_deadline(&self) -> Option<Instant>;

    /// The current state.
    fn state(&self) -> Self::State;

    /// Whether the machine reached Terminated and may be dropped from the map.
    fn is_terminated(&self) -> bool;
}

/// Either kind of server transaction, so that one map can hold both.
#[derive(Debug)]
pub enum ServerTransaction {
    /// An INVITE server transaction.
    Invite(ServerInvite),
    /// A server transaction for any other method except ACK.
    NonInvite(ServerNonInvite),
}

impl ServerTransaction {
    /// Starts the right machine for the request's method (ACK is refused: it
    /// either belongs to an INVITE transaction or goes straight to the TU).
    pub fn new(
        request: rsip::Request,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        if request.method == rsip::Method::Invite {
            let (tx, actions) = ServerInvite::new(request, reliability, timers, now)?;
            Ok((Self::Invite(tx), actions))
        } else {
            let (tx, actions) = ServerNonInvite::new(request, reliability, timers, now)?;
            Ok((Self::NonInvite(tx), actions))
        }
    }

    /// The TU answers the request; see [`ServerInvite::on_tu_response`] and
    /// [`ServerNonInvite::on_tu_response`].
    pub fn on_tu_response(
        &mut self,
        response: rsip::Response,
        now: Instant,
    ) -> Result<Vec<Action>, TransactionError> {
        match self {
            Self::Invite(tx) => tx.on_tu_response(response, now),
            Self::NonInvite(tx) => tx.on_tu_response(response, now),
        }
    }

    /// The current state by its RFC name, for logs and metrics.
    pub fn state_name(&self) -> &'static str {
        match self {
            Self::Invite(tx) => tx.state().name(),
            Self::NonInvite(tx) => tx.state().name(),
        }
    }

    /// Hands out the transaction's remaining job as a [`Linger`] if all it
    /// still does is answer retransmissions until a deadline (it is then
    /// Terminated); `None` otherwise.
    pub fn linger(&mut self) -> Option<Linger> {
        match self {
            Self::Invite(tx) => tx.linger(),
            Self::NonInvite(tx) => tx.linger(),
        }
    }
}

/// What is left of a server transaction whose only remaining job is to
/// answer retransmitted requests the same way until a deadline (a non-INVITE
/// in Completed, an INVITE in Accepted or Confirmed). It needs no task or
/// timer of its own: the transaction layer keeps it in its map and drops it
/// once `until` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linger {
    /// Sent again for every retransmitted request (a non-INVITE's final
    /// response); `None` absorbs them.
    pub resend: Option<Vec<u8>>,
    /// When the transaction would have terminated (Timer J, L or I).
    pub until: Instant,
    /// Whether a matching ACK acknowledges a 2xx and so belongs to the
    /// dialog (RFC 6026 Accepted) rather than being absorbed.
    pub ack_to_dialog: bool,
}

/// Either kind of client transaction, so that one map can hold both.
#[derive(Debug)]
pub enum ClientTransaction {
    /// An INVITE client transaction.
    Invite(ClientInvite),
    /// A client transaction for any other method except ACK.
    NonInvite(ClientNonInvite),
}

impl ClientTransaction {
    /// Starts the right machine for the request's method (ACK is refused: the
    /// ACK for a non-2xx is sent by the INVITE transaction, the ACK for a 2xx
    /// by the TU without a transaction, §17.1.1.3).
    pub fn new(
        request: rsip::Request,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        if request.method == rsip::Method::Invite {
            let (tx, actions) = ClientInvite::new(request, reliability, timers, now)?;
            Ok((Self::Invite(tx), actions))
        } else {
            let (tx, actions) = ClientNonInvite::new(request, reliability, timers, now)?;
            Ok((Self::NonInvite(tx), actions))
        }
    }

    /// The current state by its RFC name, for logs and metrics.
    pub fn state_name(&self) -> &'static str {
        match self {
            Self::Invite(tx) => tx.state().name(),
            Self::NonInvite(tx) => tx.state().name(),
        }
    }
}

/// Implements [`Transaction`] for an enum whose variants all implement it,
/// with a state type that is the enum's state-name string.
macro_rules! dispatch_transaction {
    ($enum:ident) => {
        impl Transaction for $enum {
            type State = &'static str;

            fn on_message(&mut self, msg: rsip::SipMessage, now: Instant) -> Vec<Action> {
                match self {
                    Self::Invite(tx) => tx.on_message(msg, now),
                    Self::NonInvite(tx) => tx.on_message(msg, now),
                }
            }

            fn on_timer(&mut self, now: Instant) -> Vec<Action> {
                match self {
                    Self::Invite(tx) => tx.on_timer(now),
                    Self::NonInvite(tx) => tx.on_timer(now),
                }
            }

            fn on_transport_error(&mut self, now: Instant) -> Vec<Action> {
                match self {
                    Self::Invite(tx) => tx.on_transport_error(now),
                    Self::NonInvite(tx) => tx.on_transport_error(now),
                }
            }

            fn next_deadline(&self) -> Option<Instant> {
                match self {
                    Self::Invite(tx) => tx.next_deadline(),
                    Self::NonInvite(tx) => tx.next_deadline(),
                }
            }

            fn state(&self) -> &'static str {
                self.state_name()
            }

            fn is_terminated(&self) -> bool {
                match self {
                    Self::Invite(tx) => tx.is_terminated(),
                    Self::NonInvite(tx) => tx.is_terminated(),
                }
            }
        }
    };
}

dispatch_transaction!(ServerTransaction);
dispatch_transaction!(ClientTransaction);

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn default_timers_are_rfc_3261_table_4() {
        let t = Timers::default();
        assert_eq!(t.t1, ms(500));
        assert_eq!(t.t2, ms(4_000));
        assert_eq!(t.t4, ms(5_000));
        assert_eq!(t.timeout(), ms(32_000));
    }

    #[test]
    fn sanitized_timers_never_spin() {
        let t = Timers {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::ZERO,
        }
        .sanitized();
        assert_eq!(t.t1, ms(1));
        assert_eq!(t.t2, ms(1));
        assert_eq!(t.t4, Duration::ZERO);
    }

    #[test]
    fn reliability_of_transport_names() {
        assert_eq!(Reliability::of_transport("UDP"), Reliability::Unreliable);
        assert_eq!(Reliability::of_transport("tcp"), Reliability::Reliable);
        assert_eq!(Reliability::of_transport("TLS"), Reliability::Reliable);
        assert_eq!(Reliability::of_transport("WSS"), Reliability::Reliable);
        assert_eq!(Reliability::of_transport("bogus"), Reliability::Unreliable);
    }

    #[test]
    fn server_transaction_picks_the_machine_by_method() {
        let t0 = Instant::now();
        let (tx, _) =
            ServerTransaction::new(invite(), Reliability::Unreliable, Timers::default(), t0)
                .unwrap();
        assert!(matches!(tx, ServerTransaction::Invite(_)));
        assert_eq!(tx.state(), "Proceeding");
        let (tx, _) =
            ServerTransaction::new(message(), Reliability::Unreliable, Timers::default(), t0)
                .unwrap();
        assert!(matches!(tx, ServerTransaction::NonInvite(_)));
        assert_eq!(tx.state(), "Trying");
        let err = ServerTransaction::new(ack(), Reliability::Unreliable, Timers::default(), t0)
            .unwrap_err();
        assert!(matches!(err, TransactionError::WrongMethod { .. }));
    }

    #[test]
    fn client_transaction_picks_the_machine_by_method() {
        let t0 = Instant::now();
        let (tx, a) =
            ClientTransaction::new(invite(), Reliability::Unreliable, Timers::default(), t0)
                .unwrap();
        assert!(matches!(tx, ClientTransaction::Invite(_)));
        assert_eq!(tx.state(), "Calling");
        assert_eq!(a.len(), 1);
        let (mut tx, _) =
            ClientTransaction::new(message(), Reliability::Reliable, Timers::default(), t0)
                .unwrap();
        assert_eq!(tx.state(), "Trying");
        assert_eq!(tx.next_deadline(), Some(t0 + ms(32_000)));
        assert_eq!(tx.on_timer(t0 + ms(32_000)), vec![Action::Timeout]);
        assert!(tx.is_terminated());
        assert!(
            ClientTransaction::new(ack(), Reliability::Unreliable, Timers::default(), t0).is_err()
        );
    }
}
