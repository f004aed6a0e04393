//! The synchronous transcription core: [`WhisperModel`] turns 16 kHz PCM into text with the
//! network in `model.rs` — log-mel, trimmed encoder input, greedy or beam-search decoding, and
//! the guards that keep silence and noise from turning into invented sentences.
//!
//! Speed levers (MODELS.md B3): the encoder sees the utterance rounded up to a whole second, not
//! a 30 s window ([`WhisperModel::frames_for`]); the mel front end is an FFT; the decoder step
//! caches self-attention K/V and computes cross-attention K/V once per utterance.
//!
//! What the trimming costs in accuracy, and the fix: Whisper was trained on 30 s windows whose
//! speech is followed by padding. Cut to the utterance, it often cannot tell that the speech has
//! ended and repeats its last word ("Yeah yeah yeah" for "yeah", "…by the window please
//! please"). A final pass therefore appends silence (zeros, as Whisper's own padding) before
//! rounding up: [`FINAL_TAIL_SAMPLES`] (2 s) with tiny.en, [`BASE_FINAL_TAIL_SAMPLES`] (1 s)
//! with base. Partials, re-decoded at a cadence while the caller is still speaking, do not.
//!
//! Guards: audio below [`SILENCE_RMS`] is not decoded at all; an utterance whose no-speech
//! probability (after `<|startoftranscript|>`) is above [`NO_SPEECH_PROB`] while its mean token
//! log-probability is below [`LOW_LOGPROB`] returns empty text (Whisper's own rule); the token
//! budget grows with the audio length ([`max_tokens`]); a decode that starts repeating the
//! same n-gram stops and keeps a single copy; and a transcript ending with the same phrase twice
//! keeps one ([`drop_doubled_ending`]).
//!
//! Prompt: English-only models (`.en`) get `<|startoftranscript|><|notimestamps|>`; multilingual
//! ones `<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>` with `xx` the language asked
//! for ([`whisper_language`] maps the BCP-47 tag, the token id is looked up by name). The same
//! suppression (the CT2 config's `suppress_ids`, every special token but end-of-text, so no
//! language switch or timestamp mid-text) and guards apply to both.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};

use super::ct2::Ct2File;
use super::mel::LogMel;
use super::model::{CrossKv, Format, Network, Precision};
use super::tokenizer::Tokenizer;
use crate::providers::stt::{SttError, SttQuality, Transcription, STT_SAMPLE_RATE_HZ};

/// RMS below this (−60 dBFS) is treated as silence without running the model.
pub const SILENCE_RMS: f32 = 1e-3;
/// Whisper's no-speech threshold.
pub const NO_SPEECH_PROB: f32 = 0.6;
/// Whisper's mean log-probability threshold for its no-speech rule.
pub const LOW_LOGPROB: f32 = -1.0;
/// Silence appended after the audio in a final pass (`Final`, `Accurate`) by tiny.en (and any
/// model but base): 2 s. WER of tiny.en over the 13 recorded English Piper calls
/// (`tests/call_transcripts.rs`) by tail: none 5.9 %, 0.3 s 6.3 %, 0.6 s 4.5 %, 1 s 4.5 %,
/// 2 s 3.2 %, 3 s 3.2 %. It costs encoder time (benches/README).
pub const FINAL_TAIL_SAMPLES: usize = 2 * STT_SAMPLE_RATE_HZ as usize;
/// The same for base: 1 s. Base over the Piper calls: none 4.1 %, 0.6 s 3.6 %, 1 s 2.7 %,
/// 2 s 2.7 %; but with 2 s it hears the espeak Spanish call at 100 % (78.6 % with none, 71.4 %
/// with 1 s) and caller-question at 10 dB SNR at 25 % (16.7 % with none or 1 s).
pub const BASE_FINAL_TAIL_SAMPLES: usize = STT_SAMPLE_RATE_HZ as usize;
/// Beam width of the `Accurate` pass.
pub const BEAM_WIDTH: usize = 4;
/// Longest audio one encoder pass takes; longer input is transcribed in windows of this.
pub const WINDOW_SAMPLES: usize = 30 * STT_SAMPLE_RATE_HZ as usize;
/// Weight formats: the encoder (and the cross-attention K/V, one pass over all audio frames) in
/// f32 for candle's gemm; the decoder's per-token matmuls and the 51 864-token output projection
/// in int8 with a scale per 32 weights (a quarter of the bytes read per token; transcripts of
/// every fixture unchanged).
pub const PRECISION: Precision = Precision { encoder: Format::F32, decoder: Format::I8, embed: Format::I8 };
/// The engine name reported in transcriptions by tiny.en (see [`WhisperModel::name`]).
pub const ENGINE_NAME: &str = "whisper-tiny.en";

