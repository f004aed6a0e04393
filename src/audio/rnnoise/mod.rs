//! Our own RNNoise: the algorithm of Valin's RNNoise (as `nnnoiseless` 0.5 ports it), with the
//! same model, on 10 ms frames of 48 kHz audio, with AVX2+FMA kernels for its products.
//!
//! # One frame ([`Rnnoise::process_frame`])
//! 1. High-pass the 480 new samples (biquad, f64 internally) into the input history.
//! 2. **Analysis.** Window the last 20 ms (Vorbis power-complementary window), real FFT (960),
//!    band energies `ex` over 22 triangular bands (Opus's band layout, 200 Hz to 20 kHz).
//! 3. **Pitch** ([`pitch`]): the period `T`; the window `T` samples earlier, transformed the
//!    same way, gives `P`, its band energies `ep` and the normalised band correlation
//!    `exp = Σ X·P / √(0.001 + ex·ep)`.
//! 4. **Features** (42): the DCT of the log band energies (cepstrum) and its first and second
//!    differences over three frames, the DCT of `exp`, the period, and the spectral
//!    variability over the last 8 cepstra. A frame whose energy is below 0.04 is silent: its
//!    spectrum is passed through untouched and the network is not run.
//! 5. **Network** ([`model`]): three GRUs give the 22 band gains and the VAD probability.
//! 6. **Pitch filter**: per band, add `r·P` to `X` (more of the pitch-lagged signal where the
//!    band is periodic but the gain would cut it), then renormalise each band to its energy.
//! 7. Apply the gains (floored at 0.6 × the previous frame's, interpolated between band
//!    centres), inverse FFT, window, overlap-add with the previous frame's second half.
//!
//! Output lags input by one frame (480 samples), as in RNNoise.
//!
//! # Cost
//! The FFTs are `realfft`'s (the same planner `nnnoiseless` uses through `easyfft`, so the same
//! algorithm and the same results), planned once per process; each stream owns its scratch. The band
//! sums use precomputed interpolation weights instead of a division per bin. The GRUs, the
//! pitch correlations and the LPC autocorrelation go through [`simd`]. Everything a frame needs
//! is a fixed-size field or the process-wide model: [`Rnnoise::process_frame`] never allocates.
//!
//! Results match `nnnoiseless` closely but not bit for bit (FMA and a different summation order
//! in the products; a pitch search that sits on a tie can pick the neighbouring period): see
//! `tests/rnnoise.rs` for the measured agreement.

mod model;
mod pitch;
mod simd;

use std::sync::{Arc, OnceLock};

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

pub use model::ModelError;
use model::{Model, RnnState};
use pitch::PitchSearch;
use simd::Kernel;

/// Samples per frame (10 ms at 48 kHz).
pub const FRAME_SAMPLES: usize = 480;
/// The rate RNNoise runs at.
pub const SAMPLE_RATE_HZ: u32 = 48_000;
/// Analysis window: two frames.
const WINDOW: usize = 2 * FRAME_SAMPLES;
/// FFT bins of one window.
const FREQ: usize = FRAME_SAMPLES + 1;
/// Bands of the gains and energies.
const NB_BANDS: usize = 22;
/// Network inputs.
const NB_FEATURES: usize = NB_BANDS + 3 * NB_DELTA_CEPS + 2;
/// Cepstral coefficients with differences in the features.
const NB_DELTA_CEPS: usize = 6;
/// Cepstra kept for the spectral variability.
const CEPS_MEM: usize = 8;
/// Band edges in 5 ms-frame bins (× 4 for our 10 ms bins): 0, 200, 400 … 20 000 Hz.
const BAND_EDGES: [usize; NB_BANDS] =
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 34, 40, 48, 60, 78, 100];
/// Bins covered by the bands (up to 20 kHz); the gains leave the rest at 0.
const BAND_BINS: usize = BAND_EDGES[NB_BANDS - 1] * 4;

