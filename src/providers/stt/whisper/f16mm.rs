//! Half-precision weights for the decoder's matrix–vector products.
//!
//! A decoder step multiplies one row per live sequence (1 for greedy, the beam width for beam
//! search) by every decoder weight and by the 51 864 × 384 output projection: it is bound by the
//! bytes of weights read, not by arithmetic. The CT2 file stores those weights in f16, so keeping
//! them in f16 halves the bytes read per token without changing a single weight value (f16 → f32
//! is exact); the products and sums stay in f32. The kernel runs on the calling thread (AVX2 +
//! FMA + F16C when the CPU has them, portable code otherwise) with no thread pool to wait on,
//! except the vocabulary projection, which is split over two scoped threads.

/// A row-major `[rows, cols]` matrix of IEEE half floats (raw bits).
#[derive(Clone)]
pub struct F16Matrix {
    rows: usize,
    cols: usize,
    bits: Vec<u16>,
}

impl std::fmt::Debug for F16Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "F16Matrix[{}, {}]", self.rows, self.cols)
    }
}

/// Work (weight elements) above which a product is split over two threads.
const SPLIT_ELEMENTS: usize = 4 << 20;

impl F16Matrix {
    /// Rounds `w` (`rows × cols`, row-major) to f16 (exact for weights that were f16).
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols, "f16 matrix shape");
        Self { rows, cols, bits: w.iter().map(|&x| f32_to_f16(x)).collect() }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bits.len() * 2
    }

    /// Row `r` widened to f32, appended to `out`.
    pub fn row_into(&self, r: usize, out: &mut Vec<f32>) {
        out.extend(self.bits[r * self.cols..(r + 1) * self.cols].iter().map(|&b| f16_to_f32(b)));
    }

    /// `x [m, cols] · selfᵀ → [m, rows]` (row-major).
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.cols, "f16 matmul input shape");
        split_rows(self.rows, self.cols, m, |rows| self.product(x, m, rows))
    }

    /// `[m, rows.len()]`: the products of `x` with weight rows `rows`.
    fn product(&self, x: &[f32], m: usize, rows: std::ops::Range<usize>) -> Vec<f32> {
        let n = rows.len();
        let mut out = vec![0f32; m * n];
        #[cfg(target_arch = "x86_64")]
        {
            if self.cols % 8 == 0
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                // Groups of up to four input rows share each weight load.
                let mut i = 0;
                while i < m {
                    let g = (m - i).min(4);
                    let xs = &x[i * self.cols..(i + g) * self.cols];
                    let mut part = vec![0f32; g * n];
                    // SAFETY: the CPU features were checked above; shapes are checked inside.
                    unsafe {
                        match g {
                            1 => avx::block::<1>(&self.bits, self.cols, rows.clone(), xs, &mut part),
                            2 => avx::block::<2>(&self.bits, self.cols, rows.clone(), xs, &mut part),
                            3 => avx::block::<3>(&self.bits, self.cols, rows.clone(), xs, &mut part),
                            _ => avx::block::<4>(&self.bits, self.cols, rows.clone(), xs, &mut part),
                        }
                    }
                    out[i * n..(i + g) * n].copy_from_slice(&part);
                    i += g;
                }
                return out;
            }
        }
        for (o, r) in rows.enumerate() {
            let w = &self.bits[r * self.cols..(r + 1) * self.cols];
            for i in 0..m {
                let xi = &x[i * self.cols..(i + 1) * self.cols];
                out[i * n + o] = w.iter().zip(xi).map(|(&b, &v)| f16_to_f32(b) * v).sum();
            }
        }
        out
    }
}

/// Runs `product` (`[m, range.len()]` for a range of weight rows) over all `rows`, on two threads
/// when the matrix is large, and assembles `[m, rows]`.
fn split_rows(
    rows: usize,
    cols: usize,
    m: usize,
    product: impl Fn(std::ops::Range<usize>) -> Vec<f32> + Sync,
) -> Vec<f32> {
    if m == 0 || rows < 64 || rows * cols < SPLIT_ELEMENTS {
        return product(0..rows);
    }
    // Weight rows [0, half) on a scoped thread, [half, rows) here.
    let half = (rows / 2) & !7;
    let (lo, hi) = std::thread::scope(|s| {
        let lo = s.spawn(|| product(0..half));
        let hi = product(half..rows);
        (lo.join().expect("matmul thread"), hi)
    });
    let mut out = vec![0f32; m * rows];
    let w = rows - half;
    for i in 0..m {
        out[i * rows..i * rows + half].copy_from_slice(&lo[i * half..(i + 1) * half]);
        out[i * rows + half..(i + 1) * rows].copy_from_slice(&hi[i * w..(i + 1) * w]);
    }
    out
}

