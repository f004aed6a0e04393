//! RNNoise's pitch estimator (the CELT/Opus one): the period, in 48 kHz samples, of the
//! strongest periodicity in the last 36 ms of (high-passed) input, from 60 to 768 samples.
//!
//! 1. **Downsample by 2** with a [1, 2, 1]/4 filter, then whiten with a 4th-order LPC fit
//!    (lag-windowed autocorrelation, bandwidth-expanded, plus a zero at −0.8).
//! 2. **Coarse search** at 4× downsampling: the cross-correlation of the last 20 ms against
//!    147 lags, the two best by normalised correlation ([`best_two`]).
//! 3. **Fine search** at 2×: the correlation only within ±2 of the two coarse candidates,
//!    then a three-point pseudo-interpolation.
//! 4. **Period doubling**: checks the sub-multiples `T/k`, `k = 2..=15`, preferring one whose
//!    normalised correlation is close enough to `T`'s (biased towards the previous period), so
//!    a voice's second harmonic is not taken for its pitch.
//!
//! The period is an integer, so the smallest difference in a correlation can move it at a
//! near-tie (a pure tone correlates almost equally at every multiple of its period), and a
//! different period changes the frame's features and pitch filter. So every sum here rounds
//! exactly as RNNoise's do, on every kernel: the lagged correlations are in-order sums
//! ([`xcorr_seq`], 8 lags per AVX2 register) and the windowed products RNNoise's four-lane
//! sums ([`dot4_batch`], several at once); multiplies and adds stay separate (no FMA). The
//! period is then the one `nnnoiseless` finds, bit for bit, frame after frame.
//!
//! Every buffer is a fixed array: a frame allocates nothing.

use super::simd::{dot4_batch, xcorr_seq, Kernel, LANES};

/// Shortest period searched, 48 kHz samples (800 Hz).
pub(super) const MIN_PERIOD: usize = 60;
/// Longest period searched (62.5 Hz).
pub(super) const MAX_PERIOD: usize = 768;
/// Correlation window.
const FRAME: usize = 960;
/// Input history the search needs.
pub(super) const BUF: usize = MAX_PERIOD + FRAME;
/// History at 2× downsampling.
const HALF: usize = BUF / 2;
/// Lags of the coarse search, which skips the shortest periods' multiples (at 4×: 147).
const COARSE_LAGS: usize = (MAX_PERIOD - 3 * MIN_PERIOD) / 4;
/// Lags of the fine search (at 2×: 294).
const FINE_LAGS: usize = (MAX_PERIOD - 3 * MIN_PERIOD) / 2;

/// The previous frame's result (the doubling check favours continuity) and the scratch.
#[derive(Debug, Clone)]
pub(super) struct PitchSearch {
    last_period: usize,
    last_gain: f32,
    /// The input at 2×, whitened: `[HALF]`, then zeros that [`xcorr_seq`]'s last register
    /// reads.
    lp: [f32; HALF + LANES],
    /// The 4× signals of the coarse search (`y4` padded the same way).
    x4: [f32; FRAME / 4],
    y4: [f32; FRAME / 4 + COARSE_LAGS + LANES],
    /// Correlations of the coarse, then the fine search.
    corr: [f32; FINE_LAGS],
    /// Energy of the lagged 2× window per lag, for the doubling check.
    lagged_energy: [f32; MAX_PERIOD / 2 + 1],
}

impl PitchSearch {
    pub(super) fn new() -> Self {
        Self {
            last_period: 0,
            last_gain: 0.0,
            lp: [0.0; HALF + LANES],
            x4: [0.0; FRAME / 4],
            y4: [0.0; FRAME / 4 + COARSE_LAGS + LANES],
            corr: [0.0; FINE_LAGS],
            lagged_energy: [0.0; MAX_PERIOD / 2 + 1],
        }
    }

    /// The pitch period of `input` (the last [`BUF`] samples), 48 kHz samples.
    pub(super) fn process(&mut self, kernel: Kernel, input: &[f32; BUF]) -> usize {
        self.downsample(kernel, input);
        let lag = self.search(kernel);
        let (period, gain) = self.remove_doubling(kernel, MAX_PERIOD - lag);
        self.last_period = period;
        self.last_gain = gain;
        period
    }

