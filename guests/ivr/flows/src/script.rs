//! A scripted call: the caller's side played from a list of [`Input`]s, and
//! every call-control step written to a transcript. The flows' unit tests
//! run on it; it follows the host's rules (type-ahead keys interrupt a
//! playback at once, a hang-up makes every later step fail with
//! [`Error::HungUp`], mailboxes are granted per call).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::{
    Audio, Call, Error, GatherEnd, GatherOptions, Gathered, RecordEnd, RecordOptions, Recording,
    Result, Voicemail,
};

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Presses a key.
    Key(char),
    /// Says nothing until a `gather` times out.
    Wait,
    /// Speaks into a `record` for this long, which then ends this way.
    Speak { ms: u32, end: RecordEnd },
    /// Hangs up.
    HangUp,
}

/// A mailbox held by the script.
#[derive(Debug, Clone, Default)]
pub struct MailboxState {
    pub messages: Vec<Voicemail>,
    pub greeting: Option<u64>,
}

/// The scripted call.
#[derive(Debug, Default)]
pub struct ScriptedCall {
    pub inputs: VecDeque<Input>,
    /// What the flow did, one line a step.
    pub transcript: Vec<String>,
    pub boxes: BTreeMap<String, MailboxState>,
    /// Logins whose box this call may open.
    pub granted: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub hung_up: bool,
    pub answered: bool,
    next_id: u64,
}

impl ScriptedCall {
    pub fn new(inputs: impl IntoIterator<Item = Input>) -> Self {
        Self {
            inputs: inputs.into_iter().collect(),
            next_id: 100,
            ..Self::default()
        }
    }

    /// Adds a box for `login` with messages of these ids (`heard` flags), and
    /// grants it to the call.
    pub fn with_box(mut self, login: &str, messages: &[(u64, bool)]) -> Self {
        let messages = messages
            .iter()
            .map(|&(id, heard)| Voicemail {
                id,
                caller: "bob".into(),
                caller_display_name: None,
                received_at: 1_700_000_000 + id,
                duration_ms: 3000,
                heard,
            })
            .collect();
        self.boxes.insert(
            login.into(),
            MailboxState {
                messages,
                greeting: None,
            },
        );
        self.granted.push(login.into());
        self
    }

    fn step(&mut self, line: String) -> Result<()> {
        if self.hung_up {
            return Err(Error::HungUp);
        }
        self.transcript.push(line);
        Ok(())
    }

    fn check_hangup(&mut self) -> Result<()> {
        if self.inputs.front() == Some(&Input::HangUp) {
            self.inputs.pop_front();
            self.hung_up = true;
        }
        if self.hung_up {
            return Err(Error::HungUp);
        }
        Ok(())
    }

    /// A type-ahead key in `interrupt`, taken off the input.
    fn interrupting(&mut self, interrupt: &str) -> Option<char> {
        match self.inputs.front() {
            Some(Input::Key(k)) if interrupt.contains(*k) => {
                let k = *k;
                self.inputs.pop_front();
                Some(k)
            }
            _ => None,
        }
    }

    fn play_line(&mut self, what: String, interrupt: &str) -> Result<Option<char>> {
        self.check_hangup()?;
        self.step(what)?;
        let key = self.interrupting(interrupt);
        if let Some(k) = key {
            self.transcript.push(format!("  interrupted by {k}"));
        }
        Ok(key)
    }

    fn box_mut(&mut self, login: &str) -> Result<&mut MailboxState> {
        self.boxes
            .get_mut(login)
            .ok_or_else(|| Error::NotFound(login.into()))
    }
}

fn audio_text(a: &Audio) -> String {
    match a {
        Audio::Prompt(p) => p.clone(),
        Audio::Recording(id) => format!("recording:{id}"),
        Audio::Beep => "beep".into(),
        Audio::Silence(ms) => format!("silence:{ms}"),
    }
}

fn items_text(items: &[Audio]) -> String {
    items.iter().map(audio_text).collect::<Vec<_>>().join(" ")
}

impl Call for ScriptedCall {
    type Mailbox = String;

    fn answer(&mut self) -> Result<()> {
        if self.answered {
            return Ok(());
        }
        self.answered = true;
        self.step("answer".into())
    }

    fn hangup(&mut self, cause: u16) {
        if !self.hung_up {
            self.transcript.push(format!("hangup {cause}"));
        }
        self.hung_up = true;
    }

    fn play(&mut self, items: &[Audio], loops: u32, interrupt: &str) -> Result<Option<char>> {
        let mut line = format!("play {}", items_text(items));
        if loops > 1 {
            line.push_str(&format!(" x{loops}"));
        }
        self.play_line(line, interrupt)
    }

    fn say_digits(&mut self, digits: &str, interrupt: &str) -> Result<Option<char>> {
        self.play_line(format!("say-digits {digits}"), interrupt)
    }

    fn say_number(&mut self, n: u32, interrupt: &str) -> Result<Option<char>> {
        self.play_line(format!("say-number {n}"), interrupt)
    }

