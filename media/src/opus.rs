//! Opus (RFC 6716) through libopus, carried in RTP as RFC 7587 says:
//! `a=rtpmap:<pt> opus/48000/2` whatever is actually sent, an RTP clock
//! of 48 kHz (960 per 20 ms frame), mono or stereo streams alike.
//!
//! [`OpusEncoder`] and [`OpusDecoder`] implement the codec traits over the
//! endpoint's 20 ms frames of PCM at [`OpusConfig::pcm_rate`] (8 kHz now),
//! while libopus itself runs at [`OpusConfig::opus_rate`], 8, 16 or
//! 48 kHz, with a [`FrameResampler`] in between when the two differ. With
//! both at 8 kHz (the default) nothing is resampled: libopus encodes
//! narrowband from 8 kHz input and decodes any stream, wideband or
//! fullband, straight to 8 kHz. The endpoint could later run at 16 kHz by
//! building its codecs with a `pcm_rate` of 16000.
//!
//! What is sent is always mono (RFC 7587 lets a sender do so whatever the
//! receiver's `stereo`); a stereo stream from the peer is down-mixed by
//! the mono decoder.

use crate::codec::{Codec, CodecError, Decoder, Encoder};
use crate::resample::{FrameResampler, to_f32, to_i16};

/// The RTP clock rate of Opus, whatever rate it is coded at (RFC 7587 §4.1).
pub const RTP_CLOCK_RATE: u32 = 48000;
/// The encoding of `a=rtpmap` (RFC 7587 §7: always two channels).
pub const RTPMAP_ENCODING: &str = "opus/48000/2";
/// A 20 ms CELT frame flagged as digital silence: decodes to zeros at any
/// rate. What is sent for silence without an encoder at hand.
pub const SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];
/// Room for one packet: a 20 ms frame is at most 1275 bytes and a TOC.
const MAX_PACKET: usize = 1500;
/// The longest packet decodes to 120 ms.
const MAX_PACKET_MS: u32 = 120;
/// Frames per second (20 ms).
const FRAMES_PER_SECOND: u32 = 50;

/// The rates libopus is run at here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpusRate {
    Hz8000,
    Hz16000,
    Hz48000,
}

impl OpusRate {
    pub const fn hz(self) -> u32 {
        match self {
            OpusRate::Hz8000 => 8000,
            OpusRate::Hz16000 => 16000,
            OpusRate::Hz48000 => 48000,
        }
    }

    pub const fn from_hz(hz: u32) -> Option<OpusRate> {
        match hz {
            8000 => Some(OpusRate::Hz8000),
            16000 => Some(OpusRate::Hz16000),
            48000 => Some(OpusRate::Hz48000),
            _ => None,
        }
    }
}

/// What the peer's `a=fmtp` for Opus asks of the stream we send (RFC 7587
/// §6.1). Unknown parameters and bad values are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpusParams {
    /// `maxplaybackrate`: the highest rate the peer plays; the encoder
    /// codes no wider a band. 8000 to 48000, 48000 when absent.
    pub max_playback_rate: u32,
    /// `maxaveragebitrate`, bits per second (6000 to 510000): the encoder
    /// stays under it.
    pub max_average_bitrate: Option<u32>,
    /// `useinbandfec=1`: the peer can use in-band FEC, so the encoder adds
    /// it (at some cost in bits).
    pub use_inband_fec: bool,
    /// `usedtx=1`: the peer would like discontinuous transmission. Noted,
    /// not done: the endpoint sends a packet every 20 ms.
    pub use_dtx: bool,
    /// `cbr=1`: constant bitrate is wanted.
    pub cbr: bool,
    /// `stereo=1`: the peer would like stereo; mono is sent all the same.
    pub stereo: bool,
}

impl OpusParams {
    /// No `a=fmtp` at all.
    pub const DEFAULT: OpusParams = OpusParams {
        max_playback_rate: 48000,
        max_average_bitrate: None,
        use_inband_fec: false,
        use_dtx: false,
        cbr: false,
        stereo: false,
    };