/// Tables shared by every stream: built once per process.
struct Tables {
    /// Analysis and synthesis window, `[WINDOW]`.
    window: [f32; WINDOW],
    /// `1 / Σ window²`: the forward transform's normalisation.
    norm: f32,
    /// `dct[i][j]`: cos((i + ½)·j·π / 22), column 0 scaled by √½.
    dct: [[f32; NB_BANDS]; NB_BANDS],
    /// [`bin_frac_lo`](Self::bin_frac_lo) and [`bin_frac`](Self::bin_frac) repeated for the real
    /// and imaginary part of each bin, for [`band_corr`](Self::band_corr) on the flat spectrum.
    flat_lo: [f32; 2 * BAND_BINS],
    flat_hi: [f32; 2 * BAND_BINS],
    /// Each bin's weight in its upper band (`j / band width`); the lower band gets `1 − weight`.
    bin_frac: [f32; BAND_BINS],
    /// `1 − bin_frac`, as RNNoise rounds it.
    bin_frac_lo: [f32; BAND_BINS],
    /// The real FFT of a window and its inverse, planned once (plans are immutable and shared;
    /// each stream has its own scratch).
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
}

impl Tables {
    fn shared() -> &'static Tables {
        static TABLES: OnceLock<Tables> = OnceLock::new();
        TABLES.get_or_init(Tables::build)
    }

    fn build() -> Tables {
        let pi = std::f64::consts::PI;
        let mut window = [0f32; WINDOW];
        for i in 0..FRAME_SAMPLES {
            let s = (0.5 * pi * (i as f64 + 0.5) / FRAME_SAMPLES as f64).sin();
            let w = (0.5 * pi * s * s).sin() as f32;
            (window[i], window[WINDOW - 1 - i]) = (w, w);
        }
        let norm = 1.0 / window.iter().fold(0f32, |acc, w| acc + w * w);
        let mut dct = [[0f32; NB_BANDS]; NB_BANDS];
        for (i, row) in dct.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = ((i as f64 + 0.5) * j as f64 * pi / NB_BANDS as f64).cos() as f32;
                if j == 0 {
                    *v *= 0.5f32.sqrt();
                }
            }
        }
        let (mut bin_frac, mut bin_frac_lo) = ([0f32; BAND_BINS], [0f32; BAND_BINS]);
        for band in 0..NB_BANDS - 1 {
            let (start, width) = (BAND_EDGES[band] * 4, (BAND_EDGES[band + 1] - BAND_EDGES[band]) * 4);
            for j in 0..width {
                let frac = j as f32 / width as f32;
                (bin_frac[start + j], bin_frac_lo[start + j]) = (frac, 1.0 - frac);
            }
        }
        let (mut flat_lo, mut flat_hi) = ([0f32; 2 * BAND_BINS], [0f32; 2 * BAND_BINS]);
        for i in 0..2 * BAND_BINS {
            (flat_lo[i], flat_hi[i]) = (bin_frac_lo[i / 2], bin_frac[i / 2]);
        }
        let mut planner = RealFftPlanner::<f32>::new();
        let (fft, ifft) = (planner.plan_fft_forward(WINDOW), planner.plan_fft_inverse(WINDOW));
        Tables { window, norm, dct, bin_frac, bin_frac_lo, flat_lo, flat_hi, fft, ifft }
    }

    /// Triangular band sums of `Re(a·conj(b))`: each bin split between its two bands; the two
    /// edge bands doubled (they have one neighbour).
    ///
    /// On the spectra as flat `re, im, re, im, …` arrays every band is a whole number of
    /// 8-float groups, so each band's two weighted sums are one [`simd::weighted_sums`]. The
    /// order of the additions differs from RNNoise's in the last bits; nothing discrete depends
    /// on them.
    fn band_corr(&self, kernel: Kernel, a: &[Complex32; FREQ], b: &[Complex32; FREQ]) -> [f32; NB_BANDS] {
        let (a, b) = (flat(a), flat(b));
        let mut out = [0f32; NB_BANDS];
        for band in 0..NB_BANDS - 1 {
            let r = BAND_EDGES[band] * 8..BAND_EDGES[band + 1] * 8;
            let (lo, hi) = simd::weighted_sums(
                kernel,
                &a[r.clone()],
                &b[r.clone()],
                &self.flat_lo[r.clone()],
                &self.flat_hi[r],
            );
            out[band] += lo;
            out[band + 1] += hi;
        }
        out[0] *= 2.0;
        out[NB_BANDS - 1] *= 2.0;
        out
    }

    /// Per-bin values interpolated linearly between band values; 0 above [`BAND_BINS`].
    fn interp_bands(&self, band: &[f32; NB_BANDS], out: &mut [f32; FREQ]) {
        // Band by band, so the two band values are constants of the inner loop (which then
        // runs whole vectors: every band is a multiple of 4 bins).
        for (i, edges) in BAND_EDGES.windows(2).enumerate() {
            let bins = edges[0] * 4..edges[1] * 4;
            let (lo, hi) = (band[i], band[i + 1]);
            for ((o, &wl), &wh) in
                out[bins.clone()].iter_mut().zip(&self.bin_frac_lo[bins.clone()]).zip(&self.bin_frac[bins])
            {
                *o = wl * lo + wh * hi;
            }
        }
        out[BAND_BINS..].fill(0.0);
    }

    /// `out = dct(x) · √(2/22)`.
    fn dct(&self, x: &[f32; NB_BANDS], out: &mut [f32]) {
        let scale = (2.0 / NB_BANDS as f64).sqrt();
        for (i, o) in out[..NB_BANDS].iter_mut().enumerate() {
            let sum = x.iter().zip(&self.dct).fold(0f32, |acc, (v, row)| acc + v * row[i]);
            *o = (f64::from(sum) * scale) as f32;
        }
    }
}

