//! Black-box tests of the client HTTPS API: the real binary, real TLS, SMS
//! through the real provider guests to local stand-ins that speak (and
//! check) each vendor's documented HTTP protocol, delivery reports sent back
//! to the switch's webhook.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use support::browser::{ChromeDriver, page_text};
use support::smtp::SmtpSink;
use support::*;

/// One request a stand-in vendor received.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    /// The body as `application/x-www-form-urlencoded` pairs.
    fn form(&self) -> HashMap<String, String> {
        let decode = |s: &str| {
            let bytes = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => out.push(b' '),
                    b'%' => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                        out.push(u8::from_str_radix(hex, 16).unwrap());
                        i += 2;
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            String::from_utf8(out).unwrap()
        };
        std::str::from_utf8(&self.body)
            .unwrap()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect()
    }
}

type Answer = Arc<dyn Fn(&Received, usize) -> Response + Send + Sync>;

/// A local HTTP server standing in for an SMS vendor: records every request
/// and answers with `answer(request, index)`.
struct StandIn {
    base: String,
    port: u16,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl StandIn {
    async fn start(answer: Answer) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        let count = Arc::new(Mutex::new(0usize));
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (tx, answer, count) = (tx.clone(), answer.clone(), count.clone());
                async move {
                    let received = Received {
                        method,
                        path: uri.path().to_string(),
                        headers,
                        body,
                    };
                    let n = {
                        let mut c = count.lock().unwrap();
                        *c += 1;
                        *c - 1
                    };
                    let response = answer(&received, n);
                    let _ = tx.send(received);
                    response
                }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn {
            base: format!("http://127.0.0.1:{port}"),
            port,
            rx,
        }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("the vendor stand-in received nothing within 20 s")
            .unwrap()
    }

    /// Asserts that nothing arrives within `wait`.
    async fn nothing_within(&mut self, wait: Duration) {
        if let Ok(Some(r)) = tokio::time::timeout(wait, self.rx.recv()).await {
            panic!("unexpected request to the stand-in: {r:?}");
        }
    }
}

/// A running switch with its client API, and an HTTPS client that trusts the
/// switch's generated certificate.
struct Api {
    running: Running,
    site: Site,
    base: String,
    client: reqwest::Client,
    /// SIP over UDP and TCP on loopback.
    sip: u16,
    /// Admin endpoint (plain HTTP on 127.0.0.1, token "t").
    admin: u16,
}

/// A port free for both UDP and TCP on loopback.
fn free_sip_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn api_section(port: u16, extra: &str) -> String {
    format!("listen = [\"127.0.0.1:{port}\"]\nclock_offset_file = \"CLOCK\"\n{extra}\n")
}

impl Api {
    /// [`Api::start`] with the generic SMS provider guest sending to `vendor`.
    async fn generic(api_extra: &str, vendor: &StandIn) -> Api {
        Api::start(
            api_extra,
            (
                "generic",
                "sms_generic",
                &generic_config(vendor),
                "\"127.0.0.1\"",
            ),
            "",
        )
        .await
    }

    /// `provider`: (name, guest file, TOML body of its config table, allowed hosts).
    async fn start(api_extra: &str, provider: (&str, &str, &str, &str), sms_extra: &str) -> Api {
        Api::start_with(api_extra, provider, sms_extra, "").await
    }

    /// [`Api::start`] with more keys of the `[admin]` section.
    async fn start_with(
        api_extra: &str,
        provider: (&str, &str, &str, &str),
        sms_extra: &str,
        admin_extra: &str,
    ) -> Api {
        Api::start_full(api_extra, provider, sms_extra, admin_extra, "").await
    }

    /// [`Api::start_with`] with more keys of the provider's table.
    async fn start_full(
        api_extra: &str,
        provider: (&str, &str, &str, &str),
        sms_extra: &str,
        admin_extra: &str,
        provider_extra: &str,
    ) -> Api {
        let port = free_port();
        let admin = free_port();
        let (name, wasm, config, allowed) = provider;
        let extra = format!(
            "\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"t\"\n{admin_extra}\n\n[sms]\nprovider = \"{name}\"\n\
             poll_interval_ms = 100\nretry_base_secs = 1\ncallback_base_url = \"https://127.0.0.1:{port}\"\n{sms_extra}\n\
             [sms.providers.{name}]\npath = \"{name}.wasm\"\nallowed_hosts = [{allowed}]\n{provider_extra}\n\n\
             [sms.providers.{name}.config]\n{config}\n"
        );
        let sip = free_sip_port();
        let site = Site::with_api(sip, &api_section(port, api_extra), &extra);
        // The clock file path is only known now.
        let toml = std::fs::read_to_string(site.path("softswitch.toml"))
            .unwrap()
            .replace(
                "\"CLOCK\"",
                &format!("{:?}", site.path("clock").display().to_string()),
            );
        std::fs::write(site.path("softswitch.toml"), toml).unwrap();
        std::fs::copy(guest_wasm(wasm), site.path(&format!("{name}.wasm"))).unwrap();
        let mut running = Running::start(&site, admin);
        running.wait_ready(&reqwest::Client::new()).await;
        let cert = std::fs::read(site.path("data/tls/self-signed-cert.pem")).unwrap();
        softswitch::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .build()
            .unwrap();
        let base = format!("https://127.0.0.1:{port}");
        let api = Api {
            running,
            site,
            base,
            client,
            sip,
            admin,
        };
        api.wait_answering().await;
        api
    }

    async fn wait_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .client
            .get(format!("{}/v1/openapi.json", self.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "API never answered: {}",
                self.running.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the switch and starts it again on the same site (database,
    /// keys and certificate kept).
    async fn restart(&mut self) {
        let _ = self.running.child.kill();
        let _ = self.running.child.wait();
        self.running = Running::start(&self.site, self.admin);
        self.running.wait_ready(&reqwest::Client::new()).await;
        self.wait_answering().await;
    }

    /// A request to the admin endpoint from `client`, with the token.
    fn admin(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        client
            .request(method, format!("http://127.0.0.1:{}{path}", self.admin))
            .bearer_auth("t")
    }

    /// Registers `login` over SIP with SIPp as the handset (digest).
    fn register_with_sipp(&self, login: &str, sip_password: &str) {
        let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/sipp/register_auth.xml");
        assert!(
            self.sipp_as(login, sip_password, &scenario, &[]),
            "REGISTER of {login} failed: {}",
            self.running.log()
        );
    }

    /// `login` sends a MESSAGE to `to` with SIPp (digest); true when the
    /// final answer is `code`.
    fn message_with_sipp(&self, login: &str, sip_password: &str, to: &str, code: u16) -> bool {
        let scenario = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/sipp/uac_message_auth.xml"),
        )
        .unwrap()
        .replace(
            "<recv response=\"200\" rtd=\"1\"",
            &format!("<recv response=\"{code}\" rtd=\"1\""),
        );
        let path = self.site.path(&format!("message-{code}.xml"));
        std::fs::write(&path, scenario).unwrap();
        self.sipp_as(login, sip_password, &path, &["-s", to])
    }

    /// One SIPp run of `scenario` as `login` (digest) to completion.
    fn sipp_as(
        &self,
        login: &str,
        sip_password: &str,
        scenario: &std::path::Path,
        args: &[&str],
    ) -> bool {
        let users = self.site.path(&format!("users-{login}.csv"));
        std::fs::write(
            &users,
            format!("SEQUENTIAL\n{login};{sip_password};[authentication username={login} password={sip_password}]\n"),
        )
        .unwrap();
        let out = std::process::Command::new("sipp")
            .current_dir(self.site.dir.path())
            .arg(format!("127.0.0.1:{}", self.sip))
            .arg("-sf")
            .arg(scenario)
            .arg("-inf")
            .arg(&users)
            .args(args)
            .args([
                "-key",
                "domain",
                "localhost",
                "-m",
                "1",
                "-l",
                "1",
                "-nostdin",
                "-timeout",
                "20",
                "-timeout_error",
            ])
            .output()
            .expect(
                "sipp (Debian package sip-tester) must be installed: scripts/setup.sh installs it",
            );
        if !out.status.success() {
            eprintln!("sipp: {}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.success()
    }

    fn set_clock(&self, offset_secs: i64) {
        std::fs::write(self.site.path("clock"), offset_secs.to_string()).unwrap();
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls the delivery status until it is `want`.
    async fn wait_delivery(&self, query: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, body) = self.get(&format!("/v1/signup/phone/status?{query}")).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            if body["delivery"] == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "delivery stayed {body} instead of {want}: {}",
                self.running.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends a delivery report the way vendors do: again until the switch takes
/// it (it answers 404 while it has not recorded the vendor's acceptance).
async fn report(api: &Api, request: impl Fn() -> reqwest::RequestBuilder) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = request().send().await.unwrap();
        if r.status() == StatusCode::OK {
            return;
        }
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{:?}", r.text().await);
        assert!(
            Instant::now() < deadline,
            "report never taken: {}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn code_in(text: &str) -> String {
    let code: String = text.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 4, "no 4-digit code in {text:?}");
    code
}

fn generic_answer() -> Answer {
    Arc::new(|r: &Received, n: usize| {
        assert_eq!(r.path, "/send");
        (
            StatusCode::OK,
            axum::Json(json!({ "data": { "id": format!("gen-{n}") } })),
        )
            .into_response()
    })
}

fn generic_config(stand_in: &StandIn) -> String {
    format!(
        "url = \"{}/send\"\n\"response.id\" = \"data.id\"\n\"header.Authorization\" = \"Bearer test-key\"\n",
        stand_in.base
    )
}

#[tokio::test]
async fn phone_sign_up_follows_every_rule_of_spec_3() {
    let mut vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("identity_burst = 1000\naddress_burst = 1000", &vendor).await;
    let device =
        json!({ "phone": "0600 100 200", "country_code": "48", "udid": "dev-1", "os": "android" });
    let status_query = "phone=%2B48600100200&udid=dev-1";

    // The OpenAPI document is served.
    let (s, doc) = api.get("/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");

    // First request: a code by SMS, through the generic guest.
    let (s, body) = api.post("/v1/signup/phone", device.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["phone"], "48600100200");
    assert_eq!(body["sms_left"], 4);
    let sms = vendor.next().await;
    assert_eq!(sms.method, Method::POST);
    assert_eq!(sms.headers["authorization"], "Bearer test-key");
    let sent: Value = serde_json::from_slice(&sms.body).unwrap();
    assert_eq!(sent["to"], "48600100200");
    // The generic guest is built for WIT 0.2.0: the switch told it the
    // text's coding.
    assert_eq!(sent["encoding"], "gsm7");
    let code = code_in(sent["text"].as_str().unwrap());
    assert!(
        sent["text"]
            .as_str()
            .unwrap()
            .starts_with("Your verification code is ")
    );

    // Delivery status: pending until the vendor reports, then delivered.
    api.wait_delivery(status_query, "pending").await;
    report(&api, || {
        api.client
            .post(format!("{}/v1/sms/reports/generic", api.base))
            .json(&json!({ "id": "gen-0", "status": "delivered" }))
    })
    .await;
    api.wait_delivery(status_query, "delivered").await;

    // A resend before 60 s is refused with the time left.
    let (s, body) = api.post("/v1/signup/phone", device.clone()).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "resend-too-soon");
    let left = body["retry_after_secs"].as_u64().unwrap();
    assert!((55..=60).contains(&left), "{body}");

    // After 60 s it is sent again (the same code), four more times in all ...
    for (i, sms_left) in [3, 2, 1, 0].into_iter().enumerate() {
        api.set_clock(61 * (i as i64 + 1));
        let (s, body) = api.post("/v1/signup/phone", device.clone()).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["sms_left"], sms_left);
        let again: Value = serde_json::from_slice(&vendor.next().await.body).unwrap();
        assert_eq!(code_in(again["text"].as_str().unwrap()), code);
    }
    // ... and then no more: at most 5 SMS per phone and device.
    api.set_clock(61 * 6);
    let (s, body) = api.post("/v1/signup/phone", device.clone()).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too-many-sms"))
    );
    vendor.nothing_within(Duration::from_millis(500)).await;

    // Two wrong codes, then the right one creates the account.
    let wrong = if code == "0000" { "1111" } else { "0000" };
    let with_code = |c: &str| json!({ "phone": "+48600100200", "udid": "dev-1", "code": c });
    for left in [2, 1] {
        let (s, body) = api.post("/v1/signup/phone/verify", with_code(wrong)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            (body["code"].as_str(), body["attempts_left"].as_i64()),
            (Some("wrong-code"), Some(left))
        );
    }
    let (s, creds) = api.post("/v1/signup/phone/verify", with_code(&code)).await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    assert_eq!(creds["login"], "48600100200");
    assert_eq!(creds["sip_domain"], "localhost");
    let sip_password = creds["sip_password"].as_str().unwrap().to_string();
    assert_eq!(sip_password.len(), 20);
    // The account exists, from the template, with its profile's phone.
    let shown = api.site.ok(&["account", "show", "48600100200"]);
    assert!(
        shown.contains("phone: 48600100200") && shown.contains("dialplan_rule: DP:int-> OR onnet"),
        "{shown}"
    );

    // The credentials register over SIP (digest, SIPp as the handset).
    api.register_with_sipp("48600100200", &sip_password);

    // Re-install on the same device: credentials at once, no SMS.
    let (s, again) = api.post("/v1/signup/phone", device.clone()).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["sip_password"], sip_password.as_str());
    vendor.nothing_within(Duration::from_millis(500)).await;

    // Another device: its own code; three wrong codes and it is refused for good.
    let dev2 =
        json!({ "phone": "+48600100200", "country_code": "48", "udid": "dev-2", "os": "ios" });
    let (s, _) = api.post("/v1/signup/phone", dev2).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let sent: Value = serde_json::from_slice(&vendor.next().await.body).unwrap();
    let code2 = code_in(sent["text"].as_str().unwrap());
    let wrong2 = if code2 == "0000" { "1111" } else { "0000" };
    let v2 = |c: &str| json!({ "phone": "+48600100200", "udid": "dev-2", "code": c });
    api.post("/v1/signup/phone/verify", v2(wrong2)).await;
    api.post("/v1/signup/phone/verify", v2(wrong2)).await;
    let (s, body) = api.post("/v1/signup/phone/verify", v2(wrong2)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("device-refused"))
    );
    let (s, body) = api.post("/v1/signup/phone/verify", v2(&code2)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("device-refused"))
    );

    // "Call me" takes the same request (tests/ivr.rs places the call).
    let (s, body) = api.post("/v1/signup/phone/call-me", json!({})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-request"))
    );
}

