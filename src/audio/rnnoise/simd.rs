//! The three products the native RNNoise engine spends its multiply-adds in, each with an
//! AVX2+FMA kernel and a portable one, chosen once per process ([`Kernel::detect`]):
//!
//! - [`dot`]: `Σ a[k]·b[k]` — the pitch search's refinement and period-doubling checks and the
//!   LPC autocorrelation;
//! - [`xcorr`]: `out[i] = Σ_k x[k]·y[i + k]` — the coarse pitch search over 147 lags;
//! - [`gemv_acc`]: `out[j] += Σ_k w[k][j]·x[k]`, `w` bytes — every dense and GRU layer. The
//!   AVX2 kernel keeps a block of up to 64 outputs in registers and streams the inputs: per 8
//!   outputs, one load widening 8 bytes to f32 and one fused multiply-add. The weights are
//!   [`Packed`] in the order the kernel reads them, so a whole layer is one sequential stream
//!   (the model is 87 KB, beyond L1: read in place from the file's input-major rows, a block
//!   took one or two cache lines per input, `stride` bytes apart, and the kernel waited on
//!   them).
//!
//! The portable kernels sum in a different order and round each multiply separately, so the two
//! differ in the last bits; the tests bound both against an f64 reference.

/// Lanes of one AVX register of f32.
pub(super) const LANES: usize = 8;

pub(super) use crate::audio::simd::Kernel;

/// `out[i] = Σ_{k < x.len()} x[k]·y[i + k]` for every `i < out.len()`, each sum accumulated
/// strictly in order of `k` from 0 with a separate multiply and add per term — the same
/// roundings as a plain scalar loop, so the result is the same on every kernel (and the same as
/// RNNoise's). The AVX2 kernel puts 8 lags in the lanes of a register and up to 8 registers in
/// flight, so it is fast although each lane is a sequential sum.
///
/// # Panics
/// If `y` is shorter than `x.len() + pad8(out.len()) − 1`, `pad8` rounding up to whole lanes
/// (the last register reads lags past `out.len()`, discarded).
#[inline]
pub(super) fn xcorr_seq(kernel: Kernel, x: &[f32], y: &[f32], out: &mut [f32]) {
    if out.is_empty() || x.is_empty() {
        out.fill(0.0);
        return;
    }
    assert!(y.len() + 1 >= x.len() + out.len().div_ceil(LANES) * LANES, "xcorr_seq: y too short");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA present (see `Kernel::detect`); the length was checked above.
        Kernel::Avx2Fma => unsafe { avx2::xcorr_seq(x, y, out) },
        _ => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = x.iter().zip(&y[i..]).fold(0.0, |acc, (a, b)| acc + a * b);
            }
        }
    }
}

/// `out[q] = x · y[offsets[q] ..][.. x.len()]`, each dot product summed RNNoise's way: four
/// running sums over `k ≡ 0, 1, 2, 3 (mod 4)`, added as `((s0 + s1) + s2) + s3`, then the
/// remaining `x.len() % 4` terms in order; separate multiplies and adds. Same results on every
/// kernel. The AVX2 kernel runs four products at once (one SSE register each), so their
/// addition chains overlap.
///
/// # Panics
/// If `out` and `offsets` differ in length or a window runs past `y`.
#[inline]
pub(super) fn dot4_batch(kernel: Kernel, x: &[f32], y: &[f32], offsets: &[usize], out: &mut [f32]) {
    assert_eq!(offsets.len(), out.len(), "dot4_batch: one output per offset");
    assert!(offsets.iter().all(|&o| o + x.len() <= y.len()), "dot4_batch: window past y");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA present (see `Kernel::detect`); the windows were checked above.
        Kernel::Avx2Fma => unsafe { avx2::dot4_batch(x, y, offsets, out) },
        _ => {
            for (o, &off) in out.iter_mut().zip(offsets) {
                *o = dot4_portable(x, &y[off..off + x.len()]);
            }
        }
    }
}

/// `(Σ lo[k]·a[k]·b[k], Σ hi[k]·a[k]·b[k])` — one band of the band correlations: `a` and `b`
/// are spectra as `re, im, …`, `lo` and `hi` the bins' weights in this band and the next.
///
/// # Panics
/// If the four slices differ in length or it is not a multiple of [`LANES`].
#[inline]
pub(super) fn weighted_sums(kernel: Kernel, a: &[f32], b: &[f32], lo: &[f32], hi: &[f32]) -> (f32, f32) {
    let n = a.len();
    assert!(b.len() == n && lo.len() == n && hi.len() == n && n % LANES == 0, "weighted_sums: lengths");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA present (see `Kernel::detect`); the lengths were checked above.
        Kernel::Avx2Fma => unsafe { avx2::weighted_sums(a, b, lo, hi) },
        _ => {
            let (mut sl, mut sh) = ([0f32; LANES], [0f32; LANES]);
            for k in (0..n).step_by(LANES) {
                for l in 0..LANES {
                    let p = a[k + l] * b[k + l];
                    sl[l] += lo[k + l] * p;
                    sh[l] += hi[k + l] * p;
                }
            }
            (sl.iter().sum(), sh.iter().sum())
        }
    }
}

