//! WIT ↔ flows glue shared by the IVR guests.
//!
//! Included into each guest with `#[path = "../../glue/glue.rs"] mod glue;`
//! (as the routing guests do): `wit_bindgen::generate!` must expand inside
//! the component crate that exports `run`. The including crate provides
//!
//! ```text
//! fn flow(call: &mut glue::WitCall, facts: &softswitch_ivr_flows::Facts)
//!     -> softswitch_ivr_flows::Result<()>
//! ```
//!
//! at its root; the bindings, the conversions, the [`Call`] over the
//! imports and the export are here, once.

#![allow(dead_code, reason = "some guests use only part of the helpers")]
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use softswitch_ivr_flows as fl;
use softswitch_ivr_flows::Call;

wit_bindgen::generate!({
    world: "scenario",
    path: "../../../wit/ivr/0.1.0",
});

use softswitch::ivr::{call as wit_call, config as wit_config, log as wit_log, types, voicemail};

fn error(e: types::IvrError) -> fl::Error {
    match e {
        types::IvrError::HungUp => fl::Error::HungUp,
        types::IvrError::NotFound(m) => fl::Error::NotFound(m),
        types::IvrError::Forbidden(m) => fl::Error::Forbidden(m),
        types::IvrError::Invalid(m) => fl::Error::Invalid(m),
        types::IvrError::Other(m) => fl::Error::Other(m),
    }
}

fn wit_error(e: fl::Error) -> types::IvrError {
    match e {
        fl::Error::HungUp => types::IvrError::HungUp,
        fl::Error::NotFound(m) => types::IvrError::NotFound(m),
        fl::Error::Forbidden(m) => types::IvrError::Forbidden(m),
        fl::Error::Invalid(m) => types::IvrError::Invalid(m),
        fl::Error::Other(m) => types::IvrError::Other(m),
    }
}

fn audio(a: &fl::Audio) -> types::Audio {
    match a {
        fl::Audio::Prompt(p) => types::Audio::Prompt(p.clone()),
        fl::Audio::Recording(id) => types::Audio::Recording(*id),
        fl::Audio::Beep => types::Audio::Beep,
        fl::Audio::Silence(ms) => types::Audio::Silence(*ms),
    }
}

fn key(k: Option<String>) -> Option<char> {
    k.and_then(|k| k.chars().next())
}

fn voicemail_of(v: types::Voicemail) -> fl::Voicemail {
    fl::Voicemail {
        id: v.id,
        caller: v.caller,
        caller_display_name: v.caller_display_name,
        received_at: v.received_at,
        duration_ms: v.duration_ms,
        heard: v.heard,
    }
}

/// The flows' [`Call`] over the `softswitch:ivr` imports.
pub struct WitCall;

impl Call for WitCall {
    type Mailbox = voicemail::Mailbox;

    fn answer(&mut self) -> fl::Result<()> {
        wit_call::answer().map_err(error)
    }

    fn hangup(&mut self, cause: u16) {
        wit_call::hangup(cause)
    }

    fn play(
        &mut self,
        items: &[fl::Audio],
        loops: u32,
        interrupt: &str,
    ) -> fl::Result<Option<char>> {
        let items: Vec<types::Audio> = items.iter().map(audio).collect();
        wit_call::play(&items, loops, interrupt)
            .map(key)
            .map_err(error)
    }

    fn say_digits(&mut self, digits: &str, interrupt: &str) -> fl::Result<Option<char>> {
        wit_call::say_digits(digits, interrupt)
            .map(key)
            .map_err(error)
    }

    fn say_number(&mut self, n: u32, interrupt: &str) -> fl::Result<Option<char>> {
        wit_call::say_number(n, interrupt).map(key).map_err(error)
    }

