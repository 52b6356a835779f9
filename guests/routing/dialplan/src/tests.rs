use super::memory::MemoryDirectory;
use super::*;

fn account(login: &str, phone: Option<&str>, username: Option<&str>, vm: bool) -> Account {
    Account {
        login: login.into(),
        phone: phone.map(Into::into),
        username: username.map(Into::into),
        display_name: None,
        voicemail_enabled: vm,
    }
}

fn directory() -> MemoryDirectory {
    MemoryDirectory::new()
        .with_account(account("alice", Some("4811111"), Some("ally"), true))
        .with_account(account("bob", None, Some("bobby"), false))
        .with_account(account("4822222", Some("4822222"), None, false))
        // Looks like alice's phone: login must win over phone.
        .with_account(account("4811111", None, None, false))
        .with_gateway("world", "")
        .with_gateway("poland", "48")
        .with_gateway("warsaw", "4822")
}

fn request(caller: &str, target: &str) -> Request {
    Request {
        kind: Kind::Call,
        caller: Caller {
            login: caller.into(),
            display_name: None,
            authenticated: true,
        },
        target: target.into(),
        dialplan_rule: DEFAULT_RULE.into(),
        reason: Reason::Initial,
    }
}

fn with_reason(mut req: Request, reason: Reason) -> Request {
    req.reason = reason;
    req
}

fn message(mut req: Request) -> Request {
    req.kind = Kind::Message;
    req
}

fn decide(req: &Request) -> Decision {
    route(req, &directory()).decision
}

fn reject(code: u16, reason: &str) -> Decision {
    Decision::reject(code, reason)
}

fn service(name: &str, args: &[&str]) -> Decision {
    Decision::ToService {
        name: name.into(),
        args: args.iter().map(|a| String::from(*a)).collect(),
    }
}

fn gateway(name: &str, number: &str) -> Decision {
    Decision::ToGateway {
        gateway: name.into(),
        number: number.into(),
    }
}

fn user(login: &str) -> Decision {
    Decision::ToUser(login.into())
}

// --- rule grammar ---

#[test]
fn parses_the_default_rule() {
    assert_eq!(
        parse_rule(DEFAULT_RULE),
        Ok(Rule {
            from: "int",
            to: "",
            prefix: "onnet"
        })
    );
}

#[test]
fn empty_rule_is_the_default() {
    assert_eq!(parse_rule(""), parse_rule(DEFAULT_RULE));
    assert_eq!(parse_rule("  \t "), parse_rule(DEFAULT_RULE));
}

#[test]
fn rule_tolerates_whitespace_and_case() {
    let expected = Ok(Rule {
        from: "int",
        to: "",
        prefix: "onnet",
    });
    assert_eq!(parse_rule("  DP: int ->   OR   onnet  "), expected);
    assert_eq!(parse_rule("DP:int->OR onnet"), expected);
    assert_eq!(parse_rule("dp:int-> or onnet"), expected);
    assert_eq!(parse_rule("DP:int->\tOR\nonnet"), expected);
}

#[test]
fn rule_with_replacement() {
    assert_eq!(
        parse_rule("DP:00->int OR onnet"),
        Ok(Rule {
            from: "00",
            to: "int",
            prefix: "onnet"
        })
    );
    assert_eq!(
        parse_rule("DP: 0 -> 48 OR onnet"),
        Ok(Rule {
            from: "0",
            to: "48",
            prefix: "onnet"
        })
    );
}

#[test]
fn bad_rules() {
    for bad in [
        "int-> OR onnet",          // no DP:
        "DP int-> OR onnet",       // no colon
        "DP:int OR onnet",         // no arrow
        "DP:int-> onnet",          // no OR
        "DP:int-> OR",             // no prefix
        "DP:-> OR onnet",          // empty from
        "DP:  -> OR onnet",        // blank from
        "DP:i nt-> OR onnet",      // from with a space
        "DP:int->a b OR onnet",    // two words before OR
        "DP:int-> OR onnet extra", // trailing garbage
        "DP:int->x->y OR onnet",   // two arrows
        "DP:int-> AND onnet",      // wrong keyword
        "DÉ:int-> OR onnet",       // non-ASCII where DP: belongs
    ] {
        assert_eq!(parse_rule(bad), Err(BadRule), "{bad:?}");
    }
}

#[test]
fn applies_rules() {
    let default = parse_rule(DEFAULT_RULE).unwrap();
    assert_eq!(apply_rule(&default, "int4812345"), "4812345");
    assert_eq!(apply_rule(&default, "alice"), "onnetalice");
    assert_eq!(apply_rule(&default, "950"), "onnet950");
    assert_eq!(apply_rule(&default, "int"), "");
    assert_eq!(apply_rule(&default, ""), "onnet");
    // Only a leading `from` counts.
    assert_eq!(apply_rule(&default, "printer"), "onnetprinter");
    let replace = parse_rule("DP:00->int OR onnet").unwrap();
    assert_eq!(apply_rule(&replace, "0048123"), "int48123");
    assert_eq!(apply_rule(&replace, "48123"), "onnet48123");
}

