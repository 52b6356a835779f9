//! Sample-rate conversion of 20 ms frames, between the endpoint's PCM
//! and the rate a codec runs at (Opus: 8, 16 or 48 kHz).
//!
//! A [`FrameResampler`] takes exactly one frame of the input rate and
//! gives exactly one frame of the output rate, every call: 160 samples at
//! 8 kHz become 960 at 48 kHz, 960 at 48 kHz become 160 at 8 kHz. It is
//! `rubato`'s synchronous FFT resampler (overlap-add of 10 ms blocks,
//! windowed-sinc anti-aliasing filter, so 5 ms of delay), which suits
//! rates in a fixed integer-friendly ratio; nothing is allocated once it
//! is built. Equal rates pass samples through untouched.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

/// Frames per second: the endpoint's 20 ms packetisation.
const FRAMES_PER_SECOND: u32 = 50;
/// FFT blocks per frame: 10 ms blocks keep the delay at 5 ms and the
/// filter's cutoff at about 90 % of the lower rate's Nyquist frequency
/// (3.6 kHz at 8 kHz: the whole telephone band passes).
const BLOCKS_PER_FRAME: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot resample {from} Hz to {to} Hz in 20 ms frames")]
    Rates { from: u32, to: u32 },
    #[error("a frame has {expected} samples, got {got}")]
    FrameSize { expected: usize, got: usize },
}

/// Converts 20 ms frames of mono audio from one rate to another.
pub struct FrameResampler {
    from: u32,
    to: u32,
    input_len: usize,
    output_len: usize,
    /// `None` when both rates are equal.
    fft: Option<Fft<f32>>,
}

impl FrameResampler {
    /// A resampler from `from` Hz to `to` Hz. Both rates must be whole
    /// multiples of 100 Hz between 1 and 192 kHz, so that a 20 ms frame
    /// and its 10 ms blocks are whole numbers of samples on both sides
    /// (8, 12, 16, 24, 32, 44.1 and 48 kHz all are).
    pub fn new(from: u32, to: u32) -> Result<FrameResampler, ResampleError> {
        let refused = ResampleError::Rates { from, to };
        let valid = |rate: u32| (1000..=192_000).contains(&rate) && rate.is_multiple_of(100);
        if !valid(from) || !valid(to) {
            return Err(refused);
        }
        let input_len = (from / FRAMES_PER_SECOND) as usize;
        let output_len = (to / FRAMES_PER_SECOND) as usize;
        if from == to {
            return Ok(FrameResampler {
                from,
                to,
                input_len,
                output_len,
                fft: None,
            });
        }
        let fft = Fft::new_custom(
            from as usize,
            to as usize,
            input_len,
            BLOCKS_PER_FRAME,
            1,
            WindowFunction::BlackmanHarris,
            FixedSync::Input,
        )
        .map_err(|_| refused)?;
        // A frame must be whole FFT blocks, or the output would vary in
        // length from frame to frame (44.1 <-> 48 kHz in 20 ms frames).
        if !input_len.is_multiple_of(fft.fft_size_in()) || fft.output_frames_next() != output_len {
            return Err(refused);
        }
        Ok(FrameResampler {
            from,
            to,
            input_len,
            output_len,
            fft: Some(fft),
        })
    }

    pub fn from_rate(&self) -> u32 {
        self.from
    }

    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Samples in one input frame.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Samples in one output frame.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// How late the output is, in output samples (0 for equal rates).
    pub fn delay(&self) -> usize {
        self.fft.as_ref().map_or(0, |f| f.output_delay())
    }

    /// Converts one frame: `input` holds [`input_len`](Self::input_len)
    /// samples, `output` receives [`output_len`](Self::output_len).
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ResampleError> {
        if input.len() != self.input_len {
            return Err(ResampleError::FrameSize {
                expected: self.input_len,
                got: input.len(),
            });
        }
        if output.len() != self.output_len {
            return Err(ResampleError::FrameSize {
                expected: self.output_len,
                got: output.len(),
            });
        }
        let Some(fft) = &mut self.fft else {
            output.copy_from_slice(input);
            return Ok(());
        };
        let frame_error = ResampleError::FrameSize {
            expected: self.input_len,
            got: input.len(),
        };
        let input = InterleavedSlice::new(input, 1, self.input_len).map_err(|_| frame_error)?;
        let mut out =
            InterleavedSlice::new_mut(output, 1, self.output_len).map_err(|_| frame_error)?;
        match fft.process_into_buffer(&input, &mut out, None) {
            Ok((_, written)) if written == self.output_len => Ok(()),
            _ => Err(frame_error),
        }
    }

    /// Forgets the audio held from earlier frames (a new stream).
    pub fn reset(&mut self) {
        if let Some(fft) = &mut self.fft {
            fft.reset();
        }
    }
}

impl std::fmt::Debug for FrameResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("delay", &self.delay())
            .finish()
    }
}

/// 16-bit PCM as floats in [-1, 1).
pub fn to_f32(samples: &[i16], out: &mut [f32]) {
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = f32::from(s) / 32768.0;
    }
}

