//! The plugin runtime driven through its public API with the real guests built
//! for wasm32-wasip2: every dialplan case, the sandbox failure modes, hot reload.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use softswitch::config::{Config, GuestConfig};
use softswitch::directory::{
    Answer, BoxFuture, DirAccount, DirGateway, DirResult, Directory, Lookup,
};
use softswitch::metrics::Metrics;
use softswitch::plugins::routing::{CallerId, Kind, Reason, RouteDecision, RouteRequest, Router};
use softswitch::plugins::{FailureKind, GuestRegistry, PluginError};

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-cache")
}

async fn load(guests: Vec<(&str, GuestConfig)>) -> Result<(GuestRegistry, Metrics), PluginError> {
    let metrics = Metrics::new();
    let plugins = plugins(&cache_dir(), &metrics);
    let map: BTreeMap<String, GuestConfig> = guests
        .into_iter()
        .map(|(n, g)| (n.to_string(), g))
        .collect();
    let registry = GuestRegistry::load(plugins, &map, directory()).await?;
    Ok((registry, metrics))
}

fn router(registry: &GuestRegistry, name: &str) -> Router {
    let mut config = Config::default();
    config.routing.guest = name.into();
    registry.router(&config).expect("configured guest")
}

fn reject(code: u16, reason: &str) -> RouteDecision {
    RouteDecision::Reject {
        code,
        reason: reason.into(),
    }
}

