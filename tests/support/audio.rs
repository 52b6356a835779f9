//! Audio for the media tests: RTP in pcap files for SIPp's
//! `play_pcap_audio`, an RTP sink standing in for a phone's media port, and
//! tone detection.

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `samples` (8 kHz) as 20 ms PCMA RTP packets (payload type 8) in
/// a pcap file SIPp can replay: Ethernet/IPv4/UDP, 20 ms apart.
pub fn write_pcma_pcap(path: &Path, samples: &[i16]) {
    let mut out = Vec::new();
    // Global header: magic, v2.4, GMT, accuracy, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let ssrc = 0x5eed_0001u32;
    for (i, frame) in samples.chunks(160).enumerate() {
        let mut rtp = vec![0x80, 8];
        rtp.extend_from_slice(&(1000u16.wrapping_add(i as u16)).to_be_bytes());
        rtp.extend_from_slice(&((i as u32) * 160).to_be_bytes());
        rtp.extend_from_slice(&ssrc.to_be_bytes());
        rtp.extend(frame.iter().map(|&s| media::g711::alaw_encode(s)));
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut pkt = Vec::with_capacity(14 + ip_len);
        pkt.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00]);
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let sum = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum::<u32>();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        pkt.extend_from_slice(&ip);
        pkt.extend_from_slice(&6000u16.to_be_bytes());
        pkt.extend_from_slice(&6002u16.to_be_bytes());
        pkt.extend_from_slice(&(udp_len as u16).to_be_bytes());
        pkt.extend_from_slice(&[0, 0]);
        pkt.extend_from_slice(&rtp);
        let t = i as u64 * 20_000;
        out.extend_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        out.extend_from_slice(&pkt);
    }
    std::fs::write(path, out).unwrap();
}

/// Relative power of `freq` in `samples` (8 kHz): Goertzel power over the
/// block's energy, near 0.5·N for a pure tone of that frequency and near
/// 0 for other frequencies and silence.
pub fn tone_ratio(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0;
    for &x in samples {
        let x = f64::from(x);
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy == 0.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / energy / samples.len() as f64
}

/// How many 20 ms blocks of `samples` are dominated by `freq`.
pub fn tone_blocks(samples: &[i16], freq: f64) -> usize {
    samples
        .chunks(160)
        .filter(|b| b.len() == 160 && tone_ratio(b, freq) > 0.3)
        .count()
}

/// The payloads (PT 8, PCMA) of the RTP packets arriving on `socket` until
/// `quiet` passes with none or `max` is reached; answers nothing.
pub fn collect_rtp(socket: &UdpSocket, quiet: Duration, max: Duration) -> Vec<u8> {
    socket.set_read_timeout(Some(quiet)).unwrap();
    let started = Instant::now();
    let mut payload = Vec::new();
    let mut buf = [0u8; 2048];
    while started.elapsed() < max {
        match socket.recv(&mut buf) {
            Ok(n) if n > 12 && buf[0] >> 6 == 2 && buf[1] & 0x7f == 8 => {
                payload.extend_from_slice(&buf[12..n]);
            }
            Ok(_) => {}
            Err(_) if payload.is_empty() => {}
            Err(_) => break,
        }
    }
    payload
}

/// Where `needle` starts in `haystack`, if it is there whole.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
