//! Recorded calls from audio-fixtures/calls streamed in real time over a real Twilio media
//! websocket to agents, with the embedded engines (denoiser, Silero VAD, Whisper tiny.en): the
//! caller's turns are heard, transcribed and recorded; barge-in follows interruptionSensitivity;
//! a backchannel never interrupts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::media::{twilio, Client, Fixture};
use common::{ended_call, EndedCall, TestServer};
use serde_json::{json, Value};
use switchboard::config::SttChoice;
use switchboard::providers::stt::{wer, SttEngine, SttQuality, SttRequest, WhisperEngine, WhisperModel};
use tokio_tungstenite::tungstenite::Message;

/// These calls run in real time against an embedded Whisper: one at a time, so a 2-core CI
/// machine is not asked to hear several calls at once while it also runs the other tests.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn twilio_echo(name: &str) -> Option<Message> {
    Some(twilio::mark(name))
}

fn annotation(name: &str) -> Value {
    Fixture::annotation(name)
}

/// The fixture as Twilio media messages, then `tail_secs` of silence. `name` is a call in
/// `calls/`, or `DIR/NAME` for another folder of calls (`calls-piper/two-turns`).
fn call_audio(name: &str, tail_secs: f64) -> Vec<Message> {
    let path = if name.contains('/') {
        format!("{name}.mulaw-8k.wav")
    } else {
        format!("calls/{name}.mulaw-8k.wav")
    };
    media(Fixture::load(&path).frames(), tail_secs)
}

/// Twilio media messages of μ-law `frames`, then `tail_secs` of silence.
fn media(mut frames: Vec<Vec<u8>>, tail_secs: f64) -> Vec<Message> {
    frames.extend(std::iter::repeat_n(vec![0xFF; 160], (tail_secs * 50.0) as usize));
    frames.iter().enumerate().map(|(i, f)| twilio::media(i, f)).collect()
}

async fn run_call(s: &TestServer, agent: Value, fixture: &str, tail_secs: f64) -> (Client, EndedCall) {
    run_media(s, agent, call_audio(fixture, tail_secs)).await
}

/// Creates `agent`, streams `media` to it over the Twilio socket, and returns the ended call.
async fn run_media(s: &TestServer, agent: Value, media: Vec<Message>) -> (Client, EndedCall) {
    let agent = s.agent(agent).await;
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent["id"]}))).await;
    c.stream(media, Duration::from_millis(100)).await;
    c.send(twilio::stop()).await;
    c.closed().await;
    (c, ended_call(s).await)
}

const GREETING: &str = "Hello and thank you for calling the Riverside restaurant. \
    We are open every day from noon until eleven in the evening. \
    I can help you book a table, change a booking, or answer questions about the menu.";

#[tokio::test]
async fn a_recorded_call_becomes_its_caller_turns() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start().await;
    let ann = annotation("two-turns.json");
    let (_c, rec) = run_call(&s, json!({"name": "Listener", "maxSilenceMs": 60000}), "two-turns", 2.0).await;

    let want = ann["callerTurns"].as_array().unwrap();
    assert_eq!(rec.turns.len(), want.len(), "turns: {:?}", rec.turns);
    for (got, want) in rec.turns.iter().zip(want) {
        let text = want["text"].as_str().unwrap();
        let e = wer(text, &got.transcript);
        eprintln!("turn {}: {:?} (WER {:.2}) vs {:?}", got.seq, got.transcript, e, text);
        assert!(e <= 0.25, "turn {} transcribed as {:?} (WER {e:.2})", got.seq, got.transcript);
        assert_eq!(got.source, "speech");
        assert!(got.confidence > 0.0 && got.confidence <= 1.0);
        // Media-time speech boundaries within 250 ms of the annotation.
        let (start, end) = (want["startMs"].as_i64().unwrap(), want["endMs"].as_i64().unwrap());
        assert!((got.started_ms - start).abs() <= 250, "turn start {} vs {start}", got.started_ms);
        assert!((got.ended_ms - end).abs() <= 400, "turn end {} vs {end}", got.ended_ms);
    }
    assert_eq!(rec.count("speech_started"), 2, "{:?}", rec.events);
    assert_eq!(rec.count("speech_ended"), 2);
    assert_eq!(rec.count("turn"), 2);
    assert_eq!(rec.count("barge_in"), 0);

    // Stage metrics were exported.
    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    for name in ["switchboard_stt_seconds_count", "switchboard_endpointing_seconds_count"] {
        assert!(metrics.lines().any(|l| l.starts_with(name) && !l.ends_with(" 0")), "{name} in {metrics}");
    }
}

