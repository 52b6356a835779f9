//! IVR services: the call flows the routing guest sends calls to
//! (`to-service`), each an IVR guest (`softswitch:ivr/scenario`), and the
//! prompts and mailboxes they use.
//!
//! The SIP side (`crate::sip::call::service`) answers the call with a media
//! endpoint and hands it here: [`Ivr::spawn_run`] runs the service's guest on
//! it. The run asks the SIP side to answer and to hang up through
//! [`session::Control`]; the SIP side closes the endpoint when the caller
//! hangs up, which ends every blocking import with `hung-up`.

pub mod line;
pub mod prompts;
pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::plugins::capabilities::Capabilities;
use crate::plugins::hot::{HotSlot, IvrWorld};
use crate::plugins::ivr::{IvrGuest, RunOutcome};
use crate::plugins::registry::GuestRegistry;
use crate::store::Store;
use prompts::Prompts;
use session::{CallFacts, Control, MailboxGrant, Session};

/// `[ivr]`: the services and their guests, prompts, limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IvrConfig {
    /// Folder of prompt folders, one per language (`<prompts>/en/*.wav`).
    pub prompts: String,
    /// Language of the prompts when the account has none.
    pub language: String,
    /// CPU a guest may use between two imports, ms, before it is stopped.
    pub step_budget_ms: u64,
    /// Longest one run may last, seconds (the call is ended then).
    pub max_run_secs: u64,
    /// Service name (the routing guest's `to-service`) → guest.
    pub services: BTreeMap<String, IvrServiceConfig>,
}

/// `[ivr.services.NAME]`: one service's guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IvrServiceConfig {
    /// Path of the `.wasm` component; relative paths are taken from the
    /// directory of the config file.
    pub path: String,
    /// Values the guest reads through its `config.get` import.
    pub config: BTreeMap<String, String>,
    /// The guest's own cases (`softswitch guest test`), relative like
    /// `path`: a new version is put in service only if it passes them
    /// (the canary).
    pub cases: Option<String>,
    /// What it may import, and which mailboxes a run may open
    /// (`mailboxes = "call"`, `"caller"` or `"none"`).
    pub capabilities: Capabilities,
}

const GUESTS: &str = "guests/target/wasm32-wasip2/release";

impl Default for IvrConfig {
    fn default() -> Self {
        let service = |file: &str| IvrServiceConfig {
            path: format!("{GUESTS}/{file}"),
            config: BTreeMap::new(),
            cases: None,
            capabilities: Capabilities::default(),
        };
        let services = [
            ("code-readout", "ivr_code_readout.wasm"),
            ("voicemail-deposit", "ivr_voicemail_deposit.wasm"),
            ("voicemail", "ivr_voicemail_access.wasm"),
            ("voicemail-playback", "ivr_voicemail_access.wasm"),
            ("greeting", "ivr_greeting.wasm"),
        ]
        .into_iter()
        .map(|(name, file)| (name.to_owned(), service(file)))
        .collect();
        Self {
            prompts: "prompts".into(),
            language: "en".into(),
            // A flow does almost nothing between two imports; a second of
            // CPU is a guest gone wrong, not a slow one.
            step_budget_ms: 1000,
            // Half an hour: beyond any voicemail session.
            max_run_secs: 1800,
            services,
        }
    }
}

impl IvrConfig {
    /// CPU a guest may use between two imports.
    pub fn step_budget(&self) -> Duration {
        Duration::from_millis(self.step_budget_ms)
    }

    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn rebase(&mut self, base: &Path) {
        let rebase = |p: &mut String| {
            if !p.is_empty() && Path::new(p.as_str()).is_relative() {
                *p = base.join(p.as_str()).to_string_lossy().into_owned();
            }
        };
        rebase(&mut self.prompts);
        for s in self.services.values_mut() {
            rebase(&mut s.path);
            if let Some(cases) = &mut s.cases {
                rebase(cases);
            }
        }
    }
}

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum IvrStartError {
    #[error("no IVR service {0:?} is configured")]
    UnknownService(String),
    #[error("IVR guest for {service:?} unavailable: {detail}")]
    Unavailable { service: String, detail: String },
}

/// Told the login whose mailbox changed.
pub type MailboxListener = Arc<dyn Fn(&str) + Send + Sync>;

