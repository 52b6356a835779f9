//! The switch's IVR call flows as plain functions over a [`Call`] trait.
//!
//! The same code runs inside the IVR guests (compiled to wasm32-wasip2, where
//! [`Call`] is the `softswitch:ivr` imports) and natively in the unit tests,
//! where a scripted call stands in for the caller (`script.rs`). It knows
//! nothing of WIT: the types below mirror the `softswitch:ivr` records.
//!
//! Each flow is straight-line code: every [`Call`] method returns when the
//! media is done, and `Err(Error::HungUp)` is propagated with `?` (the caller
//! is gone, the run ends).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

pub mod script;

/// Why a call-control function failed (`ivr-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    HungUp,
    NotFound(String),
    Forbidden(String),
    Invalid(String),
    Other(String),
}

pub type Result<T> = core::result::Result<T, Error>;

/// The call's facts (`call-facts`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
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

/// A prompt by name.
pub fn prompt(name: &str) -> Audio {
    Audio::Prompt(name.into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherOptions {
    pub prompt: Vec<Audio>,
    pub min_digits: u32,
    pub max_digits: u32,
    pub finish_key: Option<char>,
    pub timeout_ms: u32,
    pub inter_digit_timeout_ms: u32,
}

impl GatherOptions {
    /// One key after `prompt`, waiting `timeout_ms` for it.
    pub fn one_key(prompt: Vec<Audio>, timeout_ms: u32) -> Self {
        Self {
            prompt,
            min_digits: 1,
            max_digits: 1,
            finish_key: None,
            timeout_ms,
            inter_digit_timeout_ms: timeout_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherEnd {
    MaxDigits,
    FinishKey,
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered {
    pub digits: String,
    pub end: GatherEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    pub max_seconds: u32,
    pub silence_timeout_ms: Option<u32>,
    pub finish_keys: String,
    pub beep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordEnd {
    MaxDuration,
    Silence,
    FinishKey,
    HungUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recording {
    pub id: u64,
    pub duration_ms: u32,
    pub end: RecordEnd,
}

/// A message in a mailbox (`voicemail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voicemail {
    pub id: u64,
    pub caller: String,
    pub caller_display_name: Option<String>,
    pub received_at: u64,
    pub duration_ms: u32,
    pub heard: bool,
}

/// Call control and mailboxes, as the `softswitch:ivr` imports offer them.
pub trait Call {
    /// An open mailbox.
    type Mailbox;

    fn answer(&mut self) -> Result<()>;
    fn hangup(&mut self, cause: u16);
    fn play(&mut self, items: &[Audio], loops: u32, interrupt: &str) -> Result<Option<char>>;
    fn say_digits(&mut self, digits: &str, interrupt: &str) -> Result<Option<char>>;
    fn say_number(&mut self, n: u32, interrupt: &str) -> Result<Option<char>>;
    fn gather(&mut self, options: &GatherOptions) -> Result<Gathered>;
    fn record(&mut self, options: &RecordOptions) -> Result<Recording>;
    fn pause(&mut self, ms: u32) -> Result<()>;
    fn log(&mut self, message: &str);
    /// A configuration value of the guest.
    fn config(&mut self, key: &str) -> Option<String>;

    fn open_mailbox(&mut self, login: &str) -> Result<Self::Mailbox>;
    fn list(&mut self, mailbox: &Self::Mailbox) -> Result<Vec<Voicemail>>;
    fn play_message(
        &mut self,
        mailbox: &Self::Mailbox,
        id: u64,
        interrupt: &str,
    ) -> Result<Option<char>>;
    fn mark_heard(&mut self, mailbox: &Self::Mailbox, id: u64) -> Result<()>;
    fn delete(&mut self, mailbox: &Self::Mailbox, id: u64) -> Result<()>;
    fn deposit(&mut self, mailbox: &Self::Mailbox, recording: u64) -> Result<u64>;
    fn play_greeting(&mut self, mailbox: &Self::Mailbox, interrupt: &str) -> Result<Option<char>>;
    fn save_greeting(&mut self, mailbox: &Self::Mailbox, recording: u64) -> Result<()>;
}

/// Every key a menu listens for.
const ALL_KEYS: &str = "0123456789*#";

/// A configuration value as a number, else `default`.
fn config_u32(call: &mut impl Call, key: &str, default: u32) -> u32 {
    call.config(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `code-readout`: says the code (the first argument) twice, then hangs up
/// (SPEC §3, "call me").
pub fn code_readout(call: &mut impl Call, facts: &Facts) -> Result<()> {
    let Some(code) = facts.args.first().filter(|c| !c.is_empty()) else {
        call.log("code-readout without a code");
        call.hangup(500);
        return Err(Error::Invalid("no code to read".into()));
    };
    call.answer()?;
    // The callee has just picked up: give the handset a moment to connect
    // its audio before the first word.
    let lead_in = config_u32(call, "lead-in-ms", 700);
    call.pause(lead_in)?;
    call.play(&[prompt("code-intro")], 1, "")?;
    call.say_digits(code, "")?;
    call.pause(600)?;
    call.play(&[prompt("code-repeat")], 1, "")?;
    call.say_digits(code, "")?;
    call.pause(400)?;
    call.play(&[prompt("goodbye")], 1, "")?;
    call.hangup(200);
    Ok(())
}

/// `voicemail-deposit`: the owner's greeting (or the default), a beep, the
/// message recorded until silence, `#` or the maximum, stored.
pub fn voicemail_deposit(call: &mut impl Call, facts: &Facts) -> Result<()> {
    let owner = facts.args.first().unwrap_or(&facts.callee).clone();
    let mailbox = match call.open_mailbox(&owner) {
        Ok(m) => m,
        Err(e) => {
            call.hangup(480);
            return Err(e);
        }
    };
    call.answer()?;
    // Any key skips the greeting, as on every carrier's voicemail.
    call.play_greeting(&mailbox, ALL_KEYS)?;
    let options = RecordOptions {
        max_seconds: config_u32(call, "max-seconds", 120),
        silence_timeout_ms: Some(config_u32(call, "silence-ms", 5000)),
        finish_keys: "#".into(),
        beep: true,
    };
    let recording = call.record(&options)?;
    // A caller who hangs up at the beep leaves nothing worth a notification.
    let min_ms = config_u32(call, "min-ms", 500);
    if recording.duration_ms >= min_ms {
        call.deposit(&mailbox, recording.id)?;
        if recording.end != RecordEnd::HungUp {
            call.play(&[prompt("vm-message-saved")], 1, "")?;
        }
    }
    call.hangup(200);
    Ok(())
}

/// The caller's own box; without one (an unauthenticated caller), the
/// error prompt, a hang-up and the error.
fn own_mailbox<C: Call>(call: &mut C, facts: &Facts) -> Result<C::Mailbox> {
    match call.open_mailbox(&facts.caller_login) {
        Ok(m) => Ok(m),
        Err(e) => {
            call.answer()?;
            call.play(&[prompt("error")], 1, "")?;
            call.hangup(200);
            Err(e)
        }
    }
}

/// `voicemail` (950): the caller's own box, new messages then saved ones,
/// with a menu after each. `voicemail-playback` (950msg<ID>): that message
/// only, then the same menu.
pub fn voicemail_access(call: &mut impl Call, facts: &Facts) -> Result<()> {
    let mailbox = own_mailbox(call, facts)?;
    call.answer()?;
    let messages = call.list(&mailbox)?;
    let queue: Vec<Voicemail> = if facts.service == "voicemail-playback" {
        let wanted = facts.args.get(1).and_then(|id| id.parse::<u64>().ok());
        match messages.into_iter().find(|m| Some(m.id) == wanted) {
            Some(m) => vec![m],
            None => {
                call.play(&[prompt("vm-not-found"), prompt("goodbye")], 1, "")?;
                call.hangup(200);
                return Ok(());
            }
        }
    } else {
        announce_counts(call, &messages)?;
        messages
    };
    for message in &queue {
        review(call, &mailbox, message)?;
    }
    if !queue.is_empty() {
        call.play(&[prompt("vm-end-of-messages")], 1, "")?;
    }
    call.play(&[prompt("goodbye")], 1, "")?;
    call.hangup(200);
    Ok(())
}

/// "You have 2 new messages and 1 saved message."
fn announce_counts(call: &mut impl Call, messages: &[Voicemail]) -> Result<()> {
    let new = messages.iter().filter(|m| !m.heard).count() as u32;
    let saved = messages.len() as u32 - new;
    if new == 0 && saved == 0 {
        call.play(&[prompt("vm-no-messages")], 1, "")?;
        return Ok(());
    }
    call.play(&[prompt("vm-you-have")], 1, "")?;
    let mut said = false;
    for (n, one, many) in [
        (new, "vm-new-message", "vm-new-messages"),
        (saved, "vm-saved-message", "vm-saved-messages"),
    ] {
        if n == 0 {
            continue;
        }
        if said {
            call.play(&[prompt("vm-and")], 1, "")?;
        }
        call.say_number(n, "")?;
        call.play(&[prompt(if n == 1 { one } else { many })], 1, "")?;
        said = true;
    }
    Ok(())
}

/// One message: play it, mark it heard, then 1 repeat, 7 delete, 9 save,
/// `#` next. A key pressed during the message acts at once.
fn review<C: Call>(call: &mut C, mailbox: &C::Mailbox, message: &Voicemail) -> Result<()> {
    let mut tries = 0;
    let mut heard = message.heard;
    loop {
        call.play(&[prompt("vm-message")], 1, "")?;
        let mut key = call.play_message(mailbox, message.id, "179#")?;
        if !heard {
            call.mark_heard(mailbox, message.id)?;
            heard = true;
        }
        if key.is_none() {
            let got = call.gather(&GatherOptions::one_key(vec![prompt("vm-menu")], 6000))?;
            key = got.digits.chars().next();
        }
        match key {
            Some('1') => continue,
            Some('7') => {
                call.delete(mailbox, message.id)?;
                call.play(&[prompt("vm-deleted")], 1, "")?;
                return Ok(());
            }
            Some('9') => {
                call.play(&[prompt("vm-saved")], 1, "")?;
                return Ok(());
            }
            Some('#') => return Ok(()),
            None => return Ok(()),
            Some(_) => {
                tries += 1;
                call.play(&[prompt("vm-invalid")], 1, "")?;
                if tries >= 3 {
                    return Ok(());
                }
            }
        }
    }
}

/// `greeting` (750): record the caller's greeting, play it back, `1` keeps
/// it, `2` records again.
pub fn greeting(call: &mut impl Call, facts: &Facts) -> Result<()> {
    let mailbox = own_mailbox(call, facts)?;
    call.answer()?;
    let options = RecordOptions {
        max_seconds: config_u32(call, "max-seconds", 60),
        silence_timeout_ms: Some(config_u32(call, "silence-ms", 4000)),
        finish_keys: "#".into(),
        beep: true,
    };
    for _attempt in 0..3 {
        call.play(&[prompt("vm-record-greeting")], 1, "")?;
        let recording = call.record(&options)?;
        if recording.duration_ms == 0 {
            continue;
        }
        let mut choice = None;
        for _ in 0..3 {
            let mut prompt_items = vec![Audio::Recording(recording.id), Audio::Silence(300)];
            if choice.is_some() {
                prompt_items.clear();
            }
            prompt_items.push(prompt("vm-greeting-menu"));
            let got = call.gather(&GatherOptions::one_key(prompt_items, 6000))?;
            choice = got.digits.chars().next();
            match choice {
                Some('1') | Some('2') => break,
                Some(_) => {
                    call.play(&[prompt("vm-invalid")], 1, "")?;
                }
                None => {}
            }
        }
        match choice {
            Some('1') => {
                call.save_greeting(&mailbox, recording.id)?;
                call.play(&[prompt("vm-greeting-saved"), prompt("goodbye")], 1, "")?;
                call.hangup(200);
                return Ok(());
            }
            Some('2') => continue,
            _ => break,
        }
    }
    call.play(&[prompt("goodbye")], 1, "")?;
    call.hangup(200);
    Ok(())
}

#[cfg(test)]
mod tests;
