//! SMS provider guest for any HTTP/JSON API, described entirely by its
//! configuration values (so an operator can reach a vendor without writing a
//! guest):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | (required) | where to send |
//! | `method` | `POST` | HTTP method |
//! | `header.<Name>` | | extra request headers (e.g. `header.Authorization`) |
//! | `field.to`, `field.sender`, `field.text`, `field.reference` | `to`, `from`, `text`, `reference` | JSON body field names |
//! | `field.encoding` | `encoding` | JSON body field for the text's coding; empty: left out |
//! | `encoding.gsm7`, `encoding.ucs2` | `gsm7`, `ucs2` | the values sent in it (e.g. `text` and `unicode`) |
//! | `response.id` | `id` | dotted path of the message id in the JSON answer |
//! | `report.id`, `report.status` | `id`, `status` | fields of a delivery report (JSON, form or query) |
//! | `report.delivered`, `report.failed` | `delivered`, `failed,undelivered,rejected,expired` | status values, comma separated; others are pending |
//!
//! A 2xx answer with an id is accepted; 429 and 5xx are retried (after
//! `Retry-After`, else 30 s); other answers are rejected with the body's text.
//!
//! Built for `softswitch:sms-provider/provider@0.2.0`: the message carries
//! the coding its text needs (GSM 7-bit or UCS-2), worked out by the
//! switch, and the request passes it on so the vendor neither garbles a
//! text nor bills a GSM one as Unicode (twice the parts).
#![cfg_attr(target_arch = "wasm32", no_std)]
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use softswitch_guest_rt as _;

#[path = "../../common/common.rs"]
mod common;

wit_bindgen::generate!({ world: "provider", path: "../../../wit/sms-provider/0.2.0" });

// `message`, `http-request`, ... are in scope through the world's `use`.
use softswitch::sms_provider::types::{DeliveryState, Encoding, Header};

type Config = Vec<(String, String)>;

fn pairs(headers: &[Header]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect()
}

fn key<'a>(config: &'a Config, k: &str, default: &'a str) -> &'a str {
    common::config(config, k).unwrap_or(default)
}

/// Default seconds before retrying when the vendor gives no Retry-After.
const DEFAULT_RETRY_SECS: u32 = 30;

fn build_send(message: Message, config: Config) -> Result<HttpRequest, Error> {
    let url = common::config(&config, "url").ok_or_else(|| Error::Config("url".into()))?;
    let mut body = serde_json::Map::new();
    let mut put = |k: &str, default: &str, v: String| {
        body.insert(key(&config, k, default).to_string(), v.into());
    };
    put("field.to", "to", message.to);
    put("field.sender", "from", message.sender);
    put("field.text", "text", message.text);
    put("field.reference", "reference", message.reference);
    // Unlike the other fields (an empty value means the default), an empty
    // `field.encoding` leaves it out: not every vendor takes one.
    let field = config
        .iter()
        .find(|(k, _)| k == "field.encoding")
        .map_or("encoding", |(_, v)| v.as_str());
    if !field.is_empty() {
        let value = match message.encoding {
            Encoding::Gsm7 => key(&config, "encoding.gsm7", "gsm7"),
            Encoding::Ucs2 => key(&config, "encoding.ucs2", "ucs2"),
        };
        body.insert(field.to_string(), value.into());
    }
    let mut headers = alloc::vec![Header {
        name: "Content-Type".into(),
        value: "application/json".into(),
    }];
    for (k, v) in &config {
        if let Some(name) = k.strip_prefix("header.") {
            headers.push(Header {
                name: name.into(),
                value: v.clone(),
            });
        }
    }
    Ok(HttpRequest {
        method: key(&config, "method", "POST").to_string(),
        url: url.to_string(),
        headers,
        body: serde_json::to_vec(&serde_json::Value::Object(body))
            .map_err(|e| Error::Other(e.to_string()))?,
    })
}

fn parse_send_response(response: HttpResponse, config: Config) -> SendResult {
    let headers = pairs(&response.headers);
    if response.status == 429 || response.status >= 500 {
        return SendResult::RetryAfter(common::retry_after(&headers, DEFAULT_RETRY_SECS));
    }
    let text = String::from_utf8_lossy(&response.body);
    if !(200..300).contains(&response.status) {
        return SendResult::Rejected(format!("HTTP {}: {}", response.status, text.trim()));
    }
    let id = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| {
            common::json_path(&v, key(&config, "response.id", "id")).and_then(common::json_str)
        });
    match id {
        Some(id) if !id.is_empty() => SendResult::Accepted(id),
        _ => SendResult::Rejected(format!(
            "HTTP {} without a message id at {:?}",
            response.status,
            key(&config, "response.id", "id")
        )),
    }
}

/// Fields of a report, whether it came as JSON, a form body or a query string.
fn report_fields(request: &HttpRequest) -> Result<Vec<(String, String)>, Error> {
    let headers = pairs(&request.headers);
    if common::is_json(common::header(&headers, "content-type")) {
        let v: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|e| Error::Invalid(format!("report body is not JSON: {e}")))?;
        let serde_json::Value::Object(map) = v else {
            return Err(Error::Invalid("report body is not a JSON object".into()));
        };
        return Ok(map
            .iter()
            .filter_map(|(k, v)| common::json_str(v).map(|s| (k.clone(), s)))
            .collect());
    }
    let mut fields = common::parse_form(common::query_of(&request.url));
    fields.extend(common::parse_form(&String::from_utf8_lossy(&request.body)));
    Ok(fields)
}

