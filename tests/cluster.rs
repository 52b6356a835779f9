//! Several switch nodes on one database (cluster mode), seen from outside:
//! SIPp devices registered on different nodes message and call each other,
//! and a node killed leaves its users' messages deferred until they register
//! elsewhere.
//!
//! The nodes share MariaDB when `SOFTSWITCH_TEST_MYSQL_URL` names one (the
//! MariaDB step of scripts/test.sh), else one SQLite file: the forwarding
//! is the same on both.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::sipp::*;

/// The database the nodes share, and the folder holding it (SQLite).
fn shared_database() -> (String, Option<tempfile::TempDir>) {
    match std::env::var("SOFTSWITCH_TEST_MYSQL_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", dir.path().join("cluster.db").display());
            (url, Some(dir))
        }
    }
}

/// Two running nodes that see each other, and logins unique to this run
/// (a MariaDB database is shared with other tests and earlier runs).
async fn two_nodes(db: &str, sip_extra: &str, extra_config: &str) -> (Switch, Switch) {
    let a = Switch::start_node(db, None, sip_extra, extra_config).await;
    let b = Switch::start_node(db, Some(&a), sip_extra, extra_config).await;
    for node in [&a, &b] {
        node.wait_metric("softswitch_cluster_peers", |v| v >= 1)
            .await;
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn users_registered_on_two_nodes_message_and_call_each_other() {
    let (db, _dir) = shared_database();
    let (a, b) = two_nodes(&db, "", "").await;
    let alice = add_account(&a, "alice");
    let bob = add_account(&a, "bob");
    let carol = add_account(&b, "carol");

    // bob (answering messages) and carol (answering calls) on node B.
    let (_bob_device, bob_trace) = device(&b, &bob, "bob-pw", "u1", 30_000);
    let (_carol_device, carol_trace) = device_with(
        &b,
        &carol,
        "carol-pw",
        "u1",
        30_000,
        &scenario("call_uas.xml"),
    );
    b.wait_registered(2).await;

    // alice on node A: her MESSAGE is stored by A, delivered through B.
    let alice_users = a.users("alice.csv", &alice, "alice-pw");
    let (ok, trace) = a.message(&alice_users, &bob, 200);
    assert!(ok, "alice's message:\n{trace}\n{}\n{}", a.log(), b.log());
    let seen = wait_trace(&bob_trace, "hello from sipp-bench message").await;
    assert!(
        seen.contains(&format!("<sip:{alice}@localhost>")),
        "bob's device sees alice as the sender:\n{seen}"
    );
    // One stored copy, delivered, whichever node's CLI reads it.
    let lines = b.messages_to(&bob);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("\tdelivered\t"), "{lines:?}");

    // alice calls carol: A rings carol's device through B.
    let (ok, trace) = sipp(
        &a,
        &scenario("call_uac.xml"),
        &[
            "-inf",
            alice_users.to_str().unwrap(),
            "-s",
            &carol,
            "-d",
            "200",
        ],
    );
    assert!(ok, "alice's call:\n{trace}\n{}\n{}", a.log(), b.log());
    let carol_seen = wait_trace(&carol_trace, "BYE sip:").await;
    // What nodes say to each other stays between them.
    for seen in [&carol_seen, &std::fs::read_to_string(&bob_trace).unwrap()] {
        assert!(!seen.contains("X-Softswitch"), "{seen}");
    }
    // One call record, written by alice's node.
    wait_cdrs(&a, &alice, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = cdrs(&a, &alice);
    assert_eq!(records.len(), 1, "{records:?}");
    let columns: Vec<&str> = records[0].split('\t').collect();
    assert_eq!(
        &columns[1..6],
        [alice.as_str(), carol.as_str(), "-", "answered", "200"],
        "{records:?}"
    );
    for node in [&a, &b] {
        node.wait_metric("softswitch_calls_active", |v| v == 0)
            .await;
        node.wait_metric("softswitch_sip_dialogs", |v| v == 0).await;
    }

    // A request claiming to come from a node, from anywhere else, is refused.
    let forged = format!(
        "MESSAGE sip:{bob}@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{{local}};branch=z9hG4bKforged1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{alice}@localhost>;tag=f1\r\n\
         To: <sip:{bob}@localhost>\r\n\
         Call-ID: forged-1\r\nCSeq: 1 MESSAGE\r\n\
         X-Softswitch-Node: ts=1;sig=00\r\n\
         X-Softswitch-Message-Id: 1\r\n\
         Content-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged",
        port = b.sip
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = socket.local_addr().unwrap().port();
    socket
        .send_to(
            forged.replace("{local}", &local.to_string()).as_bytes(),
            ("127.0.0.1", b.sip),
        )
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = socket
        .recv(&mut buf)
        .expect("an answer to the forged request");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 403"), "{answer}");
    assert!(
        !std::fs::read_to_string(&bob_trace)
            .unwrap_or_default()
            .contains("forged"),
        "the forged message reached bob"
    );
}

/// alice (baresip on node A) calls bob (baresip on node B) with
/// `cluster.media` set to `media`; the media packets each node relayed.
async fn baresips_call_across_nodes(media: &str) -> [i64; 2] {
    let (db, _dir) = shared_database();
    let (a, b) = two_nodes(&db, "", &format!("media = \"{media}\"\n")).await;
    let alice = add_account(&a, "alice");
    let bob = add_account(&a, "bob");
    let _bob = Baresip::start_with(&b, &bob, "bob-pw", ";answermode=auto", &[]);
    b.wait_registered(1).await;
    let dial = format!("/dial {bob}");
    let alice_phone = Baresip::start_with(&a, &alice, "alice-pw", "", &[&dial]);
    for node in [&a, &b] {
        node.wait_metric("softswitch_calls_answered_total", |v| v >= 1)
            .await;
    }
    // Audio flows through node A's relay in either mode.
    a.wait_metric("softswitch_media_packets_relayed_total", |v| v >= 200)
        .await;
    if media == "each" {
        b.wait_metric("softswitch_media_packets_relayed_total", |v| v >= 200)
            .await;
    }
    let relayed = [
        a.metric("softswitch_media_packets_relayed_total").await,
        b.metric("softswitch_media_packets_relayed_total").await,
    ];
    alice_phone.quit();
    for node in [&a, &b] {
        node.wait_metric("softswitch_calls_active", |v| v == 0)
            .await;
    }
    let records = wait_cdrs(&a, &alice, 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].contains("\tanswered\t200\t"), "{records:?}");
    relayed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_across_nodes_has_its_media_relayed_once_at_the_node_it_entered() {
    let [a, b] = baresips_call_across_nodes("entry").await;
    // Node B passed the SDP through: the phones' audio met at A alone.
    assert!(a >= 200, "node A relayed {a}");
    assert_eq!(b, 0, "node B relayed media too");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_media_each_both_nodes_relay_their_own_leg() {
    let [a, b] = baresips_call_across_nodes("each").await;
    assert!(a >= 200 && b >= 200, "relayed: A {a}, B {b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_forwarding_many_users_requests_is_not_limited_as_one_flooding_source() {
    let (db, _dir) = shared_database();
    // Per-source limits on with nothing exempt on B: 5 requests a second.
    // alice sends from 127.0.0.2, exempt on A; A forwards from 127.0.0.1.
    let (a, b) = two_nodes(
        &db,
        "flood_rate = 5\nflood_burst = 5\nflood_exempt = [\"127.0.0.2/32\"]\n",
        "",
    )
    .await;
    let alice = add_account(&a, "alice");
    let bob = add_account(&a, "bob");
    let (_bob_device, bob_trace) = device(&b, &bob, "bob-pw", "u1", 30_000);
    b.wait_registered(1).await;
    let users = a.users("alice-burst.csv", &alice, "alice-pw");
    let (ok, trace) = sipp(
        &a,
        &scenario("uac_message_auth.xml"),
        &[
            "-inf",
            users.to_str().unwrap(),
            "-s",
            &bob,
            "-i",
            "127.0.0.2",
            "-m",
            "20",
            "-l",
            "20",
            "-r",
            "200",
        ],
    );
    assert!(ok, "alice's burst:\n{trace}\n{}\n{}", a.log(), b.log());
    let seen = std::fs::read_to_string(&bob_trace).unwrap_or_default();
    assert_eq!(
        seen.matches("hello from sipp-bench message").count(),
        20,
        "every message reached bob's phone through node B"
    );
    assert_eq!(b.metric("softswitch_sip_flood_dropped_total").await, 0);
}

/// When (seconds into the day) each message a SIPp trace received that
/// `matches` arrived, in order.
fn received_at(trace: &str, matches: impl Fn(&str) -> bool) -> Vec<f64> {
    trace
        .split("----------------------------------------------- ")
        .filter(|chunk| chunk.contains("message received") && matches(chunk))
        .filter_map(|chunk| {
            let time = chunk.split_whitespace().nth(1)?;
            let mut parts = time.split(':').map(|p| p.parse::<f64>().ok());
            let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .collect()
}

/// `watcher` (with `password`) watches `presentity` from `node` in the
/// background, expecting `n` NOTIFYs before it unsubscribes; the SIPp
/// process and its trace.
fn watch(
    node: &Switch,
    (watcher, password): (&str, &str),
    presentity: &str,
    n: usize,
) -> (Device, std::path::PathBuf) {
    let users = node.users(&format!("{watcher}-watch.csv"), watcher, password);
    let scenario_file = watch_scenario(&node.site, n, "presence");
    sipp_background(
        node,
        &scenario_file,
        &["-inf", users.to_str().unwrap(), "-s", presentity],
    )
}

async fn wait_notifies(trace: &std::path::Path, n: usize, nodes: &[&Switch]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = notifies(&std::fs::read_to_string(trace).unwrap_or_default());
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} NOTIFYs, not {n}: {got:#?}\n{}",
            got.len(),
            nodes.iter().map(|s| s.log()).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_on_one_node_follows_a_user_whose_device_is_on_another() {
    let (db, _dir) = shared_database();
    let (a, b) = two_nodes(&db, "", "\n[presence]\nwatch_policy = \"open\"\n").await;
    let alice = add_account(&a, "alice");
    let bob = add_account(&a, "bob");
    let (mut watcher, trace) = watch(&a, (&alice, "alice-pw"), &bob, 4);
    let first = wait_notifies(&trace, 1, &[&a, &b]).await;
    assert!(
        first[0].contains("<ss:reachability>offline</ss:reachability>"),
        "{}",
        first[0]
    );

    // bob's phone on node B registers, publishes a note, un-REGISTERs,
    // with 1.5 s between the steps (a heartbeat is 200 ms here).
    let device = b.variant_with(
        "presence_device.xml",
        &[(
            "<pause milliseconds=\"500\"/>",
            "<pause milliseconds=\"1500\"/>",
        )],
    );
    let bob_users = b.users("bob-device.csv", &bob, "bob-pw");
    let (ok, device_trace) = sipp(&b, &device, &["-inf", bob_users.to_str().unwrap()]);
    assert!(ok, "bob's device:\n{device_trace}\n{}", b.log());

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = watcher.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the watcher never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(
        status.success(),
        "the watcher failed:\n{text}\n{}\n{}",
        a.log(),
        b.log()
    );
    let n = notifies(&text);
    assert_eq!(n.len(), 5, "{n:#?}");
    // From bob's 200 OK to his REGISTER (node B) to alice's NOTIFY saying
    // he is online (node A): what crossing nodes adds (heartbeat 200 ms).
    let registered = received_at(&device_trace, |m| {
        m.contains("SIP/2.0 200 OK") && m.contains("CSeq: 2 REGISTER")
    });
    let notified = received_at(&text, |m| m.contains("NOTIFY sip:"));
    if let (Some(registered), Some(notified)) = (registered.first(), notified.get(1)) {
        eprintln!(
            "presence crossed the nodes in {:.0} ms",
            (notified - registered) * 1000.0
        );
    }
    let (offline, online) = (
        "<ss:reachability>offline</ss:reachability>",
        "<ss:reachability>online</ss:reachability>",
    );
    assert!(
        n[1].contains(online) && !n[1].contains("<note>"),
        "registered: {}",
        n[1]
    );
    assert!(
        n[2].contains(online) && n[2].contains("<note>Here</note>"),
        "published: {}",
        n[2]
    );
    assert!(n[3].contains(offline), "un-registered: {}", n[3]);
    assert!(n[4].contains("Subscription-State: terminated"), "{}", n[4]);
}

/// `login` (password `pw`) registers at `node`, expecting `code`; the trace.
fn register(node: &Switch, login: &str, pw: &str, code: u16) -> String {
    let users = node.users(&format!("{login}-reg-{}.csv", rand_suffix()), login, pw);
    let file = node.variant(
        "register_auth.xml",
        "<recv response=\"200\" rtd=\"1\"/>",
        &format!("<recv response=\"{code}\" rtd=\"1\"/>"),
    );
    let (ok, trace) = sipp(node, &file, &["-inf", users.to_str().unwrap()]);
    assert!(
        ok,
        "{login} registering, {code} expected:\n{trace}\n{}",
        node.log()
    );
    trace
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_registering_away_from_home_is_sent_home_unless_home_is_down() {
    let (db, _dir) = shared_database();
    let (a, mut b) = two_nodes(&db, "", "").await;
    // The local dialing plan makes node B (named by its address) the home
    // of logins starting with this run's prefix.
    let prefix = format!("home{}", rand_suffix().replace('-', "x"));
    let dan = format!("{prefix}dan");
    a.site.ok(&["account", "add", &dan, "--password", "dan-pw"]);
    let home = format!("127.0.0.1:{}", b.sip);
    a.site.ok(&["dialplan", "add", &prefix, &home]);

    let trace = register(&a, &dan, "dan-pw", 302);
    assert!(trace.contains(&format!("Contact: <sip:{home}>")), "{trace}");
    register(&b, &dan, "dan-pw", 200);
    b.wait_registered(1).await;

    // Home down: node A stands in.
    b.crash();
    a.wait_metric("softswitch_cluster_peers", |v| v == 0).await;
    register(&a, &dan, "dan-pw", 200);
    a.site.ok(&["dialplan", "del", &prefix]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_moves_to_another_node_stops_counting_on_the_first() {
    let (db, _dir) = shared_database();
    let (a, b) = two_nodes(&db, "", "").await;
    let bob = add_account(&a, "bob");
    let users = a.users("bob-phone.csv", &bob, "bob-pw");
    // The same phone (same address and port: the same Contact, so the same
    // binding) registers at A, then at B.
    let port = free_sip_port().to_string();
    for node in [&a, &b] {
        let (ok, trace) = sipp(
            node,
            &scenario("register_auth.xml"),
            &["-inf", users.to_str().unwrap(), "-p", &port],
        );
        assert!(ok, "bob's phone registering:\n{trace}\n{}", node.log());
        node.wait_registered(1).await;
    }
    // A hears of bob's device on B and forgets its copy of the binding.
    a.wait_metric("softswitch_sip_registered_accounts", |v| v == 0)
        .await;
    b.wait_registered(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_s_users_get_their_messages_once_they_register_on_another() {
    let (db, _dir) = shared_database();
    let (a, mut b) = two_nodes(&db, "", "").await;
    let alice = add_account(&a, "alice");
    let bob = add_account(&a, "bob");
    let (bob_device, _) = device(&b, &bob, "bob-pw", "u1", 30_000);
    b.wait_registered(1).await;

    // Node B dies with bob's binding in the database.
    b.crash();
    a.wait_metric("softswitch_cluster_peers", |v| v == 0).await;
    drop(bob_device);

    // alice's messages meanwhile: accepted and deferred, none lost.
    let alice_users = a.users("alice.csv", &alice, "alice-pw");
    for _ in 0..3 {
        let (ok, trace) = a.message(&alice_users, &bob, 202);
        assert!(
            ok,
            "alice's message while bob's node is down:\n{trace}\n{}",
            a.log()
        );
    }
    let lines = a.messages_to(&bob);
    assert_eq!(
        lines.iter().filter(|l| l.contains("\tdeferred\t")).count(),
        3,
        "{lines:?}"
    );

    // bob's client registers at the next server: node A delivers them all.
    let (_bob_again, bob_trace) = device(&a, &bob, "bob-pw", "u1", 30_000);
    a.wait_delivered(&bob, 3).await;
    let seen = std::fs::read_to_string(&bob_trace).unwrap_or_default();
    assert_eq!(
        seen.matches("hello from sipp-bench message").count(),
        3,
        "{seen}"
    );
}

/// A TCP link between the switch and MariaDB that the test can cut, as a
/// network failure would: while cut, the open connections are closed and
/// new ones are closed as soon as they come.
struct DbLink {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl DbLink {
    async fn start(upstream: String) -> DbLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *watch.borrow() {
                    continue; // dropped: closed at once
                }
                let upstream = upstream.clone();
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        DbLink { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs MariaDB: the MariaDB step of scripts/test.sh runs it (--include-ignored)"]
async fn while_the_database_is_unreachable_requests_get_503_and_service_resumes_by_itself() {
    let url = std::env::var("SOFTSWITCH_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect(
            "SOFTSWITCH_TEST_MYSQL_URL names the MariaDB database (scripts/mariadb-test-db.sh)",
        );
    // mysql://user:pass@HOST:PORT/db → the switch reaches HOST:PORT through the link.
    let (head, tail) = url.rsplit_once('@').unwrap();
    let (upstream, db) = tail.split_once('/').unwrap();
    let link = DbLink::start(upstream.to_string()).await;
    let through_link = format!("{head}@127.0.0.1:{}/{db}", link.port);
    let node = Switch::start_node(&through_link, None, "", "").await;
    let alice = add_account(&node, "alice");
    let bob = add_account(&node, "bob");
    let users = node.users("alice.csv", &alice, "alice-pw");
    let mut accepted = 0;

    let (ok, trace) = node.message(&users, &bob, 202);
    assert!(ok, "before the outage:\n{trace}\n{}", node.log());
    accepted += 1;

    link.set_cut(true);
    let asked = Instant::now();
    let (ok, trace) = node.message(&users, &bob, 503);
    assert!(ok, "during the outage:\n{trace}\n{}", node.log());
    assert!(trace.contains("Retry-After: 5"), "{trace}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the refusal took {:?}",
        asked.elapsed()
    );

    let refused_in = asked.elapsed();

    // Back: the switch reconnects by itself.
    link.set_cut(false);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(20);
    loop {
        let (ok, trace) = node.message(&users, &bob, 202);
        if ok {
            accepted += 1;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered:\n{trace}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "refused in {refused_in:?} during the outage; accepted again {:?} after it",
        back.elapsed()
    );
    // Every message that was accepted is stored; the refused one is not.
    let lines = node.messages_to(&bob);
    assert_eq!(lines.len(), accepted, "{lines:?}");
}

#[test]
#[ignore = "needs MariaDB and root: the MariaDB step of scripts/test.sh runs it (--include-ignored)"]
fn the_cluster_tour_messages_and_calls_across_two_nodes() {
    let dir = tempfile::tempdir().unwrap();
    // Free ports rather than the tour's usual ones: whatever else runs on
    // the machine cannot be in the way. SIP's next port is the node's TLS.
    // Nothing is bound yet when the ports are chosen: each must also stay
    // clear of the ones chosen before it.
    let mut taken: Vec<u16> = Vec::new();
    let mut pick = |pair: bool| loop {
        let port = support::sipp::free_sip_port();
        let wanted = if pair {
            vec![port, port + 1]
        } else {
            vec![port]
        };
        if wanted.iter().any(|p| taken.contains(p))
            || (pair && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_err())
        {
            continue;
        }
        taken.extend(wanted);
        return port;
    };
    let (a_sip, b_sip) = (pick(true), pick(true));
    let (a_admin, b_admin) = (pick(false), pick(false));
    let out = std::process::Command::new(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster-tour.sh"),
    )
    .env("SOFTSWITCH_BIN", support::BIN)
    .env("CLUSTER_TOUR_DIR", dir.path())
    .env("A_SIP", a_sip.to_string())
    .env("B_SIP", b_sip.to_string())
    .env("A_ADMIN", a_admin.to_string())
    .env("B_ADMIN", b_admin.to_string())
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the tour failed:\n{stdout}\n{stderr}");
    for seen in [
        "node-a sees 1 peer, node-b sees 1 peer".to_string(),
        format!("sip:127.0.0.1:{a_sip}\tnode-a\talive"),
        format!("sip:127.0.0.1:{b_sip}\tnode-b\talive"),
        format!("bob\tsip:127.0.0.1:{b_sip}"),
        "\tdelivered\talice -> bob\t".to_string(),
        "\talice\tbob\t-\tanswered\t200\t".to_string(),
    ] {
        assert!(stdout.contains(&seen), "no {seen:?} in:\n{stdout}");
    }
}