/// Whisper's language code for a BCP-47 tag: the primary subtag, lower-cased, with the few codes
/// Whisper spells differently (`nb` Norwegian Bokmål → `no`, `jv` Javanese → `jw`, the
/// withdrawn `iw` → `he`). Whether the model knows the code is [`WhisperModel::covers`]'s answer.
pub fn whisper_language(tag: &str) -> String {
    let primary = crate::providers::stt::primary_language(tag);
    match primary.as_str() {
        "nb" => "no".to_string(),
        "jv" => "jw".to_string(),
        "iw" => "he".to_string(),
        _ => primary,
    }
}

/// Name of a Whisper model from its shape: size by width and depth, `.en` when English-only.
fn model_name(d_model: usize, layers: usize, english_only: bool) -> &'static str {
    match (d_model, layers, english_only) {
        (384, 4, true) => ENGINE_NAME,
        (384, 4, false) => "whisper-tiny",
        (512, 6, true) => "whisper-base.en",
        (512, 6, false) => "whisper-base",
        (768, 12, true) => "whisper-small.en",
        (768, 12, false) => "whisper-small",
        (_, _, true) => "whisper.en",
        (_, _, false) => "whisper",
    }
}

/// Token budget for `seconds` of audio: generous for fast talkers (8 tokens/s plus 10), capped
/// at half the text context like Whisper's `sample_len`.
pub fn max_tokens(seconds: f32, n_text_ctx: usize) -> usize {
    let budget = 10 + (seconds.max(0.0) * 8.0).ceil() as usize;
    budget.min(n_text_ctx / 2)
}

/// Where the time of one transcription went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    pub mel: Duration,
    pub encoder: Duration,
    pub decoder: Duration,
    /// Tokens generated (end-of-text included).
    pub tokens: usize,
}

/// What the decoder produced for one window.
#[derive(Debug, Clone, Default)]
struct Decoded {
    tokens: Vec<u32>,
    sum_logprob: f32,
    /// Sampled tokens including the end-of-text (denominator of the mean log-probability).
    sampled: usize,
    no_speech_prob: f32,
}

impl Decoded {
    fn avg_logprob(&self) -> f32 {
        if self.sampled == 0 {
            0.0
        } else {
            self.sum_logprob / self.sampled as f32
        }
    }
}

/// A Whisper model (tiny.en, base, …) loaded once; `&self` methods are safe to call from
/// several threads.
pub struct WhisperModel {
    /// Reported in [`Transcription::engine`] (`whisper-tiny.en`, `whisper-base`).
    name: &'static str,
    net: Network,
    tokenizer: Tokenizer,
    mel: LogMel,
    /// Ids never sampled: the CT2 config's `suppress_ids` plus every special token but `<|endoftext|>`.
    suppress: Vec<u32>,
    /// Ids not sampled first (`suppress_ids_begin`: a bare space, end-of-text).
    suppress_begin: Vec<u32>,
    /// Bytes of weights held (see [`PRECISION`]).
    weight_bytes: usize,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel").field("dims", &self.net.dims).finish()
    }
}

#[derive(serde::Deserialize, Default)]
struct Ct2Config {
    #[serde(default)]
    suppress_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids_begin: Vec<u32>,
}

fn load_err(path: &Path, reason: impl std::fmt::Display) -> SttError {
    SttError::Load { path: path.to_path_buf(), reason: reason.to_string() }
}

fn engine_err(e: candle_core::Error) -> SttError {
    SttError::Engine(e.to_string())
}