fn service(name: &str, args: &[&str]) -> RouteDecision {
    RouteDecision::ToService {
        name: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

fn gateway(gateway: &str, number: &str) -> RouteDecision {
    RouteDecision::ToGateway {
        gateway: gateway.into(),
        number: number.into(),
    }
}

fn user(login: &str) -> RouteDecision {
    RouteDecision::ToUser {
        login: login.into(),
    }
}

#[tokio::test]
async fn default_router_answers_every_dialplan_case() {
    let (registry, _) = load(vec![("routing", guest(guest_wasm(DEFAULT_ROUTER), &[]))])
        .await
        .unwrap();
    let router = router(&registry, "routing");
    let message = |from: &str, to: &str| RouteRequest {
        kind: Kind::Message,
        ..call(from, to)
    };
    let after = |reason: Reason, from: &str, to: &str| RouteRequest {
        reason,
        ..call(from, to)
    };
    let cases: Vec<(&str, RouteRequest, RouteDecision)> = vec![
        (
            "ONNET number → user by login",
            call("alice", "48600333444"),
            user("48600333444"),
        ),
        (
            "ONNET name → user by login",
            call("48600333444", "alice"),
            user("alice"),
        ),
        (
            "ONNET → user by username",
            call("alice", "carolina"),
            user("carol"),
        ),
        (
            "unknown user → 404",
            call("alice", "nobody"),
            reject(404, "Not Found"),
        ),
        (
            "int + number → longest-prefix gateway",
            call("alice", "int4860012345"),
            gateway("carrier-pl-mobile", "4860012345"),
        ),
        (
            "int + number, shorter prefix",
            call("alice", "int4822123456"),
            gateway("carrier-pl", "4822123456"),
        ),
        (
            "int + number, other country",
            call("48600333444", "int4930123456"),
            gateway("carrier-de", "4930123456"),
        ),
        (
            "int + number without gateway → 404",
            call("alice", "int15551234"),
            reject(404, "No Route"),
        ),
        (
            "950 → voicemail",
            call("alice", "950"),
            service("voicemail", &["alice"]),
        ),
        (
            "950msg<ID> → playback",
            call("alice", "950msg230"),
            service("voicemail-playback", &["alice", "230"]),
        ),
        (
            "750 → greeting",
            call("alice", "750"),
            service("greeting", &["alice"]),
        ),
        (
            "message to a service → 488",
            message("alice", "950"),
            reject(488, "Not Acceptable Here"),
        ),
        (
            "message to a user",
            message("alice", "carolina"),
            user("carol"),
        ),
        (
            "no answer, voicemail on → deposit",
            after(Reason::NoAnswer, "carol", "alice"),
            service("voicemail-deposit", &["alice"]),
        ),
        (
            "no answer, voicemail off → 480",
            after(Reason::NoAnswer, "alice", "48600333444"),
            reject(480, "Temporarily Unavailable"),
        ),
        (
            "busy, voicemail off → 486",
            after(Reason::Busy, "alice", "48600333444"),
            reject(486, "Busy Here"),
        ),
        (
            "declined, voicemail off → 603",
            after(Reason::Declined, "alice", "48600333444"),
            reject(603, "Decline"),
        ),
        (
            "bad dialing-plan rule → 500",
            RouteRequest {
                dialplan_rule: "nonsense".into(),
                ..call("alice", "bob")
            },
            reject(500, "bad dialing-plan rule"),
        ),
    ];
    for (what, request, expected) in cases {
        let routed = router.route(&request).await;
        assert_eq!(routed.decision, expected, "{what}");
        assert_eq!(routed.fallback, None, "{what}");
    }

    // OFFNET caller ID: a caller whose login is not a number presents their phone.
    let routed = router.route(&call("alice", "int4860012345")).await;
    assert_eq!(
        routed.caller_id,
        Some(CallerId {
            display_name: Some("48600111222".into()),
            user: Some("48600111222".into())
        })
    );
    // A caller whose login is already the number needs no rewrite.
    let routed = router.route(&call("48600333444", "int4930123456")).await;
    assert_eq!(routed.caller_id, None);
}

#[tokio::test]
async fn blocklist_router_blocks_by_caller_and_prefix_and_otherwise_routes_like_the_default() {
    let config = [
        ("blocked-callers", "carol"),
        ("blocked-prefixes", "4860,1900"),
    ];
    let (registry, _) = load(vec![(
        "routing",
        guest(guest_wasm(BLOCKLIST_ROUTER), &config),
    )])
    .await
    .unwrap();
    let router = router(&registry, "routing");
    assert_eq!(
        router.route(&call("carol", "alice")).await.decision,
        reject(403, "Blocked")
    );
    assert_eq!(
        router.route(&call("alice", "int4860012345")).await.decision,
        reject(403, "Blocked")
    );
    assert_eq!(
        router
            .route(&call("alice", "int19005551234"))
            .await
            .decision,
        reject(403, "Blocked")
    );
    assert_eq!(
        router.route(&call("alice", "int4822123456")).await.decision,
        gateway("carrier-pl", "4822123456")
    );
    assert_eq!(
        router.route(&call("alice", "carolina")).await.decision,
        user("carol")
    );
}

/// The misbehaving fixtures, configured to misbehave only for targets starting
/// with "boom" so they pass the smoke call and fail in service.
const FIXTURES: [(&str, FailureKind); 4] = [
    ("fixture_loop", FailureKind::Timeout),
    ("fixture_alloc", FailureKind::Memory),
    ("fixture_trap", FailureKind::Trap),
    ("fixture_garbage", FailureKind::InvalidResult),
];

#[tokio::test]
async fn misbehaving_guests_yield_the_fallback_and_the_host_keeps_serving() {
    let mut guests = vec![("routing", guest(guest_wasm(DEFAULT_ROUTER), &[]))];
    for (name, _) in FIXTURES {
        guests.push((name, guest(guest_wasm(name), &[("when", "boom")])));
    }
    let (registry, metrics) = load(guests).await.unwrap();
    let good = router(&registry, "routing");
    for (name, kind) in FIXTURES {
        let bad = router(&registry, name);
        for round in 0..2 {
            let started = Instant::now();
            let routed = bad.route(&call("alice", "boom")).await;
            assert_eq!(
                routed.decision,
                reject(500, "Routing Unavailable"),
                "{name} round {round}"
            );
            assert_eq!(routed.fallback, Some(kind.as_str()), "{name} round {round}");
            // Liveness bound, not a benchmark: the 200 ms deadline must cut a loop off.
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{name} took {:?}",
                started.elapsed()
            );
            // The next good decision still succeeds, on the same engine.
            let routed = good.route(&call("alice", "carolina")).await;
            assert_eq!(routed.decision, user("carol"), "after {name}");
            // And the guest itself serves its other inputs with a fresh instance.
            let routed = bad.route(&call("alice", "fine")).await;
            assert_eq!(routed.fallback, None, "{name} after its failure");
        }
        let exposition = metrics.render();
        let line = format!(
            "softswitch_guest_failures_total{{guest=\"{name}\",kind=\"{}\",world=\"softswitch:routing/router@0.1.0\"}} 2",
            kind.as_str()
        );
        assert!(
            exposition.contains(&line),
            "missing {line} in\n{exposition}"
        );
    }
}

#[tokio::test]
async fn a_guest_that_fails_its_smoke_call_is_refused_at_load() {
    for (name, kind) in FIXTURES {
        let result = load(vec![(name, guest(guest_wasm(name), &[]))]).await;
        match result {
            Err(PluginError::Smoke { failure, .. }) => assert_eq!(failure.kind, kind, "{name}"),
            Err(other) => panic!("{name}: expected a smoke failure, got {other}"),
            Ok(_) => panic!("{name}: a guest failing every call was put in service"),
        }
    }
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_with_a_reason() {
    let result = load(vec![(
        "routing",
        guest(guest_wasm("fixture_wrong_world"), &[]),
    )])
    .await;
    match result {
        Err(e @ PluginError::WrongWorld { .. }) => {
            let text = e.to_string();
            assert!(text.contains("softswitch:routing/router@0.1.0"), "{text}");
        }
        Err(other) => panic!("expected WrongWorld, got {other}"),
        Ok(_) => panic!("a component of another world was loaded"),
    }
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really").unwrap();
    assert!(matches!(
        load(vec![("routing", guest(junk, &[]))]).await,
        Err(PluginError::Compile { .. })
    ));
}

fn replace(path: &Path, with: &Path) {
    // Write beside and rename, as a deployment tool would: readers see the old
    // file or the new one, never half of one.
    let tmp = path.with_extension("tmp");
    std::fs::copy(with, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn hot_reload_swaps_good_versions_and_keeps_serving_through_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("router.wasm");
    std::fs::copy(guest_wasm(DEFAULT_ROUTER), &live).unwrap();
    let config = [("blocked-prefixes", "4860")];
    let (registry, metrics) = load(vec![("routing", guest(live.clone(), &config))])
        .await
        .unwrap();
    let registry = Arc::new(registry);
    let router = router(&registry, "routing");
    let offnet = call("alice", "int4860012345");
    assert_eq!(
        router.route(&offnet).await.decision,
        gateway("carrier-pl-mobile", "4860012345")
    );
    let first = registry.list()[0].sha256.clone();

    // A new version: the next decision comes from it.
    replace(&live, &guest_wasm(BLOCKLIST_ROUTER));
    registry.reload_changed().await;
    assert_eq!(router.route(&offnet).await.decision, reject(403, "Blocked"));
    let second = registry.list()[0].sha256.clone();
    assert_ne!(first, second);

    // Broken replacements: not a component, another world, a guest failing every call.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    for broken in [
        junk,
        guest_wasm("fixture_wrong_world"),
        guest_wasm("fixture_trap"),
    ] {
        replace(&live, &broken);
        assert!(
            registry.reload("routing").await.is_err(),
            "{}",
            broken.display()
        );
        assert_eq!(
            router.route(&offnet).await.decision,
            reject(403, "Blocked"),
            "{}",
            broken.display()
        );
        assert_eq!(registry.list()[0].sha256, second);
    }
    assert!(
        metrics
            .render()
            .contains("softswitch_guest_loads_total{guest=\"routing\",outcome=\"failed\"} 3")
    );

    // Decisions in flight while versions swap all complete, each from one version.
    replace(&live, &guest_wasm(DEFAULT_ROUTER));
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let router = router.clone();
            let offnet = offnet.clone();
            tokio::spawn(async move { router.route(&offnet).await })
        })
        .collect();
    registry.reload("routing").await.unwrap();
    for call in calls {
        let routed = call.await.unwrap();
        assert_eq!(routed.fallback, None);
        assert!(
            routed.decision == reject(403, "Blocked")
                || routed.decision == gateway("carrier-pl-mobile", "4860012345"),
            "{:?}",
            routed.decision
        );
    }
    assert_eq!(
        router.route(&offnet).await.decision,
        gateway("carrier-pl-mobile", "4860012345")
    );

    // The watch picks a change up by itself.
    let watch = registry.spawn_watch(Duration::from_millis(50));
    replace(&live, &guest_wasm(BLOCKLIST_ROUTER));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if router.route(&offnet).await.decision == reject(403, "Blocked") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch never reloaded the guest"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.abort();
}

