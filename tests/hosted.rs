//! Hosted agents answering recorded calls over a real Twilio media websocket, with the embedded
//! listening engines and a scripted OpenAI-compatible chat server (deterministic replies): the
//! prompt and history the model gets, replies spoken sentence by sentence, goodbye and transfer,
//! tool calls, a slow model (filler) and a failing one (fallback line); and one call answered by
//! the embedded SmolLM2.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::media::{twilio, Client, Fixture};
use common::{ended_call, EndedCall, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::config::{GatewayConfig, LlmChoice};
use tokio_tungstenite::tungstenite::Message;

/// Real-time calls with embedded Whisper: one at a time on a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the scripted model answers.
#[derive(Clone, Default)]
struct Reply {
    status: u16,
    /// Before the first chunk.
    delay_ms: u64,
    pieces: Vec<&'static str>,
    tool: Option<(&'static str, Value)>,
}

fn says(pieces: &[&'static str]) -> Reply {
    Reply { status: 200, pieces: pieces.to_vec(), ..Default::default() }
}

type Script = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Model {
    script: Script,
    seen: Arc<Mutex<Vec<Value>>>,
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let v = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "scripted",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    });
    format!("data: {v}\n\n")
}

async fn chat_completions(
    axum::extract::State(m): axum::extract::State<Model>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let reply = (m.script)(&body);
    m.seen.lock().unwrap().push(body);
    if reply.status != 200 {
        let status = axum::http::StatusCode::from_u16(reply.status).unwrap();
        return (
            status,
            [("content-type", "application/json")],
            r#"{"error":{"message":"scripted failure"}}"#,
        )
            .into_response();
    }
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    chunks.extend(reply.pieces.iter().map(|p| chunk(json!({"content": p}), None)));
    let finish = match &reply.tool {
        Some((name, args)) => {
            chunks.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": name, "arguments": args.to_string()}}]}),
                None,
            ));
            "tool_calls"
        }
        None => "stop",
    };
    chunks.push(chunk(json!({}), Some(finish)));
    chunks.push("data: [DONE]\n\n".to_string());
    let delay = Duration::from_millis(reply.delay_ms);
    let stream = futures_util::stream::iter(chunks.into_iter().enumerate()).then(move |(i, c)| async move {
        if i == 1 {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::io::Error>(c)
    });
    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream)).into_response()
}

