//! The default routing guest: the dialplan of SPEC §6, unchanged.
//!
//! It exists so that the switch's own routing goes through the same Wasm
//! boundary as any operator's router; `routing-blocklist` shows how to build
//! on it.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use softswitch_guest_rt as _;

#[path = "../../glue/glue.rs"]
mod glue;

use softswitch_dialplan::{Directory, Request, RouteResult};

fn decide(req: &Request, dir: &impl Directory) -> RouteResult {
    softswitch_dialplan::route(req, dir)
}

#[cfg(test)]
mod tests {
    use super::glue::{request_from_wit, result_to_wit, softswitch::routing::types};
    use softswitch_dialplan::{self as dp, memory::MemoryDirectory};

    fn wit_request(target: &str, reason: types::Reason) -> types::RouteRequest {
        types::RouteRequest {
            kind: types::Kind::Call,
            caller: types::Caller {
                login: "alice".into(),
                display_name: Some("Alice".into()),
                authenticated: true,
            },
            target: target.into(),
            source: types::Source {
                transport: types::Transport::Tls,
                address: "192.0.2.1:5061".into(),
            },
            dialplan_rule: String::new(),
            reason,
        }
    }

    #[test]
    fn request_conversion_keeps_every_field() {
        let req = request_from_wit(wit_request("int4812", types::Reason::Busy));
        assert_eq!(
            req,
            dp::Request {
                kind: dp::Kind::Call,
                caller: dp::Caller {
                    login: "alice".into(),
                    display_name: Some("Alice".into()),
                    authenticated: true,
                },
                target: "int4812".into(),
                dialplan_rule: String::new(),
                reason: dp::Reason::Busy,
            }
        );
    }

    #[test]
    fn result_conversion_keeps_every_variant() {
        let cases = [
            dp::Decision::ToUser("bob".into()),
            dp::Decision::ToGateway {
                gateway: "pl".into(),
                number: "4812".into(),
            },
            dp::Decision::ToService {
                name: "voicemail-playback".into(),
                args: vec!["alice".into(), "230".into()],
            },
            dp::Decision::reject(486, "Busy Here"),
        ];
        for decision in cases {
            let wit = result_to_wit(dp::RouteResult {
                decision: decision.clone(),
                caller_id: Some(dp::CallerId {
                    display_name: Some("48".into()),
                    user: None,
                }),
            });
            let back = match wit.decision {
                types::Decision::ToUser(login) => dp::Decision::ToUser(login),
                types::Decision::ToGateway(g) => dp::Decision::ToGateway {
                    gateway: g.gateway,
                    number: g.number,
                },
                types::Decision::ToService(s) => dp::Decision::ToService {
                    name: s.name,
                    args: s.args,
                },
                types::Decision::Reject(r) => dp::Decision::Reject {
                    code: r.code,
                    reason: r.reason,
                },
            };
            assert_eq!(back, decision);
            let id = wit.caller_id.unwrap();
            assert_eq!((id.display_name.as_deref(), id.user), (Some("48"), None));
        }
    }

    #[test]
    fn decides_like_the_dialplan() {
        let dir = MemoryDirectory::new().with_gateway("pl", "48");
        let req = request_from_wit(wit_request("int4812", types::Reason::Initial));
        assert_eq!(super::decide(&req, &dir), dp::route(&req, &dir));
    }
}
