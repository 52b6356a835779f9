//! The SIP core seen from outside: SIPp (Debian's sip-tester) as real peers
//! against the built binary on loopback, plus raw datagrams for malformed
//! input.

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sipp")
        .join(name)
}

/// A port free for both UDP and TCP on loopback.
fn free_sip_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A switch with SIP on known ports, accounts alice/bob/carol, running.
struct Switch {
    site: Site,
    running: Option<Running>,
    sip: u16,
    tls: u16,
    admin: u16,
}

impl Switch {
    async fn start(sip_extra: &str) -> Switch {
        let sip = free_sip_port();
        let tls = free_port();
        let admin = free_port();
        let site = Site::with_sip(
            sip,
            tls,
            sip_extra,
            &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
        );
        for (login, password) in [
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("carol", "carol-pw"),
        ] {
            site.ok(&["account", "add", login, "--password", password]);
        }
        let mut switch = Switch {
            site,
            running: None,
            sip,
            tls,
            admin,
        };
        switch.boot().await;
        switch
    }

    async fn boot(&mut self) {
        let mut running = Running::start(&self.site, self.admin);
        running.wait_ready(&reqwest::Client::new()).await;
        self.running = Some(running);
    }

    /// Kills the switch without warning (SIGKILL), as a crash would.
    fn crash(&mut self) {
        if let Some(mut r) = self.running.take() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.sip)
    }

    fn log(&self) -> String {
        self.running.as_ref().map(|r| r.log()).unwrap_or_default()
    }

    /// An injection file for SIPp as the bench kit uses it: field0 = user,
    /// field1 = password, field2 = the auth keyword.
    fn users(&self, name: &str, user: &str, password: &str) -> PathBuf {
        let path = self.site.path(name);
        std::fs::write(
            &path,
            format!("SEQUENTIAL\n{user};{password};[authentication username={user} password={password}]\n"),
        )
        .unwrap();
        path
    }

    /// A copy of a scenario with `from` replaced by `to` (e.g. the expected code).
    fn variant(&self, name: &str, from: &str, to: &str) -> PathBuf {
        let text = std::fs::read_to_string(scenario(name)).unwrap();
        assert!(text.contains(from), "{name} has no {from}");
        let path = self.site.path(&format!("variant-{}-{name}", rand_suffix()));
        std::fs::write(&path, text.replace(from, to)).unwrap();
        path
    }
}

