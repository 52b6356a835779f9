//! The shim that serves guests built for `softswitch:sms-provider@0.1.0`.
//!
//! The host speaks the newest version (0.2.0); a 0.1.0 guest is linked with
//! the 0.1.0 bindings below, and every value crosses this module: down to
//! 0.1.0 on the way in (the message loses `encoding`, which the guest never
//! heard of), up to 0.2.0 on the way out (the same records and variants,
//! case for case). A minor version only adds, so the way down drops and
//! the way up copies; nothing here has to guess.

use super::bindings::softswitch::sms_provider::types as new;

mod bindings {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../wit/sms-provider/0.1.0",
        exports: { default: async },
    });
}

use bindings::softswitch::sms_provider::types as old;
pub(super) use bindings::{Provider, ProviderPre};

/// The message as a 0.1.0 guest knows it: without `encoding`.
pub(super) fn message(m: &new::Message) -> old::Message {
    old::Message {
        to: m.to.clone(),
        sender: m.sender.clone(),
        text: m.text.clone(),
        reference: m.reference.clone(),
    }
}

fn headers_down(headers: &[new::Header]) -> Vec<old::Header> {
    headers
        .iter()
        .map(|h| old::Header {
            name: h.name.clone(),
            value: h.value.clone(),
        })
        .collect()
}

fn headers_up(headers: Vec<old::Header>) -> Vec<new::Header> {
    headers
        .into_iter()
        .map(|h| new::Header {
            name: h.name,
            value: h.value,
        })
        .collect()
}

/// A vendor's answer, for `parse-send-response`.
pub(super) fn http_response(r: &new::HttpResponse) -> old::HttpResponse {
    old::HttpResponse {
        status: r.status,
        headers: headers_down(&r.headers),
        body: r.body.clone(),
    }
}

/// A delivery-report callback, for `parse-delivery-report`.
pub(super) fn http_request(r: &new::HttpRequest) -> old::HttpRequest {
    old::HttpRequest {
        method: r.method.clone(),
        url: r.url.clone(),
        headers: headers_down(&r.headers),
        body: r.body.clone(),
    }
}

fn error(e: old::Error) -> new::Error {
    match e {
        old::Error::Config(k) => new::Error::Config(k),
        old::Error::Invalid(m) => new::Error::Invalid(m),
        old::Error::Other(m) => new::Error::Other(m),
    }
}

/// What `build-send` returned.
pub(super) fn built_request(
    r: Result<old::HttpRequest, old::Error>,
) -> Result<new::HttpRequest, new::Error> {
    r.map(|r| new::HttpRequest {
        method: r.method,
        url: r.url,
        headers: headers_up(r.headers),
        body: r.body,
    })
    .map_err(error)
}

/// What `parse-send-response` returned.
pub(super) fn send_result(r: old::SendResult) -> new::SendResult {
    match r {
        old::SendResult::Accepted(id) => new::SendResult::Accepted(id),
        old::SendResult::Rejected(reason) => new::SendResult::Rejected(reason),
        old::SendResult::RetryAfter(secs) => new::SendResult::RetryAfter(secs),
    }
}

