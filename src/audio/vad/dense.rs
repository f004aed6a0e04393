//! The one kernel of the native Silero engine: a dense layer applied to a few input vectors
//! at once, `y_n = b + W · x_n` for `n < N`, where the `x_n` are equally spaced windows of
//! one buffer and the `y_n` equally spaced slices of another. Every layer of the model is
//! this shape: the STFT (4 overlapping frames), the convolutions (a kernel-3 window of a
//! time-major, zero-padded feature buffer is a contiguous slice), and the LSTM gates.
//!
//! Weights are row-major with rows padded to a multiple of 8 (packed once at load), so each
//! row is a run of 8-lane fused multiply-adds. The AVX2+FMA kernel keeps `R × N` accumulators
//! in registers — each weight vector is loaded once and used for all `N` inputs — and sums
//! the lanes at the end of the row. The portable kernel computes the same sums (with separate
//! multiplies and adds, so results differ from the FMA kernel in the last bits).

/// Lanes of one AVX register of f32.
pub(super) const LANES: usize = 8;

/// A dense layer: `rows × cols` weights (row-major, `cols` a multiple of [`LANES`]) and a
/// bias per row.
#[derive(Debug, Clone)]
pub(super) struct Dense {
    rows: usize,
    cols: usize,
    w: Box<[f32]>,
    bias: Box<[f32]>,
}

pub(super) use crate::audio::simd::Kernel;

impl Dense {
    /// From row-major weights `w` (`rows × cols`, `cols` a multiple of [`LANES`]) and `bias`.
    pub(super) fn new(rows: usize, cols: usize, w: Vec<f32>, bias: Vec<f32>) -> Self {
        assert!(cols % LANES == 0 && cols > 0, "row length {cols} is not a multiple of {LANES}");
        assert_eq!(w.len(), rows * cols, "weights");
        assert_eq!(bias.len(), rows, "bias");
        Self { rows, cols, w: w.into(), bias: bias.into() }
    }

