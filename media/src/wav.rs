//! WAV files of the endpoint's format, 8 kHz mono 16-bit PCM: prompts
//! read from disk or the database, recordings written to memory (the
//! switch stores them in its database). Other formats are refused, not
//! converted: a prompt in the wrong format is a provisioning mistake that
//! should be seen, and resampling belongs to the tooling that makes them.

use std::io::{Cursor, Read};
use std::path::Path;

use crate::codec::SAMPLE_RATE;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("not a readable WAV file: {0}")]
    Malformed(#[source] hound::Error),
    #[error(
        "WAV is {channels} channel(s), {sample_rate} Hz, {bits}-bit {format}; \
         only 8000 Hz mono 16-bit PCM is played"
    )]
    Unsupported {
        channels: u16,
        sample_rate: u32,
        bits: u16,
        format: &'static str,
    },
    #[error("writing WAV: {0}")]
    Write(#[source] hound::Error),
}

/// The samples of an 8 kHz mono 16-bit PCM WAV held in memory.
pub fn read(bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(WavError::Malformed)?;
    // A header can claim any length: never reserve more than the bytes hold.
    samples(reader, bytes.len() / 2)
}

/// The same from a file.
pub fn read_file(path: &Path) -> Result<Vec<i16>, WavError> {
    let reader = hound::WavReader::open(path).map_err(WavError::Malformed)?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    samples(reader, usize::try_from(size / 2).unwrap_or(usize::MAX))
}

fn samples<R: Read>(reader: hound::WavReader<R>, at_most: usize) -> Result<Vec<i16>, WavError> {
    let spec = reader.spec();
    let format = match spec.sample_format {
        hound::SampleFormat::Int => "PCM",
        hound::SampleFormat::Float => "float",
    };
    if spec.channels != 1
        || spec.sample_rate != SAMPLE_RATE
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(WavError::Unsupported {
            channels: spec.channels,
            sample_rate: spec.sample_rate,
            bits: spec.bits_per_sample,
            format,
        });
    }
    let declared = usize::try_from(reader.len()).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(declared.min(at_most));
    for sample in reader.into_samples::<i16>() {
        out.push(sample.map_err(WavError::Malformed)?);
    }
    Ok(out)
}

/// An 8 kHz mono 16-bit PCM WAV of `samples`, in memory.
pub fn write(samples: &[i16]) -> Result<Vec<u8>, WavError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Vec::with_capacity(44 + 2 * samples.len());
    let mut writer =
        hound::WavWriter::new(Cursor::new(&mut bytes), spec).map_err(WavError::Write)?;
    for &s in samples {
        writer.write_sample(s).map_err(WavError::Write)?;
    }
    writer.finalize().map_err(WavError::Write)?;
    Ok(bytes)
}

/// The 44-byte header of an 8 kHz 16-bit PCM WAV of `channels` channels
/// whose `data_len` bytes of samples follow: what a recording stored as raw
/// chunks is served with.
pub fn header(channels: u16, data_len: u32) -> [u8; 44] {
    let block = 2 * channels;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * u32::from(block)).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_with(spec: hound::WavSpec) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut w = hound::WavWriter::new(Cursor::new(&mut bytes), spec).unwrap();
        for _ in 0..10 * spec.channels {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(0.5f32).unwrap(),
                (_, 8) => w.write_sample(5i8).unwrap(),
                (_, 16) => w.write_sample(5i16).unwrap(),
                _ => w.write_sample(5i32).unwrap(),
            }
        }
        w.finalize().unwrap();
        bytes
    }

    #[test]
    fn a_header_and_raw_samples_make_a_wav_any_reader_takes() {
        let samples: [i16; 6] = [1, -1, 300, -300, i16::MAX, i16::MIN];
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut file = header(2, data.len() as u32).to_vec();
        file.extend_from_slice(&data);
        let reader = hound::WavReader::new(Cursor::new(&file)).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        let read: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
        assert_eq!(read, samples);
        // Mono is what `write` makes.
        assert_eq!(write(&samples).unwrap()[..44], header(1, 12));
    }

    #[test]
    fn a_recording_round_trips_through_memory() {
        let samples: Vec<i16> = (0..8000)
            .map(|i| ((i * 37) % 65536 - 32768) as i16)
            .collect();
        let bytes = write(&samples).unwrap();
        assert_eq!(bytes.len(), 44 + 16000);
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(read(&bytes).unwrap(), samples);
        assert_eq!(read(&write(&[]).unwrap()).unwrap(), Vec::<i16>::new());
    }

    #[test]
    fn a_file_reads_like_memory() {
        let dir = std::env::temp_dir().join(format!("media-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prompt.wav");
        std::fs::write(&path, write(&[1, -2, 3]).unwrap()).unwrap();
        assert_eq!(read_file(&path).unwrap(), vec![1, -2, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(read_file(&path), Err(WavError::Malformed(_))));
    }

    #[test]
    fn other_formats_are_refused_with_what_they_are() {
        let good = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        assert_eq!(read(&wav_with(good)).unwrap(), vec![5; 10]);
        for spec in [
            hound::WavSpec {
                channels: 2,
                ..good
            },
            hound::WavSpec {
                sample_rate: 16000,
                ..good
            },
            hound::WavSpec {
                bits_per_sample: 8,
                ..good
            },
            hound::WavSpec {
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
                ..good
            },
        ] {
            match read(&wav_with(spec)) {
                Err(WavError::Unsupported {
                    channels,
                    sample_rate,
                    bits,
                    ..
                }) => assert_eq!(
                    (channels, sample_rate, bits),
                    (spec.channels, spec.sample_rate, spec.bits_per_sample)
                ),
                other => panic!("{spec:?} gave {other:?}"),
            }
        }
        let err = read(&wav_with(hound::WavSpec {
            sample_rate: 44100,
            ..good
        }))
        .unwrap_err();
        assert!(err.to_string().contains("44100 Hz"), "{err}");
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert!(matches!(read(b""), Err(WavError::Malformed(_))));
        assert!(matches!(read(b"RIFF1234WAVE"), Err(WavError::Malformed(_))));
        let good = write(&[7; 100]).unwrap();
        // Truncated data: an error, not the samples of another file.
        assert!(read(&good[..good.len() - 5]).is_err());
        // A header claiming 4 GB of data reserves nothing of the sort.
        let mut huge = good.clone();
        huge[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read(&huge).is_err());
        // Mutations of every header byte: any result but a panic.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut m = good.clone();
            let at = (state % 48) as usize;
            m[at] = (state >> 8) as u8;
            if state & 0x100 != 0 {
                m.truncate(((state >> 16) % 60) as usize);
            }
            let _ = read(&m);
        }
    }
}