/// Floats back to 16-bit PCM, rounded and saturated (a resampler's
/// overshoot on a full-scale square wave must not wrap around); NaN, which
/// no well-formed input produces, becomes 0.
pub fn to_i16(samples: &[f32], out: &mut Vec<i16>) {
    // `as` saturates and maps NaN to 0.
    out.extend(samples.iter().map(|&s| (s * 32768.0).round() as i16));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Normalised power of `frequency` in `x` (Goertzel).
    fn goertzel(x: &[f32], rate: u32, frequency: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * frequency / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        // A full-scale sine of that frequency gives 1.
        4.0 * power / (x.len() as f64 * x.len() as f64)
    }

    fn sine(rate: u32, frequency: f64, amplitude: f32, n: usize, offset: usize) -> Vec<f32> {
        (offset..offset + n)
            .map(|i| {
                amplitude
                    * (2.0 * std::f64::consts::PI * frequency * i as f64 / f64::from(rate)).sin()
                        as f32
            })
            .collect()
    }

    /// Runs `frames` frames of a sine through and returns the output.
    fn run(from: u32, to: u32, frequency: f64, amplitude: f32, frames: usize) -> Vec<f32> {
        let mut r = FrameResampler::new(from, to).unwrap();
        let mut all = Vec::new();
        let mut out = vec![0.0; r.output_len()];
        for f in 0..frames {
            let input = sine(from, frequency, amplitude, r.input_len(), f * r.input_len());
            r.process(&input, &mut out).unwrap();
            all.extend_from_slice(&out);
        }
        all
    }

    #[test]
    fn every_frame_comes_out_at_its_exact_length() {
        for (from, to, inp, outp) in [
            (8000, 48000, 160, 960),
            (48000, 8000, 960, 160),
            (8000, 16000, 160, 320),
            (16000, 8000, 320, 160),
            (16000, 48000, 320, 960),
            (48000, 16000, 960, 320),
            (8000, 8000, 160, 160),
            (8000, 12000, 160, 240),
            (24000, 8000, 480, 160),
        ] {
            let mut r = FrameResampler::new(from, to).unwrap();
            assert_eq!((r.input_len(), r.output_len()), (inp, outp));
            let input = vec![0.25; inp];
            let mut out = vec![f32::NAN; outp];
            for _ in 0..60 {
                r.process(&input, &mut out).unwrap();
                assert!(out.iter().all(|s| s.is_finite()));
            }
            // A constant comes through as itself once the filter is full.
            assert!(
                out.iter().all(|s| (s - 0.25).abs() < 0.01),
                "{from}->{to}: {:?}",
                &out[..4]
            );
        }
    }

    #[test]
    fn the_frequency_and_level_of_a_tone_survive() {
        for (from, to) in [
            (8000, 48000),
            (48000, 8000),
            (8000, 16000),
            (16000, 8000),
            (16000, 48000),
            (48000, 16000),
        ] {
            for frequency in [400.0, 1000.0, 3000.0] {
                let out = run(from, to, frequency, 0.5, 25);
                // Past the filter's delay: the last 200 ms.
                let tail = &out[out.len() - (to / 5) as usize..];
                let level = goertzel(tail, to, frequency).sqrt();
                assert!(
                    (level - 0.5).abs() < 0.05,
                    "{from}->{to} {frequency} Hz: level {level}"
                );
                // Nothing of note elsewhere: the tone is where it was.
                let off = goertzel(tail, to, frequency * 1.3).sqrt();
                assert!(off < 0.02, "{from}->{to} {frequency} Hz: {off} off");
            }
        }
    }

    #[test]
    fn downsampling_removes_what_the_lower_rate_cannot_carry() {
        // 6 kHz at 48 kHz has no place at 8 kHz: it must not fold to 2 kHz.
        let out = run(48000, 8000, 6000.0, 0.5, 25);
        let tail = &out[out.len() - 1600..];
        let folded = goertzel(tail, 8000, 2000.0).sqrt();
        assert!(folded < 0.005, "aliased at {folded}");
        let rms = (tail.iter().map(|s| s * s).sum::<f32>() / tail.len() as f32).sqrt();
        assert!(rms < 0.005, "{rms}");
    }

    #[test]
    fn full_scale_noise_neither_overflows_nor_produces_nan() {
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for (from, to) in [(8000, 48000), (48000, 8000), (16000, 8000)] {
            let mut r = FrameResampler::new(from, to).unwrap();
            let mut out = vec![0.0; r.output_len()];
            let mut pcm = Vec::new();
            for _ in 0..50 {
                // Full-scale square-ish noise: the worst case for overshoot.
                let frame: Vec<i16> = (0..r.input_len())
                    .map(|_| if next() & 1 == 0 { i16::MAX } else { i16::MIN })
                    .collect();
                let mut input = vec![0.0; frame.len()];
                to_f32(&frame, &mut input);
                r.process(&input, &mut out).unwrap();
                assert!(out.iter().all(|s| s.is_finite()));
                pcm.clear();
                to_i16(&out, &mut pcm);
                assert_eq!(pcm.len(), r.output_len());
            }
        }
        let mut clipped = Vec::new();
        to_i16(&[1.5, -1.5, f32::NAN, 0.5], &mut clipped);
        assert_eq!(clipped, [i16::MAX, i16::MIN, 0, 16384]);
    }

    #[test]
    fn wrong_sizes_and_rates_are_errors() {
        assert_eq!(
            FrameResampler::new(0, 8000).unwrap_err(),
            ResampleError::Rates { from: 0, to: 8000 }
        );
        assert!(FrameResampler::new(8000, 44_150).is_err());
        let mut r = FrameResampler::new(8000, 48000).unwrap();
        let mut out = vec![0.0; 960];
        assert_eq!(
            r.process(&[0.0; 80], &mut out),
            Err(ResampleError::FrameSize {
                expected: 160,
                got: 80
            })
        );
        assert!(r.process(&[0.0; 160], &mut out[..900]).is_err());
        assert_eq!(r.delay(), 240);
        assert_eq!(FrameResampler::new(8000, 8000).unwrap().delay(), 0);
    }
}
