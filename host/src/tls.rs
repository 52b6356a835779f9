//! TLS server configuration shared by SIP over TLS and the HTTPS API: the
//! configured certificate, or a self-signed one generated into the data
//! directory for local use; and the client configuration the switch uses
//! toward carriers (gateways over TLS).
//!
//! Servers speak TLS 1.3 and 1.2 only. Their certificate is read again when
//! its files change on disk (looked at every [`WATCH_EVERY`], and at once on
//! SIGHUP): a renewed certificate serves the next handshake, no restart,
//! and connections already up keep theirs. A replacement that does not load
//! (half-written, key not matching) is logged and the current one stays.
//! Each certificate's expiry is in `/metrics`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often certificate files are looked at for a change.
pub const WATCH_EVERY: Duration = Duration::from_secs(10);

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// The self-signed certificate could not be generated or written.
    #[error("cannot generate a self-signed certificate in {path}: {message}")]
    Generate { path: PathBuf, message: String },
    /// rustls refused the certificate and key.
    #[error("invalid certificate or key: {0}")]
    Invalid(String),
}

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub struct CertSource {
    /// Configured PEM files; `None` means self-signed in `generated_dir`.
    pub files: Option<(PathBuf, PathBuf)>,
    pub generated_dir: PathBuf,
    /// Names the self-signed certificate is issued for.
    pub names: Vec<String>,
}

/// Installs ring as rustls' process-wide crypto provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Returns the (certificate, key) paths, generating a self-signed pair when
/// none is configured and none was generated before.
pub fn ensure_cert(source: &CertSource) -> Result<(PathBuf, PathBuf), TlsError> {
    if let Some((cert, key)) = &source.files {
        return Ok((cert.clone(), key.clone()));
    }
    let dir = &source.generated_dir;
    let cert_path = dir.join("self-signed-cert.pem");
    let key_path = dir.join("self-signed-key.pem");
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let generate_err = |e: &dyn std::fmt::Display| TlsError::Generate {
        path: dir.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| generate_err(&e))?;
    let certified =
        rcgen::generate_simple_self_signed(source.names.clone()).map_err(|e| generate_err(&e))?;
    crate::app::write_private(&key_path, &certified.signing_key.serialize_pem())
        .map_err(|e| generate_err(&e))?;
    std::fs::write(&cert_path, certified.cert.pem()).map_err(|e| generate_err(&e))?;
    tracing::info!(cert = %cert_path.display(), names = ?source.names, "no TLS certificate configured: generated a self-signed one");
    Ok((cert_path, key_path))
}

/// The certificates in a PEM file; a file with none is an error.
fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(path, e))?;
    if certs.is_empty() {
        return Err(read_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// A certificate served by a listener, read again when its files change.
#[derive(Debug)]
pub struct ServedCert {
    /// The listener it serves (`sip`, `api`): the metric's label.
    listener: &'static str,
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last read.
    stamp: Mutex<Option<(SystemTime, SystemTime)>>,
    /// The leaf certificate's notAfter, Unix seconds.
    not_after: AtomicI64,
}

/// Every served certificate, for the watcher, SIGHUP and the metrics.
static SERVED: Mutex<Vec<Weak<ServedCert>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn stamp_of(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((modified(cert)?, modified(key)?))
}

/// The chain and key in the files, checked to belong together, and the
/// leaf's notAfter.
fn load_certified(cert: &Path, key: &Path) -> Result<(CertifiedKey, i64), TlsError> {
    install_crypto_provider();
    let certs = pem_certificates(cert)?;
    let not_after = x509_parser::parse_x509_certificate(&certs[0])
        .map_err(|e| read_err(cert, format!("not an X.509 certificate: {e}")))?
        .1
        .validity()
        .not_after
        .timestamp();
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, e))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key_der, &provider)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    Ok((certified, not_after))
}

impl ServedCert {
    /// Reads the files again if they changed since last read (or if
    /// `force`); true if a new certificate is served from now on.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let stamp = stamp_of(&self.cert_path, &self.key_path);
        if !force && stamp == *lock(&self.stamp) {
            return Ok(false);
        }
        let (certified, not_after) = load_certified(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
        *lock(&self.stamp) = stamp;
        self.not_after.store(not_after, Ordering::Relaxed);
        Ok(true)
    }

    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// The served certificate's notAfter, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A rustls server configuration (TLS 1.3 and 1.2) serving the certificate
/// in the files, which is read again when they change; `listener` names it
/// in logs and metrics.
pub fn server_config(
    listener: &'static str,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(served_config(listener, cert, key)?.0)
}

/// [`server_config`] and the certificate it serves.
pub fn served_config(
    listener: &'static str,
    cert: &Path,
    key: &Path,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ServedCert>), TlsError> {
    let stamp = stamp_of(cert, key);
    let (certified, not_after) = load_certified(cert, key)?;
    let served = Arc::new(ServedCert {
        listener,
        cert_path: cert.to_path_buf(),
        key_path: key.to_path_buf(),
        current: RwLock::new(Arc::new(certified)),
        stamp: Mutex::new(stamp),
        not_after: AtomicI64::new(not_after),
    });
    let config = rustls::ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_cert_resolver(served.clone());
    let mut all = lock(&SERVED);
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(&served));
    Ok((Arc::new(config), served))
}

