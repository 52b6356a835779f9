//! What an IVR run talks to: the call's media endpoint, or a scripted
//! caller.
//!
//! The scripted caller is how `softswitch guest test` and the hot-reload
//! canary run an IVR guest without a call: the caller's side is a list of
//! [`Step`]s, taken when the run listens, and every step of the run is
//! written to a transcript the cases compare. It follows the media
//! engine's rules: a key in a playback's interrupt set stops it at once,
//! other keys wait for the next `gather`, a hang-up makes every later step
//! fail, and what was recorded before a hang-up is kept. Time is not
//! simulated: a prompt "plays" at once, a `gather` with nothing to hear
//! times out at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use media::endpoint::{Endpoint, PlayOutcome, RecordEnd, RecordOptions, Recording};

/// Steps a run may take before the scripted caller gives up and hangs up:
/// a guest that loops on an empty script ends instead of spinning.
pub const MAX_STEPS: usize = 10_000;

const SAMPLE_RATE: u64 = 8000;

/// What the scripted caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Presses a key (`0`-`9`, `*`, `#`, `A`-`D`).
    Key(char),
    /// Says nothing: the next `gather` times out, a recording hears silence.
    Wait,
    /// Speaks (a 440 Hz tone) this many milliseconds into a recording.
    Speak(u32),
    /// Hangs up.
    HangUp,
}

/// Why a script line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("script step {step:?}: {reason} (press KEYS, wait, speak MS, hang up)")]
pub struct ScriptError {
    pub step: String,
    pub reason: &'static str,
}