    /// Reads the parameters of an `a=fmtp:<pt> ...` line (what follows
    /// the payload type), e.g. `minptime=10;useinbandfec=1`.
    pub fn from_fmtp(fmtp: &str) -> OpusParams {
        let mut p = OpusParams::DEFAULT;
        for item in fmtp.split(';') {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let number = value.parse::<u32>().ok();
            let flag = match value {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            };
            match key.to_ascii_lowercase().as_str() {
                "maxplaybackrate" => {
                    if let Some(n) = number {
                        p.max_playback_rate = n.clamp(8000, 48000);
                    }
                }
                "maxaveragebitrate" => {
                    if let Some(n) = number {
                        p.max_average_bitrate = Some(n.clamp(6000, 510_000));
                    }
                }
                "useinbandfec" => p.use_inband_fec = flag.unwrap_or(p.use_inband_fec),
                "usedtx" => p.use_dtx = flag.unwrap_or(p.use_dtx),
                "cbr" => p.cbr = flag.unwrap_or(p.cbr),
                "stereo" => p.stereo = flag.unwrap_or(p.stereo),
                _ => {}
            }
        }
        p
    }
}

impl Default for OpusParams {
    fn default() -> Self {
        OpusParams::DEFAULT
    }
}

/// The `a=fmtp` parameters describing our side of an Opus stream whose
/// PCM runs at `pcm_rate`: nothing above it is played or captured, so a
/// peer need not spend bits on it. Mono, no in-band FEC used on receipt
/// (both the RFC's defaults, left out).
pub fn local_fmtp(pcm_rate: u32) -> String {
    format!("maxplaybackrate={pcm_rate};sprop-maxcapturerate={pcm_rate}")
}

/// The encoder complexity the engine uses. The audio it encodes is 8 kHz
/// narrowband (a carrier's G.711, prompts), where SILK at 5 is hard to tell
/// from 10 by ear, and it is the transcoder's largest cost: a 20 ms frame
/// took 68 µs to encode at 10, 53 µs at 5 and 21 µs at 0 (bench/README.md,
/// transcoding channels).
pub const DEFAULT_COMPLEXITY: u8 = 5;

/// How an Opus encoder or decoder is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// The rate of the PCM frames given and returned (20 ms of it per
    /// frame): the endpoint's, 8000.
    pub pcm_rate: u32,
    /// The rate libopus encodes from and decodes to.
    pub opus_rate: OpusRate,
    /// The target bitrate, bits per second (capped by the peer's
    /// `maxaveragebitrate`).
    pub bitrate: u32,
    /// libopus's encoder complexity, 0 (cheapest) to 10 (libopus's own
    /// default); [`DEFAULT_COMPLEXITY`] unless set.
    pub complexity: u8,
    /// The loss rate, in percent, in-band FEC is planned for (when the
    /// peer asked for it).
    pub expected_loss_percent: u8,
    /// The peer's `a=fmtp`.
    pub peer: OpusParams,
}

impl OpusConfig {
    /// Defaults for frames at `pcm_rate`: libopus at that same rate when
    /// it can be (no resampling), else at 48 kHz; a bitrate fit for voice
    /// in the band that can be heard.
    pub fn new(pcm_rate: u32, peer: OpusParams) -> OpusConfig {
        let opus_rate = OpusRate::from_hz(pcm_rate).unwrap_or(OpusRate::Hz48000);
        let mut config = OpusConfig {
            pcm_rate,
            opus_rate,
            bitrate: 0,
            complexity: DEFAULT_COMPLEXITY,
            expected_loss_percent: 10,
            peer,
        };
        let band = config.audio_band();
        config.bitrate = if band <= 8000 {
            16_000
        } else if band <= 16000 {
            24_000
        } else {
            32_000
        };
        config
    }

    /// The same with libopus at `opus_rate` (the bitrate stays).
    pub fn with_opus_rate(self, opus_rate: OpusRate) -> OpusConfig {
        OpusConfig { opus_rate, ..self }
    }

