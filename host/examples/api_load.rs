//! Load generator for `bench/api.sh`: drives the client HTTPS API with N
//! concurrent clients for a fixed time and prints the rate, the answers by
//! status and the latency percentiles as one JSON line.
//!
//! ```text
//! api_load login  BASE CERT_PEM SECONDS CONCURRENCY ID PASSWORD
//! api_load signup BASE CERT_PEM SECONDS CONCURRENCY PHONE_PREFIX
//! api_load sink   PORT        # an SMS vendor stand-in answering 200
//! ```
//!
//! `signup` sends phone sign-up starts, each for a new number
//! (`+PHONE_PREFIX` + 7 digits) so every one creates a request and queues a
//! code SMS instead of hitting the resend rule. Connections are kept alive
//! (each client reuses its own), as handsets do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sink") => sink(args.get(1).context("sink PORT")?.parse()?).await,
        Some(mode @ ("login" | "signup")) => {
            if args.len() < 6 {
                bail!("usage: api_load {mode} BASE CERT_PEM SECONDS CONCURRENCY ...");
            }
            run(mode, &args[1..]).await
        }
        _ => bail!("usage: api_load login|signup|sink ..."),
    }
}

/// Answers every request with the generic SMS guest's expected JSON.
async fn sink(port: u16) -> anyhow::Result<()> {
    let n = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().fallback(move || {
        let id = n.fetch_add(1, Ordering::Relaxed);
        async move { axum::Json(serde_json::json!({ "data": { "id": format!("bench-{id}") } })) }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn run(mode: &str, args: &[String]) -> anyhow::Result<()> {
    let base = args[0].clone();
    let cert = std::fs::read(&args[1]).with_context(|| format!("cannot read {}", args[1]))?;
    let seconds: u64 = args[2].parse()?;
    let concurrency: usize = args[3].parse()?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert)?)
            .pool_max_idle_per_host(1)
            .build()?;
        let (base, counter) = (base.clone(), counter.clone());
        let mode = mode.to_string();
        let rest: Vec<String> = args[4..].to_vec();
        tasks.push(tokio::spawn(async move {
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut latencies_us: Vec<u64> = Vec::new();
            while Instant::now() < deadline {
                let body = if mode == "login" {
                    serde_json::json!({ "id": rest[0], "password": rest[1] })
                } else {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    serde_json::json!({
                        "phone": format!("+{}{:07}", rest[0], n),
                        "udid": "bench-device",
                        "os": "android",
                    })
                };
                let path = if mode == "login" {
                    "/v1/login"
                } else {
                    "/v1/signup/phone"
                };
                let started = Instant::now();
                let status = match client
                    .post(format!("{base}{path}"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                latencies_us.push(started.elapsed().as_micros() as u64);
                *statuses.entry(status).or_default() += 1;
            }
            (statuses, latencies_us)
        }));
    }
    let started = Instant::now();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut latencies: Vec<u64> = Vec::new();
    for t in tasks {
        let (s, l) = t.await?;
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
        latencies.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let ok: u64 = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let total: u64 = statuses.values().sum();
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "concurrency": concurrency,
            "seconds": (elapsed * 10.0).round() / 10.0,
            "requests": total,
            "ok": ok,
            "ok_per_sec": ((ok as f64 / elapsed) * 10.0).round() / 10.0,
            "statuses": statuses,
            "latency_ms": { "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99) },
        })
    );
    Ok(())
}
