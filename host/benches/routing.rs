//! One routing decision through the Wasm guest versus the same dialplan
//! compiled natively, on a warm instance and on a fresh one, with the limits
//! on (epoch deadline, memory cap, pooling allocator).
//!
//! `cargo bench -p softswitch --bench routing` (needs `scripts/build-guests.sh`).
//! Criterion reports the median per decision; the percentile section after it
//! reports p50/p99 per decision with one and with two threads.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use softswitch::config::{Config, GuestConfig, WorldKind};
use softswitch::directory::{DirAccount, DirGateway, Directory, MemoryDirectory};
use softswitch::metrics::Metrics;
use softswitch::plugins::routing::{Kind, Reason, RouteRequest, Router, Transport};
use softswitch::plugins::{GuestRegistry, Plugins, PluginsOptions};
use softswitch_dialplan as dialplan;

// The switch's own allocator: the host side of a decision (the request's
// strings, the look-ups' answers, the decision) allocates as in the switch.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn guest_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release/routing_default.wasm");
    assert!(path.is_file(), "run scripts/build-guests.sh first");
    path
}

fn directory() -> Arc<MemoryDirectory> {
    let account = |login: &str, phone: &str, voicemail| DirAccount {
        login: login.into(),
        phone: Some(phone.into()),
        username: None,
        display_name: Some(phone.into()),
        voicemail_enabled: voicemail,
    };
    let mut accounts = vec![account("alice", "48600111222", true)];
    // A directory of realistic size, so look-ups are not trivially cache-hot.
    for i in 0..10_000 {
        let n = format!("48600{i:06}");
        accounts.push(account(&n, &n, i % 2 == 0));
    }
    let gateways = ["1", "44", "48", "486", "49", "33"]
        .iter()
        .map(|p| DirGateway {
            name: format!("carrier-{p}"),
            prefix: p.to_string(),
        })
        .collect();
    Arc::new(MemoryDirectory::new(accounts, HashSet::new(), gateways))
}

/// The request the switch sees most: an OFFNET call (caller look-up for the
/// caller ID, longest-prefix gateway).
fn request() -> RouteRequest {
    RouteRequest {
        kind: Kind::Call,
        caller_login: "alice".into(),
        caller_display_name: None,
        authenticated: true,
        target: "int4860012345".into(),
        transport: Transport::Tls,
        source_address: "192.0.2.1:5061".into(),
        dialplan_rule: "DP:int-> OR onnet".into(),
        reason: Reason::Initial,
    }
}

/// Native baseline: the same dialplan crate over the same host directory.
struct Native(Arc<MemoryDirectory>);

fn now<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("memory directory futures are ready at once"),
    }
}

fn to_dp(a: DirAccount) -> dialplan::Account {
    dialplan::Account {
        login: a.login,
        phone: a.phone,
        username: a.username,
        display_name: a.display_name,
        voicemail_enabled: a.voicemail_enabled,
    }
}

impl dialplan::Directory for Native {
    fn account_by_login(&self, login: &str) -> Option<dialplan::Account> {
        now(self.0.account_by_login(login))
            .ok()
            .flatten()
            .map(to_dp)
    }
    fn account_by_phone(&self, phone: &str) -> Option<dialplan::Account> {
        now(self.0.account_by_phone(phone))
            .ok()
            .flatten()
            .map(to_dp)
    }
    fn account_by_username(&self, username: &str) -> Option<dialplan::Account> {
        now(self.0.account_by_username(username))
            .ok()
            .flatten()
            .map(to_dp)
    }
    fn is_registered(&self, login: &str) -> bool {
        now(self.0.is_registered(login)).unwrap_or(false)
    }
    fn gateway_for(&self, number: &str) -> Option<dialplan::Gateway> {
        now(self.0.gateway_for(number))
            .ok()
            .flatten()
            .map(|g| dialplan::Gateway {
                name: g.name,
                prefix: g.prefix,
            })
    }
}

fn native_request(r: &RouteRequest) -> dialplan::Request {
    dialplan::Request {
        kind: dialplan::Kind::Call,
        caller: dialplan::Caller {
            login: r.caller_login.clone(),
            display_name: r.caller_display_name.clone(),
            authenticated: r.authenticated,
        },
        target: r.target.clone(),
        dialplan_rule: r.dialplan_rule.clone(),
        reason: dialplan::Reason::Initial,
    }
}

