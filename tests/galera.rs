//! A switch node on a 3-node MariaDB Galera cluster behind HAProxy
//! (scripts/galera.sh), seen from outside: SIPp MESSAGEs keep coming while
//! the database node HAProxy sends the switch to is killed. HAProxy moves
//! to a backup node, the switch's connections to the dead one fail and are
//! replaced, and the switch keeps serving: a request caught in the failover
//! may be refused with 503 + Retry-After, none goes unanswered, the switch does
//! not die, and every message it accepted is in the database afterwards,
//! once, on the surviving nodes.
//!
//! Needs root (the script installs packages and runs mariadbd): ignored in
//! the SQLite pass, the MariaDB step of scripts/test.sh runs it with
//! `--include-ignored`. Run, it never skips: without the cluster it fails,
//! with the script's output.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::sipp::*;

/// HAProxy's port; the DB nodes take 24306-24308 and Galera 24310-24318
/// (see scripts/galera.sh): outside the kernel's ephemeral range, and apart
/// from the script's defaults (4300-4318) that someone may be using by hand.
const PORT_BASE: u16 = 24300;

/// Longest a MESSAGE may wait for its final answer, failover included.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Longest the failover may take: after this, every MESSAGE is accepted.
const FAILOVER_WITHIN: Duration = Duration::from_secs(20);
/// Accepted MESSAGEs in a row, per sender, that end the traffic.
const SETTLED_RUN: usize = 5;

/// The cluster made by scripts/galera.sh, stopped (and its folder removed)
/// when dropped, also when the test panics.
struct Galera {
    dir: PathBuf,
}