    /// The sampling rate whose band can carry anything: the lowest of
    /// ours, libopus's and what the peer plays.
    fn audio_band(&self) -> u32 {
        self.pcm_rate
            .min(self.opus_rate.hz())
            .min(self.peer.max_playback_rate)
    }

    fn pcm_frame(&self) -> usize {
        (self.pcm_rate / FRAMES_PER_SECOND) as usize
    }

    fn opus_frame(&self) -> usize {
        (self.opus_rate.hz() / FRAMES_PER_SECOND) as usize
    }

    fn check(&self) -> Result<(), CodecError> {
        if !self.pcm_rate.is_multiple_of(FRAMES_PER_SECOND)
            || !(8000..=48000).contains(&self.pcm_rate)
        {
            return Err(CodecError::Rate(self.pcm_rate));
        }
        Ok(())
    }

    /// A resampler between the two rates, none when they are equal.
    fn resampler(&self, from: u32, to: u32) -> Result<Option<FrameResampler>, CodecError> {
        if from == to {
            return Ok(None);
        }
        Ok(Some(FrameResampler::new(from, to)?))
    }
}

impl Default for OpusConfig {
    /// The endpoint's: 8 kHz PCM, libopus at 8 kHz, no fmtp from the peer.
    fn default() -> Self {
        OpusConfig::new(crate::codec::SAMPLE_RATE, OpusParams::DEFAULT)
    }
}

fn opus_error(e: ::opus::Error) -> CodecError {
    CodecError::Opus(e.description())
}

fn max_bandwidth(rate: u32) -> ::opus::Bandwidth {
    use ::opus::Bandwidth;
    [
        (8000, Bandwidth::Narrowband),
        (12000, Bandwidth::Mediumband),
        (16000, Bandwidth::Wideband),
        (24000, Bandwidth::Superwideband),
    ]
    .into_iter()
    .find(|&(top, _)| rate <= top)
    .map_or(Bandwidth::Fullband, |(_, band)| band)
}

/// Encodes 20 ms frames of mono PCM into one Opus packet each.
pub struct OpusEncoder {
    config: OpusConfig,
    encoder: ::opus::Encoder,
    /// PCM rate to libopus's, when they differ.
    resampler: Option<FrameResampler>,
    pcm: Vec<f32>,
    resampled: Vec<f32>,
    silence: Vec<i16>,
    packet: Vec<u8>,
}

impl OpusEncoder {
    pub fn new(config: OpusConfig) -> Result<OpusEncoder, CodecError> {
        config.check()?;
        let mut encoder = ::opus::Encoder::new(
            config.opus_rate.hz(),
            ::opus::Channels::Mono,
            ::opus::Application::Voip,
        )
        .map_err(opus_error)?;
        let bitrate = config
            .peer
            .max_average_bitrate
            .map_or(config.bitrate, |max| config.bitrate.min(max))
            .clamp(6000, 510_000);
        encoder
            .set_bitrate(::opus::Bitrate::Bits(bitrate as i32))
            .map_err(opus_error)?;
        encoder
            .set_max_bandwidth(max_bandwidth(config.audio_band()))
            .map_err(opus_error)?;
        encoder
            .set_complexity(i32::from(config.complexity.min(10)))
            .map_err(opus_error)?;
        encoder.set_vbr(!config.peer.cbr).map_err(opus_error)?;
        if config.peer.use_inband_fec {
            encoder.set_inband_fec(true).map_err(opus_error)?;
            encoder
                .set_packet_loss_perc(i32::from(config.expected_loss_percent.min(100)))
                .map_err(opus_error)?;
        }
        Ok(OpusEncoder {
            resampler: config.resampler(config.pcm_rate, config.opus_rate.hz())?,
            pcm: vec![0.0; config.pcm_frame()],
            resampled: vec![0.0; config.opus_frame()],
            silence: vec![0; config.pcm_frame()],
            packet: vec![0; MAX_PACKET],
            encoder,
            config,
        })
    }

    pub fn config(&self) -> &OpusConfig {
        &self.config
    }

    /// The delay the resampler adds, in PCM samples (0 without one).
    pub fn resampler_delay(&self) -> usize {
        self.resampler.as_ref().map_or(0, |r| {
            r.delay() * self.config.pcm_rate as usize / self.config.opus_rate.hz() as usize
        })
    }
}

