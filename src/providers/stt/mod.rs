//! Speech-to-text: the [`SttEngine`] interface the listener transcribes through, its request and
//! result types, and the word error rate used to judge engines.
//!
//! ```text
//! mod.rs      SttEngine, SttRequest/Transcription/SttQuality, SttError, wer()
//! whisper/    embedded Whisper (tiny.en; base for `accurate` and other languages) on candle: CT2
//!             loader, log-mel, tokenizer, model, routing, worker pool
//! remote      OpenAI-compatible /audio/transcriptions over async-openai (final pass only)
//! split       a final-pass engine with another engine's partials (remote + embedded Whisper)
//! ```
//!
//! Engines are shared as [`SharedStt`] (`Arc<dyn SttEngine>`); `transcribe` is a boxed future so
//! the trait stays object-safe. Audio is always mono 16 kHz `f32` in −1..1.

pub mod remote;
pub mod split;
pub mod whisper;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use remote::OpenAiStt;
pub use split::SplitStt;
pub use whisper::{WhisperEngine, WhisperModel};

/// Sample rate of [`SttRequest::pcm_16k`].
pub const STT_SAMPLE_RATE_HZ: u32 = 16_000;

/// How hard the engine should try; the listener asks for cheap partials while the caller
/// speaks and one final pass at the end of the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SttQuality {
    /// Re-decode of the utterance so far, while the caller is still speaking.
    Partial,
    /// The end-of-turn transcript the agent answers (latency-critical).
    Final,
    /// `sttMode: "accurate"`: a stronger final pass, never less accurate than `Final`.
    Accurate,
}

/// One utterance to transcribe.
#[derive(Debug, Clone)]
pub struct SttRequest {
    /// Mono 16 kHz samples in −1..1 (shared, so partial re-decodes don't copy).
    pub pcm_16k: Arc<[f32]>,
    /// BCP-47 tag of the expected language, e.g. `en-US`.
    pub language: String,
    pub quality: SttQuality,
}

/// The text of one utterance and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    /// Transcript, trimmed; empty for silence or noise.
    pub text: String,
    /// 0..1: exp(mean token log-probability) for Whisper; 1.0 where the engine gives none.
    pub confidence: f32,
    /// [`SttEngine::name`] of the engine that produced it.
    pub engine: &'static str,
    /// Length of the audio transcribed.
    pub audio_ms: u64,
    /// Wall time spent transcribing (queueing excluded for the embedded engine).
    pub compute: Duration,
}

/// Speech-to-text faults. `Busy` and `Unsupported` are expected states the caller handles
/// (fall back to another engine, skip a partial); the rest are real failures.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error("no speech-to-text engine for language {language:?}")]
    Unsupported { language: String },
    #[error("speech-to-text engine busy: its queue is full")]
    Busy,
    #[error("speech-to-text engine stopped")]
    Gone,
    #[error("cannot load speech-to-text model from {path}: {reason}")]
    Load { path: std::path::PathBuf, reason: String },
    #[error("remote speech-to-text failed: {0}")]
    Remote(String),
    #[error("speech-to-text engine failed: {0}")]
    Engine(String),
}

pub type Result<T, E = SttError> = std::result::Result<T, E>;

/// A speech-to-text engine. Implementations are cheap to share and safe to call concurrently.
pub trait SttEngine: Send + Sync + 'static {
    /// Short stable name, reported in [`Transcription::engine`] and metrics.
    fn name(&self) -> &'static str;
    /// Whether the engine can transcribe this BCP-47 language (e.g. `en-US`).
    fn covers(&self, language: &str) -> bool;
    /// The name of the model that transcribes `language` (what `GET /v1/agents/languages`
    /// reports), `None` when not covered. Engines with one model answer [`SttEngine::name`].
    fn engine_for(&self, language: &str) -> Option<&'static str> {
        self.covers(language).then(|| self.name())
    }
    /// Whether the engine is cheap enough for partial re-decodes while the caller speaks.
    fn partials(&self) -> bool;
    /// Transcribes one utterance.
    fn transcribe(&self, req: SttRequest)
        -> Pin<Box<dyn Future<Output = Result<Transcription>> + Send + '_>>;
}

