//! The softswitch's default dialplan (SPEC §6) as pure functions.
//!
//! The same code runs inside routing guests (compiled to wasm32-wasip2) and
//! natively in the host, where it is the baseline a guest is measured
//! against. It therefore knows nothing of WIT or of the host: the types below
//! mirror the `softswitch:routing` records, and every look-up goes through the
//! [`Directory`] trait.
//!
//! `no_std` (with `alloc`) so that a guest may drop std, and with it every WASI
//! import, without giving up this crate.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

pub mod memory;

/// The rule used when the caller's account has none (empty string).
pub const DEFAULT_RULE: &str = "DP:int-> OR onnet";
/// Marks an ONNET destination once the dialing-plan rule has been applied.
pub const ONNET_PREFIX: &str = "onnet";

/// Service names handed to the host in [`Decision::ToService`].
pub mod service {
    pub const VOICEMAIL: &str = "voicemail";
    pub const VOICEMAIL_PLAYBACK: &str = "voicemail-playback";
    pub const VOICEMAIL_DEPOSIT: &str = "voicemail-deposit";
    pub const GREETING: &str = "greeting";
}

/// What is being routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Call,
    Message,
}

/// Why the host asks: a first attempt, or a call to a user that was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Initial,
    NoAnswer,
    Busy,
    Declined,
    Unavailable,
}

impl Reason {
    /// The SIP status that ends a call which failed for this reason, when
    /// nothing (voicemail) takes it over. `None` for [`Reason::Initial`].
    pub fn rejection(self) -> Option<Decision> {
        match self {
            Reason::Initial => None,
            Reason::NoAnswer | Reason::Unavailable => {
                Some(Decision::reject(480, "Temporarily Unavailable"))
            }
            Reason::Busy => Some(Decision::reject(486, "Busy Here")),
            Reason::Declined => Some(Decision::reject(603, "Decline")),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    /// Empty for unauthenticated peers.
    pub login: String,
    pub display_name: Option<String>,
    pub authenticated: bool,
}

/// One routing question (the WIT `route-request` without its `source`,
/// which the dialplan does not use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub caller: Caller,
    /// User part of the request target exactly as dialled.
    pub target: String,
    /// The caller account's rule; empty means [`DEFAULT_RULE`].
    pub dialplan_rule: String,
    pub reason: Reason,
}

/// Where the request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Deliver to the registered devices of this login.
    ToUser(String),
    ToGateway {
        gateway: String,
        number: String,
    },
    ToService {
        name: String,
        args: Vec<String>,
    },
    /// SIP status 400..=699.
    Reject {
        code: u16,
        reason: String,
    },
}

impl Decision {
    pub fn reject(code: u16, reason: &str) -> Self {
        Decision::Reject {
            code,
            reason: reason.into(),
        }
    }

    fn service(name: &str, args: Vec<String>) -> Self {
        Decision::ToService {
            name: name.into(),
            args,
        }
    }
}

/// How the caller is presented to the callee, when the dialplan changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerId {
    pub display_name: Option<String>,
    /// User part of the From URI.
    pub user: Option<String>,
}

/// What [`route`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteResult {
    pub decision: Decision,
    pub caller_id: Option<CallerId>,
}

impl From<Decision> for RouteResult {
    fn from(decision: Decision) -> Self {
        RouteResult {
            decision,
            caller_id: None,
        }
    }
}

/// The public view of an account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub login: String,
    pub phone: Option<String>,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub voicemail_enabled: bool,
}

/// A gateway (carrier trunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub name: String,
    pub prefix: String,
}

/// Read-only look-ups the dialplan needs; a guest implements it over the WIT
/// `directory` imports, the host over its own directory.
pub trait Directory {
    fn account_by_login(&self, login: &str) -> Option<Account>;
    fn account_by_phone(&self, phone: &str) -> Option<Account>;
    fn account_by_username(&self, username: &str) -> Option<Account>;
    /// True when the login has at least one registered device.
    fn is_registered(&self, login: &str) -> bool;
    /// The gateway whose prefix is the longest prefix of `number`.
    fn gateway_for(&self, number: &str) -> Option<Gateway>;
}