/// A directory whose every answer takes `delay` (a database under load).
struct SlowDirectory {
    inner: Arc<dyn Directory>,
    delay: Duration,
}

impl SlowDirectory {
    fn slow<'a, T: Send + 'a>(
        &'a self,
        answer: BoxFuture<'a, DirResult<T>>,
    ) -> BoxFuture<'a, DirResult<T>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            answer.await
        })
    }
}

impl Directory for SlowDirectory {
    fn account_by_login<'a>(
        &'a self,
        login: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.slow(self.inner.account_by_login(login))
    }
    fn account_by_phone<'a>(
        &'a self,
        phone: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.slow(self.inner.account_by_phone(phone))
    }
    fn account_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.slow(self.inner.account_by_username(username))
    }
    fn is_registered<'a>(&'a self, login: &'a str) -> BoxFuture<'a, DirResult<bool>> {
        self.slow(self.inner.is_registered(login))
    }
    fn gateway_for<'a>(&'a self, number: &'a str) -> BoxFuture<'a, DirResult<Option<DirGateway>>> {
        self.slow(self.inner.gateway_for(number))
    }
}

#[tokio::test]
async fn time_spent_waiting_for_the_directory_does_not_count_against_the_deadline() {
    // One look-up alone takes longer than the 200 ms deadline: only the
    // guest's own work may count.
    let slow: Arc<dyn Directory> = Arc::new(SlowDirectory {
        inner: directory(),
        delay: Duration::from_millis(300),
    });
    let metrics = Metrics::new();
    let map = BTreeMap::from([(
        "routing".to_string(),
        guest(guest_wasm(DEFAULT_ROUTER), &[]),
    )]);
    let registry = GuestRegistry::load(plugins(&cache_dir(), &metrics), &map, slow)
        .await
        .expect("loads");
    let routed = router(&registry, "routing")
        .route(&call("alice", "48600333444"))
        .await;
    assert_eq!(routed.fallback, None, "{routed:?}");
    assert_eq!(routed.decision, user("48600333444"));
}

