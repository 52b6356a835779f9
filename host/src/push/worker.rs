//! The outbox worker: claims due pushes, sends each through its token's
//! provider guest (at most `max_in_flight` per provider at once) and
//! records the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Notification, NotificationKind, PushService};
use crate::plugins::push::{MAX_BODY, MAX_REQUESTS, PushDevice, PushOutcome, PushResponse};
use crate::store::now_secs;
use crate::store::push::{PushEntry, PushStatus, TokenKind};

/// Pushes claimed per pass; the rest wait for the next pass.
const BATCH: u32 = 200;

/// An incoming-call push later than this is useless: the call is over.
const CALL_PUSH_MAX_AGE_SECS: i64 = 60;

/// Runs the worker until the task is dropped.
pub fn spawn(service: Arc<PushService>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_millis(service.config.poll_interval_ms.max(10));
        loop {
            if let Err(e) = pass(&service).await {
                tracing::warn!(error = %e, "push outbox pass failed; retrying at the next one");
            }
            let _ = tokio::time::timeout(interval, service.wake.notified()).await;
        }
    })
}

/// One pass: claims what is due and sends it, each push in its own task
/// once its provider has a free slot.
pub async fn pass(service: &Arc<PushService>) -> crate::store::Result<()> {
    let now = now_secs();
    let lease_secs = (service.config.http_timeout_ms / 1000) as i64 * MAX_REQUESTS as i64 + 30;
    for p in service.store.due_pushes(now, BATCH).await? {
        let permit = match service.limits.get(&p.provider) {
            Some(sem) => Some(sem.clone().acquire_owned().await.expect("never closed")),
            None => None,
        };
        let now = now_secs();
        if !service.store.claim_push(&p, now + lease_secs, now).await? {
            continue; // another node has it
        }
        let service = service.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = send_one(&service, &p).await {
                tracing::warn!(push = p.id, error = %e, "push outcome not recorded; the lease will bring it back");
            }
        });
    }
    Ok(())
}

fn count(service: &PushService, provider: &str, outcome: &str) {
    service
        .metrics
        .push_outcomes
        .with_label_values(&[provider, outcome])
        .inc();
}

async fn finish(
    service: &PushService,
    p: &PushEntry,
    status: PushStatus,
    outcome: &str,
    detail: &str,
) -> crate::store::Result<()> {
    count(service, &p.provider, outcome);
    if status == PushStatus::Failed {
        tracing::warn!(
            push = p.id,
            login = p.login,
            provider = p.provider,
            kind = p.kind,
            outcome,
            reason = detail,
            "push not delivered"
        );
    } else {
        tracing::info!(
            push = p.id,
            login = p.login,
            provider = p.provider,
            kind = p.kind,
            attempts = p.attempts + 1,
            "push delivered"
        );
    }
    service
        .store
        .push_done(
            p.id,
            status,
            (!detail.is_empty()).then_some(detail),
            now_secs(),
        )
        .await
}

async fn retry_or_fail(
    service: &PushService,
    p: &PushEntry,
    delay: Option<u64>,
    why: &str,
) -> crate::store::Result<()> {
    let attempts = p.attempts + 1;
    if attempts >= i64::from(service.config.max_attempts) {
        return finish(
            service,
            p,
            PushStatus::Failed,
            "failed",
            &format!("out of attempts: {why}"),
        )
        .await;
    }
    let delay = delay.unwrap_or_else(|| {
        crate::sms::worker::backoff_secs(
            attempts,
            service.config.retry_base_secs,
            service.config.retry_max_secs,
        )
    });
    count(service, &p.provider, "retry");
    tracing::info!(
        push = p.id,
        provider = p.provider,
        attempts,
        delay_secs = delay,
        reason = why,
        "push will be retried"
    );
    let now = now_secs();
    service
        .store
        .push_retry(p.id, now + delay as i64, why, now)
        .await
}

