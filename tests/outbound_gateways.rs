//! Outbound calls (`POST /v1/calls`) through Telnyx, Vonage and Plivo, each against a local fake
//! of the gateway's REST API that records every request: the dial request (method, path, auth
//! header, body fields, the document that connects the answered call's stream back with its
//! media token), the gateway's progress callbacks (`/telnyx/status`, `/vonage/events`,
//! `/plivo/status`) moving the record to busy / no-answer / completed, the answered call's stream
//! claiming the same record (Telnyx end to end: the override greeting is spoken), refusals (502,
//! call failed), the gateway choice and its errors (4xx/503 naming the field, nothing dialled,
//! nothing written), and malformed or foreign callbacks (4xx).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri};
use base64::Engine as _;
use common::media::{telnyx, twilio, vonage, Client};
use common::{assert_detail, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::config::{GatewayConfig, OutboundGateway};

const PUBLIC: &str = "https://switchboard.example";
const FROM: &str = "+15550100000";
const TO: &str = "+15550199999";
const TELNYX_KEY: &str = "KEY_telnyx_test";
const VONAGE_JWT: &str = "eyJ.vonage.jwt";
const PLIVO_ID: &str = "MA0001";
const PLIVO_TOKEN: &str = "plivo_secret";

/// One request the fake gateway received.
#[derive(Debug, Clone)]
struct Hit {
    method: Method,
    path: String,
    authorization: String,
    content_type: String,
    body: String,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("dial body is not JSON ({e}): {}", self.body))
    }
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// Builds a gateway's configuration pointed at a fake REST server.
type Configure = fn(&str) -> GatewayConfig;

