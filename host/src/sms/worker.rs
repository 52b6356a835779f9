//! The queue worker: claims due SMS, sends them through their provider guest
//! and records the outcome.

use std::sync::Arc;
use std::time::Duration;

use super::SmsService;
use crate::plugins::sms::{HttpMessage, MAX_BODY, OutgoingSms, SendOutcome};
use crate::store::now_secs;
use crate::store::sms::SmsMessage;

/// SMS claimed per pass; the rest wait for the next pass.
const BATCH: u32 = 50;

/// Delay before attempt `attempts + 1`: `base · 2^(attempts-1)`, capped.
pub fn backoff_secs(attempts: i64, base: u64, max: u64) -> u64 {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1u64 << exp).min(max)
}

/// Runs the worker until the task is dropped.
pub fn spawn(service: Arc<SmsService>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_millis(service.config.poll_interval_ms.max(10));
        loop {
            if let Err(e) = pass(&service).await {
                tracing::warn!(error = %e, "SMS queue pass failed; retrying at the next one");
            }
            // Either a new SMS was queued or it is time to look for due retries.
            let _ = tokio::time::timeout(interval, service.wake.notified()).await;
        }
    })
}

/// One pass over the queue: hands OFFNET messages over, then sends what is due.
pub async fn pass(service: &SmsService) -> crate::store::Result<()> {
    if service.enabled() {
        let moved = service
            .store
            .hand_over_offnet_sms(&service.config.provider, BATCH, now_secs())
            .await?;
        if moved > 0 {
            tracing::info!(count = moved, "OFFNET messages handed to the SMS queue");
        }
    }
    let now = now_secs();
    for m in service.store.due_sms(now, BATCH).await? {
        let lease = now + (service.config.http_timeout_ms / 1000) as i64 + 30;
        if !service.store.claim_sms(&m, lease, now).await? {
            continue; // another node has it
        }
        let attempts = m.attempts + 1;
        send_one(service, &m, attempts).await?;
    }
    Ok(())
}

async fn retry_or_fail(
    service: &SmsService,
    m: &SmsMessage,
    attempts: i64,
    delay: Option<u64>,
    why: &str,
) -> crate::store::Result<()> {
    let now = now_secs();
    if attempts >= i64::from(service.config.max_attempts) {
        tracing::warn!(sms = m.id, provider = %m.provider, attempts, reason = why, "SMS failed: out of attempts");
        return service
            .store
            .sms_failed(m.id, &format!("out of attempts: {why}"), now)
            .await;
    }
    let delay = delay.unwrap_or_else(|| {
        backoff_secs(
            attempts,
            service.config.retry_base_secs,
            service.config.retry_max_secs,
        )
    });
    tracing::info!(sms = m.id, provider = %m.provider, attempts, delay_secs = delay, reason = why, "SMS will be retried");
    service
        .store
        .sms_retry(m.id, now + delay as i64, why, now)
        .await
}

async fn fail(service: &SmsService, m: &SmsMessage, why: &str) -> crate::store::Result<()> {
    tracing::warn!(sms = m.id, provider = %m.provider, reason = why, "SMS failed");
    service.store.sms_failed(m.id, why, now_secs()).await
}

async fn send_one(service: &SmsService, m: &SmsMessage, attempts: i64) -> crate::store::Result<()> {
    let Some(guest) = service.provider(&m.provider) else {
        return fail(service, m, "provider not configured").await;
    };
    let sms = OutgoingSms {
        to: m.number.clone(),
        sender: m.sender.clone(),
        text: m.body.clone(),
        reference: format!("sms-{}", m.id),
    };
    let extra: Vec<(String, String)> = service
        .callback_url(&m.provider)
        .map(|u| ("callback_url".to_string(), u))
        .into_iter()
        .collect();
    let request = match guest.build_send(&sms, &extra).await {
        Ok(r) => r,
        Err(f) => return retry_or_fail(service, m, attempts, None, &f.to_string()).await,
    };
    let url = match reqwest::Url::parse(&request.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => {
            return fail(
                service,
                m,
                "the guest built a request without an http(s) URL",
            )
            .await;
        }
    };
    if !service.host_allowed(&m.provider, &url) {
        let host = url.host_str().unwrap_or("").to_string();
        return fail(
            service,
            m,
            &format!("host {host:?} is not in the provider's allowed_hosts"),
        )
        .await;
    }
    let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
        return fail(
            service,
            m,
            "the guest built a request with an invalid method",
        )
        .await;
    };
    let mut builder = service.client.request(method, url.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    // The URL's query may carry credentials: log the host only.
    let host = url.host_str().unwrap_or("").to_string();
    let response = match builder.body(request.body).send().await {
        Ok(r) => r,
        Err(e) => {
            return retry_or_fail(
                service,
                m,
                attempts,
                None,
                &format!("request to {host} failed: {}", e.without_url()),
            )
            .await;
        }
    };
    let (status, headers, body) = match read_answer(response, MAX_BODY).await {
        Ok(answer) => answer,
        Err(e) => {
            return retry_or_fail(
                service,
                m,
                attempts,
                None,
                &format!("reading the answer from {host}: {}", e.without_url()),
            )
            .await;
        }
    };
    let answer = HttpMessage {
        status,
        headers,
        body,
        ..Default::default()
    };
    match guest.parse_send_response(&answer).await {
        Ok(SendOutcome::Accepted { provider_id }) => {
            tracing::info!(sms = m.id, provider = %m.provider, provider_id = %provider_id, "SMS accepted by the vendor");
            service
                .store
                .sms_accepted(m.id, &provider_id, now_secs())
                .await
        }
        Ok(SendOutcome::Rejected { reason }) => {
            fail(service, m, &format!("rejected: {reason}")).await
        }
        Ok(SendOutcome::RetryAfter { secs }) => {
            let delay = u64::from(secs).max(1).min(service.config.retry_max_secs);
            retry_or_fail(
                service,
                m,
                attempts,
                Some(delay),
                &format!("vendor asked to retry (HTTP {status})"),
            )
            .await
        }
        Err(f) => retry_or_fail(service, m, attempts, None, &f.to_string()).await,
    }
}

/// A vendor's answer as guests get it: status, the headers that are text,
/// and the body cut to `max` bytes (the SMS and push workers share it).
pub async fn read_answer(
    response: reqwest::Response,
    max: usize,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), reqwest::Error> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let mut body = response.bytes().await?.to_vec();
    body.truncate(max);
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::backoff_secs;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_secs(1, 5, 300), 5);
        assert_eq!(backoff_secs(2, 5, 300), 10);
        assert_eq!(backoff_secs(4, 5, 300), 40);
        assert_eq!(backoff_secs(40, 5, 300), 300);
        assert_eq!(backoff_secs(0, 5, 300), 5);
    }
}