#[tokio::test]
async fn errors_have_stable_codes_and_limits_hold() {
    let vendor = StandIn::start(generic_answer()).await;
    let api = Api::start(
        "address_burst = 1000\nidentity_burst = 2\nidentity_refill_secs = 3600\nmax_body_bytes = 4096",
        ("generic", "sms_generic", &generic_config(&vendor), "\"127.0.0.1\""),
        "",
    )
    .await;
    let (s, body) = api
        .post(
            "/v1/signup/phone",
            json!({ "phone": "600100200", "udid": "d", "os": "android" }),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-phone"))
    );
    assert!(body["message"].as_str().unwrap().contains("country code"));

    let (s, body) = api.get("/v1/nothing-here").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );

    let big = json!({ "id": "x".repeat(8000), "password": "p" });
    let (s, body) = api.post("/v1/login", big).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too-large"))
    );

    let r = api
        .client
        .post(format!("{}/v1/login", api.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid-request");

    // Login: unknown ID and wrong password look the same; an identity is
    // limited whatever the address, and the limit does not touch others.
    api.site.ok(&[
        "account",
        "add",
        "carol",
        "--password",
        "carol-sip",
        "--username",
        "carol",
        "--access-password",
        "carol-web",
    ]);
    let login = |id: &str, pw: &str| json!({ "id": id, "password": pw });
    let (s, body) = api.post("/v1/login", login("carol", "nope")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad-credentials"))
    );
    let (s, creds) = api.post("/v1/login", login("carol", "carol-web")).await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    assert_eq!(
        (creds["login"].as_str(), creds["sip_password"].as_str()),
        (Some("carol"), Some("carol-sip"))
    );
    let (s, body) = api.post("/v1/login", login("carol", "carol-web")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate-limited"))
    );
    let (s, body) = api.post("/v1/login", login("nobody", "x")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad-credentials"))
    );
}

#[tokio::test]
async fn requests_from_one_address_are_rate_limited() {
    let vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("address_burst = 3\naddress_refill_secs = 3600", &vendor).await;
    for i in 0..3 {
        let (s, _) = api
            .post(
                "/v1/login",
                json!({ "id": format!("u{i}"), "password": "x" }),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let r = api
        .client
        .post(format!("{}/v1/login", api.base))
        .json(&json!({ "id": "u9", "password": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate-limited");
}

async fn start_and_take_code(api: &Api, phone: &str) {
    let (s, body) = api
        .post(
            "/v1/signup/phone",
            json!({ "phone": phone, "udid": "dev", "os": "android" }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn vonage_guest_speaks_the_vonage_sms_api() {
    let mut vendor = StandIn::start(Arc::new(|r: &Received, _| {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/sms/json"));
        (
            StatusCode::OK,
            axum::Json(json!({
                "message-count": "1",
                "messages": [{
                    "to": "447700900001", "message-id": "0A0000000123ABCD1", "status": "0",
                    "remaining-balance": "3.14159265", "message-price": "0.03330000", "network": "23410"
                }]
            })),
        )
            .into_response()
    }))
    .await;
    let config = format!(
        "api_key = \"abcd1234\"\napi_secret = \"s3cr3tPa55\"\nfrom = \"Softswitch\"\nurl = \"{}/sms/json\"\n",
        vendor.base
    );
    let api = Api::start("", ("vonage", "sms_vonage", &config, "\"127.0.0.1\""), "").await;
    start_and_take_code(&api, "+447700900001").await;
    let sms = vendor.next().await;
    assert_eq!(
        sms.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form = sms.form();
    assert_eq!(form["api_key"], "abcd1234");
    assert_eq!(form["api_secret"], "s3cr3tPa55");
    assert_eq!(form["from"], "Softswitch");
    assert_eq!(form["to"], "447700900001");
    assert_eq!(form["type"], "unicode");
    code_in(&form["text"]);
    assert!(form["client-ref"].starts_with("sms-"));
    // Vonage's guest is built for WIT 0.1.0: the switch serves it through
    // the shim (it never sees 0.2.0's `encoding`), and says so.
    let log = api.running.log();
    assert!(
        log.contains("served through its shim")
            && log.contains("world=\"softswitch:sms-provider/provider@0.1.0\""),
        "{log}"
    );
    assert_eq!(
        form["callback"],
        format!("{}/v1/sms/reports/vonage", api.base)
    );
    let query = "phone=%2B447700900001&udid=dev";
    api.wait_delivery(query, "pending").await;
    // Vonage's default delivery receipt: a GET with the fields in the query.
    report(&api, || {
        api.client.get(format!(
            "{}?msisdn=447700900001&to=Softswitch&network-code=23410&messageId=0A0000000123ABCD1\
             &price=0.03330000&status=delivered&scts=2001011400&err-code=0&api-key=abcd1234\
             &message-timestamp=2020-01-01+12%3A00%3A00",
            form["callback"]
        ))
    })
    .await;
    api.wait_delivery(query, "delivered").await;
    // A report the guest does not understand is refused with a stable code.
    let bad = api
        .client
        .get(format!("{}?status=delivered", form["callback"]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.json::<Value>().await.unwrap()["code"], "bad-report");
    let _ = vendor.port;
}

/// `softswitch:sms-provider@0.2.0` added `message.encoding`: the switch
/// works it out from the text and a guest built for 0.2.0 (the generic
/// one) passes it on to the vendor, here for a text outside the GSM
/// alphabet. The 0.1.0 guests (Vonage, Twilio, MessageBird) keep sending
/// through the shim in their own tests.
#[tokio::test]
async fn a_guest_built_for_wit_0_2_gets_the_coding_of_the_text() {
    let mut vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("code_sms_text = \"Twój kod: [CODE]\"", &vendor).await;
    start_and_take_code(&api, "+48600100300").await;
    let sms = vendor.next().await;
    let sent: Value = serde_json::from_slice(&sms.body).unwrap();
    assert!(
        sent["text"].as_str().unwrap().starts_with("Twój kod: "),
        "{sent}"
    );
    assert_eq!(sent["encoding"], "ucs2", "{sent}");
    let log = api.running.log();
    assert!(
        log.contains("SMS provider guest linked")
            && log.contains("world=\"softswitch:sms-provider/provider@0.2.0\"")
            && !log.contains("served through its shim"),
        "{log}"
    );
    api.wait_delivery("phone=%2B48600100300&udid=dev", "pending")
        .await;
}

#[tokio::test]
async fn a_python_guest_speaks_the_messagebird_sms_api() {
    // guests/sms-providers/messagebird-py: CPython inside the component
    // (componentize-py), loaded and called by the host like the Rust guests.
    let mut vendor = StandIn::start(Arc::new(|r: &Received, _| {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/messages"));
        (
            StatusCode::CREATED,
            axum::Json(json!({
                "id": "e8077d803532c0b5937c639b60216938", "direction": "mt", "type": "sms",
                "recipients": { "totalCount": 1, "totalSentCount": 1,
                    "items": [{ "recipient": 447700900002_u64, "status": "sent" }] }
            })),
        )
            .into_response()
    }))
    .await;
    let config = format!(
        "access_key = \"live_4uRj2nGs\"\noriginator = \"Softswitch\"\nurl = \"{}/messages\"\n",
        vendor.base
    );
    let api = Api::start(
        "",
        (
            "messagebird",
            "sms_messagebird_py",
            &config,
            "\"127.0.0.1\"",
        ),
        "",
    )
    .await;
    start_and_take_code(&api, "+447700900002").await;
    let sms = vendor.next().await;
    assert_eq!(sms.headers["authorization"], "AccessKey live_4uRj2nGs");
    assert_eq!(sms.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&sms.body).unwrap();
    assert_eq!(body["recipients"], json!(["447700900002"]));
    assert_eq!(body["originator"], "Softswitch");
    assert_eq!(body["datacoding"], "auto");
    code_in(body["body"].as_str().unwrap());
    assert!(body["reference"].as_str().unwrap().starts_with("sms-"));
    let callback = body["reportUrl"].as_str().unwrap().to_owned();
    assert_eq!(callback, format!("{}/v1/sms/reports/messagebird", api.base));
    let query = "phone=%2B447700900002&udid=dev";
    api.wait_delivery(query, "pending").await;
    // MessageBird's status report: a GET with the fields in the query.
    report(&api, || {
        api.client.get(format!(
            "{callback}?id=e8077d803532c0b5937c639b60216938&reference={}&recipient=447700900002\
             &status=delivered&statusDatetime=2026-12-07T10%3A00%3A00%2B00%3A00",
            body["reference"].as_str().unwrap()
        ))
    })
    .await;
    api.wait_delivery(query, "delivered").await;
    let bad = api
        .client
        .get(format!("{callback}?status=delivered"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.json::<Value>().await.unwrap()["code"], "bad-report");
    let _ = vendor.port;
}

#[tokio::test]
async fn a_new_sms_provider_build_goes_into_service_only_past_its_canary() {
    let mut vendor = StandIn::start(Arc::new(|_: &Received, _| {
        (
            StatusCode::OK,
            axum::Json(json!({ "message-count": "1",
                "messages": [{ "message-id": "0A00000001", "status": "0" }] })),
        )
            .into_response()
    }))
    .await;
    let config = format!(
        "api_key = \"k\"\napi_secret = \"s\"\nfrom = \"Softswitch\"\nurl = \"{}/sms/json\"\n",
        vendor.base
    );
    let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/sms-providers/vonage/cases.toml");
    let api = Api::start_full(
        "",
        ("vonage", "sms_vonage", &config, "\"127.0.0.1\""),
        "",
        "",
        &format!("cases = {:?}", cases.display().to_string()),
    )
    .await;
    let admin = reqwest::Client::new();
    let listed = |guests: Value| guest_named(&guests, "sms.vonage");
    let guests = async || -> Value {
        let r = api
            .admin(&admin, Method::GET, "/guests")
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    };
    let first = listed(guests().await);
    // The version of the WIT the guest in service was built for.
    assert_eq!(first["world"], "softswitch:sms-provider/provider@0.1.0");
    start_and_take_code(&api, "+447700900011").await;
    assert_eq!(vendor.next().await.form()["api_key"], "k");

    // A build that fails the cases (Twilio's guest in Vonage's file) is
    // refused, and the one in service keeps sending.
    let file = api.site.path("vonage.wasm");
    std::fs::copy(guest_wasm("sms_twilio"), &file).unwrap();
    let r = api
        .admin(&admin, Method::POST, "/guests/sms.vonage/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "guest-load-failed");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("failed its cases") && message.contains("vonage/cases.toml"),
        "{message}"
    );
    assert_eq!(listed(guests().await)["sha256"], first["sha256"]);
    // One that traps fails its smoke call, before any case runs.
    std::fs::copy(guest_wasm("fixture_sms_trap"), &file).unwrap();
    let r = api
        .admin(&admin, Method::POST, "/guests/sms.vonage/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("failed its smoke call"), "{message}");
    assert_eq!(listed(guests().await)["sha256"], first["sha256"]);
    start_and_take_code(&api, "+447700900012").await;
    assert_eq!(vendor.next().await.form()["api_key"], "k");

    // A build that passes goes into service by the file watch alone.
    let vonage = std::fs::read(guest_wasm("sms_vonage")).unwrap();
    std::fs::write(&file, rebuilt(&vonage, "2")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let swapped = loop {
        let now = listed(guests().await);
        if now["sha256"] != first["sha256"] {
            break now;
        }
        assert!(Instant::now() < deadline, "never swapped: {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(swapped["loaded_at"].as_u64() >= first["loaded_at"].as_u64());
    start_and_take_code(&api, "+447700900013").await;
    assert_eq!(vendor.next().await.form()["to"], "447700900013");
    let failed_loads = api
        .admin(&admin, Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        failed_loads.contains(r#"softswitch_guest_loads_total{guest="vonage",outcome="failed"}"#),
        "{failed_loads}"
    );
    let _ = vendor.port;
}

#[tokio::test]
async fn twilio_guest_speaks_the_twilio_messages_api() {
    let mut vendor = StandIn::start(Arc::new(|r: &Received, _| {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/2010-04-01/Accounts/AC0123456789/Messages.json")
        );
        (
            StatusCode::CREATED,
            axum::Json(json!({
                "sid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "status": "queued",
                "account_sid": "AC0123456789", "to": "+48600777888"
            })),
        )
            .into_response()
    }))
    .await;
    let config = format!(
        "account_sid = \"AC0123456789\"\nauth_token = \"tw-token\"\nfrom = \"+15005550006\"\nbase_url = \"{}\"\n",
        vendor.base
    );
    let api = Api::start(
        "",
        (
            "twilio",
            "sms_twilio",
            &config,
            &format!("\"127.0.0.1:{}\"", vendor.port),
        ),
        "",
    )
    .await;
    start_and_take_code(&api, "+48600777888").await;
    let sms = vendor.next().await;
    // HTTP Basic with AccountSid:AuthToken.
    assert_eq!(
        sms.headers["authorization"],
        "Basic QUMwMTIzNDU2Nzg5OnR3LXRva2Vu"
    );
    let form = sms.form();
    assert_eq!(form["To"], "+48600777888");
    assert_eq!(form["From"], "+15005550006");
    code_in(&form["Body"]);
    assert_eq!(
        form["StatusCallback"],
        format!("{}/v1/sms/reports/twilio", api.base)
    );
    let query = "phone=%2B48600777888&udid=dev";
    api.wait_delivery(query, "pending").await;
    // Twilio's status callback: a form POST.
    report(&api, || {
        api.client.post(&form["StatusCallback"]).form(&[
            ("MessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
            ("AccountSid", "AC0123456789"),
            ("To", "+48600777888"),
        ])
    })
    .await;
    api.wait_delivery(query, "failed").await;
}

#[tokio::test]
async fn sms_are_retried_after_vendor_errors_and_never_sent_to_other_hosts() {
    // The vendor is down for the first attempt, then takes the message.
    let mut vendor = StandIn::start(Arc::new(|_: &Received, n: usize| {
        if n == 0 {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "down",
            )
                .into_response()
        } else {
            (StatusCode::OK, axum::Json(json!({ "id": "gen-ok" }))).into_response()
        }
    }))
    .await;
    let config = format!("url = \"{}/send\"\n", vendor.base);
    let api = Api::start("", ("generic", "sms_generic", &config, "\"127.0.0.1\""), "").await;
    start_and_take_code(&api, "+48600555001").await;
    vendor.next().await;
    vendor.next().await;
    let query = "phone=%2B48600555001&udid=dev";
    report(&api, || {
        api.client
            .post(format!("{}/v1/sms/reports/generic", api.base))
            .json(&json!({ "id": "gen-ok", "status": "delivered" }))
    })
    .await;
    api.wait_delivery(query, "delivered").await;
    drop(api);

    // A guest pointing at a host that is not allowed: refused, SMS failed.
    let mut other = StandIn::start(generic_answer()).await;
    let config = format!("url = \"http://localhost:{}/send\"\n", other.port);
    let api = Api::start(
        "",
        ("generic", "sms_generic", &config, "\"sms.example.net\""),
        "",
    )
    .await;
    start_and_take_code(&api, "+48600555002").await;
    api.wait_delivery("phone=%2B48600555002&udid=dev", "failed")
        .await;
    other.nothing_within(Duration::from_millis(300)).await;
    assert!(
        api.running
            .log()
            .contains("not in the provider's allowed_hosts")
    );
}

/// Undoes quoted-printable soft line breaks and `=3D`, then finds the link.
fn activation_link(mail: &str, base: &str) -> String {
    let text = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = text
        .find(&format!("{base}/v1/activate?token="))
        .unwrap_or_else(|| panic!("no activation link in {mail}"));
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn username_sign_up_is_activated_by_the_e_mailed_link() {
    let smtp = SmtpSink::start().await;
    let vendor = StandIn::start(generic_answer()).await;
    let templates = tempfile::tempdir().unwrap();
    let template = templates.path().join("activation.txt");
    std::fs::write(
        &template,
        "Subject: Welcome [USER_NAME]\nContent-Type: text/plain\n\nHello [USER_NAME], open [LINK] to activate.\n",
    )
    .unwrap();
    let email = format!(
        "\n[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsmtp_tls = \"none\"\nfrom = \"noreply@switch.test\"\n\
         from_name = \"Switch Test\"\nreply_to = \"help@switch.test\"\nbcc = \"audit@switch.test\"\n\
         activation_template = {:?}\n",
        smtp.port,
        template.display().to_string()
    );
    let api = Api::start(
        "",
        (
            "generic",
            "sms_generic",
            &generic_config(&vendor),
            "\"127.0.0.1\"",
        ),
        &email,
    )
    .await;
    let mut seen = Vec::new();

    let (s, body) = api
        .get("/v1/signup/username/available?username=bob.smith")
        .await;
    assert_eq!((s, &body["available"]), (StatusCode::OK, &json!(true)));
    let signup = json!({ "username": "bob.smith", "password": "bob-web-pass", "email": "bob@example.org", "country": "pl" });
    let (s, body) = api.post("/v1/signup/username", signup.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}: {}", api.running.log());
    let (_, body) = api
        .get("/v1/signup/username/available?username=bob.smith")
        .await;
    assert_eq!(body["available"], false);
    let (s, body) = api.post("/v1/signup/username", signup).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("username-taken"))
    );
    let (s, body) = api
        .post("/v1/signup/username", json!({ "username": "12345", "password": "long-enough", "email": "a@b.c", "country": "PL" }))
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-username"))
    );

    // Login before activation: "not active".
    let login = json!({ "id": "bob.smith", "password": "bob-web-pass" });
    let (s, body) = api.post("/v1/login", login.clone()).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not-active"))
    );

    // The e-mail, from the template, with its headers.
    let mail = smtp.next(&mut seen).await;
    assert!(mail.contains("Subject: Welcome bob.smith"), "{mail}");
    assert!(
        mail.contains("Switch Test") && mail.contains("noreply@switch.test"),
        "{mail}"
    );
    assert!(mail.contains("Reply-To: help@switch.test"), "{mail}");
    assert!(
        mail.contains("X-RcptTo: bob@example.org, audit@switch.test"),
        "{mail}"
    );
    let link = activation_link(&mail, &api.base);

    // A tampered link is refused on an HTML page; the real one activates.
    let tampered = format!("{}0", link);
    let page = api.client.get(&tampered).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(page.text().await.unwrap().contains("Activation failed"));
    let page = api.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("Account activated"));

    let (s, creds) = api.post("/v1/login", login).await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    assert_eq!(creds["login"], "bob.smith");
    assert_eq!(creds["sip_password"].as_str().unwrap().len(), 20);
    let shown = api.site.ok(&["account", "show", "bob.smith"]);
    assert!(
        shown.contains("active: true") && shown.contains("email: bob@example.org"),
        "{shown}"
    );

    // A link followed after it expired (a day by default) does nothing.
    let (s, _) = api
        .post("/v1/signup/username", json!({ "username": "eve.late", "password": "eve-web-pass", "email": "eve@example.org", "country": "DE" }))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let late = activation_link(&smtp.next(&mut seen).await, &api.base);
    api.set_clock(86_401);
    let page = api.client.get(&late).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(page.text().await.unwrap().contains("expired"));
    let (s, body) = api
        .post(
            "/v1/login",
            json!({ "id": "eve.late", "password": "eve-web-pass" }),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not-active"))
    );
}

/// Finds `<base><path>?<param>=...` in an e-mail (quoted-printable undone).
fn link_in(mail: &str, prefix: &str) -> String {
    let text = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
        .replace("&amp;", "&");
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in {mail}"));
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_string()
}

/// A switch with the generic SMS guest (at a stand-in vendor) and e-mail
/// through a local SMTP sink; the vendor is returned to keep it serving.
async fn api_with_mail() -> (Api, SmtpSink, StandIn) {
    let smtp = SmtpSink::start().await;
    let vendor = StandIn::start(generic_answer()).await;
    let email = format!(
        "\n[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsmtp_tls = \"none\"\n",
        smtp.port
    );
    let api = Api::start(
        "",
        (
            "generic",
            "sms_generic",
            &generic_config(&vendor),
            "\"127.0.0.1\"",
        ),
        &email,
    )
    .await;
    (api, smtp, vendor)
}

#[tokio::test]
async fn passwords_are_changed_in_the_app_and_reset_through_the_e_mailed_form() {
    let (api, smtp, _vendor) = api_with_mail().await;
    let mut seen = Vec::new();
    api.site.ok(&[
        "account",
        "add",
        "dave",
        "--password",
        "dave-sip",
        "--username",
        "dave",
        "--email",
        "dave@example.org",
        "--access-password",
        "dave-pass-1",
    ]);
    let login = |pw: &str| json!({ "id": "dave", "password": pw });

    // Change from the app: the old password is needed.
    let (s, body) = api
        .post(
            "/v1/password/change",
            json!({ "id": "dave", "password": "wrong", "new_password": "dave-pass-2" }),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad-credentials"))
    );
    let (s, body) = api
        .post(
            "/v1/password/change",
            json!({ "id": "dave", "password": "dave-pass-1", "new_password": "short" }),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("weak-password"))
    );
    let (s, _) = api
        .post(
            "/v1/password/change",
            json!({ "id": "dave", "password": "dave-pass-1", "new_password": "dave-pass-2" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        api.post("/v1/login", login("dave-pass-1")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.post("/v1/login", login("dave-pass-2")).await.0,
        StatusCode::OK
    );

    // Forgot: the same answer for an unknown ID, and no e-mail for it.
    let (s, unknown) = api
        .post("/v1/password/forgot", json!({ "id": "nobody" }))
        .await;
    let (s2, known) = api
        .post("/v1/password/forgot", json!({ "id": "dave" }))
        .await;
    assert_eq!((s, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(unknown, known);
    let mail = smtp.next(&mut seen).await;
    assert!(mail.contains("Subject: Reset your password dave"), "{mail}");
    assert!(mail.contains("X-RcptTo: dave@example.org"), "{mail}");
    let link = link_in(&mail, &format!("{}/v1/password/reset?code=", api.base));

    // The link opens a form; submitting it sets the new password.
    let form = api.client.get(&link).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let html = form.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\" action=\"/v1/password/reset\">"),
        "{html}"
    );
    let code = link.split_once("code=").unwrap().1.to_string();
    let too_short = api
        .client
        .post(format!("{}/v1/password/reset", api.base))
        .form(&[("code", code.as_str()), ("password", "short")])
        .send()
        .await
        .unwrap();
    assert!(
        too_short
            .text()
            .await
            .unwrap()
            .contains("at least 8 characters")
    );
    let done = api
        .client
        .post(format!("{}/v1/password/reset", api.base))
        .form(&[("code", code.as_str()), ("password", "dave-pass-3")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("Password changed"));
    assert_eq!(
        api.post("/v1/login", login("dave-pass-2")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.post("/v1/login", login("dave-pass-3")).await.0,
        StatusCode::OK
    );

    // A forged or expired code changes nothing.
    let forged = api
        .client
        .post(format!("{}/v1/password/reset", api.base))
        .form(&[
            ("code", format!("{code}0").as_str()),
            ("password", "mallory-pw"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    api.set_clock(3601);
    let expired = api.client.get(&link).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::BAD_REQUEST);
    assert!(expired.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn a_trapping_provider_guest_fails_the_sms_and_the_switch_keeps_serving() {
    let api = Api::start(
        "",
        ("trap", "fixture_sms_trap", "", "\"127.0.0.1\""),
        "max_attempts = 2\n",
    )
    .await;
    start_and_take_code(&api, "+48600555003").await;
    // Two attempts (the second a second later), each a trap; then failed.
    api.wait_delivery("phone=%2B48600555003&udid=dev", "failed")
        .await;
    let log = api.running.log();
    assert!(
        log.contains("out of attempts") && log.contains("trap"),
        "{log}"
    );
    let r = api
        .client
        .post(format!("{}/v1/sms/reports/trap", api.base))
        .body("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "provider-failed");
    // Still serving.
    let (s, _) = api.get("/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_profile_is_read_and_edited_with_the_login_token() {
    let vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("", &vendor).await;
    api.site.ok(&[
        "account",
        "add",
        "48600999111",
        "--password",
        "erin-sip",
        "--phone",
        "48600999111",
        "--access-password",
        "erin-pass-1",
    ]);
    let (s, creds) = api
        .post(
            "/v1/login",
            json!({ "id": "0600999111", "country_code": "48", "password": "erin-pass-1" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    let token = creds["token"].as_str().unwrap().to_string();

    let r = api
        .client
        .get(format!("{}/v1/profile", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "missing-token");
    let r = api
        .client
        .get(format!("{}/v1/profile", api.base))
        .bearer_auth(format!("{token}0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad-token");

    let patch = |body: Value| {
        api.client
            .patch(format!("{}/v1/profile", api.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = patch(json!({ "first_name": "Erin", "city": "Gdańsk", "username": "erin" }))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (p["first_name"].as_str(), p["city"].as_str()),
        (Some("Erin"), Some("Gdańsk"))
    );
    assert_eq!(
        (p["username"].as_str(), p["phone"].as_str()),
        (Some("erin"), Some("48600999111"))
    );
    let r = patch(json!({ "username": "erin2" })).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "username-already-set"
    );
    let r = patch(json!({ "nickname": "x" })).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The username now logs in too.
    let (s, _) = api
        .post(
            "/v1/login",
            json!({ "id": "erin", "password": "erin-pass-1" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = api
        .client
        .get(format!("{}/v1/profile", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["last_name"], Value::Null);
}

#[tokio::test]
async fn admin_api_manages_accounts_and_refuses_addresses_outside_the_allow_list() {
    let vendor = StandIn::start(generic_answer()).await;
    // Only 127.0.0.2 may talk to the admin endpoint (bound on 127.0.0.1).
    let api = Api::start_with(
        "",
        (
            "generic",
            "sms_generic",
            &generic_config(&vendor),
            "\"127.0.0.1\"",
        ),
        "",
        "allow = [\"127.0.0.2/32\"]",
    )
    .await;
    let insider = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let outsider = reqwest::Client::new();
    use reqwest::Method;

    // From 127.0.0.1: refused even with the right token, and for /health.
    for path in ["/accounts", "/health"] {
        let r = api
            .admin(&outsider, Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.json::<Value>().await.unwrap()["code"],
            "address-not-allowed"
        );
    }
    let r = insider
        .get(format!("http://127.0.0.1:{}/accounts", api.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = insider
        .get(format!("http://127.0.0.1:{}/openapi.json", api.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["paths"]["/accounts/{login}/registrations"]["get"].is_object());

    // Create from the template; the switch makes the SIP password.
    let r = api
        .admin(&insider, Method::POST, "/accounts")
        .json(&json!({ "login": "48600777001", "phone": "48600777001", "access_password": "frank-pass-1", "display_name": "Frank" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["tariff"], "default");
    assert_eq!(created["dialplan_rule"], "DP:int-> OR onnet");
    assert_eq!(created["active"], true);
    let sip_password = created["sip_password"].as_str().unwrap().to_string();
    assert_eq!(sip_password.len(), 20);
    let r = api
        .admin(&insider, Method::POST, "/accounts")
        .json(&json!({ "login": "48600777001", "sip_password": "whatever-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "login-taken");
    let r = api
        .admin(&insider, Method::POST, "/accounts")
        .json(&json!({ "login": "has space", "sip_password": "whatever-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid-request");

    // The new account logs in to the client API and registers over SIP.
    let login = json!({ "id": "+48600777001", "password": "frank-pass-1" });
    let (s, creds) = api.post("/v1/login", login.clone()).await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    assert_eq!(creds["sip_password"], sip_password.as_str());
    api.register_with_sipp("48600777001", &sip_password);
    let r = api
        .admin(&insider, Method::GET, "/accounts/48600777001/registrations")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let regs: Value = r.json().await.unwrap();
    let regs = regs.as_array().unwrap();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert!(regs[0]["contact"].as_str().unwrap().contains("48600777001"));
    assert!(
        regs[0]["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(regs[0]["expires_at"].as_i64().unwrap() > 1_700_000_000);

    // Update: settings, names, the SIP password, deactivation.
    let r = api
        .admin(&insider, Method::PATCH, "/accounts/48600777001")
        .json(&json!({ "tariff": "premium", "first_name": "Frank", "sip_password": "frank-sip-2", "active": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(
        (updated["tariff"].as_str(), updated["active"].as_bool()),
        (Some("premium"), Some(false))
    );
    assert!(updated.get("sip_password").is_none());
    let (s, body) = api.post("/v1/login", login.clone()).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not-active"))
    );
    let r = api
        .admin(&insider, Method::PATCH, "/accounts/48600777001")
        .json(&json!({ "active": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, creds) = api.post("/v1/login", login.clone()).await;
    assert_eq!(creds["sip_password"], "frank-sip-2");
    let r = api
        .admin(&insider, Method::PATCH, "/accounts/48600777001")
        .json(&json!({ "balance_micro": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "balance has its own endpoint"
    );

    // Balance.
    let r = api
        .admin(&insider, Method::PUT, "/accounts/48600777001/balance")
        .json(&json!({ "balance_micro": 12_500_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["balance_micro"],
        12_500_000
    );
    let r = api
        .admin(&insider, Method::GET, "/accounts/48600777001")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["balance_micro"],
        12_500_000
    );

    // Delete: gone for the admin API and for login.
    let r = api
        .admin(&insider, Method::DELETE, "/accounts/48600777001")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for (method, path) in [
        (Method::DELETE, "/accounts/48600777001"),
        (Method::GET, "/accounts/48600777001/registrations"),
        (Method::PUT, "/accounts/48600777001/balance"),
    ] {
        let r = api
            .admin(&insider, method, path)
            .json(&json!({ "balance_micro": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "no-such-account");
    }
    let (s, _) = api.post("/v1/login", login).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Every action is in the log with its fields; no password is.
    let log = api.running.log();
    for action in [
        "account.create",
        "account.update",
        "account.set-balance",
        "account.registrations",
        "account.delete",
    ] {
        assert!(
            log.contains(&format!("action=\"{action}\"")) && log.contains("login=48600777001"),
            "{action} not logged: {log}"
        );
    }
    assert!(log.contains("admin request refused: address outside the allow-list"));
    assert!(log.contains("previous_micro=0") && log.contains("balance_micro=12500000"));
    for secret in [&sip_password, "frank-sip-2", "frank-pass-1"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

/// A `w`×`h` picture encoded as `format`.
fn picture(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 120])
    }));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

#[tokio::test]
async fn avatars_are_resized_kept_across_restarts_and_friends_are_found() {
    let vendor = StandIn::start(generic_answer()).await;
    let mut api = Api::generic("avatar_max_bytes = 300000\n", &vendor).await;
    for (login, user) in [
        ("grace", "grace.h"),
        ("gregor", "gsamsa"),
        ("ghost", "ghost"),
    ] {
        api.site.ok(&[
            "account",
            "add",
            login,
            "--password",
            &format!("{login}-sip"),
            "--username",
            user,
            "--access-password",
            &format!("{login}-pass-1"),
        ]);
    }
    let token = |id: &str, password: &str| {
        let api = &api;
        let body = json!({ "id": id, "password": password });
        async move {
            let (s, creds) = api.post("/v1/login", body).await;
            assert_eq!(s, StatusCode::OK, "{creds}");
            creds["token"].as_str().unwrap().to_string()
        }
    };
    let grace = token("grace.h", "grace-pass-1").await;
    let gregor = token("gsamsa", "gregor-pass-1").await;
    let put = |token: &str, content_type: &str, body: Vec<u8>| {
        api.client
            .put(format!("{}/v1/profile/avatar", api.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    // Refused: no token, another type, a lie about the type, too large.
    let r = api
        .client
        .put(format!("{}/v1/profile/avatar", api.base))
        .header("content-type", "image/png")
        .body(picture(10, 10, image::ImageFormat::Png))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = put(&grace, "image/gif", b"GIF89a....".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "unsupported-image-type"
    );
    let r = put(&grace, "image/png", b"not a picture at all".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut truncated = picture(300, 300, image::ImageFormat::Png);
    truncated.truncate(200);
    let r = put(&grace, "image/png", truncated).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad-image");
    let r = put(&grace, "image/png", vec![0x89; 300_001]).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "too-large");

    // A large JPEG is scaled down to fit 512×512, aspect kept.
    let r = put(
        &grace,
        "image/jpeg",
        picture(1600, 1200, image::ImageFormat::Jpeg),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let info: Value = r.json().await.unwrap();
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(512), Some(384))
    );
    let updated_at = info["avatar_updated_at"].as_i64().unwrap();
    let (_, profile) = {
        let r = api
            .client
            .get(format!("{}/v1/profile", api.base))
            .bearer_auth(&grace)
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(profile["avatar_updated_at"], updated_at);

    // Another user downloads it by login; the ETag revalidates.
    async fn download(api: &Api, token: &str, if_none_match: Option<String>) -> reqwest::Response {
        let mut rq = api
            .client
            .get(format!("{}/v1/users/grace/avatar", api.base))
            .bearer_auth(token);
        if let Some(tag) = if_none_match {
            rq = rq.header("if-none-match", tag);
        }
        rq.send().await.unwrap()
    }
    let r = download(&api, &gregor, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let got = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((got.width(), got.height()), (512, 384));
    assert_eq!(
        download(&api, &gregor, Some(etag.clone())).await.status(),
        StatusCode::NOT_MODIFIED
    );

    // WebP in; kept across a restart.
    api.set_clock(5);
    let r = put(
        &grace,
        "image/webp",
        picture(100, 80, image::ImageFormat::WebP),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let info: Value = r.json().await.unwrap();
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(100), Some(80))
    );
    assert!(info["avatar_updated_at"].as_i64().unwrap() > updated_at);
    api.restart().await;
    let r = download(&api, &gregor, Some(etag)).await;
    assert_eq!(r.status(), StatusCode::OK, "a new avatar has a new ETag");
    let got = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((got.width(), got.height()), (100, 80));
    let r = api
        .client
        .get(format!("{}/v1/users/gregor/avatar", api.base))
        .bearer_auth(&grace)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "no-avatar");

    // Find friends: names set through the profile; inactive accounts and
    // the searcher are never found; no phone or e-mail in the answers.
    let r = api
        .client
        .patch(format!("{}/v1/profile", api.base))
        .bearer_auth(&grace)
        .json(
            &json!({ "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.org" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api
        .admin(
            &reqwest::Client::new(),
            reqwest::Method::PATCH,
            "/accounts/ghost",
        )
        .json(&json!({ "active": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let search = |token: &str, q: &str| {
        let url = format!("{}/v1/users/search", api.base);
        let rq = api.client.get(url).query(&[("q", q)]).bearer_auth(token);
        async move {
            let r = rq.send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let logins = |v: &Value| -> Vec<String> {
        v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["login"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, found) = search(&gregor, "grace HOP").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(logins(&found), vec!["grace"]);
    let hit = &found["users"][0];
    assert_eq!(hit["avatar_updated_at"], info["avatar_updated_at"]);
    assert!(
        hit.get("email").is_none() && hit.get("phone").is_none(),
        "{hit}"
    );
    let (_, found) = search(&gregor, "gs").await;
    assert_eq!(
        logins(&found),
        Vec::<String>::new(),
        "the searcher is left out"
    );
    let (_, found) = search(&grace, "gsa").await;
    assert_eq!(logins(&found), vec!["gregor"]);
    let (_, found) = search(&grace, "gh").await;
    assert_eq!(
        logins(&found),
        Vec::<String>::new(),
        "inactive accounts are left out"
    );
    let (s, body) = search(&grace, "g").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-request"))
    );
    let r = api
        .client
        .get(format!("{}/v1/users/search?q=grace&limit=500", api.base))
        .bearer_auth(&grace)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn chromium_opens_the_e_mailed_activation_and_reset_pages_and_submits_the_form() {
    let (api, smtp, _vendor) = api_with_mail().await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let mut seen = Vec::new();

    // Sign up; the activation link opens in the browser.
    let (s, body) = api
        .post(
            "/v1/signup/username",
            json!({ "username": "hedy", "password": "hedy-pass-1", "email": "hedy@example.org", "country": "AT" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let link = activation_link(&smtp.next(&mut seen).await, &api.base);
    browser.goto(&link).await.unwrap();
    let text = page_text(&browser).await;
    assert!(text.contains("Account activated"), "{text}");
    let login = |pw: &str| json!({ "id": "hedy", "password": pw });
    assert_eq!(
        api.post("/v1/login", login("hedy-pass-1")).await.0,
        StatusCode::OK
    );

    // Forgot password: the e-mailed link opens the form; typing a new
    // password and pressing the button sets it.
    let (s, _) = api
        .post("/v1/password/forgot", json!({ "id": "hedy" }))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let link = link_in(
        &smtp.next(&mut seen).await,
        &format!("{}/v1/password/reset?code=", api.base),
    );
    browser.goto(&link).await.unwrap();
    assert!(
        browser
            .title()
            .await
            .unwrap()
            .contains("Choose a new password")
    );
    let field = browser
        .find(fantoccini::Locator::Id("password"))
        .await
        .unwrap();
    field.send_keys("hedy-pass-2").await.unwrap();
    browser
        .find(fantoccini::Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = page_text(&browser).await;
        if text.contains("Password changed") {
            break;
        }
        assert!(Instant::now() < deadline, "no confirmation page: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.close().await.unwrap();

    // The new password logs in; the old one no longer does.
    assert_eq!(
        api.post("/v1/login", login("hedy-pass-1")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, creds) = api.post("/v1/login", login("hedy-pass-2")).await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    assert_eq!(creds["login"], "hedy");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_avatar_reaches_presence_watchers_with_its_update_time() {
    let vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("", &vendor).await;
    api.site.ok(&[
        "account",
        "add",
        "ida",
        "--password",
        "ida-sip",
        "--username",
        "ida",
        "--access-password",
        "ida-pass-1",
    ]);
    api.site.ok(&[
        "account",
        "add",
        "jon",
        "--password",
        "jon-sip",
        "--phone",
        "48600444555",
    ]);
    // Ida has Jon in her address book, so Jon may watch her presence.
    api.site.ok(&["contact", "add", "ida", "+48600444555"]);

    // Jon's phone (SIPp) subscribes to Ida and takes two NOTIFYs: the
    // initial state, then the one the avatar upload causes.
    let scenario = {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/sipp/presence_watch.xml"),
        )
        .unwrap();
        let (start, end) = (
            text.find("<!--NOTIFY-->").unwrap(),
            text.find("<!--/NOTIFY-->").unwrap(),
        );
        let path = api.site.path("watch.xml");
        std::fs::write(
            &path,
            format!(
                "{}{}{}",
                &text[..start],
                text[start..end].repeat(2),
                &text[end..]
            ),
        )
        .unwrap();
        path
    };
    let users = api.site.path("jon.csv");
    std::fs::write(
        &users,
        "SEQUENTIAL\njon;jon-sip;[authentication username=jon password=jon-sip]\n",
    )
    .unwrap();
    let trace = api.site.path("jon-trace.log");
    let mut watcher = std::process::Command::new("sipp")
        .current_dir(api.site.dir.path())
        .arg(format!("127.0.0.1:{}", api.sip))
        .arg("-sf")
        .arg(&scenario)
        .arg("-inf")
        .arg(&users)
        .args(["-s", "ida", "-key", "domain", "localhost"])
        .args([
            "-m",
            "1",
            "-l",
            "1",
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
        ])
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(&trace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) must be installed: scripts/setup.sh installs it");
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.site.ok(&["presence", "subscriptions"]).lines().count() < 1 {
        assert!(
            Instant::now() < deadline,
            "Jon never subscribed: {}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first NOTIFY has been answered before the avatar changes.
    while !std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .contains("<ss:reachability>")
    {
        assert!(Instant::now() < deadline, "no first NOTIFY");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_, creds) = api
        .post(
            "/v1/login",
            json!({ "id": "ida", "password": "ida-pass-1" }),
        )
        .await;
    let r = api
        .client
        .put(format!("{}/v1/profile/avatar", api.base))
        .bearer_auth(creds["token"].as_str().unwrap())
        .header("content-type", "image/png")
        .body(picture(64, 64, image::ImageFormat::Png))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stamp = r.json::<Value>().await.unwrap()["avatar_updated_at"]
        .as_i64()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = watcher.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = watcher.kill();
            panic!(
                "the watcher never ended: {}",
                std::fs::read_to_string(&trace).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let trace = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(status.success(), "{trace}\n{}", api.running.log());
    let notifies: Vec<&str> = trace
        .split("message received")
        .skip(1)
        .filter_map(|chunk| chunk.find("NOTIFY sip:").map(|i| &chunk[i..]))
        .collect();
    assert!(notifies.len() >= 2, "{trace}");
    assert!(!notifies[0].contains("avatar-updated"), "{}", notifies[0]);
    assert!(
        notifies[1].contains(&format!("<ss:avatar-updated>{stamp}</ss:avatar-updated>")),
        "{}",
        notifies[1]
    );
}

/// `login`'s handset over SIP: registers, stays up `hold_ms` answering the
/// MESSAGEs the switch sends it; its trace file.
fn handset(
    api: &Api,
    login: &str,
    password: &str,
    hold_ms: u64,
) -> (std::process::Child, std::path::PathBuf) {
    let dir = api.site.dir.path();
    let users = dir.join(format!("handset-{login}.csv"));
    std::fs::write(
        &users,
        format!(
            "SEQUENTIAL\n{login};{password};[authentication username={login} password={password}]\n"
        ),
    )
    .unwrap();
    let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sipp");
    let hold = dir.join(format!("hold-{login}.xml"));
    let text = std::fs::read_to_string(scenarios.join("register_and_hold.xml"))
        .unwrap()
        .replace(
            "<pause milliseconds=\"5000\"/>",
            &format!("<pause milliseconds=\"{hold_ms}\"/>"),
        );
    std::fs::write(&hold, text).unwrap();
    let trace = dir.join(format!("handset-{login}.log"));
    let child = std::process::Command::new("sipp")
        .arg(format!("127.0.0.1:{}", api.sip))
        .arg("-sf")
        .arg(&hold)
        .arg("-oocsf")
        .arg(scenarios.join("ooc_answer_message.xml"))
        .arg("-inf")
        .arg(&users)
        .args([
            "-key",
            "domain",
            "localhost",
            "-users",
            "1",
            "-m",
            "50",
            "-nostdin",
        ])
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(&trace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (scripts/setup.sh installs it)");
    (child, trace)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_book_finds_its_users_and_hears_when_a_friend_joins() {
    let mut vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("identity_burst = 1000\naddress_burst = 1000", &vendor).await;
    for (login, phone) in [("alice", "48600111000"), ("carol", "48600333000")] {
        api.site.ok(&[
            "account",
            "add",
            login,
            "--password",
            &format!("{login}-pw"),
            "--phone",
            phone,
            "--username",
            login,
            "--access-password",
            &format!("{login}-web"),
        ]);
    }
    let (alice, carol) = (
        api_token(&api.client, &api.base, "alice", "alice-web").await,
        api_token(&api.client, &api.base, "carol", "carol-web").await,
    );
    let call = |method: Method, path: &str, bearer: &str, body: Option<Value>| {
        let mut r = api
            .client
            .request(method, format!("{}{path}", api.base))
            .bearer_auth(bearer);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // alice's phone book, in two chunks: bob is not a user yet, carol is.
    let (s, body) = call(
        Method::POST,
        "/v1/contacts/uploads",
        &alice,
        Some(json!({"replace": true})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let upload = format!("/v1/contacts/uploads/{token}");
    let (s, body) = call(
        Method::POST,
        &upload,
        &alice,
        Some(json!({"entries": [
            {"id": "c-bob", "name": "Bob", "numbers": ["0600 222 000"]},
            {"id": "c-odd", "numbers": ["call me maybe"]},
        ]})),
    )
    .await;
    assert_eq!(
        (s, body["numbers"].as_i64(), body["rejected"].as_i64()),
        (StatusCode::OK, Some(1), Some(1)),
        "{body}"
    );
    let (s, body) = call(
        Method::POST,
        &upload,
        &alice,
        Some(json!({"entries": [
            {"id": "c-carol", "name": "Carol", "numbers": ["+48 600 333 000"]},
        ]})),
    )
    .await;
    assert_eq!(
        (s, body["numbers"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{body}"
    );
    // Another user's token names nothing; a malformed chunk is refused.
    let (s, _) = call(Method::GET, &upload, &carol, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, body) = call(
        Method::POST,
        &upload,
        &alice,
        Some(json!({"entries": [{"numbers": []}]})),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-request")),
        "{body}"
    );
    let (s, body) = call(Method::POST, &format!("{upload}/done"), &alice, None).await;
    assert_eq!(
        (s, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending")),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let users = loop {
        let (s, body) = call(Method::GET, &upload, &alice, None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        if body["status"] == "done" {
            break body["users"].clone();
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        users,
        json!([{"contact_id": "c-carol", "login": "carol", "phone": "48600333000"}])
    );
    let (_, book) = call(Method::GET, "/v1/contacts", &alice, None).await;
    assert_eq!(book["contacts"].as_array().unwrap().len(), 2, "{book}");
    // The dialing plan clients route by (SPEC §6).
    api.site
        .ok(&["dialplan", "add", "48", "pl.sip.example.net"]);
    let (s, plan) = call(Method::GET, "/v1/dialplan", &alice, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        plan,
        json!({"entries": [{"prefix": "48", "server": "pl.sip.example.net"}]})
    );
    let r = api
        .client
        .get(format!("{}/v1/dialplan", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // bob signs up with the number in alice's book while her handset is
    // online: the command and the text reach it at once.
    let (mut handset_proc, trace) = handset(&api, "alice", "alice-pw", 8000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .contains("SIP/2.0 200 OK")
    {
        assert!(
            Instant::now() < deadline,
            "alice never registered: {}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let device =
        json!({"phone": "0600 222 000", "country_code": "48", "udid": "bob-phone", "os": "ios"});
    let (s, body) = api.post("/v1/signup/phone", device).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let sent: Value = serde_json::from_slice(&vendor.next().await.body).unwrap();
    let code = code_in(sent["text"].as_str().unwrap());
    let (s, creds) = api
        .post(
            "/v1/signup/phone/verify",
            json!({"phone": "+48600222000", "udid": "bob-phone", "code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    // bob has no access password yet: he sets his first, once.
    let bob = creds["token"].as_str().unwrap().to_string();
    let set = json!({"password": "bob-first-pw"});
    let (s, body) = call(Method::POST, "/v1/password/set", &bob, Some(set.clone())).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = call(Method::POST, "/v1/password/set", &bob, Some(set)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("password-already-set"))
    );
    let (s, body) = api
        .post(
            "/v1/login",
            json!({"id": "+48600222000", "password": "bob-first-pw"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.contains("I joined") && text.contains("contacts-add") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "alice's handset got: {text}\n{}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = handset_proc.kill();
    let _ = handset_proc.wait();
    assert!(text.contains("\"command\":\"contacts-add\""), "{text}");
    assert!(
        text.contains("\"id\":\"c-bob\"")
            && text.contains("\"l\":\"48600222000\"")
            && text.contains("\"os\":\"ios\""),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: application/vnd.softswitch.command+json"),
        "{text}"
    );
    // Both on bob's behalf: alice sees the name her book gives him.
    assert!(
        text.contains("From: \"48600222000\" <sip:48600222000@localhost>"),
        "{text}"
    );

    // alice's history with bob: his "joined" text, not the command.
    let (s, history) = call(
        Method::GET,
        "/v1/history/messages?with=48600222000",
        &alice,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{history}");
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(messages[0]["direction"], "received");
    assert!(
        messages[0]["text"].as_str().unwrap().contains("joined"),
        "{history}"
    );
    let (s, body) = call(
        Method::GET,
        "/v1/history/messages?with=48600222000&limit=0",
        &alice,
        None,
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-request"))
    );

    // bob leaves while alice is offline: her handset hears contacts-del
    // when it registers.
    api.site.ok(&["account", "del", "48600222000"]);
    let (mut handset_proc, trace) = handset(&api, "alice", "alice-pw", 3000);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.contains("contacts-del") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's handset got: {text}\n{}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = handset_proc.kill();
    let _ = handset_proc.wait();
}

/// Waits until `login`'s handset trace shows its REGISTER answered.
async fn wait_registered(api: &Api, login: &str, trace: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(trace)
        .unwrap_or_default()
        .contains("SIP/2.0 200 OK")
    {
        assert!(
            Instant::now() < deadline,
            "{login} never registered: {}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the handset trace holds every one of `wanted`; the trace.
async fn wait_trace(api: &Api, trace: &std::path::Path, wanted: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(trace).unwrap_or_default();
        if wanted.iter().all(|w| text.contains(w)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the handset got: {text}\n{}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_adds_a_phone_by_sms_code_and_the_books_holding_it_hear_it_joined() {
    let mut vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("identity_burst = 1000\naddress_burst = 1000", &vendor).await;
    // alice has a phone and a book; dora and erin were made without one.
    api.site.ok(&[
        "account",
        "add",
        "alice",
        "--password",
        "alice-pw",
        "--phone",
        "48600111000",
        "--username",
        "alice",
        "--access-password",
        "alice-web",
    ]);
    for login in ["dora", "erin"] {
        api.site.ok(&[
            "account",
            "add",
            login,
            "--password",
            &format!("{login}-pw"),
            "--username",
            login,
            "--access-password",
            &format!("{login}-web"),
        ]);
    }
    let (alice, dora, erin) = (
        api_token(&api.client, &api.base, "alice", "alice-web").await,
        api_token(&api.client, &api.base, "dora", "dora-web").await,
        api_token(&api.client, &api.base, "erin", "erin-web").await,
    );
    let call = |path: &str, bearer: Option<&str>, body: Value| {
        let mut r = api.client.post(format!("{}{path}", api.base)).json(&body);
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let sms_code = async |vendor: &mut StandIn, to: &str| {
        let sent: Value = serde_json::from_slice(&vendor.next().await.body).unwrap();
        assert_eq!(sent["to"], to, "{sent}");
        code_in(sent["text"].as_str().unwrap())
    };

    // alice's book holds dora's future number (national, read with +48).
    let (s, body) = call(
        "/v1/contacts/uploads",
        Some(&alice),
        json!({"replace": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let upload = format!("/v1/contacts/uploads/{}", body["token"].as_str().unwrap());
    let (s, body) = call(
        &upload,
        Some(&alice),
        json!({"entries": [{"id": "c-dora", "name": "Dora", "numbers": ["0600 444 000"]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = call(&format!("{upload}/done"), Some(&alice), Value::Null).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body: Value = api
            .client
            .get(format!("{}{upload}", api.base))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] == "done" {
            assert_eq!(body["users"], json!([]), "dora has no phone yet");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The routes want the account's token; a malformed number is refused.
    let device = json!({"phone": "0600 444 000", "country_code": "48", "udid": "dora-phone", "os": "android"});
    let (s, body) = call("/v1/phone", None, device.clone()).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing-token")),
        "{body}"
    );
    let (s, body) = call(
        "/v1/phone",
        Some(&dora),
        json!({"phone": "call me", "udid": "dora-phone"}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-phone")),
        "{body}"
    );

    // dora asks: a code by SMS, answered like sign-up's.
    let (s, body) = call("/v1/phone", Some(&dora), device.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (
            body["status"].as_str(),
            body["phone"].as_str(),
            body["sms_left"].as_i64()
        ),
        (Some("code-sent"), Some("48600444000"), Some(4)),
        "{body}"
    );
    let code = sms_code(&mut vendor, "48600444000").await;
    // The sign-up's spacing holds.
    let (s, body) = call("/v1/phone", Some(&dora), device.clone()).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("resend-too-soon")),
        "{body}"
    );
    // erin asks for the same number before dora proves it: free, so she
    // gets her own code too.
    let erin_device = json!({"phone": "+48600444000", "udid": "erin-phone"});
    let (s, body) = call("/v1/phone", Some(&erin), erin_device.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let erin_code = sms_code(&mut vendor, "48600444000").await;

    // A wrong code is refused and counted.
    let verify = |code: &str| json!({"phone": "+48600444000", "udid": "dora-phone", "code": code});
    let wrong = if code == "0000" { "1111" } else { "0000" };
    let (s, body) = call("/v1/phone/verify", Some(&dora), verify(wrong)).await;
    assert_eq!(
        (s, body["code"].as_str(), body["attempts_left"].as_i64()),
        (StatusCode::BAD_REQUEST, Some("wrong-code"), Some(2)),
        "{body}"
    );

    // alice's handset is online when dora proves the number.
    let (mut handset_proc, trace) = handset(&api, "alice", "alice-pw", 15000);
    wait_registered(&api, "alice", &trace).await;
    let (s, body) = call("/v1/phone/verify", Some(&dora), verify(&code)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"login": "dora", "phone": "48600444000"}));
    let shown = api.site.ok(&["account", "show", "dora"]);
    assert!(shown.contains("phone: 48600444000"), "{shown}");
    // The number is dora's: she logs in with it.
    let (s, body) = api
        .post(
            "/v1/login",
            json!({"id": "+48600444000", "password": "dora-web"}),
        )
        .await;
    assert_eq!(
        (s, body["login"].as_str()),
        (StatusCode::OK, Some("dora")),
        "{body}"
    );
    // alice hears of her as of a new user: the command and the text.
    let text = wait_trace(&api, &trace, &["contacts-add", "I joined"]).await;
    assert!(
        text.contains("\"id\":\"c-dora\"")
            && text.contains("\"n\":\"48600444000\"")
            && text.contains("\"l\":\"dora\"")
            && text.contains("\"os\":\"android\""),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: application/vnd.softswitch.command+json"),
        "{text}"
    );

    // The number is taken: erin's right code is refused (checked again at
    // verify), and so is a new request; dora's own is no news; a repeated
    // verify of dora's answers the same.
    let (s, body) = call(
        "/v1/phone/verify",
        Some(&erin),
        json!({"phone": "+48600444000", "udid": "erin-phone", "code": erin_code}),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("phone-taken")),
        "{body}"
    );
    let (s, body) = call("/v1/phone", Some(&erin), erin_device).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("phone-taken")),
        "{body}"
    );
    let (s, body) = call("/v1/phone", Some(&dora), device.clone()).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("phone-already-yours")),
        "{body}"
    );
    let (s, body) = call("/v1/phone/verify", Some(&dora), verify(&code)).await;
    assert_eq!(
        (s, body["phone"].as_str()),
        (StatusCode::OK, Some("48600444000")),
        "{body}"
    );
    let shown = api.site.ok(&["account", "show", "erin"]);
    assert!(!shown.contains("48600444000"), "{shown}");

    // dora changes her number (national, read with her phone's +48): the
    // old one is freed and alice's book hears it left.
    let (s, body) = call(
        "/v1/phone",
        Some(&dora),
        json!({"phone": "0600 555 000", "udid": "dora-phone"}),
    )
    .await;
    assert_eq!(
        (s, body["phone"].as_str()),
        (StatusCode::ACCEPTED, Some("48600555000")),
        "{body}"
    );
    let code = sms_code(&mut vendor, "48600555000").await;
    let (s, body) = call(
        "/v1/phone/verify",
        Some(&dora),
        json!({"phone": "0600 555 000", "udid": "dora-phone", "code": code}),
    )
    .await;
    assert_eq!(
        body,
        json!({"login": "dora", "phone": "48600555000"}),
        "{s}"
    );
    let text = wait_trace(&api, &trace, &["contacts-del"]).await;
    assert!(text.contains("\"n\":\"48600444000\""), "{text}");
    let _ = handset_proc.kill();
    let _ = handset_proc.wait();
    let (s, _) = api
        .post(
            "/v1/login",
            json!({"id": "+48600444000", "password": "dora-web"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api
        .post(
            "/v1/login",
            json!({"id": "+48600555000", "password": "dora-web"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

/// Rows left in `table` of the switch's SQLite database.
fn rows_in(api: &Api, table: &str) -> i64 {
    let out = std::process::Command::new("sqlite3")
        .arg(api.site.path("data/softswitch.db"))
        .arg(format!("SELECT COUNT(*) FROM {table}"))
        .output()
        .expect("sqlite3 (scripts/setup.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Accounts `login` (username the same, access password `<login>-web`)
/// and their API tokens.
async fn users_with_tokens<const N: usize>(api: &Api, logins: [&str; N]) -> [String; N] {
    let mut tokens = Vec::new();
    for login in logins {
        api.site.ok(&[
            "account",
            "add",
            login,
            "--password",
            &format!("{login}-pw"),
            "--username",
            login,
            "--access-password",
            &format!("{login}-web"),
        ]);
        tokens.push(api_token(&api.client, &api.base, login, &format!("{login}-web")).await);
    }
    tokens.try_into().unwrap()
}

impl Api {
    /// `POST /v1/files?to=…` with `body` as `content_type`.
    async fn share(
        &self,
        token: &str,
        to: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}/v1/files", self.base))
            .query(&[("to", to), ("name", "holiday")])
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v1/files/{id}{query}`: status, content type, body.
    async fn fetch_file(&self, token: &str, id: &str, query: &str) -> (StatusCode, String, Bytes) {
        let r = self
            .client
            .get(format!("{}/v1/files/{id}{query}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, r.bytes().await.unwrap())
    }

    /// Waits until file `id` is gone for `token` (404). The last
    /// recipient's download is recorded as its connection lets go of the
    /// body, so the deletion may come a moment after the client read it;
    /// a download racing it breaks off.
    async fn wait_file_gone(&self, token: &str, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self
                .client
                .get(format!("{}/v1/files/{id}", self.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::NOT_FOUND {
                return;
            }
            assert_eq!(r.status(), StatusCode::OK);
            let _ = r.bytes().await;
            assert!(Instant::now() < deadline, "file {id} is still there");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_file_reaches_its_recipients_survives_a_crash_and_goes_after_the_last_download() {
    let vendor = StandIn::start(generic_answer()).await;
    let mut api = Api::generic(
        "file_max_bytes = 3000000\nidentity_burst = 1000\naddress_burst = 1000",
        &vendor,
    )
    .await;
    let [alice, bob, carol, dave] =
        users_with_tokens(&api, ["alice", "bob", "carol", "dave"]).await;

    // A picture for bob and carol, and a 2.5 MB recording (three chunks in
    // storage) for bob alone, sent without a length, as a stream.
    let photo = picture(640, 480, image::ImageFormat::Png);
    let (s, sent) = api
        .share(&alice, "bob, carol", "image/png", photo.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["size"].as_u64(), Some(photo.len() as u64), "{sent}");
    assert_eq!(sent["recipients"], json!(["bob", "carol"]));
    assert_eq!(sent["name"], "holiday");
    let photo_id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(photo_id.len(), 32);
    let audio: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
        audio.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let (s, sent) = api
        .share(
            &alice,
            "bob",
            "audio/wav",
            reqwest::Body::wrap_stream(futures_util::stream::iter(parts)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sent}");
    let audio_id = sent["id"].as_str().unwrap().to_string();

    // Refusals, each with its code, none leaving anything behind. (Small
    // bodies: the switch answers without reading them, and a big one
    // could still be on its way when the connection closes.)
    for (to, content_type, body, want, code) in [
        (
            "bob",
            "text/html",
            b"<p>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-file-type",
        ),
        (
            "bob,nobody",
            "image/png",
            b"png".to_vec(),
            StatusCode::BAD_REQUEST,
            "unknown-recipient",
        ),
        (
            "bob",
            "image/png",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            " ",
            "image/png",
            b"png".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
    ] {
        let (s, body) = api.share(&alice, to, content_type, body).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (want, Some(code)),
            "{to} {content_type}: {body}"
        );
    }
    // Too large by its announced length: curl (like most clients) sends
    // a big body only after a 100 Continue, which it never gets.
    let oversize = vec![0u8; 3_000_001];
    std::fs::write(api.site.path("oversize.mp4"), &oversize).unwrap();
    let curl = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(api.site.path("data/tls/self-signed-cert.pem"))
        .args(["-H", &format!("Authorization: Bearer {alice}")])
        .args(["-H", "Content-Type: video/mp4", "--data-binary"])
        .arg(format!("@{}", api.site.path("oversize.mp4").display()))
        .arg(format!("{}/v1/files?to=bob", api.base))
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    let answer = String::from_utf8_lossy(&curl.stdout);
    assert!(
        answer.ends_with("\n413") && answer.contains("\"too-large\""),
        "{answer}"
    );
    // Too large found while streaming (no length announced).
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = oversize
        .chunks(256 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let (s, body) = api
        .share(
            &alice,
            "bob",
            "video/mp4",
            reqwest::Body::wrap_stream(futures_util::stream::iter(parts)),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too-large")),
        "{body}"
    );
    assert_eq!(
        rows_in(&api, "shared_files"),
        2,
        "only the two good uploads are kept"
    );
    let r = api
        .client
        .get(format!("{}/v1/files/{photo_id}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // dave is no recipient; unknown ids are not found.
    let (s, _, body) = api.fetch_file(&dave, &photo_id, "").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("\"forbidden\""));
    for id in ["00112233445566778899aabbccddeeff", "1", "../etc"] {
        let (s, _, _) = api.fetch_file(&bob, id, "").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{id}");
    }
    // A thumbnail keeps the aspect ratio and is not a download.
    let (s, content_type, thumb) = api.fetch_file(&bob, &photo_id, "?width=64&height=64").await;
    assert_eq!((s, content_type.as_str()), (StatusCode::OK, "image/jpeg"));
    let small = image::load_from_memory(&thumb).unwrap();
    assert_eq!((small.width(), small.height()), (64, 48));
    for (query, want) in [
        ("?width=64", StatusCode::BAD_REQUEST),
        ("?width=0&height=10", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            api.fetch_file(&bob, &photo_id, query).await.0,
            want,
            "{query}"
        );
    }
    let (s, _, body) = api.fetch_file(&bob, &audio_id, "?width=64&height=64").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}");

    // The switch dies (SIGKILL) and comes back: what it took is there.
    api.restart().await;
    let (s, content_type, body) = api.fetch_file(&bob, &photo_id, "").await;
    assert_eq!((s, content_type.as_str()), (StatusCode::OK, "image/png"));
    assert!(body == photo, "bob's copy differs");
    // The sender's download does not count; carol's, the last, ends it.
    let (s, _, body) = api.fetch_file(&alice, &photo_id, "").await;
    assert!(s == StatusCode::OK && body == photo, "{s}");
    let (s, _, body) = api.fetch_file(&carol, &photo_id, "").await;
    assert!(s == StatusCode::OK && body == photo, "{s}");
    for token in [&alice, &bob, &carol] {
        api.wait_file_gone(token, &photo_id).await;
    }
    let (s, content_type, body) = api.fetch_file(&bob, &audio_id, "").await;
    assert_eq!((s, content_type.as_str()), (StatusCode::OK, "audio/wav"));
    assert!(body == audio, "the streamed upload came back different");
    api.wait_file_gone(&alice, &audio_id).await;
    for table in [
        "shared_files",
        "shared_file_recipients",
        "shared_file_chunks",
    ] {
        assert_eq!(rows_in(&api, table), 0, "{table}");
    }
}

#[tokio::test]
async fn a_file_nobody_downloads_expires() {
    let vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("file_keep_secs = 2", &vendor).await;
    let [alice, _bob] = users_with_tokens(&api, ["alice", "bob"]).await;
    let (s, sent) = api
        .share(
            &alice,
            "bob",
            "image/gif",
            picture(8, 8, image::ImageFormat::Gif),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sent}");
    let id = sent["id"].as_str().unwrap();
    let (s, _, thumb) = api.fetch_file(&alice, id, "?width=4&height=4").await;
    assert_eq!(s, StatusCode::OK, "a GIF has thumbnails too: {thumb:?}");
    let uploaded = Instant::now();
    while api.fetch_file(&alice, id, "").await.0 == StatusCode::OK {
        assert!(
            uploaded.elapsed() < Duration::from_secs(15),
            "{}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        uploaded.elapsed() >= Duration::from_secs(1),
        "expired at once"
    );
    assert_eq!(rows_in(&api, "shared_file_chunks"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_book_upload_goes_on_after_the_switch_is_killed_in_the_middle() {
    let vendor = StandIn::start(generic_answer()).await;
    let mut api = Api::generic("identity_burst = 1000\naddress_burst = 1000", &vendor).await;
    let [alice] = users_with_tokens(&api, ["alice"]).await;
    for (login, phone) in [("carol", "48600333000"), ("dan", "48600444000")] {
        api.site.ok(&[
            "account",
            "add",
            login,
            "--password",
            &format!("{login}-pw"),
            "--phone",
            phone,
        ]);
    }
    let call = |api: &Api, method: Method, path: &str, body: Option<Value>| {
        let mut r = api
            .client
            .request(method, format!("{}{path}", api.base))
            .bearer_auth(&alice);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, body) = call(
        &api,
        Method::POST,
        "/v1/contacts/uploads",
        Some(json!({"replace": true})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let upload = format!("/v1/contacts/uploads/{}", body["token"].as_str().unwrap());
    let chunk = |id: &str, number: &str| json!({"entries": [{"id": id, "numbers": [number]}]});
    let (s, body) = call(
        &api,
        Method::POST,
        &upload,
        Some(chunk("c-carol", "+48600333000")),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // SIGKILL between two chunks: the first is kept, the upload goes on.
    api.restart().await;
    let (s, body) = call(
        &api,
        Method::POST,
        &upload,
        Some(chunk("c-dan", "+48600444000")),
    )
    .await;
    assert_eq!(
        (s, body["numbers"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{body}"
    );
    let (s, body) = call(&api, Method::POST, &format!("{upload}/done"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    // Killed again at once: an upload closed but not yet applied is applied
    // at the next start; one applied before the kill is simply there.
    api.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let users = loop {
        let (s, body) = call(&api, Method::GET, &upload, None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        if body["status"] == "done" {
            break body["users"].clone();
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut logins: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["login"].as_str().unwrap())
        .collect();
    logins.sort();
    assert_eq!(logins, ["carol", "dan"], "{users}");
    let (_, book) = call(&api, Method::GET, "/v1/contacts", None).await;
    assert_eq!(book["contacts"].as_array().unwrap().len(), 2, "{book}");
}

impl Api {
    /// A signed-in request: `method path` with `token`, `body` as JSON.
    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An admin request with a JSON body (token "t").
    async fn admin_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.admin(&self.client, method, path);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The sum of an account's whole ledger, read through the admin API, and
/// its balance.
async fn ledger_sum_and_balance(api: &Api, login: &str) -> (i64, i64) {
    let (s, body) = api
        .admin_json(
            reqwest::Method::GET,
            &format!("/accounts/{login}/ledger?limit=200"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.get("next").is_none(), "one page holds it: {body}");
    let sum = body["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount_micro"].as_i64().unwrap())
        .sum();
    (sum, body["balance_micro"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn billing_tariffs_rates_vouchers_transfers_and_a_ledger_that_sums_to_the_balance() {
    use reqwest::Method;
    let vendor = StandIn::start(generic_answer()).await;
    // The default per-account limit (10 tries, one more every 30 s) is
    // what stops PIN guessing; the address limit is raised for the test's
    // many requests from one address.
    let api = Api::start_with(
        "address_burst = 1000",
        (
            "generic",
            "sms_generic",
            &generic_config(&vendor),
            "\"127.0.0.1\"",
        ),
        "",
        "\n[billing]\ntariff_poll_secs = 1\ntransfer_max_micro = 20000000\n",
    )
    .await;
    let [alice, bob, carol] = users_with_tokens(&api, ["alice", "bob", "carol"]).await;
    for (login, currency) in [("alice", "EUR"), ("bob", "EUR"), ("carol", "USD")] {
        api.site.ok(&[
            "account",
            "set",
            login,
            "--tariff",
            "std",
            "--currency",
            currency,
        ]);
    }

    // A tariff from a CSV file through the CLI.
    let csv = api.site.path("std.csv");
    std::fs::write(
        &csv,
        "prefix,description,country,currency,price_per_minute,connection_fee,increments,free_seconds\n\
         48,Poland,PL,EUR,0.0123,0,60/60,0\n\
         48600,\"Poland, mobile\",PL,EUR,0.05,0.01,30/6,5\n\
         4822,Warsaw,,EUR,0.02,,1/1,\n",
    )
    .unwrap();
    let out = api
        .site
        .ok(&["tariff", "import", "std", csv.to_str().unwrap()]);
    assert!(out.contains("3 rates imported"), "{out}");
    let listed = api.site.ok(&["tariff", "list", "std"]);
    assert!(
        listed.starts_with("prefix,description,country,currency"),
        "{listed}"
    );
    assert!(
        listed.contains("48600,\"Poland, mobile\",PL,EUR,0.05,0.01,30/6,5,"),
        "{listed}"
    );
    let bad = api.site.path("bad.csv");
    std::fs::write(
        &bad,
        "prefix,currency,price_per_minute\n48,EUR,0.1\n48,EUR,0.2\n",
    )
    .unwrap();
    let err = api
        .site
        .fails(&["tariff", "import", "std", bad.to_str().unwrap()]);
    assert!(err.contains("line 3: prefix 48 is given twice"), "{err}");

    // Rates by country: only rows that carry one, in the account's
    // currency. The running switch sees the import within its poll.
    let deadline = Instant::now() + Duration::from_secs(15);
    let by_country = loop {
        let (s, body) = api
            .call(&alice, Method::GET, "/v1/rates?country=pl", None)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        if !body["rates"].as_array().unwrap().is_empty() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the import never showed: {}",
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(by_country["currency"], "EUR");
    let prefixes: Vec<&str> = by_country["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(
        prefixes,
        ["48", "48600"],
        "4822 has no country: {by_country}"
    );
    assert_eq!(by_country["rates"][0]["price_per_minute"], "0.0123");
    assert_eq!(by_country["rates"][0]["price_per_minute_micro"], 12_300);
    // By dialled number: the longest prefix.
    let (s, body) = api
        .call(
            &alice,
            Method::GET,
            "/v1/rates?number=%2B48%20600%20100%20200",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["rates"][0]["prefix"], "48600", "{body}");
    assert_eq!(body["rates"][0]["description"], "Poland, mobile");
    assert_eq!(body["rates"][0]["increments"], "30/6");
    assert_eq!(body["rates"][0]["connection_fee"], "0.01");
    assert_eq!(body["rates"][0]["free_seconds"], 5);
    let (_, body) = api
        .call(&alice, Method::GET, "/v1/rates?number=4822123", None)
        .await;
    assert_eq!(body["rates"][0]["prefix"], "4822");
    let (_, body) = api
        .call(&alice, Method::GET, "/v1/rates?number=44207", None)
        .await;
    assert_eq!(body["rates"], json!([]), "no rate");
    // carol's balance is in USD: a EUR tariff shows nothing without an
    // exchange rate.
    let (_, body) = api
        .call(&carol, Method::GET, "/v1/rates?country=PL", None)
        .await;
    assert_eq!(
        (body["currency"].as_str(), body["rates"].clone()),
        (Some("USD"), json!([]))
    );
    // With one (admin API, live on this node at once): the rates in USD,
    // rounded up to the micro unit (1 EUR = 1.10 USD).
    let (s, body) = api
        .admin_json(
            Method::PUT,
            "/exchange-rates/eur/USD",
            Some(json!({"rate": "1.10"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["base"].as_str(),
            body["quote"].as_str(),
            body["rate"].as_str()
        ),
        (Some("EUR"), Some("USD"), Some("1.1"))
    );
    let (_, body) = api
        .call(&carol, Method::GET, "/v1/rates?country=PL", None)
        .await;
    assert_eq!(body["currency"], "USD", "{body}");
    assert_eq!(body["rates"][0]["currency"], "USD", "{body}");
    assert_eq!(body["rates"][0]["price_per_minute_micro"], 13_530);
    assert_eq!(body["rates"][1]["connection_fee"], "0.011");
    let (s, body) = api.admin_json(Method::GET, "/exchange-rates", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body[0]["rate_nano"], 1_100_000_000, "{body}");
    for (path, rate, code) in [
        ("/exchange-rates/EUR/USD", json!("abc"), "invalid-rate"),
        ("/exchange-rates/EUR/USD", json!("0"), "invalid-rate"),
        ("/exchange-rates/EUR/XYZ", json!("1"), "unknown-currency"),
        ("/exchange-rates/EUR/EUR", json!("1"), "invalid-request"),
    ] {
        let (s, body) = api
            .admin_json(Method::PUT, path, Some(json!({ "rate": rate })))
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{path} {rate}: {body}"
        );
    }
    // Deleted (either way round): nothing shown again.
    let (s, _) = api
        .admin_json(Method::DELETE, "/exchange-rates/USD/EUR", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .admin_json(Method::DELETE, "/exchange-rates/USD/EUR", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, body) = api
        .call(&carol, Method::GET, "/v1/rates?country=PL", None)
        .await;
    assert_eq!(body["rates"], json!([]), "{body}");
    for (query, code) in [
        ("", "invalid-request"),
        ("?country=PL&number=48", "invalid-request"),
        ("?country=POL", "invalid-request"),
        ("?number=abc", "invalid-phone"),
    ] {
        let (s, body) = api
            .call(&alice, Method::GET, &format!("/v1/rates{query}"), None)
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }
    let (s, _) = api.get("/v1/rates?country=PL").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Balance: 0 to start with.
    let (s, body) = api.call(&alice, Method::GET, "/v1/balance", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["balance"].as_str(), body["currency"].as_str()),
        (Some("0.00"), Some("EUR"))
    );

    // Top-ups: the admin API and the CLI.
    let (s, body) = api
        .admin_json(
            Method::POST,
            "/accounts/alice/topup",
            Some(json!({"amount": "10.00", "reference": "pay-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["balance"].as_str(), body["balance_micro"].as_i64()),
        (Some("10.00"), Some(10_000_000))
    );
    for (login, amount, status, code) in [
        (
            "alice",
            json!("-1"),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            "alice",
            json!("1.001"),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            "alice",
            json!("1000000000"),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            "alice",
            json!(5),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            "nobody",
            json!("1"),
            StatusCode::NOT_FOUND,
            "no-such-account",
        ),
    ] {
        let (s, body) = api
            .admin_json(
                Method::POST,
                &format!("/accounts/{login}/topup"),
                Some(json!({ "amount": amount })),
            )
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (status, Some(code)),
            "{amount}: {body}"
        );
    }
    let out = api.site.ok(&["balance", "topup", "bob", "1.50"]);
    assert!(out.contains("balance 1.50 EUR"), "{out}");
    let err = api.site.fails(&["balance", "topup", "bob", "0"]);
    assert!(err.contains("must be positive"), "{err}");

    // Vouchers made by the admin API, redeemed once.
    let (s, made) = api
        .admin_json(
            Method::POST,
            "/vouchers",
            Some(json!({"count": 2, "value": "5.00", "currency": "eur"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(
        (made["currency"].as_str(), made["value"].as_str()),
        (Some("EUR"), Some("5.00"))
    );
    let pins: Vec<String> = made["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pins.len(), 2);
    assert!(
        pins.iter()
            .all(|p| p.len() == 16 && p.bytes().all(|b| b.is_ascii_digit()))
    );
    for (body, status, code) in [
        (
            json!({"count": 1, "value": "5", "currency": "XYZ"}),
            StatusCode::BAD_REQUEST,
            "unknown-currency",
        ),
        (
            json!({"count": 0, "value": "5", "currency": "EUR"}),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            json!({"count": 1, "value": "five", "currency": "EUR"}),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            json!({"count": 1, "value": "-5", "currency": "EUR"}),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
    ] {
        let (s, answer) = api
            .admin_json(Method::POST, "/vouchers", Some(body.clone()))
            .await;
        assert_eq!(
            (s, answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let (s, body) = api
        .call(
            &alice,
            Method::POST,
            "/v1/vouchers/redeem",
            Some(json!({ "pin": pins[0] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["amount"].as_str(), body["balance"].as_str()),
        (Some("5.00"), Some("15.00"))
    );
    let (s, body) = api
        .call(
            &bob,
            Method::POST,
            "/v1/vouchers/redeem",
            Some(json!({ "pin": pins[0] })),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("voucher-redeemed")),
        "{body}"
    );
    let (s, body) = api
        .call(
            &carol,
            Method::POST,
            "/v1/vouchers/redeem",
            Some(json!({ "pin": pins[1] })),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("currency-mismatch")),
        "{body}"
    );
    let (s, batch) = api
        .admin_json(
            Method::GET,
            &format!("/vouchers/{}", made["batch"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (s, batch["redeemed"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{batch}"
    );
    // Guessing PINs: unknown, then the per-account limit answers.
    let mut limited = false;
    for _ in 0..12 {
        let (s, body) = api
            .call(
                &bob,
                Method::POST,
                "/v1/vouchers/redeem",
                Some(json!({"pin": "0000-0000-0000-0000"})),
            )
            .await;
        match s {
            StatusCode::NOT_FOUND => assert_eq!(body["code"], "unknown-voucher"),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["code"], "rate-limited");
                limited = true;
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(limited, "PIN guessing was never limited");

    // Transfers.
    let (s, body) = api
        .call(
            &alice,
            Method::POST,
            "/v1/transfers",
            Some(json!({"to": "bob", "amount": "2.50"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["to"].as_str(), body["balance"].as_str()),
        (Some("bob"), Some("12.50"))
    );
    for (token, to, amount, status, code) in [
        (
            &alice,
            "alice",
            json!("1"),
            StatusCode::BAD_REQUEST,
            "transfer-to-self",
        ),
        (
            &alice,
            "bob",
            json!("0"),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            &alice,
            "bob",
            json!("-1.00"),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            &alice,
            "bob",
            json!("0.001"),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            &alice,
            "bob",
            json!("lots"),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            &alice,
            "bob",
            json!(1.5),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            &alice,
            "bob",
            json!("20.01"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "transfer-limit",
        ),
        (
            &alice,
            "nobody",
            json!("1"),
            StatusCode::BAD_REQUEST,
            "unknown-recipient",
        ),
        (
            &alice,
            "carol",
            json!("1"),
            StatusCode::CONFLICT,
            "currency-mismatch",
        ),
        (
            &bob,
            "alice",
            json!("4.01"),
            StatusCode::PAYMENT_REQUIRED,
            "insufficient-funds",
        ),
    ] {
        let (s, body) = api
            .call(
                token,
                Method::POST,
                "/v1/transfers",
                Some(json!({ "to": to, "amount": amount })),
            )
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (status, Some(code)),
            "{to} {amount}: {body}"
        );
    }
    let (s, body) = api
        .call(
            &bob,
            Method::POST,
            "/v1/transfers",
            Some(json!({"to": "alice", "amount": "4"})),
        )
        .await;
    assert_eq!(
        (s, body["balance"].as_str()),
        (StatusCode::CREATED, Some("0.00")),
        "{body}"
    );

    // The balance with its ledger, newest first and paged.
    let (s, page) = api
        .call(&alice, Method::GET, "/v1/balance?limit=2", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["balance"], "16.50");
    let kinds: Vec<&str> = page["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["transfer-in", "transfer-out"]);
    assert_eq!(page["ledger"][0]["amount"], "4.00");
    assert_eq!(page["ledger"][1]["amount"], "-2.50");
    let next = page["next"].as_i64().unwrap();
    let (_, older) = api
        .call(
            &alice,
            Method::GET,
            &format!("/v1/balance?limit=2&before={next}"),
            None,
        )
        .await;
    let kinds: Vec<&str> = older["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["voucher", "topup"]);
    let (s, body) = api
        .call(&alice, Method::GET, "/v1/balance?limit=0", None)
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-request"))
    );
    // The operator's balance setter is a ledger row too.
    let (s, _) = api
        .admin_json(
            Method::PUT,
            "/accounts/bob/balance",
            Some(json!({"balance_micro": 7_250_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for (login, balance) in [("alice", 16_500_000), ("bob", 7_250_000), ("carol", 0)] {
        assert_eq!(
            ledger_sum_and_balance(&api, login).await,
            (balance, balance),
            "{login}"
        );
    }
    let ledger = api.site.ok(&["balance", "ledger", "bob"]);
    assert_eq!(ledger.lines().count(), 4, "{ledger}");
    assert!(
        ledger
            .lines()
            .next()
            .unwrap()
            .contains("\tadjust\t7.25\t7.25\t"),
        "{ledger}"
    );
    let shown = api.site.ok(&["balance", "show", "alice"]);
    assert!(shown.contains("balance: 16.50 EUR"), "{shown}");

    // Tariffs through the admin API.
    let put = |name: &str, body: &'static str| {
        api.admin(&api.client, Method::PUT, &format!("/tariffs/{name}"))
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let r = put(
        "promo",
        "prefix,currency,price_per_minute,country\n1,USD,0.01,US\n44,USD,0.02,GB\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = put("promo", "prefix,currency,price\n1,USD,0.01\n")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid-tariff");
    let (_, list) = api.admin_json(Method::GET, "/tariffs", None).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "promo" && t["rows"] == 2),
        "{list}"
    );
    let (s, _) = api
        .admin_json(Method::DELETE, "/tariffs/promo/rates/44", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, promo) = api.admin_json(Method::GET, "/tariffs/promo", None).await;
    assert_eq!(promo["rates"].as_array().unwrap().len(), 1, "{promo}");
    // carol moves to it: USD rates now show.
    api.site
        .ok(&["account", "set", "carol", "--tariff", "promo"]);
    let (_, body) = api
        .call(&carol, Method::GET, "/v1/rates?country=US", None)
        .await;
    assert_eq!(body["rates"][0]["prefix"], "1", "{body}");
    let (s, _) = api.admin_json(Method::DELETE, "/tariffs/promo", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = api.admin_json(Method::GET, "/tariffs/promo", None).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown-tariff"))
    );

    // The CLI's other billing commands.
    api.site.ok(&["tariff", "del", "std", "4822"]);
    let err = api.site.fails(&["tariff", "del", "std", "4822"]);
    assert!(err.contains("no rate for prefix"), "{err}");
    let pins = api.site.ok(&[
        "voucher",
        "create",
        "--count",
        "3",
        "--value",
        "1.00",
        "--currency",
        "EUR",
    ]);
    assert_eq!(pins.lines().count(), 3, "{pins}");
    assert!(pins.lines().all(|p| p.len() == 16), "{pins}");
    let err = api.site.fails(&[
        "voucher",
        "create",
        "--count",
        "1",
        "--value",
        "1",
        "--currency",
        "XYZ",
    ]);
    assert!(err.contains("ISO 4217"), "{err}");
}

/// The balance line of `softswitch balance show LOGIN`, e.g. "0.03 USD".
fn balance_shown(api: &Api, login: &str) -> String {
    let out = api.site.ok(&["balance", "show", login]);
    out.lines()
        .find_map(|l| l.strip_prefix("balance: "))
        .unwrap_or_else(|| panic!("no balance in {out}"))
        .to_owned()
}

/// Prepaid OFFNET messages (SPEC §10): a MESSAGE to a number the SMS
/// provider sends is charged at its tariff row's SMS price before it is
/// accepted, refunded when the vendor refuses it, and refused with 402 when
/// the money is short or 403 when the tariff does not sell messages there.
#[tokio::test]
async fn prepaid_offnet_messages_are_charged_refunded_when_refused_and_refused_without_money() {
    // The vendor takes the first message and refuses the second for good.
    let mut vendor = StandIn::start(Arc::new(|_: &Received, n: usize| {
        if n == 0 {
            (
                StatusCode::OK,
                axum::Json(json!({ "data": { "id": "gen-0" } })),
            )
                .into_response()
        } else {
            (StatusCode::BAD_REQUEST, "number barred").into_response()
        }
    }))
    .await;
    let api = Api::start_with(
        "",
        (
            "generic",
            "sms_generic",
            &generic_config(&vendor),
            "\"127.0.0.1\"",
        ),
        "",
        "\n[billing]\nprepaid_sms = true\n",
    )
    .await;
    api.site.ok(&[
        "account",
        "add",
        "dora",
        "--password",
        "dora-pw",
        "--phone",
        "48600111222",
    ]);
    // Numbers from 4 go to the carrier; the tariff sells messages to 4860
    // only (0.07 each), calls to 44 but no messages.
    api.site.ok(&[
        "gateway",
        "add",
        "carrier",
        "--prefix",
        "4",
        "--address",
        "127.0.0.1:9",
        "--transport",
        "udp",
    ]);
    let tariff = api.site.path("tariff.csv");
    std::fs::write(
        &tariff,
        "prefix,description,country,currency,price_per_minute,connection_fee,increments,sms_price\n\
         4860,Poland mobile,PL,USD,0.60,0,1/1,0.07\n\
         44,United Kingdom,GB,USD,0.30,0,1/1,\n",
    )
    .unwrap();
    api.site
        .ok(&["tariff", "import", "default", tariff.to_str().unwrap()]);
    api.site.ok(&["balance", "topup", "dora", "0.10"]);

    assert!(
        api.message_with_sipp("dora", "dora-pw", "int4860012345", 202),
        "first message: {}",
        api.running.log()
    );
    let sent: Value = serde_json::from_slice(&vendor.next().await.body).unwrap();
    assert!(
        sent["to"].as_str().unwrap().ends_with("4860012345"),
        "{sent}"
    );
    assert_eq!(balance_shown(&api, "dora"), "0.03 USD");

    assert!(
        api.message_with_sipp("dora", "dora-pw", "int4860012345", 402),
        "0.03 does not pay 0.07: {}",
        api.running.log()
    );
    assert!(
        api.message_with_sipp("dora", "dora-pw", "int4470000000", 403),
        "no SMS price to 44: {}",
        api.running.log()
    );
    vendor.nothing_within(Duration::from_millis(500)).await;
    assert_eq!(balance_shown(&api, "dora"), "0.03 USD");

    api.site.ok(&["balance", "topup", "dora", "0.10"]);
    assert!(
        api.message_with_sipp("dora", "dora-pw", "int4860012345", 202),
        "second message: {}",
        api.running.log()
    );
    vendor.next().await;
    // Refused by the vendor: the 0.07 comes back, with its own ledger row.
    let deadline = Instant::now() + Duration::from_secs(10);
    while balance_shown(&api, "dora") != "0.13 USD" {
        assert!(
            Instant::now() < deadline,
            "no refund: {} {}",
            balance_shown(&api, "dora"),
            api.running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ledger = api.site.ok(&["balance", "ledger", "dora"]);
    let kinds: Vec<_> = ledger
        .lines()
        .filter_map(|l| l.split('\t').nth(2))
        .collect();
    assert_eq!(
        kinds,
        ["sms", "sms", "topup", "sms", "topup"],
        "newest first:\n{ledger}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dids_are_imported_listed_ordered_from_the_balance_and_released() {
    use reqwest::Method;
    let vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("address_burst = 1000", &vendor).await;
    let [alice, bob] = users_with_tokens(&api, ["alice", "bob"]).await;
    for login in ["alice", "bob"] {
        api.site.ok(&["account", "set", login, "--currency", "EUR"]);
    }
    api.site.ok(&["balance", "topup", "alice", "10.00"]);
    api.site.ok(&["balance", "topup", "bob", "1.00"]);

    // The pool: a CSV file through the admin API; a bad line is named.
    let import = |body: &'static str| {
        api.admin(&api.client, Method::POST, "/did-pool")
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let r = import(
        "number,country,description,monthly_fee,setup_fee,currency\n\
         +48 22 555 0100,PL,Warsaw,2.00,1.00,EUR\n\
         48225550101,pl,\"Warsaw, Mokotów\",2.50,,EUR\n\
         12125550100,US,New York,1.00,,USD\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["rows"].as_i64(), body["added"].as_i64()),
        (Some(3), Some(3))
    );
    let r = import("number,monthly_fee,currency\n4822,1,EUR\n4823,1.001,EUR\n")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid-did-pool");
    assert!(
        body["message"].as_str().unwrap().starts_with("line 3:"),
        "{body}"
    );

    // Free numbers in the caller's currency only.
    let (s, body) = api
        .call(&alice, Method::GET, "/v1/dids/available?country=pl", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["currency"].as_str(), body["period_days"].as_i64()),
        (Some("EUR"), Some(30))
    );
    let numbers: Vec<&str> = body["dids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["48225550100", "48225550101"], "{body}");
    assert_eq!(body["dids"][0]["monthly_fee"], "2.00");
    assert_eq!(body["dids"][0]["setup_fee_micro"], 1_000_000);
    assert_eq!(body["dids"][1]["description"], "Warsaw, Mokotów");
    let (_, body) = api
        .call(&alice, Method::GET, "/v1/dids/available", None)
        .await;
    assert_eq!(body["dids"].as_array().unwrap().len(), 2, "no USD: {body}");
    for query in ["?country=POL", "?limit=0", "?limit=x", "?colour=red"] {
        let (s, body) = api
            .call(
                &alice,
                Method::GET,
                &format!("/v1/dids/available{query}"),
                None,
            )
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid-request")),
            "{query}"
        );
    }

    // Ordered: the setup fee and the first month from the balance.
    let (s, body) = api
        .call(
            &alice,
            Method::POST,
            "/v1/dids",
            Some(json!({"number": "+48 22 555 0100"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["did"]["number"], "48225550100");
    assert_eq!(
        (body["charged"].as_str(), body["balance"].as_str()),
        (Some("3.00"), Some("7.00"))
    );
    let paid_until = body["did"]["paid_until"].as_i64().unwrap();
    assert_eq!(
        paid_until - body["did"]["ordered_at"].as_i64().unwrap(),
        30 * 86_400
    );
    assert!(
        api.site.ok(&["did", "list"]).contains("48225550100\talice"),
        "routed"
    );
    for (request, status, code) in [
        (
            json!({"number": "48225550100"}),
            StatusCode::CONFLICT,
            "did-taken",
        ),
        (
            json!({"number": "12125550100"}),
            StatusCode::CONFLICT,
            "currency-mismatch",
        ),
        (
            json!({"country": "PL"}),
            StatusCode::PAYMENT_REQUIRED,
            "insufficient-funds",
        ),
        (
            json!({"country": "DE"}),
            StatusCode::NOT_FOUND,
            "no-free-number",
        ),
        (
            json!({"number": "4899"}),
            StatusCode::NOT_FOUND,
            "unknown-number",
        ),
        (
            json!({"number": "abc"}),
            StatusCode::BAD_REQUEST,
            "invalid-phone",
        ),
        (
            json!({"country": "Poland"}),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "invalid-request"),
        (
            json!({"number": "48225550101", "country": "PL"}),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            json!({"number": 48225550101u64}),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
    ] {
        let (s, body) = api
            .call(&bob, Method::POST, "/v1/dids", Some(request.clone()))
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (status, Some(code)),
            "{request}: {body}"
        );
    }
    let (s, _) = api.post("/v1/dids", json!({"country": "PL"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The caller's numbers; the admin sees who holds what.
    let (s, body) = api.call(&alice, Method::GET, "/v1/dids", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["dids"].as_array().unwrap().len(), 1);
    assert_eq!(body["dids"][0]["paid_until"].as_i64(), Some(paid_until));
    let (_, body) = api.call(&bob, Method::GET, "/v1/dids", None).await;
    assert_eq!(body["dids"], json!([]));
    let (s, pool) = api
        .admin_json(Method::GET, "/did-pool?country=PL", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{pool}");
    assert_eq!(pool.as_array().unwrap().len(), 2);
    assert_eq!(pool[0]["login"], "alice");
    assert!(pool[1].get("login").is_none(), "{pool}");
    let (s, body) = api
        .admin_json(Method::DELETE, "/did-pool/48225550100", None)
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("did-held"))
    );
    let (sum, balance) = ledger_sum_and_balance(&api, "alice").await;
    assert_eq!((sum, balance), (7_000_000, 7_000_000));

    // Released by its holder only: back in the pool, no longer routed.
    let (s, _) = api
        .call(&bob, Method::DELETE, "/v1/dids/48225550100", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .call(&alice, Method::DELETE, "/v1/dids/+48225550100", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = api
        .call(&alice, Method::DELETE, "/v1/dids/48225550100", None)
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );
    assert!(!api.site.ok(&["did", "list"]).contains("48225550100"));
    let (_, body) = api.call(&alice, Method::GET, "/v1/dids", None).await;
    assert_eq!(body["dids"], json!([]));
    let (_, body) = api
        .call(&bob, Method::GET, "/v1/dids/available?country=PL", None)
        .await;
    assert_eq!(
        body["dids"].as_array().unwrap().len(),
        2,
        "free again: {body}"
    );
    assert_eq!(
        ledger_sum_and_balance(&api, "alice").await.1,
        7_000_000,
        "no refund"
    );
    let (s, _) = api
        .admin_json(Method::DELETE, "/did-pool/48225550100", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .admin_json(Method::DELETE, "/did-pool/48225550100", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // With a EUR/USD rate, the USD number is listed for a EUR account with
    // its fees converted, and an order by country takes it at that price.
    api.site.ok(&["fx", "set", "EUR", "USD", "1.25"]);
    let (s, body) = api
        .call(&bob, Method::GET, "/v1/dids/available?country=US", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["dids"][0]["number"], "12125550100", "{body}");
    assert_eq!(body["dids"][0]["currency"], "USD");
    assert_eq!(
        body["dids"][0]["in_your_currency"],
        json!({"currency": "EUR", "monthly_fee": "0.80", "monthly_fee_micro": 800_000,
               "setup_fee": "0.00", "setup_fee_micro": 0}),
        "{body}"
    );
    let (_, body) = api
        .call(&bob, Method::GET, "/v1/dids/available?country=PL", None)
        .await;
    assert!(
        body["dids"][0].get("in_your_currency").is_none(),
        "priced in EUR already: {body}"
    );
    let (s, body) = api
        .call(
            &bob,
            Method::POST,
            "/v1/dids",
            Some(json!({"country": "US"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["did"]["number"], "12125550100");
    assert_eq!(
        (body["charged"].as_str(), body["balance"].as_str()),
        (Some("0.80"), Some("0.20"))
    );
    let (sum, balance) = ledger_sum_and_balance(&api, "bob").await;
    assert_eq!((sum, balance), (200_000, 200_000));
}

/// The payment page's webhook: a signed payment is credited once, however
/// often it is delivered; unsigned, stale or wrong requests change nothing.
#[tokio::test]
async fn a_signed_payment_is_credited_once_and_nothing_else_is() {
    let vendor = StandIn::start(generic_answer()).await;
    let api = Api::start_with(
        "",
        (
            "generic",
            "sms_generic",
            &generic_config(&vendor),
            "\"127.0.0.1\"",
        ),
        "",
        "\n[billing]\npayment_webhook_secret = \"pay-secret\"\n",
    )
    .await;
    let [token] = users_with_tokens(&api, ["payer"]).await;
    let balance = || async {
        let r = api
            .client
            .get(format!("{}/v1/balance", api.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()
    };
    let currency = balance().await["currency"].as_str().unwrap().to_owned();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let deliver = |body: Value, signature: Option<String>| {
        let body = serde_json::to_vec(&body).unwrap();
        let signature = signature
            .unwrap_or_else(|| softswitch::api::payments::sign("pay-secret", &body, now()));
        let request = api
            .client
            .post(format!("{}/v1/payments/webhook", api.base))
            .header("content-type", "application/json")
            .header("softswitch-signature", signature)
            .body(body);
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let payment =
        json!({ "id": "pi_001", "login": "payer", "amount": "10.00", "currency": currency });

    let (s, first) = deliver(payment.clone(), None).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(
        (first["amount"].as_str(), first["repeated"].as_bool()),
        (Some("10.00"), Some(false))
    );
    let (s, again) = deliver(payment.clone(), None).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["repeated"], true);
    assert_eq!(again["ledger_id"], first["ledger_id"]);

    let body = serde_json::to_vec(
        &json!({ "id": "pi_002", "login": "payer", "amount": "5.00", "currency": currency }),
    )
    .unwrap();
    let stale = softswitch::api::payments::sign("pay-secret", &body, now() - 3_600);
    let forged = softswitch::api::payments::sign("guessed", &body, now());
    for (what, signature) in [
        ("stale", stale),
        ("forged", forged),
        ("none", String::new()),
    ] {
        let (s, e) = deliver(
            json!({ "id": "pi_002", "login": "payer", "amount": "5.00", "currency": currency }),
            Some(signature),
        )
        .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("bad-signature")),
            "{what}: {e}"
        );
    }
    let other = if currency == "EUR" { "USD" } else { "EUR" };
    for (body, status, code) in [
        (
            json!({ "id": "pi_003", "login": "nobody", "amount": "5.00", "currency": currency }),
            StatusCode::NOT_FOUND,
            "no-such-account",
        ),
        (
            json!({ "id": "pi_004", "login": "payer", "amount": "5.00", "currency": other }),
            StatusCode::CONFLICT,
            "currency-mismatch",
        ),
        (
            json!({ "id": "pi_005", "login": "payer", "amount": "-5.00", "currency": currency }),
            StatusCode::BAD_REQUEST,
            "invalid-amount",
        ),
        (
            json!({ "id": "pi_006", "login": "payer", "amount": "5.00", "currency": "XYZ" }),
            StatusCode::BAD_REQUEST,
            "unknown-currency",
        ),
        (
            json!({ "id": "", "login": "payer", "amount": "5.00", "currency": currency }),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            json!({ "id": "pi_007", "login": "payer" }),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
    ] {
        let (s, e) = deliver(body.clone(), None).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{body}: {e}");
    }

    let money = balance().await;
    assert_eq!(money["balance"], "10.00", "{money}");
    let ledger = money["ledger"].as_array().unwrap();
    assert_eq!(ledger.len(), 1, "{money}");
    assert_eq!(
        (ledger[0]["kind"].as_str(), ledger[0]["reference"].as_str()),
        (Some("topup"), Some("payment pi_001"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_are_sold_by_the_admin_bought_from_the_balance_listed_and_cancelled() {
    use reqwest::Method;
    let vendor = StandIn::start(generic_answer()).await;
    let api = Api::generic("address_burst = 1000", &vendor).await;
    let [alice, carol] = users_with_tokens(&api, ["alice", "carol"]).await;
    api.site
        .ok(&["account", "set", "alice", "--currency", "EUR"]);
    api.site
        .ok(&["account", "set", "carol", "--currency", "USD"]);
    api.site.ok(&["balance", "topup", "alice", "7.00"]);

    // The catalogue: a monthly 100 minutes to Poland, a plan in USD.
    let (s, body) = api
        .admin_json(
            Method::PUT,
            "/plans/pl-100",
            Some(
                json!({"description": "100 minutes to Poland", "price": "5.00",
                "currency": "eur", "minutes": 100, "prefixes": ["48"],
                "validity_days": 30, "recurring": true}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        (
            body["price_micro"].as_i64(),
            body["seconds"].as_i64(),
            body["currency"].as_str()
        ),
        (Some(5_000_000), Some(6_000), Some("EUR"))
    );
    let (s, _) = api
        .admin_json(
            Method::PUT,
            "/plans/us-60",
            Some(json!({"price": "1.00", "currency": "USD", "minutes": 60})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for (path, body, code) in [
        (
            "/plans/mine",
            json!({"price": "1.00", "currency": "EUR", "minutes": 1}),
            "invalid-plan",
        ),
        (
            "/plans/x",
            json!({"price": "1.00", "currency": "EUR", "minutes": 0}),
            "invalid-plan",
        ),
        (
            "/plans/x",
            json!({"price": "1.00", "currency": "EUR", "minutes": 1, "prefixes": ["+48"]}),
            "invalid-plan",
        ),
        (
            "/plans/x",
            json!({"price": "1.00", "currency": "EUR", "minutes": 1, "recurring": true}),
            "invalid-plan",
        ),
        (
            "/plans/x",
            json!({"price": "0", "currency": "EUR", "minutes": 1}),
            "invalid-amount",
        ),
        (
            "/plans/x",
            json!({"price": "1.00", "currency": "XYZ", "minutes": 1}),
            "unknown-currency",
        ),
        (
            "/plans/x",
            json!({"price": "1.00", "currency": "EUR"}),
            "invalid-request",
        ),
    ] {
        let (s, answer) = api.admin_json(Method::PUT, path, Some(body)).await;
        assert_eq!(
            (s, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{answer}"
        );
    }
    let (s, list) = api.admin_json(Method::GET, "/plans", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // alice sees the EUR plan only, buys it once.
    let (s, plans) = api.call(&alice, Method::GET, "/v1/plans", None).await;
    assert_eq!(s, StatusCode::OK, "{plans}");
    assert_eq!(plans["for_sale"].as_array().unwrap().len(), 1, "{plans}");
    assert_eq!(plans["for_sale"][0]["name"], "pl-100");
    assert_eq!(plans["mine"], json!([]));
    let (s, bought) = api
        .call(&alice, Method::POST, "/v1/plans/pl-100/buy", None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{bought}");
    assert_eq!(bought["balance"], "2.00");
    assert_eq!(
        (
            bought["plan"]["seconds_left"].as_i64(),
            bought["plan"]["status"].as_str()
        ),
        (Some(6_000), Some("active"))
    );
    let id = bought["plan"]["id"].as_i64().unwrap();
    for (token, path, status, code) in [
        (
            &alice,
            "/v1/plans/pl-100/buy",
            StatusCode::CONFLICT,
            "plan-active",
        ),
        (
            &alice,
            "/v1/plans/nope/buy",
            StatusCode::NOT_FOUND,
            "unknown-plan",
        ),
        (
            &alice,
            "/v1/plans/us-60/buy",
            StatusCode::CONFLICT,
            "currency-mismatch",
        ),
        (
            &carol,
            "/v1/plans/us-60/buy",
            StatusCode::PAYMENT_REQUIRED,
            "insufficient-funds",
        ),
    ] {
        let (s, answer) = api.call(token, Method::POST, path, None).await;
        assert_eq!(
            (s, answer["code"].as_str()),
            (status, Some(code)),
            "{path}: {answer}"
        );
    }
    let (_, plans) = api.call(&alice, Method::GET, "/v1/plans", None).await;
    assert_eq!(plans["balance_micro"], 2_000_000);
    assert_eq!(plans["mine"][0]["id"], id, "{plans}");
    assert_eq!(plans["mine"][0]["prefixes"], json!(["48"]));
    let (_, ledger) = api.call(&alice, Method::GET, "/v1/balance", None).await;
    assert_eq!(
        (
            ledger["ledger"][0]["kind"].as_str(),
            ledger["ledger"][0]["amount"].as_str()
        ),
        (Some("plan"), Some("-5.00"))
    );
    let (sum, balance) = ledger_sum_and_balance(&api, "alice").await;
    assert_eq!(sum, balance);

    // Ending it: first the renewal stops, then the plan; another user's id
    // and nonsense are not found.
    let mine = format!("/v1/plans/mine/{id}");
    let (s, ended) = api.call(&alice, Method::DELETE, &mine, None).await;
    assert_eq!(s, StatusCode::OK, "{ended}");
    assert_eq!(
        (ended["recurring"].as_bool(), ended["status"].as_str()),
        (Some(false), Some("active"))
    );
    let (s, answer) = api.call(&carol, Method::DELETE, &mine, None).await;
    assert_eq!(
        (s, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );
    let (s, _) = api
        .call(&alice, Method::DELETE, "/v1/plans/mine/x", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, ended) = api.call(&alice, Method::DELETE, &mine, None).await;
    assert_eq!(ended["status"], "cancelled");

    // Withdrawn: gone from the catalogue.
    let (s, _) = api.admin_json(Method::DELETE, "/plans/pl-100", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, answer) = api.admin_json(Method::GET, "/plans/pl-100", None).await;
    assert_eq!(
        (s, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown-plan"))
    );
    let (s, _) = api.get("/v1/plans").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
