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