impl Encoder for OpusEncoder {
    fn codec(&self) -> Codec {
        Codec::Opus(self.config.peer)
    }

    fn sample_rate(&self) -> u32 {
        self.config.pcm_rate
    }

    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let expected = self.config.pcm_frame();
        if frame.len() != expected {
            return Err(CodecError::FrameSize {
                expected,
                got: frame.len(),
            });
        }
        let n = match &mut self.resampler {
            None => self.encoder.encode(frame, &mut self.packet),
            Some(resampler) => {
                to_f32(frame, &mut self.pcm);
                resampler.process(&self.pcm, &mut self.resampled)?;
                self.encoder.encode_float(&self.resampled, &mut self.packet)
            }
        }
        .map_err(opus_error)?;
        out.extend_from_slice(&self.packet[..n]);
        Ok(())
    }

    /// A silent frame through the encoder, so that its state (and the
    /// peer decoder's) runs on without a jump when a prompt starts.
    fn encode_silence(&mut self, out: &mut Vec<u8>) {
        let silence = std::mem::take(&mut self.silence);
        if self.encode(&silence, out).is_err() {
            out.extend_from_slice(&SILENCE);
        }
        self.silence = silence;
    }
}

/// Decodes Opus packets (any duration, mono or stereo, any coded band)
/// into mono PCM at the configured rate.
pub struct OpusDecoder {
    config: OpusConfig,
    decoder: ::opus::Decoder,
    /// libopus's rate to the PCM rate, when they differ.
    resampler: Option<FrameResampler>,
    /// One packet's samples at libopus's rate (120 ms at most).
    decoded: Vec<i16>,
    decoded_f32: Vec<f32>,
    /// Samples at libopus's rate short of a whole frame for the resampler
    /// (packets of 10 ms or less).
    pending: Vec<f32>,
    resampled: Vec<f32>,
}

impl OpusDecoder {
    pub fn new(config: OpusConfig) -> Result<OpusDecoder, CodecError> {
        config.check()?;
        let decoder = ::opus::Decoder::new(config.opus_rate.hz(), ::opus::Channels::Mono)
            .map_err(opus_error)?;
        let longest = (config.opus_rate.hz() / 1000 * MAX_PACKET_MS) as usize;
        let resampler = config.resampler(config.opus_rate.hz(), config.pcm_rate)?;
        Ok(OpusDecoder {
            decoded: if resampler.is_none() {
                vec![0; longest]
            } else {
                Vec::new()
            },
            decoded_f32: if resampler.is_some() {
                vec![0.0; longest]
            } else {
                Vec::new()
            },
            pending: Vec::with_capacity(longest + config.opus_frame()),
            resampled: vec![0.0; config.pcm_frame()],
            resampler,
            decoder,
            config,
        })
    }

    pub fn config(&self) -> &OpusConfig {
        &self.config
    }

