//! Push tokens from a REGISTER (RFC 8599): SIP clients put `pn-provider`,
//! `pn-prid` and `pn-param` as parameters of their Contact URI.
//!
//! - `pn-provider`: the push service, `apns`, `fcm` or `webpush` (a
//!   `[push.providers]` of the same name handles it). Linphone's `apns.dev`
//!   is APNs' development environment.
//! - `pn-prid`: the device's token (percent-encoded when it needs to be).
//! - `pn-param`: for APNs `<team id>.<bundle id>` with `.voip` appended for
//!   a PushKit token (RFC 8599 §9.2); for FCM the project (sender) id.

use crate::store::push::{NewPushToken, TokenKind};

/// `%XX` escapes of a URI parameter value, decoded once; `None` when
/// malformed or not UTF-8. Also what the portal decodes request paths with.
pub(crate) fn unescape(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The device's push token a Contact URI carries, if it carries one.
/// `instance` is the Contact's `+sip.instance`; without one the URI's
/// `user@host:port` identifies the device.
pub fn token_from_contact(uri: &str, instance: Option<&str>) -> Option<NewPushToken> {
    let (address, rest) = uri.split_once(';')?;
    let params = rest.split('?').next().unwrap_or("");
    let (mut provider, mut prid, mut param) = (None, None, None);
    for p in params.split(';') {
        let Some((name, value)) = p.split_once('=') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "pn-provider" => provider = unescape(value.trim()),
            "pn-prid" => prid = unescape(value.trim()),
            "pn-param" => param = unescape(value.trim()),
            _ => {}
        }
    }
    let (provider, token) = (provider?.to_ascii_lowercase(), prid?);
    let (provider, sandbox) = match provider.strip_suffix(".dev") {
        Some(p) => (p.to_string(), true),
        None => (provider, false),
    };
    let param = param.unwrap_or_default();
    let (app, kind) = if provider == "apns" {
        // Team id first, then the topic (bundle id, `.voip` for PushKit).
        let topic = param.split_once('.').map(|(_, t)| t).unwrap_or(&param);
        match topic.strip_suffix(".voip") {
            Some(bundle) => (bundle.to_string(), TokenKind::Voip),
            None => (topic.to_string(), TokenKind::Alert),
        }
    } else {
        (param, TokenKind::Alert)
    };
    let instance = match instance {
        Some(i) if !i.is_empty() => i.to_string(),
        _ => address
            .trim_start_matches("sips:")
            .trim_start_matches("sip:")
            .to_string(),
    };
    Some(NewPushToken {
        instance,
        provider,
        token,
        app,
        sandbox,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_voip_and_alert_tokens_with_team_and_bundle() {
        let t = token_from_contact(
            "sip:bob@192.0.2.4:5060;transport=tls;pn-provider=apns;pn-prid=00fc13adff78512;pn-param=ABCD1234.com.example.app.voip",
            Some("<urn:uuid:1>"),
        )
        .unwrap();
        assert_eq!(
            t,
            NewPushToken {
                instance: "<urn:uuid:1>".into(),
                provider: "apns".into(),
                token: "00fc13adff78512".into(),
                app: "com.example.app".into(),
                sandbox: false,
                kind: TokenKind::Voip,
            }
        );
        let t = token_from_contact(
            "sip:bob@h;pn-provider=apns.dev;pn-prid=ab;pn-param=ABCD1234.com.example.app",
            None,
        )
        .unwrap();
        assert_eq!(
            (t.instance.as_str(), t.sandbox, t.kind, t.app.as_str()),
            ("bob@h", true, TokenKind::Alert, "com.example.app")
        );
    }

    #[test]
    fn fcm_and_webpush_tokens_are_unescaped() {
        let t = token_from_contact(
            "sip:bob@h;pn-provider=fcm;pn-prid=cRz%3AAPA91b;pn-param=my-project",
            None,
        )
        .unwrap();
        assert_eq!(
            (t.provider.as_str(), t.token.as_str(), t.app.as_str()),
            ("fcm", "cRz:APA91b", "my-project")
        );
        let t = token_from_contact(
            "sip:bob@h;pn-provider=webpush;pn-prid=https%3A%2F%2Fpush.example.net%2Fup%2Fabc",
            None,
        )
        .unwrap();
        assert_eq!(t.token, "https://push.example.net/up/abc");
    }

    #[test]
    fn contacts_without_a_full_token_carry_none() {
        for uri in [
            "sip:bob@h",
            "sip:bob@h;transport=tcp",
            "sip:bob@h;pn-provider=apns",
            "sip:bob@h;pn-prid=abc",
            "sip:bob@h;pn-provider=apns;pn-prid=%zz",
        ] {
            assert_eq!(token_from_contact(uri, None), None, "{uri}");
        }
    }
}