/// The first [`BAND_BINS`] bins of a spectrum as `re, im, re, im, …`.
fn flat(spectrum: &[Complex32; FREQ]) -> &[f32] {
    // SAFETY: `Complex<f32>` is `#[repr(C)] { re: f32, im: f32 }`: FREQ of them are 2·FREQ f32
    // in that order, with the same alignment; the borrow keeps them alive and unaliased.
    let floats = unsafe { std::slice::from_raw_parts(spectrum.as_ptr().cast::<f32>(), 2 * FREQ) };
    &floats[..2 * BAND_BINS]
}

/// One stream's RNNoise state: ≈ 30 KB, every buffer a frame needs included.
pub struct Rnnoise {
    model: &'static Model,
    tables: &'static Tables,
    /// Which product kernels run (AVX2+FMA or portable), from the CPU.
    kernel: Kernel,
    /// Scratch for both transforms.
    fft_scratch: Box<[Complex32]>,
    /// High-passed input, the last [`pitch::BUF`] samples (the pitch search's history; the
    /// analysis window is its tail).
    history: [f32; pitch::BUF],
    /// High-pass filter state.
    hp_mem: [f32; 2],
    /// Windowed time-domain scratch of the transforms.
    time: [f32; WINDOW],
    /// Spectrum of the current window, then of the output.
    x: [Complex32; FREQ],
    /// Spectrum of the window one pitch period earlier.
    p: [Complex32; FREQ],
    /// Band energies of `x` and `p` and their normalised correlation.
    ex: [f32; NB_BANDS],
    ep: [f32; NB_BANDS],
    exp: [f32; NB_BANDS],
    features: [f32; NB_FEATURES],
    /// The last [`CEPS_MEM`] cepstra, a ring; `ceps_at` is where the next one goes.
    ceps: [[f32; NB_BANDS]; CEPS_MEM],
    ceps_at: usize,
    /// Second half of the previous output window, for the overlap-add.
    synthesis_mem: [f32; FRAME_SAMPLES],
    /// Gains of the previous non-silent frame (the new ones decay at most to 0.6×).
    last_gains: [f32; NB_BANDS],
    pitch: PitchSearch,
    rnn: RnnState,
}

impl std::fmt::Debug for Rnnoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rnnoise").field("kernel", &self.kernel).finish_non_exhaustive()
    }
}

impl Rnnoise {
    /// Samples per frame, in and out.
    pub const FRAME_SAMPLES: usize = FRAME_SAMPLES;

    /// A fresh stream (boxed: the state is ≈ 30 KB, plus the FFT scratch). The first call in the
    /// process also parses the model, builds the tables and plans the FFTs, all shared.
    pub fn new() -> Box<Self> {
        Self::with_kernel(Kernel::detect())
    }

    /// A fresh stream on the portable kernels, whatever the CPU (for tests).
    #[doc(hidden)]
    pub fn new_portable() -> Box<Self> {
        Self::with_kernel(Kernel::Portable)
    }