/// One [`dot4_batch`] product in plain Rust.
fn dot4_portable(x: &[f32], y: &[f32]) -> f32 {
    let mut s = [0f32; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let (xt, yt) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..4 {
            s[l] += a[l] * b[l];
        }
    }
    let mut sum = s[0] + s[1] + s[2] + s[3];
    for (a, b) in xt.iter().zip(yt) {
        sum += a * b;
    }
    sum
}

/// Output blocks of a [`Packed`] matrix: 64 outputs while they last, then 32, then 8 at a time —
/// as many accumulators as the AVX2 kernel keeps in registers.
fn blocks(outputs: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut j = 0;
    std::iter::from_fn(move || {
        let width = [8 * LANES, 4 * LANES, LANES].into_iter().find(|&w| j + w <= outputs)?;
        j += width;
        Some((j - width, width))
    })
}

/// A weight matrix `w[k][j]` (`inputs` × `outputs` bytes) laid out for [`gemv_acc`]: the
/// outputs cut into [`blocks`], and each block's weights contiguous, input after input — the
/// block starting at output `j0` is `data[j0·inputs ..]`, `width` bytes per input.
#[derive(Debug)]
pub(super) struct Packed {
    inputs: usize,
    outputs: usize,
    data: Box<[i8]>,
}

impl Packed {
    /// Packs columns `from .. from + outputs` of the row-major matrix `w` (`inputs` rows,
    /// `stride` bytes apart).
    ///
    /// # Panics
    /// If `outputs` is not a multiple of [`LANES`] or the columns run past `w`.
    pub(super) fn new(w: &[i8], stride: usize, from: usize, inputs: usize, outputs: usize) -> Self {
        assert!(outputs % LANES == 0, "Packed: {outputs} outputs is not whole lanes");
        assert!(inputs == 0 || (inputs - 1) * stride + from + outputs <= w.len(), "Packed: matrix too short");
        let mut data = Vec::with_capacity(inputs * outputs);
        for (j0, width) in blocks(outputs) {
            for k in 0..inputs {
                let at = k * stride + from + j0;
                data.extend_from_slice(&w[at..at + width]);
            }
        }
        Self { inputs, outputs, data: data.into() }
    }
}