#[test]
fn classifies_destinations() {
    let default = parse_rule(DEFAULT_RULE).unwrap();
    assert_eq!(
        destination(&default, "int4812"),
        Destination::Offnet("4812".into())
    );
    assert_eq!(
        destination(&default, "alice"),
        Destination::Onnet("alice".into())
    );
    assert_eq!(destination(&default, "alice").as_str(), "alice");
    // A rule whose replacement lands ONNET.
    let local = parse_rule("DP:0->onnet OR onnet").unwrap();
    assert_eq!(
        destination(&local, "0950"),
        Destination::Onnet("950".into())
    );
}

#[test]
fn unparseable_rule_rejects_500() {
    let mut req = request("alice", "bob");
    req.dialplan_rule = "nonsense".into();
    assert_eq!(
        route(&req, &directory()),
        RouteResult {
            decision: reject(500, "bad dialing-plan rule"),
            caller_id: None
        }
    );
}

// --- ONNET ---

#[test]
fn onnet_user_by_login_phone_username() {
    assert_eq!(decide(&request("bob", "alice")), user("alice"));
    assert_eq!(decide(&request("bob", "4822222")), user("4822222"));
    assert_eq!(decide(&request("bob", "ally")), user("alice"));
    assert_eq!(decide(&request("alice", "bobby")), user("bob"));
}

#[test]
fn login_wins_over_phone() {
    assert_eq!(decide(&request("bob", "4811111")), user("4811111"));
}

#[test]
fn onnet_has_no_caller_id() {
    let result = route(&request("alice", "bob"), &directory());
    assert_eq!(result.caller_id, None);
}

#[test]
fn onnet_unknown_user_is_404() {
    assert_eq!(decide(&request("alice", "carol")), reject(404, "Not Found"));
}

#[test]
fn empty_onnet_is_484() {
    assert_eq!(
        decide(&request("alice", "")),
        reject(484, "Address Incomplete")
    );
    let mut req = request("alice", "0");
    req.dialplan_rule = "DP:0->onnet OR onnet".into();
    assert_eq!(decide(&req), reject(484, "Address Incomplete"));
}

#[test]
fn messages_to_users() {
    assert_eq!(decide(&message(request("bob", "alice"))), user("alice"));
    assert_eq!(
        decide(&message(request("bob", "carol"))),
        reject(404, "Not Found")
    );
}

#[test]
fn voicemail_services() {
    assert_eq!(
        decide(&request("alice", "950")),
        service("voicemail", &["alice"])
    );
    assert_eq!(
        decide(&request("alice", "950msg230")),
        service("voicemail-playback", &["alice", "230"])
    );
    assert_eq!(
        decide(&request("alice", "750")),
        service("greeting", &["alice"])
    );
}

#[test]
fn services_have_no_caller_id() {
    assert_eq!(
        route(&request("alice", "950"), &directory()).caller_id,
        None
    );
}

#[test]
fn malformed_playback_is_a_user_lookup() {
    assert_eq!(
        decide(&request("alice", "950msg")),
        reject(404, "Not Found")
    );
    assert_eq!(
        decide(&request("alice", "950msg12a")),
        reject(404, "Not Found")
    );
    assert_eq!(decide(&request("alice", "9500")), reject(404, "Not Found"));
}

#[test]
fn services_are_for_calls_only() {
    for target in ["950", "950msg230", "750"] {
        assert_eq!(
            decide(&message(request("alice", target))),
            reject(488, "Not Acceptable Here"),
            "{target}"
        );
    }
}

#[test]
fn service_dialled_with_int_is_offnet() {
    assert_eq!(decide(&request("alice", "int950")), gateway("world", "950"));
}

// --- retries ---

#[test]
fn retry_goes_to_voicemail_when_enabled() {
    for reason in [
        Reason::NoAnswer,
        Reason::Busy,
        Reason::Declined,
        Reason::Unavailable,
    ] {
        assert_eq!(
            decide(&with_reason(request("bob", "alice"), reason)),
            service("voicemail-deposit", &["alice"]),
            "{reason:?}"
        );
        // Callee found by username: the deposit names the login.
        assert_eq!(
            decide(&with_reason(request("bob", "ally"), reason)),
            service("voicemail-deposit", &["alice"]),
            "{reason:?}"
        );
    }
}

#[test]
fn retry_without_voicemail_rejects_with_the_reason() {
    let cases = [
        (Reason::NoAnswer, 480, "Temporarily Unavailable"),
        (Reason::Unavailable, 480, "Temporarily Unavailable"),
        (Reason::Busy, 486, "Busy Here"),
        (Reason::Declined, 603, "Decline"),
    ];
    for (reason, code, text) in cases {
        assert_eq!(
            decide(&with_reason(request("alice", "bob"), reason)),
            reject(code, text),
            "{reason:?}"
        );
    }
}

