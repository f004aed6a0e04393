//! The three products the native RNNoise engine spends its multiply-adds in, each with an
//! AVX2+FMA kernel and a portable one, chosen once per process ([`Kernel::detect`]):
//!
//! - [`dot`]: `Σ a[k]·b[k]` — the pitch search's refinement and period-doubling checks and the
//!   LPC autocorrelation;
//! - [`xcorr`]: `out[i] = Σ_k x[k]·y[i + k]` — the coarse pitch search over 147 lags;
//! - [`gemv_acc`]: `out[j] += Σ_k w[k·stride + j]·x[k]` — every dense and GRU layer. The model's
//!   weights are input-major (one column of outputs per input), so the AVX2 kernel keeps a
//!   block of up to 64 outputs in registers and streams the inputs, one broadcast and one
//!   fused multiply-add per 8 outputs.
//!
//! The portable kernels sum in a different order and round each multiply separately, so the two
//! differ in the last bits; the tests bound both against an f64 reference.

/// Lanes of one AVX register of f32.
pub(super) const LANES: usize = 8;

/// Which kernels run; chosen once per process from the CPU's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// Plain Rust (any CPU).
    Portable,
    /// AVX2 + FMA intrinsics (x86-64 with both features).
    Avx2Fma,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Self::Avx2Fma;
        }
        Self::Portable
    }
}