/// Streams `calls-piper/NAME` to an agent with `denoising_mode` and returns the WER of the
/// recorded turns over the call's words, after checking there is one turn per annotated turn.
async fn piper_call_wer(name: &str, denoising_mode: &str) -> f64 {
    let s = TestServer::start().await;
    let agent = json!({"name": "Listener", "maxSilenceMs": 60000, "denoisingMode": denoising_mode});
    let (_c, rec) = run_call(&s, agent, &format!("calls-piper/{name}"), 2.0).await;
    let ann = Fixture::annotation(&format!("../calls-piper/{name}.json"));
    let want = ann["callerTurns"].as_array().unwrap();
    assert_eq!(rec.turns.len(), want.len(), "{name}: turns {:?}, events {:?}", rec.turns, rec.events);
    let said: Vec<&str> = want.iter().map(|t| t["text"].as_str().unwrap()).collect();
    let heard: Vec<&str> = rec.turns.iter().map(|t| t.transcript.as_str()).collect();
    let e = wer(&said.join(" "), &heard.join(" "));
    let decided: Vec<i64> = rec.events.iter().filter(|e| e.kind == "turn").map(|e| e.at_ms).collect();
    let ends: Vec<i64> = want.iter().map(|t| t["endMs"].as_i64().unwrap()).collect();
    eprintln!(
        "{name} ({denoising_mode}): WER {:.1}%: {heard:?} for {said:?}; turns decided at {decided:?} ms for words ending at {ends:?}",
        e * 100.0
    );
    e
}

/// The same call in Piper's neural voice (`audio-fixtures/calls-piper`), end to end: the turns
/// the listener records (endpointed by the VAD on the denoised audio, transcribed by the final
/// pass) are within the 10 % over the call's words. Measured 0 % (4.5 % when the
/// recogniser was given RNNoise's output: "please" heard twice at the end of the second turn).
#[tokio::test]
async fn the_piper_call_is_heard_within_10_percent_wer() {
    let _one = ONE_AT_A_TIME.lock().await;
    let e = piper_call_wer("two-turns", "noise-cancellation").await;
    assert!(e <= 0.10, "two-turns: WER {:.1}% > 10%", e * 100.0);
}

/// The café call (babble and clatter at 10 dB SNR) with `noise-and-background-speech-cancellation`:
/// the gate keeps the babble in the caller's pauses from reaching the VAD, so each of the
/// caller's two sentences is one turn, and the recogniser (the original audio times the gate's
/// gain) gets them within the 20 % at 10 dB. Measured 16.7 % ("for tonight" lost where
/// the gate closes on the quiet end of the first sentence). A cup's clink 0.7 s after the first
/// sentence is as loud as the caller: while such a frame also held the gate open, the babble
/// behind it came through as "Great." — a third turn or part of the first, depending on whether
/// the first turn's transcript was in (a 6 ms race). Only speech holds the gate now.
#[tokio::test]
async fn the_cafe_call_is_heard_through_the_background_speech_gate() {
    let _one = ONE_AT_A_TIME.lock().await;
    let e = piper_call_wer("noisy-cafe-10db", "noise-and-background-speech-cancellation").await;
    assert!(e <= 0.20, "noisy-cafe-10db: WER {:.1}% > 20%", e * 100.0);
}

/// The same café call with plain `noise-cancellation`: RNNoise keeps the babble, so the VAD
/// hears speech from the first second to the end of the audio. The partials end the turn: when
/// the words stop changing while the sound goes on, the utterance ends where they were complete,
/// and the babble after it is not announced until the second sentence's words are heard.
/// Measured: both turns at 0 % (before: one merged turn, decided only when the audio stopped).
#[tokio::test]
async fn the_cafe_call_is_heard_by_its_words_with_noise_cancellation() {
    let _one = ONE_AT_A_TIME.lock().await;
    let e = piper_call_wer("noisy-cafe-10db", "noise-cancellation").await;
    assert!(e <= 0.20, "noisy-cafe-10db: WER {:.1}% > 20%", e * 100.0);
}