/// One SIPp run to completion; returns (success, message trace).
fn sipp(switch: &Switch, scenario_file: &Path, args: &[&str]) -> (bool, String) {
    let trace = switch.site.path(&format!("sipp-{}.log", rand_suffix()));
    let out = Command::new("sipp")
        .arg(switch.target())
        .arg("-sf")
        .arg(scenario_file)
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
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(&trace)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("sipp (Debian package sip-tester) must be installed: scripts/setup.sh installs it");
    let log = std::fs::read_to_string(&trace).unwrap_or_default();
    (out.status.success(), log)
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A SIPp device process, killed when dropped (also when a test panics).
struct Device(Child);

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A device that registers and stays up answering MESSAGEs for `hold_ms`.
fn device(
    switch: &Switch,
    user: &str,
    password: &str,
    transport: &str,
    hold_ms: u64,
) -> (Device, PathBuf) {
    let users = switch.users(&format!("{user}-dev.csv"), user, password);
    let trace = switch
        .site
        .path(&format!("device-{user}-{}.log", rand_suffix()));
    let child = Command::new("sipp")
        .arg(switch.target())
        .arg("-sf")
        .arg(switch.variant(
            "register_and_hold.xml",
            "<pause milliseconds=\"5000\"/>",
            &format!("<pause milliseconds=\"{hold_ms}\"/>"),
        ))
        .arg("-oocsf")
        .arg(scenario("ooc_answer_message.xml"))
        .arg("-inf")
        .arg(&users)
        .args(["-t", transport, "-key", "domain", "localhost"])
        // One user that registers and holds (and registers again when the hold
        // ends); out-of-call MESSAGEs count as calls for -m, so allow plenty.
        .args(["-users", "1", "-m", "50", "-nostdin"])
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(&trace)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp must be installed");
    (Device(child), trace)
}

impl Switch {
    /// Waits until `n` accounts have a registered device (the admin gauge).
    async fn wait_registered(&self, n: i64) {
        let token = std::fs::read_to_string(self.site.path("data/admin.token")).unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let metrics = client
                .get(format!("http://127.0.0.1:{}/metrics", self.admin))
                .bearer_auth(token.trim())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let count = metrics
                .lines()
                .find(|l| l.starts_with("softswitch_sip_registered_accounts "))
                .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
                .unwrap_or(0);
            if count >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {n} registered accounts:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One authenticated MESSAGE from the account in `users` to `to`, with
    /// SIPp expecting the final answer `expect`; returns (as expected, trace).
    fn message(&self, users: &Path, to: &str, expect: u16) -> (bool, String) {
        let scenario_file = if expect == 200 {
            scenario("uac_message_auth.xml")
        } else {
            self.variant(
                "uac_message_auth.xml",
                "<recv response=\"200\" rtd=\"1\"",
                &format!("<recv response=\"{expect}\" rtd=\"1\""),
            )
        };
        sipp(
            self,
            &scenario_file,
            &["-inf", users.to_str().unwrap(), "-s", to],
        )
    }

    /// `softswitch message list --to LOGIN` lines.
    fn messages_to(&self, login: &str) -> Vec<String> {
        self.site
            .ok(&["message", "list", "--to", login])
            .lines()
            .map(str::to_string)
            .collect()
    }

    async fn wait_delivered(&self, login: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines = self.messages_to(login);
            if lines.iter().filter(|l| l.contains("\tdelivered\t")).count() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "messages to {login} never delivered: {lines:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn stop(device: Device) {
    drop(device);
}

#[tokio::test(flavor = "multi_thread")]
async fn register_with_digest_over_udp_and_tcp_and_refuse_a_wrong_password() {
    let switch = Switch::start("").await;
    let alice = switch.users("alice.csv", "alice", "alice-pw");
    for transport in ["u1", "t1"] {
        let (ok, trace) = sipp(
            &switch,
            &scenario("register_auth.xml"),
            &["-inf", alice.to_str().unwrap(), "-t", transport],
        );
        assert!(
            ok,
            "REGISTER over {transport} failed:\n{trace}\n{}",
            switch.log()
        );
        assert!(trace.contains("algorithm=MD5"), "{trace}");
    }
    let wrong = switch.users("wrong.csv", "alice", "not-the-password");
    let expect_401 = switch.variant(
        "register_auth.xml",
        "<recv response=\"200\" rtd=\"1\"/>",
        "<recv response=\"401\" rtd=\"1\"/>",
    );
    let (ok, trace) = sipp(&switch, &expect_401, &["-inf", wrong.to_str().unwrap()]);
    assert!(ok, "a wrong password must be challenged again:\n{trace}");
    let unknown = switch.users("unknown.csv", "mallory", "x");
    let (ok, trace) = sipp(&switch, &expect_401, &["-inf", unknown.to_str().unwrap()]);
    assert!(
        ok,
        "an unknown user is answered like a wrong password:\n{trace}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_nonce_is_answered_stale() {
    let switch = Switch::start("nonce_ttl_secs = 1").await;
    let alice = switch.users("alice.csv", "alice", "alice-pw");
    let (ok, trace) = sipp(
        &switch,
        &scenario("register_stale.xml"),
        &["-inf", alice.to_str().unwrap()],
    );
    assert!(ok, "stale nonce flow failed:\n{trace}\n{}", switch.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_devices_register_and_unregister_removes_them() {
    let switch = Switch::start("").await;
    let alice = switch.users("alice.csv", "alice", "alice-pw");
    let (ok, _) = sipp(
        &switch,
        &scenario("register_auth.xml"),
        &["-inf", alice.to_str().unwrap(), "-t", "u1"],
    );
    assert!(ok);
    let (ok, trace) = sipp(
        &switch,
        &scenario("register_auth.xml"),
        &["-inf", alice.to_str().unwrap(), "-t", "t1"],
    );
    assert!(ok);
    let last_ok = &trace[trace.rfind("SIP/2.0 200").expect("a 200")..];
    assert_eq!(
        last_ok.matches("Contact:").count(),
        2,
        "both devices listed:\n{last_ok}"
    );
    let (ok, trace) = sipp(
        &switch,
        &scenario("unregister.xml"),
        &["-inf", alice.to_str().unwrap()],
    );
    assert!(ok, "unregister failed:\n{trace}");
    // With no device left, a message to alice is deferred (202).
    let bob = switch.users("bob.csv", "bob", "bob-pw");
    let (ok, trace) = switch.message(&bob, "alice", 202);
    assert!(ok, "expected 202 after unregister:\n{trace}");
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_reach_online_users_wait_for_offline_ones_and_404_unknown_ones() {
    let switch = Switch::start("").await;
    let alice = switch.users("alice.csv", "alice", "alice-pw");

    // Online: bob's device gets it, alice gets 200.
    let (bob_dev, _) = device(&switch, "bob", "bob-pw", "u1", 8000);
    switch.wait_registered(1).await;
    let (ok, trace) = switch.message(&alice, "bob", 200);
    assert!(
        ok,
        "MESSAGE to an online user must get 200:\n{trace}\n{}",
        switch.log()
    );
    // 200 to the sender means bob's device answered 2xx; the store says so too.
    let stored = switch.messages_to("bob");
    assert!(
        stored[0].contains("delivered\talice -> bob\ttext/plain\thello from sipp-bench message"),
        "{stored:?}"
    );
    stop(bob_dev);

    // Unknown user: 404.
    let (ok, trace) = switch.message(&alice, "nobody", 404);
    assert!(ok, "unknown user must get 404:\n{trace}");

    // Offline: 202, then delivered when carol's device registers.
    let (ok, trace) = switch.message(&alice, "carol", 202);
    assert!(ok, "offline user must get 202:\n{trace}");
    assert!(switch.messages_to("carol")[0].contains("\tdeferred\t"));
    let (carol_dev, _) = device(&switch, "carol", "carol-pw", "t1", 5000);
    switch.wait_delivered("carol", 1).await;
    stop(carol_dev);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_message_survives_a_crash() {
    let mut switch = Switch::start("").await;
    let alice = switch.users("alice.csv", "alice", "alice-pw");
    let (ok, trace) = switch.message(&alice, "bob", 202);
    assert!(ok, "{trace}");
    switch.crash();
    switch.boot().await;
    assert!(
        switch.messages_to("bob")[0].contains("\tdeferred\t"),
        "kept across the crash"
    );
    let (bob_dev, _) = device(&switch, "bob", "bob-pw", "u1", 5000);
    switch.wait_delivered("bob", 1).await;
    stop(bob_dev);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_survives_a_crash() {
    let mut switch = Switch::start("").await;
    let (bob_dev, _) = device(&switch, "bob", "bob-pw", "u1", 12000);
    switch.wait_registered(1).await;
    switch.crash();
    switch.boot().await;
    // No new REGISTER: the binding came back from the database.
    let alice = switch.users("alice.csv", "alice", "alice-pw");
    let (ok, trace) = switch.message(&alice, "bob", 200);
    assert!(
        ok,
        "the binding must survive a restart:\n{trace}\n{}",
        switch.log()
    );
    stop(bob_dev);
}

#[tokio::test(flavor = "multi_thread")]
async fn options_is_answered_for_monitoring() {
    let switch = Switch::start("").await;
    let (ok, trace) = sipp(&switch, &scenario("options.xml"), &[]);
    assert!(ok, "{trace}");
}

/// Sends one datagram and returns the status line of the answer, if any.
fn exchange(port: u16, request: &str) -> Option<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let request = request.replace("PORT", &socket.local_addr().unwrap().port().to_string());
    socket
        .send_to(request.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    Some(text.lines().next().unwrap_or("").to_string())
}

fn request(method: &str, uri: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@localhost>;tag=1\r\nTo: <sip:bob@localhost>\r\nCall-ID: {}@test\r\n\
         CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n",
        rand_suffix().replace('-', ""),
        rand_suffix()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_right_error_and_the_switch_keeps_serving() {
    let switch = Switch::start("").await;
    let port = switch.sip;
    let cases: Vec<(String, &str)> = vec![
        (request("FROB", "sip:bob@localhost", ""), "SIP/2.0 501"),
        (
            request(
                "OPTIONS",
                "sip:bob@localhost",
                "Require: no-such-extension\r\n",
            ),
            "SIP/2.0 420",
        ),
        (
            request("MESSAGE", "sip:bob@localhost", "")
                .replace("Max-Forwards: 70", "Max-Forwards: 0"),
            "SIP/2.0 483",
        ),
        (
            request("MESSAGE", "mailto:bob@localhost", ""),
            "SIP/2.0 416",
        ),
        (
            request("MESSAGE", "sip:bob@localhost", "")
                .replace("CSeq: 1 MESSAGE", "CSeq: 1 OPTIONS"),
            "SIP/2.0 400",
        ),
        (
            request("MESSAGE", "sip:bob@localhost", "")
                .replace("Content-Length: 0", "Content-Length: 50"),
            "SIP/2.0 400",
        ),
        (
            request("MESSAGE", "sip:bob@localhost", "").replace(
                "From: <sip:alice@localhost>;tag=1",
                "From: <sip:alice@localhost;tag=1",
            ),
            "SIP/2.0 400",
        ),
    ];
    for (req, expected) in &cases {
        let answer = exchange(port, req);
        assert!(
            answer.as_deref().is_some_and(|a| a.starts_with(expected)),
            "expected {expected} for:\n{req}\ngot {answer:?}"
        );
    }
    // Garbage with no recoverable headers is dropped, not answered.
    assert_eq!(exchange(port, "\u{1}\u{2}garbage\r\n\r\n"), None);
    assert_eq!(exchange(port, "NOT SIP AT ALL"), None);
    // And the switch still serves.
    let (ok, _) = sipp(&switch, &scenario("options.xml"), &[]);
    assert!(ok, "the switch must keep serving after bad input");
}

/// A baresip user agent registered over TLS, trusting the switch's generated
/// certificate. Killed on drop.
struct Baresip(Child);

impl Baresip {
    fn start(switch: &Switch, user: &str, password: &str, tls_port: u16) -> Baresip {
        let dir = switch.site.path(&format!("baresip-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = switch.site.path("data/tls/self-signed-cert.pem");
        assert!(
            cert.is_file(),
            "the switch generates its certificate at start"
        );
        std::fs::write(
            dir.join("config"),
            format!(
                "sip_listen 127.0.0.1:0\nsip_cafile {}\nsip_trans_def tls\n\
                 module_path /usr/lib/baresip/modules\nmodule account.so\nmodule contact.so\nmodule menu.so\n",
                cert.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@localhost;transport=tls>;auth_pass={password};\
                 outbound=\"sip:127.0.0.1:{tls_port};transport=tls\";regint=600\n"
            ),
        )
        .unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-t", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("baresip (Debian package baresip-core) must be installed: scripts/setup.sh installs it");
        Baresip(child)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_registers_over_tls_and_receives_a_message() {
    let switch = Switch::start("").await;
    let _alice = Baresip::start(&switch, "alice", "alice-pw", switch.tls);
    switch.wait_registered(1).await;
    let bob = switch.users("bob.csv", "bob", "bob-pw");
    let (ok, trace) = switch.message(&bob, "alice", 200);
    assert!(
        ok,
        "baresip over TLS must accept the MESSAGE (200):\n{trace}\n{}",
        switch.log()
    );
    let stored = switch.messages_to("alice");
    assert!(
        stored[0].contains("\tdelivered\tbob -> alice"),
        "{stored:?}"
    );
}