    /// Decodes one packet, appending its samples to `out`; returns how
    /// many were appended (with a resampler, whole 20 ms frames only: the
    /// rest of a short packet waits for the next). A packet libopus
    /// refuses is an error, and nothing is appended.
    pub fn try_decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Opus("empty packet"));
        }
        self.run(payload, false, None, out)
    }

    /// Rebuilds the 20 ms lost just before `next` from the in-band FEC
    /// that `next` carries (libopus conceals when it has none); decode
    /// `next` itself afterwards as usual.
    pub fn recover(&mut self, next: &[u8], out: &mut Vec<i16>) -> Result<usize, CodecError> {
        if next.is_empty() {
            return Err(CodecError::Opus("empty packet"));
        }
        self.run(next, true, Some(self.config.opus_frame()), out)
    }

    /// libopus's packet loss concealment for 20 ms.
    pub fn try_conceal(&mut self, out: &mut Vec<i16>) -> Result<usize, CodecError> {
        self.run(&[], false, Some(self.config.opus_frame()), out)
    }

    /// Decodes (`payload` empty: conceals) `limit` samples at most at
    /// libopus's rate, and converts them to the PCM rate.
    fn run(
        &mut self,
        payload: &[u8],
        fec: bool,
        limit: Option<usize>,
        out: &mut Vec<i16>,
    ) -> Result<usize, CodecError> {
        let Some(resampler) = &mut self.resampler else {
            let room = limit.unwrap_or(self.decoded.len()).min(self.decoded.len());
            let n = self
                .decoder
                .decode(payload, &mut self.decoded[..room], fec)
                .map_err(opus_error)?;
            out.extend_from_slice(&self.decoded[..n]);
            return Ok(n);
        };
        let room = limit
            .unwrap_or(self.decoded_f32.len())
            .min(self.decoded_f32.len());
        let n = self
            .decoder
            .decode_float(payload, &mut self.decoded_f32[..room], fec)
            .map_err(opus_error)?;
        self.pending.extend_from_slice(&self.decoded_f32[..n]);
        let chunk = resampler.input_len();
        let whole = self.pending.len() / chunk * chunk;
        let before = out.len();
        for frame in self.pending[..whole].chunks_exact(chunk) {
            resampler.process(frame, &mut self.resampled)?;
            to_i16(&self.resampled, out);
        }
        self.pending.drain(..whole);
        Ok(out.len() - before)
    }
}

impl Decoder for OpusDecoder {
    fn codec(&self) -> Codec {
        Codec::Opus(self.config.peer)
    }

    fn sample_rate(&self) -> u32 {
        self.config.pcm_rate
    }