/// A voice message that was just stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailLeft {
    /// The mailbox's owner.
    pub owner: String,
    pub id: i64,
    /// The caller's login or number, and display name.
    pub caller: String,
    pub caller_name: Option<String>,
}

/// Told of each voice message left (push notifications).
pub type VoicemailListener = Arc<dyn Fn(VoicemailLeft) + Send + Sync>;

/// The mailboxes a call grants ([`Ivr::grants`]), with `store`'s accounts.
pub async fn grants(store: &Store, facts: &CallFacts) -> Vec<MailboxGrant> {
    let mut grants = Vec::new();
    if !facts.caller_login.is_empty() {
        grants.push(MailboxGrant {
            owner: facts.caller_login.clone(),
            full: true,
        });
    }
    if let Some(owner) = facts.args.first()
        && owner != &facts.caller_login
        && matches!(store.account_by_login(owner).await, Ok(Some(_)))
    {
        grants.push(MailboxGrant {
            owner: owner.clone(),
            full: false,
        });
    }
    grants
}

/// One run in [`Ivr::runs`] for as long as it lives.
struct RunCount(Arc<Ivr>);

impl RunCount {
    fn new(ivr: Arc<Ivr>) -> Self {
        *ivr.runs.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Self(ivr)
    }
}

impl Drop for RunCount {
    fn drop(&mut self) {
        *self.0.runs.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
    }
}

/// The IVR services of the switch.
pub struct Ivr {
    config: IvrConfig,
    /// Where the services' guests are loaded and reloaded.
    registry: Arc<GuestRegistry>,
    prompts: Arc<Prompts>,
    store: Store,
    /// By service: two services may run the same file with different
    /// configuration values (the compiled code is shared by the cache).
    loaded: tokio::sync::Mutex<HashMap<String, Arc<HotSlot<IvrWorld>>>>,
    on_mailbox_change: OnceLock<MailboxListener>,
    on_voicemail_left: OnceLock<VoicemailListener>,
    /// Woken when a run queued a voicemail e-mail.
    email_queued: Arc<tokio::sync::Notify>,
    runs: Mutex<usize>,
}

impl Ivr {
    /// The services of `config`; each guest is loaded now (a missing or bad
    /// file is logged and tried again at its first call).
    pub async fn new(config: IvrConfig, registry: Arc<GuestRegistry>, store: Store) -> Arc<Self> {
        let ivr = Arc::new(Self {
            prompts: Arc::new(Prompts::new(&config.prompts)),
            config,
            registry,
            store,
            loaded: tokio::sync::Mutex::new(HashMap::new()),
            on_mailbox_change: OnceLock::new(),
            on_voicemail_left: OnceLock::new(),
            email_queued: Arc::new(tokio::sync::Notify::new()),
            runs: Mutex::new(0),
        });
        for name in ivr.config.services.keys() {
            match ivr.guest(name).await {
                Ok(g) => tracing::info!(service = name, guest = g.name(), "IVR service ready"),
                Err(e) => tracing::warn!(service = name, error = %e, "IVR service not ready"),
            }
        }
        if !ivr.prompts.dir().join(prompts::FALLBACK_LANGUAGE).is_dir() {
            tracing::warn!(dir = %ivr.prompts.dir().display(), "no English prompts folder: IVR services will fail (ivr.prompts)");
        }
        ivr
    }

    /// Who is told that a mailbox changed (MWI NOTIFYs).
    pub fn on_mailbox_change(&self, f: MailboxListener) {
        let _ = self.on_mailbox_change.set(f);
    }

    /// Sets who hears of each voice message left.
    pub fn on_voicemail_left(&self, f: VoicemailListener) {
        let _ = self.on_voicemail_left.set(f);
    }

    /// Notified when a deposit queued a voicemail e-mail (the mailer waits on it).
    pub fn email_queued(&self) -> Arc<tokio::sync::Notify> {
        self.email_queued.clone()
    }

    pub fn prompts(&self) -> &Arc<Prompts> {
        &self.prompts
    }

    pub fn language(&self) -> &str {
        &self.config.language
    }

