//! Piper neural text-to-speech (VITS, e.g. `en_US-joe-medium`) on onnxruntime.
//!
//! Text → phonemes → ids → waveform, the way Piper's own `piper-phonemize` does it:
//!
//! 1. **Phonemes**: espeak-ng as a *subprocess* (`espeak-ng -q --ipa -v <voice>`, text on
//!    stdin), never linked, so the server binary stays free of the GPL (MODELS.md A1). `--ipa`
//!    with no argument is phoneme mode `espeakPHONEMES_IPA` (0x02) with no separator or tie —
//!    what Piper calls `espeak_TextToPhonemesWithTerminator(…, espeakCHARS_AUTO, 0x02, …)` with;
//!    input encoding is left at espeak-ng's default (`espeakCHARS_AUTO`). The CLI cannot report
//!    clause terminators, so the text is cut into clauses here first, one per line (espeak-ng
//!    phonemizes each input line as its own clause and prints one line per clause), and the
//!    punctuation Piper keeps is put back after each clause's phonemes: `, ` `: ` `; ` `.` `?`
//!    `!`. A `.` followed by a lower-case word is not a clause end (espeak-ng's rule:
//!    "etc. and"). Sentences end at `.` `?` `!`.
//! 2. **Ids**: each phoneme character (NFD: `ç` → `c` + U+0327) through the voice's
//!    `phoneme_id_map`; `^ _ (id _)… $`. Characters the voice lacks are dropped, language-switch
//!    flags `(fr)…(en)` are removed.
//! 3. **Inference**, one run per sentence: `input` i64 `[1, N]`, `input_lengths` i64 `[1]`,
//!    `scales` f32 `[noise, length, noise_w]` → f32 `[1, 1, 1, T]` at the voice's rate
//!    (22 050 Hz). Sentences are joined with 0.2 s of silence (Piper's default) ÷ speed.
//! 5. **Speed** (clamped to 0.5 … 2.0) is Piper's length scale, corrected: the model rounds every
//!    id's duration *up* to whole 11.6 ms frames, so a plain `1/speed` length scale gives 0.64×
//!    the length at speed 2 and 1.72× at 0.5 (≥ 1 frame per id: an id count of n never lasts less
//!    than n frames). The length scale is therefore picked from the voice's measured duration
//!    curve ([`DURATION_CURVE`]) so that the *length* scales by `1/speed`, but never below
//!    [`MIN_LENGTH_SCALE`]; what that floor leaves (speeds above ≈ 1.4) is done by a
//!    pitch-preserving WSOLA time stretch of the model's output.
//! 4. **Output**: light peak normalisation (peak at −1 dBFS, gain at most ×8, never clipped) and
//!    resampling to the 16 kHz pipeline rate.
//!
//! One onnxruntime session per voice, behind a `Mutex` (a run takes `&mut Session`): requests
//! take turns, each run using every core (intra-op threads = cores, at most 4). Runs happen on
//! tokio's blocking pool (`spawn_blocking`), so no async task ever waits on inference.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use futures_util::StreamExt;

use super::{TtsEngine, TtsError, TtsRequest, TtsStream};
use crate::audio::sinc::resample_block;
use crate::call::PIPELINE_RATE_HZ;
use crate::providers::onnx;

const ENGINE: &str = "piper";
/// The phonemizer program (a subprocess, see the module docs).
const ESPEAK: &str = "espeak-ng";
/// Silence between sentences at speed 1, seconds (Piper's `sentence_silence` default).
pub const SENTENCE_SILENCE_S: f32 = 0.2;
/// Frames per id (mean over test sentences, `en_US-joe-medium`) at each length scale: the
/// model's output length is ≈ `ids × curve(length_scale)` frames. Not linear because every id
/// lasts at least one frame.
pub const DURATION_CURVE: [(f32, f32); 9] = [
    (0.25, 1.045),
    (0.35, 1.135),
    (0.5, 1.318),
    (0.7, 1.583),
    (1.0, 2.0),
    (1.4, 2.55),
    (2.0, 3.465),
    (2.6, 4.38),
    (3.0, 4.935),
];
/// Shortest length scale used (below it ids collapse to one frame each and speech blurs).
pub const MIN_LENGTH_SCALE: f32 = 0.5;
/// Output peak after normalisation, relative to full scale (−1 dBFS).
const PEAK_TARGET: f32 = 0.89;
/// Normalisation never amplifies the model's output more than this.
const MAX_GAIN: f32 = 8.0;
/// Characters (bytes) per clause line sent to espeak-ng; longer clauses are cut at spaces
/// (espeak-ng splits clauses above ~800 characters itself, which would misalign its lines).
const MAX_CLAUSE_BYTES: usize = 400;

