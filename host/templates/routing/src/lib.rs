//! `{{crate}}`: a routing guest for softswitch (world
//! `softswitch:routing/router@0.1.0`, in `wit/`).
//!
//! The switch calls `route` once for every new call or message, and again
//! when a call to a user was not answered. This router decides:
//!
//! 1. a retry (no answer, busy, declined, unavailable) ends with the matching
//!    SIP status (480, 486, 603);
//! 2. a target that is a local account's login or phone number goes to that
//!    user's devices;
//! 3. a target that starts with a prefix of the `routes` value goes to that
//!    prefix's gateway; the longest prefix wins, and a leading `+` is dropped;
//! 4. anything else goes to `default-gateway` when it is set, and is refused
//!    with 404 `No Route` when it is not.
//!
//! Configuration values (`[guests.<name>.config]` in `softswitch.toml`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `routes` | (none) | `prefix:gateway` pairs, comma separated: `"4822:carrier-pl-landline, 48:carrier-pl"` |
//! | `default-gateway` | (none: 404) | gateway for numbers no prefix matches |
//!
//! A `routes` value that does not parse refuses every call with 500 and a
//! warning in the switch's log, so a typo is seen at once.
//!
//! The decision itself ([`decide`]) sees the switch only through the
//! [`Switch`] trait, so the unit tests at the bottom run natively
//! (`cargo test`) with a stand-in.
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

wit_bindgen::generate!({ world: "router", path: "wit" });

// `RouteRequest` and `RouteResult` are in scope through the world's `use`.
use softswitch::routing::log::Level;
use softswitch::routing::types::{Decision, GatewayTarget, Kind, Reason, Rejection};
use softswitch::routing::{config, directory, log};

/// What a decision needs from the switch. The component uses the WIT
/// imports ([`Imports`]); the unit tests use a stand-in.
pub trait Switch {
    /// This guest's configuration value `key`.
    fn config(&self, key: &str) -> Option<String>;
    /// The login of the local account whose login or phone number is `target`.
    fn local_user(&self, target: &str) -> Option<String>;
    /// A line in the switch's log, tagged with this guest's name.
    fn log(&self, level: Level, message: &str);
}

/// Parses `routes`: `prefix:gateway` pairs separated by commas.
pub fn parse_routes(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut routes = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((prefix, gateway)) = item.split_once(':') else {
            return Err(format!("{item:?} is not prefix:gateway"));
        };
        let (prefix, gateway) = (prefix.trim(), gateway.trim());
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("prefix {prefix:?} is not digits"));
        }
        if gateway.is_empty() {
            return Err(format!("prefix {prefix} has no gateway"));
        }
        routes.push((prefix.to_string(), gateway.to_string()));
    }
    Ok(routes)
}

fn reject(code: u16, reason: &str) -> RouteResult {
    RouteResult {
        decision: Decision::Reject(Rejection {
            code,
            reason: reason.into(),
        }),
        caller_id: None,
    }
}

fn decision(decision: Decision) -> RouteResult {
    RouteResult {
        decision,
        caller_id: None,
    }
}

/// Where `request` goes.
pub fn decide(request: &RouteRequest, switch: &impl Switch) -> RouteResult {
    // 1. Asked again because the user's devices did not take the call.
    match request.reason {
        Reason::Initial => {}
        Reason::NoAnswer | Reason::Unavailable => return reject(480, "Temporarily Unavailable"),
        Reason::Busy => return reject(486, "Busy Here"),
        Reason::Declined => return reject(603, "Decline"),
    }
    let target = request.target.trim();
    if target.is_empty() {
        return reject(484, "Address Incomplete");
    }
    // 2. A local user.
    if let Some(login) = switch.local_user(target) {
        return decision(Decision::ToUser(login));
    }
    // 3. The longest matching prefix of `routes`.
    let routes = match parse_routes(&switch.config("routes").unwrap_or_default()) {
        Ok(routes) => routes,
        Err(e) => {
            switch.log(Level::Warn, &format!("bad `routes` value: {e}"));
            return reject(500, "Bad Routing Configuration");
        }
    };
    let number = target.strip_prefix('+').unwrap_or(target);
    let to_gateway = |gateway: &str| {
        decision(Decision::ToGateway(GatewayTarget {
            gateway: gateway.to_string(),
            number: number.to_string(),
        }))
    };
    if number.bytes().all(|b| b.is_ascii_digit()) {
        let best = routes
            .iter()
            .filter(|(prefix, _)| number.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len());
        if let Some((_, gateway)) = best {
            return to_gateway(gateway);
        }
        // 4. Everything else.
        if let Some(gateway) = switch.config("default-gateway").filter(|g| !g.is_empty()) {
            return to_gateway(&gateway);
        }
    }
    match request.kind {
        Kind::Call | Kind::Message => reject(404, "No Route"),
    }
}

