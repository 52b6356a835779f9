//! Starting the SMS worker and the HTTPS API from the configuration.

use std::sync::Arc;

use anyhow::Context;

use super::{ApiParts, ApiState, listener::TlsListener};
use crate::app::App;
use crate::notify::email::{DEFAULT_ACTIVATION_TEMPLATE, DEFAULT_RESET_TEMPLATE, Mailer, Template};
use crate::plugins::registry::GuestRegistry;
use crate::sip::server::SipServer;
use crate::sms::{SmsService, worker};
use crate::tls::{CertSource, ensure_cert, server_config};

/// What keeps the API and the SMS worker running; dropping it stops them.
pub struct ApiHandles {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ApiHandles {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Loads the SMS provider guests, starts the queue worker and binds the
/// HTTPS listeners.
/// `sip_server`, when the SIP server runs in this process, is told about avatar
/// changes so presence watchers see the new last-update time.
pub async fn start(
    app: &App,
    registry: &GuestRegistry,
    sip_server: Option<Arc<SipServer>>,
    push: Option<Arc<crate::push::PushService>>,
) -> anyhow::Result<ApiHandles> {
    let sms = SmsService::load(&app.config.sms, registry, app.store.clone())
        .await
        .context("cannot start SMS")?;
    let billing = app.billing();
    let mut tasks = vec![
        worker::spawn(sms.clone()),
        billing.spawn_refresh(),
        billing.spawn_did_renewal(),
    ];
    // Address books closed but not applied when the last run stopped.
    for token in app.store.pending_contact_uploads().await? {
        super::contacts::spawn_apply(app.store.clone(), token);
    }
    let api = &app.config.api;
    if api.listen.is_empty() {
        return Ok(ApiHandles { tasks });
    }
    let sip = &app.config.sip;
    // The same certificate as SIP TLS unless the API has its own.
    let files = if !api.tls_cert.is_empty() {
        Some((api.tls_cert.clone().into(), api.tls_key.clone().into()))
    } else {
        (!sip.tls_cert.is_empty())
            .then(|| (sip.tls_cert.clone().into(), sip.tls_key.clone().into()))
    };
    let source = CertSource {
        files,
        generated_dir: app.data_dir.join("tls"),
        names: vec![sip.domain.clone(), "localhost".into(), "127.0.0.1".into()],
    };
    let (cert, key) = ensure_cert(&source)?;
    let tls = server_config("api", &cert, &key)?;
    let email = &app.config.email;
    let mailer = Arc::new(Mailer::new(email)?);
    let activation_template =
        Template::load(&email.activation_template, DEFAULT_ACTIVATION_TEMPLATE)?;
    let reset_template = Template::load(&email.reset_template, DEFAULT_RESET_TEMPLATE)?;
    let link_base = if email.link_base_url.is_empty() {
        format!("https://{}", api.listen[0])
    } else {
        email.link_base_url.trim_end_matches('/').to_string()
    };
    let state = Arc::new(ApiState::new(
        api.clone(),
        app.store.clone(),
        ApiParts {
            sms,
            push,
            default_country_code: app.config.presence.default_country_code.clone(),
            template: app.config.account_template.clone(),
            sip_domain: sip.domain.clone(),
            billing,
            portal: Some(Arc::new(crate::portal::Portal::new(
                &app.config.portal,
                &sip.wss,
                &sip.domain,
            ))),
            mailer,
            activation_template,
            reset_template,
            link_base,
            on_profile_changed: sip_server.clone().map(|server| {
                let hook: super::ProfileChanged = Arc::new(move |login: &str| {
                    let (server, login) = (server.clone(), login.to_string());
                    tokio::spawn(async move {
                        crate::sip::presence::Presence::document_changed(&server, &login).await;
                    });
                });
                hook
            }),
            on_mailbox_changed: sip_server.clone().map(|server| {
                let hook: super::ProfileChanged = Arc::new(move |login: &str| {
                    let (server, login) = (server.clone(), login.to_string());
                    tokio::spawn(async move {
                        crate::sip::presence::Presence::mailbox_changed(&server, &login).await;
                    });
                });
                hook
            }),
            on_user_joined: sip_server.clone().map(|server| {
                let hook: super::UserJoined = Arc::new(move |messages| {
                    crate::sip::messaging::deliver_stored(server.clone(), messages);
                });
                hook
            }),
            call_out: sip_server.map(|server| {
                let caller_id = api.call_me_caller_id.clone();
                let store = app.store.clone();
                let hook: super::CallOut = Arc::new(move |req: super::CallOutRequest| {
                    let (server, store, caller_id) =
                        (server.clone(), store.clone(), caller_id.clone());
                    tokio::spawn(async move {
                        let facts = crate::ivr::session::CallFacts {
                            service: "code-readout".into(),
                            args: vec![req.code],
                            caller_id: caller_id.clone(),
                            callee: req.phone.clone(),
                            language: server
                                .ivr()
                                .map(|i| i.language().to_owned())
                                .unwrap_or_default(),
                            call_id: format!("call-me-{}", req.signup_id),
                            ..Default::default()
                        };
                        let outcome = crate::sip::call::outbound::call_out(
                            &server, &req.phone, &caller_id, facts,
                        )
                        .await;
                        let status = match outcome {
                            crate::sip::call::outbound::Outcome::Answered => "answered",
                            _ => "failed",
                        };
                        if let Err(e) = store.set_signup_call(req.signup_id, status).await {
                            tracing::error!(error = %e, "call-me outcome not recorded");
                        }
                    });
                });
                hook
            }),
        },
    ));
    tasks.push(super::files::spawn_sweep(
        app.store.clone(),
        state.clock.clone(),
        api.file_keep_secs,
    ));
    for addr in &api.listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (api.listen)"))?;
        let listener = TlsListener::new(tcp, tls.clone())?;
        tracing::info!(address = %addr, "client API listening (HTTPS)");
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = super::serve(listener, state).await {
                tracing::error!(error = %e, "client API stopped");
            }
        }));
    }
    Ok(ApiHandles { tasks })
}