/// A directory whose gateways are at hand but whose accounts must be
/// fetched (a cold account cache), counting the fetches.
struct ColdAccounts {
    inner: Arc<dyn Directory>,
    fetches: std::sync::Mutex<Vec<Lookup>>,
}

impl Directory for ColdAccounts {
    fn account_by_login<'a>(
        &'a self,
        login: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.inner.account_by_login(login)
    }
    fn account_by_phone<'a>(
        &'a self,
        phone: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.inner.account_by_phone(phone)
    }
    fn account_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<DirAccount>>> {
        self.inner.account_by_username(username)
    }
    fn is_registered<'a>(&'a self, login: &'a str) -> BoxFuture<'a, DirResult<bool>> {
        self.inner.is_registered(login)
    }
    fn gateway_for<'a>(&'a self, number: &'a str) -> BoxFuture<'a, DirResult<Option<DirGateway>>> {
        self.inner.gateway_for(number)
    }
    fn peek(&self, lookup: &Lookup) -> Option<DirResult<Answer>> {
        match lookup {
            Lookup::GatewayFor(_) => self.inner.peek(lookup),
            _ => None,
        }
    }
    fn fetch<'a>(&'a self, lookup: &'a Lookup) -> BoxFuture<'a, DirResult<Answer>> {
        self.fetches.lock().unwrap().push(lookup.clone());
        self.inner.fetch(lookup)
    }
}

/// A look-up that misses is fetched and the decision made again with its
/// answer: the caller's phone number becomes the caller ID, which the first
/// try could not know.
#[tokio::test]
async fn a_decision_whose_look_ups_miss_is_made_again_with_the_answers() {
    let cold = Arc::new(ColdAccounts {
        inner: directory(),
        fetches: Default::default(),
    });
    let metrics = Metrics::new();
    let map = BTreeMap::from([(
        "routing".to_string(),
        guest(guest_wasm(DEFAULT_ROUTER), &[]),
    )]);
    let registry = GuestRegistry::load(plugins(&cache_dir(), &metrics), &map, cold.clone())
        .await
        .expect("loads");
    let routed = router(&registry, "routing")
        .route(&call("alice", "int4860012345"))
        .await;
    assert_eq!(routed.fallback, None, "{routed:?}");
    assert_eq!(routed.decision, gateway("carrier-pl-mobile", "4860012345"));
    assert_eq!(
        routed.caller_id.and_then(|c| c.user).as_deref(),
        Some("48600111222")
    );
    assert_eq!(
        *cold.fetches.lock().unwrap(),
        vec![Lookup::AccountByLogin("alice".into())],
        "only the miss is fetched, once"
    );
}

