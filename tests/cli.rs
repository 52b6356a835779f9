//! Black-box tests of the `softswitch` binary: every subcommand, the admin
//! endpoint of a running switch, and hot reload seen from outside.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::sipp::free_sip_port;
use support::*;

#[test]
fn config_default_is_a_working_config() {
    let site = Site::new("");
    let text = site.ok(&["config", "default"]);
    assert!(text.contains("[admin]") && text.contains("deadline_ms = 50"));
    std::fs::write(site.path("default.toml"), &text).unwrap();
    let out = Command::new(BIN)
        .args(["--config", site.path("default.toml").to_str().unwrap()])
        .args([
            "--data-dir",
            site.path("other-data").to_str().unwrap(),
            "migrate",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        site.path("other-data/softswitch.db").is_file(),
        "--data-dir must be honoured"
    );
}

#[test]
fn a_bad_config_file_is_one_clear_error() {
    let site = Site::new("[routing]\nfallback_code = 200\n");
    let line = site.fails(&["account", "list"]);
    assert!(line.contains("routing.fallback_code"), "{line}");
}

#[test]
fn accounts_are_added_listed_shown_and_deleted() {
    let site = Site::new("");
    site.populate();
    let list = site.ok(&["account", "list"]);
    assert!(
        list.contains("alice") && list.contains("48600333444"),
        "{list}"
    );
    let show = site.ok(&["account", "show", "alice"]);
    assert!(show.contains("phone: 48600111222"), "{show}");
    assert!(show.contains("dialplan_rule: DP:int-> OR onnet"), "{show}");
    assert!(
        !show.contains("alice-sip-secret"),
        "passwords are never shown"
    );
    let db = std::fs::read(site.path("data/softswitch.db")).unwrap();
    assert!(
        !db.windows(b"alice-sip-secret".len())
            .any(|w| w == b"alice-sip-secret"),
        "SIP passwords are not stored in clear"
    );

    let dup = site.fails(&["account", "add", "alice", "--password", "x"]);
    assert!(dup.contains("alice"), "{dup}");
    let dup_phone = site.fails(&[
        "account",
        "add",
        "other",
        "--password",
        "x",
        "--phone",
        "48600111222",
    ]);
    assert!(dup_phone.contains("phone"), "{dup_phone}");

    site.ok(&["account", "del", "alice"]);
    assert!(!site.ok(&["account", "list"]).contains("alice"));
    site.fails(&["account", "show", "alice"]);
    site.fails(&["account", "del", "alice"]);
}

#[test]
fn plans_numbers_for_sale_and_exchange_rates_are_managed() {
    let site = Site::new("");
    site.populate();

    // The plan catalogue.
    fn put<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "plan",
            "put",
            "gold",
            "--price",
            "5.00",
            "--currency",
            "eur",
            "--minutes",
            "100",
        ];
        args.extend_from_slice(extra);
        args
    }
    let out = site.ok(&put(&[
        "--prefixes",
        "48,49",
        "--validity-days",
        "30",
        "--recurring",
    ]));
    assert_eq!(out.trim(), "plan gold created: 5.00 EUR, 100 min");
    let out = site.ok(&put(&["--not-for-sale"]));
    assert_eq!(out.trim(), "plan gold replaced: 5.00 EUR, 100 min");
    assert!(site.ok(&["plan", "list"]).contains("\tonce\twithdrawn"));
    site.ok(&put(&[
        "--prefixes",
        "48,49",
        "--validity-days",
        "30",
        "--recurring",
    ]));
    let list = site.ok(&["plan", "list"]);
    assert_eq!(
        list.trim(),
        "gold\t5.00 EUR\t100 min\t48,49\t30 days\trecurring\ton sale"
    );
    for (args, says) in [
        (vec!["--minutes", "0"], "--minutes: 1 to"),
        (vec!["--currency", "XYZ"], "not an ISO 4217"),
        (vec!["--price", "0"], "must be positive"),
    ] {
        let mut bad = put(&[]);
        for pair in args.chunks(2) {
            let at = bad.iter().position(|a| *a == pair[0]).unwrap();
            bad[at + 1] = pair[1];
        }
        let err = site.fails(&bad);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(
        site.ok(&["plan", "del", "gold"]).trim(),
        "plan gold deleted"
    );
    assert_eq!(site.ok(&["plan", "list"]), "");
    site.fails(&["plan", "del", "nope"]);

    // The numbers for sale.
    let csv = site.path("pool.csv");
    std::fs::write(
        &csv,
        "number,monthly_fee,currency,country,setup_fee\n+48 22 100 0001,1.99,PLN,PL,5\n",
    )
    .unwrap();
    let out = site.ok(&["did-pool", "import", csv.to_str().unwrap()]);
    assert_eq!(out.trim(), "1 numbers: 1 added, 0 updated");
    let list = site.ok(&["did-pool", "list", "--country", "pl"]);
    assert_eq!(list.trim(), "+48221000001\tPL\tPLN\t1.99\t5.00\tfree\t-");
    assert_eq!(site.ok(&["did-pool", "list", "--country", "DE"]), "");
    std::fs::write(&csv, "number,monthly_fee\n+48 22 100 0002,1.99\n").unwrap();
    let err = site.fails(&["did-pool", "import", csv.to_str().unwrap()]);
    assert!(err.contains("currency"), "{err}");
    assert_eq!(
        site.ok(&["did-pool", "del", "+48 22 100 0001"]).trim(),
        "number +48221000001 removed from the pool"
    );
    site.fails(&["did-pool", "del", "48221000001"]);

    // Exchange rates, and a top-up in another currency than the account's
    // (alice's is EUR): 43.00 PLN at 4.30 is 10.00 EUR.
    site.ok(&["account", "set", "alice", "--currency", "EUR"]);
    let err = site.fails(&["balance", "topup", "alice", "43.00", "--currency", "PLN"]);
    assert!(err.contains("no exchange rate"), "{err}");
    assert_eq!(
        site.ok(&["fx", "set", "eur", "PLN", "4.30"]).trim(),
        "1 EUR = 4.3 PLN"
    );
    let list = site.ok(&["fx", "list"]);
    assert!(list.starts_with("EUR\tPLN\t4.3\t"), "{list}");
    for (args, says) in [
        (["fx", "set", "EUR", "EUR", "1"], "two currencies"),
        (["fx", "set", "EUR", "PLN", "abc"], "not a rate"),
        (["fx", "set", "EUR", "PLN", "0"], "above 0"),
        (["fx", "set", "EUR", "XYZ", "1"], "not an ISO 4217"),
    ] {
        let err = site.fails(&args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = site.ok(&[
        "balance",
        "topup",
        "alice",
        "43.00",
        "--currency",
        "PLN",
        "--reference",
        "pay-9",
    ]);
    assert!(out.starts_with("alice: +10.00 EUR"), "{out}");
    let ledger = site.ok(&["balance", "ledger", "alice", "--limit", "1"]);
    assert!(ledger.contains("pay-9 (from 43.00 PLN)"), "{ledger}");
    assert_eq!(
        site.ok(&["fx", "del", "PLN", "EUR"]).trim(),
        "rate PLN/EUR deleted"
    );
    site.fails(&["fx", "del", "PLN", "EUR"]);
    assert_eq!(site.ok(&["fx", "list"]), "");
}

#[test]
fn gateways_and_the_local_dialplan_are_managed() {
    let site = Site::new("");
    site.populate();
    let list = site.ok(&["gateway", "list"]);
    assert!(
        list.contains("carrier-pl-mobile\tprefix=486\taddress=127.0.0.1:5081\ttransport=tcp"),
        "{list}"
    );
    let bad = site.fails(&[
        "gateway",
        "add",
        "x",
        "--prefix",
        "1",
        "--address",
        "h:1",
        "--transport",
        "carrier-pigeon",
    ]);
    assert!(bad.contains("carrier-pigeon"), "{bad}");
    site.ok(&["gateway", "del", "carrier-pl"]);
    assert!(!site.ok(&["gateway", "list"]).contains("carrier-pl\t"));

    site.ok(&["dialplan", "add", "48", "pl.sip.example.net"]);
    site.ok(&["dialplan", "add", "1", "us.sip.example.net"]);
    let plan = site.ok(&["dialplan", "list"]);
    assert!(
        plan.contains("48\tpl.sip.example.net") && plan.contains("1\tus.sip.example.net"),
        "{plan}"
    );
    site.ok(&["dialplan", "del", "48"]);
    assert!(!site.ok(&["dialplan", "list"]).contains("pl.sip"));
    site.fails(&["dialplan", "del", "48"]);
}

#[test]
fn route_answers_through_the_wasm_guest() {
    let site = Site::new("");
    site.populate();
    let r = site.route("alice", "48600333444", &[]);
    assert_eq!(r["decision"], "to-user");
    assert_eq!(r["login"], "48600333444");

    let r = site.route("alice", "int4860012345", &[]);
    assert_eq!(r["decision"], "to-gateway");
    assert_eq!(r["gateway"], "carrier-pl-mobile");
    assert_eq!(r["number"], "4860012345");
    assert_eq!(r["caller_id"]["user"], "48600111222");

    let r = site.route("alice", "950msg230", &[]);
    assert_eq!(r["decision"], "to-service");
    assert_eq!(r["name"], "voicemail-playback");
    assert_eq!(r["args"], serde_json::json!(["alice", "230"]));

    let r = site.route("alice", "nobody", &["--kind", "message"]);
    assert_eq!(r["decision"], "reject");
    assert_eq!(r["code"], 404);

    // Voicemail is on by default for new accounts.
    let r = site.route("48600333444", "alice", &["--reason", "no-answer"]);
    assert_eq!(r["decision"], "to-service");
    assert_eq!(r["name"], "voicemail-deposit");

    let text = site.ok(&["route", "--from", "alice", "--to", "int4822123456"]);
    assert_eq!(
        text.trim(),
        "to-gateway carrier-pl 4822123456 (caller-id 48600111222 <48600111222>)"
    );

    let line = site.fails(&["route", "--from", "mallory", "--to", "alice"]);
    assert!(line.contains("mallory"), "{line}");
}

/// `[guests.routing] capabilities`: a guest that imports an interface it
/// is not granted is refused at load; one granted fewer look-ups than it
/// makes fails its smoke call when the first call needs them, else the call
/// that makes one gets the fallback.
#[test]
fn a_routing_guests_capabilities_bound_its_imports_and_look_ups() {
    let site = Site::new("capabilities = { directory = [\"accounts\"] }\n");
    site.populate();
    // Accounts are granted: users are found.
    assert_eq!(
        site.ok(&["route", "--from", "alice", "--to", "48600333444"])
            .trim(),
        "to-user 48600333444"
    );
    // Gateways are not: an OFFNET call gets the fallback.
    assert_eq!(
        site.ok(&["route", "--from", "alice", "--to", "int4860012345"])
            .trim(),
        "reject 500 Routing Unavailable [fallback: guest routing failed: denied]"
    );

    let site = Site::new("capabilities = { directory = [\"gateways\"] }\n");
    site.populate();
    let line = site.fails(&["route", "--from", "alice", "--to", "bob"]);
    assert!(
        line.contains("failed its smoke call")
            && line.contains("directory look-up not granted: accounts"),
        "{line}"
    );

    let site = Site::new("capabilities = { imports = [\"log\", \"config\"] }\n");
    site.populate();
    let line = site.fails(&["route", "--from", "alice", "--to", "bob"]);
    assert!(
        line.contains(
            "imports softswitch:routing/directory@0.1.0, which its capabilities do not grant (imports = [log, config])"
        ),
        "{line}"
    );
}

/// A guest reads its own configuration values only: the blocklist router
/// does not see `blocked-callers` set for another guest, and does see it
/// when the value is its own.
#[test]
fn a_guest_cannot_read_another_guests_config_keys() {
    let other = format!(
        "[guests.other-router]\npath = \"{}\"\nworld = \"routing\"\n\
         [guests.other-router.config]\nblocked-callers = \"alice\"\n\
         [sms]\nprovider = \"local\"\n[sms.providers.local]\npath = \"{}\"\n\
         allowed_hosts = [\"127.0.0.1\"]\n\
         config = {{ url = \"http://127.0.0.1:9/send\", blocked-callers = \"alice\" }}\n",
        guest_wasm("routing_blocklist").display(),
        guest_wasm("sms_generic").display(),
    );
    let route = |site: &Site| {
        replace_router(site, &guest_wasm("routing_blocklist"));
        site.populate();
        site.ok(&["route", "--from", "alice", "--to", "48600333444"])
    };
    let site = Site::new(&format!("world = \"routing\"\n{other}"));
    assert_eq!(route(&site).trim(), "to-user 48600333444");

    let own = "world = \"routing\"\n[guests.routing.config]\nblocked-callers = \"alice\"\n";
    let site = Site::new(&format!("{own}{other}"));
    assert_eq!(route(&site).trim(), "reject 403 Blocked");
}

#[test]
fn guest_check_names_the_world_or_the_reason() {
    let site = Site::new("");
    let ok = site.ok(&[
        "guest",
        "check",
        guest_wasm("routing_blocklist").to_str().unwrap(),
    ]);
    assert!(
        ok.contains("implements softswitch:routing/router@0.1.0"),
        "{ok}"
    );
    let wrong = site.fails(&[
        "guest",
        "check",
        guest_wasm("fixture_wrong_world").to_str().unwrap(),
    ]);
    assert!(
        wrong.contains("softswitch:routing/router@0.1.0") && wrong.contains("hello"),
        "{wrong}"
    );
    // SMS providers: the version of the WIT each was built for.
    for (guest, version) in [
        ("sms_generic", "0.2.0"),
        ("sms_vonage", "0.1.0"),
        ("sms_messagebird_py", "0.1.0"),
    ] {
        let ok = site.ok(&["guest", "check", guest_wasm(guest).to_str().unwrap()]);
        assert!(
            ok.contains(&format!(
                "implements softswitch:sms-provider/provider@{version}"
            )),
            "{guest}: {ok}"
        );
    }
    let missing = site.fails(&["guest", "check", "/nonexistent.wasm"]);
    assert!(missing.contains("/nonexistent.wasm"), "{missing}");
    std::fs::write(site.path("junk.wasm"), "junk").unwrap();
    let junk = site.fails(&["guest", "check", site.path("junk.wasm").to_str().unwrap()]);
    assert!(junk.contains("not a valid WebAssembly component"), "{junk}");
}

/// `guest test`: the shipped routing guests pass their own cases; a wrong
/// expectation fails the run and says what came instead; a guest of
/// another world and a malformed case file are clear errors.
#[test]
fn guest_test_runs_a_routing_guest_against_its_cases() {
    let site = Site::new("");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cases = |guest: &str| repo.join(format!("guests/routing/{guest}/cases.toml"));
    // lcr-js: the JavaScript guest (componentize-js), tested like the Rust ones.
    for guest in ["default", "blocklist", "lcr-js"] {
        let wasm = guest_wasm(&format!("routing_{}", guest.replace('-', "_")));
        let out = site.ok(&[
            "guest",
            "test",
            wasm.to_str().unwrap(),
            cases(guest).to_str().unwrap(),
        ]);
        let last = out.lines().last().unwrap_or_default();
        let total = out.lines().filter(|l| l.starts_with("ok ")).count();
        assert!(total >= 5, "{out}");
        assert_eq!(
            last,
            format!("{total} cases, {total} passed, 0 failed"),
            "{out}"
        );
    }

    // The default router does not block: the blocklist's cases fail on it.
    let default = guest_wasm("routing_default");
    let blocklist_cases = cases("blocklist");
    let args = [
        "guest",
        "test",
        default.to_str().unwrap(),
        blocklist_cases.to_str().unwrap(),
    ];
    let error = site.fails(&args);
    assert_eq!(error, "error: 3 of 5 cases failed");
    let report = String::from_utf8(site.run(&args).stdout).unwrap();
    assert!(
        report.contains(
            "FAIL  a blocked caller: expected \"reject 403 Blocked\", got \"to-user alice\""
        ),
        "{report}"
    );
    assert!(report.contains("5 cases, 2 passed, 3 failed"), "{report}");

    // The SMS providers (their requests, the vendors' answers, the reports)
    // and the push providers (their requests, with a signed APNs token and
    // a given FCM access token; refusals; the services' answers).
    for (kind, vendor, count) in [
        // generic is built for WIT 0.2.0 (its cases check the text's
        // coding arrives), the others for 0.1.0 (served through the shim).
        ("sms", "generic", 12),
        ("sms", "vonage", 7),
        ("sms", "twilio", 7),
        // The Python guest (componentize-py), tested like the Rust ones.
        ("sms", "messagebird-py", 11),
        ("push", "apns", 10),
        ("push", "fcm", 9),
        ("push", "webhook", 7),
    ] {
        let wasm = guest_wasm(&format!("{kind}_{}", vendor.replace('-', "_")));
        let file = repo.join(format!("guests/{kind}-providers/{vendor}/cases.toml"));
        let out = site.ok(&[
            "guest",
            "test",
            wasm.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert!(
            out.ends_with(&format!("{count} cases, {count} passed, 0 failed\n")),
            "{vendor}: {out}"
        );
    }
    // A push guest that answers wrongly is caught: the webhook guest
    // against the APNs cases.
    let webhook = guest_wasm("push_webhook");
    let apns_cases = repo.join("guests/push-providers/apns/cases.toml");
    let args = [
        "guest",
        "test",
        webhook.to_str().unwrap(),
        apns_cases.to_str().unwrap(),
    ];
    let error = site.fails(&args);
    assert!(error.ends_with("of 10 cases failed"), "{error}");
    let report = String::from_utf8(site.run(&args).stdout).unwrap();
    assert!(
        report.contains("FAIL  an uninstalled app: expected \"token-invalid Unregistered\""),
        "{report}"
    );

    let sms = guest_wasm("sms_generic");
    let sms_cases = repo.join("guests/sms-providers/generic/cases.toml");
    // Routing questions mean nothing to it, nor SMS cases to a push guest.
    let line = site.fails(&[
        "guest",
        "test",
        sms.to_str().unwrap(),
        cases("default").to_str().unwrap(),
    ]);
    assert!(
        line.contains("has no [[sends]], [[responses]] or [[reports]]"),
        "{line}"
    );
    let push = guest_wasm("push_webhook");
    let line = site.fails(&[
        "guest",
        "test",
        push.to_str().unwrap(),
        sms_cases.to_str().unwrap(),
    ]);
    assert!(
        line.contains("has no [[pushes]] or [[push_responses]]"),
        "{line}"
    );

    std::fs::write(site.path("bad.toml"), "[[cases]]\nfrom = \"alice\"\n").unwrap();
    let bad = site.fails(&[
        "guest",
        "test",
        default.to_str().unwrap(),
        site.path("bad.toml").to_str().unwrap(),
    ]);
    assert!(bad.contains("bad.toml is not a case file"), "{bad}");
}

/// Replaces the site's routing guest file with `source` in one rename, as
/// an operator's deploy would.
fn replace_router(site: &Site, source: &Path) {
    std::fs::copy(source, site.path("router.tmp")).unwrap();
    std::fs::rename(site.path("router.tmp"), site.path("router.wasm")).unwrap();
}

/// `POST /guests/routing/reload` on the admin endpoint.
async fn reload_routing(client: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    client
        .post(format!("{base}/guests/routing/reload"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn guests(client: &reqwest::Client, base: &str, token: &str) -> serde_json::Value {
    client
        .get(format!("{base}/guests"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An IVR service's guest is in the registry as `ivr.<service>`: a file
/// that is no IVR flow is refused on reload (the service keeps its
/// version), another flow goes into service, and the history shows both.
#[tokio::test]
async fn an_ivr_services_guest_is_reloaded_through_the_admin_endpoint() {
    let port = free_port();
    let token = "test-admin-token-0123456789";
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    let site = Site::new(&format!(
        "\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n\n[ivr]\nprompts = {:?}\n[ivr.services.greeting]\npath = \"greeting.wasm\"\n",
        prompts.display().to_string()
    ));
    std::fs::copy(guest_wasm("ivr_greeting"), site.path("greeting.wasm")).unwrap();
    let mut running = Running::start(&site, port);
    let client = reqwest::Client::new();
    running.wait_ready(&client).await;
    let base = running.base.clone();
    let greeting = async || -> serde_json::Value {
        guest_named(&guests(&client, &base, token).await, "ivr.greeting")
    };
    let reload = async || {
        client
            .post(format!("{base}/guests/ivr.greeting/reload"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    };
    let first = greeting().await;
    assert_eq!(first["world"], "softswitch:ivr/scenario@0.1.0");

    std::fs::copy(guest_wasm("routing_default"), site.path("greeting.wasm")).unwrap();
    let refused = reload().await;
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("does not implement softswitch:ivr/scenario@0.1.0"),
        "{body}"
    );
    assert_eq!(greeting().await["sha256"], first["sha256"]);

    std::fs::copy(guest_wasm("ivr_code_readout"), site.path("greeting.wasm")).unwrap();
    assert_eq!(reload().await.status(), 200);
    let now = greeting().await;
    assert_ne!(now["sha256"], first["sha256"]);
    let history: serde_json::Value = client
        .get(format!("{base}/guests/ivr.greeting/history"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"in-service"), "{history}");
    assert!(events.contains(&"refused"), "{history}");
    assert_eq!(events.last(), Some(&"in-service"), "{history}");
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["sha256"],
        now["sha256"]
    );
}

/// `guest test` on IVR guests: each shipped flow passes its own calls on
/// a scripted caller; another flow against them fails with the line where
/// its transcript departs; a bad script step and a missing prompts folder
/// are clear errors.
#[test]
fn guest_test_runs_ivr_guests_on_a_scripted_caller() {
    let site = Site::new("");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cases = |flow: &str| repo.join(format!("guests/ivr/{flow}/cases.toml"));
    let wasm = |flow: &str| guest_wasm(&format!("ivr_{}", flow.replace('-', "_")));
    for (flow, count) in [
        ("voicemail-deposit", 6),
        ("voicemail-access", 7),
        ("greeting", 3),
        ("code-readout", 3),
    ] {
        let out = site.ok(&[
            "guest",
            "test",
            wasm(flow).to_str().unwrap(),
            cases(flow).to_str().unwrap(),
        ]);
        assert!(
            out.ends_with(&format!("{count} cases, {count} passed, 0 failed\n")),
            "{flow}: {out}"
        );
    }

    // The greeting flow is no deposit: it records the caller's own box.
    let greeting = wasm("greeting");
    let deposit_cases = cases("voicemail-deposit");
    let args = [
        "guest",
        "test",
        greeting.to_str().unwrap(),
        deposit_cases.to_str().unwrap(),
    ];
    assert_eq!(site.fails(&args), "error: 6 of 6 cases failed");
    let report = String::from_utf8(site.run(&args).stdout).unwrap();
    assert!(
        report.contains(
            "FAIL  a message ended with #: transcript line 2: expected \"play greeting vm-greeting-default\", got \"play vm-record-greeting\""
        ),
        "{report}"
    );

    std::fs::write(
        site.path("bad.toml"),
        format!(
            "[ivr]\nprompts = {:?}\n[[calls]]\nservice = \"greeting\"\nscript = [\"shout 3\"]\nexpect = []\n",
            repo.join("prompts").display().to_string()
        ),
    )
    .unwrap();
    let error = site.fails(&[
        "guest",
        "test",
        greeting.to_str().unwrap(),
        site.path("bad.toml").to_str().unwrap(),
    ]);
    assert!(
        error.contains("script step \"shout 3\": unknown step"),
        "{error}"
    );
    // `mailboxes = "caller"`: a deposit into someone else's box is refused.
    let deposit = std::fs::read_to_string(cases("voicemail-deposit"))
        .unwrap()
        .replace(
            "../../../prompts",
            &repo.join("prompts").display().to_string(),
        );
    let first = &deposit[..deposit.find("\n[[calls]]\nname = \"a key skips").unwrap()];
    std::fs::write(
        site.path("caller-only.toml"),
        first.replace("[ivr]\n", "[ivr]\nmailboxes = \"caller\"\n"),
    )
    .unwrap();
    let (deposit_wasm, caller_only) = (wasm("voicemail-deposit"), site.path("caller-only.toml"));
    let args = [
        "guest",
        "test",
        deposit_wasm.to_str().unwrap(),
        caller_only.to_str().unwrap(),
    ];
    let report = String::from_utf8(site.run(&args).stdout).unwrap();
    assert!(
        report.contains(
            "FAIL  a message ended with #: expected \"completed\", got \"error forbidden: mailbox \\\"bob\\\"\""
        ),
        "{report}"
    );

    let error = site.fails(&[
        "guest",
        "test",
        greeting.to_str().unwrap(),
        cases("greeting").to_str().unwrap(),
        "--prompts",
        site.path("nowhere").to_str().unwrap(),
    ]);
    assert!(error.contains("no prompts folder at"), "{error}");
}

/// An IVR service whose config names its cases: a new version goes into
/// service only if it passes them (the canary); one that does not is
/// refused and the version in service stays.
#[tokio::test]
async fn an_ivr_guest_is_swapped_only_past_its_canary() {
    let port = free_port();
    let token = "test-admin-token-0123456789";
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let site = Site::new(&format!(
        "\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n\n[ivr]\nprompts = {:?}\n[ivr.services.greeting]\npath = \"greeting.wasm\"\ncases = {:?}\n",
        repo.join("prompts").display().to_string(),
        repo.join("guests/ivr/greeting/cases.toml")
            .display()
            .to_string(),
    ));
    let greeting_wasm = std::fs::read(guest_wasm("ivr_greeting")).unwrap();
    std::fs::write(site.path("greeting.wasm"), &greeting_wasm).unwrap();
    let mut running = Running::start(&site, port);
    let client = reqwest::Client::new();
    running.wait_ready(&client).await;
    let base = running.base.clone();
    let greeting = async || -> serde_json::Value {
        guest_named(&guests(&client, &base, token).await, "ivr.greeting")
    };
    let reload = async || -> (u16, serde_json::Value) {
        let r = client
            .post(format!("{base}/guests/ivr.greeting/reload"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    };
    let first = greeting().await;
    assert_eq!(first["world"], "softswitch:ivr/scenario@0.1.0");

    // Another flow links fine but fails the greeting's calls: refused.
    std::fs::copy(
        guest_wasm("ivr_voicemail_deposit"),
        site.path("greeting.wasm"),
    )
    .unwrap();
    let (status, body) = reload().await;
    assert_eq!(status, 422, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("failed its cases") && message.contains("greeting/cases.toml"),
        "{message}"
    );
    assert_eq!(greeting().await["sha256"], first["sha256"]);

    // A new build of the greeting passes them: in service.
    std::fs::write(site.path("greeting.wasm"), rebuilt(&greeting_wasm, "2")).unwrap();
    let (status, body) = reload().await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(greeting().await["sha256"], first["sha256"]);
}

#[tokio::test]
async fn the_admin_endpoint_reports_and_reloads_guests() {
    let port = free_port();
    let token = "test-admin-token-0123456789";
    let site = Site::new(&format!(
        "\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n"
    ));
    let mut running = Running::start(&site, port);
    let client = reqwest::Client::new();
    running.wait_ready(&client).await;
    let base = running.base.clone();

    let health: serde_json::Value = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    let denied = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let body: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(body["code"], "missing-token");
    let wrong = client
        .get(format!("{base}/guests"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let list = guests(&client, &base, token).await;
    assert_eq!(list[0]["name"], "routing");
    assert_eq!(list[0]["world"], "softswitch:routing/router@0.1.0");
    let first = list[0]["sha256"].as_str().unwrap().to_string();
    assert_eq!(first.len(), 64);

    let reload = reload_routing(&client, &base, token).await;
    assert_eq!(reload.status(), 200);
    let unknown = client
        .post(format!("{base}/guests/nope/reload"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A replaced file is picked up by the watch.
    let live = site.path("router.wasm");
    replace_router(&site, &guest_wasm("routing_blocklist"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = guests(&client, &base, token).await;
        if now[0]["sha256"] != first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "guest file change not picked up: {}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file is refused over the API and the old version stays.
    std::fs::write(site.path("router.tmp"), b"broken").unwrap();
    std::fs::rename(site.path("router.tmp"), &live).unwrap();
    let refused = reload_routing(&client, &base, token).await;
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "guest-load-failed");
    let still = guests(&client, &base, token).await;
    assert_ne!(still[0]["sha256"], first);
    assert_eq!(still[0]["sha256"].as_str().unwrap().len(), 64);

    // SIGHUP reloads too: it fails again on the broken file, and is counted.
    // Let the watch notice the broken file first, so it does not race the signal.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = failed_loads(&client, &base, token).await;
    assert!(before >= 1);
    running.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while failed_loads(&client, &base, token).await <= before {
        assert!(
            Instant::now() < deadline,
            "SIGHUP reload not counted: {}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running.log().contains("SIGHUP"));

    running.signal("-TERM");
    let status = running.child.wait().unwrap();
    assert!(status.success(), "{}", running.log());
    let log = running.log();
    assert!(!log.contains(token), "the admin token must never be logged");
}

#[tokio::test]
async fn the_admin_endpoint_refuses_addresses_outside_the_allow_list() {
    let port = free_port();
    let site = Site::new(&format!(
        "\n[admin]\nlisten = \"127.0.0.1:{port}\"\nallow = [\"10.0.0.0/8\"]\n"
    ));
    let mut running = Running::start(&site, port);
    let client = reqwest::Client::new();
    running.wait_ready(&client).await;
    let r = client
        .get(format!("{}/health", running.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "address-not-allowed");
    // No token configured: one was generated into the data dir, never logged.
    let token = std::fs::read_to_string(site.path("data/admin.token")).unwrap();
    assert_eq!(token.trim().len(), 64);
    assert!(!running.log().contains(token.trim()));
    assert!(Path::new(&site.path("data/secret.key")).is_file());
}

async fn failed_loads(client: &reqwest::Client, base: &str, token: &str) -> u64 {
    let metrics = client
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| {
            l.starts_with("softswitch_guest_loads_total{guest=\"routing\",outcome=\"failed\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Builds the project in `dir` with the one command its README documents.
/// The four template builds share one target folder, so wit-bindgen and
/// serde_json are compiled once.
fn build_template(dir: &Path) {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/target-templates");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--target", "wasm32-wasip2", "--release"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo build in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn template_wasm(lib: &str) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target-templates/wasm32-wasip2/release")
        .join(format!("{lib}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_new_writes_projects_that_build_and_load() {
    use softswitch::plugins::ivr::IvrGuest;
    use softswitch::plugins::push::{PushDevice, PushProviderGuest};
    use softswitch::plugins::sms::{OutgoingSms, SmsProviderGuest};
    use softswitch::plugins::{PluginError, Plugins, PluginsOptions};
    use softswitch::push::keys::PushKeys;
    use softswitch::push::{Notification, NotificationKind};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    let site = Site::new(
        "\n[guests.routing.config]\nroutes = \"48:carrier-pl, 4860:carrier-pl-mobile\"\n",
    );
    let work = tempfile::tempdir().unwrap();
    let dir = |world: &str| work.path().join(world);

    // What it refuses, each with one clear error.
    let line = site.fails(&["guest", "new", "routing", "1demo"]);
    assert!(line.contains("must start with a letter"), "{line}");
    let line = site.fails(&["guest", "new", "routing", "de.mo"]);
    assert!(line.contains("'.'"), "{line}");
    std::fs::create_dir_all(dir("taken")).unwrap();
    std::fs::write(dir("taken").join("keep.txt"), "mine").unwrap();
    let taken = dir("taken");
    let line = site.fails(&[
        "guest",
        "new",
        "ivr",
        "demo",
        "--dir",
        taken.to_str().unwrap(),
    ]);
    assert!(line.contains("not empty"), "{line}");
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );

    // One project per world, built as its README says.
    let worlds = ["routing", "sms-provider", "ivr", "push-provider"];
    for world in worlds {
        let name = format!("demo_{world}");
        let out = site.ok(&[
            "guest",
            "new",
            world,
            &name,
            "--dir",
            dir(world).to_str().unwrap(),
        ]);
        assert!(
            out.contains("cargo build --target wasm32-wasip2 --release"),
            "{out}"
        );
        for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
            assert!(dir(world).join(file).is_file(), "{world}: no {file}");
        }
        // The newest version of the world's WIT (wit/<world>/<version>/).
        let version = if world == "sms-provider" {
            "0.2.0"
        } else {
            "0.1.0"
        };
        let wit = std::fs::read_to_string(dir(world).join(format!("wit/{world}.wit"))).unwrap();
        let repo_wit = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../wit/{world}/{version}/{world}.wit"));
        assert_eq!(wit, std::fs::read_to_string(repo_wit).unwrap());
        let manifest = std::fs::read_to_string(dir(world).join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{manifest}"
        );
        assert!(
            !manifest.contains("path ="),
            "no path dependency: {manifest}"
        );
        let readme = std::fs::read_to_string(dir(world).join("README.md")).unwrap();
        assert!(
            readme.contains("cargo build --target wasm32-wasip2 --release"),
            "{readme}"
        );
        build_template(&dir(world));
    }

    // Routing: the switch's own check, then decisions through the CLI.
    let routing = template_wasm("demo_routing");
    let ok = site.ok(&["guest", "check", routing.to_str().unwrap()]);
    assert!(
        ok.contains("implements softswitch:routing/router@0.1.0"),
        "{ok}"
    );
    // Its own cases pass, as its README says.
    let cases = dir("routing").join("cases.toml");
    let out = site.ok(&[
        "guest",
        "test",
        routing.to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert!(out.ends_with("6 cases, 6 passed, 0 failed\n"), "{out}");
    // So do the other worlds' (the ones their Python and JavaScript twins
    // share); the IVR flow's play the repository's prompts.
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    for (world, count) in [("sms-provider", 9), ("ivr", 3), ("push-provider", 7)] {
        let wasm = template_wasm(&format!("demo_{}", world.replace('-', "_")));
        let cases = dir(world).join("cases.toml");
        let mut args = vec![
            "guest",
            "test",
            wasm.to_str().unwrap(),
            cases.to_str().unwrap(),
        ];
        if world == "ivr" {
            args.extend(["--prompts", prompts.to_str().unwrap()]);
        }
        let out = site.ok(&args);
        assert!(
            out.ends_with(&format!("{count} cases, {count} passed, 0 failed\n")),
            "{world}: {out}"
        );
    }
    std::fs::copy(&routing, site.path("router.wasm")).unwrap();
    site.populate();
    let r = site.route("alice", "4860123456", &[]);
    assert_eq!(r["decision"], "to-gateway", "{r}");
    assert_eq!(r["gateway"], "carrier-pl-mobile");
    assert_eq!(r["number"], "4860123456");
    assert_eq!(r["fallback"], serde_json::Value::Null, "{r}");
    let r = site.route("alice", "+4822123456", &[]);
    assert_eq!(
        (&r["gateway"], &r["number"]),
        (&"carrier-pl".into(), &"4822123456".into())
    );
    let r = site.route("alice", "48600333444", &[]);
    assert_eq!(
        (&r["decision"], &r["login"]),
        (&"to-user".into(), &"48600333444".into())
    );
    let r = site.route("alice", "15550001", &[]);
    assert_eq!(
        (&r["decision"], &r["code"]),
        (&"reject".into(), &404.into())
    );
    let r = site.route("48600333444", "alice", &["--reason", "busy"]);
    assert_eq!(r["code"], 486, "{r}");

    // The other worlds, loaded by the host library as the switch loads them.
    let plugins = Plugins::new(
        PluginsOptions {
            cache_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-guest-cache"),
            memory_limit_bytes: 64 << 20,
            deadline: Duration::from_secs(2),
            provider_deadline: Duration::from_secs(2),
            warm_instances: 0,
            max_instances: 16,
            instance_wait: Duration::from_secs(1),
        },
        softswitch::metrics::Metrics::new(),
    )
    .unwrap();
    let config = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };

    // The SMS template is written for the newest WIT, and uses what it added.
    let ok = site.ok(&[
        "guest",
        "check",
        template_wasm("demo_sms_provider").to_str().unwrap(),
    ]);
    assert!(
        ok.contains("implements softswitch:sms-provider/provider@0.2.0"),
        "{ok}"
    );
    let sms = SmsProviderGuest::load(
        &plugins,
        "demo",
        &template_wasm("demo_sms_provider"),
        config(&[("url", "https://sms.example/v1/send"), ("api_key", "k-1")]),
    )
    .await
    .unwrap();
    assert_eq!(sms.world(), "softswitch:sms-provider/provider@0.2.0");
    let request = sms
        .build_send(
            &OutgoingSms {
                to: "48600111222".into(),
                sender: "Switch".into(),
                text: "Your code is 1234".into(),
                reference: "r-1".into(),
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(request.url, "https://sms.example/v1/send");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["to"], "+48600111222");
    assert_eq!(body["unicode"], false);

    let keys = Arc::new(PushKeys::load(&BTreeMap::new(), reqwest::Client::new()).unwrap());
    let push = PushProviderGuest::load(
        &plugins,
        "demo",
        &template_wasm("demo_push_provider"),
        config(&[("url", "https://push.example/hook")]),
        keys.clone(),
    )
    .await
    .unwrap();
    let requests = push
        .format(
            &Notification {
                kind: NotificationKind::MissedCall,
                from_login: "bob".into(),
                from_display_name: "Bob".into(),
                from_book_name: None,
                timestamp: 1_700_000_000,
                call_id: Some("c-1".into()),
                excerpt: String::new(),
                badge: 1,
                id: "n-1".into(),
            },
            &PushDevice {
                token: "tok".into(),
                app: String::new(),
                sandbox: false,
                voip: false,
                login: "alice".into(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url, "https://push.example/hook");
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["kind"], "missed-call");

    // An IVR run needs a call's media session: loading proves the world.
    IvrGuest::load(
        &plugins,
        "demo",
        &template_wasm("demo_ivr"),
        BTreeMap::new(),
        Duration::from_secs(1),
    )
    .await
    .unwrap();

    // And a component of one world is refused as another.
    let wrong = SmsProviderGuest::load(
        &plugins,
        "demo",
        &template_wasm("demo_ivr"),
        BTreeMap::new(),
    )
    .await;
    assert!(
        matches!(wrong, Err(PluginError::WrongWorld { .. })),
        "an IVR guest loaded as an SMS provider"
    );
}

/// The README's billing tour, run as a newcomer would run it
/// (`scripts/billing-tour.sh` checks each step itself): a tariff imported,
/// a voucher redeemed, a call to a SIPp carrier charged, one cut when the
/// money runs out, one refused with 402.
#[test]
fn the_billing_tour_charges_a_call_cuts_one_and_refuses_one() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().unwrap();
    let port = |name: &str, port: u16| (name.to_owned(), port.to_string());
    let ports = [
        port("SIP_PORT", free_sip_port()),
        port("TLS_PORT", free_port()),
        port("API_PORT", free_port()),
        port("ADMIN_PORT", free_port()),
        port("GW_PORT", free_sip_port()),
    ];
    let out = Command::new(repo.join("scripts/billing-tour.sh"))
        .env("SOFTSWITCH", env!("CARGO_BIN_EXE_softswitch"))
        .env("WORK", work.path())
        .envs(ports)
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the tour failed:\n{shown}");
    assert!(shown.contains("tour done"), "{shown}");
}

/// Runs `program args` in `dir`; panics with its output when it fails.
fn run_in(dir: &Path, program: &str, args: &[&str]) {
    let run = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        run.status.success(),
        "{program} {args:?} in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `guest new <world> NAME --lang LANG` in `work`, then `build` in the
/// project; checks that the component passes the project's cases (IVR
/// ones with the repository's prompts, as its README says) and returns
/// its size.
fn template_passes_its_cases(
    site: &Site,
    work: &Path,
    lang: &str,
    (world, count): (&str, usize),
    build: impl FnOnce(&Path),
) -> u64 {
    let name = format!("{lang}-{world}");
    let dir = work.join(&name);
    let out = site.ok(&[
        "guest",
        "new",
        world,
        &name,
        "--lang",
        lang,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    for file in ["README.md", "cases.toml", ".gitignore"] {
        assert!(dir.join(file).is_file(), "{world}: no {file}");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let lib = name.replace('-', "_");
    let mut test = format!("softswitch guest test {lib}.wasm cases.toml");
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    if world == "ivr" {
        test.push_str(" --prompts");
    }
    assert!(readme.contains(&test), "{world}: {readme}");
    assert!(out.contains(&test), "{world}: {out}");
    build(&dir);
    let wasm = dir.join(format!("{lib}.wasm"));
    let cases = dir.join("cases.toml");
    let mut args = vec![
        "guest",
        "test",
        wasm.to_str().unwrap(),
        cases.to_str().unwrap(),
    ];
    if world == "ivr" {
        args.extend(["--prompts", prompts.to_str().unwrap()]);
    }
    let out = site.ok(&args);
    assert!(
        out.ends_with(&format!("{count} cases, {count} passed, 0 failed\n")),
        "{lang} {world}: {out}"
    );
    std::fs::metadata(&wasm).unwrap().len()
}

/// `guest new <world> --lang js`, every world: each JavaScript project
/// builds with its documented command (`npm run build`: componentize-js,
/// the version its `package.json` pins, from the npm registry) and passes
/// its cases. Instead of an `npm install` of their own, the projects'
/// `node_modules` is a link to the one `scripts/build-guests.sh` installs
/// (guests/target/js-tools, made here the same way when it is missing): one
/// install of the same pinned tool.
#[test]
fn javascript_templates_build_and_pass_their_cases() {
    let site = Site::new("");
    let work = tempfile::tempdir().unwrap();
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/target/js-tools");
    let mut checked_tools = false;
    // Each world with the cases its `cases.toml` holds.
    let worlds = [
        ("sms-provider", 9),
        ("ivr", 3),
        ("push-provider", 7),
        ("routing", 6),
    ];
    for world in worlds {
        let size = template_passes_its_cases(&site, work.path(), "js", world, |dir| {
            let package: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("package.json")).unwrap()).unwrap();
            let tool = "@bytecodealliance/componentize-js";
            let version = package["devDependencies"][tool]
                .as_str()
                .unwrap_or_else(|| panic!("{package} does not pin {tool}"));
            assert!(
                version.starts_with(|c: char| c.is_ascii_digit()),
                "{tool} {version} is not pinned"
            );
            if !checked_tools {
                let componentize = tools.join("node_modules/.bin/componentize-js");
                let has = Command::new(&componentize).arg("--version").output();
                if !has.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == version) {
                    std::fs::create_dir_all(&tools).unwrap();
                    let prefix = tools.to_str().unwrap();
                    let pin = format!("{tool}@{version}");
                    let install = ["install", "--prefix", prefix, "--no-audit", "--no-fund"];
                    run_in(&tools, "npm", &[&install[..], &["--silent", &pin]].concat());
                }
                checked_tools = true;
            }
            std::os::unix::fs::symlink(tools.join("node_modules"), dir.join("node_modules"))
                .unwrap();
            run_in(dir, "npm", &["run", "build"]);
        });
        assert!(size > 1_000_000, "{world:?}: {size} bytes");
    }
}

/// `guest new <world> --lang python`, every world: each Python project
/// builds with the command its README documents (componentize-py, the
/// version the README pins, from PyPI) and passes its cases. The projects'
/// `.venv` is a link to the one `scripts/build-guests.sh` installs
/// (guests/target/py-venv, made here the same way when it is missing): one
/// install of the same pinned tool.
#[test]
fn python_templates_build_and_pass_their_cases() {
    let site = Site::new("");
    let work = tempfile::tempdir().unwrap();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/target/py-venv");
    let mut checked_venv = false;
    // Each world with the cases its `cases.toml` holds.
    let worlds = [
        ("sms-provider", 6),
        ("ivr", 3),
        ("push-provider", 7),
        ("routing", 6),
    ];
    for world in worlds {
        let size = template_passes_its_cases(&site, work.path(), "python", world, |dir| {
            let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
            let line = |start: &str| {
                readme
                    .lines()
                    .find(|l| l.starts_with(start))
                    .unwrap_or_else(|| panic!("no `{start}` line in {readme}"))
                    .to_owned()
            };
            let install = line("python3 -m venv .venv");
            let version = install
                .split_whitespace()
                .find_map(|w| w.strip_prefix("componentize-py=="))
                .unwrap_or_else(|| panic!("no pinned version in {install:?}"));
            if !checked_venv {
                let componentize = venv.join("bin/componentize-py");
                let has = Command::new(&componentize).arg("--version").output();
                let wanted = format!("componentize-py {version}");
                if !has.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == wanted) {
                    let parent = venv.parent().unwrap();
                    std::fs::create_dir_all(parent).unwrap();
                    run_in(parent, "python3", &["-m", "venv", venv.to_str().unwrap()]);
                    let pip = venv.join("bin/pip");
                    let pin = format!("componentize-py=={version}");
                    run_in(parent, pip.to_str().unwrap(), &["install", "-q", &pin]);
                }
                checked_venv = true;
            }
            std::os::unix::fs::symlink(&venv, dir.join(".venv")).unwrap();
            run_in(dir, "sh", &["-c", &line(".venv/bin/componentize-py ")]);
        });
        assert!(size > 1_000_000, "{world:?}: {size} bytes");
    }
}

/// The README's Python SMS provider tutorial, run exactly as written
/// (`scripts/tutorial-sms.sh` extracts its steps): `guest new --lang
/// python`, componentize-py, `guest test`, a running switch sending a code
/// through the guest, a change the canary refuses, one it lets through.
#[test]
fn the_python_sms_tutorial_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(repo.join("scripts/tutorial-sms.sh"))
        .env("SOFTSWITCH_BIN", env!("CARGO_BIN_EXE_softswitch"))
        .env("TUTORIAL_DIR", work.path())
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the tutorial failed:\n{shown}");
    // What the newcomer sees at each step.
    for seen in [
        "6 cases, 6 passed, 0 failed",
        "/send Bearer tutorial-key {\"to\": \"48600111222\", \"from\": \"Acme\", \"text\": \"Your verification code is",
        "failed its cases: 1 of 6 cases in",
        "\"message\": \"Your verification code is",
    ] {
        assert!(shown.contains(seen), "no {seen:?} in:\n{shown}");
    }
}

/// `[guests.<name>] cases`: a hot reload runs the guest's cases against
/// the new version and refuses it when one fails; the version in service
/// stays. A version that passes is swapped in.
#[tokio::test]
async fn a_reload_that_fails_the_guests_cases_is_refused() {
    let port = free_port();
    let token = "test-admin-token-0123456789";
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cases = repo.join("guests/routing/blocklist/cases.toml");
    // The lines go into [guests.routing], whose file is router.wasm.
    let site = Site::new(&format!(
        "cases = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n",
        cases.display()
    ));
    replace_router(&site, &guest_wasm("routing_blocklist"));
    let mut running = Running::start(&site, port);
    let client = reqwest::Client::new();
    running.wait_ready(&client).await;
    let base = running.base.clone();
    let blocklist = guests(&client, &base, token).await[0]["sha256"].clone();

    // The default router blocks nobody: three of the five cases fail.
    replace_router(&site, &guest_wasm("routing_default"));
    let refused = reload_routing(&client, &base, token).await;
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "guest-load-failed");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("failed its cases: 3 of 5 cases")
            && message.contains("a blocked caller: expected \"reject 403 Blocked\""),
        "{message}"
    );
    assert_eq!(guests(&client, &base, token).await[0]["sha256"], blocklist);

    // The blocklist again (rebuilt or not, it passes): in service.
    replace_router(&site, &guest_wasm("routing_blocklist"));
    let ok = reload_routing(&client, &base, token).await;
    assert_eq!(ok.status(), 200, "{}", running.log());
    assert_eq!(guests(&client, &base, token).await[0]["sha256"], blocklist);
}