/// The parts of a Piper voice's `.onnx.json` this engine uses.
#[derive(Debug, Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    espeak: EspeakConfig,
    #[serde(default)]
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

#[derive(Debug, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self { noise_scale: 0.667, length_scale: 1.0, noise_w: 0.8 }
    }
}

/// A loaded Piper voice: its onnxruntime session and phoneme table.
pub struct PiperTts {
    /// Engine voice name = model file stem (`en_US-joe-medium`).
    voice: String,
    /// espeak-ng voice used to phonemize (`en-us`).
    espeak_voice: String,
    /// Model output rate (22 050 Hz).
    sample_rate: u32,
    scales: InferenceConfig,
    /// Phoneme character → id(s).
    ids: HashMap<char, Vec<i64>>,
    pad: i64,
    bos: i64,
    eos: i64,
    session: Arc<Mutex<Session>>,
    model_path: PathBuf,
    espeak_program: String,
}

impl std::fmt::Debug for PiperTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperTts")
            .field("voice", &self.voice)
            .field("espeak_voice", &self.espeak_voice)
            .field("sample_rate", &self.sample_rate)
            .field("model", &self.model_path)
            .finish()
    }
}

fn engine_err(detail: impl Into<String>) -> TtsError {
    TtsError::Engine { engine: ENGINE, detail: detail.into() }
}

impl PiperTts {
    /// Loads the catalogue's Piper voice (`voices::PIPER_JOE_MODEL`) and onnxruntime from
    /// `models_dir`. Blocking (≈ 0.4 s).
    pub fn load(models_dir: &Path) -> Result<Self, TtsError> {
        Self::load_voice(models_dir, &models_dir.join(crate::voices::PIPER_JOE_MODEL))
    }

