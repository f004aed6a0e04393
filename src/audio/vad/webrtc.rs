//! WebRTC VAD (libfvad through the `webrtc-vad` crate): a GMM over six sub-band energies,
//! one boolean per 20 ms frame at 16 kHz, ≈ 1–2 µs per frame. Needs no model files, so it is
//! the fallback engine and the cheap gate in front of Silero.

use webrtc_vad::{SampleRate, Vad as Fvad, VadMode};

/// WebRTC VAD aggressiveness: higher modes report speech less readily (fewer false alarms on
/// noise, more missed soft speech).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebRtcMode {
    /// Mode 0: most speech detected, most false alarms.
    Quality,
    /// Mode 1.
    LowBitrate,
    /// Mode 2 (default).
    #[default]
    Aggressive,
    /// Mode 3: fewest false alarms.
    VeryAggressive,
}

impl WebRtcMode {
    fn fvad(self) -> VadMode {
        match self {
            Self::Quality => VadMode::Quality,
            Self::LowBitrate => VadMode::LowBitrate,
            Self::Aggressive => VadMode::Aggressive,
            Self::VeryAggressive => VadMode::VeryAggressive,
        }
    }
}

/// One libfvad instance at 16 kHz.
pub(super) struct WebRtcDetector {
    /// The C instance (a small struct on the C heap).
    fvad: Fvad,
    /// Re-applied after `reset`, which returns libfvad to its defaults (8 kHz, mode 0).
    mode: WebRtcMode,
}

// SAFETY: `webrtc_vad::Vad` holds a raw pointer to a heap-allocated libfvad instance that only
// this value owns (freed in its `Drop`). libfvad keeps no thread-local or global mutable state,
// so moving the owner to another thread is sound; it is not `Sync` and is only used via `&mut`.
unsafe impl Send for WebRtcDetector {}

impl WebRtcDetector {
    pub(super) fn new(mode: WebRtcMode) -> Self {
        Self { fvad: Fvad::new_with_rate_and_mode(SampleRate::Rate16kHz, mode.fvad()), mode }
    }

    /// Whether the 20 ms frame (exactly `Vad::FRAME_SAMPLES` samples at 16 kHz) holds voice.
    pub(super) fn is_voice(&mut self, frame: &[i16]) -> bool {
        // Only fails for lengths other than 10/20/30 ms; callers pass whole 20 ms frames.
        self.fvad.is_voice_segment(frame).unwrap_or(false)
    }

    pub(super) fn reset(&mut self) {
        self.fvad.reset();
        self.fvad.set_sample_rate(SampleRate::Rate16kHz);
        self.fvad.set_mode(self.mode.fvad());
    }
}

impl std::fmt::Debug for WebRtcDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcDetector").field("mode", &self.mode).finish()
    }
}
