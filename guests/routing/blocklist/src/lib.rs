//! A routing guest that refuses configured callers and number prefixes, then
//! routes everything else with the default dialplan.
//!
//! It shows how an operator swaps the router without touching the switch:
//! same world, same imports, its own configuration values:
//!
//! ```toml
//! [routing]
//! guest = "blocklist"
//!
//! [guests.blocklist]
//! path = "guests/target/wasm32-wasip2/release/routing_blocklist.wasm"
//! world = "routing"
//!
//! [guests.blocklist.config]
//! blocked-callers = "mallory, eve"
//! blocked-prefixes = "4870, 1900"
//! ```
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use softswitch_guest_rt as _;

#[path = "../../glue/glue.rs"]
mod glue;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use softswitch_dialplan::{self as dp, Decision, Directory, Request, RouteResult};

/// Configuration key: comma-separated caller logins.
pub const BLOCKED_CALLERS: &str = "blocked-callers";
/// Configuration key: comma-separated number prefixes.
pub const BLOCKED_PREFIXES: &str = "blocked-prefixes";

/// What is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    callers: Vec<String>,
    prefixes: Vec<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked<'a> {
    Caller(&'a str),
    Prefix(&'a str),
}

impl Blocklist {
    /// Parses the two configuration values; blanks around items and empty
    /// items (a trailing comma) are ignored, since an empty prefix would
    /// block every call.
    pub fn parse(callers: Option<&str>, prefixes: Option<&str>) -> Self {
        fn items(list: Option<&str>) -> Vec<String> {
            list.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(String::from)
                .collect()
        }
        Blocklist {
            callers: items(callers),
            prefixes: items(prefixes),
        }
    }

    /// Matches prefixes both against the target as dialled and against the
    /// number the dialing-plan rule produces (`int`/`onnet` stripped), so
    /// `4870` blocks `int4870…` as well as a client that dials `4870…`
    /// directly or through a rule that rewrites `0070…`.
    pub fn check(&self, req: &Request) -> Option<Blocked<'_>> {
        if let Some(caller) = self.callers.iter().find(|c| **c == req.caller.login) {
            return Some(Blocked::Caller(caller));
        }
        let routed = dp::parse_rule(&req.dialplan_rule)
            .ok()
            .map(|rule| dp::destination(&rule, &req.target));
        self.prefixes
            .iter()
            .find(|prefix| {
                req.target.starts_with(prefix.as_str())
                    || routed
                        .as_ref()
                        .is_some_and(|d| d.as_str().starts_with(prefix.as_str()))
            })
            .map(|prefix| Blocked::Prefix(prefix))
    }
}

/// The whole decision, without the `config` imports so it runs natively.
pub fn decide_with(list: &Blocklist, req: &Request, dir: &impl Directory) -> RouteResult {
    match list.check(req) {
        Some(_) => Decision::reject(403, "Blocked").into(),
        None => dp::route(req, dir),
    }
}

/// Reads the configuration on every call: the host may change it without
/// re-instantiating the guest, and two look-ups cost far less than a call.
fn decide(req: &Request, dir: &impl Directory) -> RouteResult {
    let list = Blocklist::parse(
        glue::config(BLOCKED_CALLERS).as_deref(),
        glue::config(BLOCKED_PREFIXES).as_deref(),
    );
    if let Some(why) = list.check(req) {
        glue::log(glue::Level::Info, &format!("blocked: {why:?}"));
    }
    decide_with(&list, req, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp::memory::MemoryDirectory;

    fn request(caller: &str, target: &str) -> Request {
        Request {
            kind: dp::Kind::Call,
            caller: dp::Caller {
                login: caller.into(),
                display_name: None,
                authenticated: true,
            },
            target: target.into(),
            dialplan_rule: dp::DEFAULT_RULE.into(),
            reason: dp::Reason::Initial,
        }
    }

    fn list() -> Blocklist {
        Blocklist::parse(Some(" mallory ,eve,, "), Some("4870, 1900 ,,"))
    }

    fn directory() -> MemoryDirectory {
        MemoryDirectory::new()
            .with_account(dp::Account {
                login: "alice".into(),
                ..Default::default()
            })
            .with_gateway("world", "")
    }

    #[test]
    fn parses_comma_lists() {
        let list = list();
        assert_eq!(list.callers, ["mallory", "eve"]);
        assert_eq!(list.prefixes, ["4870", "1900"]);
        assert_eq!(Blocklist::parse(None, None), Blocklist::default());
        assert_eq!(
            Blocklist::parse(Some(""), Some(" , ")),
            Blocklist::default()
        );
    }

    #[test]
    fn empty_list_blocks_nothing() {
        let list = Blocklist::default();
        assert_eq!(list.check(&request("mallory", "int4870")), None);
        assert_eq!(list.check(&request("", "")), None);
    }

    #[test]
    fn blocks_callers_by_exact_login() {
        let list = list();
        assert_eq!(
            list.check(&request("mallory", "alice")),
            Some(Blocked::Caller("mallory"))
        );
        assert_eq!(
            list.check(&request("eve", "int1")),
            Some(Blocked::Caller("eve"))
        );
        assert_eq!(list.check(&request("malloryx", "alice")), None);
        assert_eq!(list.check(&request("Mallory", "alice")), None);
    }

    #[test]
    fn blocks_prefix_after_the_rule() {
        let list = list();
        assert_eq!(
            list.check(&request("alice", "int4870123")),
            Some(Blocked::Prefix("4870"))
        );
        assert_eq!(
            list.check(&request("alice", "int1900555")),
            Some(Blocked::Prefix("1900"))
        );
        // ONNET with the `onnet` marker stripped.
        assert_eq!(
            list.check(&request("alice", "4870999")),
            Some(Blocked::Prefix("4870"))
        );
    }

    #[test]
    fn blocks_prefix_as_dialled() {
        let list = Blocklist::parse(None, Some("int99"));
        assert_eq!(
            list.check(&request("alice", "int9912")),
            Some(Blocked::Prefix("int99"))
        );
    }

    #[test]
    fn blocks_prefix_rewritten_by_a_custom_rule() {
        let list = list();
        let mut req = request("alice", "004870123");
        req.dialplan_rule = "DP:00-> OR onnet".into();
        assert_eq!(list.check(&req), Some(Blocked::Prefix("4870")));
    }

    #[test]
    fn bad_rule_still_checks_the_dialled_target() {
        let list = list();
        let mut req = request("alice", "4870123");
        req.dialplan_rule = "garbage".into();
        assert_eq!(list.check(&req), Some(Blocked::Prefix("4870")));
        req.target = "int4870123".into();
        assert_eq!(list.check(&req), None);
        assert_eq!(
            decide_with(&list, &req, &directory()).decision,
            Decision::reject(500, "bad dialing-plan rule")
        );
    }

    #[test]
    fn other_numbers_pass() {
        let list = list();
        assert_eq!(list.check(&request("alice", "int4871")), None);
        assert_eq!(list.check(&request("alice", "int1487")), None);
        assert_eq!(list.check(&request("alice", "bob")), None);
    }

    #[test]
    fn blocked_is_403() {
        let result = decide_with(&list(), &request("alice", "int4870123"), &directory());
        assert_eq!(
            result,
            RouteResult {
                decision: Decision::reject(403, "Blocked"),
                caller_id: None
            }
        );
    }

    #[test]
    fn unblocked_routes_like_the_default_dialplan() {
        let dir = directory();
        for target in ["alice", "int4812", "950", "nobody", "int"] {
            let req = request("alice", target);
            assert_eq!(decide_with(&list(), &req, &dir), dp::route(&req, &dir));
        }
    }
}