    fn with_kernel(kernel: Kernel) -> Box<Self> {
        let tables = Tables::shared();
        let scratch = tables.fft.get_scratch_len().max(tables.ifft.get_scratch_len());
        Box::new(Self {
            model: Model::shared(),
            tables,
            kernel,
            fft_scratch: vec![Complex32::default(); scratch].into_boxed_slice(),
            history: [0.0; pitch::BUF],
            hp_mem: [0.0; 2],
            time: [0.0; WINDOW],
            x: [Complex32::default(); FREQ],
            p: [Complex32::default(); FREQ],
            ex: [0.0; NB_BANDS],
            ep: [0.0; NB_BANDS],
            exp: [0.0; NB_BANDS],
            features: [0.0; NB_FEATURES],
            ceps: [[0.0; NB_BANDS]; CEPS_MEM],
            ceps_at: 0,
            synthesis_mem: [0.0; FRAME_SAMPLES],
            last_gains: [0.0; NB_BANDS],
            pitch: PitchSearch::new(),
            rnn: RnnState::new(),
        })
    }

    /// Denoises one frame: `input` and `output` are [`FRAME_SAMPLES`] samples in i16 range
    /// (as f32); `output` lags `input` by one frame. Returns the VAD probability (0 for a
    /// silent frame).
    ///
    /// # Panics
    /// If `input` or `output` is not [`FRAME_SAMPLES`] long.
    pub fn process_frame(&mut self, output: &mut [f32], input: &[f32]) -> f32 {
        assert_eq!(input.len(), FRAME_SAMPLES, "RNNoise input must be one 10 ms frame");
        assert_eq!(output.len(), FRAME_SAMPLES, "RNNoise output must be one 10 ms frame");
        self.push_input(input);
        let mut vad = 0.0;
        if !self.analyse() {
            let mut gains = [0f32; NB_BANDS];
            vad = self.rnn.compute(self.model, self.kernel, &self.features, &mut gains);
            self.pitch_filter(&gains);
            for (g, last) in gains.iter_mut().zip(&mut self.last_gains) {
                *g = g.max(0.6 * *last);
                *last = *g;
            }
            let mut per_bin = [0f32; FREQ];
            self.tables.interp_bands(&gains, &mut per_bin);
            for (x, g) in self.x.iter_mut().zip(&per_bin) {
                *x *= *g;
            }
        }
        self.synthesise(output);
        vad
    }

    /// Shifts the history by a frame and appends `input`, high-passed:
    /// `y[n] = x[n] − 2x[n−1] + x[n−2] + 1.99599 y[n−1] − 0.99600 y[n−2]`.
    fn push_input(&mut self, input: &[f32]) {
        const A: [f64; 2] = [-1.99599f32 as f64, 0.99600f32 as f64];
        const B: [f64; 2] = [-2.0, 1.0];
        self.history.copy_within(FRAME_SAMPLES.., 0);
        // The state is rounded to f32 after every sample, as RNNoise keeps it (the pitch search
        // depends on these exact values); held in locals, so the loop's dependency chain does
        // not go through memory.
        let [mut m0, mut m1] = self.hp_mem;
        for (y, &x) in self.history[pitch::BUF - FRAME_SAMPLES..].iter_mut().zip(input) {
            let x = f64::from(x);
            let out = x + f64::from(m0);
            m0 = (f64::from(m1) + (B[0] * x - A[0] * out)) as f32;
            m1 = (B[1] * x - A[1] * out) as f32;
            *y = out as f32;
        }
        self.hp_mem = [m0, m1];
    }

    /// The window ending `lag` samples before the newest: windowed, transformed, normalised
    /// into `spectrum`; returns its band energies.
    fn transform(&mut self, lag: usize, into_p: bool) -> [f32; NB_BANDS] {
        let t = self.tables;
        let start = pitch::BUF - WINDOW - lag;
        for ((d, &s), &w) in self.time.iter_mut().zip(&self.history[start..start + WINDOW]).zip(&t.window) {
            *d = s * w;
        }
        let spectrum = if into_p { &mut self.p } else { &mut self.x };
        t.fft
            .process_with_scratch(&mut self.time, spectrum, &mut self.fft_scratch)
            .expect("the forward FFT was planned for these buffer lengths");
        for v in spectrum.iter_mut() {
            *v *= t.norm;
        }
        t.band_corr(self.kernel, spectrum, spectrum)
    }

