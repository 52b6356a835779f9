//! The self-care portal and its web communicator (issue 20): static files
//! (HTML, CSS, JavaScript modules, the bundled JsSIP) that
//! `scripts/build-portal.sh` writes into `portal/dist`, served on the client
//! API's HTTPS listeners under `/portal/`, plus `/portal/config.json`, which
//! tells the page where the switch's SIP-over-WebSocket listener is.
//!
//! The pages call the client API (`/v1/`) from JavaScript with the bearer
//! token that `POST /v1/login` returns, sent in the `Authorization` header
//! and never in a cookie: a page of another site cannot make the browser
//! attach it, so the portal's forms need no CSRF tokens.
//!
//! Every answer under `/portal/` (errors included) carries the security
//! headers of [`security_headers`]: a Content-Security-Policy allowing only
//! the portal's own scripts and styles (no inline script) and connections
//! to the API and the WSS listener, no framing, no MIME sniffing, no
//! referrer. Only files inside the configured folder, of the types the
//! portal is made of, are served: a path is decoded once and each segment
//! checked ([`relative_path`]), then the file's real path (links resolved)
//! must still be inside the folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::{Deserialize, Serialize};

/// `[portal]`: the self-care portal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    /// Folder of the built portal (`scripts/build-portal.sh` writes
    /// `portal/dist`); relative paths start at the config file's folder (the
    /// current folder without one). Empty: no portal.
    pub dir: String,
    /// The `wss://` URL the communicator registers over, for a switch
    /// behind a proxy or a name other than the page's; empty means
    /// `wss://<the page's host>:<port of the first sip.wss listener>`.
    pub wss_url: String,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            // Where the build script puts it in a checkout: `./scripts/run.sh`
            // runs the switch from the repository's folder.
            dir: "portal/dist".into(),
            wss_url: String::new(),
        }
    }
}

impl PortalConfig {
    /// Makes a relative `dir` relative to `base` (the config file's folder).
    pub fn rebase(&mut self, base: &Path) {
        if !self.dir.is_empty() && Path::new(&self.dir).is_relative() {
            self.dir = base.join(&self.dir).to_string_lossy().into_owned();
        }
    }
}

/// Why a request under `/portal/` is not answered with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortalError {
    /// The path has a segment that is empty, `.` or `..`, hidden, or holds
    /// a character no portal file name has (`/` or `\` once decoded, NUL,
    /// `%`, ...), or bad percent-encoding: refused without touching the disk.
    #[error("refused path")]
    RefusedPath,
    /// No such file in the portal folder (or a folder, or a link leading
    /// out of it).
    #[error("no such file")]
    NotFound,
    /// A file of a type the portal does not use.
    #[error("file type not served")]
    TypeNotServed,
    /// The configured folder does not exist: the portal was not built.
    #[error("the portal is not built: run scripts/build-portal.sh")]
    NotBuilt,
    /// Only GET and HEAD are answered.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The file could not be read.
    #[error("cannot read the file")]
    Unreadable,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let status = match self {
            PortalError::RefusedPath => StatusCode::BAD_REQUEST,
            PortalError::NotFound | PortalError::TypeNotServed => StatusCode::NOT_FOUND,
            PortalError::NotBuilt => StatusCode::SERVICE_UNAVAILABLE,
            PortalError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PortalError::Unreadable => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            format!("{self}\n"),
        )
            .into_response();
        if self == PortalError::MethodNotAllowed {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

/// What the portal's handlers share.
#[derive(Debug)]
pub struct Portal {
    /// The configured folder (not resolved: the portal may be built after
    /// the switch started); `None` when `dir` is empty.
    dir: Option<PathBuf>,
    /// `portal.wss_url`, or empty.
    wss_url: String,
    /// Port of the first `sip.wss` listener.
    wss_port: Option<u16>,
    /// The SIP domain the communicator registers in.
    sip_domain: String,
}

/// Portal files larger than this are not read into memory (the bundled
/// JsSIP, the largest, is about 250 KB).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Path segments at most: the portal's tree is two levels deep.
const MAX_SEGMENTS: usize = 8;

impl Portal {
    pub fn new(config: &PortalConfig, wss: &[SocketAddr], sip_domain: &str) -> Self {
        let dir = (!config.dir.is_empty()).then(|| PathBuf::from(&config.dir));
        match &dir {
            Some(d) if !d.join("index.html").is_file() => tracing::warn!(
                dir = %d.display(),
                "the portal is not built (no index.html): /portal/ answers 503 until scripts/build-portal.sh has run"
            ),
            Some(d) => tracing::info!(dir = %d.display(), "portal served at /portal/"),
            None => {}
        }
        if wss.is_empty() && config.wss_url.is_empty() {
            tracing::warn!(
                "no sip.wss listener and no portal.wss_url: the portal's communicator cannot register"
            );
        }
        Self {
            dir,
            wss_url: config.wss_url.clone(),
            wss_port: wss.first().map(SocketAddr::port),
            sip_domain: sip_domain.to_string(),
        }
    }

    /// The WebSocket URL the communicator of a page loaded through `host`
    /// (the request's host, without port) should use.
    fn wss_url_for(&self, host: Option<&str>) -> Option<String> {
        if !self.wss_url.is_empty() {
            return Some(self.wss_url.clone());
        }
        let port = self.wss_port?;
        Some(format!("wss://{}:{port}", host.unwrap_or("127.0.0.1")))
    }

    /// The Content-Security-Policy of a page loaded through `host`.
    fn content_security_policy(&self, host: Option<&str>) -> String {
        let wss = self
            .wss_url_for(host)
            .and_then(|u| origin_of(&u))
            .map(|o| format!(" {o}"))
            .unwrap_or_default();
        // 'self' in connect-src: the client API (/v1/) on this origin.
        // blob: for voicemail recordings fetched with the bearer token and
        // played from memory. Trusted Types: the portal's scripts never
        // write HTML from strings, so any such sink is refused.
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
             media-src 'self' blob:; connect-src 'self'{wss}; font-src 'self'; manifest-src 'self'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'; \
             require-trusted-types-for 'script'"
        )
    }
}

