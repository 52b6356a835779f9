//! Tones as 8 kHz 16-bit PCM: single and dual frequencies, the beep before
//! a recording, and DTMF digits (sent in-band when the peer negotiated no
//! telephone-event, and used to test the in-band detector).

use std::f64::consts::TAU;
use std::time::Duration;

use crate::codec::SAMPLE_RATE;
use crate::dtmf;

/// Edges ramp over this many samples (2 ms): a tone switched on at full
/// amplitude clicks, and the click's splatter can reach DTMF bands.
const RAMP: usize = 16;

/// Samples in `duration` at 8 kHz.
pub fn samples_for(duration: Duration) -> usize {
    let n = duration.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000;
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `duration` of silence.
pub fn silence(duration: Duration) -> Vec<i16> {
    vec![0; samples_for(duration)]
}

/// A sine at `frequency` Hz with peak `amplitude`.
pub fn sine(frequency: f64, amplitude: i16, duration: Duration) -> Vec<i16> {
    mix(&[(frequency, amplitude)], duration)
}

/// Two sines summed, each with its own peak (their sum must fit in i16;
/// it saturates otherwise).
pub fn dual(low: (f64, i16), high: (f64, i16), duration: Duration) -> Vec<i16> {
    mix(&[low, high], duration)
}

/// The beep that tells a caller to speak: 1 kHz for 250 ms at about
/// -10 dBFS.
pub fn beep() -> Vec<i16> {
    sine(1000.0, 10_000, Duration::from_millis(250))
}

/// The tone of a DTMF key (`0-9`, `*`, `#`, `A-D`), both frequencies at
/// the same level (-10 dBFS each); `None` for another character.
pub fn dtmf(digit: char, duration: Duration) -> Option<Vec<i16>> {
    let (low, high) = dtmf::frequencies(digit)?;
    Some(dual((low, 7_000), (high, 7_000), duration))
}

fn mix(parts: &[(f64, i16)], duration: Duration) -> Vec<i16> {
    let n = samples_for(duration);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let value: f64 = parts
                .iter()
                .map(|&(f, a)| f64::from(a) * (TAU * f * t).sin())
                .sum();
            let edge = i.min(n - 1 - i);
            let gain = if edge < RAMP {
                edge as f64 / RAMP as f64
            } else {
                1.0
            };
            // `as` saturates, so an over-loud sum clips instead of wrapping.
            (value * gain).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zero crossings per second estimate the frequency of a pure tone.
    fn frequency(samples: &[i16]) -> f64 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        crossings as f64 / 2.0 / (samples.len() as f64 / f64::from(SAMPLE_RATE))
    }

    #[test]
    fn a_sine_has_its_length_level_and_frequency() {
        let s = sine(440.0, 8000, Duration::from_millis(500));
        assert_eq!(s.len(), 4000);
        let peak = s.iter().map(|v| v.abs()).max().unwrap();
        assert!((7990..=8000).contains(&peak), "peak {peak}");
        assert!((frequency(&s) - 440.0).abs() < 4.0);
        // The ramps: no click at either end.
        assert!(s[0] == 0 && s[s.len() - 1] == 0);
        assert!(s[..4].iter().all(|v| v.abs() < 2000));
    }

    #[test]
    fn the_beep_is_a_quarter_second_of_one_kilohertz() {
        let b = beep();
        assert_eq!(b.len(), 2000);
        assert!((frequency(&b) - 1000.0).abs() < 8.0);
    }

    #[test]
    fn dtmf_tones_exist_for_the_sixteen_keys_only() {
        for key in "0123456789*#ABCD".chars() {
            let t = dtmf(key, Duration::from_millis(100)).unwrap();
            assert_eq!(t.len(), 800);
            assert!(
                t.iter().any(|v| v.abs() > 10_000),
                "{key}: both tones present"
            );
        }
        assert!(dtmf('E', Duration::from_millis(100)).is_none());
        assert_eq!(
            dtmf('a', Duration::from_millis(100)),
            dtmf('A', Duration::from_millis(100))
        );
    }

    #[test]
    fn an_overloud_sum_saturates_instead_of_wrapping() {
        let s = dual((500.0, 30_000), (500.0, 30_000), Duration::from_millis(20));
        assert!(s.contains(&i16::MAX));
        assert!(
            s.windows(2)
                .all(|w| (i32::from(w[0]) - i32::from(w[1])).abs() < 30_000)
        );
    }

    #[test]
    fn durations_round_down_to_whole_samples() {
        assert_eq!(samples_for(Duration::from_micros(1_000)), 8);
        assert_eq!(samples_for(Duration::from_micros(1_100)), 8);
        assert!(silence(Duration::ZERO).is_empty());
        assert_eq!(samples_for(Duration::MAX), usize::MAX);
        assert!(sine(1000.0, 1000, Duration::ZERO).is_empty());
    }
}
