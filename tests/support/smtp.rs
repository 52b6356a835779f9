//! A real SMTP server on loopback for the e-mail tests.

use std::time::{Duration, Instant};

use super::free_port;

/// A real SMTP server on loopback (Debian's python3-aiosmtpd) storing what
/// it receives in a maildir.
pub struct SmtpSink {
    child: std::process::Child,
    pub port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        SmtpSink::start_on(free_port()).await
    }

    /// On a given port (a test that starts the server late, an outage).
    pub async fn start_on(port: u16) -> SmtpSink {
        let maildir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(maildir.path().join(sub)).unwrap();
        }
        let child = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd is needed: run scripts/setup.sh");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the SMTP sink never listened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        SmtpSink {
            child,
            port,
            maildir,
        }
    }

    /// The next message not seen yet, as text.
    pub async fn next(&self, seen: &mut Vec<std::path::PathBuf>) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(dir) = std::fs::read_dir(self.maildir.path().join("new")) {
                for entry in dir.flatten() {
                    let path = entry.path();
                    if !seen.contains(&path) {
                        seen.push(path.clone());
                        return std::fs::read_to_string(path).unwrap();
                    }
                }
            }
            assert!(Instant::now() < deadline, "no e-mail arrived within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
