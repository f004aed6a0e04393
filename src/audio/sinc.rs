//! Whole-buffer resampling between any two rates (windowed-sinc interpolation), for audio that
//! arrives as a block at an odd rate — text-to-speech engines at 22 050 Hz. The streaming
//! per-frame path between wire rates is [`super::resample`].

/// Taps on each side of the interpolation point.
const HALF_TAPS: isize = 16;

/// Resamples `input` at `in_rate_hz` to `out_rate_hz`. Band-limited to 0.95 × the lower Nyquist
/// frequency with a Hann-windowed sinc; output length is `len × out / in` (rounded down).
pub fn resample_block(input: &[i16], in_rate_hz: u32, out_rate_hz: u32) -> Vec<i16> {
    if in_rate_hz == out_rate_hz || input.is_empty() {
        return input.to_vec();
    }
    let ratio = f64::from(in_rate_hz) / f64::from(out_rate_hz);
    // Cut-off relative to the input rate.
    let cutoff = 0.95 * f64::from(in_rate_hz.min(out_rate_hz)) / f64::from(in_rate_hz);
    let out_len = (input.len() as u64 * u64::from(out_rate_hz) / u64::from(in_rate_hz)) as usize;
    let span = (HALF_TAPS as f64 / cutoff).ceil() as isize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let t = n as f64 * ratio;
        let centre = t.floor() as isize;
        let mut acc = 0.0f64;
        for k in (centre - span + 1)..=(centre + span) {
            if k < 0 || k as usize >= input.len() {
                continue;
            }
            let x = t - k as f64;
            let w = 0.5 + 0.5 * (std::f64::consts::PI * x / (span as f64 + 1.0)).cos();
            let arg = std::f64::consts::PI * cutoff * x;
            let sinc = if arg.abs() < 1e-9 { 1.0 } else { arg.sin() / arg };
            acc += f64::from(input[k as usize]) * cutoff * sinc * w;
        }
        out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate_hz: u32, freq_hz: f64, secs: f64, amp: f64) -> Vec<i16> {
        let n = (f64::from(rate_hz) * secs) as usize;
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq_hz * i as f64 / f64::from(rate_hz)).sin()) as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Zero crossings per second (≈ 2 × frequency).
    fn crossings_per_s(x: &[i16], rate_hz: u32) -> f64 {
        let c = x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        c as f64 * f64::from(rate_hz) / x.len() as f64
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_level_across_rates() {
        for (from, to) in [(22_050, 16_000), (22_050, 8_000), (16_000, 22_050), (44_100, 16_000)] {
            let input = sine(from, 440.0, 1.0, 10_000.0);
            let out = resample_block(&input, from, to);
            assert_eq!(out.len(), (input.len() as u64 * u64::from(to) / u64::from(from)) as usize);
            let mid = &out[out.len() / 4..out.len() * 3 / 4];
            let f = crossings_per_s(mid, to) / 2.0;
            assert!((f - 440.0).abs() < 3.0, "{from}->{to}: {f} Hz");
            let level = rms(mid) / (10_000.0 / 2f64.sqrt());
            assert!((level - 1.0).abs() < 0.02, "{from}->{to}: level ×{level}");
        }
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed() {
        // 10 kHz at 22 050 Hz cannot exist at 16 kHz: it must not alias to 6 kHz.
        let input = sine(22_050, 10_000.0, 1.0, 10_000.0);
        let out = resample_block(&input, 22_050, 16_000);
        let mid = &out[out.len() / 4..out.len() * 3 / 4];
        assert!(rms(mid) < 300.0, "residue rms {}", rms(mid));
    }
}