    /// Loads the Piper voice `model_path` (its config next to it as `<model>.json`), with
    /// onnxruntime from `models_dir`.
    pub fn load_voice(models_dir: &Path, model_path: &Path) -> Result<Self, TtsError> {
        onnx::runtime(models_dir).map_err(|e| engine_err(e.to_string()))?;
        let mut config_path = model_path.as_os_str().to_owned();
        config_path.push(".json");
        let config_path = PathBuf::from(config_path);
        let json = std::fs::read(&config_path)
            .map_err(|e| engine_err(format!("cannot read {}: {e}", config_path.display())))?;
        let cfg: VoiceConfig = serde_json::from_slice(&json)
            .map_err(|e| engine_err(format!("{}: {e}", config_path.display())))?;
        let mut ids = HashMap::with_capacity(cfg.phoneme_id_map.len());
        for (phoneme, id) in cfg.phoneme_id_map {
            let mut chars = phoneme.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                ids.insert(c, id);
            }
        }
        let single = |c: char| {
            ids.get(&c)
                .and_then(|v| v.first().copied())
                .ok_or_else(|| engine_err(format!("{}: no id for {c:?}", config_path.display())))
        };
        let (pad, bos, eos) = (single('_')?, single('^')?, single('$')?);
        let threads = std::thread::available_parallelism().map_or(1, usize::from).min(4);
        let session = onnx::session(model_path, threads).map_err(|e| engine_err(e.to_string()))?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if !["input", "input_lengths", "scales"].iter().all(|n| inputs.contains(n)) || inputs.len() != 3 {
            return Err(engine_err(format!(
                "{}: expected inputs input, input_lengths, scales (single speaker); has {inputs:?}",
                model_path.display()
            )));
        }
        let voice = model_path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| engine_err(format!("bad model file name {}", model_path.display())))?
            .to_string();
        Ok(Self {
            voice,
            espeak_voice: cfg.espeak.voice,
            sample_rate: cfg.audio.sample_rate,
            scales: cfg.inference,
            ids,
            pad,
            bos,
            eos,
            session: Arc::new(Mutex::new(session)),
            model_path: model_path.to_path_buf(),
            espeak_program: ESPEAK.to_string(),
        })
    }

    /// The engine voice this speaks (`Voice::engine_voice`): the model file stem.
    pub fn voice(&self) -> &str {
        &self.voice
    }

    /// The model's output rate, before resampling.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The text's phonemes, one IPA string per sentence, with Piper's punctuation kept.
    pub async fn phonemize(&self, text: &str) -> Result<Vec<String>, TtsError> {
        let clauses = clauses(text);
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = String::new();
        for c in &clauses {
            input.push_str(&c.text);
            input.push('\n');
        }
        let mut child = Command::new(&self.espeak_program)
            .args(["-q", "--ipa", "-v", &self.espeak_voice])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| engine_err(format!("cannot start {}: {e}", self.espeak_program)))?;
        let mut stdin = child.stdin.take().ok_or_else(|| engine_err("no stdin"))?;
        stdin.write_all(input.as_bytes()).await.map_err(|e| engine_err(e.to_string()))?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|e| engine_err(e.to_string()))?;
        if !out.status.success() {
            return Err(engine_err(format!(
                "{} failed: {}",
                self.espeak_program,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        Ok(sentences(&clauses, &lines))
    }

    /// Piper's ids for one sentence's phonemes: `^ _ (id _)… $`.
    pub fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let mut out = vec![self.bos, self.pad];
        let mut in_flag = false;
        for c in phonemes.chars() {
            match c {
                '(' => in_flag = true,
                ')' if in_flag => in_flag = false,
                _ if in_flag => {}
                _ => {
                    let (base, mark) = decompose(c);
                    for c in std::iter::once(base).chain(mark) {
                        if let Some(ids) = self.ids.get(&c) {
                            for &id in ids {
                                out.push(id);
                                out.push(self.pad);
                            }
                        } else {
                            tracing::debug!(phoneme = %c, voice = %self.voice, "phoneme not in the voice's map; dropped");
                        }
                    }
                }
            }
        }
        out.push(self.eos);
        out
    }

    /// One inference run: the waveform (model rate, −1..1) of one sentence's ids. Blocking.
    pub fn infer(&self, ids: &[i64], length_scale: f32) -> Result<Vec<f32>, TtsError> {
        let scales = [self.scales.noise_scale, length_scale, self.scales.noise_w];
        infer(&self.session, ids, scales)
    }

    /// Phonemizes `req.text` and plans its sentences.
    async fn prepare(&self, req: TtsRequest) -> Result<Plan, TtsError> {
        if req.engine_voice != self.voice {
            return Err(TtsError::UnknownVoice { engine: ENGINE, voice: req.engine_voice });
        }
        let sentences = self.phonemize(&req.text).await?;
        let speed = if req.speed.is_finite() { req.speed.clamp(0.5, 2.0) } else { 1.0 } as f32;
        let (relative_scale, stretch) = speed_plan(speed);
        let length_scale = self.scales.length_scale * relative_scale;
        Ok(Plan {
            ids: sentences.iter().map(|s| self.phoneme_ids(s)).collect(),
            scales: [self.scales.noise_scale, length_scale, self.scales.noise_w],
            stretch,
            speed,
            session: Arc::clone(&self.session),
            rate_hz: self.sample_rate,
        })
    }
}

/// What to infer for one request: a sentence at a time.
struct Plan {
    ids: Vec<Vec<i64>>,
    scales: [f32; 3],
    stretch: f32,
    speed: f32,
    session: Arc<Mutex<Session>>,
    rate_hz: u32,
}

impl Plan {
    /// Sentence `i` as pipeline PCM (after the pause that separates it from the one before).
    async fn render(&self, i: usize) -> Result<Vec<i16>, TtsError> {
        let (ids, scales, stretch) = (self.ids[i].clone(), self.scales, self.stretch);
        let (session, rate_hz, speed) = (Arc::clone(&self.session), self.rate_hz, self.speed);
        tokio::task::spawn_blocking(move || {
            let mut wave = Vec::new();
            if i > 0 {
                wave.resize((SENTENCE_SILENCE_S / speed * rate_hz as f32) as usize, 0.0);
            }
            let speech = infer(&session, &ids, scales)?;
            wave.extend(if stretch == 1.0 { speech } else { time_stretch(&speech, stretch, rate_hz) });
            Ok(to_pipeline_pcm(&wave, rate_hz))
        })
        .await
        .map_err(|e| engine_err(format!("inference task: {e}")))?
    }
}

impl TtsEngine for PiperTts {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn synthesize(
        &self,
        req: TtsRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<i16>, TtsError>> + Send + '_>> {
        Box::pin(super::collect(self.stream(req)))
    }

    /// One chunk per sentence, each as soon as it is inferred.
    fn stream(&self, req: TtsRequest) -> TtsStream<'_> {
        let plan = futures_util::stream::once(self.prepare(req));
        Box::pin(plan.flat_map(|plan| -> TtsStream<'static> {
            match plan {
                Err(e) => Box::pin(futures_util::stream::iter([Err(e)])),
                Ok(plan) => Box::pin(futures_util::stream::unfold((plan, 0), |(plan, i)| async move {
                    if i >= plan.ids.len() {
                        return None;
                    }
                    let chunk = plan.render(i).await;
                    // After a failure, stop.
                    let next = if chunk.is_ok() { i + 1 } else { plan.ids.len() };
                    Some((chunk, (plan, next)))
                })),
            }
        }))
    }
}