    /// `y[n·y_step + r] = bias[r] + Σ_k w[r][k] · x[n·x_step + k]` for `n < N`, `r < rows`.
    ///
    /// # Panics
    /// If a window or an output slice runs past its buffer.
    #[inline]
    pub(super) fn apply<const N: usize>(
        &self,
        kernel: Kernel,
        x: &[f32],
        x_step: usize,
        y: &mut [f32],
        y_step: usize,
    ) {
        assert!(N >= 1 && (N - 1) * x_step + self.cols <= x.len(), "input windows");
        assert!((N - 1) * y_step + self.rows <= y.len(), "outputs");
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2Fma` is only chosen when the CPU has AVX2 and FMA (`Kernel::detect`,
            // or tests that check the same); the bounds were checked above.
            Kernel::Avx2Fma => unsafe {
                match N {
                    1 => avx2::apply::<N, 8>(self, x, x_step, y, y_step),
                    2 => avx2::apply::<N, 4>(self, x, x_step, y, y_step),
                    _ => avx2::apply::<N, 2>(self, x, x_step, y, y_step),
                }
            },
            _ => self.apply_portable::<N>(x, x_step, y, y_step),
        }
    }

    fn apply_portable<const N: usize>(&self, x: &[f32], x_step: usize, y: &mut [f32], y_step: usize) {
        for (r, row) in self.w.chunks_exact(self.cols).enumerate() {
            for n in 0..N {
                let xs = &x[n * x_step..n * x_step + self.cols];
                let mut acc = [0f32; LANES];
                for (wc, xc) in row.chunks_exact(LANES).zip(xs.chunks_exact(LANES)) {
                    for l in 0..LANES {
                        acc[l] += wc[l] * xc[l];
                    }
                }
                y[n * y_step + r] = self.bias[r] + acc.iter().sum::<f32>();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Dense, LANES};
    use crate::audio::simd::hsum;

    /// Rows in blocks of `R`, then one at a time.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `x` and `y` hold every window and output (checked by the
    /// caller).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn apply<const N: usize, const R: usize>(
        d: &Dense,
        x: &[f32],
        x_step: usize,
        y: &mut [f32],
        y_step: usize,
    ) {
        let mut r = 0;
        while r + R <= d.rows {
            block::<N, R>(d, r, x, x_step, y, y_step);
            r += R;
        }
        while r < d.rows {
            block::<N, 1>(d, r, x, x_step, y, y_step);
            r += 1;
        }
    }

    /// Rows `r0..r0 + R` against all `N` windows: `R × N` accumulators, one weight load per
    /// `N` multiply-adds.
    #[inline(always)]
    unsafe fn block<const N: usize, const R: usize>(
        d: &Dense,
        r0: usize,
        x: &[f32],
        x_step: usize,
        y: &mut [f32],
        y_step: usize,
    ) {
        let cols = d.cols;
        let w = d.w.as_ptr().add(r0 * cols);
        let xp = x.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); N]; R];
        let mut k = 0;
        while k < cols {
            let mut xs = [_mm256_setzero_ps(); N];
            for (n, xv) in xs.iter_mut().enumerate() {
                *xv = _mm256_loadu_ps(xp.add(n * x_step + k));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(w.add(r * cols + k));
                for (a, xv) in acc_r.iter_mut().zip(&xs) {
                    *a = _mm256_fmadd_ps(wv, *xv, *a);
                }
            }
            k += LANES;
        }
        for (r, acc_r) in acc.iter().enumerate() {
            let b = d.bias[r0 + r];
            for (n, a) in acc_r.iter().enumerate() {
                y[n * y_step + r0 + r] = b + hsum(*a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audio::testutil::values;

    fn kernels() -> Vec<Kernel> {
        Kernel::available()
    }

    /// Every kernel against an f64 reference, over row counts that do and do not fill a
    /// register block, several row lengths, N = 1, 2, 4, overlapping windows and strided outputs.
    fn check<const N: usize>(rows: usize, cols: usize, x_step: usize, y_step: usize) {
        let d = Dense::new(rows, cols, values(rows * cols, 7), values(rows, 11));
        let x = values((N - 1) * x_step + cols, 13);
        for kernel in kernels() {
            let mut y = vec![f32::NAN; (N - 1) * y_step + rows];
            d.apply::<N>(kernel, &x, x_step, &mut y, y_step);
            for n in 0..N {
                for r in 0..rows {
                    let want: f64 = f64::from(d.bias[r])
                        + (0..cols)
                            .map(|k| f64::from(d.w[r * cols + k]) * f64::from(x[n * x_step + k]))
                            .sum::<f64>();
                    let got = y[n * y_step + r];
                    assert!(
                        (f64::from(got) - want).abs() < 1e-5 * (cols as f64).sqrt(),
                        "{kernel:?} N={N} rows={rows} cols={cols} n={n} r={r}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn matches_f64_reference_over_shapes() {
        for rows in [1, 2, 3, 7, 8, 9, 17, 64] {
            for cols in [8, 16, 64, 408] {
                check::<1>(rows, cols, 0, 0);
                check::<2>(rows, cols, cols / 2, rows + 3);
                check::<4>(rows, cols, 8, rows);
            }
        }
    }

    #[test]
    fn hand_computed_case() {
        // Two rows of 8: y = [1·1 + 2·2 + … + 8·8 + 0.5, −(1 + … + 8) − 1] on x = 1..=8.
        let w: Vec<f32> = (1..=8).map(|v| v as f32).chain((0..8).map(|_| -1.0)).collect();
        let d = Dense::new(2, 8, w, vec![0.5, -1.0]);
        let x: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        for kernel in kernels() {
            let mut y = [0f32; 2];
            d.apply::<1>(kernel, &x, 0, &mut y, 0);
            assert_eq!(y, [204.5, -37.0], "{kernel:?}");
        }
    }

    #[test]
    #[should_panic(expected = "input windows")]
    fn windows_past_the_input_panic() {
        let d = Dense::new(1, 8, vec![0.0; 8], vec![0.0]);
        let mut y = [0f32; 4];
        d.apply::<2>(Kernel::Portable, &[0.0; 12], 8, &mut y, 1);
    }
}
