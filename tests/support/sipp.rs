//! SIPp (Debian's sip-tester) as real peers against a running switch:
//! the switch on known ports, one-shot SIPp runs, and SIPp devices that
//! register and stay up answering what the switch sends them.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sipp")
        .join(name)
}

/// A port free for both UDP and TCP on loopback.
pub fn free_sip_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A switch with SIP on known ports, accounts alice/bob/carol, running.
pub struct Switch {
    pub site: Site,
    pub running: Option<Running>,
    pub sip: u16,
    pub tls: u16,
    pub admin: u16,
}

impl Switch {
    pub async fn start(sip_extra: &str) -> Switch {
        Switch::start_with(sip_extra, "").await
    }

    /// Like [`Switch::start`], with `extra_config` (whole sections) added.
    pub async fn start_with(sip_extra: &str, extra_config: &str) -> Switch {
        Switch::start_tls_on("127.0.0.1", sip_extra, extra_config).await
    }

    /// Like [`Switch::start_with`], with the TLS listener on `tls_ip`
    /// (UDP and TCP stay on loopback).
    pub async fn start_tls_on(tls_ip: &str, sip_extra: &str, extra_config: &str) -> Switch {
        Switch::start_full(tls_ip, sip_extra, super::NO_API, extra_config).await
    }

    /// Like [`Switch::start_with`], with the client API listening too;
    /// returns the switch and the API's base URL (self-signed certificate:
    /// see [`api_client`]).
    pub async fn start_with_api(sip_extra: &str, extra_config: &str) -> (Switch, String) {
        Switch::start_with_api_on(free_port(), sip_extra, extra_config).await
    }

    /// Like [`Switch::start_with_api`], with the API on `port`.
    pub async fn start_with_api_on(
        port: u16,
        sip_extra: &str,
        extra_config: &str,
    ) -> (Switch, String) {
        let api = format!("listen = [\"127.0.0.1:{port}\"]\n");
        let switch = Switch::start_full("127.0.0.1", sip_extra, &api, extra_config).await;
        let base = format!("https://127.0.0.1:{port}");
        // The admin endpoint answers first; the API binds a moment later.
        let deadline = Instant::now() + Duration::from_secs(30);
        while api_client()
            .get(format!("{base}/v1/openapi.json"))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "API never answered: {}",
                switch.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (switch, base)
    }

    async fn start_full(
        tls_ip: &str,
        sip_extra: &str,
        api_section: &str,
        extra_config: &str,
    ) -> Switch {
        let mut switch = Switch::unbooted(tls_ip, sip_extra, api_section, extra_config);
        for (login, password) in [
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("carol", "carol-pw"),
        ] {
            switch
                .site
                .ok(&["account", "add", login, "--password", password]);
        }
        switch.boot().await;
        switch
    }

    /// A site on free loopback ports (SIP over UDP and TCP, TLS on
    /// `tls_ip`, the admin endpoint), not started.
    fn unbooted(tls_ip: &str, sip_extra: &str, api_section: &str, extra_config: &str) -> Switch {
        let sip = free_sip_port();
        let tls = free_port();
        let admin = free_port();
        let site = Site::build(
            &format!(
                "udp = [\"127.0.0.1:{sip}\"]\ntcp = [\"127.0.0.1:{sip}\"]\ntls = [\"{tls_ip}:{tls}\"]\n{sip_extra}\n"
            ),
            api_section,
            &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{extra_config}"),
        );
        Switch {
            site,
            running: None,
            sip,
            tls,
            admin,
        }
    }

