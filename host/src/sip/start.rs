//! Starting the SIP core from the configuration.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;

use super::call::CallSettings;
use super::digest::DigestAuth;
use super::presence::{Presence, PresenceSettings};
use super::registrar::{ExpiryPolicy, Registrar};
use super::server::{Settings, SipServer};
use super::transport;
use crate::app::App;
use crate::plugins::routing::Router;
use crate::ratelimit::RateLimiter;
use crate::tls::{CertSource, client_config, ensure_cert, server_config};

/// Failed-authentication buckets kept at most; beyond this the fullest
/// (least suspicious) are forgotten first.
const AUTH_LIMITER_KEYS: usize = 100_000;

/// Loads the registrations; done before the guests, whose directory answers
/// `is-registered` from it.
pub async fn load_registrar(app: &App) -> anyhow::Result<Arc<Registrar>> {
    let sip = &app.config.sip;
    let cluster = app.config.cluster.node_address(&sip.udp);
    let node = match cluster.filter(|_| app.config.cluster.enabled) {
        Some(address) => crate::cluster::node_id(address),
        None => format!(
            "sip:{}",
            sip.udp
                .first()
                .or(sip.tcp.first())
                .or(sip.tls.first())
                .map(|a| a.to_string())
                .unwrap_or_default()
        ),
    };
    let registrar = Registrar::load(
        app.store.clone(),
        ExpiryPolicy {
            default: sip.default_expires,
            min: sip.min_expires,
            max: sip.max_expires,
        },
        node,
        app.config.cluster.enabled,
    )
    .await
    .context("cannot load registrations")?;
    Ok(Arc::new(registrar))
}

/// Binds the listeners and serves SIP until the process ends.
pub async fn start(
    app: &App,
    router: Router,
    registrar: Arc<Registrar>,
) -> anyhow::Result<Arc<SipServer>> {
    let sip = &app.config.sip;
    let tls_config = if sip.tls.is_empty() && sip.wss.is_empty() {
        None
    } else {
        let files = (!sip.tls_cert.is_empty())
            .then(|| (sip.tls_cert.clone().into(), sip.tls_key.clone().into()));
        let source = CertSource {
            files,
            generated_dir: app.data_dir.join("tls"),
            names: self_signed_names(&sip.domain, &[&sip.tls[..], &sip.wss[..]].concat()),
        };
        let (cert, key) = ensure_cert(&source)?;
        Some(server_config("sip", &cert, &key)?)
    };
    // Read at start, so a wrong path stops the switch instead of failing
    // every call to a TLS gateway later.
    let gateway_ca = (!sip.gateway_ca.is_empty()).then(|| std::path::Path::new(&sip.gateway_ca));
    let tls_client = client_config(gateway_ca).context("sip.gateway_ca")?;
    let auth = DigestAuth::new(
        sip.domain.clone(),
        app.store.secrets().derive("sip-digest-nonce"),
        Duration::from_secs(sip.nonce_ttl_secs),
    );
    let limiter = RateLimiter::new(
        sip.auth_failure_burst,
        Duration::from_secs(sip.auth_failure_refill_secs),
        AUTH_LIMITER_KEYS,
    );
    let server = Arc::new(SipServer::new(
        Settings::from_config(sip),
        app.store.clone(),
        router,
        registrar,
        CallSettings::from_config(&app.config.calls, &app.config.media),
        auth,
        limiter,
    ));
    let (transports, _tasks) = transport::start(
        transport::Listeners {
            udp: &sip.udp,
            tcp: &sip.tcp,
            tls: &sip.tls,
            ws: &sip.ws,
            wss: &sip.wss,
        },
        transport::WsPolicy::new(sip.ws_origins.clone(), sip.ws_max_per_address),
        tls_config,
        tls_client,
        sip.max_message_bytes,
        server.clone(),
    )
    .await
    .context("cannot bind the SIP listeners (sip.udp, sip.tcp, sip.tls, sip.ws, sip.wss)")?;
    for (proto, addr) in &transports.bound {
        tracing::info!(transport = proto.as_str(), address = %addr, "SIP listening");
    }
    server.attach(transports.clone());
    if let Some(cluster) =
        crate::cluster::Cluster::from_config(&app.config.cluster, &sip.udp, app.store.secrets())
    {
        let cluster = Arc::new(cluster);
        // Known to the others, and knowing them, before the first request.
        cluster
            .beat(&app.store)
            .await
            .context("cannot join the cluster (the nodes table)")?;
        tracing::info!(
            node = cluster.node(),
            name = cluster.name(),
            peers = cluster.peer_count(),
            "cluster node started"
        );
        cluster.clone().spawn(app.store.clone());
        server.attach_cluster(cluster);
    }
    server.overload.attach_database(app.store.sip_wait());
    server.overload.spawn_probe();
    if app.config.billing.prepaid_calls || app.config.billing.prepaid_sms {
        server.attach_billing(app.billing());
    }
    let presence = Presence::load(
        PresenceSettings::from_config(&app.config.presence),
        sip.domain.clone(),
        app.store.clone(),
        server.registrar.clone(),
        transports,
    )
    .await
    .context("cannot load presence subscriptions and publications")?;
    if let Some(cluster) = server.cluster() {
        presence.attach_cluster(cluster.clone());
    }
    server.attach_presence(Arc::new(presence));
    Presence::spawn_housekeeping(server.clone());
    if server.cluster().is_some() {
        Presence::spawn_cluster_sync(server.clone());
    }
    spawn_housekeeping(server.clone(), app.metrics.clone());
    Ok(server)
}

