//! Audio codecs a terminating endpoint speaks, behind one frame-based
//! interface so that the endpoint does not care which one an SDP chose.
//!
//! The endpoint's own audio is always 8 kHz 16-bit linear PCM in 20 ms
//! frames (prompts, tones, recordings, DTMF detection all work there).
//! A codec turns such a frame into one RTP payload and back; a wideband
//! codec (Opus, whose RTP clock is 48 kHz however it is fed) adds a
//! variant here and implementations of [`Encoder`] and [`Decoder`] with
//! their own state, and nothing else changes.

use std::time::Duration;

use crate::g711;

/// Samples per second of the endpoint's PCM.
pub const SAMPLE_RATE: u32 = 8000;
/// The packetisation interval the endpoint sends at (SDP `a=ptime:20`).
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Samples in one frame of the endpoint's PCM.
pub const FRAME_SAMPLES: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("a frame has {expected} samples, got {got}")]
    FrameSize { expected: usize, got: usize },
}

impl Codec {
    /// The static payload type (RFC 3551 table 4); dynamic codecs will
    /// have none and take theirs from the SDP.
    pub const fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
        }
    }

    /// The RTP timestamp rate (`a=rtpmap` clock rate).
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
        }
    }

    /// The encoding name of `a=rtpmap:<pt> <name>/<clock rate>`.
    pub const fn rtpmap_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec of an `a=rtpmap` entry (names compare case-insensitively,
    /// RFC 4855 §3).
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Codec> {
        [Codec::Pcmu, Codec::Pcma]
            .into_iter()
            .find(|c| c.rtpmap_name().eq_ignore_ascii_case(name) && c.clock_rate() == clock_rate)
    }

    /// The codec of a static payload type offered without `a=rtpmap`.
    pub fn from_static_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// How far the RTP timestamp moves per 20 ms frame.
    pub const fn timestamp_step(self) -> u32 {
        self.clock_rate() / 50
    }

    /// The payload of a frame of silence, what is sent when nothing plays.
    pub fn silence(self) -> &'static [u8] {
        const ULAW: [u8; FRAME_SAMPLES] = [g711::ULAW_SILENCE; FRAME_SAMPLES];
        const ALAW: [u8; FRAME_SAMPLES] = [g711::ALAW_SILENCE; FRAME_SAMPLES];
        match self {
            Codec::Pcmu => &ULAW,
            Codec::Pcma => &ALAW,
        }
    }

    pub fn encoder(self) -> Box<dyn Encoder> {
        Box::new(G711(self))
    }

    pub fn decoder(self) -> Box<dyn Decoder> {
        Box::new(G711(self))
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rtpmap_name())
    }
}

/// Turns 20 ms frames of 8 kHz PCM into RTP payloads. Stateful codecs
/// keep their state between calls, so one encoder serves one stream.
pub trait Encoder: Send {
    fn codec(&self) -> Codec;

    /// Appends the payload for `frame` ([`FRAME_SAMPLES`] samples) to `out`.
    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;
}

/// Turns RTP payloads back into 8 kHz PCM.
pub trait Decoder: Send {
    fn codec(&self) -> Codec;

    /// Appends the samples of `payload` to `out`. Any payload decodes:
    /// a sample codec yields as many samples as it has bytes, which also
    /// covers peers packetising at 10 or 30 ms.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>);

    /// Appends a frame standing in for a lost one. G.711 has no model to
    /// extrapolate from, so it is silence (repeating the last frame buzzes
    /// in a recording); Opus will use its own concealment.
    fn conceal(&mut self, out: &mut Vec<i16>) {
        out.extend(std::iter::repeat_n(0, FRAME_SAMPLES));
    }
}

/// Both G.711 laws: stateless, one byte per sample.
struct G711(Codec);

impl Encoder for G711 {
    fn codec(&self) -> Codec {
        self.0
    }

    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameSize {
                expected: FRAME_SAMPLES,
                got: frame.len(),
            });
        }
        let law = match self.0 {
            Codec::Pcmu => g711::ulaw_encode,
            Codec::Pcma => g711::alaw_encode,
        };
        out.extend(frame.iter().map(|&s| law(s)));
        Ok(())
    }
}

impl Decoder for G711 {
    fn codec(&self) -> Codec {
        self.0
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        let law = match self.0 {
            Codec::Pcmu => g711::ulaw_decode,
            Codec::Pcma => g711::alaw_decode,
        };
        out.extend(payload.iter().map(|&b| law(b)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_names_and_payload_types() {
        assert_eq!(Codec::Pcmu.static_payload_type(), Some(0));
        assert_eq!(Codec::Pcma.static_payload_type(), Some(8));
        assert_eq!(Codec::from_rtpmap("pcma", 8000), Some(Codec::Pcma));
        assert_eq!(Codec::from_rtpmap("PCMU", 16000), None);
        assert_eq!(Codec::from_rtpmap("opus", 48000), None);
        assert_eq!(Codec::from_static_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_static_payload_type(18), None);
        assert_eq!(Codec::Pcmu.timestamp_step(), FRAME_SAMPLES as u32);
        assert_eq!(Codec::Pcma.to_string(), "PCMA");
    }

    #[test]
    fn a_frame_encodes_to_one_byte_per_sample_and_back() {
        let frame: Vec<i16> = (0..FRAME_SAMPLES as i16).map(|i| i * 200 - 16000).collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut payload = Vec::new();
            codec.encoder().encode(&frame, &mut payload).unwrap();
            assert_eq!(payload.len(), FRAME_SAMPLES);
            let mut pcm = Vec::new();
            codec.decoder().decode(&payload, &mut pcm);
            for (a, b) in frame.iter().zip(&pcm) {
                assert!((a - b).abs() <= 512, "{codec}: {a} -> {b}");
            }
            let mut silent = Vec::new();
            codec.decoder().decode(codec.silence(), &mut silent);
            assert!(silent.iter().all(|s| s.abs() <= 8));
        }
    }

    #[test]
    fn a_short_frame_is_refused() {
        let mut out = Vec::new();
        assert_eq!(
            Codec::Pcmu.encoder().encode(&[0; 80], &mut out),
            Err(CodecError::FrameSize {
                expected: 160,
                got: 80
            })
        );
        assert!(out.is_empty());
    }
}