/// A gateway REST API answering `status` with the next of `bodies` (the last one repeats).
async fn fake_gateway(status: u16, bodies: &[&'static str]) -> (String, Hits) {
    let hits: Hits = Arc::default();
    let h = hits.clone();
    let bodies: Vec<&'static str> = bodies.to_vec();
    let app =
        axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
            let h = h.clone();
            let bodies = bodies.clone();
            async move {
                let header = |name: &str| {
                    headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
                };
                let mut hits = h.lock().unwrap();
                hits.push(Hit {
                    method,
                    path: uri.path().to_string(),
                    authorization: header("authorization"),
                    content_type: header("content-type"),
                    body,
                });
                let answer = bodies[(hits.len() - 1).min(bodies.len() - 1)];
                (axum::http::StatusCode::from_u16(status).unwrap(), answer)
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

fn telnyx_config(base: &str) -> GatewayConfig {
    GatewayConfig {
        telnyx_api_key: Some(TELNYX_KEY.into()),
        telnyx_connection_id: Some("conn-77".into()),
        telnyx_api_base: base.into(),
        ..GatewayConfig::default()
    }
}

fn vonage_config(base: &str) -> GatewayConfig {
    GatewayConfig {
        vonage_jwt: Some(VONAGE_JWT.into()),
        vonage_api_base: base.into(),
        ..GatewayConfig::default()
    }
}

fn plivo_config(base: &str) -> GatewayConfig {
    GatewayConfig {
        plivo_auth_id: Some(PLIVO_ID.into()),
        plivo_auth_token: Some(PLIVO_TOKEN.into()),
        plivo_api_base: base.into(),
        ..GatewayConfig::default()
    }
}

async fn server(gateways: GatewayConfig) -> TestServer {
    TestServer::start_with(move |c| {
        c.gateways = gateways;
        c.public_url = Some(PUBLIC.into());
    })
    .await
}

/// An agent with a number to call from.
async fn agent_with_number(s: &TestServer, body: Value) -> Value {
    let agent = s.agent(body).await;
    let (st, number) = s.post("/v1/numbers", json!({"phoneNumber": FROM, "agentId": agent["id"]})).await;
    assert_eq!(st, StatusCode::CREATED, "{number}");
    agent
}

/// Places a call; asserts 201 and `ringing`; returns its id.
async fn place(s: &TestServer, agent: &Value, extra: Value) -> String {
    let mut body = json!({"agentId": agent["id"], "toNumber": TO});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (st, call) = s.post("/v1/calls", body).await;
    assert_eq!(st, StatusCode::CREATED, "{call}");
    assert_eq!((call["direction"].as_str(), call["status"].as_str()), (Some("outbound"), Some("ringing")));
    call["id"].as_str().unwrap().to_string()
}

async fn call_record(s: &TestServer, id: &str) -> Value {
    let (st, call) = s.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{call}");
    call
}

#[track_caller]
fn assert_ended(call: &Value, status: &str, reason: &str) {
    assert_eq!((call["status"].as_str(), call["endReason"].as_str()), (Some(status), Some(reason)), "{call}");
    assert!(call["endedAt"].is_string(), "{call}");
}

/// Posts `form` to `path`; requests to `/plivo/*` carry Plivo's V3 signature, as Plivo sends
/// them (the server has the auth token, so it checks them).
async fn post_form(s: &TestServer, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().post(format!("{}{path}", s.base)).form(form);
    if path.starts_with("/plivo/") {
        let nonce = "41567818340591452911";
        req = req
            .header(
                "x-plivo-signature-v3",
                common::plivo_v3(PLIVO_TOKEN, &format!("{PUBLIC}{path}"), form, nonce),
            )
            .header("x-plivo-signature-v3-nonce", nonce);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

async fn post_json(s: &TestServer, path: &str, body: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", s.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `<Parameter name="…" value="…"/>` values of a TeXML document (test values need no unescaping).
fn parameter(doc: &str, name: &str) -> Option<String> {
    let needle = format!("<Parameter name=\"{name}\" value=\"");
    let rest = &doc[doc.find(&needle)? + needle.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The value of query parameter `name` in `url` (test values are URL-safe).
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

// ---------------------------------------------------------------------------------------------
// Telnyx
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn telnyx_dials_texml_and_the_answered_stream_speaks_the_override_greeting() {
    // The call sid Telnyx answers is the call_control_id its stream starts with (common::media).
    let (base, hits) = fake_gateway(201, &[r#"{"call_sid": "v3:call-0001", "status": "queued"}"#]).await;
    let s = server(telnyx_config(&base)).await;
    let agent = agent_with_number(
        &s,
        json!({"name": "Caller", "beginMessage": "Agent default hello.",
        "maxSilenceMs": 60000}),
    )
    .await;
    let id = place(
        &s,
        &agent,
        json!({"initialGreeting": "Hello from Telnyx, about your delivery.",
        "disableRecording": true}),
    )
    .await;

    // What Telnyx was asked.
    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!((hit.method.as_str(), hit.path.as_str()), ("POST", "/v2/texml/calls/conn-77"));
    assert_eq!(hit.authorization, format!("Bearer {TELNYX_KEY}"));
    assert!(hit.content_type.starts_with("application/json"), "{hit:?}");
    let body = hit.json();
    assert_eq!((body["To"].as_str(), body["From"].as_str()), (Some(TO), Some(FROM)));
    assert_eq!(body["StatusCallback"], format!("{PUBLIC}/telnyx/status"));
    assert_eq!(body["StatusCallbackMethod"], "POST");
    assert_eq!(body["StatusCallbackEvent"], "initiated ringing answered completed");
    let texml = body["Texml"].as_str().unwrap().to_string();
    assert!(
        texml.contains(r#"<Connect><Stream url="wss://switchboard.example/telnyx/media" codec="PCMU" bidirectionalMode="rtp""#),
        "{texml}"
    );
    assert_eq!(parameter(&texml, "callId").as_deref(), Some(id.as_str()));
    assert_eq!(parameter(&texml, "agentId").as_deref(), agent["id"].as_str());
    assert_eq!(parameter(&texml, "to").as_deref(), Some(TO));
    let (_, listed) = s.get("/v1/calls?direction=outbound").await;
    assert_eq!(listed["total"], 1);

    // Progress before the answer changes nothing; the stream binds to the same record.
    for status in ["initiated", "ringing"] {
        let (st, body) =
            post_form(&s, "/telnyx/status", &[("CallSid", "v3:call-0001"), ("CallStatus", status)]).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    }
    assert_eq!(call_record(&s, &id).await["status"], "ringing");
    let mut c = Client::connect(s.addr, "/telnyx/media", |n| Some(telnyx::mark(n))).await;
    let params: serde_json::Map<String, Value> = ["agentId", "token", "callId", "from", "to"]
        .iter()
        .map(|k| (k.to_string(), json!(parameter(&texml, k).unwrap())))
        .collect();
    c.send(telnyx::start(Value::Object(params), "PCMU", 8000)).await;
    c.stream((0..200).map(|i| telnyx::media(i, &[0xFF; 160])).collect(), Duration::from_millis(200)).await;
    let live = call_record(&s, &id).await;
    assert_eq!(live["status"], "in-progress", "{live}");
    // `completed` while the stream is live leaves the ending to the stream.
    let (st, _) =
        post_form(&s, "/telnyx/status", &[("CallSid", "v3:call-0001"), ("CallStatus", "completed")]).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(call_record(&s, &id).await["status"], "in-progress");
    c.send(twilio::stop()).await;
    let _ = c.closed().await;
    let rec = common::ended_call(&s).await;
    assert_eq!(rec.id, id);
    assert_eq!(rec.end_reason.as_deref(), Some("caller hung up"));
    assert_eq!(rec.spoken().first().map(String::as_str), Some("Hello from Telnyx, about your delivery."));
    assert_eq!(hits.lock().unwrap().len(), 1, "one dial request, no other call control");
}

#[tokio::test]
async fn telnyx_status_callbacks_end_calls_that_never_connect() {
    let (base, _hits) = fake_gateway(
        201,
        &[r#"{"call_sid": "v3:busy"}"#, r#"{"call_sid": "v3:away"}"#, r#"{"call_sid": "v3:done"}"#],
    )
    .await;
    let s = server(telnyx_config(&base)).await;
    let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
    let busy = place(&s, &agent, json!({})).await;
    let away = place(&s, &agent, json!({})).await;
    let done = place(&s, &agent, json!({})).await;
    for (sid, status) in [("v3:busy", "busy"), ("v3:away", "no-answer"), ("v3:done", "completed")] {
        let (st, body) = post_form(&s, "/telnyx/status", &[("CallSid", sid), ("CallStatus", status)]).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{status}: {body}");
    }
    assert_ended(&call_record(&s, &busy).await, "busy", "busy");
    assert_ended(&call_record(&s, &away).await, "no-answer", "no-answer");
    assert_ended(&call_record(&s, &done).await, "completed", "completed at the gateway");
    // An ended call stays as it ended.
    let (st, _) = post_form(&s, "/telnyx/status", &[("CallSid", "v3:busy"), ("CallStatus", "failed")]).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_ended(&call_record(&s, &busy).await, "busy", "busy");

    // Unknown call, unknown status, missing fields, not a form.
    let (st, body) = post_form(&s, "/telnyx/status", &[("CallSid", "v3:nope"), ("CallStatus", "busy")]).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("CallSid"), "{body}");
    let (st, body) =
        post_form(&s, "/telnyx/status", &[("CallSid", "v3:done"), ("CallStatus", "exploded")]).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("CallStatus"), "{body}");
    let (st, body) = post_form(&s, "/telnyx/status", &[("CallSid", "v3:done")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("CallStatus"), "{body}");
    let (st, _) = post_json(&s, "/telnyx/status", r#"{"CallSid": "v3:done"}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // An inbound Telnyx call is not ours to end through this callback.
    let (st, doc) =
        post_form(&s, "/telnyx/voice", &[("CallSid", "v3:inbound"), ("From", "+15550111111"), ("To", FROM)])
            .await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    let (st, _) = post_form(&s, "/telnyx/status", &[("CallSid", "v3:inbound"), ("CallStatus", "busy")]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, ringing) = s.get("/v1/calls?direction=inbound").await;
    assert_eq!(ringing["data"][0]["status"], "ringing", "{ringing}");
}

// ---------------------------------------------------------------------------------------------
// Vonage
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn vonage_dials_with_an_ncco_and_follows_its_events() {
    let (base, hits) = fake_gateway(
        201,
        &[
            r#"{"uuid": "vg-busy", "status": "started", "direction": "outbound", "conversation_uuid": "CON-1"}"#,
            r#"{"uuid": "vg-away", "status": "started"}"#,
            r#"{"uuid": "vg-done", "status": "started"}"#,
            r#"{"uuid": "vg-live", "status": "started"}"#,
        ],
    )
    .await;
    let s = server(vonage_config(&base)).await;
    let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
    let busy = place(&s, &agent, json!({})).await;

    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!((hit.method.as_str(), hit.path.as_str()), ("POST", "/v1/calls"));
    assert_eq!(hit.authorization, format!("Bearer {VONAGE_JWT}"));
    let body = hit.json();
    assert_eq!(body["to"], json!([{"type": "phone", "number": "15550199999"}]));
    assert_eq!(body["from"], json!({"type": "phone", "number": "15550100000"}));
    assert_eq!(body["event_url"], json!([format!("{PUBLIC}/vonage/events")]));
    assert_eq!(body["event_method"], "POST");
    let endpoint = &body["ncco"][0]["endpoint"][0];
    assert_eq!(body["ncco"][0]["action"], "connect", "{body}");
    assert_eq!(
        (endpoint["type"].as_str(), endpoint["uri"].as_str(), endpoint["content-type"].as_str()),
        (Some("websocket"), Some("wss://switchboard.example/vonage/media"), Some("audio/l16;rate=16000"))
    );
    assert_eq!(endpoint["headers"]["callId"].as_str(), Some(busy.as_str()));
    assert_eq!(endpoint["headers"]["agentId"], agent["id"]);
    assert!(endpoint["headers"]["token"].as_str().is_some_and(|t| !t.is_empty()), "{endpoint}");

    // Busy, unanswered, completed before any stream.
    let away = place(&s, &agent, json!({})).await;
    let done = place(&s, &agent, json!({})).await;
    for (uuid, status) in
        [("vg-busy", "ringing"), ("vg-busy", "busy"), ("vg-away", "unanswered"), ("vg-done", "completed")]
    {
        let event = json!({"uuid": uuid, "conversation_uuid": "CON-1", "status": status, "direction": "outbound",
            "timestamp": "2026-11-29T12:00:00.000Z", "from": "15550100000", "to": "15550199999"});
        let (st, body) = post_json(&s, "/vonage/events", &event.to_string()).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{status}: {body}");
    }
    assert_ended(&call_record(&s, &busy).await, "busy", "busy");
    assert_ended(&call_record(&s, &away).await, "no-answer", "no-answer");
    assert_ended(&call_record(&s, &done).await, "completed", "completed at the gateway");

    // The answered call's websocket, with the NCCO's headers, claims the same record.
    let live = place(&s, &agent, json!({})).await;
    let headers = hits.lock().unwrap()[3].json()["ncco"][0]["endpoint"][0]["headers"].clone();
    let mut c = Client::connect(s.addr, "/vonage/media", |n| Some(vonage::notified(n))).await;
    c.send(vonage::connected(16000, headers)).await;
    c.collect_for(Duration::from_millis(500)).await;
    let record = call_record(&s, &live).await;
    assert_eq!(record["status"], "in-progress", "{record}");

    // Malformed and foreign events.
    for (body, status, needle) in [
        (r#"{"status": "busy"}"#, 400, "uuid"),
        (r#"{"uuid": "vg-done"}"#, 400, "status"),
        (r#"{"uuid": "vg-done", "status": "exploded"}"#, 422, "status"),
        (r#"{"uuid": "vg-nope", "status": "busy"}"#, 404, "uuid"),
        ("{nope", 400, "JSON"),
    ] {
        assert_detail(&post_json(&s, "/vonage/events", body).await, status, needle);
    }
    // A status-less event of another type (a transfer) is acknowledged and changes nothing.
    let (st, _) = post_json(&s, "/vonage/events", r#"{"uuid": "vg-live", "type": "transfer"}"#).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(call_record(&s, &live).await["status"], "in-progress");
    drop(c);
}

// ---------------------------------------------------------------------------------------------
// Plivo
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn plivo_dials_with_an_answer_url_and_follows_its_callbacks() {
    let (base, hits) = fake_gateway(
        201,
        &[
            r#"{"api_id": "a1", "message": "call fired", "request_uuid": "req-busy"}"#,
            r#"{"api_id": "a2", "message": "call fired", "request_uuid": "req-away"}"#,
            r#"{"api_id": "a3", "message": "call fired", "request_uuid": "req-done"}"#,
            r#"{"api_id": "a4", "message": "call fired", "request_uuid": "req-live"}"#,
        ],
    )
    .await;
    let s = server(plivo_config(&base)).await;
    let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
    let busy = place(&s, &agent, json!({})).await;

    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!((hit.method.as_str(), hit.path.as_str()), ("POST", "/v1/Account/MA0001/Call/"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{PLIVO_ID}:{PLIVO_TOKEN}"));
    assert_eq!(hit.authorization, format!("Basic {basic}"));
    let body = hit.json();
    assert_eq!((body["from"].as_str(), body["to"].as_str()), (Some("15550100000"), Some("15550199999")));
    let answer_url = body["answer_url"].as_str().unwrap().to_string();
    assert!(answer_url.starts_with(&format!("{PUBLIC}/plivo/outbound?")), "{answer_url}");
    assert_eq!(query_param(&answer_url, "callId").as_deref(), Some(busy.as_str()));
    assert_eq!(body["answer_method"], "POST");
    assert_eq!(
        (body["hangup_url"].as_str(), body["ring_url"].as_str()),
        (Some(&*format!("{PUBLIC}/plivo/status")), Some(&*format!("{PUBLIC}/plivo/status")))
    );

    // The ring callback names the CallUUID; the hang-up then finds the call by it.
    let (st, b) = post_form(
        &s,
        "/plivo/status",
        &[
            ("RequestUUID", "req-busy"),
            ("CallUUID", "cu-busy"),
            ("CallStatus", "ringing"),
            ("Direction", "outbound"),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    let (st, b) = post_form(
        &s,
        "/plivo/status",
        &[("CallUUID", "cu-busy"), ("CallStatus", "busy"), ("HangupCause", "USER_BUSY")],
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    assert_ended(&call_record(&s, &busy).await, "busy", "busy");
    let away = place(&s, &agent, json!({})).await;
    let done = place(&s, &agent, json!({})).await;
    for (request, uuid, status, cause) in [
        ("req-away", "cu-away", "no-answer", "NO_ANSWER"),
        ("req-done", "cu-done", "completed", "NORMAL_CLEARING"),
    ] {
        let (st, b) = post_form(
            &s,
            "/plivo/status",
            &[("RequestUUID", request), ("CallUUID", uuid), ("CallStatus", status), ("HangupCause", cause)],
        )
        .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{status}: {b}");
    }
    assert_ended(&call_record(&s, &away).await, "no-answer", "no-answer");
    assert_ended(&call_record(&s, &done).await, "completed", "completed at the gateway");

    // Answered: Plivo fetches the answer URL; its <Stream> claims the same record.
    let live = place(&s, &agent, json!({})).await;
    let answer_url = hits.lock().unwrap()[3].json()["answer_url"].as_str().unwrap().to_string();
    let path = answer_url.strip_prefix(PUBLIC).unwrap();
    let (st, doc) = post_form(
        &s,
        path,
        &[("CallUUID", "cu-live"), ("RequestUUID", "req-live"), ("CallStatus", "in-progress")],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert!(doc.contains(">wss://switchboard.example/plivo/media</Stream>"), "{doc}");
    let extra = doc.split("extraHeaders=\"").nth(1).and_then(|r| r.split('"').next()).expect("extraHeaders");
    assert!(extra.contains(&format!("callId={live}")), "{extra}");
    let mut c = Client::connect(s.addr, "/plivo/media", |n| Some(common::media::plivo::played(n))).await;
    c.send(common::media::plivo::start(extra)).await;
    c.collect_for(Duration::from_millis(500)).await;
    assert_eq!(call_record(&s, &live).await["status"], "in-progress");
    drop(c);
    // A second fetch of the answer URL (the call is no longer ringing) hangs up.
    let (st, doc) = post_form(&s, path, &[("CallUUID", "cu-live")]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc.contains("<Hangup/>"), "{doc}");

    // Malformed and foreign callbacks.
    let (st, b) = post_form(&s, "/plivo/status", &[("CallStatus", "busy")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.contains("CallUUID"), "{b}");
    let (st, b) = post_form(&s, "/plivo/status", &[("CallUUID", "cu-busy")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.contains("CallStatus"), "{b}");
    let (st, _) = post_form(&s, "/plivo/status", &[("CallUUID", "cu-nope"), ("CallStatus", "busy")]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) =
        post_form(&s, "/plivo/status", &[("CallUUID", "cu-busy"), ("CallStatus", "Exploded")]).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, b) = post_form(&s, "/plivo/outbound?callId=call_nope", &[("CallUUID", "x")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.contains("token"), "{b}");
    let (st, doc) = post_form(&s, "/plivo/outbound?callId=call_nope&token=mt_x", &[("CallUUID", "x")]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc.contains("<Hangup/>"), "{doc}");
}

// ---------------------------------------------------------------------------------------------
// Refusals, gateway choice, missing credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_gateway_refusal_is_a_502_and_the_call_is_recorded_failed() {
    let refusals: [(Configure, u16, &str, &str); 3] = [
        (
            telnyx_config,
            422,
            r#"{"errors": [{"detail": "The 'To' number is invalid"}]}"#,
            "The 'To' number is invalid",
        ),
        (vonage_config, 401, r#"{"title": "Unauthorized", "detail": "Invalid token"}"#, "Invalid token"),
        (plivo_config, 500, r#"{"error": "internal error, try later"}"#, "internal error"),
    ];
    for (config, status, answer, needle) in refusals {
        let (base, hits) = fake_gateway(status, &[answer]).await;
        let s = server(config(&base)).await;
        let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
        let (st, body) = s.post("/v1/calls", json!({"agentId": agent["id"], "toNumber": TO})).await;
        assert_eq!(st, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(needle), "{body}");
        assert_eq!(hits.lock().unwrap().len(), 1);
        let (_, calls) = s.get("/v1/calls?status=failed").await;
        assert_eq!(calls["total"], 1, "{calls}");
        assert!(
            calls["data"][0]["endReason"].as_str().unwrap().contains(&format!("HTTP {status}")),
            "{calls}"
        );
    }
    // A 2xx without the call id is a refusal too.
    let (base, _) = fake_gateway(201, &[r#"{"message": "call fired"}"#]).await;
    let s = server(plivo_config(&base)).await;
    let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
    let got = s.post("/v1/calls", json!({"agentId": agent["id"], "toNumber": TO})).await;
    assert_detail(&got, 502, "request_uuid");
    assert_eq!(s.get("/v1/calls?status=failed").await.1["total"], 1);
}

#[tokio::test]
async fn the_gateway_is_the_requested_one_else_the_configured_else_the_only_one() {
    let (telnyx_base, telnyx_hits) = fake_gateway(201, &[r#"{"call_sid": "v3:x"}"#]).await;
    let (plivo_base, plivo_hits) = fake_gateway(201, &[r#"{"request_uuid": "req-x"}"#]).await;
    let both = GatewayConfig {
        plivo_auth_id: Some(PLIVO_ID.into()),
        plivo_auth_token: Some(PLIVO_TOKEN.into()),
        plivo_api_base: plivo_base.clone(),
        ..telnyx_config(&telnyx_base)
    };
    let s = server(both.clone()).await;
    let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
    let body = |extra: Value| {
        let mut b = json!({"agentId": agent["id"], "toNumber": TO});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    // Two gateways can dial and none is named: the caller must choose.
    assert_detail(&s.post("/v1/calls", body(json!({}))).await, 422, "gateway");
    assert_detail(&s.post("/v1/calls", body(json!({"gateway": "sinch"}))).await, 422, "gateway");
    // Named but without credentials: 503 naming what to configure.
    assert_detail(&s.post("/v1/calls", body(json!({"gateway": "vonage"}))).await, 503, "vonage_jwt");
    assert_detail(&s.post("/v1/calls", body(json!({"gateway": "twilio"}))).await, 503, "twilio_auth_token");
    assert!(
        telnyx_hits.lock().unwrap().is_empty() && plivo_hits.lock().unwrap().is_empty(),
        "nothing dialled"
    );
    assert_eq!(s.get("/v1/calls").await.1["total"], 0, "nothing written");

    // The request's choice.
    let (st, call) = s.post("/v1/calls", body(json!({"gateway": "plivo"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{call}");
    assert_eq!((telnyx_hits.lock().unwrap().len(), plivo_hits.lock().unwrap().len()), (0, 1));

    // The configured default.
    let s = TestServer::start_with(|c| {
        c.gateways = GatewayConfig { outbound_gateway: Some(OutboundGateway::Telnyx), ..both.clone() };
        c.public_url = Some(PUBLIC.into());
    })
    .await;
    let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
    let (st, call) = s.post("/v1/calls", json!({"agentId": agent["id"], "toNumber": TO})).await;
    assert_eq!(st, StatusCode::CREATED, "{call}");
    assert_eq!(telnyx_hits.lock().unwrap().len(), 1);

    // A configured default without its credentials is named.
    let s = TestServer::start_with(|c| {
        c.gateways = GatewayConfig { outbound_gateway: Some(OutboundGateway::Vonage), ..both.clone() };
    })
    .await;
    let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
    let got = s.post("/v1/calls", json!({"agentId": agent["id"], "toNumber": TO})).await;
    assert_detail(&got, 503, "outbound_gateway");
    assert_eq!(s.get("/v1/calls").await.1["total"], 0);

    // Telnyx needs its TeXML connection id besides the API key: without it, nothing can dial.
    let s = server(GatewayConfig { telnyx_connection_id: None, ..telnyx_config(&telnyx_base) }).await;
    let agent = agent_with_number(&s, json!({"name": "Caller"})).await;
    let got = s.post("/v1/calls", json!({"agentId": agent["id"], "toNumber": TO})).await;
    assert_detail(&got, 503, "telnyx_connection_id");
    let got = s.post("/v1/calls", json!({"agentId": agent["id"], "toNumber": TO, "gateway": "telnyx"})).await;
    assert_detail(&got, 503, "telnyx_connection_id");
    assert_eq!(s.get("/v1/calls").await.1["total"], 0);
    assert_eq!(telnyx_hits.lock().unwrap().len(), 1, "nothing more dialled");
}
