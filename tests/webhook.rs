//! Webhooks over real HTTP: the REST endpoints against the real server, and a local axum server
//! standing in for the customer's endpoint (it records every request and answers as told).
//! Live turns go through `WebhookResponder`; queued `agent.call_ended` events through the
//! server's delivery worker (retries with backoff, giving up, surviving a restart).

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use common::{assert_detail, TestServer};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use switchboard::call::reply::{HistoryItem, ReplyAction, ReplyEvent, ReplyRequest, Responder, Speaker};
use switchboard::metrics::Metrics;
use switchboard::store::Store;
use switchboard::webhook::{self, CallInfo};
use tokio::sync::{oneshot, Notify};

/// Guards against a hang; never a performance bound.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The customer's endpoint.

/// How the endpoint answers one request.
#[derive(Clone)]
enum Reply {
    /// This status, a JSON body.
    Json(u16, String),
    /// Any body with this content type.
    Raw(&'static str, String),
    /// `application/x-ndjson`: `first` at once, `rest` only after `release` is notified.
    /// `dropped` fires when the body stream is dropped (finished, or the client went away).
    Ndjson {
        first: String,
        rest: String,
        release: Arc<Notify>,
        dropped: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    },
    /// Never answers (until the test ends).
    Hang,
}

#[derive(Clone, Debug)]
struct Recorded {
    headers: HeaderMap,
    body: String,
    at: Instant,
}

#[derive(Clone)]
struct Endpoint {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// One-off answers, in order; then `default`.
    queue: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
}

impl Endpoint {
    async fn start(default: Reply) -> Self {
        let ep = Endpoint {
            url: String::new(),
            requests: Arc::default(),
            queue: Arc::default(),
            default: Arc::new(Mutex::new(default)),
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(answer)).with_state(ep.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Endpoint { url: format!("http://{addr}/hook"), ..ep }
    }

    fn then(&self, reply: Reply) -> &Self {
        self.queue.lock().unwrap().push_back(reply);
        self
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn answer(State(ep): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    ep.requests.lock().unwrap().push(Recorded {
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
        at: Instant::now(),
    });
    let reply = ep.queue.lock().unwrap().pop_front().unwrap_or_else(|| ep.default.lock().unwrap().clone());
    match reply {
        Reply::Json(status, body) => {
            (AxumStatus::from_u16(status).unwrap(), [("content-type", "application/json")], body)
                .into_response()
        }
        Reply::Raw(content_type, body) => ([("content-type", content_type)], body).into_response(),
        Reply::Ndjson { first, rest, release, dropped } => {
            struct OnDrop(Arc<Mutex<Option<oneshot::Sender<()>>>>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    if let Some(tx) = self.0.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
            }
            let guard = OnDrop(dropped);
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let (first, rest, release) = (first.clone(), rest.clone(), release.clone());
                let _keep = &guard;
                async move {
                    match step {
                        0 => Some((Ok::<_, std::io::Error>(Bytes::from(first)), 1)),
                        1 => {
                            release.notified().await;
                            Some((Ok(Bytes::from(rest)), 2))
                        }
                        _ => None,
                    }
                }
            });
            ([("content-type", "application/x-ndjson")], Body::from_stream(stream)).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            AxumStatus::OK.into_response()
        }
    }
}

fn ok_json(body: Value) -> Reply {
    Reply::Json(200, body.to_string())
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Recomputes the signature of a recorded request the way a receiver would.
#[track_caller]
fn assert_signed(req: &Recorded, secret: &str) {
    let ts = req.headers["x-webhook-timestamp"].to_str().unwrap();
    let ts_num: i64 = ts.parse().expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - ts_num).abs() < 300, "timestamp {ts} is not now");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}", req.body).as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(req.headers["x-webhook-signature"].to_str().unwrap(), expected);
    assert_eq!(req.headers["content-type"].to_str().unwrap(), "application/json");
}

async fn store_of(s: &TestServer) -> Store {
    Store::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap()
}

/// An agent with a webhook to `url`; returns (agent id, webhook JSON).
async fn agent_with_webhook(s: &TestServer, url: &str, extra: Value) -> (String, Value) {
    let agent = s.agent(json!({"name": "Hooked"})).await;
    let id = agent["id"].as_str().unwrap().to_string();
    let mut body = json!({"url": url});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (st, hook) = s.post(&format!("/v1/agents/{id}/webhook"), body).await;
    assert_eq!(st, StatusCode::CREATED, "{hook}");
    (id, hook)
}