    /// Steps 2–4 of the module doc. Returns `true` for a silent frame (features zeroed).
    fn analyse(&mut self) -> bool {
        const CEPS_EXP: usize = NB_BANDS + 2 * NB_DELTA_CEPS;
        const PITCH: usize = NB_BANDS + 3 * NB_DELTA_CEPS;
        let t = self.tables;
        self.ex = self.transform(0, false);
        let period = self.pitch.process(self.kernel, &self.history);
        self.ep = self.transform(period, true);
        self.exp = t.band_corr(self.kernel, &self.x, &self.p);
        for ((c, ex), ep) in self.exp.iter_mut().zip(&self.ex).zip(&self.ep) {
            *c /= (0.001 + ex * ep).sqrt();
        }
        let mut tmp = [0f32; NB_BANDS];
        t.dct(&self.exp, &mut tmp);
        self.features[CEPS_EXP..CEPS_EXP + NB_DELTA_CEPS].copy_from_slice(&tmp[..NB_DELTA_CEPS]);
        self.features[CEPS_EXP] -= 1.3;
        self.features[CEPS_EXP + 1] -= 0.9;
        self.features[PITCH] = 0.01 * (period as f32 - 300.0);

        // Log energies, each floored 7 decades below the loudest so far and 1.5 below the last.
        let mut log_e = [0f32; NB_BANDS];
        let (mut log_max, mut follow, mut energy) = (-2f32, -2f32, 0f32);
        for (l, &e) in log_e.iter_mut().zip(&self.ex) {
            *l = (1e-2 + e).log10().max(log_max - 7.0).max(follow - 1.5);
            log_max = log_max.max(*l);
            follow = (follow - 1.5).max(*l);
            energy += e;
        }
        if energy < 0.04 {
            self.features = [0.0; NB_FEATURES];
            return true;
        }

        t.dct(&log_e, &mut self.features[..NB_BANDS]);
        self.features[0] -= 12.0;
        self.features[1] -= 4.0;
        let now = self.ceps_at;
        let back1 = (now + CEPS_MEM - 1) % CEPS_MEM;
        let back2 = (now + CEPS_MEM - 2) % CEPS_MEM;
        self.ceps[now].copy_from_slice(&self.features[..NB_BANDS]);
        self.ceps_at = (now + 1) % CEPS_MEM;
        let (c0, c1, c2) = (self.ceps[now], self.ceps[back1], self.ceps[back2]);
        for i in 0..NB_DELTA_CEPS {
            self.features[i] = c0[i] + c1[i] + c2[i];
            self.features[NB_BANDS + i] = c0[i] - c2[i];
            self.features[NB_BANDS + NB_DELTA_CEPS + i] = c0[i] - 2.0 * c1[i] + c2[i];
        }

        // Spectral variability: mean distance of each stored cepstrum to its nearest other
        // (each of the 28 pairs computed once, in two 11-lane halves).
        let mut nearest = [1e15f32; CEPS_MEM];
        for i in 0..CEPS_MEM {
            for j in i + 1..CEPS_MEM {
                let mut acc = [0f32; NB_BANDS / 2];
                for (half_a, half_b) in
                    self.ceps[i].chunks_exact(NB_BANDS / 2).zip(self.ceps[j].chunks_exact(NB_BANDS / 2))
                {
                    for ((s, u), v) in acc.iter_mut().zip(half_a).zip(half_b) {
                        *s += (u - v) * (u - v);
                    }
                }
                let dist = acc.iter().sum::<f32>();
                nearest[i] = nearest[i].min(dist);
                nearest[j] = nearest[j].min(dist);
            }
        }
        let variability = nearest.iter().sum::<f32>();
        self.features[NB_FEATURES - 1] = variability / CEPS_MEM as f32 - 2.1;
        false
    }