/// Frames per id at `length_scale` ([`DURATION_CURVE`], linear in between, clamped at its ends).
fn frames_per_id(length_scale: f32) -> f32 {
    let c = &DURATION_CURVE;
    if length_scale <= c[0].0 {
        return c[0].1;
    }
    for w in c.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if length_scale <= x1 {
            return y0 + (y1 - y0) * (length_scale - x0) / (x1 - x0);
        }
    }
    c[c.len() - 1].1
}

/// The length scale giving `frames` frames per id (inverse of [`frames_per_id`]).
fn length_scale_for(frames: f32) -> f32 {
    let c = &DURATION_CURVE;
    if frames <= c[0].1 {
        return c[0].0;
    }
    for w in c.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if frames <= y1 {
            return x0 + (x1 - x0) * (frames - y0) / (y1 - y0);
        }
    }
    c[c.len() - 1].0
}

/// How to speak at `speed`: (length scale relative to the voice's own, time-stretch factor
/// applied to the model's output; 1 = none), so the result lasts `1/speed` of speed 1.
pub fn speed_plan(speed: f32) -> (f32, f32) {
    if (speed - 1.0).abs() < 1e-3 {
        return (1.0, 1.0);
    }
    let at_one = frames_per_id(1.0);
    let wanted = at_one / speed;
    let scale = length_scale_for(wanted).max(MIN_LENGTH_SCALE);
    let stretch = wanted / frames_per_id(scale);
    (scale, if (stretch - 1.0).abs() < 0.02 { 1.0 } else { stretch })
}