/// What `parse-delivery-report` returned.
pub(super) fn report(r: Result<old::Report, old::Error>) -> Result<new::Report, new::Error> {
    r.map(|r| new::Report {
        provider_id: r.provider_id,
        state: match r.state {
            old::DeliveryState::Delivered => new::DeliveryState::Delivered,
            old::DeliveryState::Failed => new::DeliveryState::Failed,
            old::DeliveryState::Pending => new::DeliveryState::Pending,
        },
        detail: r.detail,
    })
    .map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_headers() -> Vec<new::Header> {
        vec![
            new::Header {
                name: "Retry-After".into(),
                value: "7".into(),
            },
            new::Header {
                name: "Content-Type".into(),
                value: "application/json".into(),
            },
        ]
    }

    fn pairs_old(h: &[old::Header]) -> Vec<(&str, &str)> {
        h.iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect()
    }

    fn pairs_new(h: &[new::Header]) -> Vec<(&str, &str)> {
        h.iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect()
    }

    #[test]
    fn the_message_goes_down_without_its_encoding() {
        for encoding in [new::Encoding::Gsm7, new::Encoding::Ucs2] {
            let m = message(&new::Message {
                to: "48600111222".into(),
                sender: "Switch".into(),
                text: "Twój kod: 1234".into(),
                reference: "sms-7".into(),
                encoding,
            });
            assert_eq!(
                (
                    m.to.as_str(),
                    m.sender.as_str(),
                    m.text.as_str(),
                    m.reference.as_str()
                ),
                ("48600111222", "Switch", "Twój kod: 1234", "sms-7")
            );
        }
    }

    #[test]
    fn requests_and_responses_go_down_whole() {
        let response = http_response(&new::HttpResponse {
            status: 429,
            headers: new_headers(),
            body: b"slow down".to_vec(),
        });
        assert_eq!(response.status, 429);
        assert_eq!(
            pairs_old(&response.headers),
            [("Retry-After", "7"), ("Content-Type", "application/json")]
        );
        assert_eq!(response.body, b"slow down");
        let request = http_request(&new::HttpRequest {
            method: "GET".into(),
            url: "/v1/sms/reports/x?id=m-1".into(),
            headers: new_headers(),
            body: b"{}".to_vec(),
        });
        assert_eq!(
            (request.method.as_str(), request.url.as_str()),
            ("GET", "/v1/sms/reports/x?id=m-1")
        );
        assert_eq!(request.headers.len(), 2);
        assert_eq!(request.body, b"{}");
    }

    #[test]
    fn answers_come_up_case_for_case() {
        let built = built_request(Ok(old::HttpRequest {
            method: "POST".into(),
            url: "https://sms.example/send".into(),
            headers: vec![old::Header {
                name: "Authorization".into(),
                value: "Bearer k".into(),
            }],
            body: b"to=1".to_vec(),
        }))
        .unwrap();
        assert_eq!(
            (built.method.as_str(), built.url.as_str()),
            ("POST", "https://sms.example/send")
        );
        assert_eq!(pairs_new(&built.headers), [("Authorization", "Bearer k")]);
        assert_eq!(built.body, b"to=1");
        for (from, to) in [
            (old::Error::Config("url".into()), "config url"),
            (old::Error::Invalid("bad".into()), "invalid bad"),
            (old::Error::Other("odd".into()), "other odd"),
        ] {
            let got = match built_request(Err(from)) {
                Err(new::Error::Config(k)) => format!("config {k}"),
                Err(new::Error::Invalid(m)) => format!("invalid {m}"),
                Err(new::Error::Other(m)) => format!("other {m}"),
                Ok(_) => "ok".into(),
            };
            assert_eq!(got, to);
        }

        assert!(matches!(
            send_result(old::SendResult::Accepted("m-1".into())),
            new::SendResult::Accepted(id) if id == "m-1"
        ));
        assert!(matches!(
            send_result(old::SendResult::Rejected("no".into())),
            new::SendResult::Rejected(r) if r == "no"
        ));
        assert!(matches!(
            send_result(old::SendResult::RetryAfter(12)),
            new::SendResult::RetryAfter(12)
        ));

        for (from, to) in [
            (old::DeliveryState::Delivered, new::DeliveryState::Delivered),
            (old::DeliveryState::Failed, new::DeliveryState::Failed),
            (old::DeliveryState::Pending, new::DeliveryState::Pending),
        ] {
            let r = report(Ok(old::Report {
                provider_id: "m-2".into(),
                state: from,
                detail: Some("DELIVRD".into()),
            }))
            .unwrap();
            assert_eq!(r.provider_id, "m-2");
            assert_eq!(r.state, to);
            assert_eq!(r.detail.as_deref(), Some("DELIVRD"));
        }
        assert!(matches!(
            report(Err(old::Error::Invalid("not JSON".into()))),
            Err(new::Error::Invalid(m)) if m == "not JSON"
        ));
    }
}