    /// A node of a cluster on the database `db_url`: SIP on its own
    /// loopback port, cluster mode with heartbeats every 200 ms (dead after
    /// 1 s), the secret key of `key_of` (nodes sharing a database share it),
    /// no accounts added; `sip_extra` goes into the `[sip]` section. Running.
    pub async fn start_node(
        db_url: &str,
        key_of: Option<&Switch>,
        sip_extra: &str,
        extra_config: &str,
    ) -> Switch {
        let mut switch = Switch::unbooted(
            "127.0.0.1",
            sip_extra,
            super::NO_API,
            &format!(
                "\n[database]\nurl = \"{db_url}\"\n\n\
                 [cluster]\nenabled = true\nheartbeat_ms = 200\ndead_after_ms = 1000\n{extra_config}"
            ),
        );
        if let Some(other) = key_of {
            let data = switch.site.path("data");
            std::fs::create_dir_all(&data).unwrap();
            std::fs::copy(other.site.path("data/secret.key"), data.join("secret.key")).unwrap();
        }
        switch.boot().await;
        switch
    }

    pub async fn boot(&mut self) {
        let mut running = Running::start(&self.site, self.admin);
        running.wait_ready(&reqwest::Client::new()).await;
        self.running = Some(running);
    }

    /// Stops the switch as a service manager does (SIGTERM) and waits for
    /// it to exit (killed after 10 s).
    pub fn terminate(&mut self) {
        if let Some(mut r) = self.running.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &r.child.id().to_string()])
                .status();
            for _ in 0..100 {
                if matches!(r.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    /// Kills the switch without warning (SIGKILL), as a crash would.
    pub fn crash(&mut self) {
        if let Some(mut r) = self.running.take() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.sip)
    }

    pub fn log(&self) -> String {
        self.running.as_ref().map(|r| r.log()).unwrap_or_default()
    }

    /// An injection file for SIPp as the bench kit uses it: field0 = user,
    /// field1 = password, field2 = the auth keyword.
    pub fn users(&self, name: &str, user: &str, password: &str) -> PathBuf {
        let path = self.site.path(name);
        std::fs::write(
            &path,
            format!("SEQUENTIAL\n{user};{password};[authentication username={user} password={password}]\n"),
        )
        .unwrap();
        path
    }

    /// The OFFNET caller of the gateway tests, dora (48600111222, plus
    /// `account_extra` options), and a gateway `name` for numbers starting
    /// with `prefix` at 127.0.0.1:`port` over `transport`.
    pub fn dora_and_gateway(
        &self,
        account_extra: &[&str],
        name: &str,
        prefix: &str,
        port: u16,
        transport: &str,
    ) {
        let mut account = vec![
            "account",
            "add",
            "dora",
            "--password",
            "dora-pw",
            "--phone",
            "48600111222",
        ];
        account.extend_from_slice(account_extra);
        self.site.ok(&account);
        self.site.ok(&[
            "gateway",
            "add",
            name,
            "--prefix",
            prefix,
            "--address",
            &format!("127.0.0.1:{port}"),
            "--transport",
            transport,
        ]);
    }

    /// A copy of a scenario with `from` replaced by `to` (e.g. the expected code).
    pub fn variant(&self, name: &str, from: &str, to: &str) -> PathBuf {
        self.variant_with(name, &[(from, to)])
    }

    /// A copy of a scenario with each `(from, to)` replaced.
    pub fn variant_with(&self, name: &str, edits: &[(&str, &str)]) -> PathBuf {
        let mut text = std::fs::read_to_string(scenario(name)).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "{name} has no {from}");
            text = text.replace(from, to);
        }
        let path = self.site.path(&format!("variant-{}-{name}", rand_suffix()));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The value of the metric `name` (labels included) in `/metrics` text.
fn exposed<'a>(metrics: &'a str, name: &str) -> Option<&'a str> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(str::trim)
}

/// SIPp against the switch with `scenario_file`, one call, its messages
/// traced to `trace`, then `args`.
fn sipp_command(switch: &Switch, scenario_file: &Path, trace: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("sipp");
    cmd.arg(switch.target())
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
        .arg(trace)
        .args(args)
        .stdout(Stdio::null());
    cmd
}

