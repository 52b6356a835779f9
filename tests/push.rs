//! Push notifications, black-box: the switch with the APNs, FCM and
//! UnifiedPush guests, against local stand-ins that speak the services'
//! documented protocols (HTTP/2 + TLS, ES256 provider tokens, the OAuth 2.0
//! JWT bearer grant), and SIPp as the phones.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use support::push::{Answer, Seen, StandIn, TestPki};
use support::sipp::{Switch, sipp};

const TEAM: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const TOPIC: &str = "net.example.softphone";
const PROJECT: &str = "softswitch-test";
const CLIENT_EMAIL: &str = "push@softswitch-test.iam.gserviceaccount.com";
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The switch with an API, the three push guests, and their stand-ins.
struct PushSite {
    switch: Switch,
    base: String,
    client: reqwest::Client,
    apns: StandIn,
    fcm: StandIn,
    webpush: StandIn,
    /// The APNs key's public half (uncompressed P-256 point).
    apns_public: Vec<u8>,
    /// The service account's public key (PKCS#1 DER).
    fcm_public: Vec<u8>,
    /// The key files the switch reads.
    _keys: tempfile::TempDir,
    /// The `[push]` sections: another node of a cluster gets them too.
    push_config: String,
}

fn apns_ok(_: &Seen) -> Answer {
    Answer::new(200, "").header("apns-id", "6B2C7A4E-0000-4000-8000-000000000001")
}

fn fcm_ok(s: &Seen) -> Answer {
    if s.path == "/token" {
        Answer::new(
            200,
            r#"{"access_token":"ya29.test-access-token","expires_in":3599,"token_type":"Bearer"}"#,
        )
        .header("content-type", "application/json")
    } else {
        Answer::new(
            200,
            &format!(
                r#"{{"name":"projects/{PROJECT}/messages/0:1500415314455276%31bd1c9631bd1c96"}}"#
            ),
        )
        .header("content-type", "application/json")
    }
}

impl PushSite {
    async fn start() -> PushSite {
        PushSite::start_with("").await
    }