/// `scheme://authority` of a URL, if it is a `ws:`/`wss:` URL whose
/// authority holds only host characters (anything else stays out of the
/// CSP header).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "wss" && scheme != "ws" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then(|| format!("{scheme}://{authority}"))
}

/// The host (no port) a request was made to, if it is a plain host name
/// or IP address literal: it goes into a header and a URL.
fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })?;
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let inner = &rest[..end];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        format!("[{inner}]")
    } else {
        let name = authority.split(':').next()?;
        if name.is_empty()
            || name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return None;
        }
        name.to_ascii_lowercase()
    };
    Some(host)
}

/// The file a request path under `/portal/` names, relative to the portal
/// folder (`index.html` for the folder itself). Each segment, once decoded,
/// must be a plain file or folder name: letters, digits, `.`, `-`, `_`,
/// not starting with `.` (no `..`, no hidden files, no separators).
pub fn relative_path(request_path: &str) -> Result<PathBuf, PortalError> {
    let rest = request_path
        .strip_prefix("/portal/")
        .ok_or(PortalError::NotFound)?;
    if rest.is_empty() {
        return Ok(PathBuf::from("index.html"));
    }
    let decoded = crate::push::rfc8599::unescape(rest).ok_or(PortalError::RefusedPath)?;
    let segments: Vec<&str> = decoded.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(PortalError::RefusedPath);
    }
    let mut path = PathBuf::new();
    for segment in segments {
        let plain = !segment.is_empty()
            && segment.len() <= 128
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain {
            return Err(PortalError::RefusedPath);
        }
        path.push(segment);
    }
    Ok(path)
}

/// The Content-Type of the portal's file types; `None`: not served.
pub fn content_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// The portal's routes: `/portal` (redirected to `/portal/`), the files,
/// and `/portal/config.json`; every answer gets [`security_headers`].
pub fn router(portal: Arc<Portal>) -> Router {
    Router::new()
        .route("/portal", any(redirect))
        .route("/portal/", any(serve))
        .route("/portal/{*path}", any(serve))
        .layer(axum::middleware::from_fn_with_state(
            portal.clone(),
            security_headers,
        ))
        .with_state(portal)
}

async fn redirect() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, "/portal/")],
    )
        .into_response()
}