/// A caller who turns quieter is still heard in the default `noise-cancellation`: `two-turns`
/// with everything from 5.5 s on (the second sentence) 14 dB quieter gives both turns as said.
/// Measured: 6, 10, 14 and 20 dB quieter all give both turns (≤ 11 % WER on the second). This
/// guards a trade-off: running the background gate on the VAD's copy in this mode too (tried,
/// reverted) got the café call its turns but lost this second sentence at 12–14 dB, split it at
/// 6 dB, and split `two-turns`' "Hi," off its sentence ("i i").
#[tokio::test]
async fn a_caller_who_turns_quieter_is_still_heard_with_noise_cancellation() {
    use switchboard::audio::codec::{mulaw_decode, mulaw_encode};
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start().await;
    let mut frames = Fixture::load("calls-piper/two-turns.mulaw-8k.wav").frames();
    let quieter = 10f32.powf(-14.0 / 20.0);
    for frame in frames.iter_mut().skip(5_500 / 20) {
        for b in frame.iter_mut() {
            *b = mulaw_encode((f32::from(mulaw_decode(*b)) * quieter).round() as i16);
        }
    }
    let agent = json!({"name": "Listener", "maxSilenceMs": 60000});
    let (_c, rec) = run_media(&s, agent, media(frames, 2.0)).await;
    let ann = Fixture::annotation("../calls-piper/two-turns.json");
    let want = ann["callerTurns"].as_array().unwrap();
    let ev: Vec<String> = rec.events.iter().map(|e| format!("{}@{}", e.kind, e.at_ms)).collect();
    assert_eq!(rec.turns.len(), want.len(), "turns {:?}, events {ev:?}", rec.turns);
    for (got, want) in rec.turns.iter().zip(want) {
        let e = wer(want["text"].as_str().unwrap(), &got.transcript);
        assert!(e <= 0.25, "turn {} heard as {:?} (WER {e:.2})", got.seq, got.transcript);
    }
}

#[tokio::test]
async fn the_caller_barges_in_at_default_sensitivity() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start().await;
    let agent = json!({"name": "Greeter", "beginMessage": GREETING, "maxSilenceMs": 60000});
    let (c, rec) = run_call(&s, agent, "barge-in", 1.5).await;

    assert_eq!(c.got.clears.len(), 1, "one clear sent to the gateway");
    let barge = rec.first("barge_in").expect("a barge-in was recorded");
    // The caller starts at 1.0 s; the barge-in comes within a second of their first word.
    assert!((1_000..2_200).contains(&barge.at_ms), "barge-in at {} ms", barge.at_ms);
    assert_eq!(rec.count("agent_resumed"), 0, "words followed: a real interruption");
    assert_eq!(rec.turns.len(), 1, "the interrupting words are the caller's turn: {:?}", rec.turns);
    let text = annotation("barge-in.json")["callerTurns"][0]["text"].as_str().unwrap().to_string();
    assert!(wer(&text, &rec.turns[0].transcript) <= 0.3, "{:?}", rec.turns[0].transcript);
    // The greeting was cut: not all of its sentences finished.
    assert!(rec.count("agent_finished") < 3, "{:?}", rec.events);
}

#[tokio::test]
async fn sensitivity_zero_lets_the_agent_finish() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start().await;
    let agent = json!({"name": "Talker", "beginMessage": GREETING, "interruptionSensitivity": 0.0, "maxSilenceMs": 60000});
    let (c, rec) = run_call(&s, agent, "barge-in", 8.0).await;

    assert!(c.got.clears.is_empty(), "never interrupted");
    assert_eq!(rec.count("barge_in"), 0);
    assert_eq!(rec.count("agent_finished"), 3, "all three sentences were spoken: {:?}", rec.events);
    // The caller's words are kept and answered once the agent has finished.
    assert_eq!(rec.turns.len(), 1, "{:?}", rec.turns);
    let finished = rec.events.iter().rfind(|e| e.kind == "agent_finished").unwrap().at_ms;
    let turn = rec.first("turn").unwrap().at_ms;
    assert!(turn >= finished, "turn at {turn} ms, agent finished at {finished} ms");
}

#[tokio::test]
async fn a_backchannel_over_the_agent_is_not_an_interruption() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start().await;
    let agent = json!({"name": "Greeter", "beginMessage": GREETING, "maxSilenceMs": 60000});
    let (c, rec) = run_call(&s, agent, "backchannel-yeah", 1.0).await;

    assert!(c.got.clears.is_empty(), "no clear for a 'yeah': {:?}", rec.events);
    assert_eq!(rec.count("barge_in"), 0);
    assert_eq!(rec.count("backchannel_ignored"), 1, "{:?}", rec.events);
    assert!(rec.turns.is_empty(), "a backchannel is not a turn: {:?}", rec.turns);
}