    /// Like [`PushSite::start`], with `extra_config` (whole sections) added.
    async fn start_with(extra_config: &str) -> PushSite {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path());
        let apns = StandIn::https(&pki, apns_ok).await;
        let fcm = StandIn::https(&pki, fcm_ok).await;
        let webpush = StandIn::http(|_| Answer::new(201, "").header("location", "/up/msg/1")).await;
        let apns_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p8 = dir.path().join("AuthKey.p8");
        std::fs::write(&p8, apns_key.serialize_pem()).unwrap();
        let (account, fcm_public) = support::push::service_account(
            dir.path(),
            &format!("{}/token", fcm.base("https")),
            PROJECT,
            CLIENT_EMAIL,
        )
        .unwrap();
        let account = account.display().to_string();
        let wasm = |n: &str| support::guest_wasm(n).display().to_string();
        let push_config = format!(
            r#"
[push]
ca_file = "{ca}"
retry_base_secs = 1
poll_interval_ms = 200
http_timeout_ms = 1500
[push.keys.apns]
path = "{p8}"
key_id = "{KEY_ID}"
[push.keys.fcm]
path = "{account}"
[push.providers.apns]
path = "{apns_wasm}"
allowed_hosts = ["127.0.0.1"]
config = {{ team_id = "{TEAM}", topic = "{TOPIC}", base_url = "{apns_base}", sandbox_url = "{apns_base}" }}
[push.providers.fcm]
path = "{fcm_wasm}"
allowed_hosts = ["127.0.0.1"]
config = {{ project_id = "{PROJECT}", base_url = "{fcm_base}" }}
[push.providers.webpush]
path = "{webhook_wasm}"
allowed_hosts = ["*"]
"#,
            ca = pki.ca_file.display(),
            p8 = p8.display(),
            apns_wasm = wasm("push_apns"),
            fcm_wasm = wasm("push_fcm"),
            webhook_wasm = wasm("push_webhook"),
            apns_base = apns.base("https"),
            fcm_base = fcm.base("https"),
        );
        let (sip, api_port, admin) = (
            support::sipp::free_sip_port(),
            support::free_port(),
            support::free_port(),
        );
        let site = support::Site::with_api(
            sip,
            &format!("listen = [\"127.0.0.1:{api_port}\"]\n"),
            &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{push_config}{extra_config}"),
        );
        for (login, phone) in [
            ("alice", "48600111000"),
            ("bob", "48600222000"),
            ("carol", "48600333000"),
        ] {
            site.ok(&[
                "account",
                "add",
                login,
                "--password",
                &format!("{login}-pw"),
                "--access-password",
                &format!("{login}-web"),
                "--phone",
                phone,
                "--username",
                login,
            ]);
        }
        let mut switch = Switch {
            site,
            running: None,
            sip,
            tls: 0,
            admin,
        };
        switch.boot().await;
        PushSite {
            switch,
            base: format!("https://127.0.0.1:{api_port}"),
            client: support::api_client(),
            apns,
            fcm,
            webpush,
            apns_public: apns_key.public_key_raw().to_vec(),
            fcm_public,
            _keys: dir,
            push_config,
        }
    }

    async fn token(&self, login: &str) -> String {
        support::api_token(&self.client, &self.base, login, &format!("{login}-web")).await
    }

    /// `PUT /v1/push-tokens/{instance}`: (status, body).
    async fn put_token(
        &self,
        bearer: &str,
        instance: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .put(format!("{}/v1/push-tokens/{instance}", self.base))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    async fn tokens(&self, bearer: &str) -> Vec<serde_json::Value> {
        let r: serde_json::Value = self
            .client
            .get(format!("{}/v1/push-tokens", self.base))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["tokens"].as_array().unwrap().clone()
    }

    /// alice sends bob (offline) a MESSAGE of `content_type` with `text`;
    /// the switch must accept it (202: stored for later).
    fn message(&self, content_type: &str, text: &str) {
        self.message_answered(content_type, text, "202");
    }

    /// [`PushSite::message`] expecting `code` as the final answer.
    fn message_answered(&self, content_type: &str, text: &str, code: &str) {
        let scenario = self.switch.variant_with(
            "uac_message_auth.xml",
            &[
                ("hello from sipp-bench message [call_number]", text),
                (
                    "Content-Type: text/plain",
                    &format!("Content-Type: {content_type}"),
                ),
                (
                    "<recv response=\"200\" rtd=\"1\" response_txn=\"msg2\"/>",
                    &format!("<recv response=\"{code}\" rtd=\"1\" response_txn=\"msg2\"/>"),
                ),
            ],
        );
        let users = self.switch.users("alice.csv", "alice", "alice-pw");
        let (ok, trace) = sipp(
            &self.switch,
            &scenario,
            &["-inf", users.to_str().unwrap(), "-s", "bob"],
        );
        assert!(ok, "MESSAGE not accepted:\n{trace}\n{}", self.switch.log());
    }

    fn log(&self) -> String {
        self.switch.log()
    }

    async fn metrics(&self) -> String {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/metrics", self.switch.admin))
            .bearer_auth(admin_token(&self.switch))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A push provider's new build goes into service through the admin
/// endpoint only past its canary (its `cases`); one that fails them is
/// refused and the history says so.
#[tokio::test]
async fn a_push_provider_build_goes_into_service_only_past_its_canary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spare.wasm");
    std::fs::copy(support::guest_wasm("push_webhook"), &file).unwrap();
    let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/push-providers/webhook/cases.toml");
    let site = PushSite::start_with(&format!(
        "[push.providers.spare]\npath = {:?}\nallowed_hosts = [\"*\"]\ncases = {:?}\n",
        file.display().to_string(),
        cases.display().to_string()
    ))
    .await;
    let token = admin_token(&site.switch);
    let admin = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(
                method,
                format!("http://127.0.0.1:{}{path}", site.switch.admin),
            )
            .bearer_auth(&token)
    };
    let spare = async || -> serde_json::Value {
        let all: serde_json::Value = admin(reqwest::Method::GET, "/guests")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        support::guest_named(&all, "push.spare")
    };
    let first = spare().await;
    assert_eq!(first["world"], "softswitch:push-provider/provider@0.1.0");

    // The APNs guest in the webhook's file fails the webhook's cases.
    std::fs::copy(support::guest_wasm("push_apns"), &file).unwrap();
    let r = admin(reqwest::Method::POST, "/guests/push.spare/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("failed its cases"),
        "{body}"
    );
    assert_eq!(spare().await["sha256"], first["sha256"]);

    // A new build of the webhook guest passes and goes into service.
    let webhook = std::fs::read(support::guest_wasm("push_webhook")).unwrap();
    std::fs::write(&file, support::rebuilt(&webhook, "2")).unwrap();
    let r = admin(reqwest::Method::POST, "/guests/push.spare/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let now = spare().await;
    assert_ne!(now["sha256"], first["sha256"]);
    let history: serde_json::Value = admin(reqwest::Method::GET, "/guests/push.spare/history")
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
    // The watch may have seen the refused file as well as the admin call.
    assert_eq!(events.first(), Some(&"in-service"), "{history}");
    assert_eq!(events.last(), Some(&"in-service"), "{history}");
    assert!(events.contains(&"refused"), "{history}");
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["sha256"],
        now["sha256"]
    );
}

