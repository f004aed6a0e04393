//! Whisper's log-mel front end: 16 kHz mono → 80 log-mel bands every 10 ms, normalised the way
//! every Whisper-family model expects (also Smart-Turn's input features).
//!
//! Recipe (OpenAI `whisper/audio.py`, HF `WhisperFeatureExtractor`): periodic Hann window of
//! [`LogMel::N_FFT`] = 400 samples, hop [`LogMel::HOP`] = 160, centred frames (reflect padding at
//! the start), power spectrum (201 bins), 80 Slaney-scale triangular filters with Slaney area
//! normalisation over 0–8 kHz (computed here, no table shipped), `log10(max(x, 1e-10))`, clamped
//! to 8 below the maximum, then `(x + 4) / 4`. Samples past the end of the input count as zeros,
//! as in Whisper (which pads with 30 s of zeros before its STFT); frame `t` is centred on sample
//! `t * HOP`, so `n` samples give `n / HOP` frames.
//!
//! Cost is O(frames · n_fft log n_fft) with `realfft` (a real 400-point FFT per frame) plus the
//! sparse filter bank (each band only spans its own bins).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// One triangular mel band: its first FFT bin and the weights from there on.
#[derive(Debug, Clone)]
struct Band {
    first_bin: usize,
    weights: Vec<f32>,
}

/// Log-mel feature extractor. Immutable after `new`: share one across threads.
#[derive(Clone)]
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    bands: Vec<Band>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel").field("n_mels", &self.bands.len()).finish()
    }
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    pub const SAMPLE_RATE_HZ: u32 = 16_000;
    /// FFT length and window: 25 ms.
    pub const N_FFT: usize = 400;
    /// Frame step: 10 ms.
    pub const HOP: usize = 160;
    /// Mel bands.
    pub const N_MELS: usize = 80;
    /// Spectrum bins of one frame.
    pub const N_BINS: usize = Self::N_FFT / 2 + 1;

    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(Self::N_FFT);
        // Periodic Hann (torch.hann_window default).
        let window = (0..Self::N_FFT)
            .map(|i| {
                let x = 2.0 * std::f64::consts::PI * i as f64 / Self::N_FFT as f64;
                (0.5 - 0.5 * x.cos()) as f32
            })
            .collect();
        let bands = slaney_filters(Self::SAMPLE_RATE_HZ as f64, Self::N_FFT, Self::N_MELS);
        Self { fft, window, bands }
    }

    /// Frames for `samples` input samples.
    pub fn frames_for(samples: usize) -> usize {
        samples / Self::HOP
    }

    /// Dense filter bank, `[N_MELS][N_BINS]` row-major (for checks and other front ends).
    pub fn filters(&self) -> Vec<f32> {
        let mut out = vec![0.0; Self::N_MELS * Self::N_BINS];
        for (m, band) in self.bands.iter().enumerate() {
            let row = &mut out[m * Self::N_BINS..(m + 1) * Self::N_BINS];
            row[band.first_bin..band.first_bin + band.weights.len()].copy_from_slice(&band.weights);
        }
        out
    }

    /// Normalised log-mel features of `pcm` (treated as zero past its end) for `n_frames` frames,
    /// written to `out` as `[N_MELS][n_frames]` (mel-major, Whisper's `[80, T]` layout).
    pub fn compute_into(&self, pcm: &[f32], n_frames: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(Self::N_MELS * n_frames, 0.0);
        if n_frames == 0 {
            return;
        }
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; Self::N_BINS];
        let half = (Self::N_FFT / 2) as isize;
        let sample = |i: isize| -> f32 {
            // Reflect at the start (centre padding), zeros past the end.
            let i = if i < 0 { -i } else { i } as usize;
            pcm.get(i).copied().unwrap_or(0.0)
        };
        let mut max = f32::NEG_INFINITY;
        for t in 0..n_frames {
            let start = (t * Self::HOP) as isize - half;
            for (k, (slot, w)) in frame.iter_mut().zip(&self.window).enumerate() {
                *slot = sample(start + k as isize) * w;
            }
            if self.fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch).is_err() {
                // Only fails on wrong buffer lengths, which make_*_vec rules out.
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = norm_sqr(*c);
            }
            for (m, band) in self.bands.iter().enumerate() {
                let bins = &power[band.first_bin..band.first_bin + band.weights.len()];
                let e: f32 = bins.iter().zip(&band.weights).map(|(p, w)| p * w).sum();
                let v = e.max(1e-10).log10();
                max = max.max(v);
                out[m * n_frames + t] = v;
            }
        }
        let floor = max - 8.0;
        for v in out.iter_mut() {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
    }

    /// Like [`LogMel::compute_into`], returning a new buffer.
    pub fn compute(&self, pcm: &[f32], n_frames: usize) -> Vec<f32> {
        let mut out = Vec::new();
        self.compute_into(pcm, n_frames, &mut out);
        out
    }
}

fn norm_sqr(c: Complex<f32>) -> f32 {
    c.re * c.re + c.im * c.im
}

/// Slaney mel scale (librosa `htk=False`): linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        MIN_LOG_HZ / F_SP + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
    } else {
        mel * F_SP
    }
}