async fn send_one(service: &PushService, p: &PushEntry) -> crate::store::Result<()> {
    let now = now_secs();
    let n: Notification = match serde_json::from_str(&p.notification) {
        Ok(n) => n,
        Err(e) => {
            return finish(
                service,
                p,
                PushStatus::Failed,
                "failed",
                &format!("unreadable notification: {e}"),
            )
            .await;
        }
    };
    let max_age = if n.kind == NotificationKind::IncomingCall {
        CALL_PUSH_MAX_AGE_SECS
    } else {
        service.config.max_age_secs as i64
    };
    if now - p.created_at > max_age {
        return finish(
            service,
            p,
            PushStatus::Failed,
            "expired",
            "too old to be worth sending",
        )
        .await;
    }
    let Some(token) = service.store.push_token(p.token_id).await? else {
        return finish(
            service,
            p,
            PushStatus::Failed,
            "failed",
            "the device's token is gone",
        )
        .await;
    };
    let Some(guest) = service.provider(&token.provider) else {
        return finish(
            service,
            p,
            PushStatus::Failed,
            "failed",
            "push provider not configured",
        )
        .await;
    };
    let device = PushDevice {
        token: token.token.clone(),
        app: token.app.clone(),
        sandbox: token.sandbox,
        voip: token.kind == TokenKind::Voip,
        login: token.login.clone(),
    };
    let requests = match guest.format(&n, &device).await {
        Ok(Ok(r)) => r,
        Ok(Err(reason)) if reason.starts_with("credentials") => {
            return retry_or_fail(service, p, None, &reason).await;
        }
        Ok(Err(reason)) => return finish(service, p, PushStatus::Failed, "failed", &reason).await,
        Err(f) => return retry_or_fail(service, p, None, &f.to_string()).await,
    };
    let mut delivered_id = None;
    for request in requests {
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return finish(
                    service,
                    p,
                    PushStatus::Failed,
                    "failed",
                    "the guest built a request without an http(s) URL",
                )
                .await;
            }
        };
        // A token is the device's secret: log the host only.
        let host = url.host_str().unwrap_or("").to_string();
        if !service.host_allowed(&token.provider, &url) {
            return finish(
                service,
                p,
                PushStatus::Failed,
                "failed",
                &format!("host {host:?} is not in the provider's allowed_hosts"),
            )
            .await;
        }
        let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
            return finish(
                service,
                p,
                PushStatus::Failed,
                "failed",
                "the guest built a request with an invalid method",
            )
            .await;
        };
        let mut builder = service.client.request(method, url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let started = Instant::now();
        let response = match builder.body(request.body).send().await {
            Ok(r) => r,
            Err(e) => {
                let why = format!("request to {host} failed: {}", e.without_url());
                return retry_or_fail(service, p, None, &why).await;
            }
        };
        let (status, headers, body) =
            match crate::sms::worker::read_answer(response, MAX_BODY).await {
                Ok(answer) => answer,
                Err(e) => {
                    let why = format!("reading the answer from {host}: {}", e.without_url());
                    return retry_or_fail(service, p, None, &why).await;
                }
            };
        service
            .metrics
            .push_seconds
            .with_label_values(&[&token.provider])
            .observe(started.elapsed().as_secs_f64());
        if status == 401 || status == 403 {
            // A credential the service no longer takes (FCM 401, APNs 403
            // ExpiredProviderToken): the retry gets a fresh one.
            service.keys.forget_cached().await;
        }
        let answer = PushResponse {
            status,
            headers,
            body,
        };
        match guest.parse_response(&answer).await {
            Ok(PushOutcome::Delivered { id }) => delivered_id = id,
            Ok(PushOutcome::TokenInvalid { reason }) => {
                count(service, &p.provider, "token-invalid");
                tracing::info!(
                    push = p.id,
                    login = token.login,
                    provider = token.provider,
                    instance = token.instance,
                    reason,
                    "push token invalid: deleted"
                );
                // Its queued pushes (this one included) go with it.
                return service.store.delete_push_token_by_id(token.id).await;
            }
            Ok(PushOutcome::RetryAfter { secs }) => {
                let delay = u64::from(secs).max(1).min(service.config.retry_max_secs);
                return retry_or_fail(
                    service,
                    p,
                    Some(delay),
                    &format!("service asked to retry (HTTP {status})"),
                )
                .await;
            }
            Ok(PushOutcome::Failed { reason }) => {
                return finish(service, p, PushStatus::Failed, "failed", &reason).await;
            }
            Err(f) => return retry_or_fail(service, p, None, &f.to_string()).await,
        }
    }
    finish(
        service,
        p,
        PushStatus::Delivered,
        "delivered",
        delivered_id.as_deref().unwrap_or(""),
    )
    .await
}