/// `Σ a[k]·b[k]` over the common length.
#[inline]
pub(super) fn dot(kernel: Kernel, a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2Fma` is only chosen when the CPU has AVX2 and FMA; both slices are `n` long.
        Kernel::Avx2Fma => unsafe { avx2::dot(a, b) },
        _ => {
            let mut acc = [0f32; LANES];
            let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
            let (at, bt) = (ac.remainder(), bc.remainder());
            for (x, y) in ac.zip(bc) {
                for l in 0..LANES {
                    acc[l] += x[l] * y[l];
                }
            }
            acc.iter().sum::<f32>() + at.iter().zip(bt).map(|(x, y)| x * y).sum::<f32>()
        }
    }
}

/// `out[i] = Σ_{k < x.len()} x[k]·y[i + k]` for every `i < out.len()`.
///
/// # Panics
/// If `y` is shorter than `x.len() + out.len() − 1`.
#[inline]
pub(super) fn xcorr(kernel: Kernel, x: &[f32], y: &[f32], out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    assert!(y.len() + 1 >= x.len() + out.len(), "xcorr: y too short");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA present (see `Kernel::detect`); the length was checked above.
        Kernel::Avx2Fma => unsafe { avx2::xcorr(x, y, out) },
        _ => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = dot(kernel, x, &y[i..]);
            }
        }
    }
}

/// `out[j] += Σ_{k < x.len()} w[k·stride + j]·x[k]` for every `j < out.len()`.
///
/// # Panics
/// If `out.len()` is not a multiple of [`LANES`] or a column runs past `w`.
#[inline]
pub(super) fn gemv_acc(kernel: Kernel, w: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
    assert!(out.len() % LANES == 0, "gemv_acc: {} outputs is not whole lanes", out.len());
    if x.is_empty() || out.is_empty() {
        return;
    }
    assert!((x.len() - 1) * stride + out.len() <= w.len(), "gemv_acc: weights too short");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA present (see `Kernel::detect`); the bounds were checked above.
        Kernel::Avx2Fma => unsafe { avx2::gemv_acc(w, stride, x, out) },
        _ => {
            for (k, &xk) in x.iter().enumerate() {
                let col = &w[k * stride..k * stride + out.len()];
                for (o, &wj) in out.iter_mut().zip(col) {
                    *o += wj * xk;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// # Safety
    /// The CPU has AVX2 and FMA; `a` and `b` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut k = 0;
        while k + 4 * LANES <= n {
            for (r, a) in acc.iter_mut().enumerate() {
                let off = k + r * LANES;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(ap.add(off)), _mm256_loadu_ps(bp.add(off)), *a);
            }
            k += 4 * LANES;
        }
        while k + LANES <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(ap.add(k)), _mm256_loadu_ps(bp.add(k)), acc[0]);
            k += LANES;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum(s);
        while k < n {
            sum += *ap.add(k) * *bp.add(k);
            k += 1;
        }
        sum
    }

    /// Lags in blocks of 32 (four registers of 8 lags, one broadcast of `x[k]` per 4 FMAs), then
    /// blocks of 8, then the last lags one dot product each.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `y.len() + 1 >= x.len() + out.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn xcorr(x: &[f32], y: &[f32], out: &mut [f32]) {
        let mut i = 0;
        while i + 4 * LANES <= out.len() {
            lag_block::<4>(x, y, i, out);
            i += 4 * LANES;
        }
        while i + LANES <= out.len() {
            lag_block::<1>(x, y, i, out);
            i += LANES;
        }
        while i < out.len() {
            out[i] = dot(x, &y[i..i + x.len()]);
            i += 1;
        }
    }

    /// `out[i0 .. i0 + 8·B]`.
    #[inline(always)]
    unsafe fn lag_block<const B: usize>(x: &[f32], y: &[f32], i0: usize, out: &mut [f32]) {
        let yp = y.as_ptr().add(i0);
        let mut acc = [_mm256_setzero_ps(); B];
        for (k, &xk) in x.iter().enumerate() {
            let xv = _mm256_set1_ps(xk);
            for (b, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(xv, _mm256_loadu_ps(yp.add(k + b * LANES)), *a);
            }
        }
        for (b, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(i0 + b * LANES), *a);
        }
    }

    /// Outputs in blocks of 64, then 32, then 8, each block's accumulators in registers across
    /// all inputs.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `out.len() % 8 == 0`; `(x.len() − 1)·stride + out.len() <= w.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemv_acc(w: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
        let mut j = 0;
        while j + 8 * LANES <= out.len() {
            out_block::<8>(w, stride, x, out, j);
            j += 8 * LANES;
        }
        while j + 4 * LANES <= out.len() {
            out_block::<4>(w, stride, x, out, j);
            j += 4 * LANES;
        }
        while j < out.len() {
            out_block::<1>(w, stride, x, out, j);
            j += LANES;
        }
    }

    #[inline(always)]
    unsafe fn out_block<const B: usize>(w: &[f32], stride: usize, x: &[f32], out: &mut [f32], j0: usize) {
        let op = out.as_mut_ptr().add(j0);
        let mut acc = [_mm256_setzero_ps(); B];
        for (b, a) in acc.iter_mut().enumerate() {
            *a = _mm256_loadu_ps(op.add(b * LANES));
        }
        let mut wp = w.as_ptr().add(j0);
        for &xk in x {
            let xv = _mm256_set1_ps(xk);
            for (b, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(b * LANES)), xv, *a);
            }
            wp = wp.add(stride);
        }
        for (b, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(op.add(b * LANES), *a);
        }
    }

    /// Sum of the 8 lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn kernels() -> Vec<Kernel> {
        let mut k = vec![Kernel::Portable];
        if Kernel::detect() == Kernel::Avx2Fma {
            k.push(Kernel::Avx2Fma);
        }
        k
    }

    fn dot64(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
    }

    fn close(got: f32, want: f64, n: usize) -> bool {
        (f64::from(got) - want).abs() < 1e-5 * (n as f64).sqrt().max(1.0)
    }

    #[test]
    fn dot_matches_f64_over_lengths() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 100, 480, 860] {
            let (a, b) = (values(n, 3), values(n, 5));
            for kernel in kernels() {
                let got = dot(kernel, &a, &b);
                assert!(close(got, dot64(&a, &b), n), "{kernel:?} n={n}: {got} vs {}", dot64(&a, &b));
            }
        }
    }

    #[test]
    fn xcorr_matches_f64_over_shapes() {
        for (n, lags) in [(240, 147), (8, 1), (17, 8), (33, 32), (100, 41), (5, 70)] {
            let x = values(n, 7);
            let y = values(n + lags - 1, 9);
            for kernel in kernels() {
                let mut out = vec![f32::NAN; lags];
                xcorr(kernel, &x, &y, &mut out);
                for (i, &o) in out.iter().enumerate() {
                    let want = dot64(&x, &y[i..i + n]);
                    assert!(close(o, want, n), "{kernel:?} n={n} lag {i}: {o} vs {want}");
                }
            }
        }
    }

    #[test]
    fn gemv_acc_matches_f64_over_shapes() {
        for (inputs, outs, stride) in [(42, 24, 24), (90, 144, 144), (114, 96, 288), (1, 8, 8), (24, 8, 8)] {
            let w = values(inputs * stride, 11);
            let x = values(inputs, 13);
            let start = values(outs, 17);
            for kernel in kernels() {
                let mut out = start.clone();
                gemv_acc(kernel, &w, stride, &x, &mut out);
                for (j, &o) in out.iter().enumerate() {
                    let want = f64::from(start[j])
                        + (0..inputs).map(|k| f64::from(w[k * stride + j]) * f64::from(x[k])).sum::<f64>();
                    assert!(close(o, want, inputs), "{kernel:?} {inputs}x{outs} j={j}: {o} vs {want}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "weights too short")]
    fn gemv_acc_checks_the_weights() {
        gemv_acc(Kernel::Portable, &[0.0; 15], 8, &[1.0, 1.0], &mut [0.0; 8]);
    }
}
