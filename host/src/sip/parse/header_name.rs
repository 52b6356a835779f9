//! From a header's name and value to rsip's `Header` variant, as rsip's own
//! tokenizer maps them, without running that tokenizer over the message a
//! second time (the head has already been split into fields here).

use rsip::Header;
use rsip::headers::{self as h, UntypedHeader};

/// The longest name rsip has a variant for (`Content-Disposition`,
/// `Proxy-Authorization`, `Authentication-Info`).
const LONGEST: usize = 19;

/// The `Header` rsip's parser would make of `name: value` (name matched
/// case-insensitively; names rsip does not know become `Header::Other` with
/// the name as written).
pub(crate) fn header_of(name: &str, value: String) -> Header {
    let mut lower = [0u8; LONGEST];
    let Some(slot) = lower.get_mut(..name.len()) else {
        return Header::Other(name.to_owned(), value);
    };
    slot.copy_from_slice(name.as_bytes());
    slot.make_ascii_lowercase();
    match &*slot {
        b"accept" => Header::Accept(h::Accept::new(value)),
        b"accept-encoding" => Header::AcceptEncoding(h::AcceptEncoding::new(value)),
        b"accept-language" => Header::AcceptLanguage(h::AcceptLanguage::new(value)),
        b"alert-info" => Header::AlertInfo(h::AlertInfo::new(value)),
        b"allow" => Header::Allow(h::Allow::new(value)),
        b"authentication-info" => Header::AuthenticationInfo(h::AuthenticationInfo::new(value)),
        b"authorization" => Header::Authorization(h::Authorization::new(value)),
        b"cseq" => Header::CSeq(h::CSeq::new(value)),
        b"call-id" => Header::CallId(h::CallId::new(value)),
        b"call-info" => Header::CallInfo(h::CallInfo::new(value)),
        b"contact" => Header::Contact(h::Contact::new(value)),
        b"content-disposition" => Header::ContentDisposition(h::ContentDisposition::new(value)),
        b"content-encoding" => Header::ContentEncoding(h::ContentEncoding::new(value)),
        b"content-language" => Header::ContentLanguage(h::ContentLanguage::new(value)),
        b"content-length" => Header::ContentLength(h::ContentLength::new(value)),
        b"content-type" => Header::ContentType(h::ContentType::new(value)),
        b"date" => Header::Date(h::Date::new(value)),
        b"error-info" => Header::ErrorInfo(h::ErrorInfo::new(value)),
        b"event" => Header::Event(h::Event::new(value)),
        b"expires" => Header::Expires(h::Expires::new(value)),
        b"from" => Header::From(h::From::new(value)),
        b"in-reply-to" => Header::InReplyTo(h::InReplyTo::new(value)),
        b"max-forwards" => Header::MaxForwards(h::MaxForwards::new(value)),
        b"mime-version" => Header::MimeVersion(h::MimeVersion::new(value)),
        b"min-expires" => Header::MinExpires(h::MinExpires::new(value)),
        b"organization" => Header::Organization(h::Organization::new(value)),
        b"priority" => Header::Priority(h::Priority::new(value)),
        b"proxy-authenticate" => Header::ProxyAuthenticate(h::ProxyAuthenticate::new(value)),
        b"proxy-authorization" => Header::ProxyAuthorization(h::ProxyAuthorization::new(value)),
        b"proxy-require" => Header::ProxyRequire(h::ProxyRequire::new(value)),
        b"record-route" => Header::RecordRoute(h::RecordRoute::new(value)),
        b"reply-to" => Header::ReplyTo(h::ReplyTo::new(value)),
        b"require" => Header::Require(h::Require::new(value)),
        b"retry-after" => Header::RetryAfter(h::RetryAfter::new(value)),
        b"route" => Header::Route(h::Route::new(value)),
        b"server" => Header::Server(h::Server::new(value)),
        b"subject" => Header::Subject(h::Subject::new(value)),
        b"supported" => Header::Supported(h::Supported::new(value)),
        b"timestamp" => Header::Timestamp(h::Timestamp::new(value)),
        b"to" => Header::To(h::To::new(value)),
        b"unsupported" => Header::Unsupported(h::Unsupported::new(value)),
        b"user-agent" => Header::UserAgent(h::UserAgent::new(value)),
        b"via" => Header::Via(h::Via::new(value)),
        b"warning" => Header::Warning(h::Warning::new(value)),
        b"www-authenticate" => Header::WwwAuthenticate(h::WwwAuthenticate::new(value)),
        _ => Header::Other(name.to_owned(), value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name maps to the variant rsip's own parser gives it.
    #[test]
    fn names_map_as_rsip_maps_them() {
        let names = [
            "Accept",
            "Accept-Encoding",
            "Accept-Language",
            "Alert-Info",
            "Allow",
            "Authentication-Info",
            "Authorization",
            "CSeq",
            "Call-ID",
            "Call-Info",
            "Contact",
            "Content-Disposition",
            "Content-Encoding",
            "Content-Language",
            "Content-Length",
            "Content-Type",
            "Date",
            "Error-Info",
            "Event",
            "Expires",
            "From",
            "In-Reply-To",
            "Max-Forwards",
            "MIME-Version",
            "Min-Expires",
            "Organization",
            "Priority",
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "Proxy-Require",
            "Record-Route",
            "Reply-To",
            "Require",
            "Retry-After",
            "Route",
            "Server",
            "Subject",
            "Subscription-State",
            "Supported",
            "Timestamp",
            "To",
            "Unsupported",
            "User-Agent",
            "Via",
            "Warning",
            "WWW-Authenticate",
            "X-Custom",
            "P-Asserted-Identity",
            "a-name-longer-than-any-rsip-knows",
            "VIA",
        ];
        for name in names {
            let text = format!("OPTIONS sip:a@b SIP/2.0\r\n{name}: v\r\n\r\n");
            let parsed = rsip::Request::try_from(text.as_bytes()).expect("rsip parses");
            let theirs = parsed.headers.iter().next().expect("one header").clone();
            assert_eq!(header_of(name, "v".to_owned()), theirs, "{name}");
        }
    }
}