/// What a generated certificate is issued for: the domain, loopback and
/// every address TLS listens on, so clients that reach the switch by
/// address (no DNS in a lab) can still verify it.
fn self_signed_names(domain: &str, listeners: &[std::net::SocketAddr]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let listening = listeners
        .iter()
        .filter(|l| !l.ip().is_unspecified())
        .map(|l| l.ip().to_string());
    for name in [domain.to_owned(), "localhost".into(), "127.0.0.1".into()]
        .into_iter()
        .chain(listening)
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Purges expired bindings and keeps the SIP gauges current.
fn spawn_housekeeping(server: Arc<SipServer>, metrics: crate::metrics::Metrics) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut seconds = 0u64;
        loop {
            tick.tick().await;
            seconds += 1;
            server.sweep_lingering(std::time::Instant::now());
            let (server_txs, client_txs) = server.transaction_count();
            metrics
                .sip_transactions
                .with_label_values(&["server"])
                .set(server_txs as i64);
            metrics
                .sip_transactions
                .with_label_values(&["client"])
                .set(client_txs as i64);
            metrics.calls_active.set(server.calls.active() as i64);
            let answered = server.calls.answered();
            metrics
                .calls_answered
                .inc_by(answered.saturating_sub(metrics.calls_answered.get()));
            metrics.sip_dialogs.set(server.calls.dialog_count() as i64);
            if let Some(ivr) = server.ivr() {
                metrics.ivr_runs.set(ivr.runs() as i64);
            }
            if let Some(media) = &server.calls.settings.media {
                let stats = media.relay.stats();
                metrics
                    .media_streams
                    .set(stats.streams.load(Ordering::Relaxed) as i64);
                metrics
                    .media_ports_in_use
                    .set(stats.ports_in_use.load(Ordering::Relaxed) as i64);
                metrics
                    .media_kernel_entries
                    .set(stats.streams_in_kernel.load(Ordering::Relaxed) as i64);
                for (counter, value) in [
                    (&metrics.media_packets_relayed, &stats.packets_relayed),
                    (&metrics.media_packets_dropped, &stats.packets_dropped),
                ] {
                    let value = value.load(Ordering::Relaxed);
                    counter.inc_by(value.saturating_sub(counter.get()));
                }
            }
            metrics
                .sip_registered_accounts
                .set(server.registrar.registered_accounts() as i64);
            if let Some(t) = server.transports() {
                metrics.sip_connections.set(t.connection_count() as i64);
            }
            let overload = &server.overload;
            for (class, shed) in [
                ("new", &overload.shed_new),
                ("authenticated", &overload.shed_authenticated),
            ] {
                let counter = metrics.sip_shed.with_label_values(&[class]);
                counter.inc_by(shed.load(Ordering::Relaxed).saturating_sub(counter.get()));
            }
            metrics.sip_shed_share.set(overload.shed_share());
            metrics.sip_scheduling_lag.set(overload.lag().as_secs_f64());
            metrics
                .sip_receive_queue_wait
                .set(overload.receive_queue_wait().as_secs_f64());
            metrics
                .sip_database_wait
                .set(overload.database_wait().as_secs_f64());
            if let Some(cluster) = server.cluster() {
                metrics.cluster_peers.set(cluster.peer_count() as i64);
            }
            let dropped = server.flood.dropped.load(Ordering::Relaxed);
            metrics
                .sip_flood_dropped
                .inc_by(dropped.saturating_sub(metrics.sip_flood_dropped.get()));
            if seconds.is_multiple_of(60)
                && let Err(e) = server
                    .store
                    .purge_expired_bindings(crate::store::now_secs())
                    .await
            {
                tracing::warn!(error = %e, "cannot purge expired bindings");
            }
        }
    });
}