/// Parses a case's script: `press 12#`, `wait`, `speak 3000`, `hang up`.
pub fn parse_script<S: AsRef<str>>(lines: &[S]) -> Result<Vec<Step>, ScriptError> {
    let mut steps = Vec::new();
    for line in lines {
        let line = line.as_ref().trim();
        let refuse = |reason| ScriptError {
            step: line.to_owned(),
            reason,
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match (verb, rest.trim()) {
            ("press", keys) if !keys.is_empty() => {
                for k in keys.chars().filter(|c| !c.is_whitespace()) {
                    if !matches!(k, '0'..='9' | '*' | '#' | 'A'..='D') {
                        return Err(refuse("keys are 0-9, *, #, A-D"));
                    }
                    steps.push(Step::Key(k));
                }
            }
            ("press", _) => return Err(refuse("press what?")),
            ("wait", "") => steps.push(Step::Wait),
            ("speak", ms) => {
                let ms: u32 = ms
                    .strip_suffix("ms")
                    .unwrap_or(ms)
                    .trim()
                    .parse()
                    .map_err(|_| refuse("speak takes milliseconds"))?;
                if ms == 0 || ms > 600_000 {
                    return Err(refuse("speak 1 to 600000 ms"));
                }
                steps.push(Step::Speak(ms));
            }
            ("hang", "up") | ("hangup", "") => steps.push(Step::HangUp),
            _ => return Err(refuse("unknown step")),
        }
    }
    Ok(steps)
}

/// The scripted caller and the transcript of the run.
#[derive(Debug, Default)]
pub struct ScriptedLine {
    steps: VecDeque<Step>,
    transcript: Vec<String>,
    closed: bool,
    taken: usize,
}

impl ScriptedLine {
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: steps.into(),
            ..Self::default()
        }
    }

    /// One more step of the run; past [`MAX_STEPS`] the caller hangs up.
    fn count(&mut self) {
        self.taken += 1;
        if self.taken == MAX_STEPS && !self.closed {
            self.closed = true;
            self.transcript
                .push(format!("caller hangs up after {MAX_STEPS} steps"));
        }
    }

    fn hang_up(&mut self) {
        self.steps.pop_front();
        self.closed = true;
        self.transcript.push("caller hangs up".into());
    }

    fn play(&mut self, interrupt: &str) -> PlayOutcome {
        self.count();
        if self.closed {
            return PlayOutcome::Closed;
        }
        match self.steps.front() {
            Some(Step::HangUp) => {
                self.hang_up();
                PlayOutcome::Closed
            }
            Some(&Step::Key(k)) if interrupt.contains(k) => {
                self.steps.pop_front();
                self.transcript.push(format!("  interrupted by {k}"));
                PlayOutcome::Interrupted(k)
            }
            _ => PlayOutcome::Finished,
        }
    }

    fn next_digit(&mut self) -> Option<char> {
        self.count();
        if self.closed {
            return None;
        }
        match self.steps.front() {
            Some(&Step::Key(k)) => {
                self.steps.pop_front();
                Some(k)
            }
            Some(Step::HangUp) => {
                self.hang_up();
                None
            }
            Some(Step::Wait) => {
                self.steps.pop_front();
                None
            }
            // Speech, or nothing left to do: the wait times out.
            _ => None,
        }
    }

    fn record(&mut self, options: &RecordOptions) -> Recording {
        self.count();
        let max = (options.max.as_millis() as u64 * SAMPLE_RATE / 1000) as usize;
        let mut samples: Vec<i16> = Vec::new();
        let reason = loop {
            if self.closed {
                break RecordEnd::Closed;
            }
            match self.steps.front().cloned() {
                Some(Step::Speak(ms)) => {
                    self.steps.pop_front();
                    let room = max - samples.len();
                    let wanted = (u64::from(ms) * SAMPLE_RATE / 1000) as usize;
                    samples.extend(speech(wanted.min(room)));
                    if wanted >= room {
                        let left = ((wanted - room) as u64 * 1000 / SAMPLE_RATE) as u32;
                        if left > 0 {
                            self.steps.push_front(Step::Speak(left));
                        }
                        break RecordEnd::MaxDuration;
                    }
                }
                Some(Step::Key(k)) => {
                    self.steps.pop_front();
                    if options.finish_keys.contains(k) {
                        break RecordEnd::Key(k);
                    }
                    // Other keys are neither recorded nor kept.
                }
                Some(Step::HangUp) => {
                    self.hang_up();
                    break RecordEnd::Closed;
                }
                Some(Step::Wait) | None => {
                    if self.steps.front() == Some(&Step::Wait) {
                        self.steps.pop_front();
                    }
                    // The quiet tail is trimmed, as the media engine does.
                    break if options.silence_timeout.is_some() {
                        RecordEnd::Silence
                    } else {
                        RecordEnd::MaxDuration
                    };
                }
            }
        };
        Recording { samples, reason }
    }
}

/// `len` samples of a caller speaking (a 440 Hz tone).
fn speech(len: usize) -> Vec<i16> {
    let ms = len as u64 * 1000 / SAMPLE_RATE;
    let mut s = media::tone::sine(440.0, 6000, Duration::from_millis(ms));
    s.resize(len, 0);
    s
}

/// The call's media or the scripted caller.
pub enum Line {
    Media(Endpoint),
    Scripted(ScriptedLine),
}

impl Line {
    pub fn closed(&self) -> bool {
        match self {
            Line::Media(e) => e.closed(),
            Line::Scripted(s) => s.closed,
        }
    }

    pub fn close(&mut self) {
        match self {
            Line::Media(e) => e.close(),
            Line::Scripted(s) => s.closed = true,
        }
    }

    pub async fn play(&mut self, samples: Arc<[i16]>, interrupt: &str) -> PlayOutcome {
        match self {
            Line::Media(e) => e.play(samples, interrupt).await,
            Line::Scripted(s) => s.play(interrupt),
        }
    }

    pub async fn next_digit(&mut self, timeout: Duration) -> Option<char> {
        match self {
            Line::Media(e) => e.next_digit(timeout).await,
            Line::Scripted(s) => s.next_digit(),
        }
    }

    pub async fn record(&mut self, options: RecordOptions) -> Recording {
        match self {
            Line::Media(e) => e.record(options).await,
            Line::Scripted(s) => s.record(&options),
        }
    }

