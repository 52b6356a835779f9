//! What Opus costs per 20 ms frame on this machine: libopus's own encode
//! and decode at 48 kHz (the ceiling a transcoding benchmark compares
//! against), then the endpoint's codec path (8 kHz frames, libopus at 8,
//! 16 or 48 kHz with resampling between), then what one transcoding
//! channel (`ivr_bench transcode`) does per 20 ms, part by part: decoding
//! a phone's 48 kHz stream (32 kbit/s, complexity 10, as pre-encoded by
//! the benchmark's phones) to the endpoint's 8 kHz, encoding 8 kHz frames
//! at encoder complexities 10 (the endpoint's, `OpusConfig::new`) down to
//! 0, and the G.711 side.
//!
//! `cargo run --release -p media --example opus_cost [seconds]`
//! (default 20 s of audio per line; one core, no criterion). Times are the
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so that another process
//! taking the core meanwhile does not count.

use std::hint::black_box;

use media::Codec;
use media::codec::{Decoder, Encoder, FRAME_SAMPLES};
use media::opus::{OpusConfig, OpusDecoder, OpusEncoder, OpusRate};

#[path = "support/mod.rs"]
mod support;

use support::cpu::thread_cpu_ns;
use support::voice::voice;

fn per_frame(frames: usize, f: impl FnMut(usize)) -> f64 {
    let mut f = f;
    // Warm up: caches, libopus's mode decisions.
    for i in 0..50.min(frames) {
        f(i);
    }
    let start = thread_cpu_ns();
    for i in 0..frames {
        f(i);
    }
    (thread_cpu_ns() - start) as f64 / frames as f64
}

fn libopus_at_48k(frames: usize, complexity: i32, bitrate: i32) {
    let pcm = voice(48000, frames * 960);
    let mut encoder =
        opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    encoder.set_complexity(complexity).unwrap();
    encoder.set_bitrate(opus::Bitrate::Bits(bitrate)).unwrap();
    let mut decoder = opus::Decoder::new(48000, opus::Channels::Mono).unwrap();
    let mut packets = Vec::with_capacity(frames);
    let mut buf = [0u8; 1500];
    let encode = per_frame(frames, |i| {
        let n = encoder
            .encode(black_box(&pcm[i * 960..(i + 1) * 960]), &mut buf)
            .unwrap();
        if packets.len() < frames {
            packets.push(buf[..n].to_vec());
        }
    });
    let bytes: usize = packets.iter().map(Vec::len).sum();
    let mut out = [0i16; 960];
    let decode = per_frame(frames, |i| {
        let n = decoder
            .decode(black_box(&packets[i]), &mut out, false)
            .unwrap();
        black_box(&out[..n]);
    });
    println!(
        "libopus 48 kHz mono, complexity {complexity:>2}, {:>3} kbit/s asked ({:>5.1} sent): \
         encode {:>7.0} ns, decode {:>6.0} ns, encode+decode {:>7.0} ns per 20 ms frame",
        bitrate / 1000,
        bytes as f64 * 8.0 * 50.0 / frames as f64 / 1000.0,
        encode,
        decode,
        encode + decode
    );
}

fn endpoint_path(frames: usize, rate: OpusRate) {
    let pcm = voice(8000, frames * FRAME_SAMPLES);
    let config = OpusConfig::default().with_opus_rate(rate);
    let mut encoder = OpusEncoder::new(config).unwrap();
    let mut decoder = OpusDecoder::new(config).unwrap();
    let mut payload = Vec::with_capacity(1500);
    let mut out = Vec::with_capacity(4 * FRAME_SAMPLES);
    let both = per_frame(frames, |i| {
        payload.clear();
        out.clear();
        let frame = &pcm[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
        encoder.encode(black_box(frame), &mut payload).unwrap();
        decoder.decode(black_box(&payload), &mut out);
        black_box(&out);
    });
    println!(
        "endpoint codec path, 8 kHz frames, libopus at {:>5} Hz ({} kbit/s): \
         encode+decode {both:>7.0} ns per 20 ms frame",
        rate.hz(),
        config.bitrate / 1000
    );
}

/// One transcoding channel's codec work per 20 ms, part by part.
fn transcode_parts(frames: usize) {
    // The phone: libopus at 48 kHz, VoIP, 32 kbit/s, complexity 10.
    let mut phone =
        opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    phone.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
    let pcm48 = voice(48000, frames * 960);
    let mut buf = [0u8; 1500];
    let stream: Vec<Vec<u8>> = pcm48
        .chunks_exact(960)
        .map(|f| {
            let n = phone.encode(f, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect();
    let mut decoder = Codec::OPUS.decoder();
    let mut out = Vec::with_capacity(4 * FRAME_SAMPLES);
    let decode = per_frame(frames, |i| {
        out.clear();
        decoder.decode(black_box(&stream[i]), &mut out);
        black_box(&out);
    });
    println!(
        "transcoding: decode of the phone's 48 kHz stream ({:.1} kbit/s) to 8 kHz \
         (endpoint decoder): {decode:>7.0} ns per 20 ms frame",
        stream.iter().map(Vec::len).sum::<usize>() as f64 * 8.0 * 50.0 / frames as f64 / 1000.0
    );
    let pcm8 = voice(8000, frames * FRAME_SAMPLES);
    for complexity in [10u8, 8, 5, 3, 0] {
        let config = OpusConfig {
            complexity,
            ..OpusConfig::default()
        };
        let mut encoder = OpusEncoder::new(config).unwrap();
        let mut payload = Vec::with_capacity(1500);
        let mut bytes = 0usize;
        let encode = per_frame(frames, |i| {
            payload.clear();
            let frame = &pcm8[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
            encoder.encode(black_box(frame), &mut payload).unwrap();
            bytes += payload.len();
        });
        println!(
            "transcoding: encode of 8 kHz frames, libopus at 8 kHz, {} kbit/s, complexity {complexity:>2} \
             (endpoint encoder): {encode:>7.0} ns per 20 ms frame; + decode {:>7.0} ns",
            config.bitrate / 1000,
            encode + decode
        );
    }
    let (mut enc, mut dec) = (Codec::Pcma.encoder(), Codec::Pcma.decoder());
    let mut payload = Vec::with_capacity(FRAME_SAMPLES);
    let g711 = per_frame(frames, |i| {
        payload.clear();
        out.clear();
        let frame = &pcm8[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
        enc.encode(black_box(frame), &mut payload).unwrap();
        dec.decode(black_box(&payload), &mut out);
        black_box(&out);
    });
    println!("transcoding: A-law encode+decode: {g711:>7.0} ns per 20 ms frame");
}

fn main() {
    let seconds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let frames = seconds * 50;
    println!("libopus {}; {frames} frames per line", opus::version());
    for (complexity, bitrate) in [(10, 32_000), (5, 32_000), (10, 16_000)] {
        libopus_at_48k(frames, complexity, bitrate);
    }
    for rate in [OpusRate::Hz8000, OpusRate::Hz16000, OpusRate::Hz48000] {
        endpoint_path(frames, rate);
    }
    transcode_parts(frames);
}
