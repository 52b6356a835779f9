//! RFC 4662 resource list NOTIFY bodies: a `multipart/related` with the RLMI
//! document first and one PIDF document per buddy whose state it carries.

use std::fmt::Write as _;

use super::pidf::{SS_NS, UserPresence, escape};

/// One list member in a NOTIFY.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// `sip:login@domain`.
    pub uri: String,
    pub login: &'a str,
    /// The owner's address-book name for this buddy.
    pub name: Option<&'a str>,
    /// Its state; `None` lists the member without a body part (it changed
    /// nothing, or, in a full-state list, its state is unknown).
    pub state: Option<&'a UserPresence>,
}

/// A built body: the Content-Type header value and the bytes.
#[derive(Debug, Clone)]
pub struct Multipart {
    pub content_type: String,
    pub body: String,
}

/// Builds the body. `full` is RLMI `fullState`; a partial NOTIFY lists only
/// the members that changed (RFC 4662 §5.2).
pub fn build(
    list_uri: &str,
    version: u32,
    full: bool,
    members: &[Member<'_>],
    domain: &str,
    boundary: &str,
) -> Multipart {
    let start_cid = format!("rlmi.{version}@{domain}");
    let mut rlmi = String::with_capacity(128 + members.len() * 160);
    let _ = write!(
        rlmi,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <list xmlns=\"urn:ietf:params:xml:ns:rlmi\" xmlns:ss=\"{SS_NS}\" uri=\"{}\" version=\"{version}\" fullState=\"{full}\">\r\n",
        escape(list_uri)
    );
    let mut parts = String::with_capacity(members.len() * 700);
    for m in members {
        let push = m.state.is_some_and(|s| s.push_capable);
        let _ = write!(
            rlmi,
            "<resource uri=\"{}\" ss:push=\"{push}\">",
            escape(&m.uri)
        );
        if let Some(name) = m.name {
            let _ = write!(rlmi, "<name>{}</name>", escape(name));
        }
        if let Some(state) = m.state {
            let cid = format!("{}.{version}@{domain}", cid_safe(m.login));
            let _ = write!(
                rlmi,
                "<instance id=\"{}\" state=\"active\" cid=\"{}\"/>",
                escape(&cid_safe(m.login)),
                escape(&cid)
            );
            let _ = write!(
                parts,
                "--{boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\
                 Content-Type: application/pidf+xml;charset=\"UTF-8\"\r\n\r\n{}\r\n",
                state.to_pidf(&m.uri, m.login)
            );
        }
        rlmi.push_str("</resource>\r\n");
    }
    rlmi.push_str("</list>\r\n");
    let mut body = String::with_capacity(rlmi.len() + parts.len() + 256);
    let _ = write!(
        body,
        "--{boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{start_cid}>\r\n\
         Content-Type: application/rlmi+xml;charset=\"UTF-8\"\r\n\r\n{rlmi}\r\n{parts}--{boundary}--\r\n"
    );
    Multipart {
        content_type: format!(
            "multipart/related;type=\"application/rlmi+xml\";start=\"<{start_cid}>\";boundary=\"{boundary}\""
        ),
        body,
    }
}

/// Logins may hold characters a Content-ID cannot; keep the safe ones.
fn cid_safe(login: &str) -> String {
    login
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::pidf::Reachability;
    use super::*;

    #[test]
    fn full_list_has_one_part_per_known_member() {
        let bob = UserPresence {
            reachability: Reachability::Online,
            push_capable: false,
            note: None,
            avatar_updated_at: None,
        };
        let members = [
            Member {
                uri: "sip:bob@localhost".into(),
                login: "bob",
                name: Some("Bob & Co"),
                state: Some(&bob),
            },
            Member {
                uri: "sip:carol@localhost".into(),
                login: "carol",
                name: None,
                state: None,
            },
        ];
        let m = build(
            "sip:alice-buddies@localhost",
            3,
            true,
            &members,
            "localhost",
            "b0undary",
        );
        assert!(
            m.content_type
                .starts_with("multipart/related;type=\"application/rlmi+xml\"")
        );
        assert!(m.content_type.contains("start=\"<rlmi.3@localhost>\""));
        assert!(m.body.contains("version=\"3\" fullState=\"true\""));
        assert!(m.body.contains("<name>Bob &amp; Co</name>"));
        assert!(m.body.contains("cid=\"bob.3@localhost\""));
        assert!(m.body.contains("Content-ID: <bob.3@localhost>"));
        assert!(
            m.body
                .contains("<resource uri=\"sip:carol@localhost\" ss:push=\"false\"></resource>")
        );
        assert_eq!(m.body.matches("--b0undary\r\n").count(), 2);
        assert!(m.body.ends_with("--b0undary--\r\n"));
    }
}