#[tokio::test]
async fn an_agent_whose_language_no_engine_understands_is_refused_at_call_start() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start().await;
    // Cantonese: no installed Whisper has a <|yue|> token (base would hear German).
    let agent = s.agent(json!({"name": "Kowloon", "language": "yue-CN", "voice": "espeak-yue"})).await;
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent["id"]}))).await;
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("yue-CN"), "{reason}");
    // Nothing half-created: an API-key stream is refused before any call record exists.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn with_the_end_of_turn_model_each_pause_gets_a_hint_and_the_turns_still_come() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start_with(|c| c.providers.smart_turn = true).await;
    let (_c, rec) = run_call(&s, json!({"name": "Semantic", "maxSilenceMs": 60000}), "two-turns", 2.5).await;
    assert_eq!(rec.count("turn_hint"), 2, "{:?}", rec.events);
    for hint in rec.events.iter().filter(|e| e.kind == "turn_hint") {
        let v: Value = serde_json::from_str(hint.detail.as_deref().unwrap()).unwrap();
        let p = v["complete"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{p}");
    }
    // Two turns on a quiet machine; a starved one may finish the first transcript after the
    // caller has resumed, merging them — the hints are what this test is about.
    assert!(!rec.turns.is_empty(), "{:?}", rec.turns);
}

/// Babble before the caller's first words, over the greeting: the café call with three copies of
/// the babble between its sentences (6.3 s) in front of it, default `noise-cancellation`. The VAD
/// calls the babble speech and it cuts the greeting; once the partials have found no words in
/// `NO_WORDS` (2 s) of it, it ends as noise and the greeting resumes where it was cut; the babble
/// then is not the caller until words are heard in it. Measured: barge-in at 1.2 s, resumed at
/// 2.7 s, then the caller's two sentences as two turns (6.22–10.22 and 12.42–14.92 s for words
/// at 6.9–10.0 and 12.5–14.85 s), 0 % WER over the call (11.1 % in some runs: "Colin for" for
/// "calling to"). Before session 17: the greeting was cut for good and the call was one turn from
/// 0.3 s on. When the second turn first ended at its words rather than with the audio, the babble
/// after it came back as a third turn, "Okay.": words found in the café bed, mixed 10 dB under
/// the caller's level, which the listener now leaves to the background.
#[tokio::test]
async fn babble_before_the_first_words_does_not_silence_the_greeting() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start().await;
    let call = Fixture::load("calls-piper/noisy-cafe-10db.mulaw-8k.wav").frames();
    let pause = &call[3_900 / 20..6_000 / 20];
    let mut frames: Vec<Vec<u8>> = (0..3).flat_map(|_| pause.iter().cloned()).collect();
    let lead_ms = frames.len() as i64 * 20;
    frames.extend(call);
    let agent = json!({"name": "Greeter", "beginMessage": GREETING, "maxSilenceMs": 60000});
    let (_c, rec) = run_media(&s, agent, media(frames, 2.0)).await;
    let ev: Vec<String> = rec.events.iter().map(|e| format!("{}@{}", e.kind, e.at_ms)).collect();
    let turns: Vec<_> = rec.turns.iter().map(|t| (&t.transcript, t.started_ms, t.ended_ms)).collect();
    eprintln!("lead {lead_ms} ms; turns {turns:?}\nevents {ev:?}");

    let ann = Fixture::annotation("../calls-piper/noisy-cafe-10db.json");
    let want = ann["callerTurns"].as_array().unwrap();
    let first_word = lead_ms + want[0]["startMs"].as_i64().unwrap();
    // Every barge-in before the caller said anything was undone before they did.
    let before = |kind: &str| rec.events.iter().filter(|e| e.kind == kind && e.at_ms < first_word).count();
    assert_eq!(before("barge_in"), before("agent_resumed"), "{ev:?}");
    assert_eq!(rec.turns.len(), 2, "turns {:?}, events {ev:?}", rec.turns);
    let said: Vec<&str> = want.iter().map(|t| t["text"].as_str().unwrap()).collect();
    let heard: Vec<&str> = rec.turns.iter().map(|t| t.transcript.as_str()).collect();
    let e = wer(&said.join(" "), &heard.join(" "));
    assert!(e <= 0.20, "WER {:.1}%: {heard:?}", e * 100.0);
    // Each turn starts after what came before it (the noise, then the first turn), not back in
    // the babble, and not after the caller's words. How close before the words depends on the
    // partials' cadence, which is the machine's speed (1.1 s before in a CI run, 0.2 s here).
    let resumed = rec.first("agent_resumed").map(|e| e.at_ms).unwrap_or(0);
    let mut after = resumed;
    for (got, want) in rec.turns.iter().zip(want) {
        let start = lead_ms + want["startMs"].as_i64().unwrap();
        assert!(
            (after..=start + 250).contains(&got.started_ms),
            "turn at {} for words at {start}: {ev:?}",
            got.started_ms
        );
        after = got.ended_ms;
    }
}