/// `out[j] += Σ_k w[k][j]·x[k]` for every output `j` of `w`.
///
/// # Panics
/// If `x` is not as long as `w`'s inputs or `out` as its outputs.
#[inline]
pub(super) fn gemv_acc(kernel: Kernel, w: &Packed, x: &[f32], out: &mut [f32]) {
    assert!(x.len() == w.inputs && out.len() == w.outputs, "gemv_acc: shapes");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA present (see `Kernel::detect`); the shapes were checked above,
        // and `Packed::new` made `data` exactly `inputs × outputs` bytes in `blocks` order.
        Kernel::Avx2Fma => unsafe { avx2::gemv_acc(w, x, out) },
        _ => {
            for (j0, width) in blocks(w.outputs) {
                let block = &w.data[j0 * w.inputs..(j0 + width) * w.inputs];
                for (row, &xk) in block.chunks_exact(width).zip(x) {
                    for (o, &wj) in out[j0..j0 + width].iter_mut().zip(row) {
                        *o += f32::from(wj) * xk;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::LANES;
    use crate::audio::simd::hsum;

    /// Lags in registers of 8, eight registers per pass over `x`, then the rest in one pass.
    ///
    /// # Safety
    /// The CPU has AVX2; `y.len() + 1 >= x.len() + pad8(out.len())`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn xcorr_seq(x: &[f32], y: &[f32], out: &mut [f32]) {
        let mut i = 0;
        while i + 8 * LANES <= out.len() {
            lag_block::<8>(x, y, i, out);
            i += 8 * LANES;
        }
        match (out.len() - i).div_ceil(LANES) {
            0 => {}
            1 => lag_block::<1>(x, y, i, out),
            2 => lag_block::<2>(x, y, i, out),
            3 => lag_block::<3>(x, y, i, out),
            4 => lag_block::<4>(x, y, i, out),
            5 => lag_block::<5>(x, y, i, out),
            6 => lag_block::<6>(x, y, i, out),
            _ => lag_block::<7>(x, y, i, out),
        }
    }

    /// Lags `i0 .. i0 + 8·B` (those below `out.len()` stored). Multiply, then add: each lane
    /// rounds exactly as the scalar sum does.
    #[inline(always)]
    unsafe fn lag_block<const B: usize>(x: &[f32], y: &[f32], i0: usize, out: &mut [f32]) {
        let yp = y.as_ptr().add(i0);
        let mut acc = [_mm256_setzero_ps(); B];
        for (k, &xk) in x.iter().enumerate() {
            let xv = _mm256_set1_ps(xk);
            for (b, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_mul_ps(xv, _mm256_loadu_ps(yp.add(k + b * LANES))));
            }
        }
        let mut lanes = [0f32; LANES];
        for (b, a) in acc.iter().enumerate() {
            let at = i0 + b * LANES;
            if at + LANES <= out.len() {
                _mm256_storeu_ps(out.as_mut_ptr().add(at), *a);
            } else {
                _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
                let n = out.len() - at;
                out[at..].copy_from_slice(&lanes[..n]);
            }
        }
    }

    /// Four products at a time, one SSE register of four running sums each.
    ///
    /// # Safety
    /// The CPU has AVX2; every window `offsets[q] .. offsets[q] + x.len()` lies in `y`;
    /// `out.len() == offsets.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot4_batch(x: &[f32], y: &[f32], offsets: &[usize], out: &mut [f32]) {
        const N: usize = 4;
        for (offs, outs) in offsets.chunks(N).zip(out.chunks_mut(N)) {
            // A short last group repeats its last window (computed, not stored).
            let mut ptrs = [y.as_ptr(); N];
            for (q, p) in ptrs.iter_mut().enumerate() {
                *p = y.as_ptr().add(offs[q.min(offs.len() - 1)]);
            }
            let n = x.len();
            let mut acc = [_mm_setzero_ps(); N];
            let mut k = 0;
            while k + 4 <= n {
                let xv = _mm_loadu_ps(x.as_ptr().add(k));
                for (a, p) in acc.iter_mut().zip(&ptrs) {
                    *a = _mm_add_ps(*a, _mm_mul_ps(xv, _mm_loadu_ps(p.add(k))));
                }
                k += 4;
            }
            for (q, o) in outs.iter_mut().enumerate() {
                let mut s = [0f32; 4];
                _mm_storeu_ps(s.as_mut_ptr(), acc[q]);
                let mut sum = s[0] + s[1] + s[2] + s[3];
                for (j, &xj) in x.iter().enumerate().skip(k) {
                    sum += xj * *ptrs[q].add(j);
                }
                *o = sum;
            }
        }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; the four slices have the same length, a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sums(a: &[f32], b: &[f32], lo: &[f32], hi: &[f32]) -> (f32, f32) {
        let (mut sl, mut sh) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for k in (0..a.len()).step_by(LANES) {
            let p = _mm256_mul_ps(_mm256_loadu_ps(a.as_ptr().add(k)), _mm256_loadu_ps(b.as_ptr().add(k)));
            sl = _mm256_fmadd_ps(_mm256_loadu_ps(lo.as_ptr().add(k)), p, sl);
            sh = _mm256_fmadd_ps(_mm256_loadu_ps(hi.as_ptr().add(k)), p, sh);
        }
        (hsum(sl), hsum(sh))
    }

    /// Each output block's accumulators in registers across all inputs, its weights read
    /// sequentially.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `x.len() == w.inputs`, `out.len() == w.outputs`, and `w.data` is
    /// laid out as [`Packed::new`] makes it.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemv_acc(w: &super::Packed, x: &[f32], out: &mut [f32]) {
        for (j0, width) in super::blocks(w.outputs) {
            let wp = w.data.as_ptr().add(j0 * w.inputs);
            match width / LANES {
                8 => out_block::<8>(wp, x, out, j0),
                4 => out_block::<4>(wp, x, out, j0),
                _ => out_block::<1>(wp, x, out, j0),
            }
        }
    }

    #[inline(always)]
    unsafe fn out_block<const B: usize>(mut wp: *const i8, x: &[f32], out: &mut [f32], j0: usize) {
        let op = out.as_mut_ptr().add(j0);
        let mut acc = [_mm256_setzero_ps(); B];
        for (b, a) in acc.iter_mut().enumerate() {
            *a = _mm256_loadu_ps(op.add(b * LANES));
        }
        for &xk in x {
            let xv = _mm256_set1_ps(xk);
            for (b, a) in acc.iter_mut().enumerate() {
                let bytes = _mm_loadl_epi64(wp.add(b * LANES).cast());
                let wv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
                *a = _mm256_fmadd_ps(wv, xv, *a);
            }
            wp = wp.add(B * LANES);
        }
        for (b, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(op.add(b * LANES), *a);
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

    fn dot64(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
    }

    fn close(got: f32, want: f64, n: usize) -> bool {
        (f64::from(got) - want).abs() < 1e-5 * (n as f64).sqrt().max(1.0)
    }

    /// Same bits on every kernel as a plain in-order loop, and close to f64.
    #[test]
    fn xcorr_seq_is_the_in_order_sum() {
        for (n, lags) in [(240usize, 147usize), (860, 5), (8, 1), (17, 8), (33, 64), (100, 71), (5, 70)] {
            let x = values(n, 7);
            let y = values(n + lags.div_ceil(LANES) * LANES - 1, 9);
            for kernel in kernels() {
                let mut out = vec![f32::NAN; lags];
                xcorr_seq(kernel, &x, &y, &mut out);
                for (i, &o) in out.iter().enumerate() {
                    let mut want = 0f32;
                    for k in 0..n {
                        want += x[k] * y[i + k];
                    }
                    assert_eq!(o.to_bits(), want.to_bits(), "{kernel:?} n={n} lag {i}");
                    assert!(close(o, dot64(&x, &y[i..i + n]), n));
                }
            }
        }
    }

    /// Same bits on every kernel, over lengths with and without a tail and batch sizes that do
    /// and do not fill a group; close to f64.
    #[test]
    fn dot4_batch_is_the_four_lane_sum() {
        for n in [0, 3, 4, 9, 240, 480, 483] {
            let x = values(n, 3);
            let y = values(n + 40, 5);
            for count in [1, 3, 4, 5, 10] {
                let offsets: Vec<usize> = (0..count).map(|q| (q * 7) % 40).collect();
                let mut want = vec![0f32; count];
                dot4_batch(Kernel::Portable, &x, &y, &offsets, &mut want);
                for kernel in kernels() {
                    let mut got = vec![f32::NAN; count];
                    dot4_batch(kernel, &x, &y, &offsets, &mut got);
                    for q in 0..count {
                        assert_eq!(got[q].to_bits(), want[q].to_bits(), "{kernel:?} n={n} #{q}");
                        let off = offsets[q];
                        assert!(close(got[q], dot64(&x, &y[off..off + n]), n));
                    }
                }
            }
        }
    }

    #[test]
    fn gemv_acc_matches_f64_over_shapes() {
        // (inputs, outputs, stride, first column): every block width, and a column range
        // inside wider rows (a GRU's candidate gate).
        for (inputs, outs, stride, from) in [
            (42, 24, 24, 0),
            (90, 144, 144, 0),
            (114, 96, 288, 192),
            (114, 192, 288, 0),
            (1, 8, 8, 0),
            (24, 8, 16, 8),
        ] {
            let w: Vec<i8> = values(inputs * stride, 11).iter().map(|v| (v * 127.0) as i8).collect();
            let packed = Packed::new(&w, stride, from, inputs, outs);
            let x = values(inputs, 13);
            let start = values(outs, 17);
            for kernel in kernels() {
                let mut out = start.clone();
                gemv_acc(kernel, &packed, &x, &mut out);
                for (j, &o) in out.iter().enumerate() {
                    let want = f64::from(start[j])
                        + (0..inputs)
                            .map(|k| f64::from(w[k * stride + from + j]) * f64::from(x[k]))
                            .sum::<f64>();
                    assert!(
                        close(o / 128.0, want / 128.0, inputs),
                        "{kernel:?} {inputs}x{outs} j={j}: {o} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn blocks_cover_the_outputs_widest_first() {
        assert_eq!(blocks(24).collect::<Vec<_>>(), [(0, 8), (8, 8), (16, 8)]);
        assert_eq!(blocks(288).collect::<Vec<_>>(), [(0, 64), (64, 64), (128, 64), (192, 64), (256, 32)]);
        assert_eq!(blocks(104).collect::<Vec<_>>(), [(0, 64), (64, 32), (96, 8)]);
    }

    #[test]
    #[should_panic(expected = "matrix too short")]
    fn packing_checks_the_weights() {
        Packed::new(&[0; 15], 8, 0, 2, 8);
    }
}