    /// Step 6: mixes in the pitch-lagged spectrum where the band is periodic, then restores
    /// each band's energy.
    fn pitch_filter(&mut self, gains: &[f32; NB_BANDS]) {
        let t = self.tables;
        let mut r = [0f32; NB_BANDS];
        for (i, r) in r.iter_mut().enumerate() {
            let (exp, g) = (self.exp[i], gains[i]);
            let mix = if exp > g {
                1.0
            } else {
                let (exp2, g2) = (exp * exp, g * g);
                exp2 * (1.0 - g2) / (0.001 + g2 * (1.0 - exp2))
            };
            *r = mix.clamp(0.0, 1.0).sqrt() * (self.ex[i] / (1e-8 + self.ep[i])).sqrt();
        }
        let mut per_bin = [0f32; FREQ];
        t.interp_bands(&r, &mut per_bin);
        // nnnoiseless (through easyfft) mixes the real part of bin 0 and bins 1..479; bins
        // from 400 up are zeroed below anyway, so only bin 0's imaginary part (0) is special.
        self.x[0].re += self.p[0].re * per_bin[0];
        for ((x, p), &k) in self.x[1..FREQ - 2].iter_mut().zip(&self.p[1..]).zip(&per_bin[1..]) {
            *x += *p * k;
        }
        let new_e = t.band_corr(self.kernel, &self.x, &self.x);
        for (i, r) in r.iter_mut().enumerate() {
            *r = (self.ex[i] / (1e-8 + new_e[i])).sqrt();
        }
        t.interp_bands(&r, &mut per_bin);
        for (x, &k) in self.x.iter_mut().zip(&per_bin) {
            *x *= k;
        }
    }

    /// Step 7: inverse transform of `x`, window, overlap-add into `output`.
    fn synthesise(&mut self, output: &mut [f32]) {
        // The inverse real FFT requires (and ignores) zero imaginary parts at DC and Nyquist.
        self.x[0].im = 0.0;
        self.x[FREQ - 1].im = 0.0;
        self.tables
            .ifft
            .process_with_scratch(&mut self.x, &mut self.time, &mut self.fft_scratch)
            .expect("the inverse FFT was planned for these buffer lengths");
        for (v, &w) in self.time.iter_mut().zip(&self.tables.window) {
            *v = *v / 2.0 * w;
        }
        let (first, second) = self.time.split_at(FRAME_SAMPLES);
        for ((o, &a), m) in output.iter_mut().zip(first).zip(&mut self.synthesis_mem) {
            *o = a + *m;
        }
        self.synthesis_mem.copy_from_slice(second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(engine: &mut Rnnoise, input: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let mut out = vec![0f32; input.len()];
        let vads = input
            .chunks_exact(FRAME_SAMPLES)
            .zip(out.chunks_exact_mut(FRAME_SAMPLES))
            .map(|(i, o)| engine.process_frame(o, i))
            .collect();
        (out, vads)
    }

    #[test]
    fn silence_stays_silent_and_is_not_speech() {
        let (out, vads) = run(&mut Rnnoise::new(), &[0.0; FRAME_SAMPLES * 20]);
        assert!(out.iter().all(|&v| v == 0.0) && vads.iter().all(|&v| v == 0.0));
    }

    /// The engine is a pure function of its input: two streams agree exactly, and the AVX2 and
    /// portable kernels agree closely (they only differ in rounding).
    #[test]
    fn streams_are_independent_and_kernels_agree() {
        let input: Vec<f32> = (0..FRAME_SAMPLES * 60)
            .map(|n| {
                let t = n as f32 / 48_000.0;
                let noise = ((n as u32).wrapping_mul(2_654_435_761) >> 16) as f32 / 65_536.0 - 0.5;
                6000.0 * (2.0 * std::f32::consts::PI * 180.0 * t).sin() * (t * 3.0).sin().abs()
                    + 2000.0 * noise
            })
            .collect();
        let (a, va) = run(&mut Rnnoise::new(), &input);
        let (b, vb) = run(&mut Rnnoise::new(), &input);
        assert_eq!((a.clone(), va.clone()), (b, vb));
        let (c, vc) = run(&mut Rnnoise::new_portable(), &input);
        let err: f64 = a.iter().zip(&c).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let sig: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
        assert!(10.0 * (sig / err.max(1e-30)).log10() > 40.0, "kernels differ: {err} vs {sig}");
        assert!(va.iter().zip(&vc).all(|(x, y)| (x - y).abs() < 1e-2), "{va:?} vs {vc:?}");
    }

    #[test]
    fn state_size_is_as_documented() {
        let size = std::mem::size_of::<Rnnoise>();
        assert!((25_000..35_000).contains(&size), "{size} bytes");
    }

    #[test]
    #[should_panic(expected = "one 10 ms frame")]
    fn rejects_other_frame_sizes() {
        Rnnoise::new().process_frame(&mut [0.0; 480], &[0.0; 160]);
    }
}
