//! Local stand-ins for the push services the switch cannot reach from a
//! test machine: HTTPS servers on loopback that speak HTTP/2 (APNs only
//! speaks HTTP/2; FCM both) and HTTP/1.1, record every request, and answer
//! what the test tells them to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One request a stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub http2: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }
}

/// An answer: status, headers, body, and how long to wait before giving it.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Responder = Box<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A running stand-in; stops when dropped.
pub struct StandIn {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    responder: Arc<Mutex<Responder>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA and a certificate it issued for 127.0.0.1 and localhost: the CA
/// goes into the switch's `push.ca_file`, as an operator would trust their
/// own gateway's CA.
pub struct TestPki {
    pub ca_file: PathBuf,
    tls: Arc<rustls::ServerConfig>,
}

impl TestPki {
    pub fn new(dir: &Path) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let ca_file = dir.join("push-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TestPki {
            ca_file,
            tls: Arc::new(tls),
        }
    }
}

impl StandIn {
    /// An HTTPS stand-in (HTTP/2 or HTTP/1.1 by ALPN) answering with `respond`.
    pub async fn https(
        pki: &TestPki,
        respond: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> StandIn {
        StandIn::serve(Some(pki.tls.clone()), Box::new(respond)).await
    }

    /// A plain-HTTP stand-in (a UnifiedPush server on loopback).
    pub async fn http(respond: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> StandIn {
        StandIn::serve(None, Box::new(respond)).await
    }

    async fn serve(tls: Option<Arc<rustls::ServerConfig>>, respond: Responder) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let responder = Arc::new(Mutex::new(respond));
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let (seen2, responder2) = (seen.clone(), responder.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, responder, acceptor) =
                    (seen2.clone(), responder2.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (seen, responder) = (seen.clone(), responder.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(answer(req, &seen, &responder).await)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        StandIn {
            addr,
            seen,
            responder,
            task,
        }
    }

    /// `https://127.0.0.1:PORT` (or `http://`).
    pub fn base(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    /// Answers from now on with `respond`.
    pub fn answer_with(&self, respond: impl Fn(&Seen) -> Answer + Send + Sync + 'static) {
        *self.responder.lock().unwrap() = Box::new(respond);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests whose path starts with `prefix` arrived;
    /// returns them.
    pub async fn wait_for(&self, prefix: &str, n: usize, log: impl Fn() -> String) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found: Vec<Seen> = self
                .seen()
                .into_iter()
                .filter(|s| s.path.starts_with(prefix))
                .collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests to {prefix} arrived: {:?}\n{}",
                found.len(),
                self.seen(),
                log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    seen: &Mutex<Vec<Seen>>,
    responder: &Mutex<Responder>,
) -> hyper::Response<Full<Bytes>> {
    let http2 = req.version() == hyper::Version::HTTP_2;
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let s = Seen {
        method,
        path,
        http2,
        headers,
        body,
    };
    let a = (responder.lock().unwrap())(&s);
    seen.lock().unwrap().push(s);
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    let mut response = hyper::Response::builder().status(a.status);
    for (n, v) in &a.headers {
        response = response.header(n, v);
    }
    response.body(Full::new(Bytes::from(a.body))).unwrap()
}

fn openssl(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("openssl (scripts/setup.sh installs it): {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// A Firebase-style service account in `dir` whose token endpoint is
/// `token_uri` (a fresh 2048-bit RSA key, made with openssl): the file's
/// path, and the public key as PKCS#1 DER (to check RS256 signatures).
pub fn service_account(
    dir: &Path,
    token_uri: &str,
    project: &str,
    client_email: &str,
) -> Result<(PathBuf, Vec<u8>), String> {
    let key = dir.join("fcm-key.pem");
    let public = dir.join("fcm-public.der");
    let (key_arg, public_arg) = (key.display().to_string(), public.display().to_string());
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &key_arg,
    ])?;
    openssl(&[
        "rsa",
        "-in",
        &key_arg,
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        &public_arg,
    ])?;
    let file = dir.join("service-account.json");
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": "sa-key-1",
        "private_key": std::fs::read_to_string(&key).map_err(|e| e.to_string())?,
        "client_email": client_email,
        "token_uri": token_uri,
    });
    std::fs::write(&file, json.to_string()).map_err(|e| e.to_string())?;
    Ok((file, std::fs::read(&public).map_err(|e| e.to_string())?))
}