    fn gather(&mut self, o: &fl::GatherOptions) -> fl::Result<fl::Gathered> {
        let options = types::GatherOptions {
            prompt: o.prompt.iter().map(audio).collect(),
            min_digits: o.min_digits,
            max_digits: o.max_digits,
            finish_key: o.finish_key.map(|k| k.to_string()),
            timeout_ms: o.timeout_ms,
            inter_digit_timeout_ms: o.inter_digit_timeout_ms,
        };
        let g = wit_call::gather(&options).map_err(error)?;
        Ok(fl::Gathered {
            digits: g.digits,
            end: match g.end {
                types::GatherEnd::MaxDigits => fl::GatherEnd::MaxDigits,
                types::GatherEnd::FinishKey => fl::GatherEnd::FinishKey,
                types::GatherEnd::Timeout => fl::GatherEnd::Timeout,
            },
        })
    }

    fn record(&mut self, o: &fl::RecordOptions) -> fl::Result<fl::Recording> {
        let options = types::RecordOptions {
            max_seconds: o.max_seconds,
            silence_timeout_ms: o.silence_timeout_ms,
            finish_keys: o.finish_keys.clone(),
            beep: o.beep,
        };
        let r = wit_call::record(&options).map_err(error)?;
        Ok(fl::Recording {
            id: r.id,
            duration_ms: r.duration_ms,
            end: match r.end {
                types::RecordEnd::MaxDuration => fl::RecordEnd::MaxDuration,
                types::RecordEnd::Silence => fl::RecordEnd::Silence,
                types::RecordEnd::FinishKey => fl::RecordEnd::FinishKey,
                types::RecordEnd::HungUp => fl::RecordEnd::HungUp,
            },
        })
    }

    fn pause(&mut self, ms: u32) -> fl::Result<()> {
        wit_call::pause(ms).map_err(error)
    }

    fn log(&mut self, message: &str) {
        wit_log::log(wit_log::Level::Info, message)
    }

    fn config(&mut self, key: &str) -> Option<String> {
        wit_config::get(key)
    }

    fn open_mailbox(&mut self, login: &str) -> fl::Result<voicemail::Mailbox> {
        voicemail::Mailbox::open(login).map_err(error)
    }

    fn list(&mut self, mailbox: &voicemail::Mailbox) -> fl::Result<Vec<fl::Voicemail>> {
        mailbox
            .list()
            .map(|l| l.into_iter().map(voicemail_of).collect())
            .map_err(error)
    }

    fn play_message(
        &mut self,
        mailbox: &voicemail::Mailbox,
        id: u64,
        interrupt: &str,
    ) -> fl::Result<Option<char>> {
        mailbox.play(id, interrupt).map(key).map_err(error)
    }

    fn mark_heard(&mut self, mailbox: &voicemail::Mailbox, id: u64) -> fl::Result<()> {
        mailbox.mark_heard(id).map_err(error)
    }

    fn delete(&mut self, mailbox: &voicemail::Mailbox, id: u64) -> fl::Result<()> {
        mailbox.delete(id).map_err(error)
    }

    fn deposit(&mut self, mailbox: &voicemail::Mailbox, recording: u64) -> fl::Result<u64> {
        mailbox.deposit(recording).map_err(error)
    }

    fn play_greeting(
        &mut self,
        mailbox: &voicemail::Mailbox,
        interrupt: &str,
    ) -> fl::Result<Option<char>> {
        mailbox.play_greeting(interrupt).map(key).map_err(error)
    }

    fn save_greeting(&mut self, mailbox: &voicemail::Mailbox, recording: u64) -> fl::Result<()> {
        mailbox.save_greeting(recording).map_err(error)
    }
}

pub fn facts_of(f: types::CallFacts) -> fl::Facts {
    fl::Facts {
        service: f.service,
        args: f.args,
        caller_login: f.caller_login,
        caller_id: f.caller_id,
        caller_display_name: f.caller_display_name,
        callee: f.callee,
        language: f.language,
        call_id: f.call_id,
    }
}

struct Scenario;

impl Guest for Scenario {
    fn run(facts: types::CallFacts) -> Result<(), types::IvrError> {
        let facts = facts_of(facts);
        match super::flow(&mut WitCall, &facts) {
            Ok(()) | Err(fl::Error::HungUp) => Ok(()),
            Err(e) => Err(wit_error(e)),
        }
    }
}

export!(Scenario);
