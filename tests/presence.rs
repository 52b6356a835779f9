//! Presence seen from outside: SIPp watchers and presentities against the
//! built binary on loopback. Buddy lists from address books (RFC 4662),
//! PUBLISH (RFC 3903), who may watch whom, expiry and refresh (RFC 6665), a
//! restart keeping subscriptions and documents, and MWI (RFC 3842).

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::sipp::notifies;
use support::*;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sipp")
        .join(name)
}

fn free_sip_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A switch on known ports with alice (+48 600 111 222), bob and carol.
struct Switch {
    site: Site,
    running: Option<Running>,
    sip: u16,
    tls: u16,
    admin: u16,
}

impl Switch {
    async fn start(presence: &str) -> Switch {
        Switch::start_with("", presence).await
    }

    /// Like [`Switch::start`], with `sip_extra` in the `[sip]` section.
    async fn start_with(sip_extra: &str, presence: &str) -> Switch {
        let sip = free_sip_port();
        let tls = free_port();
        let admin = free_port();
        let site = Site::with_sip(
            sip,
            tls,
            sip_extra,
            &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[presence]\n{presence}\n"),
        );
        for (login, phone) in [
            ("alice", "48600111222"),
            ("bob", "48600333444"),
            ("carol", "48600555666"),
        ] {
            site.ok(&[
                "account",
                "add",
                login,
                "--password",
                &format!("{login}-pw"),
                "--phone",
                phone,
            ]);
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

    /// SIGKILL, as a crash would.
    fn crash(&mut self) {
        if let Some(mut r) = self.running.take() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    fn log(&self) -> String {
        self.running.as_ref().map(|r| r.log()).unwrap_or_default()
    }

    fn users(&self, user: &str) -> PathBuf {
        let path = self.site.path(&format!("{user}-{}.csv", suffix()));
        let password = format!("{user}-pw");
        std::fs::write(
            &path,
            format!("SEQUENTIAL\n{user};{password};[authentication username={user} password={password}]\n"),
        )
        .unwrap();
        path
    }

    /// `source` cut at `marker` and closed with `ending` (what the cut-off
    /// part still had to say), written as `name`.
    fn cut(&self, source: &Path, marker: &str, ending: &str, name: &str) -> PathBuf {
        let full = std::fs::read_to_string(source).unwrap();
        let at = full.find(marker).unwrap();
        let path = self.site.path(name);
        std::fs::write(&path, format!("{}{ending}</scenario>\n", &full[..at])).unwrap();
        path
    }

    /// A copy of a scenario with each `(from, to)` replaced.
    fn variant(&self, name: &str, edits: &[(&str, &str)]) -> PathBuf {
        let mut text = std::fs::read_to_string(scenario(name)).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "{name} has no {from}");
            text = text.replace(from, to);
        }
        let path = self.site.path(&format!("variant-{}-{name}", suffix()));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// presence_watch.xml expecting `notifies` NOTIFYs before it unsubscribes.
    fn watch_scenario(&self, notifies: usize, event: &str) -> PathBuf {
        support::sipp::watch_scenario(&self.site, notifies, event)
    }

    /// Starts SIPp in the background as `user` against `service`.
    fn sipp(&self, scenario_file: &Path, user: &str, service: &str) -> Peer {
        self.sipp_over(scenario_file, user, service, &[])
    }

    /// Like [`Switch::sipp`], with SIPp options added (e.g. `-t t1`).
    fn sipp_over(&self, scenario_file: &Path, user: &str, service: &str, extra: &[&str]) -> Peer {
        let trace = self.site.path(&format!("sipp-{user}-{}.log", suffix()));
        let child = Command::new("sipp")
            .arg(format!("127.0.0.1:{}", self.sip))
            .args(extra)
            .arg("-sf")
            .arg(scenario_file)
            .arg("-inf")
            .arg(self.users(user))
            .args(["-s", service, "-key", "domain", "localhost"])
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "sipp (Debian package sip-tester) must be installed: scripts/setup.sh installs it",
            );
        Peer {
            child,
            trace,
            name: format!("{user} -> {service}"),
        }
    }

    /// Waits until `softswitch presence subscriptions` has `n` lines.
    fn wait_subscriptions(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.site.ok(&["presence", "subscriptions"]);
            if out.lines().count() == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {n} subscriptions, have:\n{out}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A SIPp process, killed when dropped (also when a test panics).
struct Peer {
    child: Child,
    trace: PathBuf,
    name: String,
}

impl Peer {
    fn trace(&self) -> String {
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }

    /// Waits for SIPp to end and asserts it succeeded.
    fn finish(mut self, switch: &Switch) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let trace = self.trace();
                assert!(
                    status.success(),
                    "{} failed ({status}):\n{trace}\nswitch log:\n{}",
                    self.name,
                    switch.log()
                );
                return trace;
            }
            assert!(
                Instant::now() < deadline,
                "{} never ended:\n{}",
                self.name,
                self.trace()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the trace holds `n` NOTIFYs; returns them.
    fn wait_notifies(&self, n: usize, switch: &Switch) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = notifies(&self.trace());
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} got {} NOTIFYs, not {n}:\n{}\nswitch log:\n{}",
                self.name,
                got.len(),
                self.trace(),
                switch.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the trace holds `needle`.
    fn wait_for(&self, needle: &str, switch: &Switch) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.trace().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{} never saw {needle:?}:\n{}\nswitch log:\n{}",
                self.name,
                self.trace(),
                switch.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn buddy_list_follows_publications_and_address_books() {
    let switch = Switch::start("").await;
    // Alice's handset stores Bob in local format: normalised with her +48.
    switch.site.ok(&[
        "contact",
        "add",
        "alice",
        "600333444",
        "--name",
        "Bob",
        "--id",
        "7",
    ]);
    switch
        .site
        .ok(&["contact", "add", "alice", "+1 202 555 0100"]);
    let book = switch.site.ok(&["contact", "list", "alice"]);
    assert!(book.contains("7\t48600333444\tBob\tuser bob"), "{book}");
    assert!(book.contains("12025550100\t-\tnot a user"), "{book}");
    let refused = switch
        .site
        .fails(&["contact", "add", "alice", "not-a-number"]);
    assert!(refused.contains("not a phone number"), "{refused}");

    let watcher = switch.sipp(
        &switch.watch_scenario(3, "presence"),
        "alice",
        "alice-buddies",
    );
    switch.wait_subscriptions(1);
    switch
        .sipp(&scenario("presence_publish.xml"), "bob", "bob")
        .finish(&switch);
    let trace = watcher.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 4, "initial, open, closed, terminated:\n{trace}");

    let full = &n[0];
    assert!(full.contains("Require: eventlist"), "{full}");
    assert!(full.contains("multipart/related"), "{full}");
    assert!(full.contains("fullState=\"true\""), "{full}");
    assert!(
        full.contains("<resource uri=\"sip:bob@localhost\""),
        "{full}"
    );
    assert!(full.contains("<name>Bob</name>"), "{full}");
    assert!(
        !full.contains("carol"),
        "carol is not in alice's book: {full}"
    );
    assert!(full.contains("<basic>closed</basic>"), "{full}");
    assert!(
        full.contains("<ss:reachability>offline</ss:reachability>"),
        "{full}"
    );

    let open = &n[1];
    assert!(open.contains("fullState=\"false\""), "{open}");
    assert!(open.contains("<basic>open</basic>"), "{open}");
    assert!(open.contains("<note>Available</note>"), "{open}");
    let closed = &n[2];
    assert!(closed.contains("<basic>closed</basic>"), "{closed}");
    assert!(closed.contains("<note>Gone home</note>"), "{closed}");
    assert!(n[3].contains("Subscription-State: terminated"), "{}", n[3]);

    // Carol is not in alice's book: she may not watch alice, nor anyone's list.
    for service in ["alice", "alice-buddies"] {
        switch
            .sipp(
                &scenario("presence_subscribe_refused.xml"),
                "carol",
                service,
            )
            .finish(&switch);
    }
    // A list subscription without `Supported: eventlist` is 421; an unknown
    // event package is 489.
    switch
        .sipp(
            &switch.variant(
                "presence_subscribe_refused.xml",
                &[
                    ("Supported: eventlist\n", ""),
                    ("response=\"403\"", "response=\"421\""),
                ],
            ),
            "alice",
            "alice-buddies",
        )
        .finish(&switch);
    switch
        .sipp(
            &switch.variant(
                "presence_subscribe_refused.xml",
                &[
                    ("Event: presence", "Event: dialog"),
                    ("response=\"403\"", "response=\"489\""),
                ],
            ),
            "alice",
            "alice",
        )
        .finish(&switch);
    switch.wait_subscriptions(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_expire_and_refresh() {
    let switch = Switch::start("subscribe_min_expires = 1").await;
    // Bob lets alice watch him by having her in his address book.
    switch.site.ok(&["contact", "add", "bob", "0600111222"]);
    let trace = switch
        .sipp(&scenario("presence_expiry.xml"), "alice", "bob")
        .finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 3, "{trace}");
    assert!(
        n[0].contains("Content-Type: application/pidf+xml"),
        "{}",
        n[0]
    );
    assert!(n[0].contains("entity=\"sip:bob@localhost\""), "{}", n[0]);
    switch.wait_subscriptions(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_subscriptions_and_documents() {
    let mut switch = Switch::start("").await;
    switch.site.ok(&["contact", "add", "alice", "+48600333444"]);
    switch
        .site
        .ok(&["contact", "add", "alice", "+48 600 555 666"]);
    // The presentities publish `open` and keep it.
    let publish_open = switch.cut(
        &scenario("presence_publish.xml"),
        "<!--END-OPEN-->",
        "<Reference variables=\"etag\"/>\n",
        "publish-open.xml",
    );

    let watcher = switch.sipp(
        &switch.watch_scenario(3, "presence"),
        "alice",
        "alice-buddies",
    );
    switch.wait_subscriptions(1);
    switch.sipp(&publish_open, "bob", "bob").finish(&switch);
    watcher.wait_for("<basic>open</basic>", &switch);

    switch.crash();
    switch.boot().await;
    switch.wait_subscriptions(1);

    // Bob's document survived: a new watcher's first NOTIFY shows him open.
    let second = switch
        .sipp(
            &switch.watch_scenario(1, "presence"),
            "alice",
            "alice-buddies",
        )
        .finish(&switch);
    let n = notifies(&second);
    assert!(n[0].contains("<basic>open</basic>"), "{second}");
    switch.wait_subscriptions(1);

    // The first watcher's subscription survived: carol's change reaches it.
    switch.sipp(&publish_open, "carol", "carol").finish(&switch);
    let trace = watcher.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 4, "{trace}");
    assert!(
        n[2].contains("<resource uri=\"sip:carol@localhost\""),
        "{}",
        n[2]
    );
    assert!(
        !n[2].contains("sip:bob@localhost"),
        "partial: only carol: {}",
        n[2]
    );
    assert!(n[2].contains("<basic>open</basic>"), "{}", n[2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn mwi_counts_follow_the_voicemail_table() {
    let switch = Switch::start("mwi_poll_ms = 100").await;
    let watcher = switch.sipp(
        &switch.watch_scenario(3, "message-summary"),
        "alice",
        "alice",
    );
    watcher.wait_for("Voice-Message: 0/0", &switch);
    let added = switch
        .site
        .ok(&["voicemail", "add", "alice", "--from", "bob"]);
    let id = added.split_whitespace().nth(2).unwrap().to_string();
    watcher.wait_for("Voice-Message: 1/0", &switch);
    switch.site.ok(&["voicemail", "heard", &id]);
    let trace = watcher.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 4, "{trace}");
    assert!(n[0].contains("Messages-Waiting: no"), "{}", n[0]);
    assert!(n[1].contains("Messages-Waiting: yes"), "{}", n[1]);
    assert!(
        n[1].contains("Message-Account: sip:alice@localhost"),
        "{}",
        n[1]
    );
    assert!(n[2].contains("Voice-Message: 0/1"), "{}", n[2]);
    let listed = switch.site.ok(&["voicemail", "list", "alice"]);
    assert!(listed.starts_with("alice: 0 new, 1 heard"), "{listed}");
}

/// A baresip softphone over TLS with the presence module: it PUBLISHes its
/// status, SUBSCRIBEs to each contact, prints status changes, and quits
/// (removing its publication, un-REGISTERing) on SIGTERM or after `seconds`.
struct Baresip {
    child: Child,
    out: PathBuf,
}

impl Baresip {
    fn start(switch: &Switch, user: &str, contact: &str, seconds: u32) -> Baresip {
        let dir = switch.site.path(&format!("baresip-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = switch.site.path("data/tls/self-signed-cert.pem");
        std::fs::write(
            dir.join("config"),
            format!(
                "sip_listen 127.0.0.1:0\nsip_cafile {}\nsip_trans_def tls\n\
                 module_path /usr/lib/baresip/modules\nmodule account.so\nmodule contact.so\n\
                 module menu.so\nmodule presence.so\n",
                cert.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@localhost;transport=tls>;auth_pass={user}-pw;\
                 outbound=\"sip:127.0.0.1:{};transport=tls\";regint=600;pubint=60\n",
                switch.tls
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("contacts"),
            format!("\"{contact}\" <sip:{contact}@localhost>;presence=p2p\n"),
        )
        .unwrap();
        let out = dir.join("out.log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-t", &seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("baresip (Debian package baresip-core) must be installed: scripts/setup.sh installs it");
        Baresip { child, out }
    }

    /// Waits for baresip to exit; its output without colour codes.
    /// Asks baresip to quit (SIGTERM: the same orderly shutdown as its
    /// timer) and waits for it to exit; its output.
    fn quit(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "baresip never exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.output()
    }

    /// Waits (up to 20 s) until baresip has printed `needle`.
    fn wait_output(&self, needle: &str, switch: &Switch) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.output().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "baresip never printed {needle:?}:\n{}\n{}",
                self.output(),
                switch.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What baresip printed so far, without colour codes.
    fn output(&self) -> String {
        let raw = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // Skip an ANSI colour sequence up to its final letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_softphones_with_each_other_in_their_books_see_each_other() {
    let switch = Switch::start("").await;
    switch
        .site
        .ok(&["contact", "add", "alice", "0600333444", "--name", "Bob"]);
    switch
        .site
        .ok(&["contact", "add", "bob", "0600111222", "--name", "Alice"]);
    // baresip prints a change only once it knows a first state. Alice is
    // up first and sees bob come online when he starts; once bob watches
    // her, she quits and bob sees her go offline. baresip 1.0 often sends
    // two initial PUBLISHes at start and removes only one when it quits:
    // alice goes offline because her un-REGISTER (and her TLS connection
    // closing) takes the documents of her device along. Each step waits
    // for the one before, so a slow machine only makes it slower; 60 s is
    // the phones' upper bound.
    let alice = Baresip::start(&switch, "alice", "bob", 60);
    switch.wait_subscriptions(1);
    // The CLI sees the subscription once it is stored, 20 ms before its
    // first NOTIFY (bob offline) is built. Bob online by then would be in
    // that first NOTIFY, which is right (RFC 6665 sends the state as it is)
    // but baresip prints no change for its first state: it must see bob
    // offline first. Give the first NOTIFY that moment.
    std::thread::sleep(Duration::from_millis(1500));
    let bob = Baresip::start(&switch, "bob", "alice", 60);
    alice.wait_output(
        "<sip:bob@localhost> changed status from Offline to Online",
        &switch,
    );
    switch.wait_subscriptions(2);
    // Bob's first NOTIFY is built 20 ms after his 200 OK, with alice
    // online; later NOTIFYs of the dialog follow it in order. The pause
    // lets it be built before alice quits.
    std::thread::sleep(Duration::from_millis(500));
    let _ = alice.quit();
    bob.wait_output(
        "<sip:alice@localhost> changed status from Online to Offline",
        &switch,
    );
    let _ = bob.quit();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contact_who_becomes_a_user_joins_the_buddy_list() {
    let switch = Switch::start("").await;
    switch
        .site
        .ok(&["contact", "add", "alice", "0600777888", "--name", "Dave"]);
    let watcher = switch.sipp(
        &switch.watch_scenario(2, "presence"),
        "alice",
        "alice-buddies",
    );
    watcher.wait_for("fullState=\"true\"", &switch);
    switch.site.ok(&[
        "account",
        "add",
        "dave",
        "--password",
        "dave-pw",
        "--phone",
        "48600777888",
    ]);
    let trace = watcher.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 3, "{trace}");
    assert!(!n[0].contains("<resource "), "nobody yet: {}", n[0]);
    assert!(n[1].contains("fullState=\"true\""), "{}", n[1]);
    assert!(
        n[1].contains("<resource uri=\"sip:dave@localhost\""),
        "{}",
        n[1]
    );
    assert!(n[1].contains("<name>Dave</name>"), "{}", n[1]);
}

/// The user's document follows their device: registered → online, its
/// publications gone with its binding (even one the phone never removed),
/// and with its TCP connection (RFC 5626 flow failure).
#[tokio::test(flavor = "multi_thread")]
async fn presence_follows_the_device() {
    let switch = Switch::start("").await;
    switch.site.ok(&["contact", "add", "bob", "0600111222"]);
    let watcher = switch.sipp(&switch.watch_scenario(7, "presence"), "alice", "bob");
    watcher.wait_notifies(1, &switch);

    // Over UDP: register, publish twice, remove one publication, un-REGISTER.
    switch
        .sipp(&scenario("presence_device.xml"), "bob", "bob")
        .finish(&switch);
    watcher.wait_notifies(4, &switch);

    // Over TCP: register and publish, then the device goes away without a
    // word (SIPp exits and its connection closes).
    let vanish = switch.cut(
        &scenario("presence_device.xml"),
        "<!--END-PUBLISHED-->",
        "<pause milliseconds=\"500\"/>\n<Reference variables=\"etag1\"/>\n",
        "device-vanishes.xml",
    );
    switch
        .sipp_over(&vanish, "bob", "bob", &["-t", "t1"])
        .finish(&switch);

    let trace = watcher.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 8, "{trace}");
    let offline = "<ss:reachability>offline</ss:reachability>";
    let online = "<ss:reachability>online</ss:reachability>";
    assert!(n[0].contains(offline), "not registered yet: {}", n[0]);
    for (i, why) in [(1, "registered over UDP"), (4, "registered over TCP")] {
        assert!(n[i].contains(online), "{why}: {}", n[i]);
        assert!(
            !n[i].contains("<note>"),
            "{why}, nothing published: {}",
            n[i]
        );
    }
    for i in [2, 5] {
        assert!(
            n[i].contains(online) && n[i].contains("<note>Here</note>"),
            "{}",
            n[i]
        );
    }
    assert!(
        n[3].contains(offline) && !n[3].contains("<note>"),
        "un-REGISTER takes both publications along: {}",
        n[3]
    );
    assert!(
        n[6].contains(offline) && !n[6].contains("<note>"),
        "the TCP connection closed: {}",
        n[6]
    );
    assert!(n[7].contains("Subscription-State: terminated"), "{}", n[7]);
}

/// Who may watch a user follows that user's address book: removing the
/// watcher ends its subscription (RFC 6665 `rejected`); the watcher's own
/// buddy list follows the watcher's own book.
#[tokio::test(flavor = "multi_thread")]
async fn leaving_an_address_book_ends_the_subscription() {
    let switch = Switch::start("").await;
    switch.site.ok(&["contact", "add", "bob", "0600111222"]);
    switch
        .site
        .ok(&["contact", "add", "alice", "0600333444", "--name", "Bob"]);
    let single = switch.sipp(&scenario("presence_rejected.xml"), "alice", "bob");
    let list = switch.sipp(
        &switch.watch_scenario(2, "presence"),
        "alice",
        "alice-buddies",
    );
    single.wait_notifies(1, &switch);
    list.wait_notifies(1, &switch);

    // Bob removes alice: her subscription to him ends, without his document.
    switch.site.ok(&["contact", "del", "bob", "0600111222"]);
    let trace = single.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 2, "{trace}");
    assert!(
        n[1].contains("Subscription-State: terminated;reason=rejected"),
        "{}",
        n[1]
    );
    assert!(n[1].contains("Content-Length: 0"), "no document: {}", n[1]);
    // ... and she may not subscribe again.
    switch
        .sipp(&scenario("presence_subscribe_refused.xml"), "alice", "bob")
        .finish(&switch);

    // Her buddy list is her own book: bob leaves it when she removes him.
    switch.site.ok(&["contact", "del", "alice", "0600333444"]);
    let trace = list.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 3, "{trace}");
    assert!(
        n[0].contains("<resource uri=\"sip:bob@localhost\""),
        "{}",
        n[0]
    );
    assert!(n[1].contains("fullState=\"true\""), "{}", n[1]);
    assert!(
        !n[1].contains("sip:bob@localhost\""),
        "bob left the list: {}",
        n[1]
    );
    switch.wait_subscriptions(0);
}

/// A watcher over TCP keeps its subscription across a restart of the
/// switch: the NOTIFYs follow it to the connection it registers over
/// again (RFC 5626), starting with the full state. SIPp 3.6 cannot
/// reconnect on its own, so two runs on one port with one Call-ID and tag
/// are the device before and after.
#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_watcher_is_found_again_after_a_restart() {
    let mut switch = Switch::start("").await;
    switch.site.ok(&["contact", "add", "bob", "0600111222"]);
    let port = free_sip_port().to_string();
    let tag = format!("w{}", suffix());
    let device = [
        "-t",
        "t1",
        "-p",
        &port,
        "-cid_str",
        "restart-watch-%u@%s",
        "-key",
        "wtag",
        &tag,
    ];
    let before = switch.sipp_over(
        &scenario("presence_watch_restart_before.xml"),
        "alice",
        "bob",
        &device,
    );
    before.wait_notifies(1, &switch);
    switch.crash();
    drop(before);
    switch.boot().await;
    switch.wait_subscriptions(1);

    let after = switch.sipp_over(
        &scenario("presence_watch_restart_after.xml"),
        "alice",
        "bob",
        &device,
    );
    let n = after.wait_notifies(1, &switch);
    assert!(n[0].contains("Subscription-State: active"), "{}", n[0]);
    assert!(n[0].contains("<basic>closed</basic>"), "{}", n[0]);

    let publish_open = switch.cut(
        &scenario("presence_publish.xml"),
        "<!--END-OPEN-->",
        "<Reference variables=\"etag\"/>\n",
        "publish-open.xml",
    );
    switch.sipp(&publish_open, "bob", "bob").finish(&switch);
    let trace = after.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 3, "{trace}");
    assert!(
        n[1].contains("<basic>open</basic>"),
        "bob's change: {}",
        n[1]
    );
    assert!(n[2].contains("Subscription-State: terminated"), "{}", n[2]);
    switch.wait_subscriptions(0);
}

/// A registration that expires takes its device's documents along, though
/// they were published for an hour.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_registration_takes_the_device_along() {
    let switch = Switch::start_with("min_expires = 1", "").await;
    switch.site.ok(&["contact", "add", "bob", "0600111222"]);
    let watcher = switch.sipp(&switch.watch_scenario(4, "presence"), "alice", "bob");
    watcher.wait_notifies(1, &switch);
    // Registered for 2 s, published for an hour, then silent.
    let short = switch.variant("presence_device.xml", &[("expires=600", "expires=2")]);
    let device = switch.cut(
        &short,
        "<!--END-PUBLISHED-->",
        "<Reference variables=\"etag1\"/>\n",
        "device-short.xml",
    );
    switch.sipp(&device, "bob", "bob").finish(&switch);
    let trace = watcher.finish(&switch);
    let n = notifies(&trace);
    assert_eq!(n.len(), 5, "{trace}");
    assert!(
        n[1].contains("<ss:reachability>online</ss:reachability>"),
        "{}",
        n[1]
    );
    assert!(n[2].contains("<note>Here</note>"), "{}", n[2]);
    assert!(
        n[3].contains("<ss:reachability>offline</ss:reachability>") && !n[3].contains("<note>"),
        "the registration expired: {}",
        n[3]
    );
}
