//! Silence detection on 8 kHz PCM by mean absolute level, frame by frame:
//! what ends a recording when the caller stops talking.
//!
//! Mean-abs rather than a spectral VAD: line noise and G.711's own floor
//! sit far below any talker, and an IVR only needs "has the caller
//! stopped", which a level threshold held for seconds answers reliably.

use std::time::Duration;

use crate::codec::SAMPLE_RATE;

/// Mean absolute level below which a frame is quiet: about -44 dBFS,
/// above line noise and comfort noise, well below soft speech (~-30 dBFS).
pub const DEFAULT_THRESHOLD: u16 = 200;

/// Mean absolute sample value of a frame (0 for an empty one).
pub fn mean_abs(frame: &[i16]) -> u16 {
    if frame.is_empty() {
        return 0;
    }
    let sum: u64 = frame.iter().map(|&s| u64::from(s.unsigned_abs())).sum();
    // At most 32768: fits.
    (sum / frame.len() as u64) as u16
}

/// Whether a frame holds voice (or any sound) at `threshold`.
pub fn is_voice(frame: &[i16], threshold: u16) -> bool {
    mean_abs(frame) >= threshold
}

/// Tells when the last `window` of audio has all been quiet.
#[derive(Debug, Clone)]
pub struct SilenceDetector {
    threshold: u16,
    window: usize,
    /// Samples since the last frame with voice.
    quiet: usize,
}

impl SilenceDetector {
    pub fn new(threshold: u16, window: Duration) -> SilenceDetector {
        SilenceDetector {
            threshold,
            window: crate::tone::samples_for(window),
            quiet: 0,
        }
    }

    /// Takes the next frame; true when the last `window` is all quiet.
    pub fn push(&mut self, frame: &[i16]) -> bool {
        if is_voice(frame, self.threshold) {
            self.quiet = 0;
        } else {
            self.quiet = self.quiet.saturating_add(frame.len());
        }
        self.is_silent()
    }

    pub fn is_silent(&self) -> bool {
        self.quiet >= self.window
    }

    /// Samples of the current quiet run (what trailing silence to trim).
    pub fn quiet_samples(&self) -> usize {
        self.quiet
    }

    pub fn quiet_for(&self) -> Duration {
        Duration::from_micros(self.quiet as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    pub fn reset(&mut self) {
        self.quiet = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone;

    #[test]
    fn levels() {
        assert_eq!(mean_abs(&[]), 0);
        assert_eq!(mean_abs(&[100, -300]), 200);
        assert_eq!(mean_abs(&[i16::MIN; 4]), 32768);
        assert!(is_voice(
            &tone::sine(300.0, 3000, Duration::from_millis(20)),
            200
        ));
        assert!(!is_voice(&[150, -150, 100, -100], 200));
    }

    #[test]
    fn silence_is_reported_once_the_whole_window_is_quiet() {
        let mut d = SilenceDetector::new(DEFAULT_THRESHOLD, Duration::from_millis(100));
        let voice = tone::sine(440.0, 5000, Duration::from_millis(20));
        let quiet = [30i16; 160];
        assert!(!d.push(&voice));
        for _ in 0..4 {
            assert!(!d.push(&quiet));
        }
        assert!(d.push(&quiet));
        assert_eq!(d.quiet_for(), Duration::from_millis(100));
        assert_eq!(d.quiet_samples(), 800);
        // A single loud frame starts the count again.
        assert!(!d.push(&voice));
        assert_eq!(d.quiet_samples(), 0);
        d.push(&quiet);
        d.reset();
        assert_eq!(d.quiet_samples(), 0);
    }
}