fn call_info() -> CallInfo {
    CallInfo {
        call_id: "call_test1".into(),
        number_id: Some("num_1".into()),
        from: Some("+15550001111".into()),
        to: Some("+15550002222".into()),
        direction: "inbound".into(),
    }
}

fn item(speaker: Speaker, text: &str, at: &str) -> HistoryItem {
    HistoryItem { speaker, text: text.into(), at: at.into() }
}

fn request(agent_id: &str, history: Vec<HistoryItem>, caller_text: &str) -> ReplyRequest {
    ReplyRequest {
        call_id: "call_test1".into(),
        agent_id: agent_id.into(),
        history,
        caller_text: caller_text.into(),
        confidence: 0.75,
        variables: Arc::new(BTreeMap::new()),
    }
}

async fn responder(s: &TestServer, agent_id: &str) -> webhook::WebhookResponder {
    webhook::responder_for(
        &store_of(s).await,
        webhook::http_client(),
        Arc::new(Metrics::new()),
        agent_id,
        call_info(),
    )
    .await
    .unwrap()
    .expect("the agent has a webhook")
}

/// Every event until `Done`/`Failed` (or the channel closes).
async fn collect(mut rx: tokio::sync::mpsc::Receiver<ReplyEvent>) -> Vec<ReplyEvent> {
    let mut out = Vec::new();
    while let Some(ev) = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("reply events keep coming") {
        let end = matches!(ev, ReplyEvent::Done | ReplyEvent::Failed { .. });
        out.push(ev);
        if end {
            break;
        }
    }
    out
}