    /// Step 1: `input` → `self.lp` (2×, whitened).
    fn downsample(&mut self, kernel: Kernel, x: &[f32; BUF]) {
        let lp = &mut self.lp;
        lp[0] = (x[1] / 2.0 + x[0]) / 2.0;
        for i in 1..HALF {
            lp[i] = ((x[2 * i - 1] + x[2 * i + 1]) / 2.0 + x[2 * i]) / 2.0;
        }

        // Autocorrelation, lags 0..=4: RNNoise sums the first HALF − 4 products of each lag
        // in order, then adds the (in-order) sum of the rest.
        const HEAD: usize = HALF - 4;
        let mut ac = [0f32; 5];
        xcorr_seq(kernel, &lp[..HEAD], &lp[..], &mut ac);
        for (lag, a) in ac.iter_mut().enumerate() {
            let tail = (HEAD + lag..HALF).fold(0f32, |acc, i| acc + lp[i] * lp[i - lag]);
            *a += tail;
        }
        ac[0] *= 1.0001; // noise floor at −40 dB
        for (i, a) in ac.iter_mut().enumerate().skip(1) {
            let w = 0.008 * i as f32;
            *a -= *a * w * w; // lag window
        }
        let mut a = levinson(&ac);
        let mut bw = 1.0f32;
        for c in &mut a {
            bw *= 0.9;
            *c *= bw;
        }
        // Convolve with (1 + 0.8 z⁻¹): five taps.
        let taps = [a[0] + 0.8, a[1] + 0.8 * a[0], a[2] + 0.8 * a[1], a[3] + 0.8 * a[2], 0.8 * a[3]];
        let mut past = [0f32; 5];
        for v in lp[..HALF].iter_mut() {
            let out = *v
                + taps[0] * past[0]
                + taps[1] * past[1]
                + taps[2] * past[2]
                + taps[3] * past[3]
                + taps[4] * past[4];
            past = [*v, past[0], past[1], past[2], past[3]];
            *v = out;
        }
    }

    /// Steps 2 and 3: the best lag at 48 kHz (period = [`MAX_PERIOD`] − lag).
    fn search(&mut self, kernel: Kernel) -> usize {
        let y = &self.lp[..HALF];
        let x = &y[MAX_PERIOD / 2..];
        for (d, s) in self.x4.iter_mut().zip(x.iter().step_by(2)) {
            *d = *s;
        }
        for (d, s) in self.y4.iter_mut().zip(y.iter().step_by(2)) {
            *d = *s;
        }
        // The energies best_two starts from, for both searches in one loop: two independent
        // in-order sums (from 1), so their addition chains overlap.
        let (mut energy4, mut energy2) = (1f32, 1f32);
        for (v4, v2) in self.y4[..FRAME / 4].iter().zip(y) {
            energy4 += v4 * v4;
            energy2 += v2 * v2;
        }
        for v in &y[FRAME / 4..FRAME / 2] {
            energy2 += v * v;
        }
        let coarse = &mut self.corr[..COARSE_LAGS];
        xcorr_seq(kernel, &self.x4, &self.y4, coarse);
        let (best, second) = best_two(coarse, &self.y4, FRAME / 4, energy4);

        // The fine correlations only within ±2 of the two coarse candidates (at 2×).
        let (mut lags, mut count) = ([0usize; 10], 0);
        for i in 0..FINE_LAGS {
            if i.abs_diff(2 * best) <= 2 || i.abs_diff(2 * second) <= 2 {
                lags[count] = i;
                count += 1;
            }
        }
        let mut fine = [0f32; 10];
        dot4_batch(kernel, &x[..FRAME / 2], y, &lags[..count], &mut fine[..count]);
        self.corr.fill(0.0);
        for (&i, &c) in lags[..count].iter().zip(&fine) {
            self.corr[i] = c.max(-1.0);
        }
        let (best, _) = best_two(&self.corr, y, FRAME / 2, energy2);

        let offset: isize = if best > 0 && best < FINE_LAGS - 1 {
            let (a, b, c) = (self.corr[best - 1], self.corr[best], self.corr[best + 1]);
            if c - a > 0.7 * (b - a) {
                1
            } else if a - c > 0.7 * (b - c) {
                -1
            } else {
                0
            }
        } else {
            0
        };
        (2 * best as isize - offset) as usize
    }