/// The certificates being served.
pub fn served() -> Vec<Arc<ServedCert>> {
    lock(&SERVED).iter().filter_map(Weak::upgrade).collect()
}

/// Reads again every served certificate whose files changed (all of them
/// when `force`: SIGHUP); failures are logged and leave the current one.
pub fn reload_all(force: bool) {
    for served in served() {
        match served.reload(force) {
            Ok(true) => tracing::info!(
                listener = served.listener,
                cert = %served.cert_path.display(),
                not_after = served.not_after(),
                "TLS certificate reloaded"
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(
                listener = served.listener,
                error = %e,
                "TLS certificate not reloaded: the current one stays"
            ),
        }
    }
}

/// Looks for changed certificate files every `every` until the runtime ends.
pub fn spawn_watch(every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            // Two stat calls per certificate: no need for a blocking thread.
            reload_all(false);
        }
    });
}

/// A rustls client configuration that verifies servers against the
/// Mozilla roots (webpki-roots, compiled in: no dependence on what the host
/// happens to have installed) plus the CA certificates in the PEM file `ca`,
/// for carriers with a private CA.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        for cert in pem_certificates(ca)? {
            roots
                .add(cert)
                .map_err(|e| read_err(ca, format!("not a usable CA certificate: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_generated_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let source = CertSource {
            files: None,
            generated_dir: dir.path().join("tls"),
            names: vec!["localhost".into(), "127.0.0.1".into()],
        };
        let (cert, key) = ensure_cert(&source).unwrap();
        let first = std::fs::read(&cert).unwrap();
        server_config("test", &cert, &key).unwrap();
        let (cert2, _) = ensure_cert(&source).unwrap();
        assert_eq!(
            std::fs::read(cert2).unwrap(),
            first,
            "generated once, then reused"
        );
    }

    /// A certificate for `name` valid until `not_after` (Unix seconds), as
    /// PEM files in `dir`.
    fn write_cert(dir: &Path, name: &str, not_after: i64) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(not_after as u64);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn served_name(served: &ServedCert) -> String {
        let cert = served.current.read().unwrap().cert[0].clone();
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names[0]
            .to_string()
    }

    #[test]
    fn a_certificate_changed_on_disk_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_cert(dir.path(), "one.example", 2_000_000_000);
        let (config, served) = served_config("test", &cert, &key).unwrap();
        assert_eq!(served_name(&served), "DNSName(one.example)");
        assert_eq!(served.not_after(), 2_000_000_000);
        assert!(
            !served.reload(false).unwrap(),
            "unchanged files are not read"
        );
        // No TLS 1.1 or older among what the server offers.
        assert!(config.crypto_provider().cipher_suites.iter().all(|s| {
            matches!(
                s.version().version,
                rustls::ProtocolVersion::TLSv1_2 | rustls::ProtocolVersion::TLSv1_3
            )
        }));

        // Renewed: the files' times move on (set explicitly: a second may
        // not have passed).
        write_cert(dir.path(), "two.example", 2_100_000_000);
        let later = SystemTime::now() + Duration::from_secs(5);
        for p in [&cert, &key] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        assert!(served.reload(false).unwrap());
        assert_eq!(served_name(&served), "DNSName(two.example)");
        assert_eq!(served.not_after(), 2_100_000_000);

        // A key that does not match: refused, the renewed one stays.
        let other = tempfile::tempdir().unwrap();
        let (_, wrong_key) = write_cert(other.path(), "x.example", 2_000_000_000);
        std::fs::copy(&wrong_key, &key).unwrap();
        assert!(served.reload(true).is_err());
        assert_eq!(served_name(&served), "DNSName(two.example)");
        assert!(crate::tls::served().iter().any(|s| Arc::ptr_eq(s, &served)));
    }

    #[test]
    fn a_gateway_ca_file_is_read_or_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let source = CertSource {
            files: None,
            generated_dir: dir.path().to_path_buf(),
            names: vec!["127.0.0.1".into()],
        };
        let (cert, _) = ensure_cert(&source).unwrap();
        client_config(None).unwrap();
        client_config(Some(&cert)).unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
        let err = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_missing_configured_file_is_a_clear_error() {
        let err = server_config(
            "test",
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