    /// Writes a line of the transcript (a scripted call keeps one).
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if let Line::Scripted(s) = self {
            s.transcript.push(line());
        }
    }

    /// The transcript so far (empty for a real call).
    pub fn transcript(&self) -> &[String] {
        match self {
            Line::Media(_) => &[],
            Line::Scripted(s) => &s.transcript,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_secs: u64, silence: bool, finish: &str) -> RecordOptions {
        RecordOptions {
            max: Duration::from_secs(max_secs),
            silence_timeout: silence.then(|| Duration::from_secs(3)),
            finish_keys: finish.into(),
        }
    }

    #[test]
    fn scripts_parse_and_bad_steps_are_named() {
        assert_eq!(
            parse_script(&["press 1#", "wait", "speak 2500", "speak 10ms", "hang up"]).unwrap(),
            vec![
                Step::Key('1'),
                Step::Key('#'),
                Step::Wait,
                Step::Speak(2500),
                Step::Speak(10),
                Step::HangUp
            ]
        );
        for bad in ["press", "press x", "speak", "speak 0", "shout 3", "wait 5"] {
            let e = parse_script(&[bad]).unwrap_err();
            assert_eq!(e.step, bad);
        }
    }

    #[test]
    fn a_key_interrupts_a_playback_only_when_listened_for() {
        let mut line = ScriptedLine::new(vec![Step::Key('5'), Step::Key('1')]);
        assert_eq!(line.play("12"), PlayOutcome::Finished);
        assert_eq!(line.play("5"), PlayOutcome::Interrupted('5'));
        // Type-ahead stays for the next gather.
        assert_eq!(line.next_digit(), Some('1'));
        assert_eq!(line.next_digit(), None);
        assert!(!line.closed);
    }

    #[test]
    fn a_recording_ends_the_way_the_script_says() {
        let mut line = ScriptedLine::new(vec![
            Step::Speak(2000),
            Step::Key('3'),
            Step::Key('#'),
            Step::Speak(1000),
            Step::Speak(5000),
            Step::Speak(1000),
            Step::HangUp,
        ]);
        let r = line.record(&options(60, true, "#"));
        assert_eq!((r.samples.len(), r.reason), (16_000, RecordEnd::Key('#')));
        assert!(r.samples.iter().any(|&s| s.abs() > 1000), "speech is heard");
        // Past the maximum: cut, the rest of the speech goes on.
        let r = line.record(&options(3, false, "#"));
        assert_eq!(
            (r.samples.len(), r.reason),
            (24_000, RecordEnd::MaxDuration)
        );
        let r = line.record(&options(60, false, ""));
        assert_eq!((r.samples.len(), r.reason), (32_000, RecordEnd::Closed));
        assert!(line.closed);
        assert_eq!(line.play(""), PlayOutcome::Closed);
        // Nothing left: silence ends it, or the maximum does.
        let mut line = ScriptedLine::new(vec![]);
        assert_eq!(
            line.record(&options(5, true, "")).reason,
            RecordEnd::Silence
        );
        assert_eq!(
            line.record(&options(5, false, "")).reason,
            RecordEnd::MaxDuration
        );
    }

    #[test]
    fn a_hang_up_ends_the_playback_and_everything_after() {
        let mut line = ScriptedLine::new(vec![Step::HangUp, Step::Key('1')]);
        assert_eq!(line.play(""), PlayOutcome::Closed);
        assert_eq!(line.next_digit(), None);
        assert_eq!(line.transcript, vec!["caller hangs up"]);
    }

    #[test]
    fn a_run_that_never_ends_is_hung_up_on() {
        let mut line = ScriptedLine::new(vec![]);
        for _ in 0..MAX_STEPS - 1 {
            assert_eq!(line.next_digit(), None);
        }
        assert!(!line.closed);
        assert_eq!(line.play(""), PlayOutcome::Closed);
        assert!(line.transcript[0].contains("10000 steps"));
    }
}