    /// Runs in progress.
    pub fn runs(&self) -> usize {
        *self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The version of `service`'s guest in service; the first call loads
    /// it when the start could not. New versions come through the guest
    /// registry (file watch, SIGHUP, admin endpoint as `ivr.<service>`);
    /// calls in progress finish on the version they started with.
    pub async fn guest(&self, service: &str) -> Result<Arc<IvrGuest>, IvrStartError> {
        let s = self
            .config
            .services
            .get(service)
            .ok_or_else(|| IvrStartError::UnknownService(service.into()))?;
        let mut loaded = self.loaded.lock().await;
        if let Some(slot) = loaded.get(service) {
            return Ok(slot.current());
        }
        let path = PathBuf::from(&s.path);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| service.to_owned());
        let slot = HotSlot::load(
            self.registry.plugins(),
            format!("ivr.{service}"),
            &name,
            &path,
            s.cases.as_ref().map(PathBuf::from),
            IvrWorld {
                config: s.config.clone(),
                step_budget: self.config.step_budget(),
                prompts: self.prompts.dir().to_path_buf(),
                capabilities: s.capabilities.clone(),
            },
        )
        .await
        .map_err(|e| IvrStartError::Unavailable {
            service: service.into(),
            detail: e.to_string(),
        })?;
        tracing::info!(service, guest = name, path = %path.display(), "IVR guest loaded");
        self.registry.adopt(slot.clone());
        let guest = slot.current();
        loaded.insert(service.to_owned(), slot);
        Ok(guest)
    }

    /// The mailboxes a call grants: the caller's own, fully, when the switch
    /// authenticated it; the box of the user the routing guest named as the
    /// service's first argument, for deposits and its greeting (the router
    /// is the operator's, so it decides whose box a call may fill).
    pub async fn grants(&self, facts: &CallFacts) -> Vec<MailboxGrant> {
        let scope = self
            .config
            .services
            .get(&facts.service)
            .map(|s| s.capabilities.mailboxes)
            .unwrap_or_default();
        scope.filter(grants(&self.store, facts).await)
    }

    /// Runs `guest` on the call in its own task. When the run is over (or
    /// fails, or overruns `ivr.max_run_secs`) the media is closed and the SIP
    /// side is told to hang up.
    pub fn spawn_run(
        self: &Arc<Self>,
        guest: Arc<IvrGuest>,
        facts: CallFacts,
        endpoint: media::endpoint::Endpoint,
        control: mpsc::UnboundedSender<Control>,
        grants: Vec<MailboxGrant>,
        answered: bool,
    ) -> tokio::task::JoinHandle<()> {
        let hooks = session::Hooks {
            mailbox_changed: self
                .on_mailbox_change
                .get()
                .cloned()
                .unwrap_or_else(|| Arc::new(|_: &str| {})),
            email_queued: self.email_queued.clone(),
            voicemail_left: self
                .on_voicemail_left
                .get()
                .cloned()
                .unwrap_or_else(|| Arc::new(|_: VoicemailLeft| {})),
        };
        let session = Session::new(
            facts,
            line::Line::Media(endpoint),
            control.clone(),
            self.prompts.clone(),
            self.store.clone(),
            grants,
            answered,
            hooks,
        );
        let max = Duration::from_secs(self.config.max_run_secs.max(1));
        // Counted down when the task ends, also when it is aborted.
        let counted = RunCount::new(self.clone());
        let span = tracing::info_span!("ivr", service = %session.facts.service, call_id = %session.facts.call_id);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let cause = match tokio::time::timeout(max, guest.run(session)).await {
                    Ok((outcome, mut session)) => {
                        session.finish();
                        match outcome {
                            RunOutcome::Completed => 200,
                            RunOutcome::GuestError(e) => {
                                tracing::info!(guest = guest.name(), error = %e, "IVR run ended with an error");
                                500
                            }
                            RunOutcome::Failed(f) => {
                                tracing::warn!(error = %f, "IVR guest failed: call ended");
                                500
                            }
                        }
                    }
                    Err(_) => {
                        tracing::warn!(
                            guest = guest.name(),
                            "IVR run overran ivr.max_run_secs: call ended"
                        );
                        500
                    }
                };
                // Ignored when the guest hung up already.
                let _ = control.send(Control::Hangup(cause));
                drop(counted);
            },
            span,
        ))
    }
}
