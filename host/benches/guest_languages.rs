//! What a guest written in Python or JavaScript costs per call, next to one
//! written in Rust, on the switch's own call paths with the limits on:
//!
//! - routing (a warm instance from the pool, as every call and message
//!   gets): the Rust default router and the JavaScript least-cost router
//!   (`guests/routing/lcr-js`, componentize-js), both deciding an OFFNET
//!   call (a caller look-up, a gateway chosen by prefix);
//! - SMS (a fresh instance per call, as every SMS gets): the request that
//!   sends one message, from the Rust Vonage guest and from the Python
//!   MessageBird guest (`guests/sms-providers/messagebird-py`,
//!   componentize-py).
//!
//! `bench/guest-languages.sh` (builds the guests first). Criterion reports
//! each median; the ratios to Rust's are printed at the end.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use softswitch::config::{Config, GuestConfig, WorldKind};
use softswitch::directory::{DirAccount, DirGateway, Directory, MemoryDirectory};
use softswitch::metrics::Metrics;
use softswitch::plugins::routing::{Kind, Reason, RouteDecision, RouteRequest, Router, Transport};
use softswitch::plugins::sms::{OutgoingSms, SmsProviderGuest};
use softswitch::plugins::{GuestRegistry, Plugins, PluginsOptions};

fn guest(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release")
        .join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-guests.sh",
        path.display()
    );
    path
}

fn plugins() -> Plugins {
    Plugins::new(
        PluginsOptions {
            cache_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-guest-cache"),
            memory_limit_bytes: 64 << 20,
            deadline: Duration::from_millis(50),
            provider_deadline: Duration::from_secs(1),
            warm_instances: 8,
            max_instances: 64,
            instance_wait: Duration::from_secs(1),
        },
        Metrics::new(),
    )
    .unwrap()
}

fn directory() -> Arc<dyn Directory> {
    let account = DirAccount {
        login: "alice".into(),
        phone: Some("48600111222".into()),
        username: None,
        display_name: Some("Alice".into()),
        voicemail_enabled: true,
    };
    let gateways = ["44", "48", "486"]
        .iter()
        .map(|p| DirGateway {
            name: format!("carrier-{p}"),
            prefix: p.to_string(),
        })
        .collect();
    Arc::new(MemoryDirectory::new(
        vec![account],
        HashSet::new(),
        gateways,
    ))
}

fn router(rt: &tokio::runtime::Runtime, file: &str, config: &[(&str, &str)]) -> Router {
    let mut guests = BTreeMap::new();
    guests.insert(
        "routing".to_string(),
        GuestConfig {
            path: guest(file).to_string_lossy().into_owned(),
            world: WorldKind::Routing,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cases: String::new(),
            capabilities: Default::default(),
        },
    );
    let registry = rt
        .block_on(GuestRegistry::load(plugins(), &guests, directory()))
        .unwrap();
    registry.router(&Config::default()).unwrap()
}

fn call_to(target: &str) -> RouteRequest {
    RouteRequest {
        kind: Kind::Call,
        caller_login: "alice".into(),
        caller_display_name: None,
        authenticated: true,
        target: target.into(),
        transport: Transport::Tls,
        source_address: "192.0.2.1:5061".into(),
        dialplan_rule: "DP:int-> OR onnet".into(),
        reason: Reason::Initial,
    }
}

fn sms_guest(
    rt: &tokio::runtime::Runtime,
    file: &str,
    config: &[(&str, &str)],
) -> SmsProviderGuest {
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    rt.block_on(SmsProviderGuest::load(
        &plugins(),
        file,
        &guest(file),
        config,
    ))
    .unwrap()
}

/// The median of `f` over `n` runs, for the ratios printed at the end.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rust_router = router(&rt, "routing_default.wasm", &[]);
    let js_router = router(
        &rt,
        "routing_lcr_js.wasm",
        &[(
            "rates",
            "carrier-44 44=0.02; carrier-48 48=0.012; carrier-486 486=0.010",
        )],
    );
    let rust_call = call_to("int4860012345");
    let js_call = call_to("+4860012345");
    // Both decide the same thing before anything is timed.
    for (router, call) in [(&rust_router, &rust_call), (&js_router, &js_call)] {
        let routed = rt.block_on(router.route(call));
        assert!(
            matches!(&routed.decision, RouteDecision::ToGateway { gateway, number }
                if gateway == "carrier-486" && number == "4860012345"),
            "{routed:?}"
        );
    }

    let vonage = sms_guest(
        &rt,
        "sms_vonage.wasm",
        &[
            ("api_key", "k"),
            ("api_secret", "s"),
            ("from", "Softswitch"),
        ],
    );
    let messagebird = sms_guest(
        &rt,
        "sms_messagebird_py.wasm",
        &[("access_key", "k"), ("originator", "Softswitch")],
    );
    let sms = OutgoingSms {
        to: "48600111222".into(),
        sender: String::new(),
        text: "Your verification code is 1234".into(),
        reference: "sms-1".into(),
    };
    for g in [&vonage, &messagebird] {
        rt.block_on(g.build_send(&sms, &[])).unwrap();
    }

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("routing-warm");
    group.bench_function("rust", |b| {
        b.iter(|| rt.block_on(rust_router.route(&rust_call)))
    });
    group.bench_function("javascript", |b| {
        b.iter(|| rt.block_on(js_router.route(&js_call)))
    });
    group.finish();
    let mut group = c.benchmark_group("sms-build-send-fresh");
    group.sample_size(20);
    group.bench_function("rust", |b| {
        b.iter(|| rt.block_on(vonage.build_send(&sms, &[])).unwrap())
    });
    group.bench_function("python", |b| {
        b.iter(|| rt.block_on(messagebird.build_send(&sms, &[])).unwrap())
    });
    group.finish();
    c.final_summary();

    // Medians measured in this run, side by side, and their ratios.
    let rust = median(20_000, || {
        rt.block_on(rust_router.route(&rust_call));
    });
    let js = median(5_000, || {
        rt.block_on(js_router.route(&js_call));
    });
    let rust_sms = median(500, || {
        rt.block_on(vonage.build_send(&sms, &[])).unwrap();
    });
    let python_sms = median(100, || {
        rt.block_on(messagebird.build_send(&sms, &[])).unwrap();
    });
    println!("\nmedians (limits on):");
    println!(
        "routing, warm instance:  rust {rust:>10.1?}  javascript {js:>10.1?}  ratio {:.1}",
        js.as_secs_f64() / rust.as_secs_f64()
    );
    println!(
        "sms build-send, fresh:   rust {rust_sms:>10.1?}  python     {python_sms:>10.1?}  ratio {:.1}",
        python_sms.as_secs_f64() / rust_sms.as_secs_f64()
    );
}