/// A parsed dialing-plan rule `DP:<from>-><to> OR <prefix>`, borrowing from
/// the rule text so that routing a call does not allocate for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'a> {
    /// Non-empty.
    pub from: &'a str,
    /// May be empty (the default rule strips `int`).
    pub to: &'a str,
    /// Non-empty.
    pub prefix: &'a str,
}

/// A rule that does not follow `DP:<from>-><to> OR <prefix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRule;

impl fmt::Display for BadRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bad dialing-plan rule (expected `DP:<from>-><to> OR <prefix>`)")
    }
}

impl core::error::Error for BadRule {}

/// Parses `DP:<from>-><to> OR <prefix>`.
///
/// Whitespace around every part is ignored, and `DP`/`OR` may be in any case,
/// because rules are typed by people. `from` and `prefix` must be non-empty:
/// an empty `from` would match every target and an empty `prefix` is far more
/// likely a truncated rule than a wish. An empty (or blank) rule is the
/// [`DEFAULT_RULE`].
pub fn parse_rule(rule: &str) -> Result<Rule<'_>, BadRule> {
    let rule = rule.trim();
    let rule = if rule.is_empty() { DEFAULT_RULE } else { rule };
    let body = match rule.get(..3) {
        Some(dp) if dp.eq_ignore_ascii_case("DP:") => &rule[3..],
        _ => return Err(BadRule),
    };
    let (from, rest) = body.split_once("->").ok_or(BadRule)?;
    let from = from.trim();
    let mut words = rest.split_whitespace();
    let (to, prefix) = match (words.next(), words.next(), words.next(), words.next()) {
        (Some(or), Some(prefix), None, None) if or.eq_ignore_ascii_case("OR") => ("", prefix),
        (Some(to), Some(or), Some(prefix), None) if or.eq_ignore_ascii_case("OR") => (to, prefix),
        _ => return Err(BadRule),
    };
    if from.is_empty() || from.contains(char::is_whitespace) || to.contains("->") {
        return Err(BadRule);
    }
    Ok(Rule { from, to, prefix })
}

/// Rewrites a dialled target: replaces a leading `from` with `to`, otherwise
/// prepends `prefix`.
pub fn apply_rule(rule: &Rule<'_>, target: &str) -> String {
    let (head, tail) = match target.strip_prefix(rule.from) {
        Some(rest) => (rule.to, rest),
        None => (rule.prefix, target),
    };
    let mut out = String::with_capacity(head.len() + tail.len());
    out.push_str(head);
    out.push_str(tail);
    out
}

/// A target after the dialing-plan rule, split into the two networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A user or a service number of this switch (`onnet` stripped).
    Onnet(String),
    /// A number for the carriers.
    Offnet(String),
}

impl Destination {
    /// The user part without the network marker.
    pub fn as_str(&self) -> &str {
        match self {
            Destination::Onnet(s) | Destination::Offnet(s) => s,
        }
    }
}

/// Applies the rule and classifies the result as ONNET or OFFNET.
pub fn destination(rule: &Rule<'_>, target: &str) -> Destination {
    let mut rewritten = apply_rule(rule, target);
    if rewritten.starts_with(ONNET_PREFIX) {
        rewritten.drain(..ONNET_PREFIX.len());
        Destination::Onnet(rewritten)
    } else {
        Destination::Offnet(rewritten)
    }
}

/// A service number of SPEC §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceNumber<'a> {
    Voicemail,
    Playback(&'a str),
    Greeting,
}

fn service_number(onnet: &str) -> Option<ServiceNumber<'_>> {
    match onnet {
        "950" => Some(ServiceNumber::Voicemail),
        "750" => Some(ServiceNumber::Greeting),
        _ => onnet
            .strip_prefix("950msg")
            .filter(|id| is_all_digits(id))
            .map(ServiceNumber::Playback),
    }
}