/// Stretches `x` (at `rate_hz`, −1…1) to `factor` × its length, pitch kept: the shared streaming
/// WSOLA stage ([`crate::audio::stretch::TimeStretch`]) at speed `1 / factor`.
pub fn time_stretch(x: &[f32], factor: f32, rate_hz: u32) -> Vec<f32> {
    if !factor.is_finite() || factor <= 0.0 {
        return x.to_vec();
    }
    let pcm: Vec<i16> = x.iter().map(|v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16).collect();
    let mut stretch = crate::audio::stretch::TimeStretch::new(rate_hz, 1.0 / f64::from(factor));
    let mut out = Vec::with_capacity((x.len() as f64 * f64::from(factor)) as usize + 1024);
    stretch.process(&pcm, &mut out);
    stretch.flush(&mut out);
    out.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// One run of the session: `scales` = [noise, length, noise_w]. Blocking; waits for the session.
fn infer(session: &Mutex<Session>, ids: &[i64], scales: [f32; 3]) -> Result<Vec<f32>, TtsError> {
    let fail = |what: &str, e: ort::Error| engine_err(format!("{what}: {e}"));
    let n = ids.len();
    let input = Tensor::from_array(([1usize, n], ids.to_vec())).map_err(|e| fail("input", e))?;
    let lengths = Tensor::from_array(([1usize], vec![n as i64])).map_err(|e| fail("input_lengths", e))?;
    let scales = Tensor::from_array(([3usize], scales.to_vec())).map_err(|e| fail("scales", e))?;
    let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
    let outputs = session
        .run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])
        .map_err(|e| fail("inference", e))?;
    let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(|e| fail("output", e))?;
    Ok(audio.to_vec())
}

/// NFD of the precomposed characters espeak-ng may print whose marks Piper maps separately
/// (a subset of Unicode NFD: cedilla and tilde).
fn decompose(c: char) -> (char, Option<char>) {
    const CEDILLA: char = '\u{327}';
    const TILDE: char = '\u{303}';
    match c {
        'ç' => ('c', Some(CEDILLA)),
        'ã' => ('a', Some(TILDE)),
        'ẽ' => ('e', Some(TILDE)),
        'ĩ' => ('i', Some(TILDE)),
        'õ' => ('o', Some(TILDE)),
        'ũ' => ('u', Some(TILDE)),
        'ñ' => ('n', Some(TILDE)),
        _ => (c, None),
    }
}

/// What ends a clause, as Piper writes it after the clause's phonemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClauseEnd {
    /// No punctuation (the text's end without any, an ellipsis, an over-long clause cut).
    None,
    Comma,
    Colon,
    Semicolon,
    Period,
    Question,
    Exclamation,
}

impl ClauseEnd {
    fn phonemes(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Comma => ", ",
            Self::Colon => ": ",
            Self::Semicolon => "; ",
            Self::Period => ".",
            Self::Question => "?",
            Self::Exclamation => "!",
        }
    }

    fn ends_sentence(self) -> bool {
        matches!(self, Self::Period | Self::Question | Self::Exclamation)
    }
}

/// One clause: its text (terminating punctuation removed; never blank) and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub text: String,
    pub end: ClauseEnd,
}

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | ',' | '?' | '!' | ':' | ';' | '…' | '—' | '–')
}

fn is_closing(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»')
}

/// Cuts `text` into clauses the way espeak-ng does for English: at runs of `. , ? ! : ; …`
/// (with any closing quotes or brackets) followed by white space or the end, and at dashes
/// (`–` `—`); a lone `.` before a lower-case word ends nothing (abbreviations: "etc. and").
pub fn clauses(text: &str) -> Vec<Clause> {
    let chars: Vec<char> =
        text.chars().map(|c| if c.is_control() || c.is_whitespace() { ' ' } else { c }).collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !is_terminator(c) {
            cur.push(c);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_terminator(chars[i]) {
            i += 1;
        }
        let run: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && is_closing(chars[j]) {
            j += 1;
        }
        let dash = run.contains(['—', '–']);
        let at_break = j == chars.len() || chars[j] == ' ';
        let next_word = chars[j..].iter().find(|c| **c != ' ');
        let abbreviation = run == "." && next_word.is_some_and(|c| c.is_lowercase());
        if !(dash || at_break) || abbreviation {
            cur.push_str(&run);
            continue;
        }
        let end = if run.contains('?') {
            ClauseEnd::Question
        } else if run.contains('!') {
            ClauseEnd::Exclamation
        } else if run.contains('…') || run.contains("..") {
            ClauseEnd::None
        } else if run.contains('.') {
            ClauseEnd::Period
        } else if run.contains(';') || dash {
            ClauseEnd::Semicolon
        } else if run.contains(':') {
            ClauseEnd::Colon
        } else {
            ClauseEnd::Comma
        };
        push_clause(&mut out, &cur, end);
        cur.clear();
        i = j;
    }
    push_clause(&mut out, &cur, ClauseEnd::None);
    out
}

