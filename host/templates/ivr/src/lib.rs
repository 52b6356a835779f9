//! `{{crate}}`: an IVR guest for softswitch (world `softswitch:ivr/scenario@0.1.0`,
//! in `wit/`).
//!
//! The switch answers a call that the routing guest sent to a service
//! (`to-service <name>`), then calls `run` once. Every call-control import
//! blocks until the media engine is done, so a flow reads like a script.
//! Once the caller hangs up, the import in progress and every later one
//! return `hung-up`: the `?` operators below then end the run.
//!
//! This flow: a greeting, then a one-digit menu, at most three times:
//!
//! - `1`: the caller's own number, read back digit by digit;
//! - `0`: goodbye;
//! - another key: "Invalid option." and the menu again;
//! - no key within `timeout-ms`: the menu again.
//!
//! then "Goodbye." and the call ends.
//!
//! Configuration values (`config = { ... }` of `[ivr.services.<name>]`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `greeting` | (none: a beep) | prompt played first, by name (`<prompts>/<language>/<name>.wav`) |
//! | `menu` | (none: silence) | prompt played while waiting for the key |
//! | `timeout-ms` | `5000` | wait for the key after the menu prompt |
//!
//! The shipped prompts (the switch's `prompts/` folder) have `vm-invalid` and
//! `goodbye`, which this flow uses; add your own `greeting` and `menu`
//! recordings there (8 kHz mono 16-bit WAV) and name them in the config.
//!
//! The flow ([`run`]) sees the call only through the [`Call`] trait, so the
//! unit tests at the bottom run natively (`cargo test`) on a scripted call.
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

wit_bindgen::generate!({ world: "scenario", path: "wit" });

// `CallFacts` and `IvrError` are in scope through the world's `use`.
use softswitch::ivr::types::{Audio, GatherOptions, Gathered};
use softswitch::ivr::{call, config};

/// Times the menu is offered before the flow says goodbye.
const MENU_TRIES: usize = 3;

/// What the flow needs from the switch. The component uses the WIT imports
/// ([`Imports`]); the unit tests use a scripted stand-in.
pub trait Call {
    fn answer(&mut self) -> Result<(), IvrError>;
    fn play(&mut self, items: &[Audio]) -> Result<(), IvrError>;
    fn say_digits(&mut self, digits: &str) -> Result<(), IvrError>;
    fn gather(&mut self, options: &GatherOptions) -> Result<Gathered, IvrError>;
    fn hangup(&mut self, cause: u16);
    /// This guest's configuration value `key`.
    fn config(&self, key: &str) -> Option<String>;
}

fn prompt(name: &str) -> Audio {
    Audio::Prompt(name.into())
}

/// The call flow.
pub fn run(call: &mut impl Call, facts: &CallFacts) -> Result<(), IvrError> {
    call.answer()?;
    let greeting = call.config("greeting").map_or(Audio::Beep, |p| prompt(&p));
    call.play(&[greeting])?;
    let menu: Vec<Audio> = call
        .config("menu")
        .map(|p| prompt(&p))
        .into_iter()
        .collect();
    let timeout_ms = call
        .config("timeout-ms")
        .and_then(|v| v.parse().ok())
        .filter(|ms| *ms > 0)
        .unwrap_or(5000);
    for _ in 0..MENU_TRIES {
        let key = call.gather(&GatherOptions {
            prompt: menu.clone(),
            min_digits: 1,
            max_digits: 1,
            finish_key: None,
            timeout_ms,
            inter_digit_timeout_ms: timeout_ms,
        })?;
        match key.digits.as_str() {
            "1" => call.say_digits(&facts.caller_id)?,
            "0" => break,
            "" => {}
            _ => call.play(&[prompt("vm-invalid")])?,
        }
    }
    call.play(&[prompt("goodbye")])?;
    call.hangup(200);
    Ok(())
}

/// The call as the WIT imports show it.
pub struct Imports;

impl Call for Imports {
    fn answer(&mut self) -> Result<(), IvrError> {
        call::answer()
    }

    fn play(&mut self, items: &[Audio]) -> Result<(), IvrError> {
        call::play(items, 1, "").map(|_| ())
    }