/// The switch as the WIT imports show it.
pub struct Imports;

impl Switch for Imports {
    fn config(&self, key: &str) -> Option<String> {
        config::get(key)
    }

    fn local_user(&self, target: &str) -> Option<String> {
        directory::account_by_login(target)
            .or_else(|| directory::account_by_phone(target))
            .map(|account| account.login)
    }

    fn log(&self, level: Level, message: &str) {
        log::log(level, message);
    }
}

struct Router;

impl Guest for Router {
    fn route(request: RouteRequest) -> RouteResult {
        decide(&request, &Imports)
    }
}

export!(Router);

#[cfg(test)]
mod tests {
    use super::*;
    use softswitch::routing::types::{Caller, Source, Transport};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A switch with a few config values and accounts (login → phone).
    #[derive(Default)]
    struct StandIn {
        config: BTreeMap<String, String>,
        accounts: Vec<(String, String)>,
        logged: RefCell<Vec<String>>,
    }

    impl StandIn {
        fn with(config: &[(&str, &str)]) -> Self {
            StandIn {
                config: config
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                accounts: vec![("alice".into(), "48600111222".into())],
                ..Default::default()
            }
        }
    }

    impl Switch for StandIn {
        fn config(&self, key: &str) -> Option<String> {
            self.config.get(key).cloned()
        }
        fn local_user(&self, target: &str) -> Option<String> {
            self.accounts
                .iter()
                .find(|(login, phone)| login == target || phone == target)
                .map(|(login, _)| login.clone())
        }
        fn log(&self, _level: Level, message: &str) {
            self.logged.borrow_mut().push(message.to_string());
        }
    }

    fn call(target: &str, reason: Reason) -> RouteRequest {
        RouteRequest {
            kind: Kind::Call,
            caller: Caller {
                login: "bob".into(),
                display_name: None,
                authenticated: true,
            },
            target: target.into(),
            source: Source {
                transport: Transport::Tls,
                address: "192.0.2.1:5061".into(),
            },
            dialplan_rule: String::new(),
            reason,
        }
    }

    fn decided(target: &str, switch: &StandIn) -> Decision {
        decide(&call(target, Reason::Initial), switch).decision
    }

    fn gateway(decision: Decision) -> (String, String) {
        match decision {
            Decision::ToGateway(g) => (g.gateway, g.number),
            other => panic!("expected to-gateway, got {other:?}"),
        }
    }

    fn rejected(decision: Decision) -> u16 {
        match decision {
            Decision::Reject(r) => r.code,
            other => panic!("expected reject, got {other:?}"),
        }
    }

    #[test]
    fn local_users_by_login_or_phone() {
        let switch = StandIn::with(&[("routes", "48:carrier-pl")]);
        for target in ["alice", "48600111222"] {
            match decided(target, &switch) {
                Decision::ToUser(login) => assert_eq!(login, "alice"),
                other => panic!("{target}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let switch = StandIn::with(&[("routes", "48:carrier-pl, 4822:carrier-pl-landline")]);
        assert_eq!(
            gateway(decided("+48221234567", &switch)),
            ("carrier-pl-landline".into(), "48221234567".into())
        );
        assert_eq!(
            gateway(decided("48601234567", &switch)),
            ("carrier-pl".into(), "48601234567".into())
        );
    }

    #[test]
    fn no_route_is_404_unless_there_is_a_default_gateway() {
        let switch = StandIn::with(&[("routes", "48:carrier-pl")]);
        assert_eq!(rejected(decided("15551234567", &switch)), 404);
        assert_eq!(rejected(decided("carol", &switch)), 404);
        let switch = StandIn::with(&[("default-gateway", "world")]);
        assert_eq!(
            gateway(decided("15551234567", &switch)),
            ("world".into(), "15551234567".into())
        );
    }

    #[test]
    fn retries_end_with_the_matching_status() {
        let switch = StandIn::with(&[]);
        for (reason, code) in [
            (Reason::NoAnswer, 480),
            (Reason::Unavailable, 480),
            (Reason::Busy, 486),
            (Reason::Declined, 603),
        ] {
            assert_eq!(
                rejected(decide(&call("alice", reason), &switch).decision),
                code
            );
        }
    }

    #[test]
    fn a_bad_routes_value_is_500_and_logged() {
        let switch = StandIn::with(&[("routes", "48=carrier-pl")]);
        assert_eq!(rejected(decided("4812", &switch)), 500);
        assert!(switch.logged.borrow()[0].contains("48=carrier-pl"));
        assert!(parse_routes("x:gw").is_err());
        assert!(parse_routes("48:").is_err());
        assert_eq!(parse_routes(" ").unwrap(), vec![]);
    }
}