    /// Step 4: from the searched `period` (48 kHz) to the final period and its gain.
    fn remove_doubling(&mut self, kernel: Kernel, period: usize) -> (usize, f32) {
        // All at 2×; `x` is the current window, `lagged(t)` the window `t` samples earlier.
        const MIN: usize = MIN_PERIOD / 2;
        const MAX: usize = MAX_PERIOD / 2;
        const N: usize = FRAME / 2;
        let lp = &self.lp[..HALF];
        let x = &lp[MAX..MAX + N];
        let t0 = (period / 2).min(MAX - 1);
        let prev = self.last_period / 2;
        // `x · (the window t earlier)` for several `t` at once.
        let dots = |lags: &[usize], out: &mut [f32]| {
            let mut offsets = [0usize; 2 * 14];
            for (o, &t) in offsets.iter_mut().zip(lags) {
                *o = MAX - t;
            }
            dot4_batch(kernel, x, lp, &offsets[..lags.len()], out);
        };

        let mut xx_xy = [0f32; 2];
        dots(&[0, t0], &mut xx_xy);
        let [xx, xy0] = xx_xy;
        let energy = &mut self.lagged_energy;
        energy[0] = xx;
        let mut e = xx;
        for i in 1..=MAX {
            e += lp[MAX - i] * lp[MAX - i] - lp[MAX + N - i] * lp[MAX + N - i];
            energy[i] = e.max(0.0);
        }

        // The candidates T0/k (k = 2..=15 while at least MIN), each with a second lag that
        // must correlate too: T0 + T0/2 for k = 2, else a multiple of T0/k. All their
        // correlations at once.
        let (mut lags, mut ks) = ([0usize; 2 * 14], 0);
        for (k, &second_check) in SECOND_CHECK.iter().enumerate().skip(2) {
            let t1 = (2 * t0 + k) / (2 * k);
            if t1 < MIN {
                break;
            }
            let t1b = match k {
                2 if t1 + t0 > MAX => t0,
                2 => t0 + t1,
                _ => (2 * second_check * t0 + k) / (2 * k),
            };
            (lags[2 * ks], lags[2 * ks + 1]) = (t1, t1b);
            ks += 1;
        }
        let mut corr = [0f32; 2 * 14];
        dots(&lags[..2 * ks], &mut corr[..2 * ks]);

        let mut best_xy = xy0;
        let mut best_yy = energy[t0];
        let g0 = gain(best_xy, xx, best_yy);
        let (mut t, mut g) = (t0, g0);
        for c in 0..ks {
            let (k, t1, t1b) = (c + 2, lags[2 * c], lags[2 * c + 1]);
            let xy = (corr[2 * c] + corr[2 * c + 1]) / 2.0;
            let yy = (energy[t1] + energy[t1b]) / 2.0;
            let g1 = gain(xy, xx, yy);
            let cont = match t1.abs_diff(prev) {
                0 | 1 => self.last_gain,
                2 if 5 * k * k < t0 => self.last_gain / 2.0,
                _ => 0.0,
            };
            // Stricter for very short periods (short-term correlation fakes them). RNNoise's
            // middle case (`t1 < 2·MIN`) is unreachable behind this one, so it is left out.
            let thresh = if t1 < 3 * MIN { (0.85 * g0 - cont).max(0.4) } else { (0.7 * g0 - cont).max(0.3) };
            if g1 > thresh {
                (best_xy, best_yy, t, g) = (xy, yy, t1, g1);
            }
        }

        let best_xy = best_xy.max(0.0);
        let pg = if best_yy <= best_xy { 1.0 } else { best_xy / (best_yy + 1.0) };
        let mut c = [0f32; 3];
        dots(&[t - 1, t, t + 1], &mut c);
        let offset: isize = if c[2] - c[0] > 0.7 * (c[1] - c[0]) {
            1
        } else if c[0] - c[2] > 0.7 * (c[1] - c[2]) {
            -1
        } else {
            0
        };
        (((2 * t) as isize + offset).max(MIN_PERIOD as isize) as usize, pg.min(g))
    }
}