/// Adds a clause (skipping blank ones), cutting over-long text at spaces.
fn push_clause(out: &mut Vec<Clause>, text: &str, end: ClauseEnd) {
    let mut rest = text.trim();
    while rest.len() > MAX_CLAUSE_BYTES {
        let mut cut = MAX_CLAUSE_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = rest[..cut].rfind(' ').filter(|&p| p > 0).unwrap_or(cut);
        out.push(Clause { text: rest[..cut].trim().to_string(), end: ClauseEnd::None });
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(Clause { text: rest.to_string(), end });
    }
}

/// Joins espeak-ng's phoneme lines (one per clause) and the clauses' punctuation into
/// sentences. Should espeak-ng have split a clause further (lines ≠ clauses), the lines are
/// kept in order as one sentence ending with the text's last punctuation.
fn sentences(clauses: &[Clause], lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if lines.len() != clauses.len() {
        tracing::debug!(clauses = clauses.len(), lines = lines.len(), "espeak-ng split clauses differently");
        let joined = lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        if !joined.is_empty() {
            let end = clauses.last().map_or(ClauseEnd::None, |c| c.end);
            out.push(format!("{joined}{}", end.phonemes()));
        }
        return out;
    }
    let mut sentence = String::new();
    for (clause, line) in clauses.iter().zip(lines) {
        let line = line.trim();
        if !line.is_empty() {
            sentence.push_str(line);
            sentence.push_str(clause.end.phonemes());
        }
        if clause.end.ends_sentence() && !sentence.trim().is_empty() {
            out.push(std::mem::take(&mut sentence));
        }
    }
    if !sentence.trim().is_empty() {
        out.push(sentence.trim_end().to_string());
    }
    out
}