/// Non-empty and ASCII digits only: what the switch calls a phone number.
pub fn is_all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Routes one request (SPEC §6).
///
/// On a retry (`reason` other than [`Reason::Initial`]) only a call to a user
/// can go on, to that user's voicemail; everything else ends with the status
/// of the reason, so a retry can never send a call somewhere the first attempt
/// did not (a gateway, a service) nor loop.
pub fn route(req: &Request, dir: &impl Directory) -> RouteResult {
    let rule = match parse_rule(&req.dialplan_rule) {
        Ok(rule) => rule,
        Err(_) => return Decision::reject(500, "bad dialing-plan rule").into(),
    };
    match destination(&rule, &req.target) {
        Destination::Onnet(rest) => route_onnet(req, &rest, dir).into(),
        Destination::Offnet(number) => route_offnet(req, number, dir),
    }
}

fn route_onnet(req: &Request, rest: &str, dir: &impl Directory) -> Decision {
    if rest.is_empty() {
        return Decision::reject(484, "Address Incomplete");
    }
    if let Some(number) = service_number(rest) {
        if let Some(rejection) = req.reason.rejection() {
            return rejection;
        }
        if req.kind != Kind::Call {
            return Decision::reject(488, "Not Acceptable Here");
        }
        let caller = req.caller.login.clone();
        return match number {
            ServiceNumber::Voicemail => Decision::service(service::VOICEMAIL, vec![caller]),
            ServiceNumber::Playback(id) => {
                Decision::service(service::VOICEMAIL_PLAYBACK, vec![caller, id.into()])
            }
            ServiceNumber::Greeting => Decision::service(service::GREETING, vec![caller]),
        };
    }
    let Some(account) = find_user(rest, dir) else {
        return Decision::reject(404, "Not Found");
    };
    match req.reason.rejection() {
        None => Decision::ToUser(account.login),
        Some(_) if req.kind == Kind::Call && account.voicemail_enabled => {
            Decision::service(service::VOICEMAIL_DEPOSIT, vec![account.login])
        }
        Some(rejection) => rejection,
    }
}

/// Login first: it is what most clients dial and the cheapest look-up.
fn find_user(user: &str, dir: &impl Directory) -> Option<Account> {
    dir.account_by_login(user)
        .or_else(|| dir.account_by_phone(user))
        .or_else(|| dir.account_by_username(user))
}

fn route_offnet(req: &Request, number: String, dir: &impl Directory) -> RouteResult {
    if let Some(rejection) = req.reason.rejection() {
        return rejection.into();
    }
    if number.is_empty() {
        return Decision::reject(484, "Address Incomplete").into();
    }
    let Some(gateway) = dir.gateway_for(&number) else {
        return Decision::reject(404, "No Route").into();
    };
    RouteResult {
        decision: Decision::ToGateway {
            gateway: gateway.name,
            number,
        },
        caller_id: offnet_caller_id(&req.caller, dir),
    }
}

/// Carriers want a number in From. A login that is a number already is
/// presented as is (no change); otherwise the account's phone, or failing
/// that a numeric display name.
fn offnet_caller_id(caller: &Caller, dir: &impl Directory) -> Option<CallerId> {
    if is_all_digits(&caller.login) {
        return None;
    }
    let phone = if caller.login.is_empty() {
        None
    } else {
        dir.account_by_login(&caller.login)
            .and_then(|account| account.phone)
            .filter(|phone| !phone.is_empty())
    };
    let number = phone.or_else(|| {
        caller
            .display_name
            .as_ref()
            .filter(|name| is_all_digits(name))
            .cloned()
    })?;
    Some(CallerId {
        display_name: Some(number.clone()),
        user: Some(number),
    })
}

#[cfg(test)]
mod tests;