impl Galera {
    fn script(&self, args: &[&str]) -> Output {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/galera.sh");
        Command::new(&script)
            .args(args)
            .env("GALERA_DIR", &self.dir)
            .env("GALERA_PORT_BASE", PORT_BASE.to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
    }

    /// Runs `galera.sh ARGS`, failing the test with its output if it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.script(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "scripts/galera.sh {} failed ({}); it needs root and Debian's \
             mariadb-server, galera-4, rsync and haproxy (it installs them):\n{text}",
            args.join(" "),
            out.status
        );
        text
    }

    /// A fresh cluster (whatever an earlier run left is stopped first).
    fn start() -> Galera {
        let galera = Galera {
            dir: std::env::temp_dir().join("softswitch-galera-test"),
        };
        galera.ok(&["stop"]);
        galera.ok(&["start"]);
        galera
    }

    fn url(&self) -> String {
        format!("mysql://softswitch:softswitch@127.0.0.1:{PORT_BASE}/softswitch")
    }

    /// One query as softswitch through port `port` (HAProxy's, or a DB
    /// node's: 24305 + N); its rows, tab-separated.
    fn query(&self, port: u16, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "-u",
                "softswitch",
                "-psoftswitch",
                "--batch",
                "--skip-column-names",
                "--connect-timeout=5",
                "softswitch",
                "-e",
                sql,
            ])
            .output()
            .expect("the mariadb client (Debian package mariadb-client)");
        assert!(
            out.status.success(),
            "{sql} on port {port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Galera {
    fn drop(&mut self) {
        let out = self.script(&["stop"]);
        if !out.status.success() {
            eprintln!(
                "scripts/galera.sh stop failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// One MESSAGE's fate: when it was sent (since the traffic began), how long
/// its answer took, and the final answer (None: none came).
#[derive(Clone, Debug)]
struct Sent {
    tag: String,
    at: Duration,
    took: Duration,
    code: Option<u16>,
}

/// The final answer in a SIPp message trace: the last status line that is
/// neither provisional nor the digest challenge.
fn final_code(trace: &str) -> Option<u16> {
    trace
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SIP/2.0 "))
        .filter_map(|rest| rest.get(..3)?.parse::<u16>().ok())
        .rfind(|code| *code >= 200 && *code != 407)
}

/// MESSAGEs from `users` (an injection file) to `to`, one after another,
/// each with the body `galera <prefix><n>`, until `stop`.
fn traffic(
    node: Arc<Switch>,
    users: PathBuf,
    to: String,
    prefix: &'static str,
    began: Instant,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Sent>>>,
) -> std::thread::JoinHandle<()> {
    // Answered 202 (bob stays offline); the body names the message.
    let scenario_file = node.variant_with(
        "uac_message_auth.xml",
        &[
            (
                "<recv response=\"200\" rtd=\"1\"",
                "<recv response=\"202\" rtd=\"1\"",
            ),
            (
                "hello from sipp-bench message [call_number]",
                "galera [tag]",
            ),
        ],
    );
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let tag = format!("{prefix}{n}");
            let at = began.elapsed();
            let (ok, trace) = sipp(
                &node,
                &scenario_file,
                &[
                    "-inf",
                    users.to_str().unwrap(),
                    "-s",
                    &to,
                    "-key",
                    "tag",
                    &tag,
                ],
            );
            let code = if ok { Some(202) } else { final_code(&trace) };
            log.lock().unwrap().push(Sent {
                tag,
                at,
                took: began.elapsed() - at,
                code,
            });
        }
    })
}

/// True once each sender's last `SETTLED_RUN` MESSAGEs, all sent after
/// `since`, were accepted.
fn settled(log: &[Sent], since: Duration) -> bool {
    ["a", "c"].iter().all(|prefix| {
        let mine: Vec<&Sent> = log
            .iter()
            .filter(|s| s.tag.starts_with(prefix) && s.at >= since)
            .collect();
        mine.len() >= SETTLED_RUN
            && mine[mine.len() - SETTLED_RUN..]
                .iter()
                .all(|s| s.code == Some(202))
    })
}

fn summary(log: &[Sent]) -> String {
    log.iter()
        .map(|s| {
            format!(
                "{:>5} sent at {:>6.2} s, answered {} after {:.2} s",
                s.tag,
                s.at.as_secs_f64(),
                s.code.map_or("nothing".into(), |c| c.to_string()),
                s.took.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root and a Galera cluster it builds: the MariaDB step of scripts/test.sh runs it (--include-ignored)"]
async fn the_switch_keeps_serving_when_the_galera_node_it_uses_dies() {
    let galera = Galera::start();
    let node = Arc::new(Switch::start_node(&galera.url(), None, "", "").await);
    let alice = add_account(&node, "alice");
    let carol = add_account(&node, "carol");
    let bob = add_account(&node, "bob");

    // HAProxy sends everyone to node 1 (port BASE + 6).
    let port = |n: u16| PORT_BASE + 5 + n;
    assert_eq!(
        galera.query(PORT_BASE, "SELECT @@port").trim(),
        port(1).to_string(),
        "HAProxy should use node 1 first"
    );

    // Two senders to an offline bob: each MESSAGE is stored, then answered 202.
    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let senders = [("a", "alice", &alice), ("c", "carol", &carol)].map(|(prefix, name, login)| {
        let users = node.users(&format!("{login}.csv"), login, &format!("{name}-pw"));
        traffic(
            node.clone(),
            users,
            bob.clone(),
            prefix,
            began,
            stop.clone(),
            log.clone(),
        )
    });

    // Some accepted first, then node 1 dies mid-traffic.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().len() < 10 {
        assert!(
            Instant::now() < deadline,
            "no traffic before the failover:\n{}\n{}",
            summary(&log.lock().unwrap()),
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed_at = began.elapsed();
    galera.ok(&["kill", "1"]);

    // The traffic goes on until both senders are served again.
    let deadline = Instant::now() + FAILOVER_WITHIN + ANSWER_WITHIN;
    while !settled(&log.lock().unwrap(), killed_at) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().expect("a sender thread panicked");
    }
    let log = log.lock().unwrap().clone();
    let status = galera.ok(&["status"]);
    let haproxy = std::fs::read_to_string(galera.dir.join("haproxy.log")).unwrap_or_default();
    let report = format!(
        "node 1 killed at {:.2} s\n{}\n{status}{haproxy}\nswitch log:\n{}",
        killed_at.as_secs_f64(),
        summary(&log),
        node.log()
    );
    println!("{report}");

    // The switch is alive and was never silent.
    let mut node = Arc::into_inner(node).expect("the senders are done");
    let running = node.running.as_mut().expect("the switch was started");
    assert!(
        matches!(running.child.try_wait(), Ok(None)),
        "the switch exited during the failover:\n{report}"
    );
    for s in &log {
        assert!(
            s.code.is_some() && s.took < ANSWER_WITHIN,
            "{} went unanswered for {:.2} s:\n{report}",
            s.tag,
            s.took.as_secs_f64()
        );
    }
    // Accepted before the kill; after it, refused only with 503, and
    // only within the failover window; served again at the end.
    for s in &log {
        let ok = if s.at + s.took < killed_at {
            s.code == Some(202)
        } else {
            s.code == Some(202) || (s.code == Some(503) && s.at < killed_at + FAILOVER_WITHIN)
        };
        assert!(ok, "{} answered {:?}:\n{report}", s.tag, s.code);
    }
    assert!(
        settled(&log, killed_at),
        "the switch was not serving again within {} s of the kill:\n{report}",
        FAILOVER_WITHIN.as_secs()
    );

    // HAProxy moved on, and the cluster went on without node 1.
    let now_on: u16 = galera
        .query(PORT_BASE, "SELECT @@port")
        .trim()
        .parse()
        .unwrap();
    assert!(
        now_on == port(2) || now_on == port(3),
        "HAProxy uses port {now_on}"
    );
    let survivor = if now_on == port(2) { port(3) } else { port(2) };
    let size = galera.query(survivor, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'");
    assert!(size.trim().ends_with("\t2"), "{size}");

    // Every accepted MESSAGE is stored once, as the switch's own CLI sees it
    // (through HAProxy) and on the node HAProxy does not use.
    let listed = node
        .site
        .ok(&["message", "list", "--to", &bob, "--limit", "10000"]);
    let on_survivor = galera.query(
        survivor,
        &format!(
            "SELECT TRIM(REPLACE(REPLACE(CAST(body AS CHAR), CHAR(13), ''), CHAR(10), '')) \
             FROM messages WHERE recipient = '{bob}'"
        ),
    );
    let accepted: Vec<&Sent> = log.iter().filter(|s| s.code == Some(202)).collect();
    for s in &accepted {
        let body = format!("galera {}", s.tag);
        let listed_times = listed
            .lines()
            .filter(|l| l.trim_end().ends_with(&format!("\t{body}")))
            .count();
        let stored_times = on_survivor.lines().filter(|l| *l == body).count();
        assert_eq!(
            (listed_times, stored_times),
            (1, 1),
            "{body} (accepted) stored (as listed, on port {survivor}):\n{listed}\n{report}"
        );
    }
    // Nothing stored that was not sent.
    assert!(
        on_survivor.lines().count() <= log.len(),
        "{on_survivor}\n{report}"
    );

    // The switch reads and writes after the failover: bob comes online and
    // gets every accepted message.
    let stored = on_survivor.lines().count();
    let (_bob_device, bob_trace) = device_taking(
        &node,
        &bob,
        "bob-pw",
        "u1",
        30_000,
        &scenario("ooc_answer_message.xml"),
        stored as u32 + 10,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered = node
            .site
            .ok(&["message", "list", "--to", &bob, "--limit", "10000"])
            .lines()
            .filter(|l| l.contains("\tdelivered\t"))
            .count();
        if delivered >= accepted.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} of {} messages delivered to bob:\n{}\n{}",
            accepted.len(),
            std::fs::read_to_string(&bob_trace).unwrap_or_default(),
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.terminate();
}