fn router(
    rt: &tokio::runtime::Runtime,
    warm_instances: usize,
    dir: Arc<MemoryDirectory>,
) -> Router {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-guest-cache");
    let plugins = Plugins::new(
        PluginsOptions {
            cache_dir: cache,
            memory_limit_bytes: 64 << 20,
            deadline: Duration::from_millis(50),
            provider_deadline: Duration::from_secs(1),
            warm_instances,
            max_instances: 64,
            instance_wait: Duration::from_secs(1),
        },
        Metrics::new(),
    )
    .unwrap();
    let mut guests = BTreeMap::new();
    guests.insert(
        "routing".to_string(),
        GuestConfig {
            path: guest_path().to_string_lossy().into_owned(),
            world: WorldKind::Routing,
            config: BTreeMap::new(),
            cases: String::new(),
            capabilities: Default::default(),
        },
    );
    let dir: Arc<dyn Directory> = dir;
    let registry = rt
        .block_on(GuestRegistry::load(plugins, &guests, dir))
        .unwrap();
    registry.router(&Config::default()).unwrap()
}

fn percentiles(
    label: &str,
    threads: usize,
    per_thread: u64,
    decide: impl Fn() + Send + Sync + Clone + 'static,
) {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let decide = decide.clone();
            std::thread::spawn(move || {
                let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                for _ in 0..per_thread {
                    let t = Instant::now();
                    decide();
                    hist.record(t.elapsed().as_nanos() as u64).unwrap();
                }
                hist
            })
        })
        .collect();
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for h in handles {
        all.add(h.join().unwrap()).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:<22} threads={threads}  p50={:>6} ns  p99={:>6} ns  throughput={:>9.0} decisions/s",
        all.value_at_quantile(0.50),
        all.value_at_quantile(0.99),
        (threads as u64 * per_thread) as f64 / secs
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = directory();
    let warm = router(&rt, 8, dir.clone());
    let fresh = router(&rt, 0, dir.clone());
    let native = Native(dir.clone());
    let req = request();
    let native_req = native_request(&req);

    // Sanity: all three paths agree before anything is timed.
    let expected = rt.block_on(warm.route(&req));
    assert_eq!(rt.block_on(fresh.route(&req)).decision, expected.decision);
    assert!(matches!(
        dialplan::route(&native_req, &native).decision,
        dialplan::Decision::ToGateway { .. }
    ));
    assert!(expected.fallback.is_none(), "{expected:?}");

    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("route");
    group.bench_function("native", |b| {
        b.iter(|| dialplan::route(&native_req, &native))
    });
    // Decisions awaited one after another inside one task, as the switch
    // awaits them; not a runtime entered per decision.
    let decisions = |router: &Router, iters: u64| {
        local.block_on(async {
            let started = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(router.route(&req).await);
            }
            started.elapsed()
        })
    };
    group.bench_function("wasm-warm", |b| b.iter_custom(|n| decisions(&warm, n)));
    group.bench_function("wasm-fresh", |b| b.iter_custom(|n| decisions(&fresh, n)));
    group.bench_function("wasm-warm-entered", |b| {
        b.iter(|| local.block_on(warm.route(&req)))
    });
    group.finish();
    c.final_summary();

    // ROUTING_BENCH_PERCENTILES=0 skips this part, e.g. to profile one criterion case alone.
    if std::env::var("ROUTING_BENCH_PERCENTILES").is_ok_and(|v| v == "0") {
        return;
    }
    println!("\npercentiles per decision (limits on):");
    for threads in [1, 2] {
        let native = Arc::new(Native(dir.clone()));
        let nr = native_req.clone();
        percentiles("native", threads, 200_000, move || {
            std::hint::black_box(dialplan::route(&nr, &*native));
        });
        for (label, router, n) in [
            ("wasm-warm", warm.clone(), 100_000),
            ("wasm-fresh", fresh.clone(), 20_000),
        ] {
            let req = req.clone();
            percentiles(label, threads, n, move || {
                thread_local! {
                    static RT: tokio::runtime::Runtime =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                }
                RT.with(|rt| std::hint::black_box(rt.block_on(router.route(&req))));
            });
        }
    }
}
