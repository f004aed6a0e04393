//! espeak-ng, run as a subprocess (`espeak-ng --stdout`, text on stdin): formant speech in every
//! language espeak-ng has, no weights, ~ms per sentence. A subprocess rather than linking
//! libespeak-ng keeps the server binary free of the GPL (MODELS.md A1).

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{TtsEngine, TtsError, TtsRequest};
use crate::audio::sinc::resample_block;
use crate::call::PIPELINE_RATE_HZ;

const ENGINE: &str = "espeak-ng";
/// espeak-ng's default speaking rate, words per minute; `speed` scales it.
pub const BASE_WPM: f64 = 175.0;

/// The espeak-ng subprocess engine.
#[derive(Debug, Clone)]
pub struct EspeakTts {
    program: String,
}

impl Default for EspeakTts {
    fn default() -> Self {
        Self { program: ENGINE.to_string() }
    }
}

impl EspeakTts {
    pub fn new() -> Self {
        Self::default()
    }

    async fn run(&self, req: TtsRequest) -> Result<Vec<i16>, TtsError> {
        let fail = |detail: String| TtsError::Engine { engine: ENGINE, detail };
        if req.engine_voice.is_empty()
            || !req.engine_voice.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(TtsError::UnknownVoice { engine: ENGINE, voice: req.engine_voice });
        }
        let wpm = (BASE_WPM * req.speed.clamp(0.5, 2.0)).round() as u32;
        let mut child = Command::new(&self.program)
            .args(["--stdout", "-v", &req.engine_voice, "-s", &wpm.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", self.program)))?;
        let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin".into()))?;
        let text = req.text.replace(['\n', '\r'], " ");
        stdin.write_all(text.as_bytes()).await.map_err(|e| fail(e.to_string()))?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        let (rate_hz, pcm) = parse_wav(&out.stdout).ok_or_else(|| fail("unreadable WAV output".into()))?;
        Ok(resample_block(&pcm, rate_hz, PIPELINE_RATE_HZ))
    }
}

impl TtsEngine for EspeakTts {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn synthesize(
        &self,
        req: TtsRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<i16>, TtsError>> + Send + '_>> {
        Box::pin(self.run(req))
    }
}

/// Mono 16-bit PCM from a RIFF/WAVE byte stream: (sample rate, samples). espeak-ng writes the
/// data chunk's size as unknown when streaming to stdout, so the data runs to the end.
pub fn parse_wav(bytes: &[u8]) -> Option<(u32, Vec<i16>)> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut rate_hz = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let fmt = bytes.get(body..body + 16)?;
            let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
            if channels != 1 || bits != 16 {
                return None;
            }
            rate_hz = Some(u32::from_le_bytes(fmt[4..8].try_into().ok()?));
        } else if id == b"data" {
            let end = if size == 0 || size > bytes.len() - body { bytes.len() } else { body + size };
            let pcm = bytes[body..end].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
            return Some((rate_hz?, pcm));
        }
        pos = body + size + (size & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn speaks_a_sentence_at_16_khz_and_speed_changes_its_length() {
        let tts = EspeakTts::new();
        let req = |speed| TtsRequest {
            text: "Thank you for calling. How can I help you today?".into(),
            engine_voice: "en-us".into(),
            speed,
        };
        let normal = tts.synthesize(req(1.0)).await.unwrap();
        let secs = normal.len() as f64 / f64::from(PIPELINE_RATE_HZ);
        assert!((1.5..6.0).contains(&secs), "{secs} s");
        let peak = normal.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 3000, "audible: peak {peak}");
        let fast = tts.synthesize(req(2.0)).await.unwrap();
        let ratio = fast.len() as f64 / normal.len() as f64;
        assert!((0.4..0.75).contains(&ratio), "2× speed lasts {ratio} as long");
    }

    #[tokio::test]
    async fn a_malformed_voice_name_is_refused_before_running_anything() {
        let tts = EspeakTts::new();
        let req = TtsRequest { text: "hi".into(), engine_voice: "en; rm -rf /".into(), speed: 1.0 };
        assert!(matches!(tts.synthesize(req).await, Err(TtsError::UnknownVoice { .. })));
        // (espeak-ng itself falls back to its default voice for unknown names: the voice
        // catalogue, not the engine, is what agents are checked against.)
    }

    #[test]
    fn wav_parsing_handles_unknown_data_length() {
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 1, 0]);
        wav.extend_from_slice(&22_050u32.to_le_bytes());
        wav.extend_from_slice(&44_100u32.to_le_bytes());
        wav.extend_from_slice(&[2, 0, 16, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 2, 0, 255, 255]);
        assert_eq!(parse_wav(&wav), Some((22_050, vec![1, 2, -1])));
        assert_eq!(parse_wav(b"nope"), None);
    }
}
