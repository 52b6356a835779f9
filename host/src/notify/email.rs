//! E-mail through SMTP (lettre), from template files with placeholders.
//!
//! A template file is a few header lines, a blank line and the body:
//!
//! ```text
//! Subject: Activate your account, [USER_NAME]
//! Content-Type: text/html
//!
//! <p>Hello [USER_NAME], follow <a href="[LINK]">this link</a>.</p>
//! ```
//!
//! `Content-Type` is `text/plain` (default) or `text/html`. Placeholders are
//! `[USER_NAME]`, `[LINK]` and `[CODE]`; values are HTML-escaped in HTML
//! bodies.

use std::path::Path;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

/// `[email]`: the SMTP server and the sender.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server. Empty: no e-mail (username sign-up answers `email-unavailable`).
    pub smtp_host: String,
    pub smtp_port: u16,
    /// Credentials; empty user means no authentication.
    pub smtp_user: String,
    pub smtp_password: String,
    /// `none`, `starttls` or `tls` (implicit TLS, port 465).
    pub smtp_tls: String,
    /// Sender address and display name.
    pub from: String,
    pub from_name: String,
    /// Optional Reply-To and Bcc addresses.
    pub reply_to: String,
    pub bcc: String,
    /// Activation e-mail template file; empty: the built-in one.
    pub activation_template: String,
    /// Password-reset e-mail template file; empty: the built-in one.
    pub reset_template: String,
    /// Voicemail e-mail template file; empty: the built-in one.
    pub voicemail_template: String,
    /// Base URL of the API in links (`https://sip.example.net:8443`);
    /// empty: `https://` + the first `api.listen` address.
    pub link_base_url: String,
    /// How long an activation link works, seconds.
    pub activation_ttl_secs: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_host: String::new(),
            smtp_port: 25,
            smtp_user: String::new(),
            smtp_password: String::new(),
            smtp_tls: "starttls".into(),
            from: "softswitch@localhost".into(),
            from_name: "Softswitch".into(),
            reply_to: String::new(),
            bcc: String::new(),
            activation_template: String::new(),
            reset_template: String::new(),
            voicemail_template: String::new(),
            link_base_url: String::new(),
            // A day: long enough for a user who signs up in the evening.
            activation_ttl_secs: 86_400,
        }
    }
}

/// The built-in activation template.
pub const DEFAULT_ACTIVATION_TEMPLATE: &str = "Subject: Activate your account [USER_NAME]\n\
Content-Type: text/html\n\
\n\
<p>Hello [USER_NAME],</p>\n\
<p>Follow this link to activate your account:<br><a href=\"[LINK]\">[LINK]</a></p>\n";

/// The built-in password-reset template.
pub const DEFAULT_RESET_TEMPLATE: &str = "Subject: Reset your password [USER_NAME]\n\
Content-Type: text/html\n\
\n\
<p>Hello [USER_NAME],</p>\n\
<p>Follow this link within an hour to choose a new password:<br><a href=\"[LINK]\">[LINK]</a></p>\n\
<p>If you did not ask for it, ignore this e-mail.</p>\n";

/// Errors preparing or sending an e-mail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// No SMTP server is configured.
    #[error("no SMTP server configured (email.smtp_host)")]
    NotConfigured,
    /// The template file could not be read or makes no sense.
    #[error("e-mail template {path}: {message}")]
    Template { path: String, message: String },
    /// An address or the message could not be built.
    #[error("cannot build the e-mail: {0}")]
    Build(String),
    /// The SMTP server refused or could not be reached.
    #[error("SMTP: {0}")]
    Smtp(String),
}

/// A template split into subject, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub subject: String,
    pub html: bool,
    pub body: String,
}

impl Template {
    pub fn parse(text: &str, origin: &str) -> Result<Template, EmailError> {
        let err = |m: &str| EmailError::Template {
            path: origin.into(),
            message: m.into(),
        };
        let text = text.replace("\r\n", "\n");
        let (head, body) = text
            .split_once("\n\n")
            .ok_or_else(|| err("no blank line between the headers and the body"))?;
        let mut subject = None;
        let mut html = false;
        for line in head.lines() {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| err("a header line without ':'"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "subject" => subject = Some(value.trim().to_string()),
                "content-type" => html = value.trim().eq_ignore_ascii_case("text/html"),
                other => return Err(err(&format!("unknown header {other:?}"))),
            }
        }
        Ok(Template {
            subject: subject.ok_or_else(|| err("no Subject header"))?,
            html,
            body: body.to_string(),
        })
    }

    /// Loads `path`, or the built-in `default` when `path` is empty.
    pub fn load(path: &str, default: &str) -> Result<Template, EmailError> {
        if path.is_empty() {
            return Template::parse(default, "built-in template");
        }
        let text = std::fs::read_to_string(Path::new(path)).map_err(|e| EmailError::Template {
            path: path.into(),
            message: e.to_string(),
        })?;
        Template::parse(&text, path)
    }

