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

/// While alive, this thread's SSE arithmetic flushes subnormal results to zero (FTZ) and reads
/// subnormal inputs as zero (DAZ); the previous MXCSR comes back on drop.
///
/// Subnormal operands and results cost a microcode assist on x86 (tens to hundreds of cycles
/// per operation instead of one). RNNoise's transforms meet them: with the guard around the
/// denoiser, the server spent 13 % less CPU on the same 5-call loopback run (`perf` samples of
/// the `benches/pipecat` path, 19.3 k → 16.6 k), most of it out of the FFTs. Flushing changes a
/// value only below 1.2·10⁻³⁸ — 290 dB under an i16 sample — so no audible or countable output
/// moves. Rust assumes the default floating-point environment when it folds constants, so code
/// under the guard can differ from compile-time evaluation only in that same subnormal range;
/// the guard is scoped to our DSP and restores the caller's state.
#[must_use = "the flags are restored when the guard drops"]
pub(crate) struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

/// MXCSR bits: flush-to-zero (15) and denormals-are-zero (6).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

impl FlushSubnormals {
    #[inline]
    pub(crate) fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            if saved & FTZ_DAZ != FTZ_DAZ {
                write_mxcsr(saved | FTZ_DAZ);
            }
            Self { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }
}

impl Drop for FlushSubnormals {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.saved & FTZ_DAZ != FTZ_DAZ {
            write_mxcsr(self.saved);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn read_mxcsr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR (present on every x86-64 CPU) into `csr`.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr as *mut u32, options(nostack, preserves_flags));
    }
    csr
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn write_mxcsr(csr: u32) {
    // SAFETY: `ldmxcsr` loads a value read from MXCSR with only the FTZ/DAZ bits changed (no
    // reserved bits set, exceptions still masked), from a live `u32`.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr as *const u32, options(nostack, readonly, preserves_flags));
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use super::*;

    fn tiny_product() -> f32 {
        // 1e-20 · 1e-20 = 1e-40: a subnormal f32.
        black_box(1e-20f32) * black_box(1e-20f32)
    }

    #[test]
    fn subnormals_flush_only_inside_the_guard() {
        assert!(tiny_product() > 0.0, "subnormals are kept by default");
        {
            let _flush = FlushSubnormals::new();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(tiny_product(), 0.0);
            // Nested guards leave the outer one in force.
            drop(FlushSubnormals::new());
            #[cfg(target_arch = "x86_64")]
            assert_eq!(tiny_product(), 0.0);
            assert_eq!(black_box(1.5f32) * black_box(2.0f32), 3.0);
        }
        assert!(tiny_product() > 0.0, "the caller's state is back");
    }
}
