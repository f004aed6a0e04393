//! A live call seen through the Calls API over real HTTP and a real Twilio media websocket:
//! the transcript as Server-Sent Events (turns as they are written, `ended` at the end, history
//! replayed to a late subscriber), `POST /v1/calls/{id}/end` hanging the call up through its
//! supervisor, `/transcript`, and the stereo recording (caller left, agent right) that can be
//! read while the call is still going.

mod common;

use std::time::Duration;

use common::media::{twilio, Client, Fixture};
use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::providers::stt::wer;

/// A Server-Sent Events reader over a streaming HTTP response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(s: &TestServer, path: &str) -> Sse {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", s.base))
            .bearer_auth(&s.key)
            .send()
            .await
            .expect("stream opens");
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse { resp, buf: String::new() }
    }

    /// The next event (kind, JSON data); keep-alive comments are skipped. `None`: stream closed.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut kind = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(k) = line.strip_prefix("event:") {
                        kind = k.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if kind.is_empty() {
                    continue; // a comment (keep-alive)
                }
                return Some((kind, serde_json::from_str(&data).expect("event data is JSON")));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.resp.chunk())
                .await
                .expect("an event within 15 s")
                .expect("stream reads");
            match chunk {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }
}

/// `switchboard_ws_send_queue_depth` now.
async fn queue_depth(s: &TestServer) -> f64 {
    let text = reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("switchboard_ws_send_queue_depth ")).expect("the gauge");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn live_call_id(s: &TestServer) -> String {
    for _ in 0..200 {
        let (_, page) = s.get("/v1/calls?status=in-progress").await;
        if let Some(id) = page["data"][0]["id"].as_str() {
            return id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no call went live");
}

/// 16-bit stereo samples of a WAV body, with its rate.
fn stereo(wav: &[u8]) -> (u32, Vec<(i16, i16)>) {
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "two channels");
    assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16, "16-bit");
    let rate = u32::from_le_bytes(wav[24..28].try_into().unwrap());
    let data = u32::from_le_bytes(wav[40..44].try_into().unwrap()) as usize;
    assert_eq!(data, wav.len() - 44, "the header's data size matches the body");
    let s = wav[44..]
        .chunks_exact(4)
        .map(|c| (i16::from_le_bytes([c[0], c[1]]), i16::from_le_bytes([c[2], c[3]])))
        .collect();
    (rate, s)
}

fn rms(x: impl Iterator<Item = i16>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in x {
        sum += f64::from(v) * f64::from(v);
        n += 1;
    }
    (sum / n.max(1) as f64).sqrt()
}

