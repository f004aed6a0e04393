//! Test-only signal helpers shared by the audio unit tests: sine generation, RMS, frequency
//! estimation by interpolated zero crossings, and single-bin power by the Goertzel algorithm.

/// `len` samples of a sine of `freq_hz` at `rate_hz` with peak `amplitude`, starting at phase 0.
pub fn sine(freq_hz: f64, rate_hz: u32, len: usize, amplitude: f64) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let phase = 2.0 * std::f64::consts::PI * freq_hz * n as f64 / rate_hz as f64;
            (amplitude * phase.sin()).round() as i16
        })
        .collect()
}

/// Root mean square of `samples`.
pub fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// Dominant frequency from the spacing of the first and last upward zero crossings (linearly
/// interpolated between samples).
pub fn zero_crossing_hz(samples: &[i16], rate_hz: u32) -> f64 {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0usize;
    for (n, pair) in samples.windows(2).enumerate() {
        let (a, b) = (pair[0] as f64, pair[1] as f64);
        if a < 0.0 && b >= 0.0 {
            let at = n as f64 + (-a) / (b - a);
            if first.is_none() {
                first = Some(at);
            } else {
                count += 1;
            }
            last = at;
        }
    }
    match first {
        Some(first) if count > 0 => count as f64 * rate_hz as f64 / (last - first),
        _ => 0.0,
    }
}

/// Power of `samples` at `freq_hz` (Goertzel), normalised so a full-length sine of peak `A`
/// gives roughly `A² / 4`.
pub fn goertzel_power(samples: &[i16], freq_hz: f64, rate_hz: u32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq_hz / rate_hz as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let n = samples.len().max(1) as f64;
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)
}

/// The samples of a 16-bit mono WAV from `audio-fixtures/` (panics on anything else).
pub fn fixture_l16(name: &str) -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{name}: not a WAV file"
    );
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        match &bytes[pos..pos + 4] {
            b"fmt " => assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "{name}: not 16-bit"),
            b"data" => return body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(),
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    panic!("{name}: no data chunk")
}

/// Deterministic values in [-1, 1) (a linear congruential sequence from `seed`).
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}