/// An OpenAI-compatible `/v1/audio/transcriptions` server in the test: it transcribes each WAV
/// it is sent with its own Whisper tiny.en (so its texts are real) and keeps what it answered.
struct RemoteStt {
    url: String,
    answered: Arc<Mutex<Vec<(u64, String)>>>,
    server: tokio::task::JoinHandle<()>,
}

impl RemoteStt {
    async fn start() -> Self {
        use axum::{body::Bytes, http::HeaderMap, routing::post, Json, Router};
        let tiny =
            Arc::new(WhisperModel::load(&common::models_dir().join("whisper-tiny.en")).expect("tiny.en"));
        let engine = Arc::new(WhisperEngine::start_with(tiny, None, 1, 1).expect("engine"));
        let answered: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
        let app = Router::new().route(
            "/v1/audio/transcriptions",
            post({
                let answered = Arc::clone(&answered);
                move |headers: HeaderMap, body: Bytes| async move {
                    let ct = headers["content-type"].to_str().unwrap().to_string();
                    let fields = common::multipart_fields(&ct, &body);
                    let wav = &fields.iter().find(|(n, _)| n == "file").expect("a file part").1;
                    let pcm: Arc<[f32]> = wav[44..]
                        .chunks_exact(2)
                        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                        .collect();
                    let audio_ms = pcm.len() as u64 / 16;
                    let req = SttRequest { pcm_16k: pcm, language: "en".into(), quality: SttQuality::Final };
                    let text = engine.transcribe(req).await.expect("transcribed").text;
                    answered.lock().unwrap().push((audio_ms, text.clone()));
                    Json(json!({ "text": text }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, answered, server }
    }
}

/// A remote recogniser (`--stt openai`) gets the embedded Whisper's partials: the café call with
/// plain `noise-cancellation`, whose turns only the partials can end (the VAD hears the babble as
/// speech to the end of the audio), transcribed by an OpenAI-compatible server. Both turns come,
/// each with the text the server answered, and the server is asked for final passes only (its
/// request count is the turns plus the passes of a pause or a quiet tail; partials would be one
/// per 500 ms of speech, over 15 here). Measured: 2 turns (140–4080 and 5780–8780 ms), 0 % WER,
/// 3 requests (4.2, 3.4 and 3.3 s of audio: the second a speculative pass voided when the caller
/// went on). Without partials the same call was one turn, decided when the audio stopped; and
/// before the listener held the words after a cut until the cut utterance's transcript was in,
/// the local partial announced them first and the two sentences were merged into one turn.
#[tokio::test]
async fn a_remote_recogniser_gets_partials_from_the_embedded_whisper() {
    let _one = ONE_AT_A_TIME.lock().await;
    let remote = RemoteStt::start().await;
    let url = remote.url.clone();
    let s = TestServer::start_with(move |c| {
        c.providers.stt = SttChoice::Openai;
        c.providers.openai_base_url = url;
        c.providers.openai_api_key = Some("sk-test".into());
    })
    .await;
    let agent = json!({"name": "Listener", "maxSilenceMs": 60000, "denoisingMode": "noise-cancellation"});
    let (_c, rec) = run_call(&s, agent, "calls-piper/noisy-cafe-10db", 2.0).await;
    let answered = remote.answered.lock().unwrap().clone();
    remote.server.abort();
    let turns: Vec<_> = rec.turns.iter().map(|t| (&t.transcript, t.started_ms, t.ended_ms)).collect();
    eprintln!("turns {turns:?}\nthe server answered (ms of audio, text) {answered:?}");

    let ann = Fixture::annotation("../calls-piper/noisy-cafe-10db.json");
    let want = ann["callerTurns"].as_array().unwrap();
    assert_eq!(rec.turns.len(), want.len(), "turns {turns:?}, events {:?}", rec.events);
    for turn in &rec.turns {
        assert!(
            answered.iter().any(|(_, text)| *text == turn.transcript),
            "{:?} is not the server's",
            turn.transcript
        );
    }
    let said: Vec<&str> = want.iter().map(|t| t["text"].as_str().unwrap()).collect();
    let heard: Vec<&str> = rec.turns.iter().map(|t| t.transcript.as_str()).collect();
    let e = wer(&said.join(" "), &heard.join(" "));
    assert!(e <= 0.20, "WER {:.1}%: {heard:?}", e * 100.0);
    assert!(answered.len() <= 6, "the server was asked for partials: {answered:?}");
    // The partials were the embedded engine's.
    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    let partials = metrics
        .lines()
        .find(|l| l.starts_with("switchboard_stt_seconds_count") && l.contains("partial"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(partials >= 10, "{partials} partials");
}