fn admin_token(switch: &Switch) -> String {
    std::fs::read_to_string(switch.site.path("data/admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// The JSON of a JWT's part `i` (0 header, 1 claims), after checking its
/// signature with `public` under `alg`.
fn verified_jwt(
    jwt: &str,
    public: &[u8],
    alg: &'static dyn signature::VerificationAlgorithm,
) -> (serde_json::Value, serde_json::Value) {
    let (input, sig) = jwt.rsplit_once('.').expect("a compact JWS");
    signature::UnparsedPublicKey::new(alg, public)
        .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
        .expect("the JWT's signature verifies with the configured key's public half");
    let part = |i: usize| -> serde_json::Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').nth(i).unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    (part(0), part(1))
}

async fn wait_until(what: &str, log: impl Fn() -> String, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "never: {what}\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_users_message_reaches_apns_fcm_and_unifiedpush_devices() {
    let site = PushSite::start().await;
    site.switch.site.ok(&[
        "contact",
        "add",
        "bob",
        "+48600111000",
        "--name",
        "Alice Liddell",
    ]);
    let bob = site.token("bob").await;
    let apns_alert = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let apns_voip = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    for (instance, body) in [
        (
            "iphone",
            serde_json::json!({"provider": "apns", "token": apns_voip, "app": TOPIC, "kind": "voip"}),
        ),
        (
            "iphone",
            serde_json::json!({"provider": "apns", "token": apns_alert, "app": TOPIC}),
        ),
        (
            "pixel",
            serde_json::json!({"provider": "fcm", "token": "fcm-registration-token-1", "app": PROJECT}),
        ),
    ] {
        let (status, answer) = site.put_token(&bob, instance, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    // A UnifiedPush phone puts its endpoint in its REGISTER (RFC 8599),
    // then goes away: the token stays.
    let endpoint = format!("{}/up/bob-endpoint", site.webpush.base("http"));
    let escaped: String = endpoint
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let contact = "Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>";
    let register = site.switch.variant_with(
        "register_auth.xml",
        &[(
            contact,
            &format!(
                "Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport];pn-provider=webpush;pn-prid={escaped}>;+sip.instance=\"<urn:uuid:0f0e0d0c-0000-4000-8000-00000000b0b0>\""
            ),
        ), ("Expires: 3600", "Expires: 60")],
    );
    let users = site.switch.users("bob.csv", "bob", "bob-pw");
    let (ok, trace) = sipp(&site.switch, &register, &["-inf", users.to_str().unwrap()]);
    assert!(ok, "{trace}\n{}", site.log());
    let unregister = site.switch.variant_with(
        "register_auth.xml",
        &[(contact, &format!("Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport];pn-provider=webpush;pn-prid={escaped}>")), ("Expires: 3600", "Expires: 0")],
    );
    let (ok, trace) = sipp(
        &site.switch,
        &unregister,
        &["-inf", users.to_str().unwrap()],
    );
    assert!(ok, "{trace}\n{}", site.log());
    let tokens = site.tokens(&bob).await;
    let from_register: Vec<_> = tokens
        .iter()
        .filter(|t| t["source"] == "register")
        .collect();
    assert_eq!(from_register.len(), 1, "{tokens:?}");
    assert_eq!(from_register[0]["provider"], "webpush");
    assert_eq!(from_register[0]["token"], endpoint.as_str());
    assert_eq!(
        from_register[0]["instance"],
        "<urn:uuid:0f0e0d0c-0000-4000-8000-00000000b0b0>"
    );

    let text = "Are you coming to the tea party at five? The March Hare insists.";
    site.message("text/plain", text);

    // APNs: one alert over HTTP/2 to the alert token (never the VoIP one),
    // with a provider token signed by the configured key.
    let apns = site.apns.wait_for("/3/device/", 1, || site.log()).await;
    let a = &apns[0];
    assert!(a.http2, "APNs is HTTP/2 only");
    assert_eq!(a.method, "POST");
    assert_eq!(a.path, format!("/3/device/{apns_alert}"));
    assert_eq!(a.header("apns-push-type"), Some("alert"));
    assert_eq!(a.header("apns-topic"), Some(TOPIC));
    let bearer = a
        .header("authorization")
        .unwrap()
        .strip_prefix("bearer ")
        .unwrap();
    let (header, claims) = verified_jwt(
        bearer,
        &site.apns_public,
        &signature::ECDSA_P256_SHA256_FIXED,
    );
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], KEY_ID);
    assert_eq!(claims["iss"], TEAM);
    let body = a.json();
    assert_eq!(
        body["aps"]["alert"]["title"], "Alice Liddell",
        "the callee's own name for the sender: {body}"
    );
    let excerpt: String = text.chars().take(40).collect();
    assert_eq!(body["aps"]["alert"]["body"], excerpt.as_str());
    assert_eq!(body["type"], "text");
    assert_eq!(body["from"], "alice");

    // FCM: an OAuth token from the service account, then the v1 send.
    let grants = site.fcm.wait_for("/token", 1, || site.log()).await;
    let form: Vec<(String, String)> = url_pairs(&grants[0].body);
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(
        field("grant_type"),
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let (header, claims) = verified_jwt(
        &field("assertion"),
        &site.fcm_public,
        &signature::RSA_PKCS1_2048_8192_SHA256,
    );
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], CLIENT_EMAIL);
    assert_eq!(claims["scope"], FCM_SCOPE);
    assert_eq!(claims["aud"], format!("{}/token", site.fcm.base("https")));
    let sends = site
        .fcm
        .wait_for(&format!("/v1/projects/{PROJECT}/messages:send"), 1, || {
            site.log()
        })
        .await;
    let f = &sends[0];
    assert_eq!(
        f.header("authorization"),
        Some("Bearer ya29.test-access-token")
    );
    let message = &f.json()["message"];
    assert_eq!(message["token"], "fcm-registration-token-1");
    assert_eq!(message["data"]["type"], "text");
    assert_eq!(message["data"]["excerpt"], excerpt.as_str());
    assert_eq!(message["data"]["from_login"], "alice");

    // UnifiedPush: the JSON notification POSTed to the device's endpoint.
    let up = site
        .webpush
        .wait_for("/up/bob-endpoint", 1, || site.log())
        .await;
    assert_eq!(up[0].json()["type"], "text");
    assert_eq!(up[0].json()["excerpt"], excerpt.as_str());

    // A second message: the OAuth token is reused; a system command is
    // never announced (SPEC §5).
    site.message("text/plain", "second");
    site.fcm
        .wait_for(&format!("/v1/projects/{PROJECT}/messages:send"), 2, || {
            site.log()
        })
        .await;
    site.message(
        "application/vnd.softswitch.command+json",
        "{\"command\":\"location\",\"lat\":52.23,\"lon\":21.01,\"label\":\"Tea\"}",
    );
    // A location with a latitude off the globe is refused, never stored.
    site.message_answered(
        "application/vnd.softswitch.command+json",
        "{\"command\":\"location\",\"lat\":123,\"lon\":21.01}",
        "400",
    );
    site.message("text/plain", "third");
    // An attachment: its type, not its bytes.
    site.message("image/jpeg", "JFIF-not-really");
    // A shared file's command is the one command that is announced, by
    // the file's type (the seed's file messages inherit the chat's pushes);
    // one that names no upload is refused.
    site.message(
        "application/vnd.softswitch.command+json",
        "{\"command\":\"file\",\"id\":\"00112233445566778899aabbccddeeff\",\"type\":\"video/mp4\",\"size\":5}",
    );
    site.message_answered(
        "application/vnd.softswitch.command+json",
        "{\"command\":\"file\",\"id\":\"nope\",\"type\":\"video/mp4\"}",
        "400",
    );
    site.apns.wait_for("/3/device/", 5, || site.log()).await;
    site.webpush.wait_for("/up/", 5, || site.log()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let apns = site.apns.seen();
    assert_eq!(
        apns.len(),
        5,
        "five pushes for four messages and a file, none for the location: {apns:?}"
    );
    let stored = site.switch.site.ok(&["message", "list", "--to", "bob"]);
    assert_eq!(
        stored.lines().count(),
        6,
        "the refused commands are not stored:\n{stored}"
    );
    assert!(stored.contains("52.23"), "{stored}");
    let picture = apns[3].json();
    assert_eq!(picture["type"], "picture", "{picture}");
    assert_eq!(picture["aps"]["alert"]["body"], "Photo", "{picture}");
    assert_eq!(apns[4].json()["type"], "video", "{}", apns[4].json());
    assert!(
        apns.iter().all(|s| !s.path.contains(apns_voip)),
        "no VoIP push for a message"
    );
    assert_eq!(
        site.fcm
            .seen()
            .iter()
            .filter(|s| s.path == "/token")
            .count(),
        1,
        "one OAuth grant"
    );
    let metrics = site.metrics().await;
    assert!(
        metrics
            .contains("softswitch_push_outcomes_total{outcome=\"delivered\",provider=\"apns\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("softswitch_push_request_seconds_count{provider=\"fcm\"} 5"),
        "{metrics}"
    );
}

fn url_pairs(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() + 1 {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_tokens_are_deleted_throttled_pushes_retried_and_voicemail_announced() {
    let site = PushSite::start().await;
    let bob = site.token("bob").await;
    let dead = "dead0000dead0000dead0000dead0000dead0000dead0000dead0000dead0000";
    let live = "11110000111100001111000011110000111100001111000011110000aaaa0000";
    for (instance, token) in [("old-iphone", dead), ("ipad", live)] {
        let (status, answer) = site
            .put_token(
                &bob,
                instance,
                serde_json::json!({"provider": "apns", "token": token, "app": TOPIC}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    // APNs: the old phone's app is gone (410); the iPad's first attempt is
    // throttled (429, Retry-After: 1), the next one goes through.
    let throttled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = throttled.clone();
    site.apns.answer_with(move |s| {
        if s.path.ends_with(dead) {
            Answer::new(
                410,
                r#"{"reason":"Unregistered","timestamp":1700000000000}"#,
            )
        } else if !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Answer::new(429, r#"{"reason":"TooManyRequests"}"#).header("retry-after", "1")
        } else {
            apns_ok(s)
        }
    });
    site.message("text/plain", "are you there?");
    let seen = site.apns.wait_for("/3/device/", 3, || site.log()).await;
    let to_live: Vec<&Seen> = seen.iter().filter(|s| s.path.ends_with(live)).collect();
    assert_eq!(to_live.len(), 2, "retried after the 429: {seen:?}");
    wait_until(
        "the dead token is deleted",
        || site.log(),
        async || site.tokens(&bob).await.iter().all(|t| t["token"] != dead),
    )
    .await;
    assert_eq!(site.tokens(&bob).await.len(), 1);
    let metrics = site.metrics().await;
    for line in [
        "softswitch_push_outcomes_total{outcome=\"token-invalid\",provider=\"apns\"} 1",
        "softswitch_push_outcomes_total{outcome=\"retry\",provider=\"apns\"} 1",
        "softswitch_push_outcomes_total{outcome=\"delivered\",provider=\"apns\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }

    // A call to bob (offline, but his iPad can be woken) is parked and
    // pushed (an alert: the iPad has no VoIP token), missed after his 5 s,
    // and the voice message alice then leaves is announced as one.
    site.switch
        .site
        .ok(&["account", "set", "bob", "--no-answer-secs", "5"]);
    let (ok, trace) = support::sipp::leave_voicemail(&site.switch, "bob", 800, 1000.0);
    assert!(ok, "{trace}\n{}", site.log());
    let seen = site.apns.wait_for("/3/device/", 6, || site.log()).await;
    let kinds: Vec<String> = seen[3..]
        .iter()
        .map(|s| s.json()["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(kinds, ["incoming-call", "missed-call", "voicemail"]);
    let body = seen[5].json();
    assert_eq!(body["from"], "alice");
    assert_eq!(body["aps"]["badge"], 1, "one new voice message: {body}");

    // A hung service: the push times out and is retried, and the switch
    // goes on.
    site.apns.answer_with(|_| Answer {
        status: 200,
        delay: Duration::from_secs(5),
        ..Default::default()
    });
    site.message("text/plain", "hello?");
    site.apns.wait_for("/3/device/", 8, || site.log()).await;
    assert!(
        site.log().contains("push will be retried"),
        "{}",
        site.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn push_token_registration_refuses_bad_input_and_other_users_devices() {
    let site = PushSite::start().await;
    let (bob, carol) = (site.token("bob").await, site.token("carol").await);
    // alice watches bob (he has her in his book): offline, then reachable
    // by push once his app registers a token.
    site.switch
        .site
        .ok(&["contact", "add", "bob", "+48600111000"]);
    let text = std::fs::read_to_string(support::sipp::scenario("presence_watch.xml")).unwrap();
    let (start, end) = (
        text.find("<!--NOTIFY-->").unwrap(),
        text.find("<!--/NOTIFY-->").unwrap(),
    );
    let watch = site.switch.site.path("watch-bob.xml");
    std::fs::write(
        &watch,
        format!(
            "{}{}{}",
            &text[..start],
            text[start..end].repeat(2),
            &text[end..]
        ),
    )
    .unwrap();
    let users = site.switch.users("alice.csv", "alice", "alice-pw");
    let watcher = Background::start(
        &site.switch,
        &watch,
        &["-inf", users.to_str().unwrap(), "-s", "bob"],
    );
    wait_until(
        "alice's first NOTIFY",
        || site.log(),
        async || {
            std::fs::read_to_string(&watcher.trace)
                .unwrap_or_default()
                .contains("<ss:reachability>offline</ss:reachability>")
        },
    )
    .await;
    let (status, body) = site
        .put_token(
            &bob,
            "phone",
            serde_json::json!({"provider": "gcm", "token": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("unknown-push-provider")),
        "{body}"
    );
    let (status, body) = site
        .put_token(
            &bob,
            "phone",
            serde_json::json!({"provider": "apns", "token": "", "kind": "alert"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-request")),
        "{body}"
    );
    let (status, body) = site
        .put_token(
            &bob,
            "phone",
            serde_json::json!({"provider": "apns", "token": "ab", "kind": "sms"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-request")),
        "{body}"
    );
    let (status, _) = site
        .put_token(
            &bob,
            "phone",
            serde_json::json!({"provider": "apns", "token": "abcd", "app": TOPIC}),
        )
        .await;
    assert_eq!(status, 200);
    let (ok, trace) = watcher.wait();
    assert!(ok, "{trace}\n{}", site.log());
    let last = trace.rfind("<ss:reachability>").unwrap();
    assert!(
        trace[last..].starts_with("<ss:reachability>push</ss:reachability>"),
        "{trace}"
    );
    // carol cannot remove bob's device; the same app signed in as carol
    // takes the token over (bob's notifications must not reach her).
    let r = site
        .client
        .delete(format!("{}/v1/push-tokens/phone", site.base))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(site.tokens(&bob).await.len(), 1);
    let (status, _) = site
        .put_token(
            &carol,
            "her-phone",
            serde_json::json!({"provider": "apns", "token": "abcd", "app": TOPIC}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(site.tokens(&bob).await.is_empty());
    assert_eq!(site.tokens(&carol).await.len(), 1);
    let r = site
        .client
        .get(format!("{}/v1/push-tokens", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// SIPp with `scenario` in the background (the caller of a call that will
/// be parked); `wait` gives (success, trace) once it ends.
struct Background {
    child: std::process::Child,
    trace: std::path::PathBuf,
}

impl Background {
    fn start(switch: &Switch, scenario: &Path, args: &[&str]) -> Background {
        let trace = switch
            .site
            .path(&format!("bg-{}.log", support::sipp::rand_suffix()));
        let child = std::process::Command::new("sipp")
            .arg(switch.target())
            .arg("-sf")
            .arg(scenario)
            .args([
                "-key",
                "domain",
                "localhost",
                "-m",
                "1",
                "-l",
                "1",
                "-nostdin",
            ])
            .args([
                "-timeout",
                "40",
                "-timeout_error",
                "-trace_msg",
                "-message_file",
            ])
            .arg(&trace)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp (scripts/setup.sh installs it)");
        Background { child, trace }
    }

    fn wait(mut self) -> (bool, String) {
        let ok = self.child.wait().unwrap().success();
        (ok, std::fs::read_to_string(&self.trace).unwrap_or_default())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const VOIP_TOKEN: &str = "0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829";
const ALERT_TOKEN: &str = "f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000";

/// bob's iPhone: a PushKit token and an alert token, no registration.
async fn bobs_iphone(site: &PushSite) {
    let bob = site.token("bob").await;
    for (token, kind) in [(VOIP_TOKEN, "voip"), (ALERT_TOKEN, "alert")] {
        let (status, body) = site
            .put_token(
                &bob,
                "iphone",
                serde_json::json!({"provider": "apns", "token": token, "app": TOPIC, "kind": kind}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// The VoIP push of the `n`th parked call: its JSON.
async fn incoming_call_push(site: &PushSite, n: usize) -> serde_json::Value {
    let seen = site
        .apns
        .wait_for(&format!("/3/device/{VOIP_TOKEN}"), n, || site.log())
        .await;
    let push = &seen[n - 1];
    assert_eq!(push.header("apns-push-type"), Some("voip"));
    assert_eq!(
        push.header("apns-topic"),
        Some(format!("{TOPIC}.voip").as_str())
    );
    push.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_to_an_offline_app_is_parked_pushed_and_picked_with_replaces() {
    let site = PushSite::start().await;
    bobs_iphone(&site).await;
    // alice calls bob (offline) and talks for 2 s once answered.
    let tone = media::tone::sine(440.0, 8000, Duration::from_millis(1500));
    let pcap = site.switch.site.path("alice.pcap");
    support::audio::write_pcma_pcap(&pcap, &tone);
    let caller = site.switch.variant_with(
        "call_uac.xml",
        &[
            ("RTP/AVP 0\n      a=rtpmap:0 PCMU/8000", "RTP/AVP 8\n      a=rtpmap:8 PCMA/8000"),
            (
                "<pause/>",
                &format!(
                    "<nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n  <pause milliseconds=\"2000\"/>",
                    pcap.display()
                ),
            ),
        ],
    );
    let users = site.switch.users("alice.csv", "alice", "alice-pw");
    let started = Instant::now();
    let call = Background::start(
        &site.switch,
        &caller,
        &["-inf", users.to_str().unwrap(), "-s", "bob"],
    );

    // The incoming-call push: a PushKit push naming the parked call.
    let push = incoming_call_push(&site, 1).await;
    let pushed_after = started.elapsed();
    assert_eq!(push["type"], "incoming-call", "{push}");
    assert_eq!(push["from"], "alice");
    let call_id = push["call_id"]
        .as_str()
        .expect("the parked call's id")
        .to_string();

    // bob's app wakes and picks the call with Replaces.
    let pickup = site
        .switch
        .variant_with("pickup_uac.xml", &[("PARKED_CALL_ID", &call_id)]);
    let bob_users = site.switch.users("bob.csv", "bob", "bob-pw");
    let (ok, trace) = sipp(
        &site.switch,
        &pickup,
        &["-inf", bob_users.to_str().unwrap(), "-s", "alice"],
    );
    assert!(ok, "the pickup failed:\n{trace}\n{}", site.log());
    let (ok, caller_trace) = call.wait();
    assert!(ok, "alice's call failed:\n{caller_trace}\n{}", site.log());
    assert!(caller_trace.contains("SIP/2.0 200 OK"), "{caller_trace}");
    // alice's audio reached bob's device through the relay.
    let metrics = site.switch.metrics_text().await;
    let relayed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("softswitch_media_packets_relayed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(relayed >= 50.0, "{relayed} packets relayed\n{metrics}");
    let cdrs = site.switch.site.ok(&["cdr", "list"]);
    assert!(cdrs.contains("answered"), "{cdrs}");
    // bob's app fetches what happened: the call it picked.
    let bob = site.token("bob").await;
    let history: serde_json::Value = site
        .client
        .get(format!("{}/v1/history/calls", site.base))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = history["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{history}");
    assert_eq!(
        (
            &calls[0]["direction"],
            &calls[0]["peer"],
            &calls[0]["outcome"]
        ),
        (
            &serde_json::json!("incoming"),
            &serde_json::json!("alice"),
            &serde_json::json!("answered")
        ),
        "{history}"
    );
    assert_eq!(calls[0]["call_id"], call_id.as_str());
    // Answered: no missed-call push.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        site.apns
            .seen()
            .iter()
            .all(|s| !s.path.ends_with(ALERT_TOKEN)),
        "{:?}",
        site.apns.seen()
    );
    eprintln!("INVITE to push received: {} ms", pushed_after.as_millis());
}

/// Cluster mode: bob's home (the local dialing plan) is node B. alice's
/// call on node A to bob, offline with an app, goes to node B, which parks
/// it and pushes; bob's woken app picks it there.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_to_an_offline_app_at_home_on_another_node_is_parked_and_picked_there() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", db_dir.path().join("cluster.db").display());
    let cluster = format!(
        "\n[database]\nurl = \"{db}\"\n\n[cluster]\nenabled = true\nheartbeat_ms = 200\ndead_after_ms = 1000\n"
    );
    let site = PushSite::start_with(&cluster).await;
    let b = Switch::start_node(&db, Some(&site.switch), "", &site.push_config).await;
    for node in [&site.switch, &b] {
        node.wait_metric("softswitch_cluster_peers", |v| v >= 1)
            .await;
    }
    site.switch
        .site
        .ok(&["dialplan", "add", "bob", &format!("127.0.0.1:{}", b.sip)]);
    bobs_iphone(&site).await;

    let users = site.switch.users("alice.csv", "alice", "alice-pw");
    let call = Background::start(
        &site.switch,
        &support::sipp::scenario("call_uac.xml"),
        &["-inf", users.to_str().unwrap(), "-s", "bob", "-d", "500"],
    );
    let push = incoming_call_push(&site, 1).await;
    let call_id = push["call_id"].as_str().expect("the parked call's id");

    // Parked on node B: picked there.
    let pickup = b.variant_with("pickup_uac.xml", &[("PARKED_CALL_ID", call_id)]);
    let bob_users = b.users("bob.csv", "bob", "bob-pw");
    let (ok, trace) = sipp(
        &b,
        &pickup,
        &["-inf", bob_users.to_str().unwrap(), "-s", "alice"],
    );
    assert!(
        ok,
        "the pickup at node B failed:\n{trace}\n{}\n{}",
        site.log(),
        b.log()
    );
    let (ok, caller_trace) = call.wait();
    assert!(ok, "alice's call failed:\n{caller_trace}\n{}", site.log());
    assert!(caller_trace.contains("SIP/2.0 200 OK"), "{caller_trace}");
    // One record, node A's.
    let cdrs = site.switch.site.ok(&["cdr", "list", "--login", "alice"]);
    assert_eq!(cdrs.lines().count(), 1, "{cdrs}");
    assert!(cdrs.contains("\tanswered\t200\t"), "{cdrs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_call_the_caller_gives_up_is_a_missed_call_and_only_its_callee_picks_it() {
    let site = PushSite::start().await;
    bobs_iphone(&site).await;
    let cancel = site.switch.variant_with(
        "call_uac_cancel.xml",
        &[(
            "<pause milliseconds=\"300\"/>",
            "<pause milliseconds=\"4000\"/>",
        )],
    );
    let users = site.switch.users("alice.csv", "alice", "alice-pw");
    let call = Background::start(
        &site.switch,
        &cancel,
        &["-inf", users.to_str().unwrap(), "-s", "bob"],
    );
    let push = incoming_call_push(&site, 1).await;
    let call_id = push["call_id"].as_str().unwrap().to_string();

    let refused = |who: &str, call_id: &str, code: &str| {
        let scenario = site.switch.variant_with(
            "pickup_uac_refused.xml",
            &[("PARKED_CALL_ID", call_id), ("EXPECTED_CODE", code)],
        );
        let users = site
            .switch
            .users(&format!("{who}.csv"), who, &format!("{who}-pw"));
        let (ok, trace) = sipp(
            &site.switch,
            &scenario,
            &["-inf", users.to_str().unwrap(), "-s", "alice"],
        );
        assert!(ok, "{who} expected {code}:\n{trace}\n{}", site.log());
    };
    // carol cannot take bob's call; nobody can take a call that is not parked.
    refused("carol", &call_id, "403");
    refused("bob", "no-such-call@example.net", "481");

    let (ok, trace) = call.wait();
    assert!(ok, "alice's cancel failed:\n{trace}\n{}", site.log());
    // The caller gave up: a missed-call alert (never a VoIP push).
    let missed = site
        .apns
        .wait_for(&format!("/3/device/{ALERT_TOKEN}"), 1, || site.log())
        .await;
    assert_eq!(missed[0].header("apns-push-type"), Some("alert"));
    let body = missed[0].json();
    assert_eq!(body["type"], "missed-call", "{body}");
    assert_eq!(body["call_id"], call_id.as_str());
    // And the call can no longer be picked.
    refused("bob", &call_id, "481");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_phone_that_does_not_answer_is_joined_by_push_then_voicemail_takes_the_call() {
    let site = PushSite::start().await;
    bobs_iphone(&site).await;
    site.switch
        .site
        .ok(&["account", "set", "bob", "--no-answer-secs", "6"]);
    // bob's desk phone is registered and rings without answering.
    let (_desk, desk_trace) = support::sipp::device_with(
        &site.switch,
        "bob",
        "bob-pw",
        "u1",
        30_000,
        &support::sipp::scenario("call_uas_ring.xml"),
    );
    site.switch.wait_registered(1).await;
    let started = Instant::now();
    let (ok, trace) = support::sipp::leave_voicemail(&site.switch, "bob", 800, 440.0);
    assert!(ok, "alice reached no voicemail:\n{trace}\n{}", site.log());
    // The apps were pushed after the desk phone rang for park_after_ms
    // (3 s), and voicemail took the call after bob's 6 s.
    let push = incoming_call_push(&site, 1).await;
    assert_eq!(push["type"], "incoming-call");
    let desk = std::fs::read_to_string(&desk_trace).unwrap_or_default();
    assert!(desk.contains("INVITE sip:"), "the desk phone rang: {desk}");
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let missed = site
        .apns
        .wait_for(&format!("/3/device/{ALERT_TOKEN}"), 1, || site.log())
        .await;
    assert_eq!(missed[0].json()["type"], "missed-call");
    // Then the voicemail push for the message alice left.
    let all = site
        .apns
        .wait_for(&format!("/3/device/{ALERT_TOKEN}"), 2, || site.log())
        .await;
    assert_eq!(all[1].json()["type"], "voicemail", "{:?}", all[1].json());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_checks_a_provider_with_a_test_push_from_the_cli() {
    let site = PushSite::start().await;
    let cli = &site.switch.site;
    let bad = cli.fails(&["push", "token-add", "carol", "phone", "gcm", "abc"]);
    assert!(bad.contains("no push provider \"gcm\""), "{bad}");
    let added = cli.ok(&[
        "push",
        "token-add",
        "carol",
        "pixel",
        "fcm",
        "fcm-token-carol",
        "--app",
        PROJECT,
    ]);
    assert!(
        added.contains("carol: alert token for pixel via fcm"),
        "{added}"
    );
    let tokens = cli.ok(&["push", "tokens", "carol"]);
    assert_eq!(tokens.trim(), format!("pixel\tfcm\talert\tapi\t{PROJECT}"));
    let none = cli.fails(&["push", "test", "alice"]);
    assert!(none.contains("alice has no push token"), "{none}");
    let queued = cli.ok(&["push", "test", "carol", "--text", "Can you hear me?"]);
    assert!(queued.contains("1 push(es) queued"), "{queued}");
    let sent = site
        .fcm
        .wait_for(&format!("/v1/projects/{PROJECT}/messages:send"), 1, || {
            site.log()
        })
        .await;
    assert_eq!(
        sent[0].json()["message"]["data"]["excerpt"],
        "Can you hear me?"
    );
    wait_until(
        "the outbox says delivered",
        || site.log(),
        async || {
            cli.ok(&["push", "outbox", "carol"])
                .contains("\tdelivered\t1 attempt(s)")
        },
    )
    .await;
    cli.ok(&["push", "token-del", "carol", "pixel"]);
    assert_eq!(cli.ok(&["push", "tokens", "carol"]).trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_woken_app_that_registers_rings_for_the_parked_call() {
    let site = PushSite::start().await;
    bobs_iphone(&site).await;
    let users = site.switch.users("alice.csv", "alice", "alice-pw");
    let call = Background::start(
        &site.switch,
        &support::sipp::scenario("call_uac.xml"),
        &["-inf", users.to_str().unwrap(), "-s", "bob"],
    );
    incoming_call_push(&site, 1).await;
    // The app wakes, registers, and answers the INVITE the parked call
    // sends its new binding.
    let (_app, app_trace) = support::sipp::device_with(
        &site.switch,
        "bob",
        "bob-pw",
        "u1",
        10_000,
        &support::sipp::scenario("call_uas.xml"),
    );
    let (ok, trace) = call.wait();
    assert!(ok, "alice's call failed:\n{trace}\n{}", site.log());
    assert!(trace.contains("SIP/2.0 200 OK"), "{trace}");
    let app = std::fs::read_to_string(&app_trace).unwrap_or_default();
    assert!(app.contains("INVITE sip:"), "the app rang: {app}");
    assert!(
        site.log()
            .contains("a device registered while the call is parked"),
        "{}",
        site.log()
    );
}