/// Block length of [`I8Matrix`] scales.
const I8_BLOCK: usize = 32;

/// A row-major `[rows, cols]` matrix of int8 with one f32 scale per 32 consecutive weights of a
/// row (ggml's Q8_0 layout, but the activations stay f32).
#[derive(Clone)]
pub struct I8Matrix {
    rows: usize,
    cols: usize,
    q: Vec<i8>,
    scales: Vec<f32>,
}

impl std::fmt::Debug for I8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "I8Matrix[{}, {}]", self.rows, self.cols)
    }
}

impl I8Matrix {
    /// Quantizes `w` (`rows × cols`, cols a multiple of 32): scale = block max / 127, rounded.
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Self {
        assert!(w.len() == rows * cols && cols % I8_BLOCK == 0, "i8 matrix shape");
        let mut q = Vec::with_capacity(w.len());
        let mut scales = Vec::with_capacity(w.len() / I8_BLOCK);
        for block in w.chunks_exact(I8_BLOCK) {
            let max = block.iter().fold(0f32, |m, &v| m.max(v.abs()));
            let scale = max / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            scales.push(scale);
            q.extend(block.iter().map(|&v| (v * inv).round().clamp(-127.0, 127.0) as i8));
        }
        Self { rows, cols, q, scales }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn bytes(&self) -> usize {
        self.q.len() + self.scales.len() * 4
    }

    /// Row `r` dequantized, appended to `out`.
    pub fn row_into(&self, r: usize, out: &mut Vec<f32>) {
        let q = &self.q[r * self.cols..(r + 1) * self.cols];
        let s = &self.scales[r * self.cols / I8_BLOCK..(r + 1) * self.cols / I8_BLOCK];
        out.extend(q.iter().enumerate().map(|(k, &v)| v as f32 * s[k / I8_BLOCK]));
    }

    /// `x [m, cols] · selfᵀ → [m, rows]` (row-major).
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.cols, "i8 matmul input shape");
        split_rows(self.rows, self.cols, m, |rows| self.product(x, m, rows))
    }

    fn product(&self, x: &[f32], m: usize, rows: std::ops::Range<usize>) -> Vec<f32> {
        let n = rows.len();
        let mut out = vec![0f32; m * n];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                let mut i = 0;
                while i < m {
                    let g = (m - i).min(4);
                    let xs = &x[i * self.cols..(i + g) * self.cols];
                    let mut part = vec![0f32; g * n];
                    let (q, s, c, r) = (&self.q, &self.scales, self.cols, rows.clone());
                    // SAFETY: the CPU features were checked above; shapes are checked inside.
                    unsafe {
                        match g {
                            1 => avx::block_i8::<1>(q, s, c, r, xs, &mut part),
                            2 => avx::block_i8::<2>(q, s, c, r, xs, &mut part),
                            3 => avx::block_i8::<3>(q, s, c, r, xs, &mut part),
                            _ => avx::block_i8::<4>(q, s, c, r, xs, &mut part),
                        }
                    }
                    out[i * n..(i + g) * n].copy_from_slice(&part);
                    i += g;
                }
                return out;
            }
        }
        let mut row = Vec::with_capacity(self.cols);
        for (o, r) in rows.enumerate() {
            row.clear();
            self.row_into(r, &mut row);
            for i in 0..m {
                out[i * n + o] =
                    row.iter().zip(&x[i * self.cols..(i + 1) * self.cols]).map(|(a, b)| a * b).sum();
            }
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// `out[i * n + o] = Σ_k x[i, k] · w[rows.start + o, k]` for `M` input rows; weight rows in
    /// pairs, so each step runs `2 · M` independent FMA chains.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn block<const M: usize>(
        bits: &[u16],
        cols: usize,
        rows: std::ops::Range<usize>,
        x: &[f32],
        out: &mut [f32],
    ) {
        let n = rows.len();
        assert!(cols % 8 == 0 && x.len() == M * cols && out.len() == M * n);
        assert!(rows.end * cols <= bits.len());
        let xp = x.as_ptr();
        let mut o = 0;
        while o < n {
            let pair = (n - o).min(2);
            let r0 = rows.start + o;
            let w0 = bits.as_ptr().add(r0 * cols);
            // A lone last row reads itself twice and keeps the first result.
            let w1 = if pair == 2 { w0.add(cols) } else { w0 };
            let mut a0 = [_mm256_setzero_ps(); M];
            let mut a1 = [_mm256_setzero_ps(); M];
            let mut k = 0;
            while k < cols {
                let v0 = _mm256_cvtph_ps(_mm_loadu_si128(w0.add(k) as *const __m128i));
                let v1 = _mm256_cvtph_ps(_mm_loadu_si128(w1.add(k) as *const __m128i));
                for i in 0..M {
                    let xv = _mm256_loadu_ps(xp.add(i * cols + k));
                    a0[i] = _mm256_fmadd_ps(v0, xv, a0[i]);
                    a1[i] = _mm256_fmadd_ps(v1, xv, a1[i]);
                }
                k += 8;
            }
            for i in 0..M {
                out[i * n + o] = hsum(a0[i]);
                if pair == 2 {
                    out[i * n + o + 1] = hsum(a1[i]);
                }
            }
            o += pair;
        }
    }

    /// [`block`] for [`super::I8Matrix`]: per 32-weight block, `M` partial sums scaled once.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block_i8<const M: usize>(
        q: &[i8],
        scales: &[f32],
        cols: usize,
        rows: std::ops::Range<usize>,
        x: &[f32],
        out: &mut [f32],
    ) {
        let n = rows.len();
        assert!(cols % 32 == 0 && x.len() == M * cols && out.len() == M * n);
        assert!(rows.end * cols <= q.len() && rows.end * cols / 32 <= scales.len());
        let xp = x.as_ptr();
        let nb = cols / 32;
        for o in 0..n {
            let r = rows.start + o;
            let wp = q.as_ptr().add(r * cols);
            let sp = scales.as_ptr().add(r * nb);
            let mut total = [_mm256_setzero_ps(); M];
            for b in 0..nb {
                let raw = _mm256_loadu_si256(wp.add(b * 32) as *const __m256i);
                let lo = _mm256_castsi256_si128(raw);
                let hi = _mm256_extracti128_si256(raw, 1);
                let w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
                let w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
                let w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
                let w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
                let s = _mm256_set1_ps(*sp.add(b));
                let k = b * 32;
                for (i, total) in total.iter_mut().enumerate() {
                    let x0 = xp.add(i * cols + k);
                    let acc = _mm256_mul_ps(w0, _mm256_loadu_ps(x0));
                    let acc = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x0.add(8)), acc);
                    let acc = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x0.add(16)), acc);
                    let acc = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x0.add(24)), acc);
                    *total = _mm256_fmadd_ps(acc, s, *total);
                }
            }
            for i in 0..M {
                out[i * n + o] = hsum(total[i]);
            }
        }
    }

    #[target_feature(enable = "avx")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