/// Model output (−1..1 at `rate_hz`) → 16 kHz i16: peak normalised to −1 dBFS (gain ≤ ×8),
/// never clipped. Scaled to half the target first, resampled, then scaled to the target from
/// the resampled peak (the sinc filter may overshoot the input's peak).
fn to_pipeline_pcm(wave: &[f32], rate_hz: u32) -> Vec<i16> {
    let peak = wave.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if !peak.is_finite() || peak <= 1e-6 {
        return vec![
            0;
            (wave.len() as u64 * u64::from(PIPELINE_RATE_HZ) / u64::from(rate_hz.max(1))) as usize
        ];
    }
    let gain = (PEAK_TARGET / peak).min(MAX_GAIN);
    let pre = 0.5 * gain * 32_767.0;
    let pcm: Vec<i16> = wave.iter().map(|s| (s * pre).round().clamp(-32_767.0, 32_767.0) as i16).collect();
    let mut out = resample_block(&pcm, rate_hz, PIPELINE_RATE_HZ);
    let peak16 = out.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    if peak16 > 0 {
        let target = gain * peak * 32_767.0;
        let k = (target / f32::from(peak16)).min(2.0);
        for s in &mut out {
            *s = (f32::from(*s) * k).round().clamp(-32_767.0, 32_767.0) as i16;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(cs: &[Clause]) -> Vec<(&str, ClauseEnd)> {
        cs.iter().map(|c| (c.text.as_str(), c.end)).collect()
    }

    #[test]
    fn clauses_follow_espeak_punctuation() {
        use ClauseEnd::*;
        assert_eq!(
            texts(&clauses("Hello, world. How are you today? I am fine: thanks; really! It's 3.5")),
            vec![
                ("Hello", Comma),
                ("world", Period),
                ("How are you today", Question),
                ("I am fine", Colon),
                ("thanks", Semicolon),
                ("really", Exclamation),
                ("It's 3.5", None)
            ]
        );
        assert_eq!(texts(&clauses("etc. and 1,000 at 3:30.")), vec![("etc. and 1,000 at 3:30", Period)]);
        assert_eq!(texts(&clauses("Mr. Smith")), vec![("Mr", Period), ("Smith", None)]);
        assert_eq!(
            texts(&clauses("\"Yes,\" he said... Wait — now?!")),
            vec![("\"Yes", Comma), ("he said", None), ("Wait", Semicolon), ("now", Question)]
        );
        assert!(clauses("").is_empty());
        assert!(clauses("  \n ... !! ").is_empty());
    }

    #[test]
    fn long_clauses_are_cut_at_spaces() {
        let text = "word ".repeat(200);
        let cs = clauses(&text);
        assert!(cs.len() >= 3, "{}", cs.len());
        assert!(cs.iter().all(|c| c.text.len() <= MAX_CLAUSE_BYTES && !c.text.is_empty()));
        assert_eq!(cs.iter().map(|c| c.text.split(' ').count()).sum::<usize>(), 200);
    }

    #[test]
    fn sentences_put_piper_punctuation_back() {
        let cs = clauses("Hello, world. How are you?");
        let lines = ["həlˈoʊ", "wˈɜːld", "hˌaʊ ɑːɹ juː"];
        assert_eq!(sentences(&cs, &lines), vec!["həlˈoʊ, wˈɜːld.", "hˌaʊ ɑːɹ juː?"]);
        // espeak-ng split differently: one sentence, lines in order.
        let lines = ["həlˈoʊ", "wˈɜːld", "hˌaʊ", "ɑːɹ juː"];
        assert_eq!(sentences(&cs, &lines), vec!["həlˈoʊ wˈɜːld hˌaʊ ɑːɹ juː?"]);
    }

    #[test]
    fn speed_plan_scales_the_length() {
        assert_eq!(speed_plan(1.0), (1.0, 1.0));
        for speed in [0.5f32, 0.7, 1.3, 1.5, 2.0] {
            let (scale, stretch) = speed_plan(speed);
            assert!(scale >= MIN_LENGTH_SCALE, "{speed}: {scale}");
            let ratio = frames_per_id(scale) * stretch / frames_per_id(1.0);
            assert!((ratio * speed - 1.0).abs() < 1e-3, "{speed}: lasts {ratio}");
        }
        // Slow speech needs no stretching; fast speech past the floor does.
        assert_eq!(speed_plan(0.5).1, 1.0);
        let (scale, stretch) = speed_plan(2.0);
        assert_eq!(scale, MIN_LENGTH_SCALE);
        assert!((0.7..0.8).contains(&stretch), "{stretch}");
    }

    #[test]
    fn time_stretch_keeps_pitch() {
        let rate = 22_050.0f32;
        let tone: Vec<f32> =
            (0..22_050).map(|i| (2.0 * std::f32::consts::PI * 150.0 * i as f32 / rate).sin()).collect();
        let zero_crossings = |x: &[f32]| x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count() as f32;
        for factor in [0.5f32, 0.75, 1.5] {
            let y = time_stretch(&tone, factor, 22_050);
            let want = 22_050.0 * factor;
            assert!((y.len() as f32 - want).abs() / want < 0.03, "×{factor}: {} samples", y.len());
            let body = &y[1024..y.len() - 1024];
            let hz = zero_crossings(body) * rate / body.len() as f32;
            assert!((hz - 150.0).abs() < 5.0, "×{factor}: {hz} Hz");
        }
    }

    #[test]
    fn output_is_normalised_without_clipping() {
        let wave: Vec<f32> = (0..22_050).map(|i| 0.2 * (i as f32 * 0.05).sin()).collect();
        let pcm = to_pipeline_pcm(&wave, 22_050);
        assert_eq!(pcm.len(), 16_000);
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((28_000..=29_500).contains(&peak), "{peak}");
        // Quiet output gets at most ×8.
        let quiet: Vec<f32> = wave.iter().map(|s| s * 0.01).collect();
        let peak = to_pipeline_pcm(&quiet, 22_050).iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((400..=600).contains(&peak), "{peak}");
        assert!(to_pipeline_pcm(&[0.0; 2205], 22_050).iter().all(|&s| s == 0));
    }
}
