//! Audio codecs a terminating endpoint speaks, behind one frame-based
//! interface so that the endpoint does not care which one an SDP chose.
//!
//! The endpoint's own audio is 8 kHz 16-bit linear PCM in 20 ms frames
//! (prompts, tones, recordings, DTMF detection all work there). A codec
//! turns such a frame into one RTP payload and back: G.711 sample by
//! sample, Opus ([`crate::opus`]) through stateful libopus encoders and
//! decoders, whose RTP clock is 48 kHz however they are fed (the endpoint
//! takes its timestamp step and jitter-buffer clock from [`Codec`]).
//! The traits say which PCM rate an implementation works at, so that an
//! endpoint running wideband later needs codecs built for 16 kHz, not
//! new traits.

use std::time::Duration;

use crate::g711;
use crate::opus::{OpusConfig, OpusDecoder, OpusEncoder, OpusParams};
use crate::resample::ResampleError;

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
    /// Opus (RFC 7587), with what the peer's `a=fmtp` asked of the stream
    /// sent to it ([`Codec::OPUS`] when it said nothing). Match it as
    /// `Codec::Opus(_)`.
    Opus(OpusParams),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("a frame has {expected} samples, got {got}")]
    FrameSize { expected: usize, got: usize },
    /// An error of libopus (a packet it cannot decode, mostly).
    #[error("opus: {0}")]
    Opus(&'static str),
    #[error("a codec cannot run on PCM at {0} Hz")]
    Rate(u32),
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

impl Codec {
    /// Opus without `a=fmtp` parameters.
    pub const OPUS: Codec = Codec::Opus(OpusParams::DEFAULT);

    /// The static payload type (RFC 3551 table 4); dynamic codecs (Opus)
    /// have none and take theirs from the SDP.
    pub const fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::Opus(_) => None,
        }
    }

    /// The RTP timestamp rate (`a=rtpmap` clock rate): 48 kHz for Opus
    /// whatever rate it is coded at.
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus(_) => crate::opus::RTP_CLOCK_RATE,
        }
    }

    /// The encoding name of `a=rtpmap:<pt> <name>/<clock rate>`.
    pub const fn rtpmap_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus(_) => "opus",
        }
    }

    /// All of what follows the payload type in `a=rtpmap`: `PCMU/8000`,
    /// `opus/48000/2` (RFC 7587 §7 wants the two channels even for mono).
    pub const fn rtpmap_encoding(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::Pcma => "PCMA/8000",
            Codec::Opus(_) => crate::opus::RTPMAP_ENCODING,
        }
    }

    /// The codec of an `a=rtpmap` entry (names compare case-insensitively,
    /// RFC 4855 §3; a channel count after the clock rate is not passed).
    /// Opus comes without parameters: see [`Codec::with_fmtp`].
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Codec> {
        [Codec::Pcmu, Codec::Pcma, Codec::OPUS]
            .into_iter()
            .find(|c| c.rtpmap_name().eq_ignore_ascii_case(name) && c.clock_rate() == clock_rate)
    }

    /// The codec with the peer's `a=fmtp` parameters for it (what follows
    /// the payload type); codecs without parameters stay as they are.
    pub fn with_fmtp(self, fmtp: &str) -> Codec {
        match self {
            Codec::Opus(_) => Codec::Opus(OpusParams::from_fmtp(fmtp)),
            other => other,
        }
    }

    /// The `a=fmtp` parameters to put in our own SDP for this codec, if
    /// any: for Opus, that the endpoint plays and captures 8 kHz.
    pub fn fmtp(self) -> Option<String> {
        match self {
            Codec::Pcmu | Codec::Pcma => None,
            Codec::Opus(_) => Some(crate::opus::local_fmtp(SAMPLE_RATE)),
        }
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

    /// The payload of a 20 ms frame of silence. The endpoint sends it
    /// through [`Encoder::encode_silence`], which for Opus runs the encoder
    /// on a silent frame instead (this static CELT silence frame is for
    /// whoever has no encoder at hand).
    pub fn silence(self) -> &'static [u8] {
        const ULAW: [u8; FRAME_SAMPLES] = [g711::ULAW_SILENCE; FRAME_SAMPLES];
        const ALAW: [u8; FRAME_SAMPLES] = [g711::ALAW_SILENCE; FRAME_SAMPLES];
        match self {
            Codec::Pcmu => &ULAW,
            Codec::Pcma => &ALAW,
            Codec::Opus(_) => &crate::opus::SILENCE,
        }
    }

    /// An encoder of the endpoint's 8 kHz frames. For Opus: libopus at
    /// 8 kHz, honouring the peer's `a=fmtp` ([`OpusConfig::default`] says
    /// the rest); build an [`OpusEncoder`] for anything else.
    pub fn encoder(self) -> Box<dyn Encoder> {
        match self {
            Codec::Pcmu | Codec::Pcma => Box::new(G711::new(self)),
            Codec::Opus(peer) => Box::new(
                OpusEncoder::new(OpusConfig::new(SAMPLE_RATE, peer))
                    .expect("libopus takes 8 kHz mono"),
            ),
        }
    }

    /// A decoder to the endpoint's 8 kHz frames.
    pub fn decoder(self) -> Box<dyn Decoder> {
        match self {
            Codec::Pcmu | Codec::Pcma => Box::new(G711::new(self)),
            Codec::Opus(peer) => Box::new(
                OpusDecoder::new(OpusConfig::new(SAMPLE_RATE, peer))
                    .expect("libopus takes 8 kHz mono"),
            ),
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rtpmap_name())
    }
}