/// IEEE half (bits) → f32, exact.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man · 2⁻²⁴.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// f32 → IEEE half (bits), round to nearest even; overflow goes to infinity.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal half: shift the mantissa (with its implicit 1) into place, rounding.
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = (rem > mid || (rem == mid && half & 1 == 1)) as u32;
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round = (rem > 0x1000 || (rem == 0x1000 && half & 1 == 1)) as u32;
    sign | (half + round) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_round_trip_is_exact_for_halves() {
        for h in (0u16..=0xffff).filter(|h| (h >> 10) & 0x1f != 0x1f) {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#06x}");
        }
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f32_to_f16(65_520.0), 0x7c00);
        assert_eq!(f32_to_f16(1.0 + 1.0 / 4096.0), 0x3c00); // ties to even
    }

    #[test]
    fn product_matches_f32_reference() {
        let (rows, cols) = (37, 64);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 64.0).collect();
        let mat = F16Matrix::from_f32(&w, rows, cols);
        for m in 1..=6 {
            let x: Vec<f32> = (0..m * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
            let y = mat.matmul_t(&x, m);
            for i in 0..m {
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|k| x[i * cols + k] * w[r * cols + k]).sum();
                    assert!((y[i * rows + r] - want).abs() < 1e-3, "m {m} ({i}, {r})");
                }
            }
        }
        let mut row = Vec::new();
        mat.row_into(3, &mut row);
        assert_eq!(row, w[3 * cols..4 * cols]);
        // int8: within half a quantization step per weight.
        let q = I8Matrix::from_f32(&w, rows, cols);
        for m in 1..=6 {
            let x: Vec<f32> = (0..m * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
            let y = q.matmul_t(&x, m);
            for i in 0..m {
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|k| x[i * cols + k] * w[r * cols + k]).sum();
                    assert!((y[i * rows + r] - want).abs() < 0.2, "i8 m {m} ({i}, {r})");
                }
            }
        }
    }
}
