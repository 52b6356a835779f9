//! TLS server configuration shared by SIP over TLS and (later) the HTTPS API:
//! the configured certificate, or a self-signed one generated into the data
//! directory for local use; and the client configuration the switch uses
//! toward carriers (gateways over TLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// A rustls server configuration for the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    install_crypto_provider();
    let certs = pem_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, e))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    Ok(Arc::new(config))
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
        server_config(&cert, &key).unwrap();
        let (cert2, _) = ensure_cert(&source).unwrap();
        assert_eq!(
            std::fs::read(cert2).unwrap(),
            first,
            "generated once, then reused"
        );
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
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
