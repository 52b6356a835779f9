//! Prometheus metrics served by the admin endpoint at `/metrics`.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every metric the switch exports. Cheap to clone (the collectors are `Arc`s).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Guest calls by guest and world.
    pub guest_calls: IntCounterVec,
    /// Guest failures by guest, world and kind (trap, timeout, memory, invalid-result, ...).
    pub guest_failures: IntCounterVec,
    /// Time to a routing decision, guest call included, by guest.
    pub decision_seconds: HistogramVec,
    /// Guest (re)loads by guest and outcome (ok, failed).
    pub guest_loads: IntCounterVec,
    /// Guest calls that found every instance slot in use and waited for
    /// one, by world (those that waited in vain are also in
    /// `guest_failures` with kind `overloaded`).
    pub guest_instance_waits: IntCounterVec,
    /// Guest instances alive (warm ones included), of `plugins.max_instances`.
    pub guest_instances: IntGauge,
    /// Live SIP transactions by side (server, client): a leak shows here.
    pub sip_transactions: IntGaugeVec,
    /// Accounts with at least one registered device.
    pub sip_registered_accounts: IntGauge,
    /// Open TCP/TLS connections.
    pub sip_connections: IntGauge,
    /// New requests refused with 503 under overload, by class (new,
    /// authenticated).
    pub sip_shed: IntCounterVec,
    /// The share of new requests being refused now, 0..1.
    pub sip_shed_share: Gauge,
    /// The runtime's scheduling lag (lowest of the last window), seconds.
    pub sip_scheduling_lag: Gauge,
    /// The wait of datagrams in the UDP receive buffer (lowest of the last
    /// window), seconds.
    pub sip_receive_queue_wait: Gauge,
    /// The SIP path's waits on the database (lowest of the last window), seconds.
    pub sip_database_wait: Gauge,
    /// Requests dropped unparsed for being over their source's rate.
    pub sip_flood_dropped: IntCounter,
    /// Other live nodes of the cluster, as this node sees them.
    pub cluster_peers: IntGauge,
    /// Calls in progress (one task each): a leak shows here.
    pub calls_active: IntGauge,
    /// Dialogs the B2BUA holds (two per answered call).
    pub sip_dialogs: IntGauge,
    /// IVR guest runs in progress (one per call to a service): a leak shows here.
    pub ivr_runs: IntGauge,
    /// Calls answered since start.
    pub calls_answered: IntCounter,
    /// Relay streams open (one per m-line of a call): a leak shows here.
    pub media_streams: IntGauge,
    /// Relay ports bound: a leak shows here.
    pub media_ports_in_use: IntGauge,
    /// Packets the relay forwarded.
    pub media_packets_relayed: IntCounter,
    /// Packets the relay had nowhere to send, or failed to send.
    pub media_packets_dropped: IntCounter,
    /// Stream directions the kernel forwards for the relay (kernel
    /// forwarding; their packets are not in `media_packets_relayed`).
    pub media_kernel_entries: IntGauge,
    /// STUN Binding requests answered with success.
    pub stun_answered: IntCounter,
    /// STUN Binding requests answered with an error (420).
    pub stun_rejected: IntCounter,
    /// STUN messages left unanswered, by reason (malformed,
    /// not-binding-request, rate-limited).
    pub stun_dropped: IntCounterVec,
    /// Open STUN TCP connections.
    pub stun_tcp_connections: IntGauge,
    /// The notAfter (Unix seconds) of each TLS listener's certificate, as
    /// served now (a renewed certificate shows once reloaded).
    tls_cert_not_after: IntGaugeVec,
    /// Pushes queued, by notification kind.
    pub push_queued: IntCounterVec,
    /// Pushes finished, by provider and outcome (delivered, token-invalid,
    /// failed, expired) and retries (retry).
    pub push_outcomes: IntCounterVec,
    /// Time of one push request, from sending to the service's answer, by provider.
    pub push_seconds: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("softswitch".into()), None).expect("static prefix");
        let guest_calls = IntCounterVec::new(
            Opts::new("guest_calls_total", "Guest calls"),
            &["guest", "world"],
        )
        .expect("static metric");
        let guest_failures = IntCounterVec::new(
            Opts::new(
                "guest_failures_total",
                "Guest calls that ended in the fallback",
            ),
            &["guest", "world", "kind"],
        )
        .expect("static metric");
        // Buckets from 1 µs to 50 ms: a warm decision is a few µs, the deadline is 50 ms.
        let decision_seconds = HistogramVec::new(
            HistogramOpts::new("routing_decision_seconds", "Time to a routing decision").buckets(
                vec![
                    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2,
                ],
            ),
            &["guest"],
        )
        .expect("static metric");
        let guest_loads = IntCounterVec::new(
            Opts::new("guest_loads_total", "Guest loads and reloads"),
            &["guest", "outcome"],
        )
        .expect("static metric");
        let guest_instance_waits = IntCounterVec::new(
            Opts::new(
                "guest_instance_waits_total",
                "Guest calls that waited for a free instance slot",
            ),
            &["world"],
        )
        .expect("static metric");
        let guest_instances = IntGauge::new(
            "guest_instances",
            "Guest instances alive, warm ones included",
        )
        .expect("static metric");
        let sip_transactions = IntGaugeVec::new(
            Opts::new("sip_transactions", "Live SIP transactions"),
            &["side"],
        )
        .expect("static metric");
        let sip_registered_accounts = IntGauge::new(
            "sip_registered_accounts",
            "Accounts with a registered device",
        )
        .expect("static metric");
        let sip_connections = IntGauge::new(
            "sip_connections",
            "Open SIP TCP, TLS and WebSocket connections",
        )
        .expect("static metric");
        let sip_shed = IntCounterVec::new(
            Opts::new("sip_shed_total", "New requests answered 503 under overload"),
            &["class"],
        )
        .expect("static metric");
        for class in ["new", "authenticated"] {
            sip_shed.with_label_values(&[class]);
        }
        let sip_shed_share = Gauge::new(
            "sip_shed_share",
            "Share of new requests being refused under overload",
        )
        .expect("static metric");
        let sip_scheduling_lag = Gauge::new(
            "sip_scheduling_lag_seconds",
            "Scheduling lag of the runtime, lowest of the last 100 ms",
        )
        .expect("static metric");
        let sip_receive_queue_wait = Gauge::new(
            "sip_receive_queue_wait_seconds",
            "Wait of SIP datagrams in the UDP receive buffer, lowest of the last 100 ms",
        )
        .expect("static metric");
        let sip_database_wait = Gauge::new(
            "sip_database_wait_seconds",
            "Wait of the SIP path's reads and writes on the database, lowest of the last 100 ms",
        )
        .expect("static metric");
        let sip_flood_dropped = IntCounter::new(
            "sip_flood_dropped_total",
            "Requests dropped for being over their source address's rate",
        )
        .expect("static metric");
        registry
            .register(Box::new(sip_shed.clone()))
            .expect("unique metric");
        for g in [
            &sip_shed_share,
            &sip_scheduling_lag,
            &sip_receive_queue_wait,
            &sip_database_wait,
        ] {
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(sip_flood_dropped.clone()))
            .expect("unique metric");
        let cluster_peers = IntGauge::new(
            "cluster_peers",
            "Other live switch nodes on the database (cluster mode)",
        )
        .expect("static metric");
        registry
            .register(Box::new(cluster_peers.clone()))
            .expect("unique metric");
        let calls_active =
            IntGauge::new("calls_active", "Calls in progress").expect("static metric");
        let sip_dialogs =
            IntGauge::new("sip_dialogs", "SIP dialogs held by the B2BUA").expect("static metric");
        let calls_answered =
            IntCounter::new("calls_answered_total", "Calls answered").expect("static metric");
        let ivr_runs =
            IntGauge::new("ivr_runs", "IVR guest runs in progress").expect("static metric");
        let media_streams =
            IntGauge::new("media_streams", "Relay streams open").expect("static metric");
        let media_ports_in_use =
            IntGauge::new("media_ports_in_use", "Relay ports bound").expect("static metric");
        let media_packets_relayed =
            IntCounter::new("media_packets_relayed_total", "Packets the relay forwarded")
                .expect("static metric");
        let media_packets_dropped = IntCounter::new(
            "media_packets_dropped_total",
            "Packets the relay could not forward",
        )
        .expect("static metric");
        let media_kernel_entries = IntGauge::new(
            "media_kernel_entries",
            "Stream directions the kernel forwards (kernel forwarding)",
        )
        .expect("static metric");
        let stun_answered = IntCounter::new(
            "stun_answered_total",
            "STUN Binding requests answered with success",
        )
        .expect("static metric");
        let stun_rejected = IntCounter::new(
            "stun_rejected_total",
            "STUN Binding requests answered with an error",
        )
        .expect("static metric");
        let stun_dropped = IntCounterVec::new(
            Opts::new("stun_dropped_total", "STUN messages left unanswered"),
            &["reason"],
        )
        .expect("static metric");
        let stun_tcp_connections =
            IntGauge::new("stun_tcp_connections", "Open STUN TCP connections")
                .expect("static metric");
        for c in [
            &calls_answered,
            &media_packets_relayed,
            &media_packets_dropped,
            &stun_answered,
            &stun_rejected,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        // Every reason from the start, so a dashboard sees zeros rather than nothing.
        for reason in ["malformed", "not-binding-request", "rate-limited"] {
            stun_dropped.with_label_values(&[reason]);
        }
        registry
            .register(Box::new(stun_dropped.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(stun_tcp_connections.clone()))
            .expect("unique metric");
        for g in [
            &calls_active,
            &sip_dialogs,
            &ivr_runs,
            &media_streams,
            &media_ports_in_use,
            &media_kernel_entries,
        ] {
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(sip_transactions.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(sip_registered_accounts.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(sip_connections.clone()))
            .expect("unique metric");
        for c in [
            &guest_calls,
            &guest_failures,
            &guest_loads,
            &guest_instance_waits,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(decision_seconds.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(guest_instances.clone()))
            .expect("unique metric");
        let tls_cert_not_after = IntGaugeVec::new(
            Opts::new(
                "tls_certificate_not_after_seconds",
                "Expiry (notAfter, Unix seconds) of the certificate a TLS listener serves",
            ),
            &["listener"],
        )
        .expect("static metric");
        registry
            .register(Box::new(tls_cert_not_after.clone()))
            .expect("unique metric");
        let push_queued =
            IntCounterVec::new(Opts::new("push_queued_total", "Pushes queued"), &["kind"])
                .expect("static metric");
        let push_outcomes = IntCounterVec::new(
            Opts::new(
                "push_outcomes_total",
                "Push attempts by provider and outcome",
            ),
            &["provider", "outcome"],
        )
        .expect("static metric");
        // 5 ms to 10 s: APNs and FCM answer in tens to hundreds of ms.
        let push_seconds = HistogramVec::new(
            HistogramOpts::new("push_request_seconds", "Time of one push request").buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["provider"],
        )
        .expect("static metric");
        for c in [&push_queued, &push_outcomes] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(push_seconds.clone()))
            .expect("unique metric");
        Self {
            registry,
            guest_calls,
            guest_failures,
            decision_seconds,
            guest_loads,
            guest_instance_waits,
            guest_instances,
            sip_transactions,
            sip_registered_accounts,
            sip_connections,
            sip_shed,
            sip_shed_share,
            sip_scheduling_lag,
            sip_receive_queue_wait,
            sip_database_wait,
            sip_flood_dropped,
            cluster_peers,
            calls_active,
            sip_dialogs,
            ivr_runs,
            calls_answered,
            media_streams,
            media_ports_in_use,
            media_packets_relayed,
            media_packets_dropped,
            media_kernel_entries,
            stun_answered,
            stun_rejected,
            stun_dropped,
            stun_tcp_connections,
            tls_cert_not_after,
            push_queued,
            push_outcomes,
            push_seconds,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        for served in crate::tls::served() {
            self.tls_cert_not_after
                .with_label_values(&[served.listener()])
                .set(served.not_after());
        }
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
