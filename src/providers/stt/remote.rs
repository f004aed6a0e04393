//! Remote speech-to-text over any OpenAI-compatible `POST {base}/audio/transcriptions`
//! (OpenAI, Groq, a local faster-whisper server, …) through `async-openai`.
//!
//! The utterance is sent as a 16-bit 16 kHz mono WAV built in memory, with the language's
//! primary subtag (`en-US` → `en`) and `response_format=json`. A network round trip per request
//! makes it a final-pass engine only (`partials() == false`); it covers any language and leaves
//! the check to the service.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::types::audio::{AudioInput, AudioResponseFormat, CreateTranscriptionRequestArgs};
use async_openai::Client;

use super::{primary_language, Result, SttEngine, SttError, SttRequest, Transcription, STT_SAMPLE_RATE_HZ};

/// Name reported in transcriptions.
pub const REMOTE_ENGINE_NAME: &str = "openai-stt";

/// Whole-request timeout: a final pass that takes longer has missed its turn anyway.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// OpenAI-compatible transcription client.
#[derive(Debug, Clone)]
pub struct OpenAiStt {
    /// async-openai client carrying the base URL and key.
    client: Client<OpenAIConfig>,
    /// Model name sent with each request (`whisper-1`, `gpt-4o-mini-transcribe`, …).
    model: String,
}

impl OpenAiStt {
    /// `base_url` includes the API version path, e.g. `https://api.openai.com/v1`.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>, model: impl Into<String>) -> Self {
        let config = OpenAIConfig::new().with_api_base(base_url).with_api_key(api_key);
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_default();
        Self { client: Client::build(http, config), model: model.into() }
    }
}

/// 16-bit PCM mono WAV (44-byte RIFF header) of `pcm` in −1..1 at `rate_hz`.
pub fn wav_bytes(pcm: &[f32], rate_hz: u32) -> Vec<u8> {
    let data_len = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate_hz.to_le_bytes());
    out.extend_from_slice(&(rate_hz * 2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &x in pcm {
        let s = (x.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The one field of a transcription response we need.
#[derive(Debug, serde::Deserialize)]
struct TextOnly {
    text: String,
}

impl SttEngine for OpenAiStt {
    fn name(&self) -> &'static str {
        REMOTE_ENGINE_NAME
    }

    fn covers(&self, _language: &str) -> bool {
        true
    }

    fn partials(&self) -> bool {
        false
    }

    fn transcribe(
        &self,
        req: SttRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Transcription>> + Send + '_>> {
        Box::pin(async move {
            let started = Instant::now();
            let audio_ms = req.pcm_16k.len() as u64 * 1000 / STT_SAMPLE_RATE_HZ as u64;
            let wav = wav_bytes(&req.pcm_16k, STT_SAMPLE_RATE_HZ);
            let mut args = CreateTranscriptionRequestArgs::default();
            args.file(AudioInput::from_vec_u8("audio.wav".to_string(), wav))
                .model(self.model.clone())
                .response_format(AudioResponseFormat::Json);
            let language = primary_language(&req.language);
            if !language.is_empty() {
                args.language(language);
            }
            let request = args.build().map_err(|e| SttError::Remote(e.to_string()))?;
            // Read only `text`: OpenAI-compatible servers differ in the rest (`usage` is often
            // missing, which async-openai's typed response requires).
            let response: TextOnly = self
                .client
                .audio()
                .transcription()
                .create_byot(request)
                .await
                .map_err(|e| SttError::Remote(e.to_string()))?;
            Ok(Transcription {
                text: response.text.trim().to_string(),
                confidence: 1.0,
                engine: REMOTE_ENGINE_NAME,
                audio_ms,
                compute: started.elapsed(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_and_samples() {
        let wav = wav_bytes(&[0.0, 1.0, -1.0, 0.5], 16_000);
        assert_eq!(wav.len(), 44 + 8);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[4..8].try_into().unwrap()), 36 + 8);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 16_000);
        assert_eq!(&wav[36..40], b"data");
        let s: Vec<i16> = wav[44..].chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        assert_eq!(s, vec![0, 32767, -32767, 16384]);
    }
}
