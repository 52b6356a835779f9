//! Calls through the B2BUA, seen from outside: SIPp callers, SIPp devices
//! registered as callees, a SIPp carrier; call records read back with the CLI.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::sipp::*;

/// A running switch with alice and bob; `extra` adds config sections.
async fn switch(extra: &str) -> Switch {
    Switch::start_with("", extra).await
}

/// A SIPp device registered (over UDP) as `login` (password `<login>-pw`)
/// for 20 s, answering calls with the scenario `file`; returns it and its
/// message trace.
fn callee(switch: &Switch, login: &str, file: &std::path::Path) -> (Device, std::path::PathBuf) {
    device_with(switch, login, &format!("{login}-pw"), "u1", 20_000, file)
}

/// The newest call record of `login` (waited for) has caller, callee,
/// gateway, disposition and code as `expected`.
async fn first_cdr_is(switch: &Switch, login: &str, expected: [&str; 5]) {
    let lines = wait_cdrs(switch, login, 1).await;
    let c = columns(&lines[0]);
    assert_eq!(&c[1..6], expected, "{lines:?}");
}

/// dora dials `number` (answered calls last 200 ms); (success, trace).
fn dora_calls(switch: &Switch, number: &str) -> (bool, String) {
    let users = switch.users("dora.csv", "dora", "dora-pw");
    sipp(
        switch,
        &scenario("call_uac.xml"),
        &["-inf", users.to_str().unwrap(), "-s", number, "-d", "200"],
    )
}

/// Waits for the SIPp carrier and asserts its checks passed; its log.
fn carrier_passed(switch: &Switch, mut carrier: Device) -> String {
    let status = carrier.0.wait().unwrap();
    let carrier_log = std::fs::read_to_string(switch.site.path("carrier.log")).unwrap_or_default();
    let carrier_err = std::fs::read_to_string(switch.site.path("carrier.err")).unwrap_or_default();
    assert!(
        status.success(),
        "the carrier's checks failed ({status}):\n{carrier_err}\n{carrier_log}"
    );
    carrier_log
}

/// Columns of a `cdr list` line: start, caller, callee, gateway,
/// disposition, status, seconds, end reason.
fn columns(line: &str) -> Vec<&str> {
    line.split('\t').collect()
}

/// No call, dialog or transaction left behind once the calls are over.
async fn nothing_leaks(switch: &Switch) {
    switch
        .wait_metric("softswitch_calls_active", |v| v == 0)
        .await;
    switch
        .wait_metric("softswitch_sip_dialogs", |v| v == 0)
        .await;
    switch
        .wait_metric("softswitch_media_ports_in_use", |v| v == 0)
        .await;
}

/// A caller run (alice calling `to`) with the scenario `file`; `-d` is the hold time.
fn call(switch: &Switch, file: &std::path::Path, to: &str, hold_ms: u64) -> (bool, String) {
    let users = switch.users(&format!("alice-{}.csv", rand_suffix()), "alice", "alice-pw");
    sipp(
        switch,
        file,
        &[
            "-inf",
            users.to_str().unwrap(),
            "-s",
            to,
            "-d",
            &hold_ms.to_string(),
        ],
    )
}