/// A scripted OpenAI-compatible server; returns its base URL and the requests it got.
async fn scripted_model(
    script: impl Fn(&Value) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat_completions))
        .with_state(Model { script: Arc::new(script), seen: seen.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

/// A server whose hosted agents use the scripted model at `base`. Preemptive replies are off
/// (these tests count and order the model's requests); one test turns them on.
async fn server_with_model(base: &str, gateways: Option<GatewayConfig>) -> TestServer {
    server_with_model_preempting(base, gateways, false).await
}

async fn server_with_model_preempting(
    base: &str,
    gateways: Option<GatewayConfig>,
    preempt: bool,
) -> TestServer {
    let base = base.to_string();
    TestServer::start_with(move |c| {
        c.providers.preemptive_replies = preempt;
        c.providers.llm = LlmChoice::Openai;
        c.providers.openai_base_url = base;
        c.providers.openai_api_key = Some("test-key".into());
        if let Some(g) = gateways {
            c.gateways = g;
        }
    })
    .await
}

fn call_audio(name: &str, tail_secs: f64) -> Vec<Message> {
    let fx = Fixture::load(&format!("calls/{name}.mulaw-8k.wav"));
    let mut frames = fx.frames();
    frames.extend(std::iter::repeat_n(vec![0xFF; 160], (tail_secs * 50.0) as usize));
    frames.iter().enumerate().map(|(i, f)| twilio::media(i, f)).collect()
}

/// A local Twilio REST API answering `reply` to everything; returns the gateway settings that
/// point at it (account AC0123) and the (path, body) of each request it got.
async fn local_twilio(reply: &'static str) -> (GatewayConfig, Arc<Mutex<Vec<(String, String)>>>) {
    let hits: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let h = h.clone();
        async move {
            h.lock().unwrap().push((uri.path().to_string(), body));
            reply
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let gateways = GatewayConfig {
        twilio_account_sid: Some("AC0123".into()),
        twilio_auth_token: Some("secret".into()),
        twilio_api_base: gw,
        ..GatewayConfig::default()
    };
    (gateways, hits)
}

/// Streams `fixture` to a new agent; returns the client and the ended call's record.
async fn run_call(
    s: &TestServer,
    agent: Value,
    params: Value,
    fixture: &str,
    tail: f64,
) -> (Client, EndedCall) {
    let agent = s.agent(agent).await;
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    let mut p = params;
    p["token"] = json!(s.key);
    p["agentId"] = agent["id"].clone();
    c.send(twilio::start(p)).await;
    c.stream(call_audio(fixture, tail), Duration::from_millis(100)).await;
    c.send(twilio::stop()).await;
    c.closed().await;
    let rec = ended_call(s).await;
    for t in &rec.turns {
        eprintln!("turn {}: {:?} -> {:?}", t.seq, t.transcript, t.response);
    }
    eprintln!("spoken: {:?}", rec.spoken());
    (c, rec)
}

fn messages(req: &Value) -> Vec<(String, String)> {
    req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

fn tool_names(req: &Value) -> Vec<String> {
    req["tools"]
        .as_array()
        .map(|t| t.iter().map(|t| t["function"]["name"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

async fn metric_count(s: &TestServer, name: &str) -> f64 {
    let text = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn each_turn_is_answered_with_the_filled_prompt_and_the_heard_history() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (base, seen) = scripted_model(|_| says(&["Sure", ", no problem."])).await;
    let s = server_with_model(&base, None).await;
    let agent = json!({
        "name": "Riverside", "voiceMode": "hosted", "maxSilenceMs": 60000, "interruptionSensitivity": 0.0,
        "systemPrompt": "You take bookings for Riverside. The caller's number is {{from}}; their booking is {{booking}}.",
        "beginMessage": "Riverside, hello.",
    });
    let params = json!({"from": "+15550001111", "booking": "R-42"});
    let (c, rec) = run_call(&s, agent, params, "two-turns", 3.0).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one model request per caller turn");
    let first = messages(&seen[0]);
    assert_eq!(first[0].0, "system");
    assert!(
        first[0].1.contains("The caller's number is +15550001111; their booking is R-42."),
        "{}",
        first[0].1
    );
    assert_eq!(
        first[1],
        ("assistant".to_string(), "Riverside, hello.".to_string()),
        "the greeting is history"
    );
    assert_eq!(first.last().unwrap().0, "user");
    assert!(first.last().unwrap().1.to_lowercase().contains("table"), "{first:?}");
    assert_eq!(seen[0]["model"], "gpt-4o-mini", "balanced tier");
    assert_eq!(seen[0]["stream"], true);
    assert_eq!(tool_names(&seen[0]), ["end_call", "send_message"], "no transferNumber: no transfer tool");

    // The second request carries the first exchange, the reply as it was heard.
    let second = messages(&seen[1]);
    assert_eq!(second.len(), first.len() + 2, "{second:?}");
    assert_eq!(second[first.len()], ("assistant".to_string(), "Sure, no problem.".to_string()));
    assert!(second.last().unwrap().1.to_lowercase().contains("window"), "{second:?}");

    // Replies recorded per turn and spoken.
    assert_eq!(rec.turns.len(), 2, "{:?}", rec.turns);
    for t in &rec.turns {
        assert_eq!(t.response.as_deref(), Some("Sure, no problem."), "turn {}", t.seq);
    }
    let spoken = rec.spoken();
    assert_eq!(spoken.iter().filter(|t| *t == "Sure, no problem.").count(), 2, "{spoken:?}");
    assert_eq!(rec.count("reply_audio"), 2);
    assert!(c.got.frames.len() > 400, "audio flowed");
    assert_eq!(rec.status, switchboard::store::CallStatus::Completed);
    for name in ["switchboard_turn_latency_seconds_count", "switchboard_llm_ttft_seconds_count"] {
        assert!(metric_count(&s, name).await >= 2.0, "{name}");
    }
}

#[tokio::test]
async fn with_preemptive_replies_each_turn_is_answered_once_with_its_own_reply() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Replies by what the caller said, so a dropped early request cannot shift the script.
    let (base, seen) = scripted_model(|req| {
        let last = messages(req).last().map(|m| m.1.to_lowercase()).unwrap_or_default();
        if last.contains("window") {
            says(&["A window table, of course."])
        } else {
            says(&["Sure, for two."])
        }
    })
    .await;
    let s = server_with_model_preempting(&base, None, true).await;
    let agent = json!({
        "name": "Riverside", "voiceMode": "hosted", "maxSilenceMs": 60000, "interruptionSensitivity": 0.0,
        "systemPrompt": "You take bookings.", "beginMessage": "Riverside, hello.",
    });
    let (_c, rec) = run_call(&s, agent, json!({}), "two-turns", 3.0).await;

    assert_eq!(rec.turns.len(), 2, "{:?}", rec.turns);
    assert_eq!(rec.turns[0].response.as_deref(), Some("Sure, for two."));
    assert_eq!(rec.turns[1].response.as_deref(), Some("A window table, of course."));
    let spoken = rec.spoken().join(" ");
    for line in ["Sure, for two.", "A window table, of course."] {
        assert_eq!(spoken.matches(line).count(), 1, "{line}: {spoken:?}");
    }
    // Every turn was asked for with its own text; early requests for other texts were dropped.
    let seen = seen.lock().unwrap().clone();
    for t in &rec.turns {
        assert!(
            seen.iter().any(|r| messages(r).last().is_some_and(|m| m.1 == t.transcript)),
            "turn {} ({:?}) was never asked for",
            t.seq,
            t.transcript
        );
    }
    assert_eq!(rec.count("reply_audio"), 2, "one reply per turn reached the caller");
    eprintln!(
        "requests {}, preempted {}, dropped {}",
        seen.len(),
        rec.count("reply_preempted"),
        rec.count("reply_preempt_dropped")
    );
}

#[tokio::test]
async fn a_goodbye_ends_the_call_after_the_closing_line() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (base, seen) = scripted_model(|_| says(&["We open at nine on Saturday."])).await;
    let s = server_with_model(&base, None).await;
    let agent = json!({"name": "Hours", "voiceMode": "hosted", "systemPrompt": "You answer questions about opening hours.",
                       "beginMessage": "Hello.", "maxSilenceMs": 60000});
    let (c, rec) = run_call(&s, agent, json!({}), "goodbye", 6.0).await;

    // "Okay, thank you." then, 280 ms later, "Goodbye": one turn or two depending on how fast
    // the first is decided; the goodbye never reaches the model either way.
    let seen = seen.lock().unwrap().clone();
    for r in &seen {
        let last = messages(r).last().unwrap().1.to_lowercase();
        assert!(!last.contains("goodbye"), "the goodbye is handled without the model: {last}");
    }
    assert!(rec.turns.last().unwrap().transcript.to_lowercase().contains("goodbye"), "{:?}", rec.turns);
    let spoken = rec.spoken();
    assert!(spoken.join(" ").contains("We open at nine on Saturday."), "{spoken:?}");
    assert_eq!(spoken.last().map(String::as_str), Some("Goodbye!"), "{spoken:?}");
    assert_eq!(rec.end_reason.as_deref(), Some("agent-hangup"));
    assert_eq!(rec.status, switchboard::store::CallStatus::Completed);
    // The server ended the call: the socket closed before the fixture's 6 s tail ran out.
    let (_, reason) = c.got.close.clone().expect("closed by the server");
    assert!(reason.contains("agent-hangup"), "{reason}");
}

#[tokio::test]
async fn asking_for_a_person_transfers_to_the_transfer_number() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The local gateway: records Twilio's call-update request.
    let (gateways, hits) = local_twilio("{}").await;
    let (base, seen) = scripted_model(|_| says(&["I can help with that."])).await;
    let s = server_with_model(&base, Some(gateways)).await;
    let agent = json!({"name": "Desk", "voiceMode": "hosted", "systemPrompt": "You are a help desk.", "beginMessage": "Hello.",
                       "transferNumber": "+14155550123", "maxSilenceMs": 60000});
    let (_c, rec) = run_call(&s, agent, json!({}), "transfer", 2.0).await;

    assert!(seen.lock().unwrap().is_empty(), "the intent is clear: no model request");
    let spoken = rec.spoken();
    assert_eq!(spoken, ["Hello.", "Let me transfer you now.", "Please hold."], "{spoken:?}");
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].0, "/2010-04-01/Accounts/AC0123/Calls/CA0001.json");
    assert!(
        hits[0].1.contains("Dial%3E%2B14155550123") || hits[0].1.contains("<Dial>+14155550123"),
        "{}",
        hits[0].1
    );
    assert_eq!(rec.count("transfer"), 1);
    assert!(
        rec.end_reason.as_deref().unwrap_or_default().contains("transferred to +14155550123"),
        "{:?}",
        rec.end_reason
    );
}

#[tokio::test]
async fn the_send_message_tool_texts_the_caller_through_twilio_and_stores_the_message() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The local Twilio: records the Messages API request and answers with a message sid.
    let (gateways, hits) = local_twilio(r#"{"sid": "SM0042", "status": "queued"}"#).await;
    let (base, seen) = scripted_model(|req| {
        let n = req["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "user").count();
        if n == 1 {
            Reply {
                tool: Some(("send_message", json!({"body": "Riverside: 12 Main St."}))),
                ..says(&["I've texted you our address."])
            }
        } else {
            says(&["You're welcome."])
        }
    })
    .await;
    let s = server_with_model(&base, Some(gateways)).await;
    let agent = json!({"name": "Riverside", "voiceMode": "hosted", "systemPrompt": "You help.", "beginMessage": "Hi.",
                       "enableMessaging": true, "maxSilenceMs": 60000});
    let params = json!({"from": "+15550001111", "to": "+15550002222"});
    let (_c, rec) = run_call(&s, agent, params, "two-turns", 3.0).await;

    assert!(tool_names(&seen.lock().unwrap()[0]).contains(&"send_message".to_string()));
    let hits = hits.lock().unwrap().clone();
    let texts: Vec<&(String, String)> = hits.iter().filter(|(p, _)| p.ends_with("/Messages.json")).collect();
    assert_eq!(texts.len(), 1, "{hits:?}");
    assert_eq!(texts[0].0, "/2010-04-01/Accounts/AC0123/Messages.json");
    let form: std::collections::HashMap<String, String> =
        reqwest::Url::parse(&format!("http://x/?{}", texts[0].1))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    assert_eq!(form["To"], "+15550001111", "to the caller");
    assert_eq!(form["From"], "+15550002222", "from the number called");
    assert_eq!(form["Body"], "Riverside: 12 Main St.");
    assert_eq!(rec.count("send_message"), 1);

    let store =
        switchboard::store::Store::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let messages = store.list_call_messages(&rec.id).await.unwrap();
    store.close().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!((m.status.as_str(), m.provider_id.as_deref()), ("sent", Some("SM0042")));
    assert_eq!((m.to_number.as_str(), m.from_number.as_str()), ("+15550001111", "+15550002222"));
    assert_eq!(m.body, "Riverside: 12 Main St.");
    // Listed on the call record.
    let (_, call) = s.get(&format!("/v1/calls/{}", rec.id)).await;
    let listed = call["messages"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{call}");
    assert_eq!(
        (listed[0]["status"].as_str(), listed[0]["providerId"].as_str()),
        (Some("sent"), Some("SM0042"))
    );
    assert_eq!(listed[0]["toNumber"], "+15550001111");
}

#[tokio::test]
async fn without_twilio_credentials_a_message_is_kept_as_not_configured() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (base, _seen) = scripted_model(|_| Reply {
        tool: Some(("send_message", json!({"body": "See you soon."}))),
        ..says(&["Done."])
    })
    .await;
    let s = server_with_model(&base, None).await;
    let agent = json!({"name": "Riverside", "voiceMode": "hosted", "systemPrompt": "You help.", "beginMessage": "Hi.",
                       "enableMessaging": true, "maxSilenceMs": 60000});
    let params = json!({"from": "+15550001111", "to": "+15550002222"});
    let (_c, rec) = run_call(&s, agent, params, "goodbye", 1.0).await;
    let store =
        switchboard::store::Store::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let messages = store.list_call_messages(&rec.id).await.unwrap();
    store.close().await;
    assert!(!messages.is_empty(), "kept even though it could not be sent");
    assert!(
        messages.iter().all(|m| m.status == "not-configured" && m.body == "See you soon."),
        "{messages:?}"
    );
}

#[tokio::test]
async fn the_models_end_call_tool_hangs_up_and_a_failure_gets_the_fallback_line() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Turn 1: the model refuses the request (a bad key: not retried); turn 2: it calls end_call
    // with its own line.
    let (base, seen) = scripted_model(|req| {
        let n = req["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "user").count();
        if n == 1 {
            Reply { status: 401, ..Default::default() }
        } else {
            Reply { tool: Some(("end_call", json!({"goodbye": "Thanks, bye now."}))), ..says(&[]) }
        }
    })
    .await;
    let s = server_with_model(&base, None).await;
    let agent = json!({"name": "Flaky", "voiceMode": "hosted", "systemPrompt": "You help.", "beginMessage": "Hi.", "maxSilenceMs": 60000});
    let (_c, rec) = run_call(&s, agent, json!({}), "two-turns", 5.0).await;

    assert_eq!(seen.lock().unwrap().len(), 2);
    let spoken = rec.spoken();
    assert!(spoken[1].starts_with("I'm sorry, I'm having trouble"), "{spoken:?}");
    assert_eq!(spoken.last().map(String::as_str), Some("Thanks, bye now."), "{spoken:?}");
    assert_eq!(rec.count("reply_failed"), 1);
    assert_eq!(rec.end_reason.as_deref(), Some("agent-hangup"));
    let errors =
        metric_count(&s, "switchboard_provider_errors_total{stage=\"llm\",provider=\"openai-chat\"}").await;
    assert_eq!(errors, 1.0);
}

#[tokio::test]
async fn a_slow_model_gets_a_filler_and_an_empty_begin_message_lets_the_model_open() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (base, seen) = scripted_model(|req| {
        let last =
            req["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_string();
        if last.contains("call has just connected") {
            says(&["Hi, this is the clinic."])
        } else {
            Reply { delay_ms: 2500, ..says(&["Let me check that for you."]) }
        }
    })
    .await;
    let s = server_with_model(&base, None).await;
    let agent = json!({"name": "Clinic", "voiceMode": "hosted", "systemPrompt": "You are a clinic.", "maxSilenceMs": 60000});
    let (_c, rec) = run_call(&s, agent, json!({}), "barge-in", 5.0).await;

    let seen = seen.lock().unwrap().clone();
    assert!(
        messages(&seen[0]).last().unwrap().1.contains("call has just connected"),
        "the model opens the call"
    );
    let spoken = rec.spoken();
    assert_eq!(spoken.first().map(String::as_str), Some("Hi, this is the clinic."), "{spoken:?}");
    // The reply's first words may be a piece of their own: compare the spoken text.
    let joined = spoken.join(" ");
    let filler = joined.find("One moment, please.").expect("a filler was said");
    let answer = joined.find("Let me check that for you.").expect("the reply was said");
    assert!(filler < answer, "{spoken:?}");
    assert_eq!(rec.count("filler"), 1);
}

#[tokio::test]
async fn a_barge_in_truncates_the_history_to_what_was_heard() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (base, seen) = scripted_model(|_| says(&["Of course."])).await;
    let s = server_with_model(&base, None).await;
    let greeting = "Hello and thank you for calling the Riverside restaurant. \
        We are open every day from noon until eleven in the evening. \
        I can help you book a table, change a booking, or answer questions about the menu.";
    let agent = json!({"name": "Long", "voiceMode": "hosted", "systemPrompt": "You help.",
                       "beginMessage": greeting, "maxSilenceMs": 60000});
    let (_c, rec) = run_call(&s, agent, json!({}), "barge-in", 3.0).await;

    assert_eq!(rec.count("barge_in"), 1, "{:?}", rec.events);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let m = messages(&seen[0]);
    let heard = &m[1];
    assert_eq!(heard.0, "assistant", "{m:?}");
    assert!(heard.1.ends_with('—'), "a cut sentence is marked: {:?}", heard.1);
    assert!(heard.1.starts_with("Hello"), "{:?}", heard.1);
    assert!(!heard.1.contains("noon"), "unheard sentences are not in the history: {:?}", heard.1);
    assert!(heard.1.len() < "Hello and thank you for calling the Riverside restaurant.".len());
}

#[tokio::test]
async fn the_embedded_model_answers_a_recorded_call() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = TestServer::start().await;
    let agent = json!({
        "name": "Riverside", "voiceMode": "hosted", "maxSilenceMs": 60000,
        "systemPrompt": "You are the phone assistant of the Riverside restaurant. You take table bookings.",
        "beginMessage": "Riverside restaurant, how can I help?",
    });
    let (c, rec) = run_call(&s, agent, json!({}), "two-turns", 4.0).await;
    assert_eq!(rec.turns.len(), 2, "{:?}", rec.turns);
    for t in &rec.turns {
        let r = t.response.as_deref().unwrap_or_default();
        eprintln!("turn {}: {:?} -> {:?}", t.seq, t.transcript, r);
        assert!(r.split_whitespace().count() >= 2, "turn {} has a spoken reply: {r:?}", t.seq);
    }
    assert!(rec.count("reply_audio") >= 2, "{:?}", rec.events);
    assert!(c.got.frames.len() > 400);
}

/// A customer's webhook server: checks every signature, records the envelopes, and answers
/// caller turns with a streamed (ndjson) reply.
async fn webhook_server(secret: Arc<Mutex<String>>) -> (String, Arc<Mutex<Vec<Value>>>) {
    use hmac::{Hmac, Mac};
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (seen, secret) = (s2.clone(), secret.clone());
            async move {
                let ts = headers["x-webhook-timestamp"].to_str().unwrap().to_string();
                let sig = headers["x-webhook-signature"].to_str().unwrap().to_string();
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.lock().unwrap().as_bytes()).unwrap();
                mac.update(format!("{ts}.").as_bytes());
                mac.update(&body);
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(sig, want, "valid signature");
                let v: Value = serde_json::from_slice(&body).unwrap();
                let event = v["event"].as_str().unwrap().to_string();
                seen.lock().unwrap().push(v);
                let reply = if event == "agent.message" {
                    "{\"text\": \"Thanks for calling.\", \"interim\": true}\n{\"text\": \"We have a table for you.\"}\n"
                } else {
                    ""
                };
                ([("content-type", "application/x-ndjson")], reply)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn a_webhook_agents_turns_reach_its_server_signed_and_the_streamed_reply_is_spoken() {
    let _one = ONE_AT_A_TIME.lock().await;
    let secret: Arc<Mutex<String>> = Arc::default();
    let (url, seen) = webhook_server(secret.clone()).await;
    let s = TestServer::start().await;
    let agent = s
        .agent(json!({"name": "Hooked", "beginMessage": "Hello.", "maxSilenceMs": 60000, "interruptionSensitivity": 0.0}))
        .await;
    let id = agent["id"].as_str().unwrap();
    let (status, hook) =
        s.post(&format!("/v1/agents/{id}/webhook"), json!({"url": url, "contextLimit": 10})).await;
    assert!(status.is_success(), "{hook}");
    *secret.lock().unwrap() = hook["secret"].as_str().unwrap().to_string();

    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": id, "from": "+15550002222"}))).await;
    c.stream(call_audio("two-turns", 5.0), Duration::from_millis(100)).await;
    c.send(twilio::stop()).await;
    c.closed().await;
    let rec = ended_call(&s).await;
    let spoken = rec.spoken();
    eprintln!("spoken: {spoken:?}");

    // The queued agent.call_ended is delivered by the worker shortly after the call.
    for _ in 0..100 {
        if seen.lock().unwrap().iter().any(|v| v["event"] == "agent.call_ended") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let messages: Vec<&Value> = seen.iter().filter(|v| v["event"] == "agent.message").collect();
    assert_eq!(messages.len(), 2, "one agent.message per caller turn: {seen:?}");
    assert_eq!(messages[0]["agentId"], id);
    assert_eq!(messages[0]["data"]["from"], "+15550002222");
    assert!(messages[0]["data"]["transcript"].as_str().unwrap().to_lowercase().contains("table"));
    // The second turn's recent history holds the first exchange as heard.
    let history: Vec<&str> = messages[1]["recentHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["content"].as_str().unwrap())
        .collect();
    assert!(history.contains(&"Thanks for calling. We have a table for you."), "{history:?}");
    // Both streamed lines were spoken, for each turn.
    assert_eq!(spoken.iter().filter(|t| *t == "Thanks for calling.").count(), 2, "{spoken:?}");
    assert_eq!(spoken.iter().filter(|t| *t == "We have a table for you.").count(), 2, "{spoken:?}");
    assert_eq!(rec.turns[0].response.as_deref(), Some("Thanks for calling. We have a table for you."));
    let ended = seen.iter().find(|v| v["event"] == "agent.call_ended").expect("agent.call_ended delivered");
    assert!(ended["data"]["transcript"].as_str().unwrap().contains("We have a table for you."), "{ended}");
}

#[tokio::test]
async fn an_answering_machine_gets_the_voicemail_message_after_its_beep() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (base, _seen) = scripted_model(|_| says(&["Hello?"])).await;
    let s = server_with_model(&base, None).await;
    let message = "Hi Sam, this is Riverside confirming your table for tomorrow.";
    let agent = json!({"name": "Caller", "voiceMode": "hosted", "systemPrompt": "You confirm bookings.",
                       "beginMessage": "Hello, this is Riverside.", "voicemailMessage": message, "maxSilenceMs": 60000});
    let (_c, rec) = run_call(&s, agent, json!({}), "voicemail", 2.0).await;

    let expect = &Fixture::annotation("voicemail.json")["expect"];
    let beep = rec.events.iter().find(|e| e.kind == "beep").expect("the beep was heard");
    let (start, end) = (expect["beepStartMs"].as_i64().unwrap(), expect["beepEndMs"].as_i64().unwrap());
    assert!(beep.at_ms >= start + 200 && beep.at_ms <= end + 40, "beep at {} ms ({start}–{end})", beep.at_ms);
    let spoken = rec.spoken();
    assert_eq!(
        spoken.last().map(String::as_str),
        Some("Hi Sam, this is Riverside confirming your table for tomorrow.")
    );
    let msg_start = rec.events.iter().rfind(|e| e.kind == "agent_started").unwrap().at_ms;
    assert!(msg_start >= beep.at_ms, "the message starts after the beep");
    assert_eq!(rec.end_reason.as_deref(), Some("voicemail"));
}

#[tokio::test]
async fn a_machine_reported_by_the_gateway_gets_the_message_at_once_or_a_hang_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (base, seen) = scripted_model(|_| says(&["Hello?"])).await;
    let s = server_with_model(&base, None).await;
    let agent = json!({"name": "Caller", "voiceMode": "hosted", "systemPrompt": "You confirm bookings.",
                       "beginMessage": "Hello, this is Riverside.", "voicemailMessage": "Please call us back.",
                       "maxSilenceMs": 60000});
    let silence: Vec<Message> = (0..150).map(|i| twilio::media(i, &[0xFF; 160])).collect();
    let agent = s.agent(agent).await;
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent["id"], "answeredBy": "machine_end_beep"})))
        .await;
    c.stream(silence, Duration::from_millis(100)).await;
    c.closed().await;
    let rec = ended_call(&s).await;
    assert_eq!(rec.spoken(), ["Please call us back."], "no greeting, only the message");
    assert_eq!(rec.end_reason.as_deref(), Some("voicemail"));
    assert!(seen.lock().unwrap().is_empty());

    // Without a voicemailMessage: hang up at once.
    let agent = s.agent(json!({"name": "Quiet", "beginMessage": "Hello.", "maxSilenceMs": 60000})).await;
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent["id"], "answeredBy": "machine_end_other"})))
        .await;
    let silence: Vec<Message> = (0..150).map(|i| twilio::media(i, &[0xFF; 160])).collect();
    c.stream(silence, Duration::from_millis(100)).await;
    let (_, reason) = c.closed().await;
    assert_eq!(reason, "voicemail");
    let rec = ended_call(&s).await;
    assert!(rec.spoken().is_empty());
    assert_eq!(rec.end_reason.as_deref(), Some("voicemail"));
}