fn parse_delivery_report(request: HttpRequest, config: Config) -> Result<Report, Error> {
    let fields = report_fields(&request)?;
    let id_key = key(&config, "report.id", "id");
    let status_key = key(&config, "report.status", "status");
    let id = common::form_get(&fields, id_key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::Invalid(format!("report without {id_key:?}")))?;
    let status = common::form_get(&fields, status_key)
        .ok_or_else(|| Error::Invalid(format!("report without {status_key:?}")))?;
    let listed = |k: &str, default: &str| {
        key(&config, k, default)
            .split(',')
            .any(|s| s.trim().eq_ignore_ascii_case(status))
    };
    let state = if listed("report.delivered", "delivered") {
        DeliveryState::Delivered
    } else if listed("report.failed", "failed,undelivered,rejected,expired") {
        DeliveryState::Failed
    } else {
        DeliveryState::Pending
    };
    Ok(Report {
        provider_id: id.to_string(),
        state,
        detail: Some(status.to_string()),
    })
}

struct Generic;

impl Guest for Generic {
    fn build_send(message: Message, config: Config) -> Result<HttpRequest, Error> {
        build_send(message, config)
    }
    fn parse_send_response(response: HttpResponse, config: Config) -> SendResult {
        parse_send_response(response, config)
    }
    fn parse_delivery_report(request: HttpRequest, config: Config) -> Result<Report, Error> {
        parse_delivery_report(request, config)
    }
}

export!(Generic);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn request_uses_configured_fields_and_headers() {
        let req = build_send(
            Message {
                to: "48600100200".into(),
                sender: "Switch".into(),
                text: "Your code: 1234".into(),
                reference: "r1".into(),
                encoding: Encoding::Gsm7,
            },
            cfg(&[
                ("url", "https://sms.example/send"),
                ("field.to", "msisdn"),
                ("header.Authorization", "Bearer k"),
            ]),
        )
        .unwrap();
        assert_eq!(req.method, "POST");
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["msisdn"], "48600100200");
        assert_eq!(body["text"], "Your code: 1234");
        assert_eq!(body["encoding"], "gsm7");
        assert!(
            req.headers
                .iter()
                .any(|h| h.name == "Authorization" && h.value == "Bearer k")
        );
        assert!(matches!(
            build_send(
                Message { to: String::new(), sender: String::new(), text: String::new(), reference: String::new(), encoding: Encoding::Gsm7 },
                cfg(&[])
            ),
            Err(Error::Config(k)) if k == "url"
        ));
    }

    #[test]
    fn the_encoding_is_passed_on_under_the_configured_name_and_values() {
        let message = |encoding| Message {
            to: "48600100200".into(),
            sender: String::new(),
            text: "Twój kod: 1234".into(),
            reference: "r1".into(),
            encoding,
        };
        let body = |encoding, config: &[(&str, &str)]| -> serde_json::Value {
            let mut c = cfg(&[("url", "https://sms.example/send")]);
            c.extend(cfg(config));
            serde_json::from_slice(&build_send(message(encoding), c).unwrap().body).unwrap()
        };
        assert_eq!(body(Encoding::Ucs2, &[])["encoding"], "ucs2");
        let named = [
            ("field.encoding", "coding"),
            ("encoding.gsm7", "text"),
            ("encoding.ucs2", "unicode"),
        ];
        assert_eq!(body(Encoding::Ucs2, &named)["coding"], "unicode");
        assert_eq!(body(Encoding::Gsm7, &named)["coding"], "text");
        let left_out = body(Encoding::Gsm7, &[("field.encoding", "")]);
        assert!(left_out.get("encoding").is_none() && left_out.get("").is_none());
    }

    #[test]
    fn responses() {
        let resp = |status, body: &str| HttpResponse {
            status,
            headers: alloc::vec![Header {
                name: "Retry-After".into(),
                value: "7".into()
            }],
            body: body.as_bytes().to_vec(),
        };
        let c = cfg(&[("response.id", "data.id")]);
        assert!(
            matches!(parse_send_response(resp(200, r#"{"data":{"id":"m1"}}"#), c.clone()), SendResult::Accepted(id) if id == "m1")
        );
        assert!(matches!(
            parse_send_response(resp(503, ""), c.clone()),
            SendResult::RetryAfter(7)
        ));
        assert!(matches!(
            parse_send_response(resp(400, "bad"), c.clone()),
            SendResult::Rejected(_)
        ));
        assert!(matches!(
            parse_send_response(resp(200, "{}"), c),
            SendResult::Rejected(_)
        ));
    }

    #[test]
    fn reports_as_json_or_form() {
        let json = HttpRequest {
            method: "POST".into(),
            url: "/v1/sms/reports/x".into(),
            headers: alloc::vec![Header {
                name: "content-type".into(),
                value: "application/json".into()
            }],
            body: br#"{"id":"m1","status":"delivered"}"#.to_vec(),
        };
        let r = parse_delivery_report(json, cfg(&[])).unwrap();
        assert_eq!(
            (r.provider_id.as_str(), r.state),
            ("m1", DeliveryState::Delivered)
        );
        let query = HttpRequest {
            method: "GET".into(),
            url: "/v1/sms/reports/x?id=m2&status=EXPIRED".into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        assert_eq!(
            parse_delivery_report(query, cfg(&[])).unwrap().state,
            DeliveryState::Failed
        );
    }
}
