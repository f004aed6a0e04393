//! Semantic end-of-turn detection: Pipecat's Smart-Turn v3.2 (int8 ONNX, from the pipecat-ai
//! wheel) run through onnxruntime. Given the last 8 s of the caller's audio it says how likely
//! the caller has finished their turn; the turn state machine uses it to shorten or lengthen its
//! endpointing silence (`TurnHint`).
//!
//! Input features (as Pipecat computes them): the last [`SmartTurn::WINDOW_SAMPLES`] of 16 kHz
//! audio, zero-padded at the front, normalised to zero mean and unit variance, then Whisper's
//! log-mel ([`LogMel`]) → `input_features` f32 `[1, 80, 800]`; output: one sigmoid probability.
//!
//! Opt-in (`--smart-turn`): MODELS.md measured its verdicts on synthetic (espeak) speech as
//! unintuitive, so the text heuristic stays the default until it is judged on real callers.

use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::value::TensorRef;

use super::onnx;
use super::stt::whisper::mel::LogMel;

/// Smart-Turn faults.
#[derive(Debug, thiserror::Error)]
pub enum TurnDetectError {
    #[error(transparent)]
    Onnx(#[from] onnx::OnnxError),
    #[error("smart-turn inference: {0}")]
    Inference(#[from] ort::Error),
    #[error("smart-turn returned {0} values, expected 1")]
    Output(usize),
}

/// The shared model (one session; a run takes tens of ms, at most once per caller pause).
pub struct SmartTurn {
    session: Mutex<Session>,
    mel: LogMel,
}

impl SmartTurn {
    /// The model file inside the models directory.
    pub const MODEL: &'static str = "turn/smart-turn-v3.2-cpu.onnx";
    /// 8 s at 16 kHz.
    pub const WINDOW_SAMPLES: usize = 8 * 16_000;
    /// Feature frames of the window.
    pub const FRAMES: usize = Self::WINDOW_SAMPLES / LogMel::HOP;

    pub fn load(models_dir: &Path) -> Result<Self, TurnDetectError> {
        onnx::runtime(models_dir)?;
        let session = onnx::session(&models_dir.join(Self::MODEL), 1)?;
        Ok(Self { session: Mutex::new(session), mel: LogMel::new() })
    }

    /// The probability (0…1) that the caller has finished, from the audio of their turn so far
    /// (16 kHz, −1…1; only the last 8 s are used). Blocking: run it off the async runtime.
    pub fn predict(&self, pcm: &[f32]) -> Result<f32, TurnDetectError> {
        let features = self.features(pcm);
        let input = TensorRef::from_array_view(([1usize, LogMel::N_MELS, Self::FRAMES], &features[..]))?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(ort::inputs!["input_features" => input])?;
        let (_, out) = outputs[0].try_extract_tensor::<f32>()?;
        match out {
            [p] => Ok(*p),
            other => Err(TurnDetectError::Output(other.len())),
        }
    }

    /// `[80][800]` log-mel of the normalised, front-padded last 8 s.
    pub fn features(&self, pcm: &[f32]) -> Vec<f32> {
        let tail = &pcm[pcm.len().saturating_sub(Self::WINDOW_SAMPLES)..];
        let n = tail.len().max(1) as f64;
        let mean = tail.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = tail.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        let scale = 1.0 / (var + 1e-7).sqrt();
        let mut window = vec![0.0f32; Self::WINDOW_SAMPLES - tail.len()];
        window.extend(tail.iter().map(|&x| ((f64::from(x) - mean) * scale) as f32));
        let mut out = Vec::new();
        self.mel.compute_into(&window, Self::FRAMES, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Option<SmartTurn> {
        let dir = std::env::var_os("SWITCHBOARD_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        match SmartTurn::load(&dir) {
            Ok(m) => Some(m),
            Err(e) => panic!("smart-turn must load from {} (run `make models`): {e}", dir.display()),
        }
    }

    #[test]
    fn features_have_the_models_shape_and_pad_at_the_front() {
        let Some(m) = model() else { return };
        let tone: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.1).sin() * 0.3).collect();
        let f = m.features(&tone);
        assert_eq!(f.len(), 80 * 800);
        // The first 7 s are padding (equal, quiet rows); the last second carries the tone.
        let frame = |t: usize| (0..80).map(|b| f[b * 800 + t]).sum::<f32>();
        assert!(frame(790) > frame(100) + 10.0, "{} vs {}", frame(790), frame(100));
    }

    #[test]
    fn predicts_a_probability_for_speech_and_silence() {
        let Some(m) = model() else { return };
        let speech: Vec<f32> = crate::audio::testutil::fixture_l16("caller-hello.l16-16k.wav")
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        for pcm in [speech.as_slice(), &speech[..speech.len() / 2], &[0.0f32; 16_000][..]] {
            let p = m.predict(pcm).unwrap();
            assert!((0.0..=1.0).contains(&p), "{p}");
        }
    }
}
