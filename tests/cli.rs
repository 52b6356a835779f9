//! Black-box tests of the `softswitch` binary: every subcommand, the admin
//! endpoint of a running switch, and hot reload seen from outside.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_softswitch");

fn guest_wasm(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run scripts/build-guests.sh", path.display());
    path
}

/// A switch installation in a temporary folder: config file + data dir.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(extra_config: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("router.wasm");
        std::fs::copy(guest_wasm("routing_default"), &guest).unwrap();
        let config = format!(
            "[plugins]\ncache_dir = \"{cache}\"\n\n[guests.routing]\npath = \"router.wasm\"\n{extra_config}",
            cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-guest-cache").display(),
        );
        std::fs::write(dir.path().join("softswitch.toml"), config).unwrap();
        Site { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("SOFTSWITCH_CONFIG", self.path("softswitch.toml"))
            .env("SOFTSWITCH_DATA_DIR", self.path("data"))
            .env_remove("RUST_LOG");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "softswitch {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects one clear error line and a non-zero exit; returns it.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "softswitch {args:?} should have failed");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
        lines[0].to_string()
    }

    fn route(&self, from: &str, to: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["route", "--from", from, "--to", to, "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    fn populate(&self) {
        self.ok(&["account", "add", "alice", "--password", "alice-sip-secret", "--phone", "48600111222", "--username", "alice", "--display-name", "Alice"]);
        self.ok(&["account", "add", "48600333444", "--password", "bob-sip-secret", "--phone", "48600333444"]);
        self.ok(&["gateway", "add", "carrier-pl", "--prefix", "48", "--address", "127.0.0.1:5080"]);
        self.ok(&["gateway", "add", "carrier-pl-mobile", "--prefix", "486", "--address", "127.0.0.1:5081", "--transport", "tcp"]);
    }
}

