//! The self-care portal and its web communicator (issue 20), from outside:
//! the built binary serving the built portal (`scripts/build-portal.sh`)
//! over HTTPS, headless Chromium signing in, registering over WSS with
//! JsSIP, chatting with a SIPp phone, two Chromium browsers calling each
//! other through the switch with media flowing both ways, and a browser
//! calling a baresip phone through the WebRTC gateway. Screenshots of the
//! main pages go to `target/portal-screenshots/` (the path is printed).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::browser::{ChromeDriver, MEDIA_FLAGS, page_text};
use support::sipp::*;
use support::*;

/// The portal as `scripts/build-portal.sh` builds it (the README's test
/// command runs it first).
fn portal_dist() -> PathBuf {
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../portal/dist");
    for file in ["index.html", "js/main.js", "vendor/jssip.js"] {
        assert!(
            dist.join(file).is_file(),
            "{} is missing: run scripts/build-portal.sh (the README's test command does)",
            dist.join(file).display()
        );
    }
    dist
}

/// A free loopback port a browser may connect to: Chromium refuses a list
/// of "unsafe" ports (SIP's 5060 and 5061 among them); of those, only
/// 10080 is in the range `free_port` draws from.
fn browser_port() -> u16 {
    loop {
        let port = free_port();
        if port != 10080 {
            return port;
        }
    }
}

/// A switch with the client API (and so the portal) on `api` and SIP over
/// WSS on `wss`, only the portal's own origin allowed to open WebSockets.
struct PortalSwitch {
    switch: Switch,
    base: String,
    wss: u16,
}

impl PortalSwitch {
    async fn start(dir: &Path) -> PortalSwitch {
        PortalSwitch::start_with(dir, "").await
    }

    /// With `extra` configuration (tables of its own).
    async fn start_with(dir: &Path, extra: &str) -> PortalSwitch {
        let (api, wss) = (browser_port(), browser_port());
        let (switch, base) = Switch::start_with_api_on(
            api,
            &format!("wss = [\"127.0.0.1:{wss}\"]\nws_origins = [\"https://127.0.0.1:{api}\"]\n"),
            &format!("\n[portal]\ndir = \"{}\"\n{extra}", dir.display()),
        )
        .await;
        PortalSwitch { switch, base, wss }
    }