#[test]
fn retry_of_a_message_never_goes_to_voicemail() {
    assert_eq!(
        decide(&with_reason(message(request("bob", "alice")), Reason::Busy)),
        reject(486, "Busy Here")
    );
}

#[test]
fn retry_never_reroutes_elsewhere() {
    assert_eq!(
        decide(&with_reason(request("alice", "int4812"), Reason::NoAnswer)),
        reject(480, "Temporarily Unavailable")
    );
    assert_eq!(
        decide(&with_reason(request("alice", "950"), Reason::Busy)),
        reject(486, "Busy Here")
    );
    assert_eq!(
        decide(&with_reason(request("alice", "carol"), Reason::Busy)),
        reject(404, "Not Found")
    );
}

#[test]
fn retry_result_has_no_caller_id() {
    let req = with_reason(request("alice", "int4812"), Reason::Declined);
    assert_eq!(route(&req, &directory()).caller_id, None);
}

// --- OFFNET ---

#[test]
fn offnet_longest_prefix_gateway() {
    assert_eq!(
        decide(&request("4822222", "int4822123")),
        gateway("warsaw", "4822123")
    );
    assert_eq!(
        decide(&request("4822222", "int4812345")),
        gateway("poland", "4812345")
    );
    assert_eq!(
        decide(&request("4822222", "int14155550")),
        gateway("world", "14155550")
    );
}

#[test]
fn offnet_without_gateway_is_404() {
    let dir = MemoryDirectory::new().with_gateway("poland", "48");
    assert_eq!(
        route(&request("alice", "int14155550"), &dir),
        RouteResult {
            decision: reject(404, "No Route"),
            caller_id: None
        }
    );
}

#[test]
fn empty_offnet_number_is_484() {
    assert_eq!(
        decide(&request("alice", "int")),
        reject(484, "Address Incomplete")
    );
}

#[test]
fn messages_go_offnet_too() {
    assert_eq!(
        decide(&message(request("4822222", "int4812345"))),
        gateway("poland", "4812345")
    );
}

#[test]
fn replacement_rule_goes_offnet() {
    let mut req = request("4822222", "004812345");
    req.dialplan_rule = "DP:00-> OR onnet".into();
    assert_eq!(decide(&req), gateway("poland", "4812345"));
}

// --- caller ID ---

fn caller_id(n: &str) -> Option<CallerId> {
    Some(CallerId {
        display_name: Some(n.into()),
        user: Some(n.into()),
    })
}

fn offnet_from(login: &str, display_name: Option<&str>) -> Option<CallerId> {
    let mut req = request(login, "int4812345");
    req.caller.display_name = display_name.map(Into::into);
    let result = route(&req, &directory());
    assert_eq!(result.decision, gateway("poland", "4812345"));
    result.caller_id
}

#[test]
fn numeric_login_keeps_its_own_caller_id() {
    assert_eq!(offnet_from("4822222", None), None);
    assert_eq!(offnet_from("4822222", Some("4899999")), None);
}

#[test]
fn named_login_presents_the_account_phone() {
    assert_eq!(offnet_from("alice", None), caller_id("4811111"));
    // The account's phone beats whatever the client put in its display name.
    assert_eq!(offnet_from("alice", Some("4899999")), caller_id("4811111"));
}

#[test]
fn named_login_without_phone_presents_a_numeric_display_name() {
    assert_eq!(offnet_from("bob", Some("4833333")), caller_id("4833333"));
    assert_eq!(offnet_from("bob", Some("Bob")), None);
    assert_eq!(offnet_from("bob", Some("")), None);
    assert_eq!(offnet_from("bob", None), None);
}

#[test]
fn unknown_or_empty_login_uses_the_display_name() {
    assert_eq!(
        offnet_from("mallory", Some("4844444")),
        caller_id("4844444")
    );
    assert_eq!(offnet_from("", Some("4844444")), caller_id("4844444"));
    assert_eq!(offnet_from("", None), None);
}

#[test]
fn empty_phone_is_no_phone() {
    let dir = MemoryDirectory::new()
        .with_account(account("carol", Some(""), None, false))
        .with_gateway("world", "");
    let mut req = request("carol", "int1");
    req.caller.display_name = Some("4855555".into());
    assert_eq!(route(&req, &dir).caller_id, caller_id("4855555"));
}

// --- helpers ---

#[test]
fn digits() {
    assert!(is_all_digits("0123456789"));
    assert!(!is_all_digits(""));
    assert!(!is_all_digits("+48"));
    assert!(!is_all_digits("48 12"));
    assert!(!is_all_digits("٤٨")); // non-ASCII digits are not a phone number
}

#[test]
fn memory_directory() {
    let dir = directory().with_registered("alice");
    assert!(dir.is_registered("alice"));
    assert!(!dir.is_registered("bob"));
    assert_eq!(dir.gateway_for("4822").unwrap().name, "warsaw");
    assert_eq!(MemoryDirectory::new().gateway_for("1"), None);
}

#[test]
fn bad_rule_displays() {
    assert!(BadRule.to_string().contains("DP:<from>-><to> OR <prefix>"));
}
