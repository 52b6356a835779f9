//! G.711 (ITU-T, 1972): µ-law (PCMU, RTP payload type 0) and A-law
//! (PCMA, payload type 8) companding of 16-bit linear PCM at 8 kHz.
//!
//! The encoders are the segment-search algorithms of the reference code
//! that has shipped with every telephony stack since Sun's `g711.c`; the
//! decoders are 256-entry tables built from the same formulas at compile
//! time. Both are bit-exact with the ITU-T G.191 software tools.

/// µ-law for digital silence (linear 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law for linear 0 (A-law has no exact zero: it decodes to +8).
pub const ALAW_SILENCE: u8 = 0xD5;

/// µ-law's bias: adding it makes every segment's end a power of two.
const BIAS: i32 = 0x84;
/// The largest magnitude µ-law codes, 14-bit (before the bias is added).
const ULAW_CLIP: i32 = 8159;

/// Upper ends of the eight segments, as magnitudes after scaling.
const ULAW_SEGMENT_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const ALAW_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn segment(magnitude: i32, ends: &[i32; 8]) -> usize {
    ends.iter()
        .position(|&end| magnitude <= end)
        .unwrap_or(ends.len())
}

/// µ-law code of a linear sample.
pub fn ulaw_encode(sample: i16) -> u8 {
    // 14-bit magnitude; the sign goes into the complemented top bit.
    let scaled = i32::from(sample) >> 2;
    let (magnitude, mask): (i32, i32) = if scaled < 0 {
        (-scaled, 0x7F)
    } else {
        (scaled, 0xFF)
    };
    let magnitude = magnitude.min(ULAW_CLIP) + (BIAS >> 2);
    let seg = segment(magnitude, &ULAW_SEGMENT_END);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let code = ((seg as i32) << 4) | ((magnitude >> (seg + 1)) & 0x0F);
    (code ^ mask) as u8
}

/// A-law code of a linear sample.
pub fn alaw_encode(sample: i16) -> u8 {
    let scaled = i32::from(sample) >> 3;
    // A-law is symmetric around -1/2, hence the one's complement.
    let (magnitude, mask): (i32, i32) = if scaled >= 0 {
        (scaled, 0xD5)
    } else {
        (-scaled - 1, 0x55)
    };
    let seg = segment(magnitude, &ALAW_SEGMENT_END);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let code = ((seg as i32) << 4) | ((magnitude >> shift) & 0x0F);
    (code ^ mask) as u8
}

/// Linear sample of a µ-law code.
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// Linear sample of an A-law code.
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

const fn ulaw_expand(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0F) as i32) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

const fn alaw_expand(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const ULAW_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_expand(i as u8);
        i += 1;
    }
    table
};

const ALAW_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_expand(i as u8);
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(-1), 0x7E);
        assert_eq!(ulaw_encode(1000), 0xCE);
        assert_eq!(ulaw_decode(0xCE), 988);
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_encode(1000), 0xFA);
        assert_eq!(alaw_decode(0xFA), 1008);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
            // µ-law has two zeros; the negative one encodes as the positive.
            if code != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(code)), code, "µ-law {code:#04x}");
            }
        }
    }

    #[test]
    fn round_trips_stay_within_the_quantisation_step() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let s = i32::from(sample);
            let u = i32::from(ulaw_decode(ulaw_encode(sample)));
            let a = i32::from(alaw_decode(alaw_encode(sample)));
            // Steps double per segment: half a step is 1/32 of the value or
            // the smallest step near zero, more at the clipped top.
            let allowed = (s.abs() / 16).max(16) + if s.abs() > 32000 { 700 } else { 0 };
            assert!((u - s).abs() <= allowed, "µ-law {sample} -> {u}");
            assert!((a - s).abs() <= allowed, "A-law {sample} -> {a}");
            // Companding keeps the sign and the order of magnitudes.
            assert!(u.signum() * s.signum() >= 0 || s.abs() < 8);
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for sample in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(sample));
            let a = alaw_decode(alaw_encode(sample));
            assert!(u >= last_u && a >= last_a, "at {sample}");
            last_u = u;
            last_a = a;
        }
    }
}