/// For `k = 3..=15`, the multiple of `T0 / k` checked alongside `T0 / k`.
const SECOND_CHECK: [usize; 16] = [0, 0, 3, 2, 3, 2, 5, 2, 3, 2, 3, 2, 5, 2, 3, 2];

fn gain(xy: f32, xx: f32, yy: f32) -> f32 {
    xy / (1.0 + xx * yy).sqrt()
}

/// The two lags with the largest `corr² / energy` among positive correlations, `energy` the
/// energy of `y[lag .. lag + len]` plus 1 (a running sum, updated as RNNoise does, floored at 1;
/// `energy0` is the first, `1 + Σ y[..len]²` summed in order).
fn best_two(corr: &[f32], y: &[f32], len: usize, energy0: f32) -> (usize, usize) {
    let (mut best, mut second) = ((-1f32, 0f32, 0usize), (-1f32, 0f32, 1usize)); // (num, den, lag)
    let mut energy = energy0;
    for (i, &c) in corr.iter().enumerate() {
        if c > 0.0 {
            let num = c * c;
            // num/energy > best.0/best.1, without dividing.
            if num * second.1 > second.0 * energy {
                if num * best.1 > best.0 * energy {
                    second = best;
                    best = (num, energy, i);
                } else {
                    second = (num, energy, i);
                }
            }
        }
        energy = (energy + (y[i + len] * y[i + len] - y[i] * y[i])).max(1.0);
    }
    (best.2, second.2)
}

/// LPC coefficients (4) from the autocorrelation `ac` (5), by Levinson–Durbin; stops early
/// once the prediction gain reaches 30 dB.
fn levinson(ac: &[f32; 5]) -> [f32; 4] {
    let mut a = [0f32; 4];
    if ac[0] == 0.0 {
        return a;
    }
    let mut error = ac[0];
    for i in 0..4 {
        let mut acc = 0.0;
        for j in 0..i {
            acc += a[j] * ac[i - j];
        }
        acc += ac[i + 1];
        let r = -acc / error;
        a[i] = r;
        for j in 0..i.div_ceil(2) {
            let (lo, hi) = (a[j], a[i - 1 - j]);
            a[j] = lo + r * hi;
            a[i - 1 - j] = hi + r * lo;
        }
        error -= r * r * error;
        if error < 0.001 * ac[0] {
            break;
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pulse train (glottal-like: decaying clicks) has its period found, whatever the kernel,
    /// and no octave error for a 100 Hz voice (480 samples) even though 960 also correlates.
    #[test]
    fn finds_the_period_of_pulse_trains() {
        for period in [96usize, 160, 240, 300, 480] {
            let mut input = [0f32; BUF];
            for (n, v) in input.iter_mut().enumerate() {
                let phase = n % period;
                *v = 8000.0 * (-(phase as f32) / 12.0).exp() * (phase as f32 * 0.7).cos();
            }
            for kernel in [Kernel::Portable, Kernel::detect()] {
                let mut p = PitchSearch::new();
                let found = (0..3).map(|_| p.process(kernel, &input)).last().unwrap();
                assert!(found.abs_diff(period) <= 2, "{kernel:?}: period {period} found as {found}");
            }
        }
    }

    #[test]
    fn levinson_fits_an_ar1_process() {
        // Autocorrelation of x[n] = 0.5 x[n-1] + e: ρ(k) = 0.5^k → a = [-0.5, 0, 0, 0].
        let a = levinson(&[1.0, 0.5, 0.25, 0.125, 0.0625]);
        assert!((a[0] + 0.5).abs() < 1e-6 && a[1..].iter().all(|c| c.abs() < 1e-6), "{a:?}");
        assert_eq!(levinson(&[0.0; 5]), [0.0; 4]);
    }
}
