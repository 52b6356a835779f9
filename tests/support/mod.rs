//! Test support shared by the black-box tests: a switch installation in a
//! temporary folder, the `softswitch` binary, and a running switch.

#![allow(dead_code)]

pub mod audio;
pub mod browser;
pub mod netns;
pub mod push;
pub mod sipp;
pub mod smtp;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_softswitch");

/// The entry named `name` in the admin endpoint's `/guests` answer.
pub fn guest_named(guests: &serde_json::Value, name: &str) -> serde_json::Value {
    guests
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {guests}"))
}

/// `wasm` with a custom section appended: another build of a guest (another
/// SHA-256) that behaves the same, for hot-swap tests.
pub fn rebuilt(wasm: &[u8], note: &str) -> Vec<u8> {
    let name = b"softswitch-test-build";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(note.as_bytes());
    assert!(payload.len() < 128, "one-byte LEB128 size");
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

pub fn guest_wasm(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-guests.sh (the README's test command does)",
        path.display()
    );
    path
}

/// An `[ivr]` section: the repository's prompts and the built IVR guests,
/// with `services` (name, guest file stem) added or replacing the defaults.
pub fn ivr_section(services: &[(&str, &str)]) -> String {
    let prompts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    let mut all: Vec<(&str, &str)> = vec![
        ("code-readout", "ivr_code_readout"),
        ("voicemail-deposit", "ivr_voicemail_deposit"),
        ("voicemail", "ivr_voicemail_access"),
        ("voicemail-playback", "ivr_voicemail_access"),
        ("greeting", "ivr_greeting"),
    ];
    for (name, stem) in services {
        all.retain(|(n, _)| n != name);
        all.push((name, stem));
    }
    let mut out = format!("\n[ivr]\nprompts = \"{}\"\n", prompts.display());
    for (name, stem) in all {
        out.push_str(&format!(
            "[ivr.services.{name}]\npath = \"{}\"\n",
            guest_wasm(stem).display()
        ));
    }
    out
}

/// The `[api]` section of sites that do not test the client API: no
/// listener, so parallel tests never compete for its default port.
const NO_API: &str = "listen = []\n";

/// A switch installation in a temporary folder: config file + data dir.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new(extra_config: &str) -> Site {
        Site::build(
            "udp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\ntls = [\"127.0.0.1:0\"]\n",
            NO_API,
            extra_config,
        )
    }

    /// A site with the client API configured by `api_section` (the body of
    /// its `[api]` section) and SIP over UDP and TCP on `sip` (0: any port).
    pub fn with_api(sip: u16, api_section: &str, extra_config: &str) -> Site {
        Site::build(
            &format!(
                "udp = [\"127.0.0.1:{sip}\"]\ntcp = [\"127.0.0.1:{sip}\"]\ntls = [\"127.0.0.1:0\"]\n"
            ),
            api_section,
            extra_config,
        )
    }

    /// A site whose SIP listeners are on known ports: UDP and TCP on `sip`,
    /// TLS on `tls`; `sip_extra` goes into the `[sip]` section.
    pub fn with_sip(sip: u16, tls: u16, sip_extra: &str, extra_config: &str) -> Site {
        Site::build(
            &format!(
                "udp = [\"127.0.0.1:{sip}\"]\ntcp = [\"127.0.0.1:{sip}\"]\ntls = [\"127.0.0.1:{tls}\"]\n{sip_extra}\n"
            ),
            NO_API,
            extra_config,
        )
    }

    fn build(sip_section: &str, api_section: &str, extra_config: &str) -> Site {
        // The default WSS listener's port is fixed: tests running side by
        // side would compete for it, so a site has none unless the test
        // configures one.
        // First in the section: a test's sip text may go on with tables of
        // its own.
        let sip_section = if sip_section.contains("wss =") {
            sip_section.to_string()
        } else {
            format!("wss = []\n{sip_section}")
        };
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("router.wasm");
        std::fs::copy(guest_wasm("routing_default"), &guest).unwrap();
        // The default STUN port is fixed; tests running side by side each get
        // their own unless the test configures STUN itself. Not port 0: the
        // kernel could hand STUN's listener a port `free_port` gave this
        // test for the API, which then cannot listen.
        let stun_section = if extra_config.contains("[stun]") {
            String::new()
        } else {
            let port = sipp::free_sip_port();
            format!("\n[stun]\nudp = [\"127.0.0.1:{port}\"]\ntcp = [\"127.0.0.1:{port}\"]\n")
        };
        // The IVR services with the built guests and the repository's
        // prompts, unless the test configures them itself.
        let ivr_section = if extra_config.contains("[ivr]") {
            String::new()
        } else {
            ivr_section(&[])
        };
        let config = format!(
            "[plugins]\ncache_dir = \"{cache}\"\n\n[sip]\n{sip_section}\n[api]\n{api_section}\n[guests.routing]\npath = \"router.wasm\"\n{extra_config}{stun_section}{ivr_section}",
            cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("cli-guest-cache")
                .display(),
        );
        std::fs::write(dir.path().join("softswitch.toml"), config).unwrap();
        Site { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("SOFTSWITCH_CONFIG", self.path("softswitch.toml"))
            .env("SOFTSWITCH_DATA_DIR", self.path("data"))
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "softswitch {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects one clear error line and a non-zero exit; returns it.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "softswitch {args:?} should have failed"
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
        lines[0].to_string()
    }

    pub fn route(&self, from: &str, to: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["route", "--from", from, "--to", to, "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    pub fn populate(&self) {
        self.ok(&[
            "account",
            "add",
            "alice",
            "--password",
            "alice-sip-secret",
            "--phone",
            "48600111222",
            "--username",
            "alice",
            "--display-name",
            "Alice",
        ]);
        self.ok(&[
            "account",
            "add",
            "48600333444",
            "--password",
            "bob-sip-secret",
            "--phone",
            "48600333444",
        ]);
        self.ok(&[
            "gateway",
            "add",
            "carrier-pl",
            "--prefix",
            "48",
            "--address",
            "127.0.0.1:5080",
        ]);
        self.ok(&[
            "gateway",
            "add",
            "carrier-pl-mobile",
            "--prefix",
            "486",
            "--address",
            "127.0.0.1:5081",
            "--transport",
            "tcp",
        ]);
    }
}

/// A loopback TCP port nobody listens on, never the same twice in one test
/// process. Taken below the kernel's ephemeral range: a port from that
/// range, released again, may be handed by the kernel to any later bind
/// of port 0 or outgoing connection (the switch's own TLS listener on port
/// 0 got the port a test had chosen for its API, in a CI run) before the
/// switch binds it.
pub fn free_port() -> u16 {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(12_000));
    let span = u32::from(high - low);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    // Test processes running side by side start at different places.
    let mut port = next.unwrap_or_else(|| {
        let spread = (std::process::id().wrapping_mul(7919)) % span;
        low + u16::try_from(spread).unwrap_or(0)
    });
    for _ in 0..span {
        let candidate = port;
        port = if port + 1 >= high { low } else { port + 1 };
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free loopback port below {high}");
}

/// A running `softswitch run`, killed on drop.
pub struct Running {
    pub child: Child,
    pub base: String,
    pub stderr: PathBuf,
}

impl Running {
    pub fn start(site: &Site, port: u16) -> Running {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        // A switch whose guests are not in the compiled-guest cache yet
        // compiles them first: a 19 MB Python guest alone takes most of a
        // minute when the tests beside it hold both cores.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await
                && (r.status().is_success() || r.status() == reqwest::StatusCode::FORBIDDEN)
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("softswitch run exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "softswitch run never answered: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for the switch's HTTPS API with its self-signed certificate.
pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// The bearer token `login` gets from `POST {base}/v1/login` with the
/// access password `password`.
pub async fn api_token(
    client: &reqwest::Client,
    base: &str,
    login: &str,
    password: &str,
) -> String {
    let r: serde_json::Value = client
        .post(format!("{base}/v1/login"))
        .json(&serde_json::json!({ "id": login, "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned()
}

/// A TLS client trusting only the self-signed certificate `site`'s switch
/// generated (SIP TLS, WSS and the client API share it), for
/// `127.0.0.1`.
pub fn trusting_connector(site: &Site) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let cert = std::fs::read(site.path("data/tls/self-signed-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&cert) {
        roots.add(c.unwrap()).unwrap();
    }
    softswitch::tls::install_crypto_provider();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}