/// Polls the delivery list until `check` accepts it.
async fn wait_deliveries(s: &TestServer, agent_id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (st, list) = s.get(&format!("/v1/agents/{agent_id}/webhook/deliveries")).await;
        assert_eq!(st, StatusCode::OK, "{list}");
        if check(&list) {
            return list;
        }
        assert!(start.elapsed() < PATIENCE, "deliveries never reached the expected state: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics_text(s: &TestServer) -> String {
    s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// REST.

#[tokio::test]
async fn crud_validation_and_secret_format() {
    let s = TestServer::start().await;
    let agent = s.agent(json!({"name": "A"})).await;
    let id = agent["id"].as_str().unwrap();
    let path = format!("/v1/agents/{id}/webhook");

    assert_detail(&s.get(&path).await, 404, "has no webhook");
    assert_detail(&s.get("/v1/agents/agt_nope/webhook").await, 404, "agt_nope");
    assert_detail(
        &s.post("/v1/agents/agt_nope/webhook", json!({"url": "https://x.example"})).await,
        404,
        "agt_nope",
    );
    assert_detail(&s.get("/v1/agents/agt_nope/webhook/deliveries").await, 404, "agt_nope");
    assert_detail(&s.post(&format!("{path}/test"), json!({})).await, 404, "has no webhook");

    for bad in ["ftp://example.com/hook", "not a url", "/relative/hook", "https://", "mailto:a@b.c"] {
        assert_detail(&s.post(&path, json!({"url": bad})).await, 422, "url:");
    }
    assert_detail(&s.post(&path, json!({})).await, 422, "url");
    assert_detail(&s.post(&path, json!({"url": 5})).await, 422, "url");
    let url = "https://hooks.example.com/agent";
    for (field, value) in [
        ("contextLimit", json!(51)),
        ("contextLimit", json!(-1)),
        ("contextLimit", json!("ten")),
        ("timeout", json!(4)),
        ("timeout", json!(121)),
        ("timeout", json!(2.5)),
    ] {
        let got = s.post(&path, json!({"url": url, field: value})).await;
        assert_detail(&got, 422, &format!("{field}:"));
    }
    assert_eq!(s.get(&path).await.0, StatusCode::NOT_FOUND, "nothing stored by refused requests");

    // Create with defaults.
    let (st, hook) = s.post(&path, json!({"url": url})).await;
    assert_eq!(st, StatusCode::CREATED, "{hook}");
    assert_eq!((hook["url"].as_str(), hook["status"].as_str()), (Some(url), Some("active")));
    assert_eq!((hook["contextLimit"].as_i64(), hook["timeout"].as_i64()), (Some(10), Some(30)));
    assert!(hook["id"].as_str().unwrap().starts_with("whk_"), "{hook}");
    chrono::DateTime::parse_from_rfc3339(hook["createdAt"].as_str().unwrap()).expect("RFC 3339");
    let secret = hook["secret"].as_str().unwrap();
    let random = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    assert_eq!(random.len(), 43, "32 bytes base64url: {secret}");
    assert!(random.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{secret}");
    assert_eq!(s.get(&path).await, (StatusCode::OK, hook.clone()));

    // Replace: new id and secret, new settings; edges of the ranges accepted.
    let (st, replaced) =
        s.post(&path, json!({"url": "http://10.0.0.1:8080/x", "contextLimit": 0, "timeout": 120})).await;
    assert_eq!(st, StatusCode::CREATED, "{replaced}");
    assert_ne!(replaced["id"], hook["id"]);
    assert_ne!(replaced["secret"], hook["secret"]);
    assert_eq!((replaced["contextLimit"].as_i64(), replaced["timeout"].as_i64()), (Some(0), Some(120)));
    assert_eq!(s.get(&path).await.1, replaced);
    let (_, edge) = s.post(&path, json!({"url": url, "contextLimit": 50, "timeout": 5})).await;
    assert_eq!((edge["contextLimit"].as_i64(), edge["timeout"].as_i64()), (Some(50), Some(5)));

    let (st, list) = s.get(&format!("{path}/deliveries")).await;
    assert_eq!((st, list), (StatusCode::OK, json!({"data": [], "hasMore": false, "total": 0})));
    assert_detail(&s.get(&format!("{path}/deliveries?limit=0")).await, 422, "limit:");

    let (st, body) = s.delete(&path).await;
    assert_eq!((st, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_detail(&s.get(&path).await, 404, "has no webhook");
    assert_detail(&s.delete(&path).await, 404, "has no webhook");
    assert_detail(&s.delete("/v1/agents/agt_nope/webhook").await, 404, "agt_nope");
    // Authenticated like every /v1 route.
    assert_eq!(s.call_as(None, reqwest::Method::GET, &path, None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn test_event_is_signed_recorded_and_listed_newest_first() {
    let s = TestServer::start().await;
    let ep = Endpoint::start(ok_json(json!({"ok": true}))).await;
    let (id, hook) = agent_with_webhook(&s, &ep.url, json!({})).await;
    let secret = hook["secret"].as_str().unwrap();

    let (st, d) = s.post(&format!("/v1/agents/{id}/webhook/test"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!((d["status"].as_str(), d["httpStatus"].as_i64()), (Some("delivered"), Some(200)), "{d}");
    assert_eq!((d["attemptCount"].as_i64(), d["eventType"].as_str()), (Some(1), Some("agent.test")));
    assert_eq!((d["errorMessage"].clone(), d["nextRetryAt"].clone()), (Value::Null, Value::Null));
    assert!(d["id"].as_str().unwrap().starts_with("whd_"), "{d}");
    let reqs = ep.requests();
    assert_eq!(reqs.len(), 1);
    assert_signed(&reqs[0], secret);
    let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!((body["event"].as_str(), body["channel"].as_str()), (Some("agent.test"), Some("voice")));
    assert_eq!(body["agentId"].as_str(), Some(id.as_str()));
    assert!(body["data"].is_object() && body["recentHistory"].is_array(), "{body}");

    // A failing endpoint: recorded as failed with its status.
    ep.then(Reply::Json(500, "{}".into()));
    let (st, failed) = s.post(&format!("/v1/agents/{id}/webhook/test"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((failed["status"].as_str(), failed["httpStatus"].as_i64()), (Some("failed"), Some(500)));
    assert!(failed["errorMessage"].as_str().unwrap().contains("500"), "{failed}");

    let (_, list) = s.get(&format!("/v1/agents/{id}/webhook/deliveries")).await;
    assert_eq!((list["total"].as_i64(), list["hasMore"].as_bool()), (Some(2), Some(false)));
    assert_eq!(list["data"][0]["id"], failed["id"], "newest first");
    assert_eq!(list["data"][1], d);
    let (_, page) = s.get(&format!("/v1/agents/{id}/webhook/deliveries?limit=1&offset=1")).await;
    assert_eq!((page["data"][0]["id"].clone(), page["hasMore"].as_bool()), (d["id"].clone(), Some(false)));
    let (_, page) = s.get(&format!("/v1/agents/{id}/webhook/deliveries?limit=1")).await;
    assert_eq!(page["hasMore"].as_bool(), Some(true));
}

#[tokio::test]
async fn deleting_the_agent_removes_its_webhook_and_deliveries() {
    let s = TestServer::start().await;
    let ep = Endpoint::start(ok_json(json!({}))).await;
    let (id, _) = agent_with_webhook(&s, &ep.url, json!({})).await;
    let (keep, _) = agent_with_webhook(&s, &ep.url, json!({})).await;
    for agent in [&id, &keep] {
        assert_eq!(s.post(&format!("/v1/agents/{agent}/webhook/test"), json!({})).await.0, StatusCode::OK);
    }
    assert_eq!(s.delete(&format!("/v1/agents/{id}")).await.0, StatusCode::OK);

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let count = |table: &'static str, agent: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table} WHERE agent_id = $1"))
                .bind(agent)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("agent_webhooks", id.clone()).await, 0);
    assert_eq!(count("webhook_deliveries", id.clone()).await, 0);
    assert_eq!(count("agent_webhooks", keep.clone()).await, 1, "other agents keep theirs");
    assert_eq!(count("webhook_deliveries", keep.clone()).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Live turns.

#[tokio::test]
async fn json_reply_becomes_events_and_history_honours_the_context_limit() {
    let s = TestServer::start().await;
    let ep = Endpoint::start(ok_json(json!({"text": "We open at nine.", "unknown": 1}))).await;
    let (id, hook) = agent_with_webhook(&s, &ep.url, json!({"contextLimit": 2})).await;
    let store = store_of(&s).await;
    let none = s.agent(json!({"name": "No hook"})).await;
    let metrics = Arc::new(Metrics::new());
    let missing = webhook::responder_for(
        &store,
        webhook::http_client(),
        metrics.clone(),
        none["id"].as_str().unwrap(),
        call_info(),
    )
    .await
    .unwrap();
    assert!(missing.is_none(), "no webhook, no responder");

    let r = responder(&s, &id).await;
    assert_eq!(r.name(), "webhook");
    let history = vec![
        item(Speaker::Agent, "Hello, Bistro here.", "2026-01-01T10:00:00.000Z"),
        item(Speaker::Caller, "Hi, a question.", "2026-01-01T10:00:02.000Z"),
        item(Speaker::Agent, "Sure, go ahead.", "2026-01-01T10:00:03.000Z"),
    ];
    let events = collect(r.respond(request(&id, history, "When do you open?"))).await;
    assert_eq!(
        events,
        vec![ReplyEvent::Text { text: "We open at nine.".into(), flush: true }, ReplyEvent::Done]
    );

    let reqs = ep.requests();
    assert_eq!(reqs.len(), 1);
    assert_signed(&reqs[0], hook["secret"].as_str().unwrap());
    let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(body["event"], "agent.message");
    assert_eq!(body["agentId"].as_str(), Some(id.as_str()));
    assert_eq!(
        body["data"],
        json!({"callId": "call_test1", "numberId": "num_1", "from": "+15550001111", "to": "+15550002222",
               "status": "in-progress", "transcript": "When do you open?", "confidence": 0.75, "direction": "inbound"})
    );
    assert_eq!(
        body["recentHistory"],
        json!([
            {"content": "Hi, a question.", "direction": "inbound", "channel": "voice", "at": "2026-01-01T10:00:02.000Z"},
            {"content": "Sure, go ahead.", "direction": "outbound", "channel": "voice", "at": "2026-01-01T10:00:03.000Z"},
        ])
    );

    let list = wait_deliveries(&s, &id, |l| l["total"] == 1).await;
    let d = &list["data"][0];
    assert_eq!(
        (d["eventType"].as_str(), d["status"].as_str()),
        (Some("agent.message"), Some("delivered")),
        "{d}"
    );
    assert_eq!((d["httpStatus"].as_i64(), d["attemptCount"].as_i64()), (Some(200), Some(1)));
    assert_eq!(d["callId"], "call_test1");
    // The recorded payload is the exact body sent.
    let payload: String = sqlx::query_scalar("SELECT payload FROM webhook_deliveries")
        .fetch_one(&sqlx::SqlitePool::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap())
        .await
        .unwrap();
    assert_eq!(payload, reqs[0].body);

    // An action in the reply: its text is the goodbye line.
    ep.then(ok_json(json!({"text": "Goodbye!", "action": "end_call"})));
    let events = collect(r.respond(request(&id, vec![], "That's all"))).await;
    assert_eq!(
        events,
        vec![ReplyEvent::Action(ReplyAction::EndCall { goodbye: Some("Goodbye!".into()) }), ReplyEvent::Done]
    );
}

#[tokio::test]
async fn ndjson_reply_is_spoken_line_by_line_as_it_arrives() {
    let s = TestServer::start().await;
    let release = Arc::new(Notify::new());
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let ep = Endpoint::start(Reply::Ndjson {
        first: "{\"text\": \"Let me check that.\", \"interim\": true}\n".into(),
        rest: "{\"text\": \"Table for four\", \"interim\": true}\n\n{\"text\": \"at eight is booked.\"}"
            .into(),
        release: release.clone(),
        dropped: Arc::new(Mutex::new(Some(dropped_tx))),
    })
    .await;
    let (id, _) = agent_with_webhook(&s, &ep.url, json!({})).await;
    let r = responder(&s, &id).await;
    let mut rx = r.respond(request(&id, vec![], "Book a table for four at eight"));

    // The endpoint holds the rest of its body until we release it: this event can only come
    // from the first line, read while the body is still open.
    let first =
        tokio::time::timeout(PATIENCE, rx.recv()).await.expect("first line spoken before the body ends");
    assert_eq!(first, Some(ReplyEvent::Text { text: "Let me check that.".into(), flush: true }));
    assert!(rx.try_recv().is_err(), "nothing more before the endpoint sends it");
    release.notify_one();
    let rest = collect(rx).await;
    assert_eq!(
        rest,
        vec![
            ReplyEvent::Text { text: "Table for four".into(), flush: true },
            ReplyEvent::Text { text: "at eight is booked.".into(), flush: true },
            ReplyEvent::Done,
        ]
    );
    tokio::time::timeout(PATIENCE, dropped_rx).await.expect("body finished").unwrap();
    let list = wait_deliveries(&s, &id, |l| l["total"] == 1).await;
    assert_eq!(list["data"][0]["status"], "delivered");
}

#[tokio::test]
async fn dropping_the_receiver_aborts_the_request() {
    let s = TestServer::start().await;
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let ep = Endpoint::start(Reply::Ndjson {
        first: "{\"text\": \"One moment\", \"interim\": true}\n".into(),
        rest: "{\"text\": \"never sent\"}\n".into(),
        release: Arc::new(Notify::new()),
        dropped: Arc::new(Mutex::new(Some(dropped_tx))),
    })
    .await;
    let (id, _) = agent_with_webhook(&s, &ep.url, json!({})).await;
    let r = responder(&s, &id).await;
    let mut rx = r.respond(request(&id, vec![], "Hello"));
    let first = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap();
    assert!(matches!(first, Some(ReplyEvent::Text { .. })), "{first:?}");
    drop(rx); // barge-in
              // The endpoint never releases the rest: its body stream ends only because the request was
              // aborted and the connection closed.
    tokio::time::timeout(PATIENCE, dropped_rx).await.expect("request aborted").unwrap();
    let list = wait_deliveries(&s, &id, |l| l["total"] == 1).await;
    let d = &list["data"][0];
    assert_eq!((d["status"].as_str(), d["httpStatus"].as_i64()), (Some("delivered"), Some(200)), "{d}");
    assert!(d["errorMessage"].as_str().unwrap().contains("cancelled"), "{d}");
}

#[tokio::test]
async fn error_status_and_malformed_bodies_fail_the_turn_and_are_recorded() {
    let s = TestServer::start().await;
    let ep = Endpoint::start(ok_json(json!({"text": "fine"}))).await;
    let (id, _) = agent_with_webhook(&s, &ep.url, json!({})).await;
    let r = responder(&s, &id).await;
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::Json(500, "{\"error\": \"boom\"}".into()), "HTTP 500"),
        (Reply::Json(302, "{}".into()), "HTTP 302"),
        (Reply::Raw("application/json", "not json".into()), "malformed reply"),
        (Reply::Raw("text/plain", "".into()), "malformed reply"),
        (Reply::Raw("application/json", "[\"text\"]".into()), "malformed reply"),
        (Reply::Raw("application/x-ndjson", "{\"text\": \"ok\"}\n{bad\n".into()), "malformed reply"),
    ];
    for (n, (reply, needle)) in cases.into_iter().enumerate() {
        ep.then(reply);
        let events = collect(r.respond(request(&id, vec![], "Hi"))).await;
        let Some(ReplyEvent::Failed { provider, message }) = events.last() else {
            panic!("case {n}: {events:?}")
        };
        assert_eq!(*provider, "webhook");
        assert!(message.contains(needle), "case {n}: {message:?} lacks {needle:?}");
        let list = wait_deliveries(&s, &id, |l| l["total"] == n as i64 + 1).await;
        let d = &list["data"][0];
        assert_eq!(d["status"], "failed", "case {n}: {d}");
        assert!(d["errorMessage"].as_str().unwrap().contains(needle), "case {n}: {d}");
    }
    // The ndjson case spoke its good line before the bad one.
    ep.then(Reply::Raw("application/x-ndjson", "{\"text\": \"ok\"}\n{bad\n".into()));
    let events = collect(r.respond(request(&id, vec![], "Hi"))).await;
    assert_eq!(events[0], ReplyEvent::Text { text: "ok".into(), flush: true });
}

#[tokio::test]
async fn a_slow_endpoint_times_out() {
    let s = TestServer::start().await;
    let ep = Endpoint::start(Reply::Hang).await;
    let (id, _) = agent_with_webhook(&s, &ep.url, json!({"timeout": 5})).await;
    let r = responder(&s, &id).await;
    let events = collect(r.respond(request(&id, vec![], "Hello?"))).await;
    assert_eq!(
        events,
        vec![ReplyEvent::Failed { provider: "webhook", message: "no complete reply within 5 s".into() }]
    );
    let list = wait_deliveries(&s, &id, |l| l["total"] == 1).await;
    let d = &list["data"][0];
    assert_eq!((d["status"].as_str(), d["httpStatus"].clone()), (Some("failed"), Value::Null), "{d}");
    assert!(d["errorMessage"].as_str().unwrap().contains("within 5 s"), "{d}");
}

// ---------------------------------------------------------------------------------------------
// Queued events.

fn transcript() -> Vec<HistoryItem> {
    vec![
        item(Speaker::Agent, "Hello!", "2026-01-01T10:00:00.000Z"),
        item(Speaker::Caller, "Bye.", "2026-01-01T10:00:01.000Z"),
    ]
}

#[tokio::test]
async fn call_ended_is_retried_with_backoff_until_the_endpoint_answers() {
    let s = TestServer::start_with(|c| {
        c.webhook_retry_base = Duration::from_millis(100);
        c.webhook_poll_interval = Duration::from_millis(20);
    })
    .await;
    let ep = Endpoint::start(ok_json(json!({}))).await;
    ep.then(Reply::Json(500, "{}".into())).then(Reply::Json(503, "{}".into()));
    let (id, hook) = agent_with_webhook(&s, &ep.url, json!({})).await;
    let store = store_of(&s).await;
    let queued = webhook::enqueue_call_ended(&store, &id, &call_info(), "completed", &transcript())
        .await
        .unwrap()
        .expect("the agent has a webhook");

    let list = wait_deliveries(&s, &id, |l| l["data"][0]["status"] == "delivered").await;
    let d = &list["data"][0];
    assert_eq!(d["id"].as_str(), Some(queued.id.as_str()));
    assert_eq!((d["attemptCount"].as_i64(), d["httpStatus"].as_i64()), (Some(3), Some(200)), "{d}");
    assert_eq!((d["eventType"].as_str(), d["nextRetryAt"].clone()), (Some("agent.call_ended"), Value::Null));
    assert!(d["lastAttemptAt"].is_string(), "{d}");

    let reqs = ep.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_signed(r, hook["secret"].as_str().unwrap());
        assert_eq!(r.body, queued.payload, "every attempt sends the stored body");
        assert_eq!(r.headers["x-webhook-delivery"].to_str().unwrap(), queued.id);
    }
    // The retries waited at least the backoff: 100 ms, then 200 ms.
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(100), "{:?}", reqs[1].at - reqs[0].at);
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(200), "{:?}", reqs[2].at - reqs[1].at);
    let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(body["event"], "agent.call_ended");
    assert_eq!(body["data"]["status"], "completed");
    assert_eq!(body["data"]["transcript"], "Agent: Hello!\nCaller: Bye.");
    assert_eq!(body["recentHistory"].as_array().unwrap().len(), 2);

    let text = metrics_text(&s).await;
    assert!(text.contains(r#"switchboard_webhook_deliveries_total{status="retry"} 2"#), "{text}");
    assert!(text.contains(r#"switchboard_webhook_deliveries_total{status="delivered"} 1"#), "{text}");

    // No webhook, nothing queued.
    let bare = s.agent(json!({"name": "Bare"})).await;
    let none =
        webhook::enqueue_call_ended(&store, bare["id"].as_str().unwrap(), &call_info(), "completed", &[])
            .await
            .unwrap();
    assert!(none.is_none());
}

#[tokio::test]
async fn call_ended_gives_up_after_five_attempts() {
    let s = TestServer::start_with(|c| {
        c.webhook_retry_base = Duration::from_millis(10);
        c.webhook_poll_interval = Duration::from_millis(10);
    })
    .await;
    let ep = Endpoint::start(Reply::Json(500, "{}".into())).await;
    let (id, _) = agent_with_webhook(&s, &ep.url, json!({})).await;
    webhook::enqueue_call_ended(&store_of(&s).await, &id, &call_info(), "completed", &transcript())
        .await
        .unwrap()
        .unwrap();
    let list = wait_deliveries(&s, &id, |l| l["data"][0]["status"] == "failed").await;
    let d = &list["data"][0];
    assert_eq!((d["attemptCount"].as_i64(), d["httpStatus"].as_i64()), (Some(5), Some(500)), "{d}");
    assert_eq!(d["nextRetryAt"], Value::Null);
    assert!(d["errorMessage"].as_str().unwrap().contains("500"), "{d}");
    // Many poll intervals later: still five requests, never a sixth.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ep.requests().len(), 5);
    let text = metrics_text(&s).await;
    assert!(text.contains(r#"switchboard_webhook_deliveries_total{status="retry"} 4"#), "{text}");
    assert!(text.contains(r#"switchboard_webhook_deliveries_total{status="failed"} 1"#), "{text}");
}

#[tokio::test]
async fn a_pending_event_is_delivered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("restart.db").display());
    let ep = Endpoint::start(ok_json(json!({}))).await;

    // First run: its worker looks at the queue once, at start, then not for an hour.
    let first = {
        let url = url.clone();
        TestServer::start_with(move |c| {
            c.database_url = url;
            c.webhook_poll_interval = Duration::from_secs(3600);
        })
        .await
    };
    let (id, _) = agent_with_webhook(&first, &ep.url, json!({})).await;
    let queued = webhook::enqueue_call_ended(
        &Store::connect(&url).await.unwrap(),
        &id,
        &call_info(),
        "completed",
        &transcript(),
    )
    .await
    .unwrap()
    .unwrap();
    let (_, list) = first.get(&format!("/v1/agents/{id}/webhook/deliveries")).await;
    assert_eq!(
        (list["data"][0]["status"].as_str(), list["data"][0]["attemptCount"].as_i64()),
        (Some("pending"), Some(0))
    );
    first.stop().await.unwrap();
    assert!(ep.requests().is_empty(), "not sent by the first run");

    // Second run on the same database file picks it up.
    let second = {
        let url = url.clone();
        TestServer::start_with(move |c| {
            c.database_url = url;
            c.webhook_poll_interval = Duration::from_millis(20);
        })
        .await
    };
    let list = wait_deliveries(&second, &id, |l| l["data"][0]["status"] == "delivered").await;
    assert_eq!(list["data"][0]["attemptCount"].as_i64(), Some(1));
    let reqs = ep.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, queued.payload);
}
