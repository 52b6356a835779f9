//! WIT ↔ dialplan glue shared by the routing guests.
//!
//! Included into each guest with `#[path = "../../glue/glue.rs"] mod glue;`
//! rather than being a crate of its own: `wit_bindgen::generate!` must expand
//! inside the component crate that exports `route`, so the bindings cannot
//! live in a shared library. The including crate provides
//!
//! ```text
//! fn decide(req: &softswitch_dialplan::Request, dir: &impl softswitch_dialplan::Directory)
//!     -> softswitch_dialplan::RouteResult
//! ```
//!
//! at its root; everything else (bindings, conversions, the `Directory` over
//! the `directory` imports, the export) is here, once.

#![allow(dead_code, reason = "some guests use only part of the helpers")]
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

use alloc::string::String;

use softswitch_dialplan as dp;

wit_bindgen::generate!({
    world: "router",
    path: "../../../wit/routing/0.1.0",
});

use softswitch::routing::{config as wit_config, directory, log as wit_log, types};

pub use wit_log::Level;

/// The `directory` imports seen as the dialplan's [`dp::Directory`].
pub struct WitDirectory;

impl dp::Directory for WitDirectory {
    fn account_by_login(&self, login: &str) -> Option<dp::Account> {
        directory::account_by_login(login).map(account)
    }

    fn account_by_phone(&self, phone: &str) -> Option<dp::Account> {
        directory::account_by_phone(phone).map(account)
    }

    fn account_by_username(&self, username: &str) -> Option<dp::Account> {
        directory::account_by_username(username).map(account)
    }

    fn is_registered(&self, login: &str) -> bool {
        directory::is_registered(login)
    }

    fn gateway_for(&self, number: &str) -> Option<dp::Gateway> {
        directory::gateway_for(number).map(|g| dp::Gateway {
            name: g.name,
            prefix: g.prefix,
        })
    }
}

/// This guest's configuration value (`[guests.<name>.config]` on the host).
pub fn config(key: &str) -> Option<String> {
    wit_config::get(key)
}

pub fn log(level: Level, message: &str) {
    wit_log::log(level, message);
}

fn account(a: directory::Account) -> dp::Account {
    dp::Account {
        login: a.login,
        phone: a.phone,
        username: a.username,
        display_name: a.display_name,
        voicemail_enabled: a.voicemail_enabled,
    }
}

pub fn request_from_wit(r: types::RouteRequest) -> dp::Request {
    dp::Request {
        kind: match r.kind {
            types::Kind::Call => dp::Kind::Call,
            types::Kind::Message => dp::Kind::Message,
        },
        caller: dp::Caller {
            login: r.caller.login,
            display_name: r.caller.display_name,
            authenticated: r.caller.authenticated,
        },
        target: r.target,
        dialplan_rule: r.dialplan_rule,
        reason: match r.reason {
            types::Reason::Initial => dp::Reason::Initial,
            types::Reason::NoAnswer => dp::Reason::NoAnswer,
            types::Reason::Busy => dp::Reason::Busy,
            types::Reason::Declined => dp::Reason::Declined,
            types::Reason::Unavailable => dp::Reason::Unavailable,
        },
    }
}

pub fn result_to_wit(r: dp::RouteResult) -> types::RouteResult {
    types::RouteResult {
        decision: match r.decision {
            dp::Decision::ToUser(login) => types::Decision::ToUser(login),
            dp::Decision::ToGateway { gateway, number } => {
                types::Decision::ToGateway(types::GatewayTarget { gateway, number })
            }
            dp::Decision::ToService { name, args } => {
                types::Decision::ToService(types::ServiceTarget { name, args })
            }
            dp::Decision::Reject { code, reason } => {
                types::Decision::Reject(types::Rejection { code, reason })
            }
        },
        caller_id: r.caller_id.map(|c| types::CallerId {
            display_name: c.display_name,
            user: c.user,
        }),
    }
}

struct Router;

impl Guest for Router {
    fn route(request: RouteRequest) -> RouteResult {
        let req = request_from_wit(request);
        // No per-call log line here: formatting one inside the guest costs more
        // than the decision itself, and the host logs every decision (debug)
        // with structured fields anyway.
        result_to_wit(crate::decide(&req, &WitDirectory))
    }
}

export!(Router);