/// One SIPp run to completion; returns (success, message trace).
pub fn sipp(switch: &Switch, scenario_file: &Path, args: &[&str]) -> (bool, String) {
    let trace = switch.site.path(&format!("sipp-{}.log", rand_suffix()));
    let out = sipp_command(switch, scenario_file, &trace, args)
        .stderr(Stdio::piped())
        .output()
        .expect("sipp (Debian package sip-tester) must be installed: scripts/setup.sh installs it");
    let log = std::fs::read_to_string(&trace).unwrap_or_default();
    (out.status.success(), log)
}

/// Like [`sipp`], in the background: the process and its message trace.
pub fn sipp_background(switch: &Switch, scenario_file: &Path, args: &[&str]) -> (Device, PathBuf) {
    let trace = switch.site.path(&format!("sipp-{}.log", rand_suffix()));
    let child = sipp_command(switch, scenario_file, &trace, args)
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) must be installed: scripts/setup.sh installs it");
    (Device(child), trace)
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A SIPp carrier answering one call on `port` over `transport` (`u1`,
/// `t1`) with `scenario`; its messages go to `carrier.log` and its errors
/// to `carrier.err` in the site.
pub fn carrier(switch: &Switch, scenario: &Path, port: u16, transport: &str) -> Device {
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-t", transport, "-p", &port.to_string(), "-i", "127.0.0.1"])
        .args(["-m", "1", "-nostdin", "-timeout", "30", "-timeout_error"])
        .args(["-trace_msg", "-message_file"])
        .arg(switch.site.path("carrier.log"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(switch.site.path("carrier.err")).unwrap())
        .spawn()
        .expect("sipp (Debian package sip-tester) must be installed: scripts/setup.sh installs it");
    Device(child)
}

/// A SIPp device process, killed when dropped (also when a test panics).
pub struct Device(pub Child);

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A device that registers and stays up answering MESSAGEs for `hold_ms`.
pub fn device(
    switch: &Switch,
    user: &str,
    password: &str,
    transport: &str,
    hold_ms: u64,
) -> (Device, PathBuf) {
    device_with(
        switch,
        user,
        password,
        transport,
        hold_ms,
        &scenario("ooc_answer_message.xml"),
    )
}

/// A device that registers and stays up for `hold_ms`, answering what the
/// switch sends it with the out-of-call scenario `ooc`.
pub fn device_with(
    switch: &Switch,
    user: &str,
    password: &str,
    transport: &str,
    hold_ms: u64,
    ooc: &Path,
) -> (Device, PathBuf) {
    device_taking(switch, user, password, transport, hold_ms, ooc, 50)
}

/// [`device_with`] answering up to `max_calls` requests from the switch
/// (out-of-call MESSAGEs count as calls for SIPp's `-m`).
pub fn device_taking(
    switch: &Switch,
    user: &str,
    password: &str,
    transport: &str,
    hold_ms: u64,
    ooc: &Path,
    max_calls: u32,
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
        .arg(ooc)
        .arg("-inf")
        .arg(&users)
        .args(["-t", transport, "-key", "domain", "localhost"])
        // One user that registers and holds (and registers again when the hold
        // ends); out-of-call MESSAGEs count as calls for -m, so allow plenty.
        .args(["-users", "1", "-m", &max_calls.to_string(), "-nostdin"])
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
    pub async fn wait_registered(&self, n: i64) {
        self.wait_metric("softswitch_sip_registered_accounts", |v| v >= n)
            .await;
    }

    /// The admin endpoint's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let token = std::fs::read_to_string(self.site.path("data/admin.token")).unwrap();
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The current value of a gauge or counter; `name` may carry its labels
    /// as exposed, e.g. `foo_total{reason="x"}`.
    pub async fn metric(&self, name: &str) -> i64 {
        let metrics = self.metrics_text().await;
        exposed(&metrics, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Like [`Switch::metric`], for a gauge that may not be an integer
    /// (NaN when it is not exposed).
    pub async fn gauge(&self, name: &str) -> f64 {
        let metrics = self.metrics_text().await;
        exposed(&metrics, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// Waits (up to 15 s) until the metric `name` satisfies `ok`.
    pub async fn wait_metric(&self, name: &str, ok: impl Fn(i64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = self.metric(name).await;
            if ok(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stuck at {value}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One authenticated MESSAGE from the account in `users` to `to`, with
    /// SIPp expecting the final answer `expect`; returns (as expected, trace).
    pub fn message(&self, users: &Path, to: &str, expect: u16) -> (bool, String) {
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
    pub fn messages_to(&self, login: &str) -> Vec<String> {
        self.site
            .ok(&["message", "list", "--to", login])
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub async fn wait_delivered(&self, login: &str, count: usize) {
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

pub fn stop(device: Device) {
    drop(device);
}

/// A baresip user agent registered over TLS, killed when dropped.
pub struct Baresip(pub Child);

impl Baresip {
    /// Registers `user` over TLS and stays up 60 s.
    pub fn start(switch: &Switch, user: &str, password: &str) -> Baresip {
        Baresip::start_with(switch, user, password, "", &[])
    }

    /// Like [`Baresip::start`], with extra account parameters (e.g.
    /// `;answermode=auto`) and commands to run (e.g. `/dial bob`). Audio is a
    /// sine source and a bridge player, so calls need no sound card.
    pub fn start_with(
        switch: &Switch,
        user: &str,
        password: &str,
        account_params: &str,
        commands: &[&str],
    ) -> Baresip {
        Baresip::start_opts(
            switch,
            user,
            password,
            &BaresipOptions {
                account_params,
                commands,
                ..BaresipOptions::default()
            },
        )
    }

    pub fn start_opts(switch: &Switch, user: &str, password: &str, o: &BaresipOptions) -> Baresip {
        let dir = switch.site.path(&format!("baresip-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = switch.site.path("data/tls/self-signed-cert.pem");
        assert!(
            cert.is_file(),
            "the switch generates its certificate at start"
        );
        let modules: String = o
            .modules
            .iter()
            .map(|m| format!("module {m}.so\n"))
            .collect();
        let codecs: String = o
            .codecs
            .iter()
            .map(|c| format!("module {c}.so\n"))
            .collect();
        // Before account.so: accounts name their media NAT and encryption
        // modules, which must be loaded by then.
        std::fs::write(
            dir.join("config"),
            format!(
                "sip_listen {listen}:0\nsip_cafile {}\nsip_trans_def tls\n\
                 module_path /usr/lib/baresip/modules\n{modules}module account.so\nmodule contact.so\nmodule menu.so\n\
                 {codecs}module ausine.so\nmodule aubridge.so\n\
                 audio_player aubridge,bridge\naudio_source ausine,440\naudio_alert aubridge,bridge\n\
                 ausrc_srate 48000\nauplay_srate 48000\nausrc_channels 2\nauplay_channels 2\n{extra}",
                cert.display(),
                listen = o.listen,
                extra = o.extra_config,
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@localhost;transport=tls>;auth_pass={password};\
                 outbound=\"sip:{proxy}:{tls};transport=tls\";regint=600{params}\n",
                proxy = o.proxy,
                tls = switch.tls,
                params = o.account_params,
            ),
        )
        .unwrap();
        let mut cmd = match o.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "baresip"]);
                c
            }
            None => Command::new("baresip"),
        };
        cmd.arg("-f").arg(&dir).args(["-t", "60"]);
        if o.verbose {
            cmd.arg("-v");
        }
        for c in o.commands {
            cmd.arg("-e").arg(c);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("baresip (Debian package baresip-core) must be installed: scripts/setup.sh installs it");
        Baresip(child)
    }
}

/// How a baresip is set up beyond its account.
pub struct BaresipOptions<'a> {
    /// Run inside this network namespace.
    pub netns: Option<&'a str>,
    /// Address baresip listens on.
    pub listen: &'a str,
    /// Address of the switch's TLS listener.
    pub proxy: &'a str,
    /// Extra modules, e.g. `ice`, `srtp`.
    pub modules: &'a [&'a str],
    pub account_params: &'a str,
    pub commands: &'a [&'a str],
    pub verbose: bool,
    /// Audio codec modules, in the order offered (`g711`, `opus`).
    pub codecs: &'a [&'a str],
    /// Lines added to the config file (e.g. `snd_path` for `sndfile`).
    pub extra_config: &'a str,
}

impl Default for BaresipOptions<'_> {
    fn default() -> Self {
        BaresipOptions {
            netns: None,
            listen: "127.0.0.1",
            proxy: "127.0.0.1",
            modules: &[],
            account_params: "",
            commands: &[],
            verbose: false,
            codecs: &["g711"],
            extra_config: "",
        }
    }
}

impl Baresip {
    /// Asks baresip to quit (SIGTERM), which hangs up its calls with BYE.
    pub fn quit(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// alice calls `callee`'s voicemail and leaves `tone_ms` of a `hz` tone
/// (`ivr_deposit_uac.xml`); (SIPp succeeded, its trace).
pub fn leave_voicemail(switch: &Switch, callee: &str, tone_ms: u64, hz: f64) -> (bool, String) {
    let tone = media::tone::sine(hz, 8000, Duration::from_millis(tone_ms));
    let pcap = switch.site.path(&format!("tone-{}.pcap", rand_suffix()));
    super::audio::write_pcma_pcap(&pcap, &tone);
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let scenario = switch.variant_with(
        "ivr_deposit_uac.xml",
        &[
            ("MEDIA_PORT", &sink.local_addr().unwrap().port().to_string()),
            ("TONE_PCAP", pcap.to_str().unwrap()),
            ("TONE_MS", &(tone_ms + 500).to_string()),
        ],
    );
    let users = switch.users("alice.csv", "alice", "alice-pw");
    sipp(
        switch,
        &scenario,
        &["-inf", users.to_str().unwrap(), "-s", callee],
    )
}

/// presence_watch.xml expecting `notifies` NOTIFYs (the event `event`)
/// before it unsubscribes, written into `site`.
pub fn watch_scenario(site: &Site, notifies: usize, event: &str) -> PathBuf {
    let text = std::fs::read_to_string(scenario("presence_watch.xml")).unwrap();
    let start = text.find("<!--NOTIFY-->").unwrap();
    let end = text.find("<!--/NOTIFY-->").unwrap();
    let block = &text[start..end];
    let text = format!(
        "{}{}{}",
        &text[..start],
        block.repeat(notifies),
        &text[end..]
    )
    .replace("Event: presence", &format!("Event: {event}"));
    let path = site.path(&format!("watch-{}.xml", rand_suffix()));
    std::fs::write(&path, text).unwrap();
    path
}

/// The NOTIFY requests a SIPp trace received, in order.
pub fn notifies(trace: &str) -> Vec<String> {
    trace
        .split("message received")
        .skip(1)
        .filter_map(|chunk| {
            let start = chunk.find("NOTIFY sip:")?;
            let msg = &chunk[start..];
            // The next trace separator line starts with dashes.
            let end = msg.find("\n----------").unwrap_or(msg.len());
            Some(msg[..end].to_string())
        })
        .filter(|m| m.starts_with("NOTIFY "))
        .collect()
}

/// An account named `name` plus a suffix unique to this run (a MariaDB
/// database is shared with other tests and earlier runs), with the
/// password `<name>-pw`; its login.
pub fn add_account(switch: &Switch, name: &str) -> String {
    let login = format!("{name}-{}", rand_suffix());
    switch.site.ok(&[
        "account",
        "add",
        &login,
        "--password",
        &format!("{name}-pw"),
    ]);
    login
}

/// `softswitch cdr list` lines for a login, newest first.
pub fn cdrs(switch: &Switch, login: &str) -> Vec<String> {
    switch
        .site
        .ok(&["cdr", "list", "--login", login])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `login` has `n` call records; returns them newest first.
pub async fn wait_cdrs(switch: &Switch, login: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = cdrs(switch, login);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{login} has call records {lines:?}\n{}",
            switch.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 10 s) until a SIPp trace file contains `needle`; its text.
pub async fn wait_trace(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never showed {needle:?}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