impl WhisperModel {
    /// Loads `model.bin`, `config.json` and `tokenizer.json` from `dir` (a CTranslate2 Whisper).
    pub fn load(dir: &Path) -> Result<Self, SttError> {
        let bin = dir.join("model.bin");
        let bytes = std::fs::read(&bin).map_err(|e| load_err(&bin, e))?;
        let file = Ct2File::parse(bytes).map_err(|e| load_err(&bin, e))?;
        if file.spec != "WhisperSpec" {
            return Err(load_err(&bin, format!("not a Whisper model (spec {})", file.spec)));
        }
        // candle 0.11 runs element-wise ops over ≥ 64 Ki elements on its barrier pool, whose
        // caller spins until every worker is done: on 2 cores shared with other work (a second
        // STT worker, TTS, compiles) a descheduled worker stalls every such op for a time slice.
        // Those ops are cheap; keep them on the calling thread (matmuls still use gemm's rayon
        // threads). Must happen before candle's first parallel op; an explicit setting wins.
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
        let prec = PRECISION;
        let net = Network::load(&file, prec, &Device::Cpu).map_err(|e| load_err(&bin, e))?;
        drop(file);
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::load(&tok_path).map_err(|e| load_err(&tok_path, e))?;
        let cfg_path = dir.join("config.json");
        let config: Ct2Config = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| load_err(&cfg_path, e))?,
            Err(_) => Ct2Config::default(),
        };
        let mut tokenizer = tokenizer;
        if net.dims.n_vocab < 51_865 {
            // English-only models (.en, 51864 ids) list language tokens but were not trained on them.
            tokenizer.drop_languages();
        } else if tokenizer.special.english.is_none() {
            return Err(load_err(&tok_path, "a multilingual model whose tokenizer has no <|en|>"));
        }
        let name = model_name(net.dims.d_model, net.dims.dec_layers, tokenizer.special.english.is_none());
        let sp = tokenizer.special;
        let mut suppress = config.suppress_ids;
        suppress.extend(sp.eot + 1..net.dims.n_vocab as u32);
        suppress.sort_unstable();
        suppress.dedup();
        suppress.retain(|&id| (id as usize) < net.dims.n_vocab);
        let mut suppress_begin = config.suppress_ids_begin;
        if suppress_begin.is_empty() {
            suppress_begin = vec![220, sp.eot];
        }
        let weight_bytes = net.weight_bytes();
        Ok(Self { name, net, tokenizer, mel: LogMel::new(), suppress, suppress_begin, weight_bytes })
    }

    /// `whisper-tiny.en`, `whisper-base`, …: what [`Transcription::engine`] reports.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Layers, width, heads and vocabulary, as read from the file.
    pub fn dims(&self) -> super::model::Dims {
        self.net.dims
    }

    /// Whether the model can transcribe BCP-47 `language`: English for `.en` models, any language
    /// with a token in the tokenizer for multilingual ones.
    pub fn covers(&self, language: &str) -> bool {
        self.language_token(language).is_ok()
    }

    /// The language token of the prompt: `None` for English-only models (which have none).
    fn language_token(&self, language: &str) -> Result<Option<u32>, SttError> {
        let code = whisper_language(language);
        let unsupported = || SttError::Unsupported { language: language.to_string() };
        match self.tokenizer.special.english {
            None if code == "en" => Ok(None),
            None => Err(unsupported()),
            Some(_) => self.tokenizer.language(&code).map(Some).ok_or_else(unsupported),
        }
    }

    /// Bytes of weights held in memory (see [`PRECISION`]).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Whether this model is English-only (`.en`): no language tokens in its vocabulary.
    pub fn english_only(&self) -> bool {
        self.tokenizer.special.english.is_none()
    }

    /// The log-mel front end (shared with other Whisper-feature models).
    pub fn log_mel(&self) -> &LogMel {
        &self.mel
    }

    /// Encoder frames for `samples`: rounded up to a whole second, at least 1 s, at most 30 s.
    pub fn frames_for(&self, samples: usize) -> usize {
        let per_second = STT_SAMPLE_RATE_HZ as usize / LogMel::HOP;
        let seconds = samples.div_ceil(STT_SAMPLE_RATE_HZ as usize).max(1);
        (seconds * per_second).min(2 * self.net.dims.n_audio_ctx)
    }

    /// Mel features of one window (≤ 30 s): `([n_mels][frames], frames)`.
    pub fn features(&self, pcm: &[f32]) -> (Vec<f32>, usize) {
        self.features_with_tail(pcm, 0)
    }

    /// [`WhisperModel::features`] with `tail` samples of silence after `pcm` (before rounding
    /// up to a whole second; still at most 30 s in all).
    pub fn features_with_tail(&self, pcm: &[f32], tail: usize) -> (Vec<f32>, usize) {
        let frames = self.frames_for(pcm.len() + tail);
        (self.mel.compute(pcm, frames), frames)
    }

    /// Encoder output `[1, frames / 2, d]` for features from [`WhisperModel::features`].
    pub fn encode(&self, mel: &[f32], frames: usize) -> Result<Tensor, SttError> {
        self.net.encode(mel, frames).map_err(engine_err)
    }

    /// Transcribes one utterance of mono 16 kHz English PCM.
    pub fn transcribe(&self, pcm: &[f32], quality: SttQuality) -> Result<Transcription, SttError> {
        self.transcribe_in(pcm, "en", quality)
    }

    /// Transcribes one utterance of mono 16 kHz PCM in BCP-47 `language`
    /// ([`SttError::Unsupported`] when the model does not know it).
    pub fn transcribe_in(
        &self,
        pcm: &[f32],
        language: &str,
        quality: SttQuality,
    ) -> Result<Transcription, SttError> {
        self.transcribe_timed_in(pcm, language, quality).map(|(t, _)| t)
    }

    /// [`WhisperModel::transcribe`] plus the per-stage split.
    pub fn transcribe_timed(
        &self,
        pcm: &[f32],
        quality: SttQuality,
    ) -> Result<(Transcription, StageTimings), SttError> {
        self.transcribe_timed_in(pcm, "en", quality)
    }

    /// [`WhisperModel::transcribe_in`] plus the per-stage split.
    pub fn transcribe_timed_in(
        &self,
        pcm: &[f32],
        language: &str,
        quality: SttQuality,
    ) -> Result<(Transcription, StageTimings), SttError> {
        let started = Instant::now();
        let prompt = self.prompt(self.language_token(language)?);
        let audio_ms = pcm.len() as u64 * 1000 / STT_SAMPLE_RATE_HZ as u64;
        let mut timings = StageTimings::default();
        let mut texts = Vec::new();
        let (mut sum_lp, mut sampled) = (0.0f32, 0usize);
        let tail = match (quality, self.name) {
            (SttQuality::Partial, _) => 0,
            (_, "whisper-base") => BASE_FINAL_TAIL_SAMPLES,
            _ => FINAL_TAIL_SAMPLES,
        };
        for window in pcm.chunks(WINDOW_SAMPLES) {
            if rms(window) < SILENCE_RMS {
                continue;
            }
            let t = Instant::now();
            let (mel, frames) = self.features_with_tail(window, tail);
            timings.mel += t.elapsed();
            let t = Instant::now();
            let audio = self.encode(&mel, frames)?;
            timings.encoder += t.elapsed();
            let t = Instant::now();
            let seconds = window.len() as f32 / STT_SAMPLE_RATE_HZ as f32;
            let mut decoded = self.decode(&audio, &prompt, quality, seconds)?;
            timings.decoder += t.elapsed();
            timings.tokens += decoded.sampled;
            if decoded.no_speech_prob > NO_SPEECH_PROB && decoded.avg_logprob() < LOW_LOGPROB {
                continue;
            }
            drop_doubled_ending(&mut decoded.tokens);
            let text = self.tokenizer.decode(&decoded.tokens);
            let text = text.trim();
            // Punctuation alone (". . .") is what the decoder says over noise, not speech.
            if text.chars().any(char::is_alphanumeric) {
                texts.push(text.to_string());
                sum_lp += decoded.sum_logprob;
                sampled += decoded.sampled;
            }
        }
        let confidence = if sampled == 0 { 1.0 } else { (sum_lp / sampled as f32).exp().clamp(0.0, 1.0) };
        let transcription = Transcription {
            text: texts.join(" "),
            confidence,
            engine: self.name,
            audio_ms,
            compute: started.elapsed(),
        };
        Ok((transcription, timings))
    }

    fn decode(
        &self,
        audio: &Tensor,
        prompt: &[u32],
        quality: SttQuality,
        seconds: f32,
    ) -> Result<Decoded, SttError> {
        let cross = self.net.cross_kv(audio).map_err(engine_err)?;
        let cap = max_tokens(seconds, self.net.dims.n_text_ctx);
        match quality {
            SttQuality::Partial | SttQuality::Final => self.greedy(&cross, prompt, cap),
            SttQuality::Accurate => {
                // The beam may re-rank words, not add a sentence: its length is capped near the
                // greedy transcript's, which keeps it out of restart loops on noisy audio.
                let greedy = self.greedy(&cross, prompt, cap).map_err(engine_err)?;
                self.beam(&cross, prompt, cap.min(greedy.tokens.len() + 1), BEAM_WIDTH)
            }
        }
        .map_err(engine_err)
    }

    /// The decoder prompt for `language` (a token id from [`Self::language_token`]).
    fn prompt(&self, language: Option<u32>) -> Vec<u32> {
        let sp = self.tokenizer.special;
        match language {
            None => vec![sp.sot, sp.no_timestamps],
            Some(lang) => vec![sp.sot, lang, sp.transcribe, sp.no_timestamps],
        }
    }

    /// Runs the prompt; returns the cache, the no-speech probability and the log-probabilities
    /// of the first sampled token.
    fn start(
        &self,
        cross: &[CrossKv],
        prompt: &[u32],
    ) -> candle_core::Result<(super::model::KvCache, f32, Vec<f32>)> {
        let mut cache = self.net.new_cache();
        let logits = self.net.decode_step(prompt, 1, &mut cache, cross)?.squeeze(0)?;
        let rows = logits.to_vec2::<f32>()?;
        let first = &rows[0];
        let no_speech = log_softmax_at(first, self.tokenizer.special.no_speech as usize).exp();
        let mut last = rows[rows.len() - 1].clone();
        self.mask(&mut last, true);
        log_softmax_in_place(&mut last);
        Ok((cache, no_speech, last))
    }

    fn mask(&self, logits: &mut [f32], first: bool) {
        for &id in &self.suppress {
            logits[id as usize] = f32::NEG_INFINITY;
        }
        if first {
            for &id in &self.suppress_begin {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    fn greedy(&self, cross: &[CrossKv], prompt: &[u32], cap: usize) -> candle_core::Result<Decoded> {
        let eot = self.tokenizer.special.eot;
        let (mut cache, no_speech_prob, mut logprobs) = self.start(cross, prompt)?;
        let mut out = Decoded { no_speech_prob, ..Decoded::default() };
        loop {
            let (token, lp) = argmax(&logprobs);
            out.sum_logprob += lp;
            out.sampled += 1;
            if token == eot {
                break;
            }
            out.tokens.push(token);
            if out.tokens.len() >= cap || trim_repetition(&mut out.tokens) {
                break;
            }
            let logits = self.net.decode_step(&[token], 1, &mut cache, cross)?;
            logprobs = logits.flatten_all()?.to_vec1::<f32>()?;
            self.mask(&mut logprobs, false);
            log_softmax_in_place(&mut logprobs);
        }
        Ok(out)
    }

    /// Beam search (Whisper's: `width` live beams, stop once `width` finished, rank finished
    /// hypotheses by sum log-probability / length).
    fn beam(
        &self,
        cross: &[CrossKv],
        prompt: &[u32],
        cap: usize,
        width: usize,
    ) -> candle_core::Result<Decoded> {
        let eot = self.tokenizer.special.eot;
        let (mut cache, no_speech_prob, first) = self.start(cross, prompt)?;
        // Live beams: (tokens, sum log-prob). Seeded from the first distribution.
        let mut beams: Vec<(Vec<u32>, f32)> = Vec::with_capacity(width);
        let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
        for (tok, lp) in top_k(&first, width + 1) {
            if tok == eot {
                finished.push((Vec::new(), lp));
            } else if beams.len() < width {
                beams.push((vec![tok], lp));
            }
        }
        cache.reorder(&vec![0; beams.len()])?;
        while finished.len() < width && !beams.is_empty() && beams[0].0.len() < cap {
            let last: Vec<u32> = beams.iter().map(|(t, _)| *t.last().unwrap_or(&eot)).collect();
            let logits = self.net.decode_step(&last, beams.len(), &mut cache, cross)?;
            let rows = logits.squeeze(1)?.to_vec2::<f32>()?;
            let mut candidates: Vec<(usize, u32, f32)> = Vec::with_capacity(beams.len() * (width + 1));
            for (b, mut row) in rows.into_iter().enumerate() {
                self.mask(&mut row, false);
                log_softmax_in_place(&mut row);
                for (tok, lp) in top_k(&row, width + 1) {
                    candidates.push((b, tok, beams[b].1 + lp));
                }
            }
            candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
            let mut next = Vec::with_capacity(width);
            let mut parents = Vec::with_capacity(width);
            for (b, tok, score) in candidates {
                if tok == eot {
                    if finished.len() < width {
                        finished.push((beams[b].0.clone(), score));
                    }
                } else if next.len() < width {
                    let mut seq = beams[b].0.clone();
                    seq.push(tok);
                    if trim_repetition(&mut seq) {
                        finished.push((seq, score));
                    } else {
                        next.push((seq, score));
                        parents.push(b as u32);
                    }
                }
                // Only candidates ranked above the last kept beam may finish (Whisper's rule):
                // a low-ranked end-of-text must not end the search early.
                if next.len() >= width {
                    break;
                }
            }
            if next.is_empty() {
                break;
            }
            cache.reorder(&parents)?;
            beams = next;
        }
        finished.extend(beams);
        let length_norm = |(t, s): &(Vec<u32>, f32)| s / (t.len().max(1) as f32);
        let best =
            finished.into_iter().max_by(|a, b| length_norm(a).total_cmp(&length_norm(b))).unwrap_or_default();
        let sampled = best.0.len() + 1;
        Ok(Decoded { tokens: best.0, sum_logprob: best.1, sampled, no_speech_prob })
    }
}

/// Root mean square of `pcm`.
pub fn rms(pcm: &[f32]) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|x| x * x).sum::<f32>() / pcm.len() as f32).sqrt()
}

