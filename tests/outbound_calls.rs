//! Outbound calls (`POST /v1/calls`) against a local fake Twilio REST server that records every
//! request and answers like Twilio: the dial request (credentials, From/To, the TwiML that
//! connects the answered call's stream back, the status callback), the media stream started
//! with the TwiML's parameters (the greeting override spoken), the status callbacks
//! (`/twilio/status`, signed) moving the record to busy / no-answer, a gateway refusal (502,
//! call failed) and every bad request (4xx naming the field, no call written).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Form;
use axum::http::HeaderMap;
use common::media::{twilio, Client};
use common::{assert_detail, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::config::GatewayConfig;
use switchboard::transport::answer::twilio_signature;

const PUBLIC: &str = "https://switchboard.example";
const AUTH_TOKEN: &str = "tw_secret";

/// One request the fake Twilio received.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    authorization: String,
    form: Vec<(String, String)>,
}

impl Hit {
    fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A Twilio REST API answering `status` with `body` to every request.
async fn fake_twilio(status: u16, body: &'static str) -> (GatewayConfig, Hits) {
    let hits: Hits = Arc::default();
    let h = hits.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, Form(form): Form<Vec<(String, String)>>| {
            let h = h.clone();
            async move {
                let authorization =
                    headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                h.lock().unwrap().push(Hit { path: uri.path().to_string(), authorization, form });
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let gateways = GatewayConfig {
        twilio_account_sid: Some("AC0123".into()),
        twilio_auth_token: Some(AUTH_TOKEN.into()),
        twilio_api_base: base,
        ..GatewayConfig::default()
    };
    (gateways, hits)
}

async fn server(gateways: GatewayConfig) -> TestServer {
    TestServer::start_with(move |c| {
        c.gateways = gateways;
        c.public_url = Some(PUBLIC.into());
    })
    .await
}

/// An agent with a number to call from.
async fn agent_with_number(s: &TestServer, body: Value) -> (Value, Value) {
    let agent = s.agent(body).await;
    let (st, number) =
        s.post("/v1/numbers", json!({"phoneNumber": "+15550100000", "agentId": agent["id"]})).await;
    assert_eq!(st, StatusCode::CREATED, "{number}");
    (agent, number)
}

/// Posts a Twilio status callback, signed as Twilio signs it.
async fn status_callback(s: &TestServer, call_sid: &str, status: &str) -> StatusCode {
    let form = vec![
        ("AccountSid".to_string(), "AC0123".to_string()),
        ("CallSid".to_string(), call_sid.to_string()),
        ("CallStatus".to_string(), status.to_string()),
    ];
    let signature = twilio_signature(AUTH_TOKEN, &format!("{PUBLIC}/twilio/status"), &form);
    reqwest::Client::new()
        .post(format!("{}/twilio/status", s.base))
        .header("X-Twilio-Signature", signature)
        .form(&form)
        .send()
        .await
        .unwrap()
        .status()
}

/// `<Parameter name="…" value="…"/>` values of a TwiML document (test values need no unescaping).
fn twiml_parameter(doc: &str, name: &str) -> Option<String> {
    let needle = format!("<Parameter name=\"{name}\" value=\"");
    let rest = &doc[doc.find(&needle)? + needle.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

#[tokio::test]
async fn an_outbound_call_is_dialled_connects_back_and_speaks_the_override_greeting() {
    // The sid Twilio answers is the callSid its stream later starts with (CA0001 in the helper).
    let (gateways, hits) = fake_twilio(201, r#"{"sid": "CA0001", "status": "queued"}"#).await;
    let s = server(gateways).await;
    let (agent, number) = agent_with_number(
        &s,
        json!({"name": "Caller", "beginMessage": "Agent default hello.",
        "maxSilenceMs": 60000}),
    )
    .await;

    let (st, call) = s
        .post(
            "/v1/calls",
            json!({"agentId": agent["id"], "toNumber": "+15550199999",
            "initialGreeting": "Hi, this is a reminder about your appointment.",
            "variables": {"customer": "Ada"}, "disableRecording": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{call}");
    assert_eq!((call["direction"].as_str(), call["status"].as_str()), (Some("outbound"), Some("ringing")));
    assert_eq!(
        (call["fromNumber"].as_str(), call["toNumber"].as_str()),
        (Some("+15550100000"), Some("+15550199999"))
    );
    assert_eq!(call["phoneNumberId"], number["id"]);
    let id = call["id"].as_str().unwrap().to_string();

    // What Twilio was asked.
    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!(hit.path, "/2010-04-01/Accounts/AC0123/Calls.json");
    assert!(hit.authorization.starts_with("Basic "), "{hit:?}");
    assert_eq!((hit.field("To"), hit.field("From")), (Some("+15550199999"), Some("+15550100000")));
    assert_eq!(hit.field("StatusCallback"), Some(format!("{PUBLIC}/twilio/status").as_str()));
    assert_eq!(hit.all("StatusCallbackEvent"), ["initiated", "ringing", "answered", "completed"]);
    let twiml = hit.field("Twiml").unwrap().to_string();
    assert!(twiml.contains("<Connect><Stream url=\"wss://switchboard.example/twilio/media\">"), "{twiml}");
    assert_eq!(twiml_parameter(&twiml, "callId").as_deref(), Some(id.as_str()));

    // Ringing callbacks change nothing; the answered call's stream makes it in-progress.
    assert_eq!(status_callback(&s, "CA0001", "ringing").await, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/v1/calls/{id}")).await.1["status"], "ringing");
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    let params: serde_json::Map<String, Value> = ["agentId", "token", "callId", "from", "to"]
        .iter()
        .map(|k| (k.to_string(), json!(twiml_parameter(&twiml, k).unwrap())))
        .collect();
    c.send(twilio::start(Value::Object(params))).await;
    c.stream((0..200).map(|i| twilio::media(i, &[0xFF; 160])).collect(), Duration::from_millis(200)).await;
    assert_eq!(s.get(&format!("/v1/calls/{id}")).await.1["status"], "in-progress");
    // Twilio's `completed` while the stream is live leaves the ending to the stream.
    assert_eq!(status_callback(&s, "CA0001", "completed").await, StatusCode::NO_CONTENT);
    c.send(twilio::stop()).await;
    let _ = c.closed().await;
    let rec = common::ended_call(&s).await;
    assert_eq!(rec.id, id);
    assert_eq!(rec.end_reason.as_deref(), Some("caller hung up"));
    assert_eq!(
        rec.spoken().first().map(String::as_str),
        Some("Hi, this is a reminder about your appointment.")
    );
    let (st, body) = s.get(&format!("/v1/calls/{id}/recording")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "placed with disableRecording: {body}");
    assert!(body["detail"].as_str().unwrap().contains("disableRecording"), "{body}");
    let (_, outbound) = s.get("/v1/calls?direction=outbound").await;
    assert_eq!(outbound["total"], 1);
}

#[tokio::test]
async fn status_callbacks_end_calls_that_never_connect() {
    let (gateways, _hits) = fake_twilio(201, r#"{"sid": "CA_busy"}"#).await;
    let s = server(gateways).await;
    let (agent, _) = agent_with_number(&s, json!({"name": "Caller"})).await;
    let body = json!({"agentId": agent["id"], "toNumber": "+15550199999"});

    let (_, call) = s.post("/v1/calls", body.clone()).await;
    assert_eq!(status_callback(&s, "CA_busy", "busy").await, StatusCode::NO_CONTENT);
    let (_, got) = s.get(&format!("/v1/calls/{}", call["id"].as_str().unwrap())).await;
    assert_eq!((got["status"].as_str(), got["endReason"].as_str()), (Some("busy"), Some("busy")));
    assert!(got["endedAt"].is_string());
    // Once ended, a later callback does not change it.
    assert_eq!(status_callback(&s, "CA_busy", "no-answer").await, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/v1/calls/{}", call["id"].as_str().unwrap())).await.1["status"], "busy");

    // Unknown call, unknown status, unsigned callback.
    assert_eq!(status_callback(&s, "CA_nope", "busy").await, StatusCode::NOT_FOUND);
    assert_eq!(status_callback(&s, "CA_busy", "exploded").await, StatusCode::UNPROCESSABLE_ENTITY);
    let unsigned = reqwest::Client::new()
        .post(format!("{}/twilio/status", s.base))
        .form(&[("CallSid", "CA_busy"), ("CallStatus", "completed")])
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_gateway_refusal_is_a_502_and_the_call_is_recorded_failed() {
    let (gateways, hits) =
        fake_twilio(400, r#"{"code": 21211, "message": "Invalid 'To' Phone Number"}"#).await;
    let s = server(gateways).await;
    let (agent, _) = agent_with_number(&s, json!({"name": "Caller"})).await;
    let (st, body) = s.post("/v1/calls", json!({"agentId": agent["id"], "toNumber": "+15550199999"})).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("Invalid 'To' Phone Number"), "{body}");
    assert_eq!(hits.lock().unwrap().len(), 1);
    let (_, calls) = s.get("/v1/calls?status=failed").await;
    assert_eq!(calls["total"], 1);
    assert!(calls["data"][0]["endReason"].as_str().unwrap().contains("HTTP 400"), "{calls}");
}

#[tokio::test]
async fn bad_requests_name_the_field_and_write_no_call() {
    let (gateways, hits) = fake_twilio(201, r#"{"sid": "CA_x"}"#).await;
    let s = server(gateways).await;
    let (agent, _) = agent_with_number(&s, json!({"name": "Caller"})).await;
    let bare = s.agent(json!({"name": "No number"})).await;
    let id = agent["id"].clone();
    assert_detail(
        &s.post("/v1/calls", json!({"agentId": id, "toNumber": "555-0199"})).await,
        422,
        "toNumber",
    );
    assert_detail(&s.post("/v1/calls", json!({"toNumber": "+15550199999"})).await, 422, "agentId");
    assert_detail(
        &s.post("/v1/calls", json!({"agentId": "agent_nope", "toNumber": "+15550199999"})).await,
        404,
        "agentId",
    );
    assert_detail(
        &s.post("/v1/calls", json!({"agentId": bare["id"], "toNumber": "+15550199999"})).await,
        422,
        "fromNumberId",
    );
    assert_detail(
        &s.post("/v1/calls", json!({"agentId": id, "toNumber": "+15550199999", "fromNumberId": "num_nope"}))
            .await,
        404,
        "fromNumberId",
    );
    assert_detail(
        &s.post("/v1/calls", json!({"agentId": id, "toNumber": "+15550199999", "modelTier": "huge"})).await,
        422,
        "modelTier",
    );
    assert_eq!(s.call_raw(reqwest::Method::POST, "/v1/calls", "{nope").await.0, StatusCode::BAD_REQUEST);
    assert!(hits.lock().unwrap().is_empty(), "nothing was dialled");
    assert_eq!(s.get("/v1/calls").await.1["total"], 0, "no call written");

    // Without Twilio credentials outbound calling is unavailable.
    let plain = TestServer::start().await;
    let (a, _) = agent_with_number(&plain, json!({"name": "Caller"})).await;
    assert_detail(
        &plain.post("/v1/calls", json!({"agentId": a["id"], "toNumber": "+15550199999"})).await,
        503,
        "twilio",
    );
}
