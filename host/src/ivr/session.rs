//! One IVR run's side of the call: the media endpoint the guest's imports
//! drive (or a scripted caller, [`super::line`]), the recordings made so
//! far, and the mailboxes the call grants.
//!
//! Every method returns when the media is done, or at once with
//! [`IvrError::HungUp`] once the call is over (the endpoint closed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use media::endpoint::{PlayOutcome, RecordEnd as MediaRecordEnd, RecordOptions};
use tokio::sync::{mpsc, oneshot};

use super::line::Line;
use super::prompts::{PromptError, Prompts, number_prompts};
use crate::store::Store;
use crate::store::mailbox::NewVoicemail;

/// Why an import failed (`ivr-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IvrError {
    #[error("the caller hung up")]
    HungUp,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

impl From<PromptError> for IvrError {
    fn from(e: PromptError) -> Self {
        match e {
            PromptError::NotFound(n) => IvrError::NotFound(format!("prompt {n}")),
            PromptError::InvalidName(n) => IvrError::Invalid(format!("prompt name {n:?}")),
            e @ PromptError::Unusable { .. } => IvrError::Other(e.to_string()),
        }
    }
}

fn storage(e: crate::store::StoreError) -> IvrError {
    tracing::error!(error = %e, "voicemail storage failed");
    IvrError::Other("storage unavailable".into())
}

/// The call's facts (`call-facts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFacts {
    pub service: String,
    pub args: Vec<String>,
    pub caller_login: String,
    pub caller_id: String,
    pub caller_display_name: Option<String>,
    pub callee: String,
    pub language: String,
    pub call_id: String,
}

/// Something to play (`audio`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    Prompt(String),
    Recording(u64),
    Beep,
    Silence(u32),
}

/// What the SIP side of the call is asked by the run.
#[derive(Debug)]
pub enum Control {
    /// Send the 2xx (with the endpoint's SDP); the answer says whether the
    /// call is still there.
    Answer(oneshot::Sender<bool>),
    /// End the call: BYE once answered, else this final status.
    Hangup(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherEnd {
    MaxDigits,
    FinishKey,
    Timeout,
}

impl GatherEnd {
    /// As WIT spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GatherEnd::MaxDigits => "max-digits",
            GatherEnd::FinishKey => "finish-key",
            GatherEnd::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherOptions {
    pub prompt: Vec<Audio>,
    pub min_digits: u32,
    pub max_digits: u32,
    pub finish_key: Option<char>,
    pub timeout: Duration,
    pub inter_digit_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordEnd {
    MaxDuration,
    Silence,
    FinishKey,
    HungUp,
}

impl RecordEnd {
    /// As WIT spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordEnd::MaxDuration => "max-duration",
            RecordEnd::Silence => "silence",
            RecordEnd::FinishKey => "finish-key",
            RecordEnd::HungUp => "hung-up",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    pub max_seconds: u32,
    pub silence_timeout: Option<Duration>,
    pub finish_keys: String,
    pub beep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub id: u64,
    pub duration_ms: u32,
    pub end: RecordEnd,
}

/// A message of a box (`voicemail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxMessage {
    pub id: u64,
    pub caller: String,
    pub caller_display_name: Option<String>,
    pub received_at: u64,
    pub duration_ms: u32,
    pub heard: bool,
}

/// Who a run tells about what it changed.
#[derive(Clone)]
pub struct Hooks {
    /// The login whose mailbox counts changed (MWI NOTIFYs).
    pub mailbox_changed: super::MailboxListener,
    /// A voicemail e-mail was queued (wakes the mailer).
    pub email_queued: Arc<tokio::sync::Notify>,
    /// A voice message was stored (push notifications).
    pub voicemail_left: super::VoicemailListener,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            mailbox_changed: Arc::new(|_: &str| {}),
            email_queued: Arc::new(tokio::sync::Notify::new()),
            voicemail_left: Arc::new(|_: super::VoicemailLeft| {}),
        }
    }
}

/// What an open mailbox allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxGrant {
    pub owner: String,
    /// The owner's own call: everything. Otherwise deposit and the greeting.
    pub full: bool,
}

/// Longest audio one run may hold in recordings (ten minutes at 8 kHz):
/// a guest that records in a loop must not take the host's memory.
const MAX_RECORDED_SAMPLES: usize = 8000 * 600;
/// Longest recording a guest may ask for.
const MAX_RECORD_SECONDS: u32 = 600;
/// Longest single wait a guest may ask for.
const MAX_WAIT: Duration = Duration::from_secs(120);
const SAMPLE_RATE: u32 = 8000;