fn expect_failure(switch: &Switch, code: u16) -> std::path::PathBuf {
    switch.variant(
        "call_uac_fail.xml",
        "<recv response=\"CODE\"",
        &format!("<recv response=\"{code}\""),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answered_call_ends_with_a_bye_from_either_side() {
    let switch = switch("").await;
    let (_bob, bob_trace) = callee(&switch, "bob", &scenario("call_uas.xml"));
    switch.wait_registered(1).await;

    let (ok, trace) = call(&switch, &scenario("call_uac.xml"), "bob", 200);
    assert!(ok, "caller failed:\n{trace}\n{}", switch.log());
    // The B2BUA's legs are separate: bob sees neither alice's Call-ID nor her Contact.
    let bob_side = std::fs::read_to_string(&bob_trace).unwrap_or_default();
    assert!(bob_side.contains("INVITE sip:bob@"), "{bob_side}");
    assert!(
        bob_side.contains("From: \"Caller alice\" <sip:alice@localhost>"),
        "{bob_side}"
    );
    let caller_call_id = trace
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .expect("call id")
        .trim()
        .to_string();
    assert!(
        !bob_side.contains(&caller_call_id),
        "Call-ID leaked to the callee"
    );

    let lines = wait_cdrs(&switch, "alice", 1).await;
    let c = columns(&lines[0]);
    assert_eq!(
        &c[1..6],
        ["alice", "bob", "-", "answered", "200"],
        "{lines:?}"
    );
    assert_eq!(c[7], "caller");
    drop(_bob);

    // Now the callee hangs up.
    let (_carol, _) = callee(&switch, "carol", &scenario("call_uas_bye.xml"));
    switch.wait_registered(2).await;
    let (ok, trace) = call(&switch, &scenario("call_uac_wait_bye.xml"), "carol", 0);
    assert!(ok, "caller failed:\n{trace}\n{}", switch.log());
    let lines = wait_cdrs(&switch, "alice", 2).await;
    let c = columns(&lines[0]);
    assert_eq!(&c[4..6], ["answered", "200"], "{lines:?}");
    assert_eq!(c[7], "callee");
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_cancelled_unanswered_offline_and_unknown_calls_fail_the_right_way() {
    let switch = switch("[calls]\nno_answer_secs = 2\n").await;
    // Without voicemail, which would answer each of these calls.
    for login in ["bob", "carol"] {
        switch
            .site
            .ok(&["account", "set", login, "--voicemail", "off"]);
    }

    // bob offline, nobody unknown to the directory.
    let (ok, trace) = call(&switch, &expect_failure(&switch, 480), "bob", 0);
    assert!(ok, "offline callee:\n{trace}\n{}", switch.log());
    let (ok, trace) = call(&switch, &expect_failure(&switch, 404), "nobody", 0);
    assert!(ok, "unknown callee:\n{trace}\n{}", switch.log());

    let (busy, _) = callee(&switch, "bob", &scenario("call_uas_busy.xml"));
    switch.wait_registered(1).await;
    let (ok, trace) = call(&switch, &expect_failure(&switch, 486), "bob", 0);
    assert!(ok, "busy callee:\n{trace}\n{}", switch.log());
    drop(busy);

    // Another callee: bob's busy device may linger as a binding whose
    // INVITEs go unanswered until Timer B.
    let (ringing, ring_trace) = callee(&switch, "carol", &scenario("call_uas_ring.xml"));
    switch.wait_registered(2).await;
    let (ok, trace) = call(&switch, &scenario("call_uac_cancel.xml"), "carol", 0);
    assert!(ok, "cancelled call:\n{trace}\n{}", switch.log());
    // The device saw the CANCEL the switch sent on its own leg.
    wait_trace(&ring_trace, "CANCEL sip:").await;

    // Nobody answers within no_answer_secs: the guest is asked again and,
    // voicemail being off, its refusal is what the caller hears.
    let started = std::time::Instant::now();
    let (ok, trace) = call(&switch, &expect_failure(&switch, 480), "carol", 0);
    assert!(ok, "unanswered call:\n{trace}\n{}", switch.log());
    assert!(started.elapsed() >= Duration::from_secs(2));
    drop(ringing);

    let lines = wait_cdrs(&switch, "alice", 5).await;
    let dispositions: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let c = columns(l);
            (c[4], c[5])
        })
        .collect();
    assert_eq!(
        dispositions,
        [
            ("no-answer", "480"),
            ("cancelled", "487"),
            ("busy", "486"),
            ("failed", "404"),
            ("failed", "480"),
        ],
        "{lines:?}"
    );
    nothing_leaks(&switch).await;
}

/// `PATCH /accounts/{login}` on the admin endpoint; returns (status, body).
async fn patch_account(
    switch: &Switch,
    login: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let token = std::fs::read_to_string(switch.site.path("data/admin.token")).unwrap();
    let r = reqwest::Client::new()
        .patch(format!(
            "http://127.0.0.1:{}/accounts/{login}",
            switch.admin
        ))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callee_account_s_own_no_answer_timeout_ends_the_ringing() {
    // The switch-wide timeout stays at its 30 s default, past the caller's
    // own 20 s SIPp timeout: only carol's 5 s can end this call in time.
    let switch = switch("").await;

    // Out-of-bounds values are refused by the CLI and the admin API.
    let refused = switch
        .site
        .fails(&["account", "set", "carol", "--no-answer-secs", "3"]);
    assert!(refused.contains("no_answer_secs"), "{refused}");
    let unknown = switch
        .site
        .fails(&["account", "set", "nobody", "--no-answer-secs", "10"]);
    assert!(unknown.contains("nobody"), "{unknown}");
    switch.site.fails(&["account", "set", "carol"]);
    let (status, body) = patch_account(
        &switch,
        "carol",
        serde_json::json!({ "no_answer_secs": 601 }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-request")),
        "{body}"
    );
    let (status, body) = patch_account(
        &switch,
        "carol",
        serde_json::json!({ "no_answer_secs": -1 }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-request")),
        "{body}"
    );
    let (status, body) =
        patch_account(&switch, "carol", serde_json::json!({ "no_answer_secs": 5 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["no_answer_secs"], 5, "{body}");
    assert!(
        switch
            .site
            .ok(&["account", "show", "carol"])
            .contains("no_answer_secs: 5\n")
    );

    // carol's device rings and never answers (no voicemail to take over);
    // bob's account keeps the default.
    switch
        .site
        .ok(&["account", "set", "carol", "--voicemail", "off"]);
    let (ringing, ring_trace) = callee(&switch, "carol", &scenario("call_uas_ring.xml"));
    switch.wait_registered(1).await;
    let started = std::time::Instant::now();
    let (ok, trace) = call(&switch, &expect_failure(&switch, 480), "carol", 0);
    let rang = started.elapsed();
    assert!(ok, "unanswered call:\n{trace}\n{}", switch.log());
    assert!(
        rang >= Duration::from_secs(5) && rang < Duration::from_secs(12),
        "rang {rang:?}, not carol's 5 s"
    );
    // The switch stopped the ringing on its own leg (and the device said
    // so: killed before its 487, the branch would wait out 32 s).
    wait_trace(&ring_trace, "CANCEL sip:").await;
    wait_trace(&ring_trace, "SIP/2.0 487").await;
    drop(ringing);
    first_cdr_is(
        &switch,
        "carol",
        ["alice", "carol", "-", "no-answer", "480"],
    )
    .await;

    // `default` goes back to the switch-wide timeout.
    switch
        .site
        .ok(&["account", "set", "carol", "--no-answer-secs", "default"]);
    assert!(
        switch
            .site
            .ok(&["account", "show", "carol"])
            .contains("no_answer_secs: default (30)\n")
    );
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_forks_to_every_device_and_the_others_are_cancelled() {
    let switch = switch("").await;
    let (_first, first_trace) = callee(&switch, "bob", &scenario("call_uas_ring.xml"));
    let (_second, second_trace) = callee(&switch, "bob", &scenario("call_uas_late.xml"));
    // Two bindings for one account.
    wait_trace(&first_trace, "SIP/2.0 200 OK").await;
    wait_trace(&second_trace, "SIP/2.0 200 OK").await;
    let (ok, trace) = call(&switch, &scenario("call_uac.xml"), "bob", 200);
    assert!(ok, "caller failed:\n{trace}\n{}", switch.log());
    // The ringing device is cancelled; the one that answered gets the BYE.
    wait_trace(&first_trace, "CANCEL sip:").await;
    wait_trace(&second_trace, "BYE sip:").await;
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_go_out_through_gateways_and_come_in_on_dids() {
    let switch = switch("").await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(
        &["--display-name", "Dora"],
        "carrier",
        "4860",
        carrier_port,
        "udp",
    );
    // The carrier expects `int` stripped and Dora's number as the caller ID.
    let carrier_scenario = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "4860012345"),
            ("EXPECT_FROM", "sip:48600111222@"),
        ],
    );
    let carrier = carrier(&switch, &carrier_scenario, carrier_port, "u1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, trace) = dora_calls(&switch, "int4860012345");
    assert!(ok, "OFFNET call failed:\n{trace}\n{}", switch.log());
    carrier_passed(&switch, carrier);
    first_cdr_is(
        &switch,
        "dora",
        ["dora", "4860012345", "carrier", "answered", "200"],
    )
    .await;

    // Inbound: the carrier (trusted by its address) calls a DID of alice.
    switch.site.ok(&["did", "add", "+48 22 555 0100", "alice"]);
    assert!(
        switch
            .site
            .ok(&["did", "list"])
            .contains("48225550100\talice")
    );
    let (_alice, _) = callee(&switch, "alice", &scenario("call_uas.xml"));
    switch.wait_registered(1).await;
    let caller = switch.site.path("carrier-caller.csv");
    std::fs::write(&caller, "SEQUENTIAL\n48221234567;x;\n").unwrap();
    let (ok, trace) = sipp(
        &switch,
        &scenario("call_gw_uac.xml"),
        &[
            "-inf",
            caller.to_str().unwrap(),
            "-s",
            "48225550100",
            "-p",
            &carrier_port.to_string(),
        ],
    );
    assert!(ok, "inbound DID call failed:\n{trace}\n{}", switch.log());
    first_cdr_is(
        &switch,
        "alice",
        ["48221234567", "alice", "carrier", "answered", "200"],
    )
    .await;
    // A DID nobody owns.
    let (ok, trace) = sipp(
        &switch,
        &expect_failure_unauthenticated(&switch, 404),
        &[
            "-inf",
            caller.to_str().unwrap(),
            "-s",
            "48225550199",
            "-p",
            &carrier_port.to_string(),
        ],
    );
    assert!(ok, "unknown DID:\n{trace}\n{}", switch.log());
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_did_ordered_in_the_app_rings_its_holder_until_released() {
    let (switch, api) = Switch::start_with_api("", "").await;
    let carrier_port = free_sip_port();
    let site = &switch.site;
    site.ok(&[
        "gateway",
        "add",
        "carrier",
        "--prefix",
        "4860",
        "--address",
        &format!("127.0.0.1:{carrier_port}"),
    ]);
    site.ok(&[
        "account",
        "add",
        "erin",
        "--password",
        "erin-pw",
        "--username",
        "erin",
        "--access-password",
        "erin-web",
    ]);
    site.ok(&["account", "set", "erin", "--currency", "EUR"]);
    site.ok(&["balance", "topup", "erin", "5.00"]);
    // The operator's pool, imported through the admin API.
    let admin_token = std::fs::read_to_string(site.path("data/admin.token")).unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/did-pool", switch.admin))
        .bearer_auth(admin_token.trim())
        .header("content-type", "text/csv")
        .body("number,country,monthly_fee,currency\n+48 22 555 0123,PL,1.50,EUR\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Ordered in the app: any Polish number.
    let client = support::api_client();
    let token = support::api_token(&client, &api, "erin", "erin-web").await;
    let r = client
        .post(format!("{api}/v1/dids"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "country": "pl" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ordered: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ordered["did"]["number"], "48225550123", "{ordered}");
    assert_eq!(ordered["balance"], "3.50", "{ordered}");
    assert!(site.ok(&["did", "list"]).contains("48225550123\terin"));

    // The carrier calls it: erin's phone rings and answers.
    let (_erin, _) = callee(&switch, "erin", &scenario("call_uas.xml"));
    switch.wait_registered(1).await;
    let caller = site.path("carrier-caller.csv");
    std::fs::write(&caller, "SEQUENTIAL\n48221234567;x;\n").unwrap();
    let port = carrier_port.to_string();
    let carrier_calls = |scenario_file: &std::path::Path| {
        sipp(
            &switch,
            scenario_file,
            &[
                "-inf",
                caller.to_str().unwrap(),
                "-s",
                "48225550123",
                "-p",
                &port,
            ],
        )
    };
    let (ok, trace) = carrier_calls(&scenario("call_gw_uac.xml"));
    assert!(
        ok,
        "call to the ordered DID failed:\n{trace}\n{}",
        switch.log()
    );
    first_cdr_is(
        &switch,
        "erin",
        ["48221234567", "erin", "carrier", "answered", "200"],
    )
    .await;

    // Released in the app: the number rings nobody any more.
    let r = client
        .delete(format!("{api}/v1/dids/48225550123"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (ok, trace) = carrier_calls(&expect_failure_unauthenticated(&switch, 404));
    assert!(ok, "released DID:\n{trace}\n{}", switch.log());
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_over_tcp_is_reached_on_a_connection_the_switch_opens() {
    let switch = switch("").await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(&[], "tcp-carrier", "4870", carrier_port, "tcp");
    let carrier_scenario = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "4870012345"),
            ("EXPECT_FROM", "sip:48600111222@"),
        ],
    );
    let carrier = carrier(&switch, &carrier_scenario, carrier_port, "t1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, trace) = dora_calls(&switch, "int4870012345");
    assert!(
        ok,
        "call to a TCP gateway failed:\n{trace}\n{}",
        switch.log()
    );
    let carrier_log = carrier_passed(&switch, carrier);
    assert!(carrier_log.contains("SIP/2.0/TCP"), "{carrier_log}");
    first_cdr_is(
        &switch,
        "dora",
        ["dora", "4870012345", "tcp-carrier", "answered", "200"],
    )
    .await;
    nothing_leaks(&switch).await;
}

/// A CA and a certificate it issued for 127.0.0.1 (an IP address SAN), as
/// PEM files in `dir`: (CA certificate, certificate, key).
fn carrier_certificate(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("carrier-ca.pem"),
        dir.join("carrier-cert.pem"),
        dir.join("carrier-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// A carrier over TLS: the SIPp carrier on TCP behind socat, which ends TLS
/// on `tls_port` with `cert`/`key` (Debian's SIPp is built without TLS).
/// Returns the socat and SIPp processes.
fn tls_carrier(
    switch: &Switch,
    scenario_file: &std::path::Path,
    tls_port: u16,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (Device, Device) {
    let sipp_port = free_sip_port();
    let sipp = carrier(switch, scenario_file, sipp_port, "t1");
    let socat = std::process::Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,cert={},key={},verify=0",
            cert.display(),
            key.display()
        ))
        .arg(format!("TCP:127.0.0.1:{sipp_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(switch.site.path("socat.err")).unwrap())
        .spawn()
        .expect("socat (Debian package socat) must be installed: scripts/setup.sh installs it");
    (Device(socat), sipp)
}

/// dora (48600111222) and a gateway `tls-carrier` for 4880 over TLS to
/// 127.0.0.1:`port`.
fn tls_gateway(switch: &Switch, port: u16) {
    switch.dora_and_gateway(&[], "tls-carrier", "4880", port, "tls");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_over_tls_is_reached_when_its_certificate_verifies() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = carrier_certificate(certs.path());
    let switch = Switch::start_with(&format!("gateway_ca = \"{}\"", ca.display()), "").await;
    let tls_port = free_sip_port();
    tls_gateway(&switch, tls_port);
    let carrier_scenario = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "4880012345"),
            ("EXPECT_FROM", "sip:48600111222@"),
        ],
    );
    let (_socat, carrier) = tls_carrier(&switch, &carrier_scenario, tls_port, &cert, &key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, trace) = dora_calls(&switch, "int4880012345");
    let socat_err = std::fs::read_to_string(switch.site.path("socat.err")).unwrap_or_default();
    assert!(
        ok,
        "call to a TLS gateway failed:\n{trace}\n{socat_err}\n{}",
        switch.log()
    );
    let carrier_log = carrier_passed(&switch, carrier);
    // What crossed socat was sent over TLS and says so.
    assert!(
        carrier_log.contains("Via: SIP/2.0/TLS 127.0.0.1:"),
        "{carrier_log}"
    );
    // Request-URI and Contact name the transport (its value is
    // case-insensitive, RFC 3261 §19.1.4).
    let lower = carrier_log.to_ascii_lowercase();
    assert!(
        lower.contains("invite sip:4880012345@127.0.0.1:")
            && lower.contains(";transport=tls sip/2.0"),
        "{carrier_log}"
    );
    assert!(carrier_log.contains(";transport=tls>"), "{carrier_log}");
    first_cdr_is(
        &switch,
        "dora",
        ["dora", "4880012345", "tls-carrier", "answered", "200"],
    )
    .await;
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_whose_tls_certificate_does_not_verify_is_not_called() {
    // The same carrier, but the switch trusts only the built-in roots.
    let certs = tempfile::tempdir().unwrap();
    let (_, cert, key) = carrier_certificate(certs.path());
    let switch = switch("").await;
    let tls_port = free_sip_port();
    tls_gateway(&switch, tls_port);
    let (_socat, _carrier) =
        tls_carrier(&switch, &scenario("call_gw_uas.xml"), tls_port, &cert, &key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let users = switch.users("dora.csv", "dora", "dora-pw");
    let started = std::time::Instant::now();
    let (ok, trace) = sipp(
        &switch,
        &expect_failure(&switch, 503),
        &["-inf", users.to_str().unwrap(), "-s", "int4880012345"],
    );
    assert!(ok, "expected 503:\n{trace}\n{}", switch.log());
    assert!(started.elapsed() < Duration::from_secs(10));
    let carrier_log = std::fs::read_to_string(switch.site.path("carrier.log")).unwrap_or_default();
    assert!(!carrier_log.contains("INVITE"), "{carrier_log}");
    // The warning names the gateway and why.
    let log = switch.log();
    let warning = log
        .lines()
        .find(|l| l.contains("cannot connect to the gateway"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("tls-carrier"), "{warning}");
    assert!(warning.contains("UnknownIssuer"), "{warning}");
    first_cdr_is(
        &switch,
        "dora",
        ["dora", "4880012345", "tls-carrier", "failed", "503"],
    )
    .await;
    nothing_leaks(&switch).await;
}

/// The carrier's INVITE (no credentials) expecting a final `code`.
fn expect_failure_unauthenticated(switch: &Switch, code: u16) -> std::path::PathBuf {
    switch.variant(
        "call_gw_uac_fail.xml",
        "<recv response=\"CODE\"",
        &format!("<recv response=\"{code}\""),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_and_resume_re_invites_cross_the_b2bua() {
    let switch = switch("").await;
    let (_bob, bob_trace) = callee(&switch, "bob", &scenario("call_uas_hold.xml"));
    switch.wait_registered(1).await;
    let (ok, trace) = call(&switch, &scenario("call_uac_hold.xml"), "bob", 0);
    let bob_side = std::fs::read_to_string(&bob_trace).unwrap_or_default();
    assert!(ok, "caller failed:\n{trace}\n{bob_side}\n{}", switch.log());
    let lines = wait_cdrs(&switch, "alice", 1).await;
    assert_eq!(&columns(&lines[0])[4..6], ["answered", "200"]);
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_baresips_over_tls_call_each_other() {
    let switch = switch("").await;
    let _bob = Baresip::start_with(&switch, "bob", "bob-pw", ";answermode=auto", &[]);
    switch.wait_registered(1).await;
    let _alice = Baresip::start_with(&switch, "alice", "alice-pw", "", &["/dial bob"]);
    switch
        .wait_metric("softswitch_calls_answered_total", |v| v >= 1)
        .await;
    // Bob's baresip answered; alice hangs up by quitting.
    _alice.quit();
    first_cdr_is(&switch, "alice", ["alice", "bob", "-", "answered", "200"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_its_maximum_duration_is_hung_up_on_both_sides() {
    let switch = switch("[calls]\nmax_duration_secs = 1\n").await;
    let (_bob, bob_trace) = callee(&switch, "bob", &scenario("call_uas.xml"));
    switch.wait_registered(1).await;
    // The caller never hangs up: it waits for the switch's BYE.
    let (ok, trace) = call(&switch, &scenario("call_uac_wait_bye.xml"), "bob", 0);
    assert!(ok, "caller failed:\n{trace}\n{}", switch.log());
    wait_trace(&bob_trace, "BYE sip:").await;
    let lines = wait_cdrs(&switch, "alice", 1).await;
    let c = columns(&lines[0]);
    assert_eq!(&c[4..6], ["answered", "200"], "{lines:?}");
    assert_eq!(c[7], "max-duration");
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answered_call_without_media_is_hung_up_after_the_silence_timeout() {
    let switch = switch("[media]\nsilence_secs = 1\n").await;
    let (_bob, bob_trace) = callee(&switch, "bob", &scenario("call_uas.xml"));
    switch.wait_registered(1).await;
    // Neither SIPp sends RTP, and the caller waits for the switch's BYE.
    let (ok, trace) = call(&switch, &scenario("call_uac_wait_bye.xml"), "bob", 0);
    assert!(ok, "caller failed:\n{trace}\n{}", switch.log());
    wait_trace(&bob_trace, "BYE sip:").await;
    let lines = wait_cdrs(&switch, "alice", 1).await;
    let c = columns(&lines[0]);
    assert_eq!(&c[4..6], ["answered", "200"], "{lines:?}");
    assert_eq!(c[7], "media-timeout");
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reliable_provisionals_are_acknowledged_across_the_b2bua() {
    let switch = switch("").await;
    let (_bob, bob_trace) = callee(&switch, "bob", &scenario("call_uas_prack.xml"));
    switch.wait_registered(1).await;
    let (ok, trace) = call(&switch, &scenario("call_uac_prack.xml"), "bob", 0);
    let bob_side = std::fs::read_to_string(&bob_trace).unwrap_or_default();
    assert!(ok, "caller failed:\n{trace}\n{bob_side}\n{}", switch.log());
    // The callee's own leg carried the PRACK, mapped to its INVITE's CSeq.
    assert!(bob_side.contains("RAck: 1 1 INVITE"), "{bob_side}");
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_timer_nobody_refreshes_ends_the_call() {
    let switch = switch("").await;
    // The callee asks for a 2 s session refreshed by the caller, who never does.
    let answers = switch.variant(
        "call_uas.xml",
        "      Content-Type: application/sdp",
        "      Session-Expires: 2;refresher=uac\n      Content-Type: application/sdp",
    );
    let (_bob, bob_trace) = callee(&switch, "bob", &answers);
    switch.wait_registered(1).await;
    let (ok, trace) = call(&switch, &scenario("call_uac_wait_bye.xml"), "bob", 0);
    assert!(ok, "caller failed:\n{trace}\n{}", switch.log());
    wait_trace(&bob_trace, "BYE sip:").await;
    let lines = wait_cdrs(&switch, "alice", 1).await;
    let c = columns(&lines[0]);
    assert_eq!(&c[4..6], ["answered", "200"], "{lines:?}");
    assert_eq!(c[7], "session-timer");
    nothing_leaks(&switch).await;
}

/// `balance show` of `login`: its balance line, e.g. `0.92 USD`.
fn balance_of(switch: &Switch, login: &str) -> String {
    let shown = switch.site.ok(&["balance", "show", login]);
    shown
        .lines()
        .find_map(|l| l.strip_prefix("balance: "))
        .unwrap_or_else(|| panic!("{shown}"))
        .to_string()
}

/// dora (prepaid) calls 4860012345 through the carrier and talks `hold_ms`.
fn dora_calls_the_carrier(switch: &Switch, hold_ms: &str) {
    let dora = switch.users("dora.csv", "dora", "dora-pw");
    let (ok, trace) = sipp(
        switch,
        &scenario("call_uac.xml"),
        &[
            "-inf",
            dora.to_str().unwrap(),
            "-s",
            "int4860012345",
            "-d",
            hold_ms,
        ],
    );
    assert!(ok, "dora's call failed:\n{trace}\n{}", switch.log());
}

/// An amount like `0.08` in hundredths.
fn cents(text: &str) -> i64 {
    let (units, hundredths) = text.split_once('.').unwrap_or((text, "0"));
    units.parse::<i64>().unwrap() * 100 + hundredths.parse::<i64>().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn prepaid_offnet_calls_are_charged_cut_when_the_money_runs_out_and_refused_without_it() {
    let switch = switch("[billing]\nprepaid_calls = true\n").await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(&[], "carrier", "4860", carrier_port, "udp");
    switch.site.ok(&[
        "account",
        "add",
        "erin",
        "--password",
        "erin-pw",
        "--phone",
        "48600333444",
    ]);
    // The template's tariff, in the accounts' currency: 0.60 a minute
    // billed by the second (0.01 a second) and 0.05 to connect.
    let tariff = switch.site.path("tariff.csv");
    std::fs::write(
        &tariff,
        "prefix,description,country,currency,price_per_minute,connection_fee,increments\n\
         486001,Poland mobile,PL,USD,0.60,0.05,1/1\n",
    )
    .unwrap();
    switch
        .site
        .ok(&["tariff", "import", "default", tariff.to_str().unwrap()]);
    switch.site.ok(&["balance", "topup", "dora", "1.00"]);
    switch.site.ok(&["balance", "topup", "erin", "0.08"]);
    let carrier_for = |from: &str| {
        let scenario = switch.variant_with(
            "call_gw_uas.xml",
            &[("EXPECT_RURI", "4860012345"), ("EXPECT_FROM", from)],
        );
        carrier(&switch, &scenario, carrier_port, "u1")
    };

    // dora talks for about 2 s: the fee and every started second.
    let c = carrier_for("sip:48600111222@");
    tokio::time::sleep(Duration::from_millis(300)).await;
    dora_calls_the_carrier(&switch, "2000");
    carrier_passed(&switch, c);
    let lines = wait_cdrs(&switch, "dora", 1).await;
    let record = columns(&lines[0]);
    assert_eq!(
        &record[1..6],
        ["dora", "4860012345", "carrier", "answered", "200"]
    );
    let cost = cents(record[8]);
    assert!(
        (7..=9).contains(&cost),
        "0.05 and 2-4 started seconds at 0.01: {lines:?}"
    );
    assert_eq!(
        balance_of(&switch, "dora"),
        format!("{}.{:02} USD", (100 - cost) / 100, (100 - cost) % 100),
        "the record's cost is what left the balance"
    );

    // erin's 0.08 pays the fee and 3 seconds: the switch hangs up then,
    // both sides, and the whole reservation is spent.
    let c = carrier_for("sip:48600333444@");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let erin = switch.users("erin.csv", "erin", "erin-pw");
    let started = std::time::Instant::now();
    let (ok, trace) = sipp(
        &switch,
        &scenario("call_uac_wait_bye.xml"),
        &["-inf", erin.to_str().unwrap(), "-s", "int4860012345"],
    );
    assert!(
        ok,
        "erin's call was not ended by the switch:\n{trace}\n{}",
        switch.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    carrier_passed(&switch, c);
    let lines = wait_cdrs(&switch, "erin", 1).await;
    let record = columns(&lines[0]);
    assert_eq!(
        (record[5], record[7], record[8]),
        ("200", "out-of-credit", "0.08"),
        "{lines:?}"
    );
    assert!(["3", "4"].contains(&record[6]), "cut after 3 s: {lines:?}");
    assert_eq!(balance_of(&switch, "erin"), "0.00 USD");
    let ledger = switch.site.ok(&["balance", "ledger", "erin"]);
    assert!(ledger.contains("call"), "{ledger}");

    // Nothing left: refused before the carrier is called.
    let (ok, trace) = sipp(
        &switch,
        &expect_failure(&switch, 402),
        &["-inf", erin.to_str().unwrap(), "-s", "int4860012345"],
    );
    assert!(ok, "{trace}\n{}", switch.log());
    // A number the gateway serves and the tariff does not price.
    let dora = switch.users("dora.csv", "dora", "dora-pw");
    let (ok, trace) = sipp(
        &switch,
        &expect_failure(&switch, 403),
        &["-inf", dora.to_str().unwrap(), "-s", "int4860912345"],
    );
    assert!(ok, "{trace}\n{}", switch.log());
    nothing_leaks(&switch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prepaid_call_within_a_plan_s_minutes_leaves_the_balance_alone() {
    let (switch, api) = Switch::start_with_api("[billing]\nprepaid_calls = true\n", "").await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(
        &["--username", "dora", "--access-password", "dora-web"],
        "carrier",
        "4860",
        carrier_port,
        "udp",
    );
    let tariff = switch.site.path("tariff.csv");
    std::fs::write(
        &tariff,
        "prefix,currency,price_per_minute,connection_fee,increments\n486001,USD,0.60,0.05,1/1\n",
    )
    .unwrap();
    switch
        .site
        .ok(&["tariff", "import", "default", tariff.to_str().unwrap()]);
    switch.site.ok(&["balance", "topup", "dora", "1.50"]);

    // The operator sells a minute to Polish numbers; dora buys it in the app.
    let admin_token = std::fs::read_to_string(switch.site.path("data/admin.token")).unwrap();
    let r = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{}/plans/pl-1", switch.admin))
        .bearer_auth(admin_token.trim())
        .json(&serde_json::json!({"price": "1.00", "currency": "USD", "minutes": 1, "prefixes": ["4860"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let client = support::api_client();
    let token = support::api_token(&client, &api, "dora", "dora-web").await;
    let bought: serde_json::Value = client
        .post(format!("{api}/v1/plans/pl-1/buy"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bought["balance"], "0.50", "{bought}");

    // A call of about a second: the plan pays it, fee included.
    let answers = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "4860012345"),
            ("EXPECT_FROM", "sip:48600111222@"),
        ],
    );
    let c = carrier(&switch, &answers, carrier_port, "u1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    dora_calls_the_carrier(&switch, "1000");
    carrier_passed(&switch, c);
    let lines = wait_cdrs(&switch, "dora", 1).await;
    let record = columns(&lines[0]);
    assert_eq!((record[4], record[8]), ("answered", "0.00"), "{lines:?}");
    assert_eq!(balance_of(&switch, "dora"), "0.50 USD");
    let mine: serde_json::Value = client
        .get(format!("{api}/v1/plans"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let left = mine["mine"][0]["seconds_left"].as_i64().unwrap();
    assert!(
        (56..=59).contains(&left),
        "1-4 started seconds used: {mine}"
    );
    nothing_leaks(&switch).await;
}

/// A graceful stop (SIGTERM) in the middle of a flow of prepaid calls:
/// every call whose BYE was answered before the switch stopped has its
/// record, with its cost, and the balance moved by exactly those costs.
/// (The stop waits for the records being written; before, it closed the
/// database under calls that had just ended, which `bench/billing.sh` saw
/// lose records at 1,000 charged calls/s, past what SQLite settles. At this
/// test's rate the settlements keep up, so the test guards the property
/// rather than reproducing that overload.)
#[tokio::test(flavor = "multi_thread")]
async fn calls_ended_before_a_sigterm_keep_their_records_and_charges() {
    let mut switch = switch("[billing]\nprepaid_calls = true\n").await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(&[], "carrier", "4860", carrier_port, "udp");
    let tariff = switch.site.path("tariff.csv");
    std::fs::write(
        &tariff,
        "prefix,currency,price_per_minute,connection_fee,increments\n4860,USD,0.60,0.05,1/1\n",
    )
    .unwrap();
    switch
        .site
        .ok(&["tariff", "import", "default", tariff.to_str().unwrap()]);
    switch.site.ok(&["balance", "topup", "dora", "1000.00"]);
    let uas = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "4860012345"),
            ("EXPECT_FROM", "sip:48600111222@"),
        ],
    );
    let _carrier = Device(
        std::process::Command::new("sipp")
            .arg("-sf")
            .arg(&uas)
            .args([
                "-t",
                "u1",
                "-p",
                &carrier_port.to_string(),
                "-i",
                "127.0.0.1",
            ])
            .args(["-m", "100000", "-nostdin", "-timeout", "60"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp"),
    );
    let dora = switch.users("dora.csv", "dora", "dora-pw");
    let trace = switch.site.path("callers.log");
    let callers = Device(
        std::process::Command::new("sipp")
            .arg(switch.target())
            .arg("-sf")
            .arg(scenario("call_uac.xml"))
            .arg("-inf")
            .arg(&dora)
            .args(["-s", "int4860012345", "-key", "domain", "localhost"])
            .args(["-t", "u1", "-r", "200", "-l", "500", "-d", "200"])
            .args(["-nostdin", "-timeout", "30s", "-trace_msg", "-message_file"])
            .arg(&trace)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp"),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    switch.terminate();
    drop(callers);
    let text = std::fs::read_to_string(&trace).unwrap();
    // Call-IDs, once each: a retransmitted BYE gets its 200 again.
    let ended = text
        .split("message received")
        .filter(|m| m.contains("SIP/2.0 200 ") && m.contains(" BYE\r\n"))
        .filter_map(|m| m.lines().find_map(|l| l.trim().strip_prefix("Call-ID: ")))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(ended > 50, "only {ended} calls ended: {}", switch.log());
    switch.boot().await;
    let records = switch
        .site
        .ok(&["cdr", "list", "--login", "dora", "--limit", "100000"]);
    let costs: Vec<i64> = records
        .lines()
        .map(|l| columns(l))
        .filter(|c| c[4] == "answered")
        .map(|c| cents(c[8]))
        .collect();
    assert!(
        costs.len() >= ended,
        "{ended} calls ended before the stop, {} answered records:\n{}",
        costs.len(),
        switch
            .log()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("stopp"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        cents(balance_of(&switch, "dora").trim_end_matches(" USD")),
        100_000 - costs.iter().sum::<i64>(),
        "the balance moved by the records' costs"
    );
}

/// (message, count) per line of the scenario table SIPp dumped last
/// (`-trace_screen`): e.g. `("503", 120)`.
fn screen_counts(screen: &std::path::Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(screen).unwrap_or_default();
    let table = text.rsplit("Messages  Retrans").next().unwrap_or("");
    table
        .lines()
        .skip(1)
        .map(str::split_whitespace)
        .map_while(|mut parts| {
            let message = parts.next()?;
            let arrow = parts.next()?;
            if !arrow.chars().all(|c| matches!(c, '-' | '<' | '>')) {
                return None;
            }
            // "B-RTD1"/"E-RTD1" marks where a response time starts or ends.
            let count = parts.find(|p| !p.contains("RTD"))?;
            Some((message.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// Issue 15, graceful overload: calls offered far past what the switch (a
/// debug build here) sets up. A share of the new INVITEs is refused at once
/// with 503 and Retry-After; every call that got its 200 ends with its BYE
/// answered (in-dialog requests are never refused); and once the load
/// stops the switch stops shedding by itself and the next call goes through.
#[tokio::test(flavor = "multi_thread")]
async fn past_capacity_new_calls_get_503_and_the_admitted_ones_finish() {
    let switch = switch("").await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(&[], "carrier", "4860", carrier_port, "udp");
    let kit_uas =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/anchors/sipp/uas_call.xml");
    let _carrier = Device(
        std::process::Command::new("sipp")
            .arg("-sf")
            .arg(&kit_uas)
            .args(["-p", &carrier_port.to_string(), "-i", "127.0.0.1"])
            .args(["-m", "1000000", "-nostdin", "-timeout", "120"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp"),
    );
    // The first calls must not find the carrier still starting.
    while std::net::UdpSocket::bind(("127.0.0.1", carrier_port)).is_ok() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dora = switch.users("dora.csv", "dora", "dora-pw");
    let callers = |rate: u32, calls: u32, screen: &std::path::Path| {
        tokio::task::block_in_place(|| {
            std::process::Command::new("sipp")
                .arg(switch.target())
                .arg("-sf")
                .arg(scenario("call_uac_auth_shed.xml"))
                .arg("-inf")
                .arg(&dora)
                .args(["-s", "int4860012345", "-key", "domain", "localhost"])
                .args(["-auth_uri", "int4860012345@localhost"])
                .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
                .args(["-l", "20000", "-timeout", "60s", "-recv_timeout", "10000"])
                .args(["-nostdin", "-trace_screen", "-screen_file"])
                .arg(screen)
                .args(["-trace_err", "-error_file"])
                .arg(screen.with_extension("errors"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("sipp")
        })
    };
    let screen = switch.site.path("overload-screen.log");
    let status = callers(1500, 7_500, &screen);
    let rows = screen_counts(&screen);
    let count = |message: &str| -> Vec<u64> {
        rows.iter()
            .filter(|(m, _)| m == message)
            .map(|(_, n)| *n)
            .collect()
    };
    eprintln!("{rows:?}");
    let refused: u64 = count("503").iter().sum();
    // The 200s in order: the authenticated INVITE's, then the BYE's.
    let (established, ended) = (count("200")[0], count("200")[1]);
    assert!(refused > 0, "nothing was shed: {rows:?}");
    assert!(established > 0, "no call got through: {rows:?}");
    assert_eq!(established, ended, "established calls dropped: {rows:?}");
    // Every call ends one way or the other: refused, or completed. A few
    // may time out when the other tests running beside this one take the
    // machine's cores from under the switch: at most 1 %. Why they failed,
    // if any did (SIPp also logs late answers to calls it has ended: those
    // are not failures):
    let unfinished = 7_500 - refused - ended;
    let errors = std::fs::read_to_string(screen.with_extension("errors")).unwrap_or_default();
    let failures: Vec<&str> = ["nexpected", "borting", "imeout"]
        .iter()
        .filter_map(|word| {
            let at = errors.find(word)?;
            errors.get(at.saturating_sub(200)..(at + 600).min(errors.len()))
        })
        .collect();
    eprintln!("{unfinished} calls neither refused nor completed ({status})");
    assert!(
        unfinished <= 75,
        "{unfinished} calls failed otherwise ({} receive timeouts): {rows:?}\n{}\n{}",
        errors.matches("receive timeout").count(),
        failures.join("\n"),
        switch.log()
    );
    assert!(
        switch
            .metric("softswitch_sip_shed_total{class=\"new\"}")
            .await
            > 0
    );

    // Recovery: shedding stops by itself, and a call goes through.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while switch.gauge("softswitch_sip_shed_share").await != 0.0 {
        assert!(std::time::Instant::now() < deadline, "still shedding");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let screen = switch.site.path("after-screen.log");
    assert!(callers(1, 1, &screen).success());
    let rows = screen_counts(&screen);
    assert!(rows.iter().all(|(m, n)| m != "503" || *n == 0), "{rows:?}");
}

/// alice calling `to` at `rate` calls/s, `count` calls, with SIPp running
/// `scenario_file` (answered calls last 100 ms) from its own port; SIPp's
/// errors go to `<label>.err` in the site.
fn alice_calls_at(
    switch: &Switch,
    scenario_file: &std::path::Path,
    to: &str,
    rate: u32,
    count: u32,
    label: &str,
) -> Device {
    let users = switch.users(&format!("{label}.csv"), "alice", "alice-pw");
    let child = std::process::Command::new("sipp")
        .arg(switch.target())
        .arg("-sf")
        .arg(scenario_file)
        .arg("-inf")
        .arg(&users)
        .args([
            "-s",
            to,
            "-key",
            "domain",
            "localhost",
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
        ])
        .args(["-p", &free_sip_port().to_string()])
        .args(["-r", &rate.to_string(), "-m", &count.to_string()])
        .args(["-l", "500", "-d", "100", "-nostdin"])
        .args([
            "-timeout",
            "40s",
            "-timeout_error",
            "-trace_err",
            "-error_file",
        ])
        .arg(switch.site.path(&format!("{label}.err")))
        .args(["-trace_screen", "-screen_file"])
        .arg(switch.site.path(&format!("{label}.screen")))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(switch.site.path(&format!("{label}.stderr"))).unwrap())
        .spawn()
        .expect("sipp");
    Device(child)
}

/// Waits for a SIPp run to end; true when every call went as its scenario says.
async fn all_calls_ok(mut run: Device) -> bool {
    tokio::task::spawn_blocking(move || run.0.wait().is_ok_and(|s| s.success()))
        .await
        .unwrap()
}

/// Puts the built guest `stem` in as the routing guest (the file replaced in
/// one rename, then `POST /guests/routing/reload`).
async fn swap_router(switch: &Switch, stem: &str) {
    std::fs::copy(support::guest_wasm(stem), switch.site.path("router.tmp")).unwrap();
    std::fs::rename(
        switch.site.path("router.tmp"),
        switch.site.path("router.wasm"),
    )
    .unwrap();
    let token = std::fs::read_to_string(switch.site.path("data/admin.token")).unwrap();
    let reload = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/guests/routing/reload",
            switch.admin
        ))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200, "{stem}: {}", switch.log());
}

/// Routing-guest failures counted so far, all kinds.
async fn routing_failures(switch: &Switch) -> i64 {
    switch
        .metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with("softswitch_guest_failures_total{guest=\"routing\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// The JavaScript least-cost router (componentize-js) loaded by the real
/// switch in place of the Rust one: calls to a user ring the user, a number
/// without a rate is refused the way its rules say.
#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_router_routes_the_switchs_calls() {
    let switch = switch("[guests.routing.config]\nrates = \"carrier-x 4470=0.01\"\n").await;
    swap_router(&switch, "routing_lcr_js").await;
    let (_bob, _) = callee(&switch, "bob", &scenario("call_uas.xml"));
    switch.wait_registered(1).await;
    let (ok, trace) = call(&switch, &scenario("call_uac.xml"), "bob", 200);
    assert!(ok, "caller failed:\n{trace}\n{}", switch.log());
    let (ok, trace) = call(&switch, &expect_failure(&switch, 404), "15550001", 100);
    assert!(ok, "no rate, no route:\n{trace}\n{}", switch.log());
    assert_eq!(routing_failures(&switch).await, 0, "{}", switch.log());
}

/// `GET path` on the admin endpoint, as JSON.
async fn admin_json(switch: &Switch, path: &str) -> serde_json::Value {
    let token = std::fs::read_to_string(switch.site.path("data/admin.token")).unwrap();
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}{path}", switch.admin))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A new routing guest that fails most of its first calls (it passed its
/// smoke call: it fails only calls to boom…) is taken out of service by
/// itself, and the router it replaced comes back; its history says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_router_failing_its_first_calls_is_rolled_back_to_the_one_before() {
    let switch = switch("[guests.routing.config]\nwhen = \"boom\"\n").await;
    let good = admin_json(&switch, "/guests").await[0]["sha256"].clone();
    swap_router(&switch, "fixture_trap").await;
    let bad = admin_json(&switch, "/guests").await[0]["sha256"].clone();
    assert_ne!(good, bad);
    // Five calls, one after the other: each traps and gets the fallback.
    let faulty = alice_calls_at(
        &switch,
        &expect_failure(&switch, 500),
        "boom1",
        5,
        5,
        "faulty",
    );
    assert!(all_calls_ok(faulty).await, "{}", switch.log());
    // The next calls find the default router back: boom1 is no user.
    let after = alice_calls_at(
        &switch,
        &expect_failure(&switch, 404),
        "boom1",
        5,
        3,
        "after",
    );
    assert!(all_calls_ok(after).await, "{}", switch.log());
    assert_eq!(admin_json(&switch, "/guests").await[0]["sha256"], good);
    let history = admin_json(&switch, "/guests/routing/history").await;
    let events: Vec<(&str, &serde_json::Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), &e["sha256"]))
        .collect();
    assert_eq!(
        events,
        [
            ("in-service", &good),
            ("in-service", &bad),
            ("rolled-back", &bad)
        ],
        "{history}"
    );
    let why = history[2]["detail"].as_str().unwrap();
    assert!(why.contains("5 of its first 5 calls failed"), "{why}");
    assert_eq!(
        switch
            .metric("softswitch_guest_loads_total{guest=\"routing\",outcome=\"rolled-back\"}")
            .await,
        1
    );
    assert!(switch.log().contains("guest version taken out of service"));
}

#[tokio::test(flavor = "multi_thread")]
async fn faulty_routing_guests_swapped_in_under_load_get_the_fallback_until_the_good_one_is_back() {
    // The fixtures fail only calls to boom…; the others go to the user they
    // name, as the default router sends them.
    let mut switch =
        switch("[guests.routing.config]\nwhen = \"boom\"\notherwise = \"to-user\"\n").await;
    // A memory cap the memory bomb reaches in a few ms: at 64 MiB, writing
    // every page can take longer than the 50 ms deadline on a loaded machine,
    // and the call then ends as a timeout. Set, then the switch started again.
    switch.terminate();
    let config = switch.site.path("softswitch.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("[plugins]\n", "[plugins]\nmemory_limit_mib = 8\n", 1),
    )
    .unwrap();
    switch.boot().await;
    let (_bob, _) = device_taking(
        &switch,
        "bob",
        "bob-pw",
        "u1",
        120_000,
        &scenario("call_uas.xml"),
        100_000,
    );
    switch.wait_registered(1).await;
    let fallback = expect_failure(&switch, 500);
    // Modest rates: a looping call costs its deadline (50 ms) of CPU.
    for (fixture, kind) in [
        ("fixture_loop", "timeout"),
        ("fixture_alloc", "memory"),
        ("fixture_trap", "trap"),
    ] {
        swap_router(&switch, fixture).await;
        let counted = format!(
            "softswitch_guest_failures_total{{guest=\"routing\",kind=\"{kind}\",world=\"softswitch:routing/router@0.1.0\"}}"
        );
        let before = switch.metric(&counted).await;
        let faulty = alice_calls_at(&switch, &fallback, "boom1", 10, 20, fixture);
        let calls = alice_calls_at(
            &switch,
            &scenario("call_uac.xml"),
            "bob",
            100,
            300,
            &format!("{fixture}-calls"),
        );
        let (faulty, calls) = (all_calls_ok(faulty).await, all_calls_ok(calls).await);
        let errors = |label: &str| {
            ["err", "stderr", "screen"]
                .map(|ext| {
                    std::fs::read_to_string(switch.site.path(&format!("{label}.{ext}")))
                        .unwrap_or_default()
                })
                .join("\n")
        };
        assert!(
            faulty,
            "{fixture}: not every call to boom1 got the fallback 500:\n{}",
            errors(fixture)
        );
        assert!(
            calls,
            "{fixture}: calls the fixture leaves alone failed:\n{}",
            errors(&format!("{fixture}-calls"))
        );
        // Counted before the answer leaves; wait all the same on a slow machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while switch.metric(&counted).await < before + 20 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            switch.metric(&counted).await - before,
            20,
            "{fixture}: each failed call counted once as {kind}:\n{}",
            switch
                .metrics_text()
                .await
                .lines()
                .filter(|l| l.starts_with("softswitch_guest_failures_total"))
                .collect::<Vec<_>>()
                .join("\n")
                + &switch.log()
        );
    }

    // The good router back: calls routed by it again, nothing failing.
    swap_router(&switch, "routing_default").await;
    let before = routing_failures(&switch).await;
    let unknown = alice_calls_at(
        &switch,
        &expect_failure(&switch, 404),
        "boom1",
        10,
        10,
        "unknown",
    );
    let calls = alice_calls_at(&switch, &scenario("call_uac.xml"), "bob", 100, 200, "good");
    assert!(all_calls_ok(unknown).await, "boom1 is no user: 404");
    assert!(all_calls_ok(calls).await, "calls after the reload failed");
    assert_eq!(routing_failures(&switch).await, before);
}
