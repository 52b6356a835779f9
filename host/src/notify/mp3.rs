//! MP3 for voicemail e-mails (SPEC §9: "the recording as an MP3
//! attachment"), through LAME (`mp3lame-encoder`, which builds LAME itself).
//!
//! Recordings are 8 kHz mono speech: LAME encodes them as MPEG-2.5 layer III
//! at 16 kbit/s, which every player reads and which keeps a two-minute
//! message near 240 KB (the WAV is 1.9 MB).

use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, InterleavedPcm, MonoPcm, Quality};

/// Why a recording could not be made an MP3.
#[derive(Debug, thiserror::Error)]
pub enum Mp3Error {
    #[error("LAME refused the settings: {0}")]
    Settings(String),
    #[error("LAME failed to encode: {0}")]
    Encode(String),
}

/// Encodes mono 16-bit PCM at `sample_rate` as MP3.
pub fn encode(samples: &[i16], sample_rate: u32) -> Result<Vec<u8>, Mp3Error> {
    encode_channels(samples, 1, sample_rate)
}

/// Encodes 16-bit PCM of one channel, or two interleaved (left first), at
/// `sample_rate` as MP3: 16 kbit/s a channel.
pub fn encode_channels(
    samples: &[i16],
    channels: u16,
    sample_rate: u32,
) -> Result<Vec<u8>, Mp3Error> {
    let settings = |e: mp3lame_encoder::BuildError| Mp3Error::Settings(format!("{e:?}"));
    let stereo = match channels {
        1 => false,
        2 => true,
        n => return Err(Mp3Error::Settings(format!("{n} channels"))),
    };
    let mut builder = Builder::new().ok_or_else(|| Mp3Error::Settings("no encoder".into()))?;
    builder.set_num_channels(channels as u8).map_err(settings)?;
    builder.set_sample_rate(sample_rate).map_err(settings)?;
    builder
        .set_brate(if stereo {
            Bitrate::Kbps32
        } else {
            Bitrate::Kbps16
        })
        .map_err(settings)?;
    builder.set_quality(Quality::Good).map_err(settings)?;
    let mut encoder = builder.build().map_err(settings)?;
    let mut out = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(samples.len()));
    // Chunks keep the output buffer LAME wants small for long recordings.
    for chunk in samples.chunks(8000 * usize::from(channels)) {
        out.reserve(mp3lame_encoder::max_required_buffer_size(chunk.len()));
        let done = if stereo {
            encoder.encode_to_vec(InterleavedPcm(chunk), &mut out)
        } else {
            encoder.encode_to_vec(MonoPcm(chunk), &mut out)
        };
        done.map_err(|e| Mp3Error::Encode(format!("{e:?}")))?;
    }
    out.reserve(7200);
    encoder
        .flush_to_vec::<FlushNoGap>(&mut out)
        .map_err(|e| Mp3Error::Encode(format!("{e:?}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MPEG audio frame headers (sync word) in `mp3`, counted.
    fn frames(mp3: &[u8]) -> usize {
        mp3.windows(2)
            .filter(|w| w[0] == 0xff && w[1] & 0xe0 == 0xe0)
            .count()
    }

    #[test]
    fn speech_at_8_khz_becomes_a_small_mp3() {
        let tone = media::tone::sine(440.0, 8000, std::time::Duration::from_secs(3));
        let mp3 = encode(&tone, 8000).unwrap();
        // 16 kbit/s for 3 s is 6,000 bytes, give or take the padding frames.
        assert!((5000..8000).contains(&mp3.len()), "{} bytes", mp3.len());
        // MPEG-2.5 at 8 kHz: 576 samples a frame, so ~42 frames.
        assert!(frames(&mp3) >= 40, "{} frames", frames(&mp3));
        assert!(
            encode(&[], 8000).is_ok(),
            "an empty recording is not an error"
        );
    }

    #[test]
    fn two_interleaved_channels_make_a_stereo_mp3() {
        let tone = media::tone::sine(440.0, 8000, std::time::Duration::from_secs(3));
        let stereo: Vec<i16> = tone.iter().flat_map(|&s| [s, 0]).collect();
        let mp3 = encode_channels(&stereo, 2, 8000).unwrap();
        // 32 kbit/s for 3 s is 12,000 bytes.
        assert!((10_000..15_000).contains(&mp3.len()), "{} bytes", mp3.len());
        // Channel mode in the first frame header (bits 7-6 of byte 3): not mono.
        let first = mp3
            .windows(2)
            .position(|w| w[0] == 0xff && w[1] & 0xe0 == 0xe0)
            .unwrap();
        assert_ne!(mp3[first + 3] >> 6, 3, "mono frame");
        assert!(encode_channels(&stereo, 3, 8000).is_err());
    }
}