/// How engines are passed around.
pub type SharedStt = Arc<dyn SttEngine>;

/// Primary language subtag of a BCP-47 tag, lower-cased: `en-US` → `en`.
pub fn primary_language(tag: &str) -> String {
    tag.split(['-', '_']).next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Word error rate of `hypothesis` against `reference`: (substitutions + deletions +
/// insertions) / reference words, after normalising both (lower case, punctuation dropped,
/// numbers spelled out so "7" == "seven", "2nd" stays as is). An empty reference gives 0 for
/// an empty hypothesis and 1 otherwise. Can exceed 1 when the hypothesis adds many words.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = normalise_words(reference);
    let h = normalise_words(hypothesis);
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    // Word-level Levenshtein distance, one row at a time.
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[h.len()] as f64 / r.len() as f64
}

/// Lower-cased words without punctuation; whole numbers (up to 999 999) spelled out, so "7"
/// and "seven" are the same word.
pub fn normalise_words(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .map(|c| match c {
            c if c.is_alphanumeric() => c.to_lowercase().next().unwrap_or(c),
            '\'' | '’' => '\0',
            _ => ' ',
        })
        .filter(|&c| c != '\0')
        .collect();
    let mut words = Vec::new();
    for w in cleaned.split_whitespace() {
        match w.parse::<u32>() {
            // "007" stays a digit string: leading zeros are read digit by digit, not as a number.
            Ok(n) if n < 1_000_000 && (!w.starts_with('0') || w == "0") => spell_number(n, &mut words),
            _ => words.push(w.to_string()),
        }
    }
    words
}

fn spell_number(n: u32, out: &mut Vec<String>) {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] =
        ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    fn below_thousand(n: u32, out: &mut Vec<String>) {
        let (h, rest) = (n / 100, n % 100);
        if h > 0 {
            out.push(ONES[h as usize].to_string());
            out.push("hundred".to_string());
        }
        if rest >= 20 {
            out.push(TENS[(rest / 10) as usize].to_string());
            if rest % 10 > 0 {
                out.push(ONES[(rest % 10) as usize].to_string());
            }
        } else if rest > 0 || h == 0 {
            out.push(ONES[rest as usize].to_string());
        }
    }
    if n >= 1000 {
        below_thousand(n / 1000, out);
        out.push("thousand".to_string());
        if n % 1000 > 0 {
            below_thousand(n % 1000, out);
        }
    } else {
        below_thousand(n, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wer_identical_ignores_case_and_punctuation() {
        assert_eq!(wer("Hello, I would like a table.", "hello i would like a table"), 0.0);
        assert_eq!(wer("What's the weather?", "whats the weather"), 0.0);
    }

    #[test]
    fn wer_counts_substitutions_deletions_insertions() {
        assert!((wer("a b c d", "a x c d") - 0.25).abs() < 1e-9);
        assert!((wer("a b c d", "a c d") - 0.25).abs() < 1e-9);
        assert!((wer("a b c d", "a b c d e f") - 0.5).abs() < 1e-9);
        assert!((wer("a b", "") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn wer_spells_out_numbers() {
        assert_eq!(wer("for two people at seven", "for 2 people at 7"), 0.0);
        assert_eq!(wer("twenty one", "21"), 0.0);
        assert_eq!(wer("one hundred and five", "one hundred and 5"), 0.0);
        assert_eq!(wer("two thousand twenty four", "2024"), 0.0);
    }

    #[test]
    fn wer_empty_reference() {
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("", "you"), 1.0);
    }

    #[test]
    fn primary_language_of_bcp47() {
        assert_eq!(primary_language("en-US"), "en");
        assert_eq!(primary_language("EN"), "en");
        assert_eq!(primary_language("pt_BR"), "pt");
    }
}
