//! Which hand-written vector kernels the native model engines (Silero's dense layers, RNNoise's
//! network and pitch search) run: chosen once from the CPU's features.

/// Which kernels run; chosen once per process from the CPU's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Plain Rust (any CPU).
    Portable,
    /// AVX2 + FMA intrinsics (x86-64 with both features).
    Avx2Fma,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Self::Avx2Fma;
        }
        Self::Portable
    }

    /// Every kernel this CPU runs (the portable one first), for tests that compare them.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let mut k = vec![Self::Portable];
        if Self::detect() == Self::Avx2Fma {
            k.push(Self::Avx2Fma);
        }
        k
    }
}

/// Sum of the 8 lanes of an AVX register (for the engines' AVX2 kernels, inlined into them).
///
/// # Safety
/// The CPU must support AVX (every [`Kernel::Avx2Fma`] CPU does).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}