    fn gather(&mut self, options: &GatherOptions) -> Result<Gathered> {
        self.check_hangup()?;
        self.answered = true;
        self.step(format!("gather {}", items_text(&options.prompt)))?;
        let mut digits = String::new();
        loop {
            match self.inputs.front().cloned() {
                Some(Input::Key(k)) => {
                    self.inputs.pop_front();
                    if Some(k) == options.finish_key {
                        return Ok(Gathered {
                            digits,
                            end: GatherEnd::FinishKey,
                        });
                    }
                    digits.push(k);
                    if digits.len() as u32 >= options.max_digits {
                        return Ok(Gathered {
                            digits,
                            end: GatherEnd::MaxDigits,
                        });
                    }
                }
                Some(Input::HangUp) => {
                    self.inputs.pop_front();
                    self.hung_up = true;
                    return Err(Error::HungUp);
                }
                Some(Input::Wait) => {
                    self.inputs.pop_front();
                    return Ok(Gathered {
                        digits,
                        end: GatherEnd::Timeout,
                    });
                }
                _ => {
                    return Ok(Gathered {
                        digits,
                        end: GatherEnd::Timeout,
                    });
                }
            }
        }
    }

    fn record(&mut self, options: &RecordOptions) -> Result<Recording> {
        self.check_hangup()?;
        self.answered = true;
        self.step(format!(
            "record max={}s beep={}",
            options.max_seconds, options.beep
        ))?;
        let (ms, end) = match self.inputs.pop_front() {
            Some(Input::Speak { ms, end }) => (ms, end),
            Some(Input::HangUp) => (0, RecordEnd::HungUp),
            _ => (0, RecordEnd::Silence),
        };
        if end == RecordEnd::HungUp {
            self.hung_up = true;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.transcript
            .push(format!("  recording:{id} {ms}ms {end:?}"));
        Ok(Recording {
            id,
            duration_ms: ms.min(options.max_seconds * 1000),
            end,
        })
    }

    fn pause(&mut self, ms: u32) -> Result<()> {
        self.check_hangup()?;
        self.step(format!("pause {ms}"))
    }

    fn log(&mut self, message: &str) {
        self.transcript.push(format!("log {message}"));
    }

    fn config(&mut self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    fn open_mailbox(&mut self, login: &str) -> Result<String> {
        if !self.granted.iter().any(|g| g == login) {
            return Err(Error::Forbidden(format!("mailbox {login}")));
        }
        self.box_mut(login)?;
        Ok(login.to_string())
    }

    fn list(&mut self, mailbox: &String) -> Result<Vec<Voicemail>> {
        let mut list = self.box_mut(mailbox)?.messages.clone();
        list.sort_by_key(|m| (m.heard, m.received_at));
        Ok(list)
    }

    fn play_message(&mut self, mailbox: &String, id: u64, interrupt: &str) -> Result<Option<char>> {
        if !self.box_mut(mailbox)?.messages.iter().any(|m| m.id == id) {
            return Err(Error::NotFound(format!("voicemail {id}")));
        }
        self.play_line(format!("play voicemail:{id}"), interrupt)
    }

    fn mark_heard(&mut self, mailbox: &String, id: u64) -> Result<()> {
        self.check_hangup()?;
        let b = self.box_mut(mailbox)?;
        let m = b
            .messages
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or_else(|| Error::NotFound(format!("voicemail {id}")))?;
        m.heard = true;
        self.step(format!("heard {id}"))
    }

    fn delete(&mut self, mailbox: &String, id: u64) -> Result<()> {
        self.check_hangup()?;
        let b = self.box_mut(mailbox)?;
        let before = b.messages.len();
        b.messages.retain(|m| m.id != id);
        if b.messages.len() == before {
            return Err(Error::NotFound(format!("voicemail {id}")));
        }
        self.step(format!("delete {id}"))
    }

    fn deposit(&mut self, mailbox: &String, recording: u64) -> Result<u64> {
        // Works after a hang-up too: what was recorded is kept.
        let b = self.box_mut(mailbox)?;
        b.messages.push(Voicemail {
            id: recording,
            caller: "caller".into(),
            caller_display_name: None,
            received_at: 1_800_000_000,
            duration_ms: 0,
            heard: false,
        });
        self.transcript
            .push(format!("deposit recording:{recording} into {mailbox}"));
        Ok(recording)
    }

    fn play_greeting(&mut self, mailbox: &String, interrupt: &str) -> Result<Option<char>> {
        let greeting = self.box_mut(mailbox)?.greeting;
        let what = match greeting {
            Some(id) => format!("play greeting recording:{id}"),
            None => "play greeting vm-greeting-default".into(),
        };
        self.play_line(what, interrupt)
    }

    fn save_greeting(&mut self, mailbox: &String, recording: u64) -> Result<()> {
        self.check_hangup()?;
        self.box_mut(mailbox)?.greeting = Some(recording);
        self.step(format!("save-greeting recording:{recording}"))
    }
}