fn log_softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    let log_z = max + sum.ln();
    for x in row.iter_mut() {
        *x -= log_z;
    }
}

fn log_softmax_at(row: &[f32], index: usize) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    row.get(index).map_or(f32::NEG_INFINITY, |&x| x - max - sum.ln())
}

fn argmax(row: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &x) in row.iter().enumerate() {
        if x > best.1 {
            best = (i as u32, x);
        }
    }
    best
}

/// The `k` largest entries of `row`, best first.
fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &x) in row.iter().enumerate() {
        if best.len() < k || x > best[best.len() - 1].1 {
            let at = best.iter().position(|&(_, y)| x > y).unwrap_or(best.len());
            best.insert(at, (i as u32, x));
            best.truncate(k);
        }
    }
    best
}

/// A transcript that ends with the same phrase twice running ("End on Sunday. End on Sunday."
/// for "and on Sunday?") loses the second copy: the decoder looping on the last sentence of a
/// short turn. Phrases of [`MIN_DOUBLED`] to [`LOOP_SPAN`] tokens; doubles of one or two tokens
/// ("no, no", "thank you thank you") are left, people say them. Applied to each decoded
/// transcript (a partial's too), never inside the decoding loop: mid-sentence a repeat can be
/// the caller's own ("I want to I want to go"), and stopping there would lose the rest. Returns
/// whether it cut.
fn drop_doubled_ending(tokens: &mut Vec<u32>) -> bool {
    let len = tokens.len();
    for n in MIN_DOUBLED..=LOOP_SPAN {
        if len >= 2 * n && tokens[len - n..] == tokens[len - 2 * n..len - n] {
            tokens.truncate(len - n);
            return true;
        }
    }
    false
}

