//! Headless Chromium (Debian's chromium and chromium-driver) driven over
//! WebDriver with fantoccini: the client API's e-mailed pages and the
//! portal's web communicator.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::free_port;

/// chromedriver (Debian package chromium-driver) on a free loopback port,
/// killed on drop; each browser gets a fresh profile under a temp dir.
pub struct ChromeDriver {
    child: std::process::Child,
    port: u16,
    profile: tempfile::TempDir,
    sessions: AtomicUsize,
}

/// The Chromium binary itself (Debian's /usr/bin/chromium is a wrapper
/// script that adds flags of its own from /etc/chromium.d).
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// Flags for pages that use WebRTC: a fake microphone (a beeping tone) that
/// needs no permission prompt, host candidates on loopback (the tests' only
/// network), and audio that plays without a user gesture.
pub const MEDIA_FLAGS: &[&str] = &[
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
];

impl ChromeDriver {
    pub async fn start() -> ChromeDriver {
        assert!(
            Path::new(CHROMIUM).is_file(),
            "{CHROMIUM} is missing: the Chromium tests need the Debian package chromium (scripts/setup.sh installs it)"
        );
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        // Its own process group, which the browsers it starts join: a
        // test that fails before closing its browsers still ends them all
        // (see Drop).
        let child = std::process::Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver is missing: the Chromium tests need the Debian package chromium-driver (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ChromeDriver {
            child,
            port,
            profile,
            sessions: AtomicUsize::new(0),
        }
    }

    /// A headless Chromium session that accepts the switch's self-signed
    /// certificate and talks to nothing but the pages it is sent to.
    pub async fn browser(&self) -> fantoccini::Client {
        self.browser_with(&[]).await
    }

    /// Like [`ChromeDriver::browser`], with `extra` flags (e.g.
    /// [`MEDIA_FLAGS`]). Each session has a profile folder of its own, so
    /// several browsers can run side by side.
    pub async fn browser_with(&self, extra: &[&str]) -> fantoccini::Client {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let user_data = self.profile.path().join(format!("user-data-{n}"));
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--ignore-certificate-errors".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", user_data.display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Chromium did not start through chromedriver: {e}; chromedriver log: {}",
                    std::fs::read_to_string(self.profile.path().join("chromedriver.log"))
                        .unwrap_or_default()
                )
            })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // chromedriver's process group: it and every browser process it
        // started. `--` makes `kill` read `-PGID` as a process group, not
        // as an option; the group is chromedriver's own (never 0 or 1).
        let group = self.child.id();
        if group > 1 {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{group}")])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the page's body. Right after a form is submitted the next
/// page may still be loading (its body not there yet, or gone under the
/// element just found: seen on a loaded machine), so it tries again for
/// up to 10 s.
pub async fn page_text(browser: &fantoccini::Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = match browser.find(fantoccini::Locator::Css("body")).await {
            Ok(body) => match body.text().await {
                Ok(text) => return text,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < deadline, "no page body: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