    /// A packet libopus refuses is concealed like a lost one.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        if self.try_decode(payload, out).is_err() {
            self.conceal(out);
        }
    }

    fn conceal(&mut self, out: &mut Vec<i16>) {
        if self.try_conceal(out).is_err() {
            out.extend(std::iter::repeat_n(0, self.config.pcm_frame()));
        }
    }

    fn reset(&mut self) {
        // Resetting a valid decoder cannot fail.
        let _ = self.decoder.reset_state();
        self.pending.clear();
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FRAME_SAMPLES;

    /// Normalised amplitude of `frequency` in `x` (Goertzel): a sine of
    /// amplitude A (full scale 1) gives about A.
    fn level(x: &[i16], rate: u32, frequency: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * frequency / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) / 32768.0 + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        (4.0 * power).sqrt() / x.len() as f64
    }

    fn rms(x: &[i16]) -> f64 {
        let sum: f64 = x.iter().map(|&s| (f64::from(s) / 32768.0).powi(2)).sum();
        (sum / x.len().max(1) as f64).sqrt()
    }

    fn sine(rate: u32, frequency: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amplitude * 32767.0 * (2.0 * std::f64::consts::PI * frequency * t).sin()) as i16
            })
            .collect()
    }

    const RATES: [OpusRate; 3] = [OpusRate::Hz8000, OpusRate::Hz16000, OpusRate::Hz48000];

    /// One second of a tone at 8 kHz through an encoder and a decoder with
    /// libopus at `rate`; the decoded audio.
    fn round_trip(rate: OpusRate, frequency: f64, amplitude: f64) -> Vec<i16> {
        let config = OpusConfig::default().with_opus_rate(rate);
        let mut encoder = OpusEncoder::new(config).unwrap();
        let mut decoder = OpusDecoder::new(config).unwrap();
        let tone = sine(8000, frequency, amplitude, 8000);
        let mut out = Vec::new();
        let mut packet = Vec::new();
        for frame in tone.chunks(FRAME_SAMPLES) {
            packet.clear();
            encoder.encode(frame, &mut packet).unwrap();
            assert!(!packet.is_empty() && packet.len() < 200, "{}", packet.len());
            let before = out.len();
            decoder.decode(&packet, &mut out);
            // Exactly one frame out per frame in, from the first.
            assert_eq!(out.len() - before, FRAME_SAMPLES);
        }
        out
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_level_at_every_internal_rate() {
        for rate in RATES {
            for frequency in [440.0, 1000.0, 2500.0] {
                let out = round_trip(rate, frequency, 0.3);
                // The last half second: past the codec's start-up.
                let tail = &out[4000..];
                let at = level(tail, 8000, frequency);
                assert!(
                    (at - 0.3).abs() < 0.04,
                    "{rate:?} {frequency} Hz: level {at}"
                );
                // The tone is where the energy is.
                let total = rms(tail) * std::f64::consts::SQRT_2;
                assert!(at / total > 0.9, "{rate:?} {frequency} Hz: {at} of {total}");
                for other in [frequency * 0.7, frequency * 1.4] {
                    let off = level(tail, 8000, other);
                    assert!(off < 0.03, "{rate:?} {frequency} Hz: {off} at {other} Hz");
                }
            }
        }
    }

    #[test]
    fn concealment_gives_a_frame_that_fades_a_tone_out() {
        for rate in RATES {
            let config = OpusConfig::default().with_opus_rate(rate);
            let mut encoder = OpusEncoder::new(config).unwrap();
            let mut decoder = OpusDecoder::new(config).unwrap();
            let tone = sine(8000, 600.0, 0.3, 4000);
            let mut out = Vec::new();
            let mut packet = Vec::new();
            for frame in tone.chunks(FRAME_SAMPLES) {
                packet.clear();
                encoder.encode(frame, &mut packet).unwrap();
                decoder.decode(&packet, &mut out);
            }
            out.clear();
            decoder.conceal(&mut out);
            assert_eq!(out.len(), FRAME_SAMPLES, "{rate:?}");
            // The first lost frame carries on the tone, not silence.
            assert!(level(&out, 8000, 600.0) > 0.05, "{rate:?}");
            for _ in 0..50 {
                out.clear();
                decoder.conceal(&mut out);
                assert_eq!(out.len(), FRAME_SAMPLES);
            }
            // A second later it has faded.
            assert!(rms(&out) < 0.02, "{rate:?}: {}", rms(&out));
            // After a reset (a new source) nothing of the old stream is left.
            decoder.reset();
            out.clear();
            decoder.conceal(&mut out);
            assert_eq!(out.len(), FRAME_SAMPLES);
            assert!(out.iter().all(|&s| s == 0), "{rate:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_or_concealed_never_a_panic() {
        let mut seed = 0x9E37_79B9u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for rate in RATES {
            let config = OpusConfig::default().with_opus_rate(rate);
            let mut decoder = OpusDecoder::new(config).unwrap();
            let mut out = Vec::new();
            assert!(decoder.try_decode(&[], &mut out).is_err());
            // A code 3 packet claiming 63 frames of 120 ms: invalid.
            assert!(decoder.try_decode(&[0xFB, 0xBF], &mut out).is_err());
            assert!(out.is_empty());
            let (mut refused, mut frames) = (0, 0);
            for i in 0..1500 {
                let len = (next() % 1600) as usize;
                let packet: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                out.clear();
                match decoder.try_decode(&packet, &mut out) {
                    Ok(n) => assert_eq!(n, out.len()),
                    Err(_) => {
                        assert!(out.is_empty());
                        refused += 1;
                    }
                }
                // 120 ms at most, and a frame held back by a resampler.
                assert!(out.len() <= 1120, "{i}: {}", out.len());
                out.clear();
                decoder.decode(&packet, &mut out);
                assert!(out.len() <= 1120, "{i}: {}", out.len());
                frames += out.len();
            }
            // Random bytes are mostly valid Opus (the format has little
            // redundancy); what is not is refused.
            assert!(refused > 100 && frames > 0, "{refused} refused");
        }
    }

    #[test]
    fn a_stereo_stream_is_down_mixed() {
        // A phone sending stereo at 48 kHz: 700 Hz on the left, 1100 Hz
        // on the right.
        let mut phone =
            ::opus::Encoder::new(48000, ::opus::Channels::Stereo, ::opus::Application::Audio)
                .unwrap();
        phone.set_bitrate(::opus::Bitrate::Bits(96_000)).unwrap();
        let left = sine(48000, 700.0, 0.3, 48000);
        let right = sine(48000, 1100.0, 0.3, 48000);
        let interleaved: Vec<i16> = left
            .iter()
            .zip(&right)
            .flat_map(|(&l, &r)| [l, r])
            .collect();
        for rate in RATES {
            let config = OpusConfig::default().with_opus_rate(rate);
            let mut decoder = OpusDecoder::new(config).unwrap();
            let mut out = Vec::new();
            let mut packet = vec![0; MAX_PACKET];
            for frame in interleaved.chunks(960 * 2) {
                let n = phone.encode(frame, &mut packet).unwrap();
                assert_eq!(
                    ::opus::packet::get_nb_channels(&packet[..n]).unwrap(),
                    ::opus::Channels::Stereo
                );
                let before = out.len();
                decoder.decode(&packet[..n], &mut out);
                assert_eq!(out.len() - before, FRAME_SAMPLES);
            }
            let tail = &out[4000..];
            for f in [700.0, 1100.0] {
                let at = level(tail, 8000, f);
                // Each channel at half: (L + R) / 2.
                assert!((at - 0.15).abs() < 0.05, "{rate:?} {f} Hz: {at}");
            }
        }
    }

    #[test]
    fn packets_of_other_durations_decode_to_whole_frames() {
        // 10 ms and 60 ms packets from a 48 kHz phone.
        for (ms, samples) in [(10, 480), (60, 2880)] {
            let mut phone =
                ::opus::Encoder::new(48000, ::opus::Channels::Mono, ::opus::Application::Voip)
                    .unwrap();
            let tone = sine(48000, 1000.0, 0.3, 48000);
            for rate in RATES {
                let config = OpusConfig::default().with_opus_rate(rate);
                let mut decoder = OpusDecoder::new(config).unwrap();
                let mut out = Vec::new();
                let mut packet = vec![0; MAX_PACKET];
                for frame in tone.chunks(samples) {
                    let n = phone.encode(frame, &mut packet).unwrap();
                    decoder.decode(&packet[..n], &mut out);
                }
                // All of it, give or take half a frame held back.
                assert!(
                    out.len() == 8000 || out.len() + 80 == 8000,
                    "{ms} ms at {rate:?}: {}",
                    out.len()
                );
                let at = level(&out[4000..7600], 8000, 1000.0);
                assert!((at - 0.3).abs() < 0.06, "{ms} ms at {rate:?}: {at}");
            }
        }
    }

    #[test]
    fn in_band_fec_rebuilds_a_lost_frame() {
        let peer = OpusParams::from_fmtp("useinbandfec=1");
        let config = OpusConfig {
            expected_loss_percent: 20,
            ..OpusConfig::new(8000, peer)
        };
        let mut encoder = OpusEncoder::new(config).unwrap();
        let mut decoder = OpusDecoder::new(config).unwrap();
        let tone = sine(8000, 500.0, 0.3, 8000);
        let packets: Vec<Vec<u8>> = tone
            .chunks(FRAME_SAMPLES)
            .map(|f| {
                let mut p = Vec::new();
                encoder.encode(f, &mut p).unwrap();
                p
            })
            .collect();
        let mut out = Vec::new();
        for p in &packets[..30] {
            decoder.decode(p, &mut out);
        }
        // Packet 30 is lost; 31 carries it at low quality.
        out.clear();
        assert_eq!(
            decoder.recover(&packets[31], &mut out).unwrap(),
            FRAME_SAMPLES
        );
        assert!(
            level(&out, 8000, 500.0) > 0.1,
            "{}",
            level(&out, 8000, 500.0)
        );
        decoder.decode(&packets[31], &mut out);
        assert_eq!(out.len(), 2 * FRAME_SAMPLES);
    }

    #[test]
    fn the_silence_packet_and_the_encoders_silence_decode_to_silence() {
        for rate in RATES {
            let config = OpusConfig::default().with_opus_rate(rate);
            let mut decoder = OpusDecoder::new(config).unwrap();
            let mut encoder = OpusEncoder::new(config).unwrap();
            let mut out = Vec::new();
            for _ in 0..10 {
                decoder.try_decode(&SILENCE, &mut out).unwrap();
                let mut packet = Vec::new();
                encoder.encode_silence(&mut packet);
                assert!(packet.len() <= 10, "{}", packet.len());
                decoder.try_decode(&packet, &mut out).unwrap();
            }
            assert_eq!(out.len(), 20 * FRAME_SAMPLES);
            assert!(out.iter().all(|s| s.abs() <= 2), "{rate:?}");
        }
    }

    #[test]
    fn fmtp_parameters_are_read_and_bound() {
        let p = OpusParams::from_fmtp(
            " minptime=10; useinbandfec=1;maxplaybackrate=16000;MAXAVERAGEBITRATE=900000;cbr=1;stereo=0;usedtx=x",
        );
        assert_eq!(
            p,
            OpusParams {
                max_playback_rate: 16000,
                max_average_bitrate: Some(510_000),
                use_inband_fec: true,
                use_dtx: false,
                cbr: true,
                stereo: false,
            }
        );
        assert_eq!(OpusParams::from_fmtp(""), OpusParams::DEFAULT);
        assert_eq!(
            OpusParams::from_fmtp("maxplaybackrate=4000;garbage").max_playback_rate,
            8000
        );
        assert_eq!(
            local_fmtp(8000),
            "maxplaybackrate=8000;sprop-maxcapturerate=8000"
        );
        // A peer playing 8 kHz at most, libopus at 48 kHz: still narrowband.
        let config = OpusConfig::new(16000, OpusParams::from_fmtp("maxplaybackrate=8000"))
            .with_opus_rate(OpusRate::Hz48000);
        assert_eq!(config.audio_band(), 8000);
        assert_eq!(OpusConfig::default().bitrate, 16_000);
        assert_eq!(OpusConfig::new(16000, OpusParams::DEFAULT).bitrate, 24_000);
    }

    #[test]
    fn a_bitrate_cap_and_wrong_frames_are_honoured() {
        let capped = OpusConfig::new(8000, OpusParams::from_fmtp("maxaveragebitrate=8000;cbr=1"));
        let mut encoder = OpusEncoder::new(capped).unwrap();
        let tone = sine(8000, 1000.0, 0.3, 8000);
        let mut total = 0;
        for frame in tone.chunks(FRAME_SAMPLES) {
            let mut p = Vec::new();
            encoder.encode(frame, &mut p).unwrap();
            total += p.len();
        }
        // One second: 8 kbit/s is 1000 bytes.
        assert!(total <= 1050, "{total} bytes");
        let mut out = Vec::new();
        assert_eq!(
            encoder.encode(&[0; 80], &mut out),
            Err(CodecError::FrameSize {
                expected: 160,
                got: 80
            })
        );
        assert!(out.is_empty());
        assert!(OpusEncoder::new(OpusConfig::new(7999, OpusParams::DEFAULT)).is_err());
    }

    #[test]
    fn a_wideband_engine_gets_frames_of_its_own_rate() {
        // The endpoint at 16 kHz, libopus at 48 kHz.
        let config = OpusConfig::new(16000, OpusParams::DEFAULT).with_opus_rate(OpusRate::Hz48000);
        let mut encoder = OpusEncoder::new(config).unwrap();
        let mut decoder = OpusDecoder::new(config).unwrap();
        assert_eq!(
            (encoder.sample_rate(), encoder.frame_samples()),
            (16000, 320)
        );
        assert_eq!(decoder.sample_rate(), 16000);
        assert_eq!(encoder.resampler_delay(), 80);
        let tone = sine(16000, 6000.0, 0.3, 16000);
        let mut out = Vec::new();
        for frame in tone.chunks(320) {
            let mut p = Vec::new();
            encoder.encode(frame, &mut p).unwrap();
            decoder.decode(&p, &mut out);
        }
        assert_eq!(out.len(), 16000);
        // 6 kHz: a band 8 kHz audio could not carry.
        let at = level(&out[8000..], 16000, 6000.0);
        assert!((at - 0.3).abs() < 0.06, "{at}");
    }
}