/// Loop detection. If `tokens` ends with the same n-gram (n ≤ 8) three times in a row, one token
/// eight times, ends with its own first [`RESTART_SPAN`] tokens, or its last [`LOOP_SPAN`] tokens already occurred earlier (a long phrase said
/// again word for word: the decoder restarting the sentence), drops the repeat (keeps one copy)
/// and returns true.
fn trim_repetition(tokens: &mut Vec<u32>) -> bool {
    let len = tokens.len();
    for n in 1..=8 {
        let reps = if n == 1 { 8 } else { 3 };
        if len < n * reps {
            continue;
        }
        let tail = &tokens[len - n..];
        if (1..reps).all(|r| &tokens[len - (r + 1) * n..len - r * n] == tail) {
            tokens.truncate(len - (reps - 1) * n);
            return true;
        }
    }
    // The decoder starting the utterance over ("…at seven. The low, I would…").
    if len >= 2 * RESTART_SPAN + 2 && tokens[len - RESTART_SPAN..] == tokens[..RESTART_SPAN] {
        tokens.truncate(len - RESTART_SPAN);
        return true;
    }
    if len >= 2 * LOOP_SPAN {
        let tail = &tokens[len - LOOP_SPAN..];
        if let Some(i) = tokens[..len - LOOP_SPAN].windows(LOOP_SPAN).position(|w| w == tail) {
            // Period of the loop; walk back to where the repetition starts and cut there.
            let period = len - LOOP_SPAN - i;
            let mut start = len - LOOP_SPAN;
            while start > period && tokens[start - 1] == tokens[start - 1 - period] {
                start -= 1;
            }
            tokens.truncate(start);
            return true;
        }
    }
    false
}

