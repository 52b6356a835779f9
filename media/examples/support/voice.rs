//! The test signal the codecs work on.

/// Something like voice for the encoder to work on: a few harmonics of a
/// gliding pitch, a formant-ish tremolo and some noise, at about -12 dBFS.
/// The same samples on every run.
pub fn voice(rate: u32, samples: usize) -> Vec<i16> {
    let mut seed = 0x2545_F491u32;
    (0..samples)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let pitch = 140.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            let phase = 2.0 * std::f64::consts::PI * pitch * t;
            let voiced: f64 = (1..=8)
                .map(|h| (phase * f64::from(h)).sin() / f64::from(h))
                .sum();
            let envelope = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = f64::from(seed as i32) / f64::from(i32::MAX);
            (6000.0 * envelope * voiced + 600.0 * noise) as i16
        })
        .collect()
}
