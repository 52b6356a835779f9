//! In-band DTMF: Goertzel filters at the eight DTMF frequencies over
//! 8 kHz PCM, for carriers that send key presses as tones in G.711.
//!
//! Blocks are 102 samples (12.75 ms): the bins are then narrow enough to
//! tell 697 Hz from 770 Hz, and short enough that a 40 ms tone, however it
//! falls across block boundaries, fills two whole blocks. A key is
//! reported after two consecutive blocks agree (so tones under 25.5 ms
//! never are) and, for the same key, not again until it has been absent
//! for three blocks (a dropout inside one press is not a second press).
//! A block counts only if each tone is loud enough, the two groups are
//! within the twist limits, no other frequency of a group comes near its
//! peak, and the two tones carry most of the block's energy: speech and
//! music spread their energy over many frequencies and fail there.

use super::{COLUMNS, ROWS, key_at};

const BLOCK: usize = 102;
/// Minimum amplitude of each tone, about -44 dBFS; a block's Goertzel
/// power for amplitude A is (A·N/2)².
const MIN_AMPLITUDE: f32 = 200.0;
const THRESHOLD: f32 = (MIN_AMPLITUDE * BLOCK as f32 / 2.0) * (MIN_AMPLITUDE * BLOCK as f32 / 2.0);
/// The low (row) tone may be up to 8 dB above the high one (lines lose
/// highs: "normal" twist) ...
const NORMAL_TWIST: f32 = 6.31;
/// ... and the high one at most 4 dB above the low one.
const REVERSE_TWIST: f32 = 2.51;
/// Every other frequency of a group must be 8 dB below its peak.
const RELATIVE_PEAK: f32 = 6.31;
/// Share of the block's energy the two tones must carry. A pure pair
/// scores 1.0; a tone 1.5% off frequency (still valid by Q.24) about 0.7.
const TONE_SHARE: f32 = 0.6;
/// Consecutive agreeing blocks before a key counts.
const MIN_BLOCKS: u32 = 2;
/// Consecutive blocks without the key before it may count again.
const REARM_BLOCKS: u32 = 3;

#[derive(Debug, Clone)]
pub struct InbandDetector {
    coefficients: [f32; 8],
    /// Goertzel state (s[n-1], s[n-2]) per frequency: rows then columns.
    state: [(f32, f32); 8],
    energy: f32,
    filled: usize,
    candidate: Option<char>,
    agreeing: u32,
    reported: Option<char>,
    absent: u32,
}

impl Default for InbandDetector {
    fn default() -> Self {
        InbandDetector::new()
    }
}

impl InbandDetector {
    pub fn new() -> InbandDetector {
        let mut coefficients = [0.0; 8];
        for (c, f) in coefficients.iter_mut().zip(ROWS.iter().chain(&COLUMNS)) {
            *c = (2.0 * (std::f64::consts::TAU * f / 8000.0).cos()) as f32;
        }
        InbandDetector {
            coefficients,
            state: [(0.0, 0.0); 8],
            energy: 0.0,
            filled: 0,
            candidate: None,
            agreeing: 0,
            reported: None,
            absent: 0,
        }
    }

    /// Feeds 8 kHz samples of any count; `found` is called once per key
    /// press, when it is recognised.
    pub fn push(&mut self, samples: &[i16], mut found: impl FnMut(char)) {
        for &sample in samples {
            let x = f32::from(sample);
            for (s, &c) in self.state.iter_mut().zip(&self.coefficients) {
                let next = x + c * s.0 - s.1;
                *s = (next, s.0);
            }
            self.energy += x * x;
            self.filled += 1;
            if self.filled == BLOCK {
                let key = self.classify();
                self.state = [(0.0, 0.0); 8];
                self.energy = 0.0;
                self.filled = 0;
                if let Some(key) = self.debounce(key) {
                    found(key);
                }
            }
        }
    }

    /// Forgets any partial block and press in progress.
    pub fn reset(&mut self) {
        *self = InbandDetector {
            coefficients: self.coefficients,
            ..InbandDetector::new()
        };
    }

    /// The key a full block holds, if it passes every test.
    fn classify(&self) -> Option<char> {
        let mut power = [0.0f32; 8];
        for ((p, &(s1, s2)), &c) in power.iter_mut().zip(&self.state).zip(&self.coefficients) {
            *p = s1 * s1 + s2 * s2 - c * s1 * s2;
        }
        let (rows, columns) = power.split_at(4);
        let row = peak(rows);
        let column = peak(columns);
        let (r, c) = (rows[row], columns[column]);
        let loud = r >= THRESHOLD && c >= THRESHOLD;
        let twist_ok = c < r * REVERSE_TWIST && r < c * NORMAL_TWIST;
        let alone = |group: &[f32], best: usize| {
            group
                .iter()
                .enumerate()
                .all(|(i, &p)| i == best || p * RELATIVE_PEAK < group[best])
        };
        let dominant = r + c >= TONE_SHARE * self.energy * (BLOCK as f32 / 2.0);
        (loud && twist_ok && alone(rows, row) && alone(columns, column) && dominant)
            .then(|| key_at(row, column))
    }

    fn debounce(&mut self, key: Option<char>) -> Option<char> {
        if key.is_some() && key == self.candidate {
            self.agreeing += 1;
        } else {
            self.candidate = key;
            self.agreeing = 1;
        }
        if key.is_some() && key == self.reported {
            self.absent = 0;
            return None;
        }
        self.absent += 1;
        if self.absent >= REARM_BLOCKS {
            self.reported = None;
        }
        // Another key needs no re-arming: only a repeat of the same one
        // could be a dropout inside a single press.
        if key.is_some() && self.agreeing >= MIN_BLOCKS {
            self.reported = key;
            self.absent = 0;
            return key;
        }
        None
    }
}

