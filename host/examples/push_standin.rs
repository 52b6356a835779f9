//! Local stand-ins for APNs, FCM and a UnifiedPush server, for trying push
//! without Apple or Google accounts (the README's push section) and for
//! `bench/push.sh`. The same servers the black-box tests use
//! (`tests/support/push.rs`): HTTPS with HTTP/2, a CA of their own, an
//! APNs key and a Firebase-style service account whose token endpoint is
//! the FCM stand-in.
//!
//! ```text
//! push_standin DIR                 # serve; writes DIR/push.toml, prints each push
//! push_standin DIR baseline N C    # also: N HTTP/2 POSTs to its own APNs stand-in,
//!                                  # C at a time, printed as one JSON line, then exit
//! ```
//!
//! `DIR/push.toml` is a `[push]` section for `softswitch.toml` that points
//! the APNs, FCM and UnifiedPush guests at the stand-ins. Each push is
//! printed as `unix_ms service path push-type type from call-id excerpt`, and the
//! APNs provider token's ES256 signature is checked against the key.

#[path = "../../tests/support/push.rs"]
#[allow(dead_code)]
mod standin;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use standin::{Answer, Seen, StandIn, TestPki};

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Whether the APNs request's provider token verifies with `public`.
fn token_ok(s: &Seen, public: &[u8]) -> bool {
    let Some(jwt) = s
        .header("authorization")
        .and_then(|a| a.strip_prefix("bearer "))
    else {
        return false;
    };
    let Some((input, sig)) = jwt.rsplit_once('.') else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public)
        .verify(input.as_bytes(), &sig)
        .is_ok()
}

fn print_push(service: &str, s: &Seen) {
    let json: serde_json::Value = serde_json::from_slice(&s.body).unwrap_or_default();
    let data = json
        .get("message")
        .and_then(|m| m.get("data"))
        .unwrap_or(&json);
    let field = |k: &str| {
        data.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_string()
    };
    let from = if field("from") != "-" {
        field("from")
    } else {
        field("from_login")
    };
    let excerpt = match json.pointer("/aps/alert/body").and_then(|v| v.as_str()) {
        Some(body) => body.to_string(),
        None => field("excerpt"),
    };
    println!(
        "{} {service} {} {} {} {from} {} {excerpt:?}",
        unix_ms(),
        s.path,
        s.header("apns-push-type").unwrap_or("-"),
        field("type"),
        field("call_id"),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .context("usage: push_standin DIR [baseline N C]")?,
    );
    std::fs::create_dir_all(&dir)?;
    let pki = TestPki::new(&dir);
    let apns_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let public = apns_key.public_key_raw().to_vec();
    let counted = Arc::new(AtomicU64::new(0));
    let quiet = args.get(1).map(String::as_str) == Some("baseline");
    let (c, p) = (counted.clone(), public.clone());
    let apns = StandIn::https(&pki, move |s| {
        c.fetch_add(1, Ordering::Relaxed);
        if !quiet {
            print_push("apns", s);
            if !token_ok(s, &p) {
                println!("  ^ the provider token does NOT verify with the APNs key");
            }
        }
        Answer::new(200, "").header("apns-id", "00000000-0000-4000-8000-000000000000")
    })
    .await;
    let fcm = StandIn::https(&pki, |s| {
        if s.path == "/token" {
            println!("{} fcm /token OAuth grant", unix_ms());
            return Answer::new(
                200,
                r#"{"access_token":"standin-access-token","expires_in":3599,"token_type":"Bearer"}"#,
            );
        }
        print_push("fcm", s);
        Answer::new(200, r#"{"name":"projects/standin/messages/1"}"#)
    })
    .await;
    let unifiedpush = StandIn::http(|s| {
        print_push("unifiedpush", s);
        Answer::new(201, "")
    })
    .await;
    write_config(&dir, &pki.ca_file, &apns_key, &apns, &fcm)?;
    eprintln!(
        "stand-ins: APNs {}, FCM {}, UnifiedPush {} (endpoints {}/up/<name>)\n\
         add {} to softswitch.toml",
        apns.base("https"),
        fcm.base("https"),
        unifiedpush.base("http"),
        unifiedpush.base("http"),
        dir.join("push.toml").display()
    );
    if quiet {
        let n: u64 = args.get(2).context("baseline N C")?.parse()?;
        let concurrency: usize = args.get(3).context("baseline N C")?.parse()?;
        return baseline(&pki.ca_file, &apns, n, concurrency).await;
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn write_config(
    dir: &Path,
    ca: &Path,
    apns_key: &rcgen::KeyPair,
    apns: &StandIn,
    fcm: &StandIn,
) -> anyhow::Result<()> {
    let p8 = dir.join("AuthKey_STANDIN01.p8");
    std::fs::write(&p8, apns_key.serialize_pem())?;
    let (account, _) = standin::service_account(
        dir,
        &format!("{}/token", fcm.base("https")),
        "standin-project",
        "push@standin-project.iam.gserviceaccount.com",
    )
    .map_err(anyhow::Error::msg)?;
    let guests = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("guests/target/wasm32-wasip2/release"));
    let toml = format!(
        r#"[push]
# Written by push_standin: the stand-ins' CA, a fresh APNs key and service account.
ca_file = "{ca}"
[push.keys.apns]
path = "{p8}"
key_id = "STANDIN01"
[push.keys.fcm]
path = "{account}"
[push.providers.apns]
path = "{guests}/push_apns.wasm"
allowed_hosts = ["127.0.0.1"]
config = {{ team_id = "TEAMSTANDIN", topic = "net.example.softphone", base_url = "{apns}", sandbox_url = "{apns}" }}
[push.providers.fcm]
path = "{guests}/push_fcm.wasm"
allowed_hosts = ["127.0.0.1"]
config = {{ project_id = "standin-project", base_url = "{fcm}" }}
[push.providers.webpush]
path = "{guests}/push_webhook.wasm"
allowed_hosts = ["127.0.0.1"]
"#,
        ca = ca.display(),
        p8 = p8.display(),
        account = account.display(),
        guests = guests.display(),
        apns = apns.base("https"),
        fcm = fcm.base("https"),
    );
    std::fs::write(dir.join("push.toml"), toml)?;
    Ok(())
}

/// The stand-in's own ceiling: HTTP/2 POSTs of an APNs-sized body from one
/// reqwest client (as the switch has), `concurrency` at a time.
async fn baseline(ca: &Path, apns: &StandIn, n: u64, concurrency: usize) -> anyhow::Result<()> {
    let cert = reqwest::Certificate::from_pem(&std::fs::read(ca)?)?;
    let client = reqwest::Client::builder()
        .add_root_certificate(cert)
        .build()?;
    let url = format!("{}/3/device/{}", apns.base("https"), "ab".repeat(32));
    let body = r#"{"aps":{"alert":{"title":"Alice","body":"Are you coming to the tea party at five?"},"badge":1,"sound":"default"},"type":"text","from":"alice"}"#;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("apns-push-type", "alert")
                    .body(body)
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    lat.push(t.elapsed());
                }
            }
            lat
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)));
    println!(
        "{}",
        serde_json::json!({
            "requests": all.len(),
            "seconds": secs,
            "per_second": all.len() as f64 / secs,
            "p50_ms": pct(0.5).map(|d| d.as_secs_f64() * 1000.0),
            "p99_ms": pct(0.99).map(|d| d.as_secs_f64() * 1000.0),
        })
    );
    Ok(())
}