/// The value of the metric line starting with `prefix` (0 when absent).
fn metric(metrics: &Metrics, prefix: &str) -> f64 {
    metrics
        .render()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The looping fixture on a pool of `slots` instance slots: each call to
/// `boom` holds its instance for the whole deadline (200 ms).
async fn spinning_router(slots: u32, instance_wait: Duration) -> (GuestRegistry, Metrics) {
    let metrics = Metrics::new();
    let map = BTreeMap::from([(
        "looping".to_string(),
        guest(guest_wasm("fixture_loop"), &[("when", "boom")]),
    )]);
    let plugins = plugins_with_slots(&cache_dir(), &metrics, slots, instance_wait);
    let registry = GuestRegistry::load(plugins, &map, directory())
        .await
        .expect("loads");
    (registry, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_calls_in_flight_than_instance_slots_wait_for_one() {
    // Each call holds its instance for 200 ms, so 24 at once need three
    // times the 8 slots: the pooling allocator used to refuse the 9th
    // ("maximum concurrent limit"), the fallback answering "overloaded".
    let (registry, metrics) = spinning_router(8, Duration::from_secs(30)).await;
    let router = router(&registry, "looping");
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move { router.route(&call("alice", "boom")).await })
        })
        .collect();
    for call in calls {
        let routed = call.await.unwrap();
        // The guest's own end, not a refused slot.
        assert_eq!(routed.fallback, Some("timeout"), "{routed:?}");
    }
    let waits = metric(
        &metrics,
        "softswitch_guest_instance_waits_total{world=\"softswitch:routing/router@0.1.0\"}",
    );
    assert!(waits >= 8.0, "only {waits} calls waited for a slot");
    // Only the warm instances (4) are left holding slots.
    let alive = metric(&metrics, "softswitch_guest_instances ");
    assert!(alive <= 4.0, "{alive} instances alive after the calls");
    assert!(!metrics.render().contains("kind=\"overloaded\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_waits_too_long_for_a_slot_gets_the_fallback() {
    // One slot, held 200 ms by each call, waited for 50 ms at most.
    let (registry, metrics) = spinning_router(1, Duration::from_millis(50)).await;
    let router = router(&registry, "looping");
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move { router.route(&call("alice", "boom")).await })
        })
        .collect();
    let mut kinds = Vec::new();
    for call in calls {
        kinds.push(call.await.unwrap().fallback);
    }
    assert!(kinds.contains(&Some("timeout")), "{kinds:?}");
    assert!(kinds.contains(&Some("overloaded")), "{kinds:?}");
    assert!(
        metric(
            &metrics,
            "softswitch_guest_failures_total{guest=\"looping\",kind=\"overloaded\""
        ) >= 1.0
    );
    // The slot is free again afterwards: the next call succeeds.
    let routed = router.route(&call("alice", "carolina")).await;
    assert_eq!(routed.fallback, None, "{routed:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_looping_guest_yields_its_thread_to_other_calls_until_its_deadline() {
    // One runtime thread: a guest spinning to its deadline (200 ms here) in
    // one go would hold the good router's call behind it all that time.
    let (registry, _) = load(vec![
        ("routing", guest(guest_wasm(DEFAULT_ROUTER), &[])),
        (
            "looping",
            guest(guest_wasm("fixture_loop"), &[("when", "boom")]),
        ),
    ])
    .await
    .unwrap();
    let (good, looping) = (router(&registry, "routing"), router(&registry, "looping"));
    let spinning = tokio::spawn(async move {
        let started = Instant::now();
        let routed = looping.route(&call("alice", "boom")).await;
        (routed, started.elapsed())
    });
    // Let the loop start and take the thread; then the good call.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let routed = good.route(&call("alice", "carolina")).await;
    let waited = started.elapsed();
    assert_eq!(routed.decision, user("carol"));
    let (spun, spun_for) = spinning.await.unwrap();
    assert_eq!(spun.fallback, Some("timeout"));
    assert!(
        waited < spun_for / 2,
        "the good call took {waited:?} beside a loop cut off after {spun_for:?}"
    );
}