#[tokio::test]
async fn a_live_call_streams_its_transcript_ends_through_the_api_and_leaves_a_recording() {
    let s = TestServer::start().await;
    let agent = s
        .agent(json!({"name": "Front desk", "beginMessage": "Hello, you are through to the front desk.",
        "maxSilenceMs": 60000}))
        .await;
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent["id"], "from": "+15550001111"}))).await;
    let id = live_call_id(&s).await;

    // The greeting is synthesised faster than it plays: it waits in the send queue.
    let mut peak = 0.0;
    for _ in 0..100 {
        peak = queue_depth(&s).await;
        if peak > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(peak > 0.0, "the greeting never showed in switchboard_ws_send_queue_depth");

    // Subscribed while the call is live: `connected`, then the turn as it is written.
    let mut live = Sse::open(&s, &format!("/v1/calls/{id}/transcript/stream")).await;
    let (kind, connected) = live.next().await.unwrap();
    assert_eq!((kind.as_str(), connected["callId"].as_str()), ("connected", Some(id.as_str())));
    assert_eq!(connected["status"], "in-progress");

    // The caller waits out the greeting (3 s of silence), says a sentence, and stays on the line.
    let speech = Fixture::load("caller-hello.mulaw-8k.wav").frames();
    let silence = vec![0xFFu8; 160];
    let frames: Vec<&[u8]> = std::iter::repeat_n(silence.as_slice(), 150)
        .chain(speech.iter().map(Vec::as_slice))
        .chain(std::iter::repeat_n(silence.as_slice(), 100))
        .collect();
    let msgs: Vec<_> = frames.iter().enumerate().map(|(i, f)| twilio::media(i, f)).collect();
    let speech_span = (150 * 160, (150 + speech.len()) * 160);
    let caller = tokio::spawn(async move {
        c.stream(msgs, Duration::from_secs(30)).await;
        c
    });
    let (kind, turn) = live.next().await.expect("a turn event");
    assert_eq!(kind, "turn", "{turn}");
    // The sentence said, within the issue's 20 %: tiny.en hears "book a table" as "look at a
    // little" here (3 of 15 words; it heard "table" before the final pass got its silent tail).
    let want = Fixture::annotation("../caller-hello.json");
    let e = wer(want["text"].as_str().unwrap(), turn["transcript"].as_str().unwrap());
    assert!(e <= 0.20, "WER {:.1}%: {turn}", e * 100.0);
    assert!(turn["id"].is_string() && turn["createdAt"].is_string(), "{turn}");

    // The recording is on disk while the call goes on: a valid WAV of what was said so far.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/calls/{id}/recording", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    let (rate, so_far) = stereo(&resp.bytes().await.unwrap());
    assert_eq!(rate, 8000);
    assert!(so_far.len() >= 8000, "at least a second recorded before the end: {}", so_far.len());

    // Hung up through the API: the supervisor ends the call, the stream says so and closes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (st, ended) = s.post(&format!("/v1/calls/{id}/end"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{ended}");
    assert_eq!(
        (ended["status"].as_str(), ended["endReason"].as_str()),
        (Some("completed"), Some("ended by the API"))
    );
    assert!(ended["endedAt"].is_string());
    let (kind, end) = live.next().await.expect("the ended event");
    assert_eq!(kind, "ended", "{end}");
    assert_eq!(
        (end["status"].as_str(), end["endReason"].as_str()),
        (Some("completed"), Some("ended by the API"))
    );
    assert!(live.next().await.is_none(), "the stream closes after `ended`");
    let mut c = caller.await.unwrap();
    assert!(c.got.ended, "the media socket was closed by the server");
    let _ = c.closed().await;

    assert_eq!(queue_depth(&s).await, 0.0, "the ended call left nothing in the send queue gauge");

    // Ending it again is a conflict; unknown calls are 404s.
    let (st, again) = s.post(&format!("/v1/calls/{id}/end"), json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{again}");
    assert!(again["detail"].as_str().unwrap().contains("already ended"), "{again}");
    assert_eq!(s.post("/v1/calls/call_nope/end", json!({})).await.0, StatusCode::NOT_FOUND);

    // A late subscriber gets the history replayed, then `ended` at once.
    let mut late = Sse::open(&s, &format!("/v1/calls/{id}/transcript/stream")).await;
    assert_eq!(late.next().await.unwrap().1["status"], "completed");
    let (kind, replayed) = late.next().await.unwrap();
    assert_eq!((kind.as_str(), &replayed["transcript"]), ("turn", &turn["transcript"]));
    assert_eq!(late.next().await.unwrap().0, "ended");
    assert!(late.next().await.is_none());
    assert_eq!(s.get("/v1/calls/call_nope/transcript/stream").await.0, StatusCode::NOT_FOUND);

    let (st, doc) = s.get(&format!("/v1/calls/{id}/transcript")).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert_eq!((doc["callId"].as_str(), doc["status"].as_str()), (Some(id.as_str()), Some("completed")));
    assert_eq!(doc["transcripts"][0]["transcript"], turn["transcript"]);
    assert_eq!(doc["text"], format!("Caller: {}", turn["transcript"].as_str().unwrap()));

    // The whole recording: the caller's tone on the left, the agent's greeting on the right.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/calls/{id}/recording", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    let (_, all) = stereo(&resp.bytes().await.unwrap());
    assert!(all.len() > so_far.len());
    let left: Vec<i16> = all.iter().map(|p| p.0).collect();
    let right: Vec<i16> = all.iter().map(|p| p.1).collect();
    let (a, b) = speech_span;
    assert!(rms(left[..20_000].iter().copied()) < 50.0, "the caller is silent during the greeting");
    assert!(
        rms(left[a..b.min(left.len())].iter().copied()) > 300.0,
        "left channel carries the caller's words"
    );
    assert!(rms(right[..a].iter().copied()) > 100.0, "right channel carries the agent's greeting");
    assert!(
        rms(right[a + 8000..b.min(right.len())].iter().copied()) < 50.0,
        "the caller's words are not on the agent's side"
    );
}

#[tokio::test]
async fn a_ringing_call_is_ended_without_a_stream_and_recording_can_be_off() {
    let s = TestServer::start_with(|c| c.record_calls = false).await;
    let agent = s.agent(json!({"name": "Desk", "maxSilenceMs": 60000})).await;
    let (st, _) = s.post("/v1/numbers", json!({"phoneNumber": "+15550009999", "agentId": agent["id"]})).await;
    assert_eq!(st, StatusCode::CREATED);
    let resp = reqwest::Client::new()
        .post(format!("{}/twilio/voice", s.base))
        .form(&[("CallSid", "CA1"), ("From", "+15550001111"), ("To", "+15550009999")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, ringing) = s.get("/v1/calls?status=ringing").await;
    let id = ringing["data"][0]["id"].as_str().expect("a ringing call").to_string();
    let (st, ended) = s.post(&format!("/v1/calls/{id}/end"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{ended}");
    assert_eq!(
        (ended["status"].as_str(), ended["endReason"].as_str()),
        (Some("completed"), Some("ended by the API"))
    );

    // Recording off: an agent call leaves none, and says why.
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent["id"]}))).await;
    c.stream((0..40).map(|i| twilio::media(i, &[0xFF; 160])).collect(), Duration::from_millis(100)).await;
    c.send(twilio::stop()).await;
    let _ = c.closed().await;
    let call = common::ended_call(&s).await;
    let (st, body) = s.get(&format!("/v1/calls/{}/recording", call.id)).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("no recording"), "{body}");
}