/// The headers every portal answer carries.
async fn security_headers(
    State(portal): State<Arc<Portal>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request_host(request.uri(), request.headers());
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&portal.content_security_policy(host.as_deref())) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // For browsers that predate frame-ancestors.
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    for (name, value) in [
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        // The communicator needs the microphone; nothing else does.
        (
            "permissions-policy",
            "microphone=(self), camera=(), geolocation=(), payment=(), usb=()",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// What `/portal/config.json` says.
#[derive(Debug, Serialize)]
struct PageConfig<'a> {
    /// Where the communicator registers; `null` when the switch has no
    /// WSS listener.
    wss_url: Option<String>,
    sip_domain: &'a str,
}

async fn serve(
    State(portal): State<Arc<Portal>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, PortalError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(PortalError::MethodNotAllowed);
    }
    let relative = relative_path(uri.path()).inspect_err(|_| {
        tracing::debug!(path = uri.path(), "portal path refused");
    })?;
    if relative == Path::new("config.json") {
        let host = request_host(&uri, &headers);
        let body = serde_json::to_string(&PageConfig {
            wss_url: portal.wss_url_for(host.as_deref()),
            sip_domain: &portal.sip_domain,
        })
        .map_err(|_| PortalError::Unreadable)?;
        // It follows the configuration: never cached.
        return Ok((
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response());
    }
    let content_type = content_type(&relative).ok_or(PortalError::TypeNotServed)?;
    let dir = portal.dir.as_ref().ok_or(PortalError::NotFound)?;
    let root = tokio::fs::canonicalize(dir)
        .await
        .map_err(|_| PortalError::NotBuilt)?;
    let file = tokio::fs::canonicalize(root.join(&relative))
        .await
        .map_err(|_| PortalError::NotFound)?;
    // A link inside the folder must not lead out of it.
    if !file.starts_with(&root) {
        tracing::info!(
            path = uri.path(),
            "portal path leads out of the portal folder"
        );
        return Err(PortalError::NotFound);
    }
    let meta = tokio::fs::metadata(&file)
        .await
        .map_err(|_| PortalError::NotFound)?;
    if !meta.is_file() {
        return Err(PortalError::NotFound);
    }
    if meta.len() > MAX_FILE_BYTES {
        tracing::warn!(file = %file.display(), "portal file too large to serve");
        return Err(PortalError::Unreadable);
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), modified);
    // The files' names carry no version, so browsers ask again each time
    // (no-cache) and get a 304 while the file is the same: a rebuilt portal
    // shows at once, an unchanged one costs a few bytes.
    let cache = [
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::ETAG, etag.clone()),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let body = tokio::fs::read(&file).await.map_err(|e| {
        tracing::warn!(file = %file.display(), error = %e, "portal file unreadable");
        PortalError::Unreadable
    })?;
    let mut response = (cache, Body::from(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_map_to_files_and_everything_else_is_refused() {
        assert_eq!(relative_path("/portal/").unwrap(), Path::new("index.html"));
        assert_eq!(
            relative_path("/portal/js/main.js").unwrap(),
            Path::new("js/main.js")
        );
        assert_eq!(
            relative_path("/portal/vendor/jssip.js").unwrap(),
            Path::new("vendor/jssip.js")
        );
        // Escapes are decoded once, then checked: %41 is A.
        assert_eq!(
            relative_path("/portal/%41.css").unwrap(),
            Path::new("A.css")
        );
        for bad in [
            "/portal/../secret.txt",
            "/portal/js/../../secret.txt",
            "/portal/%2e%2e/secret.txt",
            "/portal/%2E%2E%2Fsecret.txt",
            "/portal/..%2fsecret.txt",
            "/portal/js/..%5c..%5csecret.txt",
            "/portal/%252e%252e/secret.txt",
            "/portal//etc/passwd",
            "/portal/js//main.js",
            "/portal/./index.html",
            "/portal/.env",
            "/portal/index.html%00.js",
            "/portal/a%2",
            "/portal/a%zz",
            "/portal/%c0%ae%c0%ae/secret",
            "/portal/a:b.js",
            "/portal/a/b/c/d/e/f/g/h/i.js",
        ] {
            assert_eq!(
                relative_path(bad),
                Err(PortalError::RefusedPath),
                "{bad} was not refused"
            );
        }
    }

    #[test]
    fn only_the_portal_file_types_are_served() {
        assert_eq!(
            content_type(Path::new("index.html")),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            content_type(Path::new("js/main.js")),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            content_type(Path::new("package.json")),
            Some("application/json")
        );
        for none in ["a.sh", "a", "a.wasm", "a.db", "a.pem"] {
            assert_eq!(content_type(Path::new(none)), None, "{none}");
        }
    }

    #[test]
    fn the_csp_allows_the_wss_listener_of_the_page_host_only() {
        let portal = Portal::new(
            &PortalConfig {
                dir: String::new(),
                wss_url: String::new(),
            },
            &["127.0.0.1:5063".parse().unwrap()],
            "localhost",
        );
        let csp = portal.content_security_policy(Some("sip.example.net"));
        assert!(
            csp.contains("connect-src 'self' wss://sip.example.net:5063;"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        let configured = Portal::new(
            &PortalConfig {
                dir: String::new(),
                wss_url: "wss://edge.example.net/sip?x=1".into(),
            },
            &[],
            "localhost",
        );
        let csp = configured.content_security_policy(Some("portal.example.net"));
        assert!(
            csp.contains("connect-src 'self' wss://edge.example.net;"),
            "{csp}"
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("wss://a b;script-src *"), None);
    }

    #[test]
    fn the_request_host_is_taken_only_when_it_is_a_plain_name_or_address() {
        let host = |h: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(h).unwrap());
            request_host(&Uri::from_static("/portal/"), &headers)
        };
        assert_eq!(host("127.0.0.1:8443").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            host("Portal.Example.net").as_deref(),
            Some("portal.example.net")
        );
        assert_eq!(host("[::1]:8443").as_deref(), Some("[::1]"));
        assert_eq!(host("evil.example; script-src *"), None);
        assert_eq!(host("[::1;x]"), None);
        assert_eq!(host(""), None);
    }
}