fn peak(group: &[f32]) -> usize {
    let mut best = 0;
    for (i, &p) in group.iter().enumerate() {
        if p > group[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dtmf::frequencies;
    use crate::tone;

    fn detect(samples: &[i16]) -> String {
        let mut detector = InbandDetector::new();
        let mut keys = String::new();
        // In 20 ms frames, as the endpoint feeds it.
        for frame in samples.chunks(160) {
            detector.push(frame, |k| keys.push(k));
        }
        keys
    }

    fn press(key: char, ms: u64) -> Vec<i16> {
        tone::dtmf(key, Duration::from_millis(ms)).unwrap()
    }

    fn gap(ms: u64) -> Vec<i16> {
        tone::silence(Duration::from_millis(ms))
    }

    /// Deterministic noise, uniform in ±`amplitude`.
    fn noise(samples: usize, amplitude: i32, seed: u64) -> Vec<i16> {
        let mut state = seed | 1;
        (0..samples)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state % (2 * amplitude as u64 + 1)) as i32 - amplitude) as i16
            })
            .collect()
    }

    #[test]
    fn every_key_is_heard_once_per_press() {
        let mut signal = Vec::new();
        for key in "0123456789*#ABCD".chars() {
            signal.extend(press(key, 80));
            signal.extend(gap(60));
        }
        assert_eq!(detect(&signal), "0123456789*#ABCD");
    }

    #[test]
    fn a_long_press_is_one_key_and_repeats_need_a_gap() {
        let mut signal = gap(30);
        signal.extend(press('5', 1500));
        signal.extend(gap(50));
        signal.extend(press('5', 60));
        signal.extend(press('6', 60));
        assert_eq!(detect(&signal), "556");
    }

    #[test]
    fn forty_ms_is_enough_at_any_alignment_and_twenty_is_not() {
        for offset in (0..BLOCK).step_by(17) {
            let mut signal = gap(0);
            signal.extend(std::iter::repeat_n(0, offset));
            signal.extend(press('8', 40));
            signal.extend(gap(60));
            assert_eq!(detect(&signal), "8", "offset {offset}");
            let mut short = vec![0; offset];
            short.extend(press('8', 20));
            short.extend(gap(60));
            assert_eq!(detect(&short), "", "offset {offset}");
        }
    }

    #[test]
    fn tones_survive_noise_and_g711() {
        let mut signal = press('3', 100);
        signal.extend(gap(50));
        signal.extend(press('#', 100));
        // -20 dB of noise below each tone, then a trip through A-law.
        let n = noise(signal.len(), 700, 7);
        let coded: Vec<i16> = signal
            .iter()
            .zip(&n)
            .map(|(&s, &n)| {
                let mixed = s.saturating_add(n);
                crate::g711::alaw_decode(crate::g711::alaw_encode(mixed))
            })
            .collect();
        assert_eq!(detect(&coded), "3#");
    }

    #[test]
    fn twist_limits() {
        let (low, high) = frequencies('1').unwrap();
        let d = Duration::from_millis(100);
        // Low group 6 dB louder: normal twist, accepted.
        assert_eq!(detect(&tone::dual((low, 8000), (high, 4000), d)), "1");
        // High group 6 dB louder: beyond the 4 dB reverse twist.
        assert_eq!(detect(&tone::dual((low, 4000), (high, 8000), d)), "");
        // Too quiet.
        assert_eq!(detect(&tone::dual((low, 100), (high, 100), d)), "");
    }

    #[test]
    fn single_tones_noise_and_speech_do_not_trigger() {
        let second = Duration::from_secs(1);
        assert_eq!(detect(&tone::sine(697.0, 8000, second)), "");
        assert_eq!(detect(&tone::sine(1336.0, 8000, second)), "");
        assert_eq!(detect(&tone::beep()), "");
        for (amplitude, seed) in [(300, 1), (3000, 2), (20000, 3)] {
            assert_eq!(detect(&noise(80_000, amplitude, seed)), "");
        }
        assert_eq!(detect(&speech_like(10)), "");
    }

    /// Voiced speech, roughly: a glottal pulse train whose pitch glides
    /// between 90 and 250 Hz, shaped by three moving formants, with
    /// breath noise, in syllables separated by pauses.
    fn speech_like(seconds: usize) -> Vec<i16> {
        let n = seconds * 8000;
        let breath = noise(n, 400, 11);
        let mut out = Vec::with_capacity(n);
        let mut phase = 0.0f64;
        for (i, b) in breath.iter().enumerate() {
            let t = i as f64 / 8000.0;
            let pitch = 170.0 + 80.0 * (t * 1.7).sin() * (t * 0.45).cos();
            phase += pitch / 8000.0;
            let formants = [
                500.0 + 300.0 * (t * 2.3).sin(),
                1500.0 + 600.0 * (t * 1.3).cos(),
                2500.0 + 300.0 * (t * 0.7).sin(),
            ];
            let mut v = 0.0;
            let mut h = 1.0;
            while h * pitch < 3800.0 {
                let f = h * pitch;
                let gain: f64 = formants
                    .iter()
                    .map(|&fc| 1.0 / (1.0 + ((f - fc) / 120.0).powi(2)))
                    .sum();
                v += gain / h.sqrt() * (std::f64::consts::TAU * h * phase).sin();
                h += 1.0;
            }
            // Syllables of ~200 ms with pauses.
            let envelope = ((t * 5.0 * std::f64::consts::PI).sin()).max(0.0);
            out.push((v * 6000.0 * envelope) as i16 + b);
        }
        out
    }
}