/// librosa `filters.mel(sr, n_fft, n_mels, fmin=0, fmax=sr/2, htk=False, norm="slaney")`, kept
/// sparse: each band's non-zero run of bins.
fn slaney_filters(sample_rate_hz: f64, n_fft: usize, n_mels: usize) -> Vec<Band> {
    let n_bins = n_fft / 2 + 1;
    let fft_hz: Vec<f64> = (0..n_bins).map(|k| k as f64 * sample_rate_hz / n_fft as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate_hz / 2.0));
    let edges: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    (0..n_mels)
        .map(|m| {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let enorm = 2.0 / (right - left);
            let dense: Vec<f32> = fft_hz
                .iter()
                .map(|&f| {
                    let up = (f - left) / (centre - left);
                    let down = (right - f) / (right - centre);
                    (up.min(down).max(0.0) * enorm) as f32
                })
                .collect();
            let first = dense.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = dense.iter().rposition(|&w| w > 0.0).map_or(first, |l| l + 1);
            Band { first_bin: first, weights: dense[first..last.max(first)].to_vec() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq_hz: f32, seconds: f32, amplitude: f32) -> Vec<f32> {
        let n = (seconds * LogMel::SAMPLE_RATE_HZ as f32) as usize;
        (0..n)
            .map(|i| amplitude * (2.0 * std::f32::consts::PI * freq_hz * i as f32 / 16_000.0).sin())
            .collect()
    }

    fn band_centre_hz(m: usize) -> f64 {
        let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(8000.0));
        mel_to_hz(lo + (hi - lo) * (m + 1) as f64 / 81.0)
    }

    #[test]
    fn mel_scale_round_trips_and_is_slaney() {
        for hz in [0.0, 200.0, 999.0, 1000.0, 2500.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6, "{hz}");
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn filter_bank_shape_and_slaney_area() {
        let mel = LogMel::new();
        let f = mel.filters();
        assert_eq!(f.len(), 80 * 201);
        for m in 0..80 {
            let row = &f[m * 201..(m + 1) * 201];
            assert!(row.iter().any(|&w| w > 0.0), "band {m} empty");
            assert!(row.iter().all(|&w| w >= 0.0));
        }
        // librosa's slaney filters for 16 kHz / 400: first band peaks at bin 1 with ~0.0247,
        // and Slaney normalisation makes (sum of weights · bin width) ≈ 1 for every band.
        assert!((f[1] - 0.024_66).abs() < 5e-4, "first weight {}", f[1]);
        for m in [10, 40, 79] {
            let area: f32 = f[m * 201..(m + 1) * 201].iter().sum::<f32>() * 40.0;
            assert!((area - 1.0).abs() < 0.25, "band {m} area {area}");
        }
    }

    #[test]
    fn frame_count_is_samples_over_hop() {
        let mel = LogMel::new();
        for secs in [0.5f32, 1.0, 2.37] {
            let pcm = sine(440.0, secs, 0.3);
            let frames = LogMel::frames_for(pcm.len());
            assert_eq!(frames, pcm.len() / 160);
            assert_eq!(mel.compute(&pcm, frames).len(), 80 * frames);
        }
    }

    #[test]
    fn sine_energy_lands_in_the_right_band() {
        let mel = LogMel::new();
        for freq in [300.0f32, 1000.0, 3000.0] {
            let pcm = sine(freq, 1.0, 0.5);
            let frames = LogMel::frames_for(pcm.len());
            let out = mel.compute(&pcm, frames);
            let t = frames / 2;
            let loudest =
                (0..80).max_by(|&a, &b| out[a * frames + t].total_cmp(&out[b * frames + t])).unwrap();
            let nearest = (0..80)
                .min_by(|&a, &b| {
                    (band_centre_hz(a) - freq as f64)
                        .abs()
                        .total_cmp(&(band_centre_hz(b) - freq as f64).abs())
                })
                .unwrap();
            assert!(loudest.abs_diff(nearest) <= 1, "{freq} Hz: loudest band {loudest}, expected ~{nearest}");
        }
    }

    #[test]
    fn normalised_range_and_silence_floor() {
        let mel = LogMel::new();
        let mut pcm = sine(1000.0, 1.0, 0.5);
        pcm.extend(std::iter::repeat_n(0.0, 16_000));
        let frames = LogMel::frames_for(pcm.len());
        let out = mel.compute(&pcm, frames);
        let max = out.iter().copied().fold(f32::MIN, f32::max);
        let min = out.iter().copied().fold(f32::MAX, f32::min);
        // (max + 4) / 4 at the top, exactly 2 (8 decades) below it at the floor.
        assert!((max - min - 2.0).abs() < 1e-4, "max {max} min {min}");
        // The silent second sits on the floor.
        assert_eq!(out[40 * frames + frames - 10], min);
    }

    #[test]
    fn input_shorter_than_frames_is_zero_padded() {
        let mel = LogMel::new();
        let pcm = sine(1000.0, 0.5, 0.5);
        let padded: Vec<f32> = pcm.iter().copied().chain(std::iter::repeat_n(0.0, 8000)).collect();
        assert_eq!(mel.compute(&pcm, 100), mel.compute(&padded, 100));
    }
}