    fn say_digits(&mut self, digits: &str) -> Result<(), IvrError> {
        call::say_digits(digits, "").map(|_| ())
    }

    fn gather(&mut self, options: &GatherOptions) -> Result<Gathered, IvrError> {
        call::gather(options)
    }

    fn hangup(&mut self, cause: u16) {
        call::hangup(cause);
    }

    fn config(&self, key: &str) -> Option<String> {
        config::get(key).filter(|v| !v.is_empty())
    }
}

struct Scenario;

impl Guest for Scenario {
    fn run(facts: CallFacts) -> Result<(), IvrError> {
        run(&mut Imports, &facts)
    }
}

export!(Scenario);

#[cfg(test)]
mod tests {
    use super::*;
    use softswitch::ivr::types::GatherEnd;
    use std::collections::VecDeque;

    /// A call whose caller presses `keys` in turn ("" is a timeout) and then
    /// hangs up; it writes down what the flow did.
    struct Scripted {
        keys: VecDeque<&'static str>,
        config: Vec<(&'static str, &'static str)>,
        did: Vec<String>,
    }

    impl Scripted {
        fn new(keys: &[&'static str], config: &[(&'static str, &'static str)]) -> Self {
            Scripted {
                keys: keys.iter().copied().collect(),
                config: config.to_vec(),
                did: Vec::new(),
            }
        }
    }

    fn name(a: &Audio) -> String {
        match a {
            Audio::Prompt(p) => p.clone(),
            Audio::Beep => "beep".into(),
            Audio::Recording(id) => format!("recording {id}"),
            Audio::Silence(ms) => format!("silence {ms}"),
        }
    }

    impl Call for Scripted {
        fn answer(&mut self) -> Result<(), IvrError> {
            self.did.push("answer".into());
            Ok(())
        }
        fn play(&mut self, items: &[Audio]) -> Result<(), IvrError> {
            self.did.extend(items.iter().map(name));
            Ok(())
        }
        fn say_digits(&mut self, digits: &str) -> Result<(), IvrError> {
            self.did.push(format!("say {digits}"));
            Ok(())
        }
        fn gather(&mut self, options: &GatherOptions) -> Result<Gathered, IvrError> {
            assert_eq!((options.min_digits, options.max_digits), (1, 1));
            self.did.extend(options.prompt.iter().map(name));
            let digits = self.keys.pop_front().ok_or(IvrError::HungUp)?;
            let end = if digits.is_empty() {
                GatherEnd::Timeout
            } else {
                GatherEnd::MaxDigits
            };
            Ok(Gathered {
                digits: digits.into(),
                end,
            })
        }
        fn hangup(&mut self, cause: u16) {
            self.did.push(format!("hangup {cause}"));
        }
        fn config(&self, key: &str) -> Option<String> {
            self.config
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    fn facts() -> CallFacts {
        CallFacts {
            service: "demo".into(),
            args: vec![],
            caller_login: "alice".into(),
            caller_id: "48600111222".into(),
            caller_display_name: None,
            callee: "700".into(),
            language: "en".into(),
            call_id: "c-1".into(),
        }
    }

    #[test]
    fn one_reads_the_number_back_and_zero_ends() {
        let mut call = Scripted::new(&["1", "0"], &[("greeting", "welcome"), ("menu", "menu")]);
        run(&mut call, &facts()).unwrap();
        assert_eq!(
            call.did,
            [
                "answer",
                "welcome",
                "menu",
                "say 48600111222",
                "menu",
                "goodbye",
                "hangup 200"
            ]
        );
    }

    #[test]
    fn wrong_keys_and_silence_end_after_three_tries() {
        let mut call = Scripted::new(&["7", "", "9"], &[]);
        run(&mut call, &facts()).unwrap();
        assert_eq!(
            call.did,
            [
                "answer",
                "beep",
                "vm-invalid",
                "vm-invalid",
                "goodbye",
                "hangup 200"
            ]
        );
    }

    #[test]
    fn a_hang_up_ends_the_run() {
        let mut call = Scripted::new(&[], &[]);
        assert!(matches!(run(&mut call, &facts()), Err(IvrError::HungUp)));
        assert_eq!(call.did, ["answer", "beep"]);
    }
}