/// Shortest phrase (in tokens) whose immediate repeat counts as a decoding loop.
const MIN_DOUBLED: usize = 3;
/// Length of a phrase whose exact reappearance counts as a decoding loop.
const LOOP_SPAN: usize = 10;
/// Opening tokens whose reappearance at the end counts as the decoder starting over.
const RESTART_SPAN: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcp47_tags_map_to_whisper_codes() {
        assert_eq!(whisper_language("es-419"), "es");
        assert_eq!(whisper_language("EN-us"), "en");
        assert_eq!(whisper_language("nb-NO"), "no");
        assert_eq!(whisper_language("yue-CN"), "yue");
    }

    #[test]
    fn model_names_follow_the_shape() {
        assert_eq!(model_name(384, 4, true), "whisper-tiny.en");
        assert_eq!(model_name(512, 6, false), "whisper-base");
        assert_eq!(model_name(1024, 24, false), "whisper");
    }

    #[test]
    fn repetition_is_cut_to_one_copy() {
        let mut t = vec![5, 1, 2, 3, 1, 2, 3, 1, 2, 3];
        assert!(trim_repetition(&mut t));
        assert_eq!(t, vec![5, 1, 2, 3]);
        let mut t = vec![9; 8];
        assert!(trim_repetition(&mut t));
        assert_eq!(t, vec![9]);
        let mut t = vec![1, 2, 1, 2, 7];
        assert!(!trim_repetition(&mut t));
        let mut t: Vec<u32> = (0..14).chain(0..10).collect();
        assert!(trim_repetition(&mut t));
        assert_eq!(t, (0..14).collect::<Vec<_>>());
        // "very very" is language, not a loop.
        let mut t = vec![4, 4, 4];
        assert!(!trim_repetition(&mut t));
        // A doubled phrase is for the finished transcript (drop_doubled_ending), not a stop.
        let mut t = vec![8, 20, 21, 22, 20, 21, 22];
        assert!(!trim_repetition(&mut t));
    }

    #[test]
    fn a_doubled_last_phrase_loses_its_second_copy() {
        let mut t = vec![8, 20, 21, 22, 20, 21, 22];
        assert!(drop_doubled_ending(&mut t));
        assert_eq!(t, vec![8, 20, 21, 22]);
        // Two tokens twice ("thank you thank you") is speech.
        let mut t = vec![8, 20, 21, 20, 21];
        assert!(!drop_doubled_ending(&mut t));
        // Only at the end.
        let mut t = vec![20, 21, 22, 20, 21, 22, 9];
        assert!(!drop_doubled_ending(&mut t));
        assert_eq!(t.len(), 7);
    }

    #[test]
    fn token_budget_grows_with_audio_and_is_capped() {
        assert_eq!(max_tokens(0.0, 448), 10);
        assert_eq!(max_tokens(4.0, 448), 42);
        assert_eq!(max_tokens(300.0, 448), 224);
    }

    #[test]
    fn top_k_and_log_softmax() {
        let mut row = vec![1.0, 3.0, 2.0, -1.0];
        assert_eq!(top_k(&row, 2), vec![(1, 3.0), (2, 2.0)]);
        log_softmax_in_place(&mut row);
        let total: f32 = row.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((log_softmax_at(&[1.0, 3.0, 2.0, -1.0], 1) - row[1]).abs() < 1e-6);
        assert_eq!(argmax(&row).0, 1);
    }
}