    /// An account `login` with SIP password `<login>-sip-pw`, username
    /// `login` and access password `<login>-web-pw`.
    fn user(&self, login: &str, display_name: &str) {
        self.switch.site.ok(&[
            "account",
            "add",
            login,
            "--password",
            &format!("{login}-sip-pw"),
            "--username",
            login,
            "--display-name",
            display_name,
            "--access-password",
            &format!("{login}-web-pw"),
        ]);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// One HTTP/1.1 request sent as written (no URL normalisation, unlike any
/// HTTP client library) over TLS to the API listener of `base`: status,
/// headers (names lower-cased) and body.
async fn raw_get(switch: &Switch, base: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let connector = trusting_connector(&switch.site);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {path}: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The security headers every portal answer must carry.
fn assert_security_headers(what: &str, headers: &reqwest::header::HeaderMap, wss: u16) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name} header: {headers:?}"))
            .to_string()
    };
    let csp = get("content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self';",
        "style-src 'self';",
        &format!("connect-src 'self' wss://127.0.0.1:{wss};"),
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{what}: CSP without {part:?}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-"),
        "{what}: CSP allows unsafe-*: {csp}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_is_served_with_security_headers_and_nothing_outside_its_folder() {
    // A copy of the built portal beside a secret, with a link inside that
    // leads out, a hidden file and a file of a type the portal never has.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("portal");
    copy_tree(&portal_dist(), &dir);
    std::fs::write(tmp.path().join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink("../secret.txt", dir.join("leak.txt")).unwrap();
    std::fs::write(dir.join(".hidden.txt"), "top secret").unwrap();
    std::fs::write(dir.join("build.sh"), "top secret").unwrap();
    let portal = PortalSwitch::start(&dir).await;
    let client = api_client();

    // /portal goes to /portal/, which is the page: no inline script.
    let r = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(portal.url("/portal"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/portal/");
    let r = client.get(portal.url("/portal/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_security_headers("index", r.headers(), portal.wss);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let page = r.text().await.unwrap();
    assert!(
        page.contains(r#"<script type="module" src="js/main.js"></script>"#),
        "{page}"
    );
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script type=\"module\" src=").count(),
        "every script is a file"
    );
    for id in [
        "login-id",
        "login-password",
        "login-submit",
        "call-target",
        "call-button",
        "hangup-button",
        "answer-button",
        "call-status",
        "chat-to",
        "chat-text",
        "chat-send",
        "chat-log",
        "dtmf-5",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "no #{id}");
    }
    // Unchanged: 304, still with the headers.
    let r = client
        .get(portal.url("/portal/"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_security_headers("304", r.headers(), portal.wss);

    // Each file type with its content type; JsSIP bundled from npm.
    for (path, content_type, needle) in [
        (
            "/portal/js/main.js",
            "text/javascript; charset=utf-8",
            "import",
        ),
        (
            "/portal/portal.css",
            "text/css; charset=utf-8",
            "#call-status",
        ),
        (
            "/portal/vendor/jssip.js",
            "text/javascript; charset=utf-8",
            "JsSIP",
        ),
        ("/portal/icon.svg", "image/svg+xml", "<svg"),
        (
            "/portal/vendor/jssip-LICENSE.txt",
            "text/plain; charset=utf-8",
            "MIT",
        ),
    ] {
        let r = client.get(portal.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_security_headers(path, r.headers(), portal.wss);
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }

    // Where the communicator registers: the page's host, the WSS port.
    let r = client
        .get(portal.url("/portal/config.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let config: Value = r.json().await.unwrap();
    assert_eq!(
        config,
        json!({ "wss_url": format!("wss://127.0.0.1:{}", portal.wss), "sip_domain": "localhost" })
    );
    let by_name: Value = client
        .get(
            portal
                .url("/portal/config.json")
                .replace("127.0.0.1", "localhost"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        by_name["wss_url"],
        format!("wss://localhost:{}", portal.wss)
    );

    // Not found, not served, not allowed: with the headers too.
    for (path, status) in [
        ("/portal/nothing.html", 404),
        ("/portal/js/nothing.js", 404),
        ("/portal/js", 404),
        ("/portal/build.sh", 404),
        ("/portal/leak.txt", 404),
        ("/portal/.hidden.txt", 400),
    ] {
        let r = client.get(portal.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_security_headers(path, r.headers(), portal.wss);
        assert!(!r.text().await.unwrap().contains("top secret"), "{path}");
    }
    let r = client.post(portal.url("/portal/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");

    // Traversal, sent byte for byte as written.
    let secret = tmp.path().join("secret.txt");
    let absolute = format!("/portal/{}", secret.display());
    for path in [
        "/portal/../secret.txt",
        "/portal/js/../../secret.txt",
        "/portal/%2e%2e/secret.txt",
        "/portal/%2E%2E%2Fsecret.txt",
        "/portal/..%2fsecret.txt",
        "/portal/js/..%2f..%2fsecret.txt",
        "/portal/..%5csecret.txt",
        "/portal/%252e%252e/secret.txt",
        "/portal/%c0%ae%c0%ae/secret.txt",
        "/portal/index.html%00.txt",
        absolute.as_str(),
    ] {
        let (status, headers, body) = raw_get(&portal.switch, &portal.base, path).await;
        assert!(status == 400 || status == 404, "{path}: {status}\n{body}");
        assert!(!body.contains("top secret"), "{path} leaked the secret");
        assert!(
            header(&headers, "content-security-policy").is_some() || !path.starts_with("/portal/"),
            "{path}: no CSP"
        );
    }

    // The API beside it is untouched: its document and its JSON 404.
    let r = client
        .get(portal.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-security-policy").is_none());
    let r = client.get(portal.url("/portalx")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not-found");
}

// The browser side.

/// Where the screenshots go: `target/portal-screenshots/`, never the
/// source tree.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("portal-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

/// `textContent` of `#id` (hidden elements too, unlike WebDriver's text).
async fn text(browser: &Client, id: &str) -> String {
    browser
        .execute(
            "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
            vec![json!(id)],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_else(|| panic!("no #{id} in the page"))
        .to_string()
}

/// What a failure message shows of a page: its text, the communicator's
/// state, the SDP it sent and got, its media counters.
async fn page_state(browser: &Client) -> String {
    let state = browser
        .execute(
            "const c = window.communicator; return c ? c.mediaStats().then(s => ({ \
               registration: c.registration, status: c.status, stats: s, \
               sdp: c.sdp, info: document.getElementById('call-info').textContent, \
               sipInfo: document.getElementById('sip-info').textContent })) : 'no communicator';",
            vec![],
        )
        .await
        .map(|v| serde_json::to_string_pretty(&v).unwrap())
        .unwrap_or_else(|e| e.to_string());
    format!("{state}\npage text:\n{}", page_text(browser).await)
}

/// Waits (up to `secs`) until `#id`'s text satisfies `ok`.
async fn wait_text(
    browser: &Client,
    id: &str,
    secs: u64,
    ok: impl Fn(&str) -> bool,
    switch: &Switch,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let now = text(browser, id).await;
        if ok(&now) {
            return now;
        }
        if Instant::now() > deadline {
            panic!(
                "#{id} stuck at {now:?} after {secs} s\n{}\nswitch log (tail):\n{}",
                page_state(browser).await,
                tail(&switch.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn fill(browser: &Client, id: &str, value: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn click(browser: &Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("#{id} not clickable: {e}"));
}

/// Chooses `value` in the `<select>` `#id`.
async fn select(browser: &Client, id: &str, value: &str) {
    browser
        .execute(
            "document.getElementById(arguments[0]).value = arguments[1];",
            vec![json!(id), json!(value)],
        )
        .await
        .unwrap();
}

/// Opens the portal and waits until its script has wired the page.
async fn open_portal(browser: &Client, portal: &PortalSwitch) {
    browser.goto(&portal.url("/portal/")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = browser
            .execute(
                "return document.body && document.body.dataset.ready === 'true';",
                vec![],
            )
            .await
            .unwrap();
        if ready == json!(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the portal's script never ran:\n{}",
            page_text(browser).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs `login` in (access password `<login>-web-pw`) and waits until its
/// communicator is registered over WSS.
async fn sign_in(browser: &Client, portal: &PortalSwitch, login: &str) {
    open_portal(browser, portal).await;
    fill(browser, "login-id", login).await;
    fill(browser, "login-password", &format!("{login}-web-pw")).await;
    click(browser, "login-submit").await;
    wait_text(
        browser,
        "sip-status",
        20,
        |s| s == "registered",
        &portal.switch,
    )
    .await;
}

async fn media_stats(browser: &Client) -> Value {
    browser
        .execute("return window.communicator.mediaStats();", vec![])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_signs_in_registers_over_wss_and_chats_with_a_sipp_phone() {
    let portal = PortalSwitch::start(&portal_dist()).await;
    portal.user("ann", "Ann");
    portal.user("ben", "Ben");
    let driver = ChromeDriver::start().await;
    let browser = driver.browser_with(MEDIA_FLAGS).await;

    // A wrong password is refused on the page.
    open_portal(&browser, &portal).await;
    screenshot(&browser, "sign-in").await;
    fill(&browser, "login-id", "ann").await;
    fill(&browser, "login-password", "not-her-password").await;
    click(&browser, "login-submit").await;
    let refused = wait_text(
        &browser,
        "login-error",
        10,
        |s| !s.is_empty(),
        &portal.switch,
    )
    .await;
    assert!(refused.contains("bad-credentials"), "{refused}");

    // The right one: the communicator registers over WSS (the switch sees
    // the binding, from the portal's origin, which ws_origins allows).
    sign_in(&browser, &portal, "ann").await;
    portal.switch.wait_registered(1).await;
    assert_eq!(text(&browser, "whoami").await, "ann");
    assert_eq!(text(&browser, "call-status").await, "idle");

    // Nothing of the sign-in is kept where it outlives the tab or where
    // another page could read it.
    let kept = browser
        .execute(
            "return JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookies: document.cookie });",
            vec![],
        )
        .await
        .unwrap();
    let kept = kept.as_str().unwrap();
    assert!(!kept.contains("ann-sip-pw"), "SIP password stored: {kept}");
    assert!(
        !kept.contains("ann-web-pw"),
        "access password stored: {kept}"
    );
    assert!(
        !kept.contains("token") && !kept.contains('.'),
        "something stored: {kept}"
    );

    // ann writes to ben, who has no device: the switch keeps it (202).
    fill(&browser, "chat-to", "ben").await;
    fill(&browser, "chat-text", "hello ben, from the portal").await;
    click(&browser, "chat-send").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = browser
            .execute(
                "const m = document.querySelector('#chat-log li:last-child'); return m && m.dataset.status;",
                vec![],
            )
            .await
            .unwrap();
        if status == json!("stored") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the message to ben is {status}\n{}",
            page_state(&browser).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = portal.switch.site.ok(&["message", "list", "--to", "ben"]);
    assert!(stored.contains("hello ben, from the portal"), "{stored}");

    // ben, a SIPp phone on UDP, writes to ann: her page shows it, and her
    // browser's 200 reaches him.
    let users = portal.switch.users("ben.csv", "ben", "ben-sip-pw");
    // SIPp runs to its end meanwhile (JsSIP answers by itself).
    let (sent, trace) = tokio::task::block_in_place(|| portal.switch.message(&users, "ann", 200));
    assert!(
        sent,
        "ben's MESSAGE did not get ann's 200: {trace}\n{}",
        tail(&portal.switch.log(), 40)
    );
    wait_text(
        &browser,
        "chat-log",
        10,
        |s| s.contains("hello from sipp-bench"),
        &portal.switch,
    )
    .await;
    let direction = browser
        .execute(
            "return document.querySelector('#chat-log li:last-child').dataset.direction;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(direction, json!("received"));
    screenshot(&browser, "chat").await;

    // The access password changes on the profile page; the new one signs in.
    click(&browser, "nav-profile").await;
    wait_text(
        &browser,
        "profile-login",
        10,
        |s| s == "ann",
        &portal.switch,
    )
    .await;
    fill(&browser, "password-old", "ann-web-pw").await;
    fill(&browser, "password-new", "ann-new-web-pw").await;
    fill(&browser, "password-new2", "ann-new-web-pw").await;
    click(&browser, "password-submit").await;
    wait_text(
        &browser,
        "password-result",
        10,
        |s| s == "password changed",
        &portal.switch,
    )
    .await;
    api_token(&api_client(), &portal.base, "ann", "ann-new-web-pw").await;

    // Signing out unregisters: the switch has no binding left.
    click(&browser, "logout-button").await;
    portal
        .switch
        .wait_metric("softswitch_sip_registered_accounts", |v| v == 0)
        .await;
    browser.close().await.unwrap();
}

/// `caller` calls `target`, whose page (`callee`) rings and answers; waits
/// until audio flows both ways and keeps flowing, and is not silence.
/// Returns both sides' last `mediaStats()`. With `screenshot_ringing`, the
/// callee's ringing page is saved under that name.
async fn call(
    caller: &Client,
    callee: &Client,
    target: &str,
    switch: &Switch,
    screenshot_ringing: Option<&str>,
) -> (Value, Value) {
    fill(caller, "call-target", target).await;
    click(caller, "call-button").await;
    wait_text(callee, "call-status", 20, |s| s == "ringing", switch).await;
    assert_eq!(text(caller, "call-status").await, "calling");
    if let Some(name) = screenshot_ringing {
        screenshot(callee, name).await;
    }
    click(callee, "answer-button").await;
    wait_text(callee, "call-status", 20, |s| s == "in-call", switch).await;
    wait_text(caller, "call-status", 20, |s| s == "in-call", switch).await;

    // Opus sends 50 packets a second: each side receives, and keeps
    // receiving.
    let flowing = |s: &Value| {
        s["packetsReceived"].as_u64().unwrap_or(0) >= 50
            && s["packetsSent"].as_u64().unwrap_or(0) >= 50
            && s["bytesReceived"].as_u64().unwrap_or(0) > 0
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let (a, b) = (media_stats(caller).await, media_stats(callee).await);
        if flowing(&a) && flowing(&b) {
            break [a, b];
        }
        if Instant::now() > deadline {
            panic!(
                "media did not flow both ways within 30 s\ncaller: {}\ncallee: {}\nswitch log (tail):\n{}",
                page_state(caller).await,
                page_state(callee).await,
                tail(&switch.log(), 60)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut loudest = [0f64; 2];
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (i, browser) in [caller, callee].into_iter().enumerate() {
            let level = media_stats(browser).await["audioLevel"]
                .as_f64()
                .unwrap_or(0.0);
            loudest[i] = loudest[i].max(level);
        }
    }
    let later = [media_stats(caller).await, media_stats(callee).await];
    for (i, who) in ["caller", "callee"].into_iter().enumerate() {
        println!("{who} of the call to {target}: {}", later[i]);
        assert!(
            later[i]["packetsReceived"].as_u64() > first[i]["packetsReceived"].as_u64(),
            "the {who} stopped receiving: {} then {}",
            first[i],
            later[i]
        );
        // Chromium's fake microphone beeps: what arrives is not silence.
        assert!(
            loudest[i] > 0.0,
            "only silence reached the {who}: {}",
            later[i]
        );
    }
    let [a, b] = later;
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_chromium_browsers_call_each_other_through_the_switch_over_wss() {
    let portal = PortalSwitch::start(&portal_dist()).await;
    portal.user("ann", "Ann");
    portal.user("ben", "Ben");
    let driver = ChromeDriver::start().await;
    let (ann, ben) = tokio::join!(
        driver.browser_with(MEDIA_FLAGS),
        driver.browser_with(MEDIA_FLAGS)
    );
    tokio::join!(sign_in(&ann, &portal, "ann"), sign_in(&ben, &portal, "ben"));
    portal.switch.wait_registered(2).await;
    let switch = &portal.switch;

    // Voicemail settings first (the switch caches a user's answering rules
    // for a few seconds, so the rule is in place before any call to ann):
    // alice goes straight to voicemail.
    click(&ann, "nav-voicemail").await;
    wait_text(
        &ann,
        "voicemail-counts",
        10,
        |s| s == "0 new, 0 heard",
        switch,
    )
    .await;
    fill(&ann, "rule-caller", "alice").await;
    select(&ann, "rule-action", "voicemail").await;
    click(&ann, "rule-save").await;
    wait_text(
        &ann,
        "rules-list",
        10,
        |s| s.contains("alice") && s.contains("straight to voicemail"),
        switch,
    )
    .await;
    click(&ann, "nav-communicator").await;

    // ann calls ben with media forced through the switch's relay (each
    // browser drops the other's own candidates from the SDP it gets).
    for browser in [&ann, &ben] {
        browser
            .execute("window.communicator.forceRelay = true;", vec![])
            .await
            .unwrap();
    }
    let (ann_stats, ben_stats) =
        call(&ann, &ben, "ben", switch, Some("communicator-ringing")).await;
    // The relay's ports: those of the relay candidates the switch wrote
    // into each side's SDP. Each browser's selected candidate pair must use
    // one of them (as the remote candidate, or as the peer-reflexive local
    // one the relay's forwarding makes it learn).
    let mut relay_ports = Vec::new();
    for browser in [&ann, &ben] {
        let sdp = browser
            .execute("return window.communicator.sdp.remote;", vec![])
            .await
            .unwrap();
        for line in sdp.as_str().unwrap_or("").lines() {
            if line.starts_with("a=candidate:") && line.contains(" typ relay") {
                let fields: Vec<&str> = line.split(' ').collect();
                relay_ports.push(format!(":{}", fields[5]));
            }
        }
    }
    assert!(
        !relay_ports.is_empty(),
        "the switch added no relay candidate"
    );
    for (who, stats) in [("ann", &ann_stats), ("ben", &ben_stats)] {
        let pair = format!("{} {}", stats["localCandidate"], stats["remoteCandidate"]);
        assert!(
            relay_ports.iter().any(|p| pair.contains(&format!("{p}\""))),
            "{who}'s media does not go through the relay (ports {relay_ports:?}): {stats}"
        );
    }
    screenshot(&ann, "communicator-in-call").await;

    // DTMF: as SIP INFO, which the switch relays in the dialog (ben's page
    // shows it), then as RFC 4733 events in the media.
    select(&ann, "dtmf-mode", "info").await;
    click(&ann, "dtmf-5").await;
    wait_text(&ben, "dtmf-received", 10, |s| s == "5", switch).await;
    select(&ann, "dtmf-mode", "rfc4733").await;
    click(&ann, "dtmf-1").await;
    click(&ann, "dtmf-hash").await;
    wait_text(&ann, "dtmf-sent", 5, |s| s == "51#", switch).await;

    // Chat while talking, browser to browser.
    fill(&ben, "chat-to", "ann").await;
    fill(&ben, "chat-text", "hi ann, from ben's browser").await;
    click(&ben, "chat-send").await;
    wait_text(
        &ann,
        "chat-log",
        15,
        |s| s.contains("hi ann, from ben's browser"),
        switch,
    )
    .await;

    // ben hangs up; both pages say so; the switch wrote the call record.
    click(&ben, "hangup-button").await;
    wait_text(&ben, "call-status", 10, |s| s == "ended", switch).await;
    wait_text(&ann, "call-status", 10, |s| s == "ended", switch).await;
    let records = wait_cdrs(switch, "ann", 1).await;
    assert!(records[0].contains("ben"), "{records:?}");

    // ben calls ann back, on whatever path the browsers choose (here their
    // own host candidates: they share a machine); ann hangs up.
    for browser in [&ann, &ben] {
        browser
            .execute("window.communicator.forceRelay = false;", vec![])
            .await
            .unwrap();
    }
    call(&ben, &ann, "ann", switch, None).await;
    click(&ann, "hangup-button").await;
    wait_text(&ann, "call-status", 10, |s| s == "ended", switch).await;
    wait_text(&ben, "call-status", 10, |s| s == "ended", switch).await;
    wait_cdrs(switch, "ann", 2).await;

    // The account pages, each shown once with something in it.
    click(&ann, "nav-history").await;
    wait_text(&ann, "calls-list", 10, |s| s.contains("ben"), switch).await;
    screenshot(&ann, "history").await;

    click(&ann, "nav-contacts").await;
    wait_text(
        &ann,
        "contacts-result",
        10,
        |s| !s.contains("loading"),
        switch,
    )
    .await;
    fill(&ann, "search-text", "ben").await;
    click(&ann, "search-button").await;
    wait_text(&ann, "search-results", 10, |s| s.contains("ben"), switch).await;
    screenshot(&ann, "contacts").await;

    // alice (SIPp) leaves ann a message (her rule sends alice straight to
    // voicemail), which ann's page lists and plays (fetched with the
    // token, played from memory), and which is heard after.
    // SIPp runs to its end (a few seconds): the runtime's other threads
    // keep the test's tasks going meanwhile.
    let (left, trace) = tokio::task::block_in_place(|| leave_voicemail(switch, "ann", 1500, 440.0));
    assert!(
        left,
        "alice could not leave ann a voicemail: {trace}\n{}",
        tail(&switch.log(), 40)
    );
    click(&ann, "nav-history").await;
    click(&ann, "nav-voicemail").await;
    wait_text(
        &ann,
        "voicemail-counts",
        15,
        |s| s == "1 new, 0 heard",
        switch,
    )
    .await;
    assert!(text(&ann, "voicemail-list").await.contains("alice"));
    ann.execute(
        "document.querySelector('#voicemail-list button[id^=voicemail-play-]').click();",
        vec![],
    )
    .await
    .unwrap();
    wait_text(
        &ann,
        "voicemail-counts",
        10,
        |s| s == "0 new, 1 heard",
        switch,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let duration = ann
            .execute(
                "return document.getElementById('voicemail-audio').duration || 0;",
                vec![],
            )
            .await
            .unwrap();
        // The tone lasted 1.5 s; the recording about as long.
        if duration.as_f64().unwrap_or(0.0) > 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the recording did not load in the player: duration {duration}\n{}",
            page_state(&ann).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(&ann, "voicemail").await;

    let pin = switch.site.ok(&[
        "voucher",
        "create",
        "--count",
        "1",
        "--value",
        "5.00",
        "--currency",
        "USD",
    ]);
    let pin = pin.lines().last().unwrap().trim().to_string();
    click(&ann, "nav-balance").await;
    wait_text(&ann, "balance-amount", 10, |s| s.contains("USD"), switch).await;
    fill(&ann, "voucher-pin", &pin).await;
    click(&ann, "voucher-submit").await;
    let result = wait_text(&ann, "voucher-result", 10, |s| !s.is_empty(), switch).await;
    assert!(result.contains("+5.00 USD"), "{result}");
    wait_text(&ann, "balance-amount", 10, |s| s == "5.00 USD", switch).await;
    screenshot(&ann, "balance").await;

    click(&ann, "nav-profile").await;
    wait_text(&ann, "profile-login", 10, |s| s == "ann", switch).await;
    fill(&ann, "profile-city", "Gdańsk").await;
    click(&ann, "profile-save").await;
    wait_text(&ann, "profile-result", 10, |s| s == "saved", switch).await;
    screenshot(&ann, "profile").await;
    let client = api_client();
    let token = api_token(&client, &portal.base, "ann", "ann-web-pw").await;
    let profile: Value = client
        .get(portal.url("/v1/profile"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(profile["city"], "Gdańsk");
    println!("screenshots in {}", screenshots().display());

    ann.close().await.unwrap();
    ben.close().await.unwrap();
}

/// Root mean square of 16-bit PCM samples of a WAV file (its `data` chunk).
fn wav_rms(wav: &[u8]) -> f64 {
    let data = wav
        .windows(4)
        .position(|w| w == b"data")
        .map(|at| &wav[at + 8..])
        .unwrap_or(&[]);
    let samples: Vec<f64> = data
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt()
}

/// A portal switch (with `extra` configuration), and ann signed in on it
/// in a Chromium with fake audio devices (keep the driver alive).
async fn ann_signed_in(extra: &str) -> (PortalSwitch, ChromeDriver, Client) {
    let portal = PortalSwitch::start_with(&portal_dist(), extra).await;
    portal.user("ann", "Ann");
    let driver = ChromeDriver::start().await;
    let ann = driver.browser_with(MEDIA_FLAGS).await;
    sign_in(&ann, &portal, "ann").await;
    (portal, driver, ann)
}

/// A baresip `login` over TLS with plain G.711 (its microphone a 440 Hz
/// sine), whose decoded audio `sndfile` writes as WAV files into the
/// folder returned; `contact` becomes its current contact (`/message`).
fn baresip_recording(
    switch: &Switch,
    login: &str,
    account_params: &str,
    contact: Option<&str>,
    commands: &[&str],
) -> (Baresip, PathBuf) {
    let dir = switch.site.path(&format!("baresip-{login}"));
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(contact) = contact {
        std::fs::write(dir.join("contacts"), format!("<{contact}>\n")).unwrap();
        std::fs::write(dir.join("current_contact"), contact).unwrap();
    }
    let heard = switch.site.path(&format!("{login}-heard"));
    std::fs::create_dir_all(&heard).unwrap();
    let extra = format!("snd_path {}\n", heard.display());
    let phone = Baresip::start_opts(
        switch,
        login,
        &format!("{login}-pw"),
        &BaresipOptions {
            account_params,
            modules: &["sndfile"],
            extra_config: &extra,
            commands,
            ..BaresipOptions::default()
        },
    );
    (phone, heard)
}

/// Waits (30 s at most) until the browser's call carries audio both ways:
/// 100 packets sent and received, and sound heard.
async fn wait_audio_both_ways(browser: &Client, switch: &Switch) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut loudest = 0f64;
    loop {
        let s = media_stats(browser).await;
        loudest = loudest.max(s["audioLevel"].as_f64().unwrap_or(0.0));
        let flowing = s["packetsReceived"].as_u64().unwrap_or(0) >= 100
            && s["packetsSent"].as_u64().unwrap_or(0) >= 100;
        if flowing && loudest > 0.01 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no audio both ways within 30 s (loudest {loudest})\nbrowser: {}\nswitch log (tail):\n{}",
            page_state(browser).await,
            tail(&switch.log(), 60)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The switch logged a call bridged by the gateway, with every one of `marks`.
fn assert_bridged(switch: &Switch, marks: &[&str]) {
    let log = switch.log();
    assert!(
        log.lines()
            .any(|l| l.contains("call is bridged") && marks.iter().all(|m| l.contains(m))),
        "no bridged call with {marks:?}:\n{}",
        tail(&log, 40)
    );
}

/// What baresip heard (the WAV `sndfile` wrote into `heard`) is not silence.
async fn assert_baresip_heard_sound(heard: &Path) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dumps: Vec<PathBuf> = std::fs::read_dir(heard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let decoded = dumps
        .iter()
        .find(|p| p.to_string_lossy().contains("dec"))
        .unwrap_or_else(|| panic!("baresip wrote no decoded audio: {dumps:?}"));
    let rms = wav_rms(&std::fs::read(decoded).unwrap());
    println!("baresip heard RMS {rms:.0} ({})", decoded.display());
    assert!(
        rms > 100.0,
        "baresip heard silence (RMS {rms}) in {}",
        decoded.display()
    );
}

/// With `browser_codec = "opus"` the gateway transcodes: Opus over
/// DTLS-SRTP to the browser, G.711 to baresip.
#[tokio::test(flavor = "multi_thread")]
async fn chromium_calls_a_baresip_phone_through_the_webrtc_gateway() {
    let portal =
        PortalSwitch::start_with(&portal_dist(), "\n[media]\nbrowser_codec = \"opus\"\n").await;
    portal.user("ann", "Ann");
    let switch = &portal.switch;
    // carol answers by herself.
    let (_carol, heard) = baresip_recording(switch, "carol", ";answermode=auto", None, &[]);
    switch.wait_registered(1).await;
    let driver = ChromeDriver::start().await;
    let ann = driver.browser_with(MEDIA_FLAGS).await;
    sign_in(&ann, &portal, "ann").await;
    switch.wait_registered(2).await;

    fill(&ann, "call-target", "carol").await;
    click(&ann, "call-button").await;
    wait_text(&ann, "call-status", 20, |s| s == "in-call", switch).await;
    let stats = wait_audio_both_ways(&ann, switch).await;
    println!("ann calling carol (baresip): {stats}");
    assert_bridged(switch, &["codec=opus", "caller_browser=true"]);
    screenshot(&ann, "communicator-to-baresip").await;
    click(&ann, "hangup-button").await;
    wait_text(&ann, "call-status", 10, |s| s == "ended", switch).await;
    let records = wait_cdrs(switch, "ann", 1).await;
    assert!(records[0].contains("carol"), "{records:?}");
    // What baresip heard: the browser's fake microphone, not silence.
    assert_baresip_heard_sound(&heard).await;
    ann.close().await.unwrap();
}

/// The other way: a baresip phone (plain G.711) calls a user whose only
/// device is a browser, so the switch offers the browser WebRTC from its
/// gateway; the browser answers and each hears the other. Then they chat:
/// baresip's MESSAGE shows in the page, the page's reaches baresip.
#[tokio::test(flavor = "multi_thread")]
async fn a_baresip_phone_calls_chromium_through_the_gateway_and_they_chat() {
    let (portal, _driver, ann) = ann_signed_in("").await;
    let switch = &portal.switch;
    switch.wait_registered(1).await;

    // carol's baresip: ann is its current contact (for /message); it
    // dials her as soon as it is up.
    let (carol, heard) = baresip_recording(
        switch,
        "carol",
        "",
        Some("sip:ann@localhost"),
        &["/dial ann", "/message hello from carol"],
    );
    wait_text(&ann, "call-status", 20, |s| s == "ringing", switch).await;
    click(&ann, "answer-button").await;
    wait_text(&ann, "call-status", 20, |s| s == "in-call", switch).await;
    let stats = wait_audio_both_ways(&ann, switch).await;
    println!("carol (baresip) calling ann: {stats}");
    assert_bridged(switch, &["callee_browser=true"]);
    // The gateway's RTCP reports reach the browser, which takes its round
    // trip time from them (they come every 5 s or so).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = media_stats(&ann).await;
        if s["remoteReports"].as_u64().unwrap_or(0) >= 1 {
            println!("round trip the browser measured: {} s", s["roundTripTime"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no RTCP report from the gateway reached the browser in 15 s: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    screenshot(&ann, "communicator-from-baresip").await;

    // Chat both ways, the call still up.
    wait_text(
        &ann,
        "chat-log",
        20,
        |s| s.contains("hello from carol"),
        switch,
    )
    .await;
    fill(&ann, "chat-to", "carol").await;
    fill(&ann, "chat-text", "hi carol, ann here").await;
    click(&ann, "chat-send").await;
    // Delivered: baresip took it (200), as the switch's store records.
    switch.wait_delivered("carol", 1).await;
    let to_carol = switch.messages_to("carol");
    assert!(
        to_carol[0].contains("\tdelivered\tann -> carol"),
        "{to_carol:?}"
    );

    click(&ann, "hangup-button").await;
    wait_text(&ann, "call-status", 10, |s| s == "ended", switch).await;
    let records = wait_cdrs(switch, "carol", 1).await;
    assert!(records[0].contains("ann"), "{records:?}");
    assert_baresip_heard_sound(&heard).await;
    carol.quit();
    ann.close().await.unwrap();
}

/// Waits (10 s at most) until `file` (a baresip log) holds `text`.
async fn wait_in_file(file: &Path, text: &str, switch: &Switch) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(file)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "{text:?} never in {}:\n{}\nswitch log (tail):\n{}",
            file.display(),
            std::fs::read_to_string(file).unwrap_or_default(),
            tail(&switch.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A user signed in on the portal with a softphone registered too: a call
/// from a phone rings both, each in what it speaks (the browser WebRTC
/// from the gateway, the softphone the caller's RTP through the relay); the
/// browser answers, talks, and the softphone stops ringing.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_rings_a_users_browser_and_softphone_together_and_the_browser_takes_it() {
    let (portal, _driver, ann) = ann_signed_in("").await;
    let switch = &portal.switch;
    // ann's softphone: rings, never answers by itself.
    let ann_phone = Baresip::start(switch, "ann", "ann-sip-pw");
    let phone_log = switch.site.path("baresip-ann/stdout.log");
    wait_in_file(&phone_log, "200 OK", switch).await;

    let (carol, heard) = baresip_recording(switch, "carol", "", None, &["/dial ann"]);
    wait_text(&ann, "call-status", 20, |s| s == "ringing", switch).await;
    // The softphone rings too: its INVITE went through.
    wait_in_file(&phone_log, "Incoming call", switch).await;
    click(&ann, "answer-button").await;
    wait_text(&ann, "call-status", 20, |s| s == "in-call", switch).await;
    let stats = wait_audio_both_ways(&ann, switch).await;
    println!("carol calling ann's browser and softphone, the browser took it: {stats}");
    assert_bridged(switch, &["callee_browser=true"]);
    click(&ann, "hangup-button").await;
    wait_text(&ann, "call-status", 10, |s| s == "ended", switch).await;
    let records = wait_cdrs(switch, "carol", 1).await;
    assert!(records[0].contains("ann"), "{records:?}");
    assert_baresip_heard_sound(&heard).await;
    carol.quit();
    ann_phone.quit();
    ann.close().await.unwrap();
}

/// The same ringing, the softphone answering first: the browser stops
/// ringing, caller and softphone talk through the relay, and once they
/// hang up no relay port is left bound (the browsers' unused gateway
/// included).
#[tokio::test(flavor = "multi_thread")]
async fn when_the_softphone_answers_first_the_browser_stops_ringing() {
    let (portal, _driver, ann) = ann_signed_in("").await;
    let switch = &portal.switch;
    // ann's softphone answers after a second's ringing.
    let ann_phone = Baresip::start_with(switch, "ann", "ann-sip-pw", ";answermode=auto", &[]);
    let phone_log = switch.site.path("baresip-ann/stdout.log");
    wait_in_file(&phone_log, "200 OK", switch).await;

    let (carol, heard) = baresip_recording(switch, "carol", "", None, &["/dial ann"]);
    wait_in_file(&phone_log, "Call established", switch).await;
    // The browser rang, or was about to: it is not in the call.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = text(&ann, "call-status").await;
    assert!(
        status != "in-call" && status != "ringing",
        "the browser: {status}"
    );
    carol.quit();
    let records = wait_cdrs(switch, "carol", 1).await;
    assert!(records[0].contains("ann"), "{records:?}");
    assert_baresip_heard_sound(&heard).await;
    // Only the winner's media reached the caller: the browsers' side kept
    // quiet (a second sender would have shown as an SSRC change).
    let carol_log = std::fs::read_to_string(switch.site.path("baresip-carol/stdout.log")).unwrap();
    assert!(
        !carol_log.contains("SSRC changed"),
        "the caller heard two senders:\n{carol_log}"
    );
    switch
        .wait_metric("softswitch_media_ports_in_use", |v| v == 0)
        .await;
    ann_phone.quit();
    ann.close().await.unwrap();
}