/// Turns 20 ms frames of PCM (8 kHz unless [`sample_rate`](Self::sample_rate)
/// says otherwise) into RTP payloads. Stateful codecs keep their state
/// between calls, so one encoder serves one stream.
pub trait Encoder: Send {
    fn codec(&self) -> Codec;

    /// Samples per second of the frames it takes.
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    /// Samples in one 20 ms frame it takes ([`FRAME_SAMPLES`] at 8 kHz).
    fn frame_samples(&self) -> usize {
        (self.sample_rate() / 50) as usize
    }

    /// Appends the payload for `frame` ([`frame_samples`](Self::frame_samples)
    /// samples) to `out`.
    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Appends the payload of a silent frame: the codec's static one, or
    /// what a stateful encoder makes of silence (its state runs on).
    fn encode_silence(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.codec().silence());
    }
}

/// Turns RTP payloads back into PCM (8 kHz unless
/// [`sample_rate`](Self::sample_rate) says otherwise).
pub trait Decoder: Send {
    fn codec(&self) -> Codec;

    /// Samples per second of what it yields.
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    /// Appends the samples of `payload` to `out`. Any payload decodes:
    /// a sample codec yields as many samples as it has bytes, which also
    /// covers peers packetising at 10 or 30 ms; Opus yields the packet's
    /// duration (with a resampler, in whole 20 ms frames), and conceals a
    /// packet libopus refuses.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>);

    /// Appends a 20 ms frame standing in for a lost one. G.711 has no
    /// model to extrapolate from, so it is silence (repeating the last
    /// frame buzzes in a recording); Opus uses libopus's concealment.
    fn conceal(&mut self, out: &mut Vec<i16>) {
        out.extend(std::iter::repeat_n(0, (self.sample_rate() / 50) as usize));
    }

    /// Forgets the stream so far (the peer's source changed): a stateful
    /// decoder starts afresh. Nothing to do for G.711.
    fn reset(&mut self) {}
}

/// Both G.711 laws: stateless, one byte per sample.
struct G711 {
    codec: Codec,
    encode: fn(i16) -> u8,
    decode: fn(u8) -> i16,
}

impl G711 {
    /// `codec` is one of the laws.
    fn new(codec: Codec) -> G711 {
        match codec {
            Codec::Pcma => G711 {
                codec,
                encode: g711::alaw_encode,
                decode: g711::alaw_decode,
            },
            _ => G711 {
                codec,
                encode: g711::ulaw_encode,
                decode: g711::ulaw_decode,
            },
        }
    }
}

impl Encoder for G711 {
    fn codec(&self) -> Codec {
        self.codec
    }

    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameSize {
                expected: FRAME_SAMPLES,
                got: frame.len(),
            });
        }
        out.extend(frame.iter().map(|&s| (self.encode)(s)));
        Ok(())
    }
}

impl Decoder for G711 {
    fn codec(&self) -> Codec {
        self.codec
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        out.extend(payload.iter().map(|&b| (self.decode)(b)));
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
        assert_eq!(Codec::from_rtpmap("opus", 48000), Some(Codec::OPUS));
        assert_eq!(Codec::from_rtpmap("OPUS", 8000), None);
        assert_eq!(Codec::from_static_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_static_payload_type(18), None);
        assert_eq!(Codec::Pcmu.timestamp_step(), FRAME_SAMPLES as u32);
        assert_eq!(Codec::Pcma.to_string(), "PCMA");
    }

    #[test]
    fn opus_is_dynamic_on_a_48_khz_clock() {
        let opus = Codec::from_rtpmap("opus", 48000).unwrap();
        assert_eq!(opus.static_payload_type(), None);
        assert_eq!(opus.clock_rate(), 48000);
        assert_eq!(opus.timestamp_step(), 960);
        assert_eq!(opus.rtpmap_encoding(), "opus/48000/2");
        assert_eq!(Codec::Pcmu.rtpmap_encoding(), "PCMU/8000");
        assert_eq!(opus.to_string(), "opus");
        assert_eq!(
            opus.fmtp().as_deref(),
            Some("maxplaybackrate=8000;sprop-maxcapturerate=8000")
        );
        assert_eq!(Codec::Pcma.fmtp(), None);
        let fec = opus.with_fmtp("useinbandfec=1");
        assert!(matches!(fec, Codec::Opus(p) if p.use_inband_fec));
        assert_eq!(Codec::Pcmu.with_fmtp("useinbandfec=1"), Codec::Pcmu);
        let (mut encoder, mut decoder) = (fec.encoder(), fec.decoder());
        assert_eq!((encoder.codec(), decoder.codec()), (fec, fec));
        assert_eq!(encoder.frame_samples(), FRAME_SAMPLES);
        let mut payload = Vec::new();
        encoder
            .encode(&[1000; FRAME_SAMPLES], &mut payload)
            .unwrap();
        let mut pcm = Vec::new();
        decoder.decode(&payload, &mut pcm);
        assert_eq!(pcm.len(), FRAME_SAMPLES);
        pcm.clear();
        decoder.conceal(&mut pcm);
        assert_eq!(pcm.len(), FRAME_SAMPLES);
    }

    #[test]
    fn g711_silence_is_its_static_payload() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut out = Vec::new();
            codec.encoder().encode_silence(&mut out);
            assert_eq!(out, codec.silence());
        }
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