#[test]
fn config_default_is_a_working_config() {
    let site = Site::new("");
    let text = site.ok(&["config", "default"]);
    assert!(text.contains("[admin]") && text.contains("deadline_ms = 50"));
    std::fs::write(site.path("default.toml"), &text).unwrap();
    let out = Command::new(BIN)
        .args(["--config", site.path("default.toml").to_str().unwrap()])
        .args(["--data-dir", site.path("other-data").to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(site.path("other-data/softswitch.db").is_file(), "--data-dir must be honoured");
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
    assert!(list.contains("alice") && list.contains("48600333444"), "{list}");
    let show = site.ok(&["account", "show", "alice"]);
    assert!(show.contains("phone: 48600111222"), "{show}");
    assert!(show.contains("dialplan_rule: DP:int-> OR onnet"), "{show}");
    assert!(!show.contains("alice-sip-secret"), "passwords are never shown");
    let db = std::fs::read(site.path("data/softswitch.db")).unwrap();
    assert!(
        !db.windows(b"alice-sip-secret".len()).any(|w| w == b"alice-sip-secret"),
        "SIP passwords are not stored in clear"
    );

    let dup = site.fails(&["account", "add", "alice", "--password", "x"]);
    assert!(dup.contains("alice"), "{dup}");
    let dup_phone = site.fails(&["account", "add", "other", "--password", "x", "--phone", "48600111222"]);
    assert!(dup_phone.contains("phone"), "{dup_phone}");

    site.ok(&["account", "del", "alice"]);
    assert!(!site.ok(&["account", "list"]).contains("alice"));
    site.fails(&["account", "show", "alice"]);
    site.fails(&["account", "del", "alice"]);
}

#[test]
fn gateways_and_the_local_dialplan_are_managed() {
    let site = Site::new("");
    site.populate();
    let list = site.ok(&["gateway", "list"]);
    assert!(list.contains("carrier-pl-mobile\tprefix=486\taddress=127.0.0.1:5081\ttransport=tcp"), "{list}");
    let bad = site.fails(&["gateway", "add", "x", "--prefix", "1", "--address", "h:1", "--transport", "carrier-pigeon"]);
    assert!(bad.contains("carrier-pigeon"), "{bad}");
    site.ok(&["gateway", "del", "carrier-pl"]);
    assert!(!site.ok(&["gateway", "list"]).contains("carrier-pl\t"));

    site.ok(&["dialplan", "add", "48", "pl.sip.example.net"]);
    site.ok(&["dialplan", "add", "1", "us.sip.example.net"]);
    let plan = site.ok(&["dialplan", "list"]);
    assert!(plan.contains("48\tpl.sip.example.net") && plan.contains("1\tus.sip.example.net"), "{plan}");
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
    assert_eq!(text.trim(), "to-gateway carrier-pl 4822123456 (caller-id 48600111222 <48600111222>)");

    let line = site.fails(&["route", "--from", "mallory", "--to", "alice"]);
    assert!(line.contains("mallory"), "{line}");
}

#[test]
fn guest_check_names_the_world_or_the_reason() {
    let site = Site::new("");
    let ok = site.ok(&["guest", "check", guest_wasm("routing_blocklist").to_str().unwrap()]);
    assert!(ok.contains("implements softswitch:routing/router@0.1.0"), "{ok}");
    let wrong = site.fails(&["guest", "check", guest_wasm("fixture_wrong_world").to_str().unwrap()]);
    assert!(wrong.contains("softswitch:routing/router@0.1.0") && wrong.contains("hello"), "{wrong}");
    let missing = site.fails(&["guest", "check", "/nonexistent.wasm"]);
    assert!(missing.contains("/nonexistent.wasm"), "{missing}");
    std::fs::write(site.path("junk.wasm"), "junk").unwrap();
    let junk = site.fails(&["guest", "check", site.path("junk.wasm").to_str().unwrap()]);
    assert!(junk.contains("not a valid WebAssembly component"), "{junk}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `softswitch run`, killed on drop.
struct Running {
    child: Child,
    base: String,
    stderr: PathBuf,
}

impl Running {
    fn start(site: &Site, port: u16) -> Running {
        let stderr = site.path("run.log");
        let child = site
            .command()
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await {
                if r.status().is_success() || r.status() == reqwest::StatusCode::FORBIDDEN {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("softswitch run exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "softswitch run never answered: {}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

#[tokio::test]
async fn the_admin_endpoint_reports_and_reloads_guests() {
    let port = free_port();
    let token = "test-admin-token-0123456789";
    let site = Site::new(&format!("\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n"));
    let mut running = Running::start(&site, port);
    let client = reqwest::Client::new();
    running.wait_ready(&client).await;
    let base = running.base.clone();

    let health: serde_json::Value = client.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");

    let denied = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let body: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(body["code"], "missing-token");
    let wrong = client.get(format!("{base}/guests")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let list = guests(&client, &base, token).await;
    assert_eq!(list[0]["name"], "routing");
    assert_eq!(list[0]["world"], "softswitch:routing/router@0.1.0");
    let first = list[0]["sha256"].as_str().unwrap().to_string();
    assert_eq!(first.len(), 64);

    let reload = client
        .post(format!("{base}/guests/routing/reload"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
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
    std::fs::copy(guest_wasm("routing_blocklist"), site.path("router.tmp")).unwrap();
    std::fs::rename(site.path("router.tmp"), &live).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = guests(&client, &base, token).await;
        if now[0]["sha256"] != first {
            break;
        }
        assert!(Instant::now() < deadline, "guest file change not picked up: {}", running.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file is refused over the API and the old version stays.
    std::fs::write(site.path("router.tmp"), b"broken").unwrap();
    std::fs::rename(site.path("router.tmp"), &live).unwrap();
    let refused = client
        .post(format!("{base}/guests/routing/reload"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
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
        assert!(Instant::now() < deadline, "SIGHUP reload not counted: {}", running.log());
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
    let site = Site::new(&format!("\n[admin]\nlisten = \"127.0.0.1:{port}\"\nallow = [\"10.0.0.0/8\"]\n"));
    let mut running = Running::start(&site, port);
    let client = reqwest::Client::new();
    running.wait_ready(&client).await;
    let r = client.get(format!("{}/health", running.base)).send().await.unwrap();
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
        .find(|l| l.starts_with("softswitch_guest_loads_total{guest=\"routing\",outcome=\"failed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}