/// The run's state behind the imports.
pub struct Session {
    pub facts: CallFacts,
    line: Line,
    control: mpsc::UnboundedSender<Control>,
    prompts: Arc<Prompts>,
    store: Store,
    /// Told which box changed (MWI), and that a voicemail e-mail waits.
    hooks: Hooks,
    /// Logins whose box this run may open, and how.
    grants: Vec<MailboxGrant>,
    recordings: HashMap<u64, Arc<[i16]>>,
    recorded_samples: usize,
    next_recording: u64,
    answered: bool,
    ended: bool,
}

fn encode_wav(samples: &[i16]) -> Result<Vec<u8>, IvrError> {
    media::wav::write(samples).map_err(|e| IvrError::Other(format!("cannot encode audio: {e}")))
}

fn audio_text(a: &Audio) -> String {
    match a {
        Audio::Prompt(p) => p.clone(),
        Audio::Recording(id) => format!("recording:{id}"),
        Audio::Beep => "beep".into(),
        Audio::Silence(ms) => format!("silence:{ms}"),
    }
}

/// Audio items as a transcript writes them (`vm-intro beep silence:500`).
fn items_text(items: &[Audio]) -> String {
    items.iter().map(audio_text).collect::<Vec<_>>().join(" ")
}

fn samples_ms(n: usize) -> u32 {
    (n as u64 * 1000 / u64::from(SAMPLE_RATE)) as u32
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        facts: CallFacts,
        line: Line,
        control: mpsc::UnboundedSender<Control>,
        prompts: Arc<Prompts>,
        store: Store,
        grants: Vec<MailboxGrant>,
        answered: bool,
        hooks: Hooks,
    ) -> Self {
        Self {
            facts,
            line,
            control,
            prompts,
            store,
            hooks,
            grants,
            recordings: HashMap::new(),
            recorded_samples: 0,
            next_recording: 1,
            answered,
            ended: false,
        }
    }

    fn gone(&self) -> bool {
        self.ended || self.line.closed()
    }

    /// A line of a scripted call's transcript, while the call lasts.
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if !self.gone() {
            self.line.note(line);
        }
    }

    /// What a scripted call's run did, one line a step.
    pub fn transcript(&self) -> &[String] {
        self.line.transcript()
    }

    fn live(&self) -> Result<(), IvrError> {
        if self.gone() {
            Err(IvrError::HungUp)
        } else {
            Ok(())
        }
    }

    pub async fn answer(&mut self) -> Result<(), IvrError> {
        self.live()?;
        if self.answered {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Answer(tx)).is_err() || !rx.await.unwrap_or(false) {
            self.ended = true;
            return Err(IvrError::HungUp);
        }
        self.answered = true;
        self.line.note(|| "answer".into());
        Ok(())
    }

    pub fn hangup(&mut self, cause: u16) {
        self.note(|| format!("hangup {cause}"));
        if !self.ended {
            self.ended = true;
            let cause = if (400..=699).contains(&cause) || cause == 200 {
                cause
            } else {
                480
            };
            let _ = self.control.send(Control::Hangup(cause));
        }
    }

    fn samples_of(&self, audio: &Audio) -> Result<Arc<[i16]>, IvrError> {
        Ok(match audio {
            Audio::Prompt(name) => self.prompts.get(&self.facts.language, name)?,
            Audio::Recording(id) => self
                .recordings
                .get(id)
                .cloned()
                .ok_or_else(|| IvrError::NotFound(format!("recording {id}")))?,
            Audio::Beep => media::tone::beep().into(),
            Audio::Silence(ms) => {
                let ms = (*ms).min(MAX_WAIT.as_millis() as u32);
                vec![0i16; (ms as usize) * SAMPLE_RATE as usize / 1000].into()
            }
        })
    }

    /// Plays `samples`; the interrupting key, if any.
    async fn play_samples(
        &mut self,
        samples: Arc<[i16]>,
        interrupt: &str,
    ) -> Result<Option<char>, IvrError> {
        self.answer().await?;
        match self.line.play(samples, interrupt).await {
            PlayOutcome::Finished => Ok(None),
            PlayOutcome::Interrupted(k) => Ok(Some(k)),
            PlayOutcome::Closed => {
                self.ended = true;
                Err(IvrError::HungUp)
            }
        }
    }

    pub async fn play(
        &mut self,
        items: &[Audio],
        loops: u32,
        interrupt: &str,
    ) -> Result<Option<char>, IvrError> {
        self.note(|| match loops {
            0 | 1 => format!("play {}", items_text(items)),
            n => format!("play {} x{n}", items_text(items)),
        });
        self.play_items(items, loops, interrupt).await
    }

    async fn play_items(
        &mut self,
        items: &[Audio],
        loops: u32,
        interrupt: &str,
    ) -> Result<Option<char>, IvrError> {
        // Resolve everything first: a missing prompt is an error before
        // anything is heard, not halfway through a sentence.
        let samples: Vec<Arc<[i16]>> = items
            .iter()
            .map(|a| self.samples_of(a))
            .collect::<Result<_, _>>()?;
        for _ in 0..loops.clamp(1, 100) {
            for s in &samples {
                if let Some(k) = self.play_samples(s.clone(), interrupt).await? {
                    return Ok(Some(k));
                }
            }
        }
        self.live()?;
        Ok(None)
    }

    pub async fn say_digits(
        &mut self,
        digits: &str,
        interrupt: &str,
    ) -> Result<Option<char>, IvrError> {
        let items: Vec<Audio> = digits
            .chars()
            .filter(char::is_ascii_digit)
            .map(|d| Audio::Prompt(format!("digit-{d}")))
            .collect();
        self.note(|| format!("say-digits {digits}"));
        self.play_items(&items, 1, interrupt).await
    }

    pub async fn say_number(&mut self, n: u32, interrupt: &str) -> Result<Option<char>, IvrError> {
        if n > 999_999 {
            return Err(IvrError::Invalid(format!("{n} is above 999999")));
        }
        let items: Vec<Audio> = number_prompts(n).into_iter().map(Audio::Prompt).collect();
        self.note(|| format!("say-number {n}"));
        self.play_items(&items, 1, interrupt).await
    }

    pub async fn gather(&mut self, o: &GatherOptions) -> Result<(String, GatherEnd), IvrError> {
        if o.min_digits == 0
            || o.max_digits == 0
            || o.min_digits > o.max_digits
            || o.max_digits > 32
        {
            return Err(IvrError::Invalid(
                "need 1 <= min-digits <= max-digits <= 32".into(),
            ));
        }
        if o.timeout.is_zero() || o.timeout > MAX_WAIT || o.inter_digit_timeout > MAX_WAIT {
            return Err(IvrError::Invalid("timeouts must be 1 ms to 120 s".into()));
        }
        self.note(|| format!("gather {}", items_text(&o.prompt)));
        let (digits, end) = self.gather_digits(o).await?;
        self.note(|| format!("  digits {digits:?} ({})", end.as_str()));
        Ok((digits, end))
    }

    async fn gather_digits(&mut self, o: &GatherOptions) -> Result<(String, GatherEnd), IvrError> {
        let mut digits = String::new();
        let first = self.play_items(&o.prompt, 1, "0123456789*#ABCD").await?;
        let mut wait = o.timeout;
        let mut pending = first;
        loop {
            let key = match pending.take() {
                Some(k) => Some(k),
                None => self.line.next_digit(wait).await,
            };
            let Some(key) = key else {
                self.live()?;
                return Ok((digits, GatherEnd::Timeout));
            };
            if Some(key) == o.finish_key {
                return Ok((digits, GatherEnd::FinishKey));
            }
            digits.push(key);
            if digits.len() as u32 >= o.max_digits {
                return Ok((digits, GatherEnd::MaxDigits));
            }
            wait = o.inter_digit_timeout.max(Duration::from_millis(1));
        }
    }

    pub async fn record(&mut self, r: &RecordRequest) -> Result<Recorded, IvrError> {
        if r.max_seconds == 0 || r.max_seconds > MAX_RECORD_SECONDS {
            return Err(IvrError::Invalid("max-seconds must be 1..=600".into()));
        }
        let room = MAX_RECORDED_SAMPLES.saturating_sub(self.recorded_samples);
        if room < SAMPLE_RATE as usize {
            return Err(IvrError::Invalid(
                "this run has recorded all it may (10 minutes)".into(),
            ));
        }
        self.answer().await?;
        self.note(|| format!("record max={}s beep={}", r.max_seconds, r.beep));
        if r.beep {
            self.play_samples(media::tone::beep().into(), "").await?;
        }
        let max = Duration::from_secs(u64::from(r.max_seconds)).min(Duration::from_millis(
            room as u64 * 1000 / u64::from(SAMPLE_RATE),
        ));
        let recording = self
            .line
            .record(RecordOptions {
                max,
                silence_timeout: r.silence_timeout,
                finish_keys: r.finish_keys.clone(),
            })
            .await;
        let end = match recording.reason {
            MediaRecordEnd::MaxDuration => RecordEnd::MaxDuration,
            MediaRecordEnd::Silence => RecordEnd::Silence,
            MediaRecordEnd::Key(_) => RecordEnd::FinishKey,
            MediaRecordEnd::Closed => {
                self.ended = true;
                RecordEnd::HungUp
            }
        };
        let id = self.next_recording;
        self.next_recording += 1;
        let duration_ms = samples_ms(recording.samples.len());
        self.recorded_samples += recording.samples.len();
        self.recordings.insert(id, recording.samples.into());
        self.line
            .note(|| format!("  recording:{id} {duration_ms}ms {}", end.as_str()));
        Ok(Recorded {
            id,
            duration_ms,
            end,
        })
    }

    pub async fn pause(&mut self, ms: u32) -> Result<(), IvrError> {
        self.note(|| format!("pause {ms}"));
        let samples = self.samples_of(&Audio::Silence(ms))?;
        self.play_samples(samples, "").await.map(|_| ())
    }

    // -- mailboxes ------------------------------------------------------

    /// The grant for `login`'s box, if the call has one.
    pub fn open_mailbox(&self, login: &str) -> Result<MailboxGrant, IvrError> {
        self.grants
            .iter()
            .filter(|g| g.owner == login && !login.is_empty())
            .max_by_key(|g| g.full)
            .cloned()
            .ok_or_else(|| IvrError::Forbidden(format!("mailbox {login:?}")))
    }

    fn full(grant: &MailboxGrant) -> Result<(), IvrError> {
        if grant.full {
            Ok(())
        } else {
            Err(IvrError::Forbidden(format!(
                "only deposits to mailbox {:?}",
                grant.owner
            )))
        }
    }

    pub async fn list(&self, grant: &MailboxGrant) -> Result<Vec<MailboxMessage>, IvrError> {
        Self::full(grant)?;
        let list = self
            .store
            .voicemails(&grant.owner, 1000, 0)
            .await
            .map_err(storage)?;
        Ok(list
            .into_iter()
            .map(|v| MailboxMessage {
                id: v.id as u64,
                caller: v.caller,
                caller_display_name: v.caller_name,
                received_at: v.created_at.max(0) as u64,
                duration_ms: v.duration_ms.clamp(0, i64::from(u32::MAX)) as u32,
                heard: v.heard,
            })
            .collect())
    }

    fn message_id(id: u64) -> Result<i64, IvrError> {
        i64::try_from(id).map_err(|_| IvrError::NotFound(format!("voicemail {id}")))
    }

    pub async fn play_message(
        &mut self,
        grant: &MailboxGrant,
        id: u64,
        interrupt: &str,
    ) -> Result<Option<char>, IvrError> {
        Self::full(grant)?;
        self.note(|| format!("play voicemail:{id}"));
        let wav = self
            .store
            .voicemail_audio(&grant.owner, Self::message_id(id)?)
            .await
            .map_err(storage)?
            .ok_or_else(|| IvrError::NotFound(format!("voicemail {id}")))?;
        let samples = media::wav::read(&wav)
            .map_err(|e| IvrError::Other(format!("voicemail {id} unreadable: {e}")))?;
        self.play_samples(samples.into(), interrupt).await
    }

    pub async fn mark_heard(&mut self, grant: &MailboxGrant, id: u64) -> Result<(), IvrError> {
        Self::full(grant)?;
        self.note(|| format!("heard {id}"));
        let done = self
            .store
            .set_voicemail_heard(&grant.owner, Self::message_id(id)?, true)
            .await
            .map_err(storage)?;
        if !done {
            return Err(IvrError::NotFound(format!("voicemail {id}")));
        }
        (self.hooks.mailbox_changed)(&grant.owner);
        Ok(())
    }

    pub async fn delete(&mut self, grant: &MailboxGrant, id: u64) -> Result<(), IvrError> {
        Self::full(grant)?;
        self.note(|| format!("delete {id}"));
        let done = self
            .store
            .delete_voicemail(&grant.owner, Self::message_id(id)?)
            .await
            .map_err(storage)?;
        if !done {
            return Err(IvrError::NotFound(format!("voicemail {id}")));
        }
        (self.hooks.mailbox_changed)(&grant.owner);
        Ok(())
    }

    fn recording(&self, id: u64) -> Result<Arc<[i16]>, IvrError> {
        self.recordings
            .get(&id)
            .cloned()
            .ok_or_else(|| IvrError::NotFound(format!("recording {id}")))
    }

    /// Works after a hang-up too: what the caller said before hanging up
    /// is a message.
    pub async fn deposit(&mut self, grant: &MailboxGrant, recording: u64) -> Result<u64, IvrError> {
        let samples = self.recording(recording)?;
        // After a hang-up too: the deposit is what the run is for.
        self.line
            .note(|| format!("deposit recording:{recording} into {}", grant.owner));
        let wav = encode_wav(&samples)?;
        // Voicemail to e-mail: when the owner turned it on and has an address.
        let email_to = match self.store.voicemail_settings(&grant.owner).await {
            Ok(Some(s)) if s.email_copy => self
                .store
                .account_by_login(&grant.owner)
                .await
                .ok()
                .flatten()
                .and_then(|a| a.email)
                .filter(|e| !e.is_empty()),
            _ => None,
        };
        let caller = if self.facts.caller_id.is_empty() {
            self.facts.caller_login.as_str()
        } else {
            self.facts.caller_id.as_str()
        };
        let id = self
            .store
            .deposit_voicemail(&NewVoicemail {
                login: &grant.owner,
                caller,
                caller_name: self.facts.caller_display_name.as_deref(),
                duration_ms: i64::from(samples_ms(samples.len())),
                wav: &wav,
                email_to: email_to.as_deref(),
            })
            .await
            .map_err(storage)?;
        tracing::info!(
            mailbox = grant.owner,
            id,
            duration_ms = samples_ms(samples.len()),
            "voicemail deposited"
        );
        (self.hooks.mailbox_changed)(&grant.owner);
        (self.hooks.voicemail_left)(super::VoicemailLeft {
            owner: grant.owner.clone(),
            id,
            caller: caller.to_string(),
            caller_name: self.facts.caller_display_name.clone(),
        });
        Ok(id as u64)
    }

    pub async fn play_greeting(
        &mut self,
        grant: &MailboxGrant,
        interrupt: &str,
    ) -> Result<Option<char>, IvrError> {
        let own = match self.rule_greeting(&grant.owner).await? {
            Some(wav) => Some(wav),
            None => self.store.greeting(&grant.owner).await.map_err(storage)?,
        };
        let own = own.and_then(|wav| match media::wav::read(&wav) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(mailbox = grant.owner, error = %e, "greeting unreadable: default played");
                    None
                }
            });
        self.note(|| match own {
            Some(_) => format!("play greeting of {}", grant.owner),
            None => "play greeting vm-greeting-default".into(),
        });
        let samples: Arc<[i16]> = match own {
            Some(s) => s.into(),
            None => self
                .prompts
                .get(&self.facts.language, "vm-greeting-default")?,
        };
        self.play_samples(samples, interrupt).await
    }

    /// The greeting of `owner`'s answering rule for this run's caller, if
    /// that rule has one.
    async fn rule_greeting(&self, owner: &str) -> Result<Option<Vec<u8>>, IvrError> {
        let rules = self.store.answering_rules(owner).await.map_err(storage)?;
        if !rules.iter().any(|r| r.greeting) {
            return Ok(None);
        }
        let mut callers = vec![self.facts.caller_id.clone()];
        if !self.facts.caller_login.is_empty() {
            callers.push(self.facts.caller_login.clone());
            if let Some(a) = self
                .store
                .account_by_login(&self.facts.caller_login)
                .await
                .map_err(storage)?
            {
                callers.extend(a.phone);
                callers.extend(a.username);
            }
        }
        let callers: Vec<&str> = callers.iter().map(String::as_str).collect();
        match crate::store::answering::rule_for(&rules, &callers) {
            Some(rule) if rule.greeting => self
                .store
                .rule_greeting(owner, rule.id)
                .await
                .map_err(storage),
            _ => Ok(None),
        }
    }

    pub async fn save_greeting(
        &mut self,
        grant: &MailboxGrant,
        recording: u64,
    ) -> Result<(), IvrError> {
        Self::full(grant)?;
        self.note(|| format!("save-greeting recording:{recording}"));
        let samples = self.recording(recording)?;
        self.store
            .set_greeting(
                &grant.owner,
                i64::from(samples_ms(samples.len())),
                &encode_wav(&samples)?,
            )
            .await
            .map_err(storage)
    }

    pub async fn clear_greeting(&mut self, grant: &MailboxGrant) -> Result<(), IvrError> {
        Self::full(grant)?;
        self.note(|| "clear-greeting".into());
        self.store
            .clear_greeting(&grant.owner)
            .await
            .map(|_| ())
            .map_err(storage)
    }

    /// Closes the media (the run is over); the SIP side ends the call.
    pub fn finish(&mut self) {
        self.line.close();
    }
}