    /// Subject and body with the placeholders filled in.
    pub fn render(&self, values: &[(&str, &str)]) -> (String, String) {
        let mut subject = self.subject.clone();
        let mut body = self.body.clone();
        for (name, value) in values {
            let placeholder = format!("[{name}]");
            subject = subject.replace(&placeholder, value);
            let v = if self.html {
                html_escape(value)
            } else {
                value.to_string()
            };
            body = body.replace(&placeholder, &v);
        }
        (subject, body)
    }
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A file attached to an e-mail.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub file_name: String,
    /// MIME type, e.g. `audio/mpeg`.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Sends e-mails through the configured SMTP server.
pub struct Mailer {
    config: EmailConfig,
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
}

impl Mailer {
    pub fn new(config: &EmailConfig) -> Result<Mailer, EmailError> {
        if config.smtp_host.is_empty() {
            return Ok(Mailer {
                config: config.clone(),
                transport: None,
            });
        }
        crate::tls::install_crypto_provider();
        let host = config.smtp_host.as_str();
        let tls = match config.smtp_tls.as_str() {
            "none" => Tls::None,
            "starttls" | "tls" => {
                let params = TlsParameters::new(host.into())
                    .map_err(|e| EmailError::Build(e.to_string()))?;
                if config.smtp_tls == "tls" {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
            other => {
                return Err(EmailError::Build(format!(
                    "email.smtp_tls is {other:?}; use none, starttls or tls"
                )));
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(config.smtp_port)
            .tls(tls)
            .timeout(Some(std::time::Duration::from_secs(15)));
        if !config.smtp_user.is_empty() {
            builder = builder.credentials(Credentials::new(
                config.smtp_user.clone(),
                config.smtp_password.clone(),
            ));
        }
        Ok(Mailer {
            config: config.clone(),
            transport: Some(builder.build()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }

    pub fn config(&self) -> &EmailConfig {
        &self.config
    }

    /// Sends one e-mail made from `template` to `to`.
    pub async fn send(
        &self,
        to: &str,
        template: &Template,
        values: &[(&str, &str)],
    ) -> Result<(), EmailError> {
        self.send_with(to, template, values, None).await
    }

    /// Like [`Mailer::send`], with a file attached.
    pub async fn send_with(
        &self,
        to: &str,
        template: &Template,
        values: &[(&str, &str)],
        attachment: Option<&Attachment>,
    ) -> Result<(), EmailError> {
        let transport = self.transport.as_ref().ok_or(EmailError::NotConfigured)?;
        let parse = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| EmailError::Build(format!("address {a:?}: {e}")))
        };
        let from = Mailbox::new(
            (!self.config.from_name.is_empty()).then(|| self.config.from_name.clone()),
            self.config
                .from
                .parse()
                .map_err(|e| EmailError::Build(format!("email.from: {e}")))?,
        );
        let (subject, body) = template.render(values);
        let mut builder = Message::builder()
            .from(from)
            .to(parse(to)?)
            .subject(subject);
        if !self.config.reply_to.is_empty() {
            builder = builder.reply_to(parse(&self.config.reply_to)?);
        }
        if !self.config.bcc.is_empty() {
            builder = builder.bcc(parse(&self.config.bcc)?);
        }
        let part = if template.html {
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(body)
        } else {
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(body)
        };
        let message = match attachment {
            None => builder.singlepart(part),
            Some(a) => {
                let content_type = ContentType::parse(&a.content_type)
                    .map_err(|e| EmailError::Build(format!("attachment type: {e}")))?;
                builder.multipart(
                    MultiPart::mixed().singlepart(part).singlepart(
                        lettre::message::Attachment::new(a.file_name.clone())
                            .body(a.bytes.clone(), content_type),
                    ),
                )
            }
        }
        .map_err(|e| EmailError::Build(e.to_string()))?;
        transport
            .send(message)
            .await
            .map_err(|e| EmailError::Smtp(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_render() {
        assert!(Template::parse(DEFAULT_RESET_TEMPLATE, "r").unwrap().html);
        let t = Template::parse(DEFAULT_ACTIVATION_TEMPLATE, "x").unwrap();
        assert!(t.html);
        let (subject, body) = t.render(&[("USER_NAME", "<bob>"), ("LINK", "https://h/a?t=1&x")]);
        assert_eq!(subject, "Activate your account <bob>");
        assert!(body.contains("&lt;bob&gt;") && body.contains("https://h/a?t=1&amp;x"));
        let plain = Template::parse("Subject: Code [CODE]\n\nYour code: [CODE]\n", "y").unwrap();
        assert_eq!(plain.render(&[("CODE", "1234")]).1, "Your code: 1234\n");
        assert!(Template::parse("Subject x\n\nbody", "z").is_err());
        assert!(Template::parse("Subject: x\nX-Other: y\n\nbody", "z").is_err());
        assert!(Template::parse("no body", "z").is_err());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&EmailConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<EmailConfig>(&text).unwrap(),
            EmailConfig::default()
        );
    }
}
